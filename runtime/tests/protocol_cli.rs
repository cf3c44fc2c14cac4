//! The real `gregor` binary: startup errors, SIGTERM and kill -9, and the
//! `topics` / `produce` / `consume` commands against a running broker
//! (spec: PRO-28, PRO-30, PRO-41, PRO-62; PRD-1, PRD-3).

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod bin_support;

use bin_support::{GREGOR, api_versions_ok, free_port, start_broker};

// spec: PRO-41
#[test]
fn unknown_or_invalid_key_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(GREGOR)
        .args(["broker", "--override", "log.segmnt.bytes=1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.segmnt.bytes"));
    let props = dir.path().join("server.properties");
    std::fs::write(&props, "# broker\nnum.partitions = many\n").unwrap();
    let out = Command::new(GREGOR)
        .args(["broker", "--config"])
        .arg(&props)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("num.partitions"));
    assert!(
        !dir.path().join("data").exists(),
        "nothing created on a bad config"
    );
}

// spec: PRO-30, PRO-62
#[test]
fn sigterm_exits_zero_and_marks_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let b = start_broker(port, dir.path(), &["num.partitions=3"]);
    assert!(api_versions_ok(port));
    let status = b.signal("TERM");
    assert!(status.success(), "exit status {status}");
    assert!(dir.path().join(".gregor_cleanshutdown").exists());
    assert!(dir.path().join("cluster-metadata").exists());
    // A start that cannot bind its port fails with a clear error and
    // leaves the logs marked clean.
    let taken = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let out = Command::new(GREGOR)
        .args(["broker", "--override"])
        .arg(format!(
            "listeners=PLAINTEXT://{}",
            taken.local_addr().unwrap()
        ))
        .arg("--override")
        .arg(format!("log.dirs={}", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("starting the broker"), "{err}");
    assert!(
        err.contains(&taken.local_addr().unwrap().to_string()),
        "the error names the address: {err}"
    );
    assert!(
        dir.path().join(".gregor_cleanshutdown").exists(),
        "a failed start keeps the clean-shutdown marker"
    );
    drop(taken);
    let b = start_broker(port, dir.path(), &["num.partitions=3"]);
    assert!(!dir.path().join(".gregor_cleanshutdown").exists());
    b.signal("KILL");
    let b = start_broker(port, dir.path(), &["num.partitions=3"]);
    assert!(api_versions_ok(port));
    assert!(b.signal("INT").success());
}

fn cli(port: u16, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(GREGOR)
        .args(args)
        .args(["-b", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// spec: PRD-1, PRD-3, PRO-23
#[test]
fn topics_produce_and_consume_commands() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let b = start_broker(port, dir.path(), &["num.partitions=3"]);
    ok(cli(
        port,
        &[
            "topics",
            "create",
            "cli",
            "--partitions",
            "3",
            "--config",
            "retention.ms=600000",
        ],
        None,
    ));
    assert!(
        !cli(port, &["topics", "create", "cli"], None)
            .status
            .success()
    );
    assert_eq!(ok(cli(port, &["topics", "list"], None)), "cli\n");
    let described = ok(cli(port, &["topics", "describe", "cli"], None));
    assert!(described.contains("PartitionCount: 3"), "{described}");
    // spec: PRO-27 — overrides shown and changed while the broker runs.
    assert_eq!(
        ok(cli(port, &["topics", "configs", "cli"], None)),
        "retention.ms=600000\n"
    );
    ok(cli(
        port,
        &[
            "topics",
            "alter",
            "cli",
            "--config",
            "segment.bytes=100000",
            "--delete-config",
            "retention.ms",
        ],
        None,
    ));
    assert_eq!(
        ok(cli(port, &["topics", "configs", "cli"], None)),
        "segment.bytes=100000\n"
    );
    let all = ok(cli(port, &["topics", "configs", "cli", "--all"], None));
    assert!(all.contains("retention.ms=604800000\t(default)"), "{all}");
    let bad = cli(
        port,
        &["topics", "alter", "cli", "--config", "segment.bytez=1"],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("segment.bytez"),
        "the error names the key"
    );

    let lines: String = (0..300).map(|i| format!("key{i}:value{i}\n")).collect();
    ok(cli(
        port,
        &[
            "produce",
            "cli",
            "--key-separator",
            ":",
            "--compression",
            "gzip",
        ],
        Some(&lines),
    ));
    ok(cli(
        port,
        &["produce", "cli", "--partition", "2", "--acks", "1"],
        Some("a\nb\nc\n"),
    ));
    let all = ok(cli(
        port,
        &["consume", "cli", "--print-key", "--key-separator", ":"],
        None,
    ));
    assert_eq!(all.lines().count(), 303);
    for i in 0..300 {
        assert!(all.contains(&format!("key{i}:value{i}\n")));
    }
    // Keyed records land on the partition Kafka's murmur2 gives
    // (vectors from the Java client: "21" hashes to -973932308).
    let p = (gregor_core::partitioner::murmur2(b"key7") & 0x7fff_ffff) % 3;
    let part = ok(cli(
        port,
        &[
            "consume",
            "cli",
            "--partition",
            &p.to_string(),
            "--print-key",
        ],
        None,
    ));
    assert!(part.contains("key7\tvalue7"), "{part}");
    let two = ok(cli(
        port,
        &["consume", "cli", "--partition", "2", "--from-end"],
        None,
    ));
    assert_eq!(two, "");
    let counted = ok(cli(port, &["consume", "cli", "--count", "5"], None));
    assert_eq!(counted.lines().count(), 5);

    // spec: PRO-28 — delete-records moves each partition's start.
    let before = ok(cli(port, &["consume", "cli", "--partition", "2"], None));
    let n = before.lines().count();
    let out = ok(cli(
        port,
        &[
            "topics",
            "delete-records",
            "cli",
            "--partition",
            "2",
            "--before",
            "2",
        ],
        None,
    ));
    assert_eq!(out, "Partition: 2\tLowWatermark: 2\n");
    let after = ok(cli(port, &["consume", "cli", "--partition", "2"], None));
    let kept: Vec<&str> = before.lines().skip(2).collect();
    assert_eq!(
        after.lines().collect::<Vec<_>>(),
        kept,
        "consumers start at the new log start"
    );
    let out = ok(cli(
        port,
        &["topics", "delete-records", "cli", "--before", "-1"],
        None,
    ));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains(&format!("Partition: 2\tLowWatermark: {n}\n")),
        "{out}"
    );
    assert_eq!(ok(cli(port, &["consume", "cli"], None)), "");
    let past = cli(
        port,
        &[
            "topics",
            "delete-records",
            "cli",
            "--partition",
            "2",
            "--before",
            &(n + 1).to_string(),
        ],
        None,
    );
    assert!(!past.status.success(), "above the high watermark");

    ok(cli(port, &["topics", "delete", "cli"], None));
    assert!(
        !dir.path().join("cli-0").exists(),
        "partition files removed"
    );
    assert_eq!(ok(cli(port, &["topics", "list"], None)), "");
    assert!(b.signal("TERM").success());
}

fn segment_files(dir: &std::path::Path, tp: &str) -> usize {
    std::fs::read_dir(dir.join(tp))
        .map(|it| {
            it.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .count()
        })
        .unwrap_or(0)
}

// spec: STO-54, STO-50
#[test]
fn topic_overrides_set_segment_size_and_retention_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let overrides = ["log.retention.check.interval.ms=200"];
    let b = start_broker(port, dir.path(), &overrides);
    let create = |topic: &str, configs: &[&str]| {
        let mut args = vec!["topics", "create", topic, "--partitions", "1"];
        for c in configs {
            args.extend(["--config", c]);
        }
        ok(cli(port, &args, None));
    };
    create("trimmed", &["segment.bytes=10000", "retention.bytes=10000"]);
    create(
        "compacted",
        &[
            "segment.bytes=10000",
            "retention.ms=1",
            "cleanup.policy=compact",
        ],
    );
    create("plain", &[]);
    // Ten requests of 100 records, about 2 KB each: with 10 KB segments
    // every topic with the override rolls several times.
    let produce_all = |from: usize| {
        for batch in 0..10 {
            let lines: String = (0..100)
                .map(|i| format!("record-{:06}\n", from + batch * 100 + i))
                .collect();
            for topic in ["trimmed", "compacted", "plain"] {
                ok(cli(port, &["produce", topic], Some(&lines)));
            }
        }
    };
    produce_all(0);
    assert!(segment_files(dir.path(), "compacted-0") >= 3);
    assert_eq!(
        segment_files(dir.path(), "plain-0"),
        1,
        "broker default 1 GiB"
    );
    let count = |topic: &str| ok(cli(port, &["consume", topic], None)).lines().count();
    // retention.bytes trims the oldest segments of that topic only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count("trimmed") == 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention.bytes of the topic never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let kept = count("trimmed");
    assert!((300..1000).contains(&kept), "kept {kept}");
    // A compacted topic is never trimmed, whatever its retention says.
    assert_eq!(count("compacted"), 1000);
    assert_eq!(count("plain"), 1000);

    // After a restart the overrides still hold for the logs opened from disk.
    assert!(b.signal("TERM").success());
    let b = start_broker(port, dir.path(), &overrides);
    let before = segment_files(dir.path(), "compacted-0");
    produce_all(1000);
    assert!(
        segment_files(dir.path(), "compacted-0") >= before + 2,
        "segment.bytes applies after a restart"
    );
    assert_eq!(segment_files(dir.path(), "plain-0"), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count("trimmed") >= 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention.bytes of the topic not applied after the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(count("compacted"), 2000);
    assert!(b.signal("TERM").success());
}
