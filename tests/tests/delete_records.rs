//! Records deleted with the admin clients users have: librdkafka's and
//! kafka-python's DeleteRecords move the log start, consumers that start
//! from the beginning begin there, a later offset than the high watermark
//! and a compacted topic are refused with Kafka's errors, and the start
//! survives a kill -9 (spec: E2E-31, PRO-28, REP-71); kafka-python's
//! DescribeLogDirs reports the partition's size (PRO-31).

use tests::*;

/// DeleteRecords below `before` in partition 0 of `topic` with a driver:
/// the low watermark, or the driver's error output.
fn delete_records(
    py: &std::path::Path,
    driver: &str,
    b: &Broker,
    topic: &str,
    before: i64,
) -> Result<i64, String> {
    let out = run_with_input(
        py_client(py, driver)
            .args([
                "delete-records",
                "--bootstrap",
                &b.bootstrap(),
                "--topic",
                topic,
            ])
            .args(["--partition", "0", "--before", &before.to_string()])
            .args(["--timeout", "20"]),
        None,
        CLIENT_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("# low_watermark "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no low watermark in {text:?}"))
}

fn first_offset(recs: &[Rec]) -> Option<i64> {
    recs.iter().map(|r| r.offset).min()
}

#[test]
fn admin_clients_delete_records_and_consumers_start_after_them() {
    let Some(py) = python() else { return };
    let mut b = Broker::start(&[]);
    create_topic(&py, &b, "trimmed", 1);
    let recs = keyed_records(100);
    assert_eq!(
        py_produce(&py, "confluent.py", &b, "trimmed", &recs, &[]).len(),
        100
    );
    // spec: PRO-31 — kafka-python's DescribeLogDirs sees the log's bytes.
    let out = run_ok(
        py_client(&py, "kafka_python.py").args([
            "describe-log-dirs",
            "--bootstrap",
            &b.bootstrap(),
            "--topic",
            "-",
        ]),
        CLIENT_LIMIT,
        &b,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = b.data_dir().display().to_string();
    assert!(text.contains(&format!("# logdir {dir} ")), "{text}");
    let size: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("# partition trimmed 0 "))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no size for trimmed-0 in {text}"));
    assert!(size > 100 * 20, "100 records take {size} bytes");
    assert_eq!(
        delete_records(&py, "confluent.py", &b, "trimmed", 40),
        Ok(40)
    );
    let got = py_consume(&py, "kafka_python.py", &b, "trimmed", 1, 60, &[]);
    assert_eq!((got.len(), first_offset(&got)), (60, Some(40)));
    assert_eq!(
        delete_records(&py, "kafka_python.py", &b, "trimmed", 70),
        Ok(70)
    );
    let got = py_consume(&py, "confluent.py", &b, "trimmed", 1, 30, &["--idle", "1"]);
    assert_eq!((got.len(), first_offset(&got)), (30, Some(70)));
    assert!(got.iter().filter_map(seq_of).all(|s| s >= 70));

    // Past the high watermark: refused, nothing deleted.
    let err = delete_records(&py, "confluent.py", &b, "trimmed", 101).unwrap_err();
    assert!(err.contains("OFFSET_OUT_OF_RANGE"), "{err}");
    // A compacted topic keeps its records.
    create_topic(&py, &b, "kept", 1);
    run_ok(
        py_client(&py, "confluent.py")
            .args([
                "alter-config",
                "--bootstrap",
                &b.bootstrap(),
                "--topic",
                "kept",
            ])
            .args(["--config", "cleanup.policy=compact"]),
        CLIENT_LIMIT,
        &b,
    );
    assert_eq!(
        py_produce(&py, "confluent.py", &b, "kept", &keyed_records(10), &[]).len(),
        10
    );
    let err = delete_records(&py, "confluent.py", &b, "kept", 5).unwrap_err();
    assert!(err.contains("POLICY_VIOLATION"), "{err}");

    // The start survives a kill -9; new records follow the old ones.
    b.kill9();
    b.restart();
    let got = py_consume(&py, "confluent.py", &b, "trimmed", 1, 30, &["--idle", "1"]);
    assert_eq!((got.len(), first_offset(&got)), (30, Some(70)));
    assert_eq!(
        delete_records(&py, "confluent.py", &b, "trimmed", -1),
        Ok(100),
        "-1 deletes up to the high watermark"
    );
    let acked = py_produce(&py, "confluent.py", &b, "trimmed", &keyed_records(5), &[]);
    assert_eq!(first_offset(&acked), Some(100));
    let got = py_consume(&py, "kafka_python.py", &b, "trimmed", 1, 5, &[]);
    assert_eq!((got.len(), first_offset(&got)), (5, Some(100)));
}
