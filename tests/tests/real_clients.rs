//! Unmodified Kafka clients against the real `gregor` binary: librdkafka
//! (kcat, confluent-kafka), kafka-python (modern and the seed's 0.10.1
//! protocol) and aiokafka.
//!
//! These need kcat and the `.venv` with the Python clients; `scripts/test.sh`
//! installs both and runs them with `--include-ignored`.

use std::path::Path;
use std::process::Command;

use tests::{BrokerProcess, roundtrip, run_ok};

const NEEDS_CLIENTS: &str = "needs kcat and .venv; scripts/test.sh installs them and runs this";

fn check(out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Magic bytes of the entries in one segment file.
fn segment_magics(log: &Path) -> Vec<u8> {
    let buf = std::fs::read(log).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 17 <= buf.len() {
        let size = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        if size <= 0 {
            break;
        }
        out.push(buf[pos + 16]);
        pos += 12 + size as usize;
    }
    out
}

#[test]
#[ignore = "needs kcat and .venv; scripts/test.sh installs them and runs this"]
fn kcat_lists_the_broker_and_round_trips_keyed_records_with_headers() {
    let _ = NEEDS_CLIENTS;
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &["num.partitions=3"]);
    let meta = run_ok(Command::new("kcat").args(["-b", &b.bootstrap(), "-L"]));
    let meta = String::from_utf8_lossy(&meta.stdout);
    assert!(
        meta.contains(&format!("broker 0 at 127.0.0.1:{}", b.port)),
        "{meta}"
    );

    let input: String = (0..1000).map(|i| format!("key{i}\tvalue{i}\n")).collect();
    let mut producer = Command::new("kcat")
        .args([
            "-b",
            &b.bootstrap(),
            "-P",
            "-t",
            "kc",
            "-K",
            "\t",
            "-z",
            "snappy",
            "-H",
            "h=v",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(producer.wait().unwrap().success());

    let out = run_ok(Command::new("kcat").args([
        "-b",
        &b.bootstrap(),
        "-C",
        "-t",
        "kc",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p %o %k %s %h\n",
    ]));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1000);
    let mut last_offset = std::collections::BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        let (p, o, k, v, h) = (f[0], f[1].parse::<i64>().unwrap(), f[2], f[3], f[4]);
        assert_eq!(v, format!("value{}", &k[3..]));
        assert_eq!(h, "h=v");
        // Per-partition order and murmur2 placement (same key → same partition).
        let prev = last_offset.insert(p.to_owned(), o);
        assert!(prev.is_none_or(|prev| prev < o));
        seen.insert(k.to_owned());
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(last_offset.len(), 3, "keys spread over all partitions");
    assert!(b.terminate().success());
}

#[test]
#[ignore = "needs kcat and .venv; scripts/test.sh installs them and runs this"]
fn python_clients_round_trip_10000_keyed_records_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &["num.partitions=3"]);
    for (producer, consumer) in [
        ("confluent", "kafka-python"),
        ("kafka-python", "aiokafka"),
        ("aiokafka", "confluent"),
    ] {
        let topic = format!("rt-{producer}");
        let out = roundtrip(&[producer, consumer, &b.bootstrap(), &topic, "10000"]);
        let stdout = check(out);
        assert!(stdout.contains("partitions [0, 1, 2]"), "{stdout}");
    }
    assert!(b.terminate().success());
}

#[test]
#[ignore = "needs kcat and .venv; scripts/test.sh installs them and runs this"]
fn every_codec_round_trips_with_librdkafka_and_kafka_python() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &["num.partitions=3"]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for (producer, consumer) in [("confluent", "kafka-python"), ("kafka-python", "confluent")] {
            let topic = format!("codec-{codec}-{producer}");
            check(roundtrip(&[
                producer,
                consumer,
                &b.bootstrap(),
                &topic,
                "500",
                codec,
            ]));
        }
    }
    assert!(b.terminate().success());
}

#[test]
#[ignore = "needs kcat and .venv; scripts/test.sh installs them and runs this"]
fn the_seeds_v1_messages_are_stored_as_v1_and_read_by_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &["num.partitions=1"]);
    // kafka-python in the 0.10.1 protocol: Produce v2 with magic-1 messages.
    check(roundtrip(&[
        "kafka-python",
        "kafka-python",
        &b.bootstrap(),
        "seed",
        "300",
        "gzip",
        "--legacy",
    ]));
    let log = dir.path().join("seed-0/00000000000000000000.log");
    let magics = segment_magics(&log);
    assert!(
        !magics.is_empty() && magics.iter().all(|&m| m == 1),
        "{magics:?}"
    );
    // librdkafka and a modern kafka-python read them back.
    let out = run_ok(Command::new("kcat").args([
        "-b",
        &b.bootstrap(),
        "-C",
        "-t",
        "seed",
        "-e",
        "-q",
        "-f",
        "%o\n",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 300);
    let n = check(roundtrip(&[
        "count",
        "kafka-python",
        &b.bootstrap(),
        "seed",
    ]));
    assert_eq!(n.trim(), "300");
    // And the legacy client reads v2 batches written by librdkafka.
    let input: String = (0..200).map(|i| format!("m{i}\n")).collect();
    let mut p = Command::new("kcat")
        .args(["-b", &b.bootstrap(), "-P", "-t", "modern", "-z", "lz4"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(p.wait().unwrap().success());
    assert_eq!(
        segment_magics(&dir.path().join("modern-0/00000000000000000000.log"))[0],
        2
    );
    let n = check(roundtrip(&[
        "count",
        "kafka-python",
        &b.bootstrap(),
        "modern",
        "--legacy",
    ]));
    assert_eq!(n.trim(), "200");
    assert!(b.terminate().success());
}

#[test]
#[ignore = "needs kcat and .venv; scripts/test.sh installs them and runs this"]
fn acknowledged_records_survive_sigterm_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &["num.partitions=3"]);
    let port = b.port;
    check(roundtrip(&[
        "confluent",
        "kafka-python",
        &b.bootstrap(),
        "durable",
        "3000",
    ]));
    assert!(b.terminate().success());
    let b = BrokerProcess::restart_like(port, dir.path(), &["num.partitions=3"]);
    let n = check(roundtrip(&[
        "count",
        "kafka-python",
        &b.bootstrap(),
        "durable",
    ]));
    assert_eq!(n.trim(), "3000");
    check(roundtrip(&[
        "kafka-python",
        "kafka-python",
        &b.bootstrap(),
        "durable2",
        "2000",
    ]));
    b.kill9();
    let b = BrokerProcess::restart_like(port, dir.path(), &["num.partitions=3"]);
    let n = check(roundtrip(&[
        "count",
        "kafka-python",
        &b.bootstrap(),
        "durable2",
    ]));
    assert_eq!(n.trim(), "2000");
    let n = check(roundtrip(&[
        "count",
        "confluent",
        &b.bootstrap(),
        "durable",
    ]));
    assert_eq!(n.trim(), "3000");
    assert!(b.terminate().success());
}
