//! Crashes and restarts with real producers: idempotent librdkafka across a
//! kill -9 (no duplicate, no gap), kafka-python 3.x's default (idempotent)
//! producer, and every acknowledged record served after SIGTERM and after
//! kill -9 (spec: E2E-5, E2E-6).

use std::collections::BTreeMap;
use std::time::Duration;

use tests::*;

const PARTITIONS: u32 = 3;

/// Sequence numbers per partition, in offset order.
fn seqs_by_partition(recs: &[Rec]) -> BTreeMap<i32, Vec<u64>> {
    let mut sorted: Vec<&Rec> = recs.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut out: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for r in sorted {
        out.entry(r.partition)
            .or_default()
            .push(seq_of(r).expect("seq header"));
    }
    out
}

#[test]
fn idempotent_librdkafka_across_kill_9_no_duplicate_no_gap() {
    let Some(py) = python() else { return };
    const N: usize = 6_000;
    let mut b = Broker::start(&["num.partitions=3"]);
    let topic = "idem";
    let input = b.scratch("idem-in.txt");
    write_recs(&input, &keyed_records(N)).expect("writing input");
    let progress = b.scratch("idem-progress");
    let producer = Background::spawn(
        py_client(&py, "confluent.py")
            .args(["produce", "--bootstrap", &b.bootstrap(), "--topic", topic])
            .arg("--input")
            .arg(&input)
            .arg("--progress")
            .arg(&progress)
            .args(["--idempotence", "--rate", "2000", "--timeout", "90"]),
        &b.scratch(""),
    );
    wait_progress(&progress, (N / 4) as u64, Duration::from_secs(60));
    b.kill9();
    std::thread::sleep(Duration::from_millis(300));
    b.restart();
    let (status, out, err) = producer.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "idempotent producer failed across the restart: {err}\nbroker log:\n{}",
        b.log_tail()
    );
    let acked = parse_recs(&out);
    assert_eq!(acked.len(), N, "every record acknowledged");
    let got = py_consume(
        &py,
        "confluent.py",
        &b,
        topic,
        PARTITIONS,
        N,
        &["--idle", "1"],
    );
    // No duplicate: exactly N records in the log; no gap: every seq once.
    let mut all: Vec<u64> = got.iter().map(|r| seq_of(r).expect("seq")).collect();
    all.sort_unstable();
    let want: Vec<u64> = (0..N as u64).collect();
    assert!(
        all == want,
        "log holds {} records for {N} sent; duplicates or gaps\nbroker log:\n{}",
        got.len(),
        b.log_tail()
    );
    // Each partition keeps send order, and matches the acknowledgements.
    for (p, seqs) in seqs_by_partition(&got) {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of send order"
        );
    }
    assert_same(&b, &acked, &got);
}

#[test]
fn kafka_python_default_producer_is_idempotent_and_works() {
    let Some(py) = python() else { return };
    let b = Broker::start(&["num.partitions=3"]);
    // No options: kafka-python 3.x enables idempotence by default, which
    // needs InitProducerId.
    let acked = py_produce(
        &py,
        "kafka_python.py",
        &b,
        "kp-default",
        &keyed_records(3_000),
        &[],
    );
    assert_eq!(acked.len(), 3_000);
    let got = py_consume(
        &py,
        "kafka_python.py",
        &b,
        "kp-default",
        PARTITIONS,
        3_000,
        &[],
    );
    assert_same(&b, &acked, &got);
}

/// Produces with acks=all, stops the broker with `stop`, restarts it and
/// checks that every acknowledged record is served.
fn survives(stop: impl FnOnce(&mut Broker), topic: &str) {
    let Some(py) = python() else { return };
    const N: usize = 4_000;
    let mut b = Broker::start(&["num.partitions=3"]);
    let acked = py_produce(
        &py,
        "kafka_python.py",
        &b,
        topic,
        &keyed_records(N),
        &["--acks", "all"],
    );
    assert_eq!(acked.len(), N);
    stop(&mut b);
    b.restart();
    let got = py_consume(
        &py,
        "confluent.py",
        &b,
        topic,
        PARTITIONS,
        N,
        &["--idle", "1"],
    );
    assert_same(&b, &acked, &got);
}

#[test]
fn sigterm_then_restart_serves_every_acknowledged_record() {
    survives(
        |b| {
            let status = b.sigterm();
            assert!(
                status.success(),
                "SIGTERM exit status {status}\n{}",
                b.log_tail()
            );
            assert!(
                b.data_dir().join(".gregor_cleanshutdown").exists(),
                "no clean-shutdown marker after SIGTERM"
            );
        },
        "after-term",
    );
}

#[test]
fn kill_9_then_restart_serves_every_acknowledged_record() {
    survives(
        |b| {
            b.kill9();
            assert!(
                !b.data_dir().join(".gregor_cleanshutdown").exists(),
                "a clean-shutdown marker after kill -9"
            );
        },
        "after-kill",
    );
}

/// kill -9 while a producer is sending: whatever was acknowledged before
/// the crash is served after the restart.
#[test]
fn kill_9_mid_produce_keeps_acknowledged_records() {
    let Some(py) = python() else { return };
    const N: usize = 6_000;
    let mut b = Broker::start(&["num.partitions=3"]);
    let input = b.scratch("mid-in.txt");
    write_recs(&input, &keyed_records(N)).expect("writing input");
    let progress = b.scratch("mid-progress");
    let producer = Background::spawn(
        py_client(&py, "confluent.py")
            .args(["produce", "--bootstrap", &b.bootstrap(), "--topic", "mid"])
            .arg("--input")
            .arg(&input)
            .arg("--progress")
            .arg(&progress)
            .args(["--rate", "3000", "--timeout", "3", "--allow-errors"]),
        &b.scratch(""),
    );
    wait_progress(&progress, (N / 3) as u64, Duration::from_secs(60));
    b.kill9();
    let (status, out, err) = producer.wait(Duration::from_secs(60));
    assert!(status.success(), "producer driver failed: {err}");
    let acked = parse_recs(&out);
    assert!(acked.len() >= N / 3, "only {} acknowledged", acked.len());
    b.restart();
    let got = py_consume(
        &py,
        "confluent.py",
        &b,
        "mid",
        PARTITIONS,
        acked.len(),
        &["--idle", "1"],
    );
    let index: BTreeMap<(i32, i64), &Rec> =
        got.iter().map(|r| ((r.partition, r.offset), r)).collect();
    for a in &acked {
        match index.get(&(a.partition, a.offset)) {
            Some(g) if g.payload() == a.payload() => {}
            Some(g) => panic!("acknowledged {} but served {}", a.to_line(), g.to_line()),
            None => panic!(
                "acknowledged record lost after kill -9: {}\nbroker log:\n{}",
                a.to_line(),
                b.log_tail()
            ),
        }
    }
}
