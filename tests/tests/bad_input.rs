//! Bad input on raw connections while a real producer runs on another:
//! random bytes, truncated headers, absurd frame lengths, unknown API keys
//! and versions, and a Produce with a corrupted CRC each get a Kafka error
//! or a closed connection; the broker keeps serving and loses nothing that
//! was acknowledged (spec: E2E-9).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use tests::*;

/// What the broker did with a bad request.
#[derive(Debug, PartialEq, Eq)]
enum Reaction {
    /// Closed the connection (after any number of response frames).
    Closed { frames: usize },
    /// Answered with a frame and kept the connection open.
    Answered(Vec<u8>),
}

fn connect(b: &Broker) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connecting to the broker");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s
}

/// Reads one size-prefixed frame; `None` if the connection closed first.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("no answer and no close within 5 s: {e}"),
    }
    let n = i32::from_be_bytes(len);
    assert!((0..1 << 24).contains(&n), "response frame of {n} bytes");
    let mut body = vec![0u8; n as usize];
    s.read_exact(&mut body).expect("reading a response frame");
    Some(body)
}

/// Sends `bytes`, closes our write side, and reads until the broker closes.
fn send_then_eof(b: &Broker, bytes: &[u8]) -> Reaction {
    let mut s = connect(b);
    // The broker may close before reading everything: ignore write errors.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut frames = 0;
    while read_frame(&mut s).is_some() {
        frames += 1;
    }
    Reaction::Closed { frames }
}

/// Sends one request frame and reads the reaction without closing first.
fn send_frame(s: &mut TcpStream, body: &[u8]) -> Reaction {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    s.write_all(&f).expect("sending a frame");
    match read_frame(s) {
        None => Reaction::Closed { frames: 0 },
        Some(r) => Reaction::Answered(r),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A request header v1: api key, version, correlation id, client id.
fn header(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation.to_be_bytes());
    string(&mut h, "gregor-e2e-raw");
    h
}

/// A Produce v2 request (acks=1) carrying one v1 message, the seed's
/// format: offset, size, crc, magic 1, attributes, timestamp, key, value.
/// `corrupt` flips a bit of the stored CRC.
fn produce_v2(topic: &str, correlation: i32, corrupt: bool) -> Vec<u8> {
    let mut msg = vec![1u8, 0]; // magic, attributes
    msg.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    for field in [&b"raw-key"[..], &b"raw-value"[..]] {
        msg.extend_from_slice(&(field.len() as i32).to_be_bytes());
        msg.extend_from_slice(field);
    }
    let mut crc = crc32fast::hash(&msg);
    if corrupt {
        crc ^= 1;
    }
    let mut set = 0i64.to_be_bytes().to_vec();
    set.extend_from_slice(&((msg.len() + 4) as i32).to_be_bytes());
    set.extend_from_slice(&crc.to_be_bytes());
    set.extend_from_slice(&msg);
    let mut r = header(0, 2, correlation);
    r.extend_from_slice(&1i16.to_be_bytes()); // acks
    r.extend_from_slice(&5_000i32.to_be_bytes()); // timeout
    r.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut r, topic);
    r.extend_from_slice(&1i32.to_be_bytes()); // one partition
    r.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    r.extend_from_slice(&(set.len() as i32).to_be_bytes());
    r.extend_from_slice(&set);
    r
}

/// The error code of the only partition in a Produce v2 response.
fn produce_v2_error(resp: &[u8], correlation: i32) -> i16 {
    assert_eq!(&resp[..4], &correlation.to_be_bytes(), "correlation id");
    let mut p = 4;
    let n = |p: &mut usize, k: usize| {
        let s = &resp[*p..*p + k];
        *p += k;
        s.to_vec()
    };
    assert_eq!(n(&mut p, 4), 1i32.to_be_bytes(), "one topic");
    let tlen = i16::from_be_bytes(n(&mut p, 2).try_into().expect("i16")) as usize;
    p += tlen;
    assert_eq!(n(&mut p, 4), 1i32.to_be_bytes(), "one partition");
    p += 4;
    i16::from_be_bytes(n(&mut p, 2).try_into().expect("i16"))
}

/// ApiVersions v0 on a fresh connection answers with error 0.
fn assert_serving(b: &Broker) {
    let mut s = connect(b);
    match send_frame(&mut s, &header(18, 0, 7)) {
        Reaction::Answered(r) => {
            assert_eq!(&r[..4], &7i32.to_be_bytes());
            assert_eq!(&r[4..6], &0i16.to_be_bytes(), "ApiVersions error");
        }
        other => panic!("broker stopped serving: {other:?}\n{}", b.log_tail()),
    }
}

/// A small deterministic generator (xorshift64*) for the random inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn bad_input_while_a_producer_runs() {
    let Some(py) = python() else { return };
    const N: usize = 6_000;
    let b = Broker::start(&["num.partitions=3"]);
    // The raw topic, created by a real client.
    let mut one = keyed_records(1);
    one[0].partition = 0;
    py_produce(&py, "kafka_python.py", &b, "raw", &one, &[]);

    let input = b.scratch("live-in.txt");
    write_recs(&input, &keyed_records(N)).expect("writing input");
    let progress = b.scratch("live-progress");
    let producer = Background::spawn(
        py_client(&py, "kafka_python.py")
            .args(["produce", "--bootstrap", &b.bootstrap(), "--topic", "live"])
            .arg("--input")
            .arg(&input)
            .arg("--progress")
            .arg(&progress)
            .args(["--rate", "1500", "--timeout", "60"]),
        &b.scratch(""),
    );
    // Bad input starts once the producer is under way…
    wait_progress(&progress, (N / 10) as u64, Duration::from_secs(60));

    // Random bytes, half of them behind a plausible length prefix so that
    // the header decoder sees them.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for i in 0..60 {
        let n = 1 + (rng.next() % 300) as usize;
        let mut bytes = rng.bytes(n);
        if i % 2 == 0 && n > 4 {
            bytes[..4].copy_from_slice(&((n - 4) as i32).to_be_bytes());
        }
        let r = send_then_eof(&b, &bytes);
        assert!(
            matches!(r, Reaction::Closed { .. }),
            "random input {i}: {r:?}"
        );
    }
    assert_serving(&b);

    // Truncated headers: a frame too short for api key, version, correlation.
    for len in [1usize, 2, 3, 5, 7] {
        let mut s = connect(&b);
        let body = &header(3, 1, 9)[..len];
        assert_eq!(
            send_frame(&mut s, body),
            Reaction::Closed { frames: 0 },
            "truncated header of {len} bytes"
        );
    }
    // A header whose client id runs past the frame.
    {
        let mut s = connect(&b);
        let mut body = header(3, 1, 9);
        body.truncate(body.len() - 3);
        assert_eq!(send_frame(&mut s, &body), Reaction::Closed { frames: 0 });
    }
    // A length prefix with nothing after it, then EOF.
    assert_eq!(
        send_then_eof(&b, &100i32.to_be_bytes()),
        Reaction::Closed { frames: 0 }
    );
    assert_serving(&b);

    // Absurd frame lengths: negative, zero, above socket.request.max.bytes.
    for len in [-1i32, i32::MIN, 0, i32::MAX, 200 * 1024 * 1024] {
        let mut s = connect(&b);
        let _ = s.write_all(&len.to_be_bytes());
        let _ = s.write_all(&[0u8; 16]);
        assert_eq!(
            read_frame(&mut s),
            None,
            "frame length {len}: connection kept"
        );
    }
    assert_serving(&b);

    // Unknown API keys: Kafka closes the connection.
    for key in [99i16, 1000, -5, i16::MAX] {
        let mut s = connect(&b);
        assert_eq!(
            send_frame(&mut s, &header(key, 0, 11)),
            Reaction::Closed { frames: 0 },
            "api key {key}"
        );
    }
    // Unknown versions: ApiVersions answers error 35 with a v0 body and
    // keeps the connection; other APIs close it.
    {
        let mut s = connect(&b);
        match send_frame(&mut s, &header(18, 99, 12)) {
            Reaction::Answered(r) => {
                assert_eq!(&r[..4], &12i32.to_be_bytes());
                assert_eq!(&r[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
            }
            other => panic!("ApiVersions v99: {other:?}"),
        }
        // The same connection still works.
        match send_frame(&mut s, &header(18, 0, 13)) {
            Reaction::Answered(r) => assert_eq!(&r[4..6], &0i16.to_be_bytes()),
            other => panic!("ApiVersions v0 after v99: {other:?}"),
        }
    }
    for (key, version) in [(3i16, 99i16), (0, 77), (1, 1000)] {
        let mut s = connect(&b);
        assert_eq!(
            send_frame(&mut s, &header(key, version, 14)),
            Reaction::Closed { frames: 0 },
            "api {key} v{version}"
        );
    }
    assert_serving(&b);

    // Produce v2 with a v1 message: correct CRC stores it, a corrupted CRC
    // gets CORRUPT_MESSAGE (2) and the connection stays usable.
    {
        let mut s = connect(&b);
        let Reaction::Answered(ok) = send_frame(&mut s, &produce_v2("raw", 21, false)) else {
            panic!("valid Produce v2 unanswered\n{}", b.log_tail());
        };
        assert_eq!(produce_v2_error(&ok, 21), 0, "valid Produce v2");
        let Reaction::Answered(bad) = send_frame(&mut s, &produce_v2("raw", 22, true)) else {
            panic!("corrupted Produce v2 unanswered\n{}", b.log_tail());
        };
        assert_eq!(produce_v2_error(&bad, 22), 2, "CORRUPT_MESSAGE");
        let Reaction::Answered(ok) = send_frame(&mut s, &produce_v2("raw", 23, false)) else {
            panic!("Produce v2 after a corrupt one unanswered");
        };
        assert_eq!(
            produce_v2_error(&ok, 23),
            0,
            "valid Produce v2 after a corrupt one"
        );
    }
    assert_serving(&b);

    // …and must have ended before the producer did.
    let during: usize = std::fs::read_to_string(&progress)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        during < N,
        "the producer finished before the bad input was sent"
    );
    let (status, out, err) = producer.wait(Duration::from_secs(120));
    assert!(status.success(), "producer failed: {err}\n{}", b.log_tail());
    let acked = parse_recs(&out);
    assert_eq!(acked.len(), N);
    let got = py_consume(&py, "confluent.py", &b, "live", 3, N, &["--idle", "0.5"]);
    assert_same(&b, &acked, &got);
    // The raw topic holds the first record and the two valid raw messages.
    let raw = py_consume(&py, "confluent.py", &b, "raw", 1, 3, &["--idle", "0.5"]);
    assert_eq!(
        raw.len(),
        3,
        "raw topic: corrupt message stored or valid one lost"
    );
    assert_eq!(raw[1].value.as_deref(), Some(&b"raw-value"[..]));
}
