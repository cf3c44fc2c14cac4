//! The seed's message format: kafka-python forced to the 0.10.1 protocol
//! (`api_version=(0, 10, 1)`) sends Produce v2 with magic-1 messages, which
//! the broker stores as v1 on disk and librdkafka and `gregor consume` read
//! back; the same client reads v2 batches written by librdkafka
//! (spec: E2E-4).

use std::process::Command;

use tests::*;

const N: usize = 3_000;

/// Keyed records without headers: v1 messages cannot carry them.
fn plain_records() -> Vec<Rec> {
    (0..N)
        .map(|i| {
            let mut r = Rec::keyed(i);
            r.headers.clear();
            r
        })
        .collect()
}

fn assert_payloads_equal(b: &Broker, acked: &[Rec], got: &[Rec], what: &str) {
    if let Err(e) = check_same(acked, got) {
        panic!("{what}: {e}\nbroker log:\n{}", b.log_tail());
    }
}

#[test]
fn kafka_python_v1_messages_stored_as_v1_and_read_by_librdkafka() {
    let Some(py) = python() else { return };
    let b = Broker::start(&["num.partitions=3"]);
    let topic = "seed-v1";
    let acked = py_produce(
        &py,
        "kafka_python.py",
        &b,
        topic,
        &plain_records(),
        &["--api-version", "0.10.1"],
    );
    assert_eq!(acked.len(), N);
    for p in 0..3 {
        for seg in b.segment_files(topic, p) {
            assert_eq!(
                first_magic(&seg),
                1,
                "{} should start with a v1 message (magic byte at offset 16)",
                seg.display()
            );
        }
    }
    // librdkafka 2.16 (Fetch v12: converted to v2 batches by the broker).
    let got = py_consume(&py, "confluent.py", &b, topic, 3, N, &[]);
    assert_payloads_equal(&b, &acked, &got, "confluent-kafka reading v1 messages");
    // The same client over the old protocol reads its own messages.
    let got = py_consume(
        &py,
        "kafka_python.py",
        &b,
        topic,
        3,
        N,
        &["--api-version", "0.10.1"],
    );
    assert_payloads_equal(&b, &acked, &got, "kafka-python 0.10.1 reading v1 messages");
    // `gregor consume` (the native client) reads them too: every
    // partition's key/value lines in offset order.
    for p in 0..3 {
        let out = run_ok(
            std::process::Command::new(gregor_bin())
                .args(["consume", "-b", &b.bootstrap(), topic, "--partition"])
                .arg(p.to_string())
                .args(["--print-key", "--key-separator", "|"]),
            CLIENT_LIMIT,
            &b,
        );
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        let mut want: Vec<&Rec> = acked.iter().filter(|r| r.partition == p).collect();
        want.sort_by_key(|r| r.offset);
        let want: Vec<String> = want
            .iter()
            .map(|r| {
                format!(
                    "{}|{}",
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                )
            })
            .collect();
        assert_eq!(lines, want, "gregor consume of partition {p}");
    }
    // kcat (librdkafka 2.0.2, Fetch v11) too, when present.
    if let Some(kcat) = kcat() {
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
                .args(["-c", &N.to_string(), "-f", "%p %o %k %s\n"]),
            CLIENT_LIMIT,
            &b,
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        let mut want: Vec<String> = acked
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r.partition,
                    r.offset,
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                )
            })
            .collect();
        want.sort();
        assert_eq!(lines, want, "kcat reading v1 messages");
    }
}

#[test]
fn kafka_python_0_10_1_reads_librdkafka_v2_batches() {
    let Some(py) = python() else { return };
    let b = Broker::start(&["num.partitions=3"]);
    let topic = "seed-v2";
    let acked = py_produce(&py, "confluent.py", &b, topic, &plain_records(), &[]);
    assert_eq!(acked.len(), N);
    for p in 0..3 {
        for seg in b.segment_files(topic, p) {
            assert_eq!(
                first_magic(&seg),
                2,
                "{} should hold v2 batches",
                seg.display()
            );
        }
    }
    // Fetch v3: the broker converts the v2 batches to v1 messages.
    let got = py_consume(
        &py,
        "kafka_python.py",
        &b,
        topic,
        3,
        N,
        &["--api-version", "0.10.1"],
    );
    assert_payloads_equal(&b, &acked, &got, "kafka-python 0.10.1 reading v2 batches");
}
