//! Consumer groups with real clients: partition ownership and failover after
//! a member is SIGKILLed (at-least-once), publish-subscribe versus queue,
//! kcat / kafka-python / aiokafka resuming from their commits, committed
//! offsets across a broker kill -9, new partitions assigned to a running
//! member, and committed offsets deleted with kafka-python (spec: E2E-11 …
//! E2E-15, E2E-34).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::time::Duration;

use tests::*;

/// Broker settings for group tests: rebalance at once, four offsets
/// partitions (creating fifty is slow on the test machine).
const GROUP_BROKER: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "offsets.topic.num.partitions=4",
];

/// How long a background group member may run before the test fails.
const MEMBER_LIMIT: Duration = Duration::from_secs(60);

fn records_for(partitions: u32, per_partition: usize, base: usize) -> Vec<Rec> {
    let mut v = Vec::new();
    for i in 0..per_partition * partitions as usize {
        let mut r = Rec::keyed(base + i);
        r.partition = (i % partitions as usize) as i32;
        v.push(r);
    }
    v
}

fn positions(recs: &[Rec]) -> BTreeSet<(i32, i64)> {
    recs.iter().map(|r| (r.partition, r.offset)).collect()
}

fn owned(m: &Background) -> BTreeSet<i32> {
    GroupRun::parse(&m.stdout_so_far())
        .owned
        .unwrap_or_default()
}

/// True when the members' current assignments are pairwise disjoint,
/// non-empty and together cover exactly `0..partitions`.
fn partitioned(members: &[&Background], partitions: u32) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| owned(m)).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == union.len()
        && union == (0..partitions as i32).collect()
}

fn finish(m: Background, b: &Broker) -> GroupRun {
    let (status, out, err) = m.wait(MEMBER_LIMIT);
    assert!(
        status.success(),
        "group member failed: {err}\nbroker log:\n{}",
        b.log_tail()
    );
    GroupRun::parse(&out)
}

// spec: E2E-11
#[test]
fn three_members_split_six_partitions_and_survive_a_sigkill() {
    let Some(py) = python() else { return };
    const P: u32 = 6;
    let b = Broker::start(GROUP_BROKER);
    let topic = "g-failover";
    create_topic(&py, &b, topic, P);
    let stop = b.scratch("failover-stop");
    let stop_s = stop.to_str().expect("utf-8 path").to_string();
    let opts = [
        "--session-timeout-ms",
        "6000",
        "--stop-file",
        &stop_s,
        "--idle",
        "2",
        "--timeout",
        "55",
    ];
    let members: Vec<Background> = (0..3)
        .map(|_| {
            Background::spawn(
                &mut py_group_consume(&py, "confluent.py", &b, "failover", topic, &opts),
                &b.scratch(""),
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(25),
        "three members own six partitions",
        || partitioned(&members.iter().collect::<Vec<_>>(), P),
    );

    // Produce while the group runs; kill one member a third of the way in.
    let input = b.scratch("failover-in.txt");
    write_recs(&input, &keyed_records(3000)).expect("writing input");
    let progress = b.scratch("failover-progress");
    let producer = Background::spawn(
        py_client(&py, "confluent.py")
            .args(["produce", "--bootstrap", &b.bootstrap(), "--topic", topic])
            .arg("--input")
            .arg(&input)
            .arg("--progress")
            .arg(&progress)
            .args(["--rate", "300"]),
        &b.scratch(""),
    );
    wait_progress(&progress, 1000, Duration::from_secs(30));
    let mut members = members.into_iter();
    let victim = members.next().expect("three members");
    let survivors: Vec<Background> = members.collect();
    let victim_had = owned(&victim);
    let victim_run = GroupRun::parse(&victim.kill9());
    assert!(
        !victim_run.records.is_empty() && !victim_run.commits.is_empty(),
        "the victim consumed and committed before the kill"
    );
    // Its partitions move to the survivors within the session timeout
    // plus the rebalance.
    let took = wait_until(
        Duration::from_secs(20),
        "survivors take over every partition",
        || partitioned(&survivors.iter().collect::<Vec<_>>(), P),
    );
    assert!(
        took < Duration::from_secs(6 + 8),
        "failover took {took:?} (session timeout 6 s)"
    );
    let (status, out, err) = producer.wait(Duration::from_secs(60));
    assert!(status.success(), "producer failed: {err}");
    let acked = parse_recs(&out);
    assert_eq!(acked.len(), 3000);
    fs::write(&stop, b"stop").expect("creating the stop file");
    let runs: Vec<GroupRun> = std::iter::once(victim_run)
        .chain(survivors.into_iter().map(|m| finish(m, &b)))
        .collect();
    for p in &victim_had {
        assert!(
            runs[1..].iter().any(|r| r.ever_owned.contains(p)),
            "the victim's partition {p} was never reassigned"
        );
    }

    // Every acknowledged record consumed; duplicates only at or after the
    // last commit of a member that consumed them (at-least-once).
    let mut seen: BTreeMap<(i32, i64), Vec<usize>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        for rec in &r.records {
            seen.entry((rec.partition, rec.offset)).or_default().push(i);
        }
    }
    let missing: Vec<_> = positions(&acked)
        .into_iter()
        .filter(|k| !seen.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records never consumed, first {:?}",
        missing.len(),
        missing.first()
    );
    let mut dups = 0;
    for ((p, o), who) in &seen {
        if who.len() < 2 {
            continue;
        }
        dups += 1;
        let explained = who
            .iter()
            .any(|&i| runs[i].commits.get(p).is_none_or(|&c| c <= *o));
        assert!(
            explained,
            "partition {p} offset {o} consumed by members {who:?}, each of which had committed past it"
        );
    }
    eprintln!("failover took {took:?}; {dups} records redelivered");
}

// spec: E2E-12
#[test]
fn two_groups_each_get_everything_two_members_split_it() {
    let Some(py) = python() else { return };
    const P: u32 = 4;
    let b = Broker::start(GROUP_BROKER);
    let topic = "g-pubsub";
    create_topic(&py, &b, topic, P);
    // Queue: two members of one group, both assigned before any record.
    let stop = b.scratch("queue-stop");
    let stop_s = stop.to_str().expect("utf-8 path").to_string();
    let opts = ["--stop-file", &stop_s, "--idle", "2", "--timeout", "50"];
    let q1 = Background::spawn(
        &mut py_group_consume(&py, "confluent.py", &b, "queue", topic, &opts),
        &b.scratch(""),
    );
    let q2 = Background::spawn(
        &mut py_group_consume(&py, "confluent.py", &b, "queue", topic, &opts),
        &b.scratch(""),
    );
    wait_until(
        Duration::from_secs(25),
        "two members split four partitions",
        || partitioned(&[&q1, &q2], P),
    );
    let acked = py_produce(&py, "confluent.py", &b, topic, &records_for(P, 250, 0), &[]);
    assert_eq!(acked.len(), 1000);

    // Publish-subscribe: two other groups each read every record.
    for group in ["sub-a", "sub-b"] {
        let out = run_ok(
            &mut py_group_consume(
                &py,
                "confluent.py",
                &b,
                group,
                topic,
                &["--count", "1000", "--idle", "1"],
            ),
            CLIENT_LIMIT,
            &b,
        );
        let run = GroupRun::parse(&out.stdout);
        assert_same(&b, &acked, &run.records);
    }

    fs::write(&stop, b"stop").expect("creating the stop file");
    let r1 = finish(q1, &b);
    let r2 = finish(q2, &b);
    let (s1, s2) = (positions(&r1.records), positions(&r2.records));
    assert!(
        !s1.is_empty() && !s2.is_empty(),
        "both queue members got records ({} and {})",
        s1.len(),
        s2.len()
    );
    assert!(s1.is_disjoint(&s2), "queue members overlap");
    let mut both = r1.records.clone();
    both.extend(r2.records);
    assert_same(&b, &acked, &both);
}

/// One consumer run of the restart test: returns the records received.
fn member_run(
    py: &std::path::Path,
    driver: &str,
    b: &Broker,
    group: &str,
    topic: &str,
    n: usize,
) -> Vec<Rec> {
    if driver == "kcat" {
        let out = run_ok(
            Command::new("kcat")
                .args(["-b", &b.bootstrap(), "-G", group, "-c", &n.to_string()])
                .args(["-X", "auto.offset.reset=earliest", "-q"])
                .args(["-f", "%p\t%o\n", topic]),
            CLIENT_LIMIT,
            b,
        );
        return String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (p, o) = l.split_once('\t').expect("partition<TAB>offset");
                let mut r = Rec::keyed(0);
                r.partition = p.parse().expect("partition");
                r.offset = o.parse().expect("offset");
                r
            })
            .collect();
    }
    let out = run_ok(
        &mut py_group_consume(
            py,
            driver,
            b,
            group,
            topic,
            &["--count", &n.to_string(), "--idle", "1.5"],
        ),
        CLIENT_LIMIT,
        b,
    );
    GroupRun::parse(&out.stdout).records
}

// spec: E2E-13
#[test]
fn kcat_kafka_python_and_aiokafka_resume_from_their_commits() {
    let Some(py) = python() else { return };
    if kcat().is_none() {
        return;
    }
    const P: u32 = 3;
    let b = Broker::start(GROUP_BROKER);
    for (i, driver) in ["kcat", "kafka_python.py", "aiokafka_client.py"]
        .into_iter()
        .enumerate()
    {
        let topic = format!("g-resume-{i}");
        let group = format!("resume-{i}");
        create_topic(&py, &b, &topic, P);
        let first = py_produce(&py, "confluent.py", &b, &topic, &records_for(P, 40, 0), &[]);
        let got = member_run(&py, driver, &b, &group, &topic, first.len());
        assert_eq!(positions(&got), positions(&first), "{driver}: first run");
        let second = py_produce(
            &py,
            "confluent.py",
            &b,
            &topic,
            &records_for(P, 20, 500),
            &[],
        );
        let got = member_run(&py, driver, &b, &group, &topic, second.len());
        assert_eq!(
            positions(&got),
            positions(&second),
            "{driver}: the restarted consumer resumes from its commit\nbroker log:\n{}",
            b.log_tail()
        );
    }
}

// spec: E2E-14
#[test]
fn committed_offsets_survive_broker_kill_9() {
    let Some(py) = python() else { return };
    const P: u32 = 3;
    let mut b = Broker::start(GROUP_BROKER);
    let topic = "g-durable";
    create_topic(&py, &b, topic, P);
    let first = py_produce(&py, "confluent.py", &b, topic, &records_for(P, 50, 0), &[]);
    let got = member_run(&py, "confluent.py", &b, "durable", topic, first.len());
    assert_eq!(positions(&got), positions(&first));
    b.kill9();
    b.restart();
    let second = py_produce(
        &py,
        "confluent.py",
        &b,
        topic,
        &records_for(P, 10, 500),
        &[],
    );
    let got = member_run(&py, "confluent.py", &b, "durable", topic, second.len());
    assert_eq!(
        positions(&got),
        positions(&second),
        "after kill -9 the group resumes from its commits\nbroker log:\n{}",
        b.log_tail()
    );
}

// spec: E2E-15
#[test]
fn new_partitions_are_assigned_to_a_running_member() {
    let Some(py) = python() else { return };
    let b = Broker::start(GROUP_BROKER);
    let topic = "g-grow";
    create_topic(&py, &b, topic, 2);
    let stop = b.scratch("grow-stop");
    let stop_s = stop.to_str().expect("utf-8 path").to_string();
    let m = Background::spawn(
        &mut py_group_consume(
            &py,
            "confluent.py",
            &b,
            "grow",
            topic,
            &[
                "--metadata-refresh-ms",
                "1000",
                "--stop-file",
                &stop_s,
                "--idle",
                "1",
                "--timeout",
                "50",
            ],
        ),
        &b.scratch(""),
    );
    wait_until(
        Duration::from_secs(20),
        "member owns both partitions",
        || owned(&m) == BTreeSet::from([0, 1]),
    );
    run_ok(
        py_client(&py, "confluent.py")
            .args(["create-partitions", "--bootstrap", &b.bootstrap()])
            .args(["--topic", topic, "--partitions", "4"]),
        CLIENT_LIMIT,
        &b,
    );
    wait_until(
        Duration::from_secs(20),
        "the new partitions are assigned",
        || owned(&m) == BTreeSet::from([0, 1, 2, 3]),
    );
    let acked = py_produce(&py, "confluent.py", &b, topic, &records_for(4, 25, 0), &[]);
    wait_until(
        Duration::from_secs(20),
        "records of every partition arrive",
        || GroupRun::parse(&m.stdout_so_far()).records.len() >= acked.len(),
    );
    fs::write(&stop, b"stop").expect("creating the stop file");
    let run = finish(m, &b);
    assert_same(&b, &acked, &run.records);
}

/// Runs a `kafka_python.py` group-offsets command and returns its `#` lines.
fn offsets_cmd(py: &std::path::Path, b: &Broker, args: &[&str]) -> Result<String, String> {
    let out = run_with_input(
        py_client(py, "kafka_python.py").args(args).args([
            "--bootstrap",
            &b.bootstrap(),
            "--timeout",
            "20",
        ]),
        None,
        CLIENT_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn committed(py: &std::path::Path, b: &Broker, group: &str) -> Vec<String> {
    let text = offsets_cmd(py, b, &["group-offsets", "--topic", "-", "--group", group])
        .unwrap_or_else(|e| panic!("listing the offsets of {group}: {e}"));
    assert!(text.contains("# listed"), "{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("# offset "))
        .map(str::to_owned)
        .collect()
}

// spec: E2E-34, GRP-47
#[test]
fn kafka_python_deletes_committed_offsets_and_the_deletion_survives_kill9() {
    let Some(py) = python() else { return };
    let mut b = Broker::start(GROUP_BROKER);
    create_topic(&py, &b, "da", 2);
    create_topic(&py, &b, "db", 1);
    for (topic, n, at) in [("da", "2", "5"), ("db", "1", "3")] {
        let args = [
            "commit-offsets",
            "--topic",
            topic,
            "--group",
            "og",
            "--partitions",
            n,
            "--before",
            at,
        ];
        let text =
            offsets_cmd(&py, &b, &args).unwrap_or_else(|e| panic!("committing {topic}: {e}"));
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# committed "))
            .collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.ends_with(" NoError")),
            "{text}"
        );
    }
    assert_eq!(committed(&py, &b, "og"), ["da 0 5", "da 1 5", "db 0 3"]);
    let text = offsets_cmd(
        &py,
        &b,
        &[
            "delete-group-offsets",
            "--topic",
            "da",
            "--partition",
            "1",
            "--group",
            "og",
        ],
    )
    .unwrap_or_else(|e| panic!("deleting: {e}"));
    assert!(text.contains("# deleted da 1 NoError"), "{text}");
    assert_eq!(committed(&py, &b, "og"), ["da 0 5", "db 0 3"]);
    // The tombstone is in __consumer_offsets: a restarted coordinator
    // replays it.
    b.kill9();
    b.restart();
    assert_eq!(committed(&py, &b, "og"), ["da 0 5", "db 0 3"]);
    let err = offsets_cmd(
        &py,
        &b,
        &[
            "delete-group-offsets",
            "--topic",
            "da",
            "--partition",
            "0",
            "--group",
            "no-such-group",
        ],
    )
    .unwrap_err();
    assert!(err.contains("GroupIdNotFound"), "{err}");
}
