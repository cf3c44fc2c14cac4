//! Each real client produces 10,000 keyed records with headers to a
//! 3-partition topic and reads back exactly the same keys, values, headers
//! and partitions, in per-partition order (spec: E2E-1).
//!
//! Every client runs with its default settings. librdkafka (confluent-kafka,
//! kcat) pipelines many produce requests per connection and relies on the
//! broker applying them in request order (spec: E2E-2).

use std::process::Command;

use tests::*;

const N: usize = 10_000;
const PARTITIONS: u32 = 3;

fn broker() -> Broker {
    Broker::start(&["num.partitions=3"])
}

/// Checks the acknowledged partitions against the client's partitioner.
fn assert_partitioned(acked: &[Rec], expected: impl Fn(&[u8]) -> i32) {
    for r in acked {
        let key = r.key.as_deref().expect("keyed");
        assert_eq!(
            r.partition,
            expected(key),
            "record {} went to an unexpected partition",
            r.to_line()
        );
    }
    for p in 0..PARTITIONS as i32 {
        assert!(
            acked.iter().any(|r| r.partition == p),
            "no record in partition {p}"
        );
    }
}

#[test]
fn confluent_kafka_roundtrip() {
    let Some(py) = python() else { return };
    let b = broker();
    // An explicit CreateTopics through the admin client.
    run_ok(
        py_client(&py, "confluent.py").args([
            "create-topic",
            "--bootstrap",
            &b.bootstrap(),
            "--topic",
            "rt-confluent",
            "--partitions",
            "3",
        ]),
        CLIENT_LIMIT,
        &b,
    );
    let acked = py_produce(
        &py,
        "confluent.py",
        &b,
        "rt-confluent",
        &keyed_records(N),
        &[],
    );
    assert_eq!(acked.len(), N);
    assert_partitioned(&acked, |k| librdkafka_partition(k, PARTITIONS));
    let got = py_consume(&py, "confluent.py", &b, "rt-confluent", PARTITIONS, N, &[]);
    assert_same(&b, &acked, &got);
}

#[test]
fn kafka_python_roundtrip() {
    let Some(py) = python() else { return };
    let b = broker();
    let acked = py_produce(&py, "kafka_python.py", &b, "rt-kp", &keyed_records(N), &[]);
    assert_eq!(acked.len(), N);
    assert_partitioned(&acked, |k| murmur2_partition(k, PARTITIONS));
    let got = py_consume(&py, "kafka_python.py", &b, "rt-kp", PARTITIONS, N, &[]);
    assert_same(&b, &acked, &got);
}

#[test]
fn aiokafka_roundtrip() {
    let Some(py) = python() else { return };
    let b = broker();
    let acked = py_produce(
        &py,
        "aiokafka_client.py",
        &b,
        "rt-aio",
        &keyed_records(N),
        &[],
    );
    assert_eq!(acked.len(), N);
    assert_partitioned(&acked, |k| murmur2_partition(k, PARTITIONS));
    let got = py_consume(&py, "aiokafka_client.py", &b, "rt-aio", PARTITIONS, N, &[]);
    assert_same(&b, &acked, &got);
}

/// kcat: keys through `-K`, headers through `-H` (the same on every
/// record), read back with `-f`. Partitions follow librdkafka's default
/// partitioner, offsets are consecutive per partition in input order.
#[test]
fn kcat_roundtrip() {
    let Some(kcat) = kcat() else { return };
    let b = broker();
    let topic = "rt-kcat";
    let mut input = String::new();
    for i in 0..N {
        input.push_str(&format!("key-{i:06}|value-{i:06}-{}\n", "y".repeat(i % 29)));
    }
    // Lines on stdin: one record each (a file argument would be one record).
    run_ok_input(
        Command::new(&kcat)
            .args(["-b", &b.bootstrap(), "-P", "-t", topic, "-K", "|"])
            .args(["-H", "origin=kcat", "-H", "run=e2e-1"])
            .args(["-X", "acks=all", "-X", "linger.ms=5"]),
        Some(input.into_bytes()),
        CLIENT_LIMIT,
        &b,
    );
    let out = run_ok(
        Command::new(&kcat)
            .args([
                "-b",
                &b.bootstrap(),
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
            ])
            .args(["-c", &N.to_string()])
            .args(["-f", "%p\t%o\t%k\t%s\t%h\n"]),
        CLIENT_LIMIT,
        &b,
    );
    let text = String::from_utf8(out.stdout).expect("kcat output is UTF-8");
    let mut got: Vec<(i32, i64, String, String, String)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "kcat line {l:?}");
            (
                f[0].parse().expect("partition"),
                f[1].parse().expect("offset"),
                f[2].to_string(),
                f[3].to_string(),
                f[4].to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), N, "kcat read back {} of {N} records", got.len());
    got.sort_by_key(|g| (g.0, g.1));
    // Expected: input order within each partition, offsets from 0.
    let mut next = [0i64; PARTITIONS as usize];
    let mut want = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("key-{i:06}");
        let p = librdkafka_partition(key.as_bytes(), PARTITIONS);
        want.push((
            p,
            next[p as usize],
            key,
            format!("value-{i:06}-{}", "y".repeat(i % 29)),
            "origin=kcat,run=e2e-1".to_string(),
        ));
        next[p as usize] += 1;
    }
    want.sort_by_key(|w| (w.0, w.1));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "kcat record differs\nbroker log:\n{}", b.log_tail());
    }
}
