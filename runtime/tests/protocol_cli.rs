//! The real `gregor` binary: startup errors, SIGTERM and kill -9, and the
//! `topics` / `produce` / `consume` commands against a running broker
//! (spec: PRO-30, PRO-41, PRO-62; PRD-1, PRD-3).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

mod bin_support;

use bin_support::{GREGOR, free_port, start_broker};

fn api_versions_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0, 0];
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).is_ok() && body[..4] == [0, 0, 0, 7] && body[4..6] == [0, 0]
}

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

    ok(cli(port, &["topics", "delete", "cli"], None));
    assert!(
        !dir.path().join("cli-0").exists(),
        "partition files removed"
    );
    assert_eq!(ok(cli(port, &["topics", "list"], None)), "");
    assert!(b.signal("TERM").success());
}
