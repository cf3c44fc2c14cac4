//! Produce, Fetch, ListOffsets, DeleteRecords and InitProducerId over TCP,
//! across versions and record formats (spec: PRO-28, PRO-70 … PRO-82).

mod protocol_support;

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gregor_runtime::storage::record::{BatchBuilder, Codec, decode_records};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteRecordsRequest, FetchRequest, FetchResponse,
    InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use protocol_support::{Conn, TestBroker, encode_request, get_str, put_str};

/// Wall-clock milliseconds: records need realistic timestamps, or the log
/// rolls a segment per batch (segment.ms counts from the first timestamp).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

async fn create_topic(c: &mut Conn, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    assert_eq!(c.call(4, 1, &req).await.topics[0].error_code, 0);
}

/// A v2 batch of `n` records `k{i}`/`v{i}` with timestamps `ts0 + i`.
fn batch(n: usize, ts0: i64, codec: Codec) -> Bytes {
    let mut b = BatchBuilder::new(2, codec, 0).unwrap();
    for i in 0..n {
        b.append(
            ts0 + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(format!("v{i}").as_bytes()),
            &[],
        )
        .unwrap();
    }
    Bytes::from(b.build().unwrap())
}

fn idempotent_batch(n: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = BatchBuilder::new(2, Codec::None, 0)
        .unwrap()
        .producer(pid, epoch, seq);
    for i in 0..n {
        b.append(
            now_ms(),
            None,
            Some(format!("s{}", seq as usize + i).as_bytes()),
            &[],
        )
        .unwrap();
    }
    Bytes::from(b.build().unwrap())
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

fn first_partition(resp: &ProduceResponse) -> (i16, i64) {
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

fn fetched(resp: &FetchResponse) -> (i16, i64, Bytes) {
    let p = &resp.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

/// Magic bytes of the entries in a record set.
fn magics(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 17 <= buf.len() {
        out.push(buf[pos + 16]);
        let size = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        pos += 12 + size as usize;
    }
    out
}

// spec: PRO-70, PRO-74
#[tokio::test]
async fn produce_and_fetch_every_modern_version_and_codec() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 2).await;
    let mut expected = 0;
    for (i, v) in (3..=9).enumerate() {
        let codec = Codec::ALL[i % Codec::ALL.len()];
        let resp = c
            .call(
                v,
                10 + i32::from(v),
                &produce_req("t", 1, batch(10, now_ms(), codec), 1),
            )
            .await;
        assert_eq!(
            first_partition(&resp),
            (0, expected),
            "produce v{v} {codec:?}"
        );
        expected += 10;
    }
    for v in 4..=12 {
        let resp = c
            .call(v, 100 + i32::from(v), &fetch_req("t", 1, 0, 0, 0))
            .await;
        let (err, hw, records) = fetched(&resp);
        assert_eq!((err, hw), (0, 70), "fetch v{v}");
        let recs = decode_records(&records, 0).unwrap();
        assert_eq!(
            recs.len(),
            70,
            "fetch v{v}: {} bytes, magics {:?}",
            records.len(),
            magics(&records)
        );
        assert_eq!(recs[13].offset, 13);
        assert_eq!(recs[13].value.as_deref(), Some(&b"v3"[..]));
        assert_eq!(recs[13].key.as_deref(), Some(&b"k3"[..]));
    }
    // Fetch from the middle returns the batch holding the offset.
    let resp = c.call(11, 5, &fetch_req("t", 1, 35, 0, 0)).await;
    let recs = decode_records(&fetched(&resp).2, 0).unwrap();
    assert!(recs.iter().any(|r| r.offset == 35));
    assert_eq!(recs.last().unwrap().offset, 69);
    // Out of range and unknown partition.
    let resp = c.call(11, 6, &fetch_req("t", 1, 71, 0, 0)).await;
    assert_eq!(fetched(&resp).0, 1, "OFFSET_OUT_OF_RANGE");
    let resp = c.call(11, 7, &fetch_req("t", 5, 0, 0, 0)).await;
    assert_eq!(fetched(&resp).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    b.stop().await;
}

// spec: PRO-71
#[tokio::test]
async fn produce_errors_are_kafka_errors() {
    let b = TestBroker::start(&[("message.max.bytes", "2000")]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    // Corrupted CRC.
    let mut bad = batch(3, 1, Codec::None).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let resp = c
        .call(7, 1, &produce_req("t", 0, Bytes::from(bad), 1))
        .await;
    assert_eq!(first_partition(&resp).0, 2, "CORRUPT_MESSAGE");
    // Too large.
    let big = {
        let mut bld = BatchBuilder::new(2, Codec::None, 0).unwrap();
        bld.append(1, None, Some(&[7u8; 4000]), &[]).unwrap();
        Bytes::from(bld.build().unwrap())
    };
    let resp = c.call(7, 2, &produce_req("t", 0, big, 1)).await;
    assert_eq!(first_partition(&resp).0, 10, "MESSAGE_TOO_LARGE");
    // Unknown topic and partition.
    let resp = c
        .call(7, 3, &produce_req("ghost", 0, batch(1, 1, Codec::None), 1))
        .await;
    assert_eq!(first_partition(&resp).0, 3);
    let resp = c
        .call(7, 4, &produce_req("t", 9, batch(1, 1, Codec::None), -1))
        .await;
    assert_eq!(first_partition(&resp).0, 3);
    // Bad acks.
    let resp = c
        .call(7, 5, &produce_req("t", 0, batch(1, 1, Codec::None), 2))
        .await;
    assert_eq!(first_partition(&resp).0, 21, "INVALID_REQUIRED_ACKS");
    // spec: PRO-83 — clients may not write to the offsets topic, whether or
    // not it exists yet.
    let resp = c
        .call(
            7,
            7,
            &produce_req("__consumer_offsets", 0, batch(1, 1, Codec::None), 1),
        )
        .await;
    assert_eq!(first_partition(&resp).0, 17, "INVALID_TOPIC_EXCEPTION");
    // Nothing was written by any of these.
    let resp = c.call(11, 6, &fetch_req("t", 0, 0, 0, 0)).await;
    assert_eq!(fetched(&resp).1, 0);
    b.stop().await;
}

// spec: PRO-70
#[tokio::test]
async fn acks_zero_gets_no_response_but_is_written() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    c.send_raw(&encode_request(
        7,
        50,
        &produce_req("t", 0, batch(5, 1, Codec::None), 0),
    ))
    .await;
    // The next response on the connection is the fetch's, not the produce's.
    let resp = c.call(11, 51, &fetch_req("t", 0, 0, 2000, 1)).await;
    assert_eq!(fetched(&resp).1, 5);
    // acks=-1 (all) is answered too.
    let resp = c
        .call(8, 52, &produce_req("t", 0, batch(1, 1, Codec::None), -1))
        .await;
    assert_eq!(first_partition(&resp), (0, 5));
    b.stop().await;
}

// spec: PRO-72
#[tokio::test]
async fn fetch_long_poll_wakes_on_append_and_times_out() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    // Nothing arrives: the fetch answers empty after max_wait_ms.
    let started = Instant::now();
    let resp = c.call(11, 1, &fetch_req("t", 0, 0, 300, 1)).await;
    let waited = started.elapsed();
    assert!(fetched(&resp).2.is_empty());
    assert!(
        waited >= Duration::from_millis(280),
        "answered after {waited:?}"
    );
    // An append wakes a waiting fetch long before its 10 s deadline.
    let mut waiting = b.connect().await;
    waiting
        .send_raw(&encode_request(11, 2, &fetch_req("t", 0, 0, 10_000, 1)))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let resp = c
        .call(7, 3, &produce_req("t", 0, batch(2, 1, Codec::None), 1))
        .await;
    assert_eq!(first_partition(&resp).0, 0);
    let frame = waiting.recv_frame().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fetch not woken"
    );
    let mut frame = frame;
    assert_eq!(frame.get_i32(), 2);
    b.stop().await;
}

/// A Produce v2 request (hand-built) carrying `records`.
fn produce_v2_body(topic: &str, records: &[u8]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(1);
    body.put_i32(5000);
    body.put_i32(1);
    put_str(&mut body, topic);
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(records.len() as i32);
    body.put_slice(records);
    body
}

/// A Fetch v0–v3 request (hand-built).
fn fetch_legacy_body(v: i16, topic: &str, offset: i64) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(0);
    body.put_i32(0);
    if v >= 3 {
        body.put_i32(1 << 20);
    }
    body.put_i32(1);
    put_str(&mut body, topic);
    body.put_i32(1);
    body.put_i32(0);
    body.put_i64(offset);
    body.put_i32(1 << 20);
    body
}

/// Parses a Fetch v1–v3 response with one partition: (error, hw, records).
fn parse_fetch_legacy(mut r: Bytes) -> (i16, i64, Bytes) {
    r.get_i32(); // throttle
    assert_eq!(r.get_i32(), 1);
    get_str(&mut r);
    assert_eq!(r.get_i32(), 1);
    r.get_i32();
    let err = r.get_i16();
    let hw = r.get_i64();
    let n = r.get_i32() as usize;
    (err, hw, r.split_to(n))
}

// spec: PRO-70, PRO-74 — the seed's v1 messages in and out.
#[tokio::test]
async fn legacy_messages_round_trip_and_convert() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "legacy", 1).await;
    let t0 = now_ms();
    let mut v1 = BatchBuilder::new(1, Codec::None, 0).unwrap();
    for i in 0..3 {
        v1.append(t0 + i, Some(b"key"), Some(format!("m{i}").as_bytes()), &[])
            .unwrap();
    }
    let v1 = v1.build().unwrap();
    let mut r = c.call_raw(0, 2, 1, &produce_v2_body("legacy", &v1)).await;
    assert_eq!(r.get_i32(), 1);
    get_str(&mut r);
    assert_eq!(r.get_i32(), 1);
    assert_eq!((r.get_i32(), r.get_i16(), r.get_i64()), (0, 0, 0));
    assert_eq!(r.get_i64(), -1, "log_append_time under CreateTime");
    assert_eq!(r.get_i32(), 0, "throttle");
    // A v2 batch from a modern producer lands after them.
    let resp = c
        .call(
            7,
            2,
            &produce_req("legacy", 0, batch(2, t0 + 10, Codec::Gzip), 1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 3));
    // Fetch v3 (the seed's consumer) gets v1 messages only.
    let body = fetch_legacy_body(3, "legacy", 0);
    let (err, hw, records) = parse_fetch_legacy(c.call_raw(1, 3, 3, &body).await);
    assert_eq!((err, hw), (0, 5));
    assert!(
        magics(&records).iter().all(|&m| m == 1),
        "{:?}",
        magics(&records)
    );
    let recs = decode_records(&records, 0).unwrap();
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[4].value.as_deref(), Some(&b"v1"[..]));
    // Fetch v12 (flexible) gets v2 batches only.
    let resp = c.call(12, 4, &fetch_req("legacy", 0, 0, 0, 0)).await;
    let records = fetched(&resp).2;
    assert!(
        magics(&records).iter().all(|&m| m == 2),
        "{:?}",
        magics(&records)
    );
    let recs = decode_records(&records, 0).unwrap();
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[1].value.as_deref(), Some(&b"m1"[..]));
    assert_eq!(recs[1].timestamp, t0 + 1);
    // Produce v3+ refuses legacy messages; v0–2 refuse v2 batches.
    let resp = c
        .call(3, 5, &produce_req("legacy", 0, Bytes::from(v1.clone()), 1))
        .await;
    assert_ne!(first_partition(&resp).0, 0);
    let mut r = c
        .call_raw(
            0,
            2,
            6,
            &produce_v2_body("legacy", &batch(1, 1, Codec::None)),
        )
        .await;
    r.get_i32();
    get_str(&mut r);
    r.get_i32();
    r.get_i32();
    assert_ne!(r.get_i16(), 0);
    b.stop().await;
}

// spec: PRO-71 — LogAppendTime stamps the broker's clock.
#[tokio::test]
async fn log_append_time_is_stamped() {
    let b = TestBroker::start(&[("message.timestamp.type", "LogAppendTime")]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let resp = c
        .call(7, 1, &produce_req("t", 0, batch(2, 5, Codec::None), 1))
        .await;
    let stamped = resp.responses[0].partition_responses[0].log_append_time_ms;
    assert!(stamped >= before, "{stamped} < {before}");
    let recs = decode_records(
        &fetched(&c.call(11, 2, &fetch_req("t", 0, 0, 0, 0)).await).2,
        0,
    )
    .unwrap();
    assert!(recs.iter().all(|r| r.timestamp == stamped));
    b.stop().await;
}

fn list_offsets_req(topic: &str, ts: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts),
                ]),
        ])
}

// spec: PRO-76
#[tokio::test]
async fn list_offsets_earliest_latest_and_by_time() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    let base = now_ms() - 100_000;
    for i in 0..5 {
        let resp = c
            .call(
                7,
                i,
                &produce_req(
                    "t",
                    0,
                    batch(10, base + 1_000 * (i as i64 + 1), Codec::None),
                    1,
                ),
            )
            .await;
        assert_eq!(first_partition(&resp).0, 0);
    }
    for v in 1..=7 {
        let off = |ts| list_offsets_req("t", ts);
        let p = |r: kafka_protocol::messages::ListOffsetsResponse| {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.timestamp, p.offset)
        };
        assert_eq!(p(c.call(v, 1, &off(-2)).await).2, 0, "v{v} earliest");
        assert_eq!(p(c.call(v, 2, &off(-1)).await).2, 50, "v{v} latest");
        // Batch 3 holds timestamps 3000..3009 at offsets 20..29: the first
        // record at or after 3005 is inside it, at offset 25 (spec: STO-47).
        assert_eq!(
            p(c.call(v, 3, &off(base + 3_005)).await),
            (0, base + 3_005, 25),
            "v{v}"
        );
        assert_eq!(
            p(c.call(v, 4, &off(base + 99_999)).await),
            (0, -1, -1),
            "v{v}"
        );
    }
    let resp = c.call(7, 5, &list_offsets_req("t", -3)).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.timestamp, p.offset), (base + 5_009, 40));
    // v0 by hand: a list of offsets.
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(1);
    put_str(&mut body, "t");
    body.put_i32(1);
    body.put_i32(0);
    body.put_i64(-1);
    body.put_i32(1);
    let mut r = c.call_raw(2, 0, 6, &body).await;
    r.get_i32();
    get_str(&mut r);
    r.get_i32();
    assert_eq!(
        (r.get_i32(), r.get_i16(), r.get_i32(), r.get_i64()),
        (0, 0, 1, 50)
    );
    b.stop().await;
}

// spec: PRO-80, PRO-81, PRO-82
#[tokio::test]
async fn idempotent_produce_rejects_duplicates_and_gaps_across_restart() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let r1 = c.call(4, 1, &init).await;
    let r2 = c.call(0, 2, &init).await;
    assert_eq!(r1.error_code, 0);
    assert_ne!(r1.producer_id, r2.producer_id);
    let pid = r1.producer_id.0;
    let epoch = r1.producer_epoch;
    let resp = c
        .call(
            7,
            3,
            &produce_req("t", 0, idempotent_batch(3, pid, epoch, 0), -1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 0));
    let resp = c
        .call(
            7,
            4,
            &produce_req("t", 0, idempotent_batch(2, pid, epoch, 3), -1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 3));
    // A retry of the first batch: answered with its original offset, not written again.
    let resp = c
        .call(
            7,
            5,
            &produce_req("t", 0, idempotent_batch(3, pid, epoch, 0), -1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 0));
    // A gap.
    let resp = c
        .call(
            7,
            6,
            &produce_req("t", 0, idempotent_batch(1, pid, epoch, 9), -1),
        )
        .await;
    assert_eq!(first_partition(&resp).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    // Transactions are refused.
    let txn = InitProducerIdRequest::default().with_transactional_id(Some(
        kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("tx")),
    ));
    assert_ne!(c.call(4, 7, &txn).await.error_code, 0);

    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = b.connect().await;
    // Producer state came back from the log.
    let resp = c
        .call(
            7,
            8,
            &produce_req("t", 0, idempotent_batch(2, pid, epoch, 3), -1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 3), "duplicate after restart");
    let resp = c
        .call(
            7,
            9,
            &produce_req("t", 0, idempotent_batch(1, pid, epoch, 5), -1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 5));
    let resp = c.call(11, 10, &fetch_req("t", 0, 0, 0, 0)).await;
    assert_eq!(fetched(&resp).1, 6, "no duplicate, no gap");
    // Producer ids are never reused after a restart.
    let r3 = c.call(4, 11, &init).await;
    assert!(r3.producer_id.0 > r2.producer_id.0);
    b.stop().await;
}

// spec: PRO-6 — pipelined produces on one connection are applied in order.
#[tokio::test]
async fn pipelined_produces_are_applied_in_order() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    let mut burst = BytesMut::new();
    for i in 0..40 {
        let mut bld = BatchBuilder::new(2, Codec::None, 0).unwrap();
        bld.append(now_ms(), None, Some(format!("{i}").as_bytes()), &[])
            .unwrap();
        let records = Bytes::from(bld.build().unwrap());
        burst.extend_from_slice(&encode_request(7, i, &produce_req("t", 0, records, 1)));
    }
    c.send_raw(&burst).await;
    for i in 0..40 {
        let mut frame = c.recv_frame().await.unwrap();
        assert_eq!(frame.get_i32(), i);
    }
    let recs = decode_records(
        &fetched(&c.call(11, 99, &fetch_req("t", 0, 0, 0, 0)).await).2,
        0,
    )
    .unwrap();
    let values: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
    b.stop().await;
}

// spec: PRO-73 — max_bytes is shared by the partitions of one fetch, but
// the first partition with data always returns at least one batch (KIP-74).
#[tokio::test]
async fn fetch_limits_follow_kip_74() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 2).await;
    for p in 0..2 {
        for _ in 0..3 {
            let resp = c
                .call(
                    7,
                    1,
                    &produce_req("t", p, batch(20, now_ms(), Codec::None), 1),
                )
                .await;
            assert_eq!(first_partition(&resp).0, 0);
        }
    }
    let one_batch = batch(20, now_ms(), Codec::None).len() as i32;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(10) // far below one batch
        .with_topics(vec![
            FetchTopic::default().with_topic(name("t")).with_partitions(
                (0..2)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            ),
        ]);
    let resp = c.call(11, 2, &req).await;
    let parts = &resp.responses[0].partitions;
    let sizes: Vec<usize> = parts
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert_eq!(sizes[0], one_batch as usize, "exactly the first batch");
    assert_eq!(sizes[1], 0, "nothing left of max_bytes");
    // partition_max_bytes bounds each partition; room for two batches gives two.
    let req = fetch_req("t", 1, 0, 0, 0);
    let mut req = req;
    req.topics[0].partitions[0].partition_max_bytes = 2 * one_batch;
    let (_, _, records) = fetched(&c.call(11, 3, &req).await);
    assert_eq!(records.len(), 2 * one_batch as usize);
    b.stop().await;
}

// spec: PRO-72 — only appends to the fetched partitions end a long poll.
#[tokio::test]
async fn long_poll_ignores_other_partitions() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 2).await;
    let mut waiting = b.connect().await;
    let started = Instant::now();
    waiting
        .send_raw(&encode_request(11, 5, &fetch_req("t", 0, 0, 800, 1)))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = c
        .call(
            7,
            6,
            &produce_req("t", 1, batch(1, now_ms(), Codec::None), 1),
        )
        .await;
    assert_eq!(first_partition(&resp).0, 0);
    let mut frame = waiting.recv_frame().await.unwrap();
    assert_eq!(frame.get_i32(), 5);
    assert!(
        started.elapsed() >= Duration::from_millis(750),
        "woken by another partition"
    );
    b.stop().await;
}

fn delete_records_req(topic: &str, partition: i32, offset: i64) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ])
}

/// (error code, low watermark) of the only partition answered.
fn deleted(resp: &kafka_protocol::messages::DeleteRecordsResponse) -> (i16, i64) {
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
            })
            .count()
        })
        .unwrap_or(0)
}

// spec: PRO-28, REP-71, STO-51
#[tokio::test]
async fn delete_records_moves_the_log_start_and_survives_a_restart() {
    let extra = [
        ("log.segment.bytes", "600"),
        ("log.retention.check.interval.ms", "100"),
    ];
    let b = TestBroker::start(&extra).await;
    let mut c = b.connect().await;
    create_topic(&mut c, "t", 1).await;
    let compacted = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("kept"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact"))),
            ]),
    ]);
    assert_eq!(c.call(4, 1, &compacted).await.topics[0].error_code, 0);
    for i in 0..10 {
        let resp = c
            .call(
                7,
                i,
                &produce_req("t", 0, batch(10, now_ms(), Codec::None), 1),
            )
            .await;
        assert_eq!(first_partition(&resp), (0, 10 * i64::from(i)));
    }
    let resp = c
        .call(
            7,
            20,
            &produce_req("kept", 0, batch(10, now_ms(), Codec::None), 1),
        )
        .await;
    assert_eq!(first_partition(&resp).0, 0);
    let dir = b.dir.path().join("t-0");
    let segments_before = segment_count(&dir);
    assert!(segments_before >= 3, "{segments_before} segments");
    let earliest =
        |r: kafka_protocol::messages::ListOffsetsResponse| r.topics[0].partitions[0].offset;

    // v0: up to offset 25; reads below it fail, at it succeed.
    assert_eq!(
        deleted(&c.call(0, 30, &delete_records_req("t", 0, 25)).await),
        (0, 25)
    );
    assert_eq!(
        earliest(c.call(5, 31, &list_offsets_req("t", -2)).await),
        25
    );
    assert_eq!(
        fetched(&c.call(11, 32, &fetch_req("t", 0, 10, 0, 0)).await).0,
        1
    );
    let (err, _, recs) = fetched(&c.call(11, 33, &fetch_req("t", 0, 25, 0, 0)).await);
    assert_eq!(err, 0);
    let first = decode_records(&recs, 0).unwrap();
    assert!(
        first.iter().any(|r| r.offset == 25),
        "the record at the new start is served"
    );
    // v1: past the high watermark is refused and changes nothing.
    assert_eq!(
        deleted(&c.call(1, 34, &delete_records_req("t", 0, 101)).await),
        (1, -1)
    );
    assert_eq!(
        deleted(&c.call(1, 35, &delete_records_req("t", 0, -5)).await),
        (1, -1)
    );
    assert_eq!(
        earliest(c.call(5, 36, &list_offsets_req("t", -2)).await),
        25
    );
    // v2 (flexible): -1 means the high watermark.
    assert_eq!(
        deleted(&c.call(2, 37, &delete_records_req("t", 0, -1)).await),
        (0, 100)
    );
    // Below the start: nothing moves; the answer is the current start.
    assert_eq!(
        deleted(&c.call(2, 38, &delete_records_req("t", 0, 10)).await),
        (0, 100)
    );
    assert_eq!(
        deleted(&c.call(2, 39, &delete_records_req("t", 7, 0)).await),
        (3, -1)
    );
    assert_eq!(
        deleted(&c.call(2, 40, &delete_records_req("nope", 0, 0)).await),
        (3, -1)
    );
    // A compacted topic keeps its records (POLICY_VIOLATION).
    assert_eq!(
        deleted(&c.call(2, 41, &delete_records_req("kept", 0, 5)).await),
        (44, -1)
    );
    assert_eq!(
        earliest(c.call(5, 42, &list_offsets_req("kept", -2)).await),
        0
    );
    // The segments wholly below the start are deleted by retention.
    let deadline = Instant::now() + Duration::from_secs(20);
    while segment_count(&dir) != 1 {
        assert!(Instant::now() < deadline, "old segments never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The start survives a restart, and new records follow it.
    let data = b.stop().await;
    let b = TestBroker::start_in(data, &extra).await;
    let mut c = b.connect().await;
    assert_eq!(
        earliest(c.call(5, 1, &list_offsets_req("t", -2)).await),
        100
    );
    assert_eq!(
        fetched(&c.call(11, 2, &fetch_req("t", 0, 50, 0, 0)).await).0,
        1
    );
    let resp = c
        .call(
            7,
            3,
            &produce_req("t", 0, batch(10, now_ms(), Codec::None), 1),
        )
        .await;
    assert_eq!(first_partition(&resp), (0, 100));
    b.stop().await;
}
