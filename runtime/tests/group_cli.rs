//! `gregor consume --group` and `gregor groups …` against a spawned broker:
//! two members split a topic, describe shows them with zero lag, and a
//! reset to the earliest offsets replays everything (spec: GRP-120 …
//! GRP-128).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod bin_support;

use bin_support::{GREGOR, Proc, free_port, start_broker};

const RECORDS: usize = 400;

fn gregor(bs: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(GREGOR)
        .args(args)
        .args(["-b", bs])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_owned();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn ok(bs: &str, args: &[&str]) -> String {
    let out = gregor(bs, args, None);
    assert!(
        out.status.success(),
        "gregor {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `consume --group --follow` process whose lines arrive on a channel.
fn member(bs: &str, group: &str, topic: &str) -> (Proc, mpsc::Receiver<String>) {
    let mut child = Command::new(GREGOR)
        .args(["consume", topic, "--group", group, "--follow", "-b", bs])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc::new(child), rx)
}

/// Polls `groups describe` until `pred` holds on its output.
fn describe_until(bs: &str, group: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let out = ok(bs, &["groups", "describe", group]);
        if pred(&out) {
            return out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waiting for {what}; last describe:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sigint(p: Proc) {
    let s = p.signal("INT");
    assert!(s.success(), "consumer exited with {s}");
}

/// Data lines of the per-partition table of `groups describe`.
fn partition_rows(describe: &str, topic: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .filter(|l| l.starts_with(&format!("{topic}\t")))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn two_members_split_the_topic_then_reset_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = start_broker(port, dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let bs = format!("127.0.0.1:{port}");
    let (topic, group) = ("orders", "billing");
    ok(&bs, &["topics", "create", topic, "--partitions", "4"]);

    // spec: GRP-120, GRP-122 — both members join; the group settles Stable
    // with two members before anything is produced.
    let (a, a_rx) = member(&bs, group, topic);
    describe_until(&bs, group, "the first member", |d| {
        d.contains("State: Stable") && d.contains("Members: 1")
    });
    let (b, b_rx) = member(&bs, group, topic);
    let settled = describe_until(&bs, group, "both members", |d| {
        d.contains("State: Stable") && d.contains("Members: 2")
    });
    // Every partition is assigned to exactly one of the two members.
    let mut assigned = Vec::new();
    for l in settled.lines().filter(|l| l.contains("Member: ")) {
        let parts = l.rsplit("Partitions: ").next().unwrap();
        assigned.extend(
            parts
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    assigned.sort();
    assert_eq!(assigned, ["orders-0", "orders-1", "orders-2", "orders-3"]);

    let input: String = (0..RECORDS).map(|i| format!("k{i}:v{i}\n")).collect();
    let out = gregor(
        &bs,
        &["produce", topic, "--key-separator", ":"],
        Some(&input),
    );
    assert!(out.status.success());

    // spec: GRP-128 — together the members read every record exactly once.
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    let started = Instant::now();
    while seen_a.len() + seen_b.len() < RECORDS {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} + {} records consumed",
            seen_a.len(),
            seen_b.len()
        );
        while let Ok(l) = a_rx.try_recv() {
            seen_a.push(l);
        }
        while let Ok(l) = b_rx.try_recv() {
            seen_b.push(l);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "one member read nothing"
    );
    let all: BTreeSet<&String> = seen_a.iter().chain(&seen_b).collect();
    assert_eq!(all.len(), RECORDS, "a record was read twice");
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| format!("v{i}")).collect();
    assert_eq!(all.into_iter().cloned().collect::<BTreeSet<_>>(), expected);

    // spec: GRP-124, GRP-126 — commits land: zero lag on every partition,
    // each owned by a member.
    let d = describe_until(&bs, group, "zero lag", |d| {
        let rows = partition_rows(d, topic);
        rows.len() == 4 && rows.iter().all(|r| r[4] == "0" && r[5] != "-")
    });
    let total: i64 = partition_rows(&d, topic)
        .iter()
        .map(|r| r[3].parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, RECORDS as i64);
    assert!(d.contains("Protocol: range"), "{d}");
    assert!(d.contains("ClientId: gregor-cli"), "{d}");

    // spec: GRP-127 — a live group's offsets cannot be reset.
    let busy = gregor(
        &bs,
        &[
            "groups",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
        ],
        None,
    );
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("Empty"));
    // spec: GRP-47 — nor deleted while members subscribe to the topic.
    let busy = gregor(
        &bs,
        &[
            "groups",
            "delete-offsets",
            group,
            "--topic",
            topic,
            "--partition",
            "0",
        ],
        None,
    );
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains(&format!("{topic}-0")), "{err}");

    // spec: GRP-125 — members leave on SIGINT; the group is Empty at once.
    sigint(a);
    sigint(b);
    let d = describe_until(&bs, group, "Empty", |d| d.contains("State: Empty"));
    assert!(partition_rows(&d, topic).iter().all(|r| r[4] == "0"));
    assert!(ok(&bs, &["groups", "list"]).contains(&format!("{group}\tEmpty\tconsumer")));

    // A dry run prints the plan and changes nothing.
    let plan = ok(
        &bs,
        &[
            "groups",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
        ],
    );
    assert!(plan.contains("Dry run"), "{plan}");
    assert_eq!(
        plan.lines().filter(|l| l.ends_with("\t0")).count(),
        4,
        "{plan}"
    );
    let d = ok(&bs, &["groups", "describe", group]);
    assert!(partition_rows(&d, topic).iter().all(|r| r[4] == "0"), "{d}");

    ok(
        &bs,
        &[
            "groups",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
        ],
    );
    let d = ok(&bs, &["groups", "describe", group]);
    let lag: i64 = partition_rows(&d, topic)
        .iter()
        .map(|r| r[4].parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, RECORDS as i64, "{d}");

    // A new member resumes at the reset offsets and reads everything again.
    let again = ok(&bs, &["consume", topic, "--group", group]);
    let again: BTreeSet<String> = again.lines().map(str::to_owned).collect();
    assert_eq!(again, expected);
    let d = ok(&bs, &["groups", "describe", group]);
    assert!(partition_rows(&d, topic).iter().all(|r| r[4] == "0"), "{d}");

    // spec: GRP-47 — an Empty group's offsets can be deleted one by one.
    let out = ok(
        &bs,
        &[
            "groups",
            "delete-offsets",
            group,
            "--topic",
            topic,
            "--partition",
            "0",
        ],
    );
    assert_eq!(out, format!("Deleted the committed offset of {topic}-0.\n"));
    let d = ok(&bs, &["groups", "describe", group]);
    let rows = partition_rows(&d, topic);
    let listed: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        listed,
        ["1", "2", "3"],
        "partition 0 has no committed offset: {d}"
    );

    // An Empty group can be deleted.
    ok(&bs, &["groups", "delete", group]);
    assert!(!ok(&bs, &["groups", "list"]).contains(group));
}

#[test]
fn count_stops_a_member_and_commits_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = start_broker(port, dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let bs = format!("127.0.0.1:{port}");
    let (topic, group) = ("clicks", "audit");
    ok(&bs, &["topics", "create", topic, "--partitions", "1"]);
    let input: String = (0..50).map(|i| format!("k{i}:v{i}\n")).collect();
    assert!(
        gregor(
            &bs,
            &["produce", topic, "--key-separator", ":"],
            Some(&input)
        )
        .status
        .success()
    );

    // spec: GRP-121 — an unknown assignor is refused before joining.
    let bad = gregor(
        &bs,
        &["consume", topic, "--group", group, "--assignor", "lottery"],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("roundrobin"));

    // spec: GRP-128 — without a commit and without --from-beginning the
    // member starts at the log end: nothing to read.
    assert_eq!(ok(&bs, &["consume", topic, "--group", group]), "");

    // spec: GRP-125, GRP-124 — --count stops after ten records, committed.
    let out = ok(
        &bs,
        &[
            "consume",
            topic,
            "--group",
            "tail",
            "--assignor",
            "roundrobin",
            "--count",
            "10",
            "--print-key",
            "--from-beginning",
        ],
    );
    let want: String = (0..10).map(|i| format!("k{i}\tv{i}\n")).collect();
    assert_eq!(out, want);
    let d = ok(&bs, &["groups", "describe", "tail"]);
    assert!(d.contains("State: Empty"), "{d}");
    assert_eq!(
        partition_rows(&d, topic),
        [["clicks", "0", "10", "50", "40", "-"]],
        "{d}"
    );

    // The next run resumes at the committed offset.
    let out = ok(&bs, &["consume", topic, "--group", "tail", "--count", "5"]);
    assert_eq!(out.lines().next(), Some("v10"));

    // spec: GRP-127 — --to-offset is clamped to the log.
    let plan = ok(
        &bs,
        &[
            "groups",
            "reset-offsets",
            "tail",
            "--topic",
            topic,
            "--to-offset",
            "999",
            "--execute",
        ],
    );
    assert!(plan.contains("clicks\t0\t50"), "{plan}");
    let d = ok(&bs, &["groups", "describe", "tail"]);
    assert_eq!(partition_rows(&d, topic)[0][4], "0", "{d}");
}
