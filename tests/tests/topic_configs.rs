//! A topic's configs changed with a real Kafka admin client while the broker
//! runs reach its log: librdkafka's IncrementalAlterConfigs sets
//! `segment.ms` and `retention.ms`, DescribeConfigs reports them, and the
//! older records are trimmed by the new retention (spec: E2E-29, PRO-27,
//! STO-54).

use std::time::{Duration, Instant};

use tests::*;

#[test]
fn librdkafka_alters_topic_configs_and_the_log_follows() {
    let Some(py) = python() else { return };
    let b = Broker::start(&["log.retention.check.interval.ms=200"]);
    let topic = "altered";
    create_topic(&py, &b, topic, 1);
    let out = run_ok(
        py_client(&py, "confluent.py")
            .args([
                "alter-config",
                "--bootstrap",
                &b.bootstrap(),
                "--topic",
                topic,
            ])
            .args([
                "--config",
                "segment.ms=100",
                "--config",
                "retention.ms=1500",
            ]),
        CLIENT_LIMIT,
        &b,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // DescribeConfigs source 1: a topic override.
    assert!(text.contains("config segment.ms 100 1"), "{text}");
    assert!(text.contains("config retention.ms 1500 1"), "{text}");

    let first: Vec<Rec> = (0..100).map(Rec::keyed).collect();
    let second: Vec<Rec> = (100..200).map(Rec::keyed).collect();
    assert_eq!(
        py_produce(&py, "confluent.py", &b, topic, &first, &[]).len(),
        100
    );
    // Later records roll a new segment (segment.ms), so the first ones
    // sit in a sealed segment that the topic's retention.ms deletes.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        py_produce(&py, "confluent.py", &b, topic, &second, &[]).len(),
        100
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = py_consume(&py, "confluent.py", &b, topic, 1, 0, &["--idle", "1"]);
        let seqs: Vec<u64> = got.iter().filter_map(seq_of).collect();
        // The first set is gone and the last record of the second is there
        // (a slow producer may have spread the second set over two
        // segments, the older of which retention may take too).
        if seqs.iter().all(|s| *s >= 100) && seqs.contains(&199) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the topic's retention.ms never trimmed the first records: {} records, first seq {:?}\n{}",
            seqs.len(),
            seqs.first(),
            b.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
