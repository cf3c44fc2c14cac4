//! The broker's fetch path for one partition, from a real segment: a Fetch
//! request frame goes through `handle_frame` (request decoding, metadata,
//! `LogReader::read` with its segment choice and offset-index lookup, the
//! format check for the version, response framing) up to the response
//! parts the connection hands to `writev` + `sendfile(2)`. The socket write
//! itself is not included. Figures and the command are in
//! `docs/benchmarks.md`:
//! `cargo bench -p runtime --bench fetch_path`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::protocol::{Outcome, Part, handle_frame};
use gregor_runtime::storage::record::{BatchBuilder, Codec};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};

const TOPIC: &str = "fetch-bench";
/// Target batch size (the producers' default `batch.size`).
const BATCH_BYTES: usize = 16 * 1024;
/// Record value size.
const VALUE_BYTES: usize = 100;

/// Whether this is a real benchmark run (`cargo bench` passes `--bench`);
/// `cargo test --all-targets` runs each benchmark once, on small data.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A request frame (header and body, without the size prefix).
fn frame<R: Request>(version: i16, req: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, R::header_version(version))
        .expect("header");
    req.encode(&mut out, version).expect("request");
    out.freeze()
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// A v2 batch of 100-byte records no larger than 16 KiB, and its record count.
fn batch() -> (Vec<u8>, i64) {
    let value = [b'v'; VALUE_BYTES];
    let mut b = BatchBuilder::new(2, Codec::None, 0).expect("builder");
    // 61 header bytes, then about 10 bytes of framing per record.
    let mut size = 61;
    while size + VALUE_BYTES + 10 <= BATCH_BYTES {
        b.append(1_700_000_000_000, None, Some(&value), &[])
            .expect("append");
        size += VALUE_BYTES + 10;
    }
    let n = b.len() as i64;
    (b.build().expect("build"), n)
}

fn fetch_frame(version: i16, offset: i64, max_bytes: i32) -> Bytes {
    frame(
        version,
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name())
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]),
    )
}

/// A broker whose one-partition topic holds `bytes` of 16 KiB batches, in
/// a directory on the build's disk. Returns the broker, the directory, the
/// batch size and records per batch.
fn setup(
    rt: &tokio::runtime::Runtime,
    bytes: usize,
) -> (Arc<Broker>, tempfile::TempDir, usize, i64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let config = BrokerConfig::from_pairs([
        ("log.dirs", dir.path().display().to_string()),
        ("log.segment.bytes", (128u32 << 20).to_string()),
    ])
    .expect("config");
    let broker = Arc::new(Broker::open(config).expect("broker"));
    let create = frame(
        5,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name())
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
    );
    assert!(matches!(
        rt.block_on(handle_frame(&broker, create)),
        Outcome::Respond(_)
    ));
    let (one, records) = batch();
    // Produce requests of 64 batches (about 1 MiB) each.
    let per_request = 64;
    let mut payload = Vec::with_capacity(one.len() * per_request);
    for _ in 0..per_request {
        payload.extend_from_slice(&one);
    }
    let produce = frame(
        9,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name())
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(payload))),
                    ]),
            ]),
    );
    for _ in 0..bytes.div_ceil(one.len() * per_request) {
        match rt.block_on(handle_frame(&broker, produce.clone())) {
            Outcome::Respond(_) => {}
            other => panic!("produce failed: {other:?}"),
        }
    }
    (broker, dir, one.len(), records)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let log_bytes = if full_run() { 256 << 20 } else { 4 << 20 };
    let (broker, _dir, batch_len, records) = setup(&rt, log_bytes);
    let batches = (log_bytes.div_ceil(batch_len * 64) * 64) as i64;
    let mut g = c.benchmark_group("fetch");
    g.measurement_time(Duration::from_secs(5));
    // (name, request version, max bytes): v11 accepts any magic, so the
    // range goes out unchecked; v12 must not carry v0/v1 messages, so the
    // broker reads each entry's 17-byte header of the range first.
    for (name, version, max_bytes) in [
        ("v12_16KiB", 12, 16 << 10),
        ("v12_1MiB", 12, 1 << 20),
        ("v11_1MiB", 11, 1 << 20),
    ] {
        let per_fetch = (max_bytes as usize / batch_len).max(1) as i64;
        // One request per consumer position, encoded up front so that the
        // timing holds the broker's work only.
        let frames: Vec<Bytes> = (0..batches / per_fetch)
            .map(|i| fetch_frame(version, i * per_fetch * records, max_bytes))
            .collect();
        let want = per_fetch as u64 * batch_len as u64;
        g.throughput(Throughput::Bytes(want));
        let mut next = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                let f = frames[next].clone();
                next = (next + 1) % frames.len();
                let Outcome::RespondParts(parts) = rt.block_on(handle_frame(&broker, f)) else {
                    panic!("fetch did not answer with parts");
                };
                // The record bytes leave as one file range, whole batches.
                let file: u64 = parts
                    .iter()
                    .map(|p| match p {
                        Part::File(r) => r.len,
                        Part::Bytes(_) => 0,
                    })
                    .sum();
                assert_eq!(file, want);
                black_box(parts)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
