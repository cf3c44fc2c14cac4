//! Produce requests are answered the same whether they are appended on the
//! connection's task (small frames) or on the blocking pool (large frames,
//! or when appends may fsync), and every appended record reads back
//! (spec: PRO-90).

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::protocol::{INLINE_PRODUCE_MAX_BYTES, Outcome, Part, handle_frame};
use gregor_runtime::storage::record::{BatchBuilder, Codec};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ProduceRequest, ProduceResponse, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

const TOPIC: &str = "handoff";

fn frame<R: Request>(version: i16, req: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(3)
        .with_client_id(Some(StrBytes::from_static_str("test")));
    let mut out = BytesMut::new();
    header.encode(&mut out, R::header_version(version)).unwrap();
    req.encode(&mut out, version).unwrap();
    out.freeze()
}

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// `batches` v2 batches of 100 records with 100-byte values.
fn payload(batches: usize) -> Bytes {
    let mut out = Vec::new();
    for _ in 0..batches {
        let mut b = BatchBuilder::new(2, Codec::None, 0).unwrap();
        for i in 0..100 {
            b.append(1_700_000_000_000 + i, None, Some(&[b'x'; 100]), &[])
                .unwrap();
        }
        out.extend_from_slice(&b.build().unwrap());
    }
    Bytes::from(out)
}

fn broker(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Arc<Broker> {
    let mut pairs = vec![("log.dirs".to_owned(), dir.path().display().to_string())];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Arc::new(Broker::open(BrokerConfig::from_pairs(pairs).unwrap()).unwrap())
}

/// Produces `records` (v8, acks=1) and returns (error code, base offset).
async fn produce(broker: &Arc<Broker>, records: Bytes) -> (i16, i64) {
    let req = frame(
        8,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name())
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records)),
                    ]),
            ]),
    );
    let Outcome::Respond(mut resp) = handle_frame(broker, req).await else {
        panic!("produce not answered");
    };
    // Size prefix and a v0 response header (correlation id).
    resp.advance(8);
    let resp = ProduceResponse::decode(&mut resp, 8).unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Record bytes a v11 fetch from `offset` returns (as one file range).
async fn fetched_bytes(broker: &Arc<Broker>, offset: i64) -> u64 {
    let req = frame(
        11,
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(64 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name())
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(64 << 20),
                    ]),
            ]),
    );
    let Outcome::RespondParts(parts) = handle_frame(broker, req).await else {
        panic!("fetch not answered with parts");
    };
    parts
        .iter()
        .map(|p| match p {
            Part::File(r) => r.len,
            Part::Bytes(_) => 0,
        })
        .sum()
}

async fn check(extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir, extra);
    let create = frame(
        5,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name())
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
    );
    assert!(matches!(
        handle_frame(&broker, create).await,
        Outcome::Respond(_)
    ));
    let small = payload(1);
    let large = payload(16);
    assert!(small.len() < INLINE_PRODUCE_MAX_BYTES);
    assert!(large.len() > INLINE_PRODUCE_MAX_BYTES);
    // Alternate small and large requests: offsets follow on exactly.
    let mut next = 0;
    for records in [&small, &large, &small, &large] {
        let n = (records.len() / small.len()) as i64 * 100;
        assert_eq!(produce(&broker, records.clone()).await, (0, next));
        next += n;
    }
    let written = 2 * (small.len() + large.len()) as u64;
    assert_eq!(fetched_bytes(&broker, 0).await, written);
    // A malformed small request is refused with a typed error, as before.
    let mut bad = small.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(produce(&broker, Bytes::from(bad)).await.0, 2); // CORRUPT_MESSAGE
    assert_eq!(fetched_bytes(&broker, 0).await, written);
}

// spec: PRO-90
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_produce_requests_append_alike() {
    check(&[]).await;
}

// spec: PRO-90 — with a per-message flush every request uses the blocking
// pool; the answers are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_fsync_on_append_answers_alike() {
    check(&[("log.flush.interval.messages", "1")]).await;
}
