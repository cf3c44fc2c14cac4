//! acks=0, 1 and all deliver with librdkafka and kafka-python; consumers
//! seeking by timestamp (ListOffsets through the time index) land on the
//! right offset (spec: E2E-7, E2E-8).

use std::process::Command;

use tests::*;

const N: usize = 1_000;

/// Records as consumed, keyed by their seq header, must equal what was
/// sent (payload and partition), whatever the producer learnt.
fn assert_delivered(b: &Broker, sent: &[Rec], got: &[Rec], what: &str) {
    assert_eq!(
        got.len(),
        sent.len(),
        "{what}: record count\n{}",
        b.log_tail()
    );
    let mut got: Vec<&Rec> = got.iter().collect();
    got.sort_by_key(|r| seq_of(r));
    for (i, (s, g)) in sent.iter().zip(&got).enumerate() {
        assert_eq!(s.payload(), g.payload(), "{what}: record {i}");
    }
}

fn acks(driver: &str, level: &str, extra: &[&str]) {
    let Some(py) = python() else { return };
    let b = Broker::start(&["num.partitions=3"]);
    let topic = format!("acks-{}", level.replace('-', "m"));
    let sent = keyed_records(N);
    let mut args = vec!["--acks", level];
    args.extend_from_slice(extra);
    let acked = py_produce(&py, driver, &b, &topic, &sent, &args);
    assert_eq!(acked.len(), N, "{driver} acks={level}: completions");
    let got = py_consume(&py, "confluent.py", &b, &topic, 3, N, &["--idle", "0.5"]);
    assert_delivered(&b, &sent, &got, &format!("{driver} acks={level}"));
    if level != "0" {
        // With acknowledgements the producer learnt the real offsets.
        assert_same(&b, &acked, &got);
    }
}

#[test]
fn librdkafka_acks_0() {
    acks("confluent.py", "0", &[]);
}

#[test]
fn librdkafka_acks_1() {
    acks("confluent.py", "1", &[]);
}

#[test]
fn librdkafka_acks_all() {
    acks("confluent.py", "all", &[]);
}

#[test]
fn kafka_python_acks_0() {
    acks("kafka_python.py", "0", &[]);
}

#[test]
fn kafka_python_acks_1() {
    // Not idempotent with acks=1: pipelined requests must keep their order.
    acks("kafka_python.py", "1", &[]);
}

#[test]
fn kafka_python_acks_all() {
    acks("kafka_python.py", "-1", &[]);
}

const BASE: i64 = 1_700_000_000_000;

/// `n` records for partition 0 with timestamps BASE, BASE+10, ….
fn timed(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let mut r = Rec::keyed(i);
            r.partition = 0;
            r.timestamp = BASE + 10 * i as i64;
            r
        })
        .collect()
}

/// Asks both clients' offsets_for_times for each (target, expected offset).
fn check_lookups(py: &std::path::Path, b: &Broker, topic: &str, cases: &[(i64, i64)]) {
    let targets: Vec<String> = cases.iter().map(|c| c.0.to_string()).collect();
    for driver in ["confluent.py", "kafka_python.py"] {
        let out = run_ok(
            py_client(py, driver)
                .args(["offsets-for-times", "--bootstrap", &b.bootstrap()])
                .args(["--topic", topic, "--partition", "0", "--timestamp"])
                .args(&targets),
            CLIENT_LIMIT,
            b,
        );
        let got: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().expect("an offset"))
            .collect();
        assert_eq!(got.len(), cases.len(), "{driver}: one answer per target");
        for (&(ts, want), got) in cases.iter().zip(got) {
            assert_eq!(got, want, "{driver}: offsets_for_times({ts})");
        }
    }
}

/// One record per batch (kafka-python waiting for each acknowledgement),
/// timestamps BASE, BASE+10, …; lookups by timestamp land on the first
/// offset whose timestamp is >= the target, through the time index.
#[test]
fn seek_by_timestamp_lands_on_the_right_offset() {
    let Some(py) = python() else { return };
    const M: usize = 300;
    let b = Broker::start(&["num.partitions=1", "log.index.interval.bytes=256"]);
    let topic = "by-time";
    let acked = py_produce(&py, "kafka_python.py", &b, topic, &timed(M), &["--sync"]);
    assert_eq!(acked.len(), M);
    let cases = [
        (BASE - 1_000, 0),
        (BASE, 0),
        (BASE + 10 * 150, 150),
        (BASE + 10 * 150 - 5, 150),
        (BASE + 10 * 277 + 1, 278),
        (BASE + 10 * (M as i64 - 1), M as i64 - 1),
        // None at or after the target: both clients report -1.
        (BASE + 10 * M as i64, -1),
    ];
    check_lookups(&py, &b, topic, &cases);
    // A real consumer seek: kcat starting at a timestamp.
    if let Some(kcat) = kcat() {
        let ts = BASE + 10 * 221 - 3;
        let out = run_ok(
            Command::new(&kcat)
                .args(["-b", &b.bootstrap(), "-C", "-t", topic, "-p", "0"])
                .args(["-o", &format!("s@{ts}"), "-c", "1", "-f", "%o %T %k\n"]),
            CLIENT_LIMIT,
            &b,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("221 {} key-000221", BASE + 2210),
            "kcat -o s@{ts}"
        );
    }
}

/// A timestamp lookup answers with the first *record* at or after the
/// target, looking inside the batch as Kafka does, so a consumer seeking
/// into a large batch lands exactly on the record (spec: STO-47).
#[test]
fn seek_by_timestamp_inside_a_batch() {
    let Some(py) = python() else { return };
    let b = Broker::start(&["num.partitions=1"]);
    let topic = "by-time-batched";
    // librdkafka puts these 1,000 records in a handful of large batches.
    let acked = py_produce(&py, "confluent.py", &b, topic, &timed(N), &[]);
    assert_eq!(acked.len(), N);
    check_lookups(
        &py,
        &b,
        topic,
        &[(BASE + 10 * 500, 500), (BASE + 10 * 777 + 1, 778)],
    );
}
