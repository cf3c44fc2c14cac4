//! `gregor perf produce` / `gregor perf consume` against a real broker
//! process: the JSON summaries carry every field, and the consumer reads
//! exactly what the producer had acknowledged (spec: PRD-4, PRD-5, PRD-6).

use std::process::Command;
use std::time::{Duration, Instant};

mod bin_support;

use bin_support::{GREGOR, free_port, start_broker};

fn perf(args: &[&str]) -> serde_json::Value {
    perf_with_stderr(args).0
}

fn perf_with_stderr(args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(GREGOR)
        .arg("perf")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gregor perf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout, got {stdout:?}");
    (
        serde_json::from_str(lines[0]).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("field {k} missing in {v}"))
}

// spec: PRD-4, PRD-5, PRD-6
#[test]
fn produce_then_consume_reports_and_reads_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = start_broker(port, dir.path(), &[]);
    let addr = format!("127.0.0.1:{port}");

    // Small batches and several requests in flight: the pipelined path.
    let p = perf(&[
        "produce",
        "-b",
        &addr,
        "--topic",
        "bench",
        "--num-records",
        "3000",
        "--record-size",
        "50",
        "--partitions",
        "4",
        "--acks",
        "all",
        "--batch-size",
        "2048",
        "--linger-ms",
        "5",
        "--json",
    ]);
    assert_eq!(f(&p, "records"), 3000.0);
    assert_eq!(f(&p, "bytes"), 150_000.0);
    assert!(
        f(&p, "requests") >= 3000.0 * 62.0 / 2048.0,
        "batches honour --batch-size: {p}"
    );
    assert!(f(&p, "records_per_sec") > 0.0 && f(&p, "mb_per_sec") > 0.0);
    let lat: Vec<f64> = [
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "latency_max_ms",
    ]
    .iter()
    .map(|k| f(&p, k))
    .collect();
    assert!(lat[0] > 0.0, "{p}");
    assert!(
        lat.windows(2).all(|w| w[0] <= w[1]),
        "percentiles ordered: {p}"
    );
    assert!(f(&p, "latency_avg_ms") <= f(&p, "latency_max_ms"));

    // Keyed, compressed, throttled and acks=1 into the same topic.
    let started = Instant::now();
    let (q, stderr) = perf_with_stderr(&[
        "produce",
        "-b",
        &addr,
        "--topic",
        "bench",
        "--num-records",
        "2400",
        "--keys",
        "--compression",
        "lz4",
        "--acks",
        "1",
        "--throughput",
        "2000",
        "--progress",
        "--json",
    ]);
    assert_eq!(f(&q, "records"), 2400.0);
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "--throughput 2000 paces 2400 records over ~1.2 s"
    );
    assert!(
        stderr.contains("records/sec") && stderr.contains("ms avg latency"),
        "a progress line each second with --progress: {stderr:?}"
    );

    let c = perf(&["consume", "-b", &addr, "--topic", "bench", "--json"]);
    assert_eq!(f(&c, "records"), 5400.0, "exactly what was produced: {c}");
    assert!(f(&c, "bytes") > 150_000.0);
    assert!(f(&c, "fetches") >= 1.0);
    assert!(f(&c, "first_record_ms") > 0.0);
    assert!(f(&c, "records_per_sec") > 0.0 && f(&c, "mb_per_sec") > 0.0);

    // One partition only, and a count to stop at.
    let one = perf(&[
        "consume",
        "-b",
        &addr,
        "--topic",
        "bench",
        "--partitions",
        "0",
        "--num-records",
        "1",
        "--json",
    ]);
    assert!(
        f(&one, "records") >= 1.0 && f(&one, "records") < 5400.0,
        "{one}"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = Command::new(GREGOR)
        .args([
            "perf",
            "produce",
            "-b",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--num-records",
            "1",
            "--acks",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--acks 2"));
}
