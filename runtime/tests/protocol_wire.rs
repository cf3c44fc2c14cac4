//! Framing, headers, ApiVersions negotiation, pipelining and bad input,
//! against a real in-process server over TCP (spec: PRO-1..PRO-12).

mod protocol_support;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use protocol_support::{Conn, TestBroker, encode_request, raw_request};

fn api_versions_v3() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("gregor-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}

// spec: PRO-10
#[tokio::test]
async fn api_versions_table_is_shaped_like_kafka() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    for v in 0..=3 {
        let resp = c.call(v, 100 + i32::from(v), &api_versions_v3()).await;
        assert_eq!(resp.error_code, 0);
        let range = |k: ApiKey| {
            resp.api_keys
                .iter()
                .find(|a| a.api_key == k as i16)
                .map(|a| (a.min_version, a.max_version))
        };
        assert_eq!(range(ApiKey::ApiVersions), Some((0, 3)));
        assert_eq!(range(ApiKey::Metadata), Some((0, 12)));
        assert_eq!(range(ApiKey::CreateTopics), Some((0, 5)));
        assert_eq!(range(ApiKey::DeleteTopics), Some((0, 4)));
        // Fetch ≥ 13 needs topic ids, which Gregor does not serve.
        assert!(range(ApiKey::Fetch).is_none_or(|(_, max)| max <= 12));
    }
    b.stop().await;
}

// spec: PRO-11
#[tokio::test]
async fn api_versions_v3_sends_no_default_tagged_fields() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    c.send_raw(&encode_request(3, 7, &api_versions_v3())).await;
    let frame = c.recv_frame().await.unwrap();
    // Response header v0 (just the correlation id), even for v3.
    assert_eq!(&frame[..4], &7i32.to_be_bytes());
    // The body ends with throttle_time_ms and an empty tagged-field section.
    assert_eq!(&frame[frame.len() - 5..], &[0, 0, 0, 0, 0]);
    b.stop().await;
}

// spec: PRO-11
#[tokio::test]
async fn unsupported_api_versions_version_gets_error_35_and_stays_open() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    // kafka-python opens with v4; the body is flexible but we must not care.
    c.send_raw(&encode_request(4, 9, &api_versions_v3())).await;
    let mut frame = c.recv_frame().await.unwrap();
    assert_eq!(frame.get_i32(), 9);
    assert_eq!(frame.get_i16(), 35, "UNSUPPORTED_VERSION");
    let n = frame.get_i32();
    assert!(n >= 5);
    let mut saw_api_versions = false;
    for _ in 0..n {
        let (k, min, max) = (frame.get_i16(), frame.get_i16(), frame.get_i16());
        assert!(min <= max);
        if k == ApiKey::ApiVersions as i16 {
            saw_api_versions = (min, max) == (0, 3);
        }
    }
    assert!(saw_api_versions);
    assert_eq!(frame.remaining(), 0, "v0 body: nothing after the table");
    // The client retries on the same connection.
    let resp = c.call(3, 10, &api_versions_v3()).await;
    assert_eq!(resp.error_code, 0);
    b.stop().await;
}

// spec: PRO-6
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    let mut batch = BytesMut::new();
    for i in 0..50 {
        if i % 2 == 0 {
            batch.extend_from_slice(&encode_request(
                i16::from(i % 4 == 0),
                i,
                &api_versions_v3(),
            ));
        } else {
            let req = MetadataRequest::default().with_topics(None);
            batch.extend_from_slice(&encode_request(1 + (i % 12) as i16, i, &req));
        }
    }
    c.send_raw(&batch).await;
    for i in 0..50 {
        let mut frame = c.recv_frame().await.unwrap();
        assert_eq!(frame.get_i32(), i, "response {i} out of order");
    }
    b.stop().await;
}

/// Sends `bad` on one connection and checks the broker closes it while a
/// second connection keeps being served.
async fn closes_only_that_connection(b: &TestBroker, bad: &[u8]) {
    let mut good = b.connect().await;
    let mut evil = b.connect().await;
    evil.send_raw(bad).await;
    assert!(
        evil.is_closed().await,
        "connection kept open after {bad:02x?}"
    );
    let resp = good.call(0, 1, &api_versions_v3()).await;
    assert_eq!(resp.error_code, 0);
    let mut fresh = b.connect().await;
    assert_eq!(fresh.call(2, 2, &api_versions_v3()).await.error_code, 0);
}

// spec: PRO-1, PRO-2, PRO-4, PRO-5, PRO-12
#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let b = TestBroker::start(&[("socket.request.max.bytes", "1048576")]).await;
    // Absurd and negative frame lengths.
    closes_only_that_connection(&b, &[0x7f, 0xff, 0xff, 0xff]).await;
    closes_only_that_connection(&b, &[0xff, 0xff, 0xff, 0xfe]).await;
    // Just over socket.request.max.bytes: rejected from the size alone.
    closes_only_that_connection(&b, &(1_048_577i32).to_be_bytes()).await;
    // A frame too short for a header.
    closes_only_that_connection(&b, &[0, 0, 0, 2, 0, 18]).await;
    // Unknown API key, and an unsupported version of a known one.
    closes_only_that_connection(&b, &raw_request(9999, 0, 1, &[])).await;
    closes_only_that_connection(&b, &raw_request(3, 99, 1, &[0, 0, 0, 0])).await;
    // Truncated header: client id longer than the frame.
    let mut t = BytesMut::new();
    t.put_i32(12);
    t.put_slice(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 50, b'a', b'b']);
    closes_only_that_connection(&b, &t).await;
    // Metadata claiming 2^31-1 topics: rejected before any allocation.
    closes_only_that_connection(&b, &raw_request(3, 1, 1, &[0x7f, 0xff, 0xff, 0xff])).await;
    // Random bytes.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20 {
        let mut junk = BytesMut::new();
        let len = 8 + (seed % 64) as usize;
        junk.put_i32(len as i32);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.put_u8(seed as u8);
        }
        // Random bytes may form a valid request; either way the broker
        // answers or closes, and keeps serving others.
        let mut c = b.connect().await;
        c.send_raw(&junk).await;
        let mut good = b.connect().await;
        assert_eq!(good.call(1, 5, &api_versions_v3()).await.error_code, 0);
    }
    b.stop().await;
}

// spec: PRO-30
#[tokio::test]
async fn shutdown_answers_requests_already_read() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    c.send_raw(&encode_request(3, 42, &api_versions_v3())).await;
    let mut frame = c.recv_frame().await.unwrap();
    assert_eq!(frame.get_i32(), 42);
    let addr = b.addr;
    b.stop().await;
    assert!(c.is_closed().await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let _ = Conn::connect;
}

// spec: PRO-31
#[tokio::test]
async fn idle_connections_are_closed() {
    let b = TestBroker::start(&[("connections.max.idle.ms", "300")]).await;
    let mut c = b.connect().await;
    assert_eq!(c.call(0, 1, &api_versions_v3()).await.error_code, 0);
    let started = std::time::Instant::now();
    assert!(c.is_closed().await);
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    b.stop().await;
}

// spec: PRO-4 — bytes after the last field are ignored, as Kafka does.
// These are the exact bytes librdkafka 2.x sends for "all topics"
// (confluent-kafka's AdminClient.list_topics): Metadata v12 with three
// stray bytes after the body.
#[tokio::test]
async fn librdkafka_metadata_v12_with_stray_bytes_is_answered() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    c.send_raw(
        b"\x00\x00\x00\x19\x00\x03\x00\x0c\x00\x00\x00\x03\x00\x07rdkafka\x00\x00\x00\x00\x00\x01\x00\x00",
    )
    .await;
    let mut frame = c
        .recv_frame()
        .await
        .expect("the broker answers instead of closing the connection");
    assert_eq!(frame.get_i32(), 3, "correlation id");
}
