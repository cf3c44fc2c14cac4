//! Operations on a ZooKeeper cluster while producing: a reassignment onto a
//! fourth broker, a rolling restart, two of three brokers down (acks=all
//! must refuse), and a consumer group whose coordinator is killed
//! (spec: E2E-16, E2E-24 … E2E-27), and a partition moved with
//! kafka-python's reassignment API (E2E-32), and a preferred leader
//! elected on request (E2E-33). The single-node mode needing no
//! ZooKeeper is E2E-10 (`default_broker.rs`) and every other end-to-end
//! test. The tests of this file run one at a time.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::cluster::*;
use tests::*;

const PARTITIONS: u32 = 3;
const RATE: u32 = 150;
const STALL: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn start(topic: &str) -> Option<(Cluster, Load)> {
    let c = Cluster::start(3)?;
    c.create_topic(topic, PARTITIONS);
    let load = Load::start(&c, topic, RATE);
    load.wait_acked(&c, 300, STALL, "producing before the operation");
    Some((c, load))
}

fn ids_csv(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Adds a fourth broker and waits for its registration; returns it, the
/// current replicas of `topic`-0 and a target replacing the preferred
/// (first) one with the new broker, so leadership has to move too.
fn fourth_broker_target(c: &mut Cluster, topic: &str) -> (i32, Vec<i32>, Vec<i32>) {
    let fourth = c.add_broker();
    c.wait_meta(
        Duration::from_secs(30),
        "the fourth broker registered",
        None,
        |m| m.brokers.contains(&fourth),
    );
    let m = c.metadata(Some(topic)).expect("metadata");
    let old = m.part(topic, 0).expect("partition 0").replicas.clone();
    let mut new = old.clone();
    new[0] = fourth;
    (fourth, old, new)
}

/// Waits until `topic`-0 has exactly the replicas of `new`, all in sync,
/// led by one of them.
fn wait_moved(c: &Cluster, topic: &str, old: &[i32], new: &[i32]) -> Meta {
    let want: std::collections::BTreeSet<i32> = new.iter().copied().collect();
    c.wait_meta(
        Duration::from_secs(90),
        &format!("{topic}-0 moved from replicas {old:?} to {new:?}, all in sync"),
        Some(topic),
        |m| {
            m.part(topic, 0).is_some_and(|p| {
                p.replicas
                    .iter()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>()
                    == want
                    && p.fully_in_sync()
                    && want.contains(&p.leader)
            })
        },
    )
}

// spec: E2E-24
#[test]
fn partition_reassigned_onto_a_fourth_broker_while_producing() {
    let topic = "reassign";
    let Some((mut c, load)) = start(topic) else {
        return;
    };
    let (fourth, old, new) = fourth_broker_target(&mut c, topic);
    let out = run_with_timeout(
        Command::new(gregor_bin())
            .args(["topics", "reassign", "--zookeeper", &c.zk.connect_string()])
            .args(["--topic", topic, "--partition", "0"])
            .args(["--replicas", &ids_csv(&new)]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "gregor topics reassign failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    let m = wait_moved(&c, topic, &old, &new);
    eprintln!("after the reassignment: {:?}", m.part(topic, 0));
    load.wait_more(&c, 300, STALL, "producing after the reassignment");
    let r = load.finish(&c);
    r.assert_ok(&c, "a reassignment onto a fourth broker");
    // The new replica holds the partition's data.
    let dir = c.node(fourth).data_dir().join(format!("{topic}-0"));
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("broker {fourth} has no {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    assert!(bytes > 0, "broker {fourth}'s copy of {topic}-0 is empty");
}

/// Runs a `kafka_python.py` admin command against the cluster and returns
/// its `#` lines.
fn kafka_python_admin(c: &Cluster, args: &[&str]) -> String {
    let out = run_with_timeout(
        py_client(c.python(), "kafka_python.py").args(args).args([
            "--bootstrap",
            &c.bootstrap(),
            "--timeout",
            "20",
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kafka_python.py {args:?} failed: {text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    text
}

// spec: E2E-32, PRO-32
#[test]
fn kafka_python_moves_a_partition_with_the_reassignment_api() {
    let topic = "api-moved";
    let Some(mut c) = Cluster::start(3) else {
        return;
    };
    c.create_topic(topic, 2);
    let (fourth, old, new) = fourth_broker_target(&mut c, topic);
    let reassign = |p: &str, replicas: &str| {
        kafka_python_admin(
            &c,
            &[
                "reassign",
                "--topic",
                topic,
                "--partition",
                p,
                "--replicas",
                replicas,
            ],
        )
    };
    let text = reassign("1", "cancel");
    assert!(
        text.contains(&format!(
            "# reassign {topic} 1 NoReassignmentInProgressError"
        )),
        "{text}"
    );
    let text = reassign("1", &format!("{},99", old[0]));
    assert!(
        text.contains(&format!(
            "# reassign {topic} 1 InvalidReplicationAssignmentError"
        )),
        "an unregistered broker: {text}"
    );
    let text = reassign("0", &ids_csv(&new));
    assert!(text.contains(&format!("# reassign {topic} 0 ok")), "{text}");
    wait_moved(&c, topic, &old, &new);
    // Done: nothing is listed as ongoing any more, and partition 1 never
    // moved.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = kafka_python_admin(&c, &["list-reassignments", "--topic", topic]);
        assert!(text.contains("# listed"), "{text}");
        if !text.contains("# ongoing") {
            break;
        }
        assert!(Instant::now() < deadline, "still listed as ongoing: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = c.metadata(Some(topic)).expect("metadata");
    assert_eq!(m.part(topic, 1).expect("partition 1").replicas.len(), 3);
    assert!(
        !m.part(topic, 1)
            .expect("partition 1")
            .replicas
            .contains(&fourth)
    );
}

// spec: E2E-33, PRO-33, CLU-82
#[test]
fn kafka_python_elects_the_preferred_leader_on_request() {
    let topic = "elected";
    // Without the periodic rebalance, leadership only comes back on request.
    let Some(mut c) = Cluster::start_with(3, &["auto.leader.rebalance.enable=false"]) else {
        return;
    };
    let m = c.create_topic(topic, 3);
    let preferred = m.part(topic, 0).expect("partition 0").replicas[0];
    assert_eq!(m.part(topic, 0).expect("partition 0").leader, preferred);
    let elect = |c: &Cluster| {
        kafka_python_admin(c, &["elect-leaders", "--topic", topic, "--partition", "0"])
    };
    let text = elect(&c);
    assert!(
        text.contains(&format!("# elect {topic} 0 84")),
        "ELECTION_NOT_NEEDED while the preferred replica leads: {text}"
    );
    // A clean stop hands its leaderships over; back in sync, it leads
    // nothing.
    c.sigterm(preferred);
    c.restart(preferred);
    let m = c.wait_meta(
        Duration::from_secs(60),
        &format!("broker {preferred} back in the ISR of {topic}-0"),
        Some(topic),
        |m| m.part(topic, 0).is_some_and(|p| p.fully_in_sync()),
    );
    let p0 = m.part(topic, 0).expect("partition 0");
    assert_ne!(p0.leader, preferred, "leadership moved away: {p0:?}");
    let text = elect(&c);
    assert!(text.contains(&format!("# elect {topic} 0 0")), "{text}");
    // The answer came after the election (every broker learns it through
    // its own watch, a moment later).
    c.wait_meta(
        Duration::from_secs(10),
        &format!("broker {preferred} leading {topic}-0 again"),
        Some(topic),
        |m| m.part(topic, 0).is_some_and(|p| p.leader == preferred),
    );
}

// spec: E2E-25
#[test]
fn rolling_restart_with_sigterm_loses_nothing() {
    let topic = "rolling";
    let Some((mut c, load)) = start(topic) else {
        return;
    };
    for id in c.ids() {
        let t = Instant::now();
        let status = c.sigterm(id);
        assert!(
            status.success(),
            "broker {id} exited with {status} on SIGTERM:\n{}",
            c.node(id).log_tail()
        );
        c.restart(id);
        c.wait_in_sync(topic, PARTITIONS, Duration::from_secs(60));
        eprintln!(
            "broker {id} restarted and back in sync in {:?}",
            t.elapsed()
        );
        load.wait_more(
            &c,
            100,
            STALL,
            &format!("producing after broker {id}'s restart"),
        );
    }
    let r = load.finish(&c);
    r.assert_ok(&c, "a rolling restart");
}

// spec: E2E-26
#[test]
fn two_of_three_down_acks_all_refuses_then_resumes() {
    let topic = "minisr";
    let Some((mut c, load)) = start(topic) else {
        return;
    };
    let (a, b) = (2, 3);
    c.kill9(a);
    c.kill9(b);
    c.wait_meta(
        Duration::from_secs(40),
        "broker 1 alone leading every partition, the only live ISR member",
        Some(topic),
        |m| {
            m.topic(topic)
                .values()
                .all(|p| p.leader == 1 && p.isr.iter().all(|b| *b == 1 || !m.brokers.contains(b)))
        },
    );
    // The window starts once the cluster has noticed: a record that reached
    // a second replica before the kills is committed (and acknowledged)
    // when the leader drops the other, lagging follower from the ISR — it
    // is replicated, so that acknowledgement is correct.
    let window_start = now_ms() + 1000;
    // A fresh producer gets nothing acknowledged.
    let t = Instant::now();
    let out = run_with_timeout(
        py_client(c.python(), "cluster_client.py")
            .args(["produce", "--bootstrap", &c.bootstrap_of(&[1])])
            .args(["--topic", topic, "--count", "20", "--first", "900000"])
            .args(["--rate", "100", "--timeout", "8", "--no-retries"])
            .arg("--stop-file")
            .arg(c.scratch("never-created")),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "the probe producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (acked, notes) = complete_lines(&out.stdout);
    assert!(
        acked.is_empty(),
        "with one broker of three up and min.insync.replicas=2, acks=all acknowledged {} \
         records: {:?}",
        acked.len(),
        acked.first().map(Rec::to_line)
    );
    let errors = delivery_errors(&notes);
    assert_eq!(
        errors.len(),
        20,
        "every record must fail with NOT_ENOUGH_REPLICAS: {notes:?}"
    );
    // spec: REP-70 — refused by the leader, not left to time out.
    assert!(
        errors.iter().all(|e| e.contains("NOT_ENOUGH_REPLICAS")),
        "expected NOT_ENOUGH_REPLICAS: {errors:?}"
    );
    eprintln!("lone broker refused for {:?}: {}", t.elapsed(), errors[0]);
    let window_end = now_ms();
    c.restart(a);
    c.wait_meta(
        Duration::from_secs(60),
        &format!("broker {a} back in the ISR of every partition"),
        Some(topic),
        |m| m.topic(topic).values().all(|p| p.isr.contains(&a)),
    );
    load.wait_more(&c, 300, STALL, "producing after a second broker came back");
    c.restart(b);
    c.wait_in_sync(topic, PARTITIONS, Duration::from_secs(60));
    let r = load.finish(&c);
    let during: Vec<&Rec> = r
        .acked
        .iter()
        .filter(|x| x.timestamp >= window_start && x.timestamp < window_end)
        .collect();
    assert!(
        during.is_empty(),
        "{} records were acknowledged while only one broker was up (first: {})",
        during.len(),
        during[0].to_line()
    );
    r.assert_ok(&c, "two of three brokers down");
}

/// Produces `recs` with an idempotent acks=all librdkafka producer and
/// returns the acknowledged records.
fn produce_all(c: &Cluster, topic: &str, recs: &[Rec]) -> Vec<Rec> {
    let input = c.scratch(&format!("in-{}.txt", unique()));
    write_recs(&input, recs).expect("writing the producer input");
    let out = run_with_timeout(
        py_client(c.python(), "confluent.py")
            .args(["produce", "--bootstrap", &c.bootstrap_of(&c.up())])
            .args(["--topic", topic, "--idempotence", "--timeout", "60"])
            .arg("--input")
            .arg(&input),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "producing failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    let acked = parse_recs(&out.stdout);
    assert_eq!(acked.len(), recs.len());
    acked
}

fn coordinator(c: &Cluster, group: &str) -> i32 {
    let mut last = String::new();
    for _ in 0..60 {
        let out = run_with_timeout(
            py_client(c.python(), "cluster_client.py")
                .args(["coordinator", "--bootstrap", &c.bootstrap_of(&c.up())])
                .args(["--group", group, "--timeout", "10"]),
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(id) = text.trim().strip_prefix("coordinator ")
            && let Ok(id) = id.parse()
        {
            return id;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no coordinator for {group}: {last}\n{}", c.logs());
}

fn ends(acked: &[Rec]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for r in acked {
        let e = m.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    m
}

// spec: E2E-27
#[test]
fn group_survives_its_coordinator_broker_kill9() {
    let topic = "coordinated";
    let group = "survivors";
    let Some(mut c) = Cluster::start(3) else {
        return;
    };
    c.create_topic(topic, PARTITIONS);
    let first = produce_all(&c, topic, &keyed_records(600));

    // Member A: commits after every batch.
    let stop = c.scratch("stop-member-a");
    let mut cmd = py_client(c.python(), "confluent.py");
    cmd.args(["group-consume", "--bootstrap", &c.bootstrap()])
        .args(["--topic", topic, "--group", group])
        .args([
            "--session-timeout-ms",
            "6000",
            "--idle",
            "1",
            "--timeout",
            "300",
        ])
        .arg("--stop-file")
        .arg(&stop);
    let member_a = Background::spawn(&mut cmd, &c.scratch(""));
    let committed_up_to = |member: &Background, want: &BTreeMap<i32, i64>| {
        let run = GroupRun::parse(&member.stdout_so_far());
        want.iter()
            .all(|(p, o)| run.commits.get(p).is_some_and(|c| c >= o))
    };
    let want1 = ends(&first);
    wait_until(
        Duration::from_secs(60),
        "member A consumed and committed the first 600 records",
        || committed_up_to(&member_a, &want1),
    );
    let old = coordinator(&c, group);
    c.kill9(old);
    let second: Vec<Rec> = (600..1200).map(Rec::keyed).collect();
    let second = produce_all(&c, topic, &second);
    let want2 = ends(&second);
    wait_until(
        Duration::from_secs(90),
        "member A consumed and committed the next 600 records through a new coordinator",
        || committed_up_to(&member_a, &want2),
    );
    let new = coordinator(&c, group);
    assert_ne!(
        new, old,
        "the group's coordinator did not move off the killed broker"
    );
    let run_a = GroupRun::parse(&member_a.kill9());

    // Member B, after A died without leaving: resumes at A's commits.
    let third: Vec<Rec> = (1200..1500).map(Rec::keyed).collect();
    let third = produce_all(&c, topic, &third);
    let out = run_with_timeout(
        py_client(c.python(), "confluent.py")
            .args(["group-consume", "--bootstrap", &c.bootstrap_of(&c.up())])
            .args(["--topic", topic, "--group", group])
            .args([
                "--session-timeout-ms",
                "6000",
                "--idle",
                "2",
                "--timeout",
                "90",
            ])
            .args(["--count", &third.len().to_string()]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "member B failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    let run_b = GroupRun::parse(&out.stdout);
    let mut by_part: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &run_b.records {
        by_part.entry(r.partition).or_default().push(r.offset);
    }
    let end3 = ends(&third);
    for (p, end) in &end3 {
        let committed = run_a.commits.get(p).copied().unwrap_or(0);
        let offsets = by_part.get(p).cloned().unwrap_or_default();
        assert_eq!(
            offsets.first().copied(),
            Some(committed),
            "partition {p}: member B must resume at member A's last commit {committed}"
        );
        let expected: Vec<i64> = (committed..*end).collect();
        assert_eq!(
            offsets, expected,
            "partition {p}: member B must read every offset from {committed} to {end} once, \
             in order"
        );
    }
    // Every acknowledged record reached the group.
    let mut seen: std::collections::BTreeSet<(i32, i64)> = std::collections::BTreeSet::new();
    for r in run_a.records.iter().chain(&run_b.records) {
        seen.insert((r.partition, r.offset));
    }
    let missing: Vec<String> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .filter(|r| !seen.contains(&(r.partition, r.offset)))
        .map(|r| format!("{}/{}", r.partition, r.offset))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records never reached the group, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}
