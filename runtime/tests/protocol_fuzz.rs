//! Property tests over the request decoder: arbitrary, truncated and
//! bit-flipped frames never panic the broker; each gets a response or a
//! closed connection, and the broker keeps answering (spec: PRO-4, PRO-5).
//! The same entry point is the `cargo fuzz` target in `runtime/fuzz/`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::protocol::{Outcome, SUPPORTED_APIS, handle_frame};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, CreateTopicsRequest, FetchRequest, MetadataRequest,
    ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use proptest::prelude::*;

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::from_pairs([
        ("log.dirs", dir.path().display().to_string()),
        ("num.partitions", "2".to_owned()),
    ])
    .unwrap();
    let broker = Arc::new(Broker::open(config).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        _dir: dir,
        broker,
        rt,
    }
}

fn body<R: Request>(version: i16, req: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut out = BytesMut::new();
    header.encode(&mut out, R::header_version(version)).unwrap();
    req.encode(&mut out, version).unwrap();
    out.to_vec()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Valid requests of several APIs and versions, to be damaged.
fn seeds() -> Vec<Vec<u8>> {
    let records = {
        let mut b = gregor_runtime::storage::record::BatchBuilder::new(
            2,
            gregor_runtime::storage::record::Codec::Gzip,
            0,
        )
        .unwrap();
        b.append(1, Some(b"k"), Some(b"v"), &[]).unwrap();
        Bytes::from(b.build().unwrap())
    };
    vec![
        body(3, &ApiVersionsRequest::default()),
        body(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("fz"))),
            ])),
        ),
        body(
            4,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("fz"))),
            ])),
        ),
        body(
            5,
            &CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(name("made"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        ),
        body(
            9,
            &ProduceRequest::default().with_acks(1).with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("fz"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records.clone())),
                    ]),
            ]),
        ),
        body(
            7,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name("fz"))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(1)
                                .with_records(Some(records)),
                        ]),
                ]),
        ),
        body(
            12,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name("fz"))
                        .with_partitions(vec![
                            FetchPartition::default().with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
    ]
}

thread_local! {
    /// One broker per test thread, shared by all cases (dropped, with its
    /// directory, when the thread ends).
    static FIXTURE: Fixture = fixture();
}

fn with_fixture(check: impl FnOnce(&Fixture)) {
    FIXTURE.with(check);
}

fn answer(f: &Fixture, frame: Vec<u8>) -> Outcome {
    f.rt.block_on(async {
        match handle_frame(&f.broker, Bytes::from(frame)).await {
            // An acks=all Produce answers once replicated (spec: PRO-91).
            Outcome::Deferred(task) => task.await.expect("the deferred answer"),
            other => other,
        }
    })
}

fn still_serving(f: &Fixture) {
    match answer(f, body(3, &ApiVersionsRequest::default())) {
        Outcome::Respond(_) => {}
        other => panic!("broker stopped answering: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    // Arbitrary bytes after a valid api key and version: every supported
    // API and version sees garbage bodies.
    #[test]
    fn garbage_bodies_never_panic(api in 0usize..SUPPORTED_APIS.len(), v in 0i16..13, tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let spec = SUPPORTED_APIS[api];
        let v = v.clamp(spec.min, spec.max);
        let mut frame = Vec::new();
        frame.extend_from_slice(&(spec.key as i16).to_be_bytes());
        frame.extend_from_slice(&v.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&tail);
        with_fixture(|f| {
            let _ = answer(f, frame);
            still_serving(f);
        });
    }

    // Valid requests, then truncated or with bytes flipped.
    #[test]
    fn damaged_requests_never_panic(seed in 0usize..7, cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6)) {
        let mut frame = seeds()[seed].clone();
        for (at, x) in flips {
            let i = at.index(frame.len());
            frame[i] ^= x;
        }
        let keep = cut.index(frame.len() + 1);
        frame.truncate(keep.max(frame.len() / 2));
        with_fixture(|f| {
            let _ = answer(f, frame);
            still_serving(f);
        });
    }

    // Completely arbitrary frames.
    #[test]
    fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
        with_fixture(|f| {
            let _ = answer(f, frame);
            still_serving(f);
        });
    }
}

// The undamaged seeds are valid: each is answered (a test of the test).
#[test]
fn seeds_are_answered() {
    let f = fixture();
    for (i, s) in seeds().into_iter().enumerate() {
        match answer(&f, s) {
            Outcome::Respond(_) | Outcome::RespondParts(_) => {}
            other => panic!("seed {i}: {other:?}"),
        }
    }
}
