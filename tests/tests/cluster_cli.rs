//! `gregor produce`, `gregor consume` and `gregor perf` against a
//! three-broker ZooKeeper cluster through a single bootstrap broker: every
//! request reaches its partition's leader, also after the leader of a
//! partition is killed (spec: E2E-30, PRD-7, PRD-8); librdkafka's
//! DescribeCluster names every broker (PRO-29). The tests of this file run
//! one at a time (the cluster harness serialises them).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use gregor_runtime::client::Client;
use tests::cluster::*;
use tests::*;

const PARTITIONS: u32 = 3;
const LIMIT: Duration = Duration::from_secs(60);

/// Starts a cluster with a 3-partition, RF 3 topic whose leaders sit on
/// at least two different brokers.
fn cluster_with(topic: &str) -> Option<(Cluster, Meta)> {
    let c = Cluster::start(3)?;
    let m = c.create_topic(topic, PARTITIONS);
    let leaders: BTreeSet<i32> = m.topic(topic).values().map(|p| p.leader).collect();
    assert!(
        leaders.len() >= 2,
        "the leaders of {topic} should be spread over the brokers: {:?}",
        m.topic(topic)
    );
    Some((c, m))
}

/// `n` lines `key-i<TAB>value-i` starting at `first`.
fn keyed_lines(first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|i| format!("key-{i}\tvalue-{i}"))
        .collect()
}

/// How many of `lines` the key hash sends to each partition (PRD-1).
fn per_partition(lines: &[String]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let key = l.split('\t').next().expect("a key");
        *m.entry(murmur2_partition(key.as_bytes(), PARTITIONS))
            .or_insert(0) += 1;
    }
    m
}

fn produce(c: &Cluster, bootstrap: &str, topic: &str, lines: &[String]) {
    let input = lines.join("\n") + "\n";
    let out = run_with_input(
        c.gregor()
            .args(["produce", "-b", bootstrap, topic])
            .args(["--key-separator", "\t"]),
        Some(input.into_bytes()),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "gregor produce -b {bootstrap} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
}

fn consume_cmd(c: &Cluster, bootstrap: &str, topic: &str) -> Command {
    let mut cmd = c.gregor();
    cmd.args(["consume", "-b", bootstrap, topic, "--print-key"]);
    cmd
}

fn sorted_lines(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn consume_all(c: &Cluster, bootstrap: &str, topic: &str) -> Vec<String> {
    let out = run_with_timeout(&mut consume_cmd(c, bootstrap, topic), LIMIT);
    assert!(
        out.status.success(),
        "gregor consume -b {bootstrap} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    sorted_lines(&out.stdout)
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

/// The log end offset of a partition as its leader reports it over a
/// plain single connection (a follower would refuse).
fn end_offset_at(addr: &str, topic: &str, partition: i32) -> Result<i64, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let mut client = Client::connect(addr).await.map_err(|e| e.to_string())?;
            client
                .list_offset(topic, partition, -1)
                .await
                .map_err(|e| e.to_string())
        })
}

/// A broker that does not lead every partition (so that a client stuck on
/// it would miss some).
fn not_leading_all(m: &Meta, topic: &str, among: &[i32]) -> i32 {
    *among
        .iter()
        .find(|&&b| m.topic(topic).values().any(|p| p.leader != b))
        .expect("some broker does not lead every partition")
}

// spec: PRD-7
#[test]
fn produce_through_one_broker_and_consume_through_another_reach_every_leader() {
    let topic = "routed";
    let Some((c, m)) = cluster_with(topic) else {
        return;
    };
    let ids = c.ids();
    let a = not_leading_all(&m, topic, &ids);
    let b = *ids.iter().find(|&&i| i != a).expect("a second broker");
    let lines = keyed_lines(0, 600);
    produce(&c, &c.node(a).bootstrap(), topic, &lines);

    let got = consume_all(&c, &c.node(b).bootstrap(), topic);
    assert_eq!(
        got.len(),
        lines.len(),
        "consumed through broker {b} what was produced through broker {a}"
    );
    assert_eq!(got, sorted(&lines));

    // Each partition's records sit on its leader, where the key hash put
    // them, and the leader is the one serving them.
    let want = per_partition(&lines);
    assert_eq!(
        want.len(),
        PARTITIONS as usize,
        "keys cover every partition"
    );
    for (&p, &n) in &want {
        let leader = m.part(topic, p).expect("partition").leader;
        let end = end_offset_at(&c.node(leader).bootstrap(), topic, p)
            .unwrap_or_else(|e| panic!("end offset of {topic}-{p} at leader {leader}: {e}"));
        assert_eq!(end, n, "{topic}-{p} on its leader {leader}");
        let follower = *ids.iter().find(|&&i| i != leader).expect("a follower");
        assert!(
            end_offset_at(&c.node(follower).bootstrap(), topic, p).is_err(),
            "broker {follower} is no leader of {topic}-{p} and must refuse to serve it"
        );
    }

    // spec: PRO-29 — librdkafka's DescribeCluster through any broker names
    // every broker and the controller the metadata names.
    let out = run_with_timeout(
        py_client(c.python(), "confluent.py")
            .args(["describe-cluster", "--bootstrap", &c.node(b).bootstrap()])
            .args(["--topic", topic, "--timeout", "20"]),
        LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let described: BTreeSet<i32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# broker "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(described, ids.iter().copied().collect(), "{text}");
    assert!(
        text.contains(&format!("# controller {}\n", m.controller)),
        "{text}"
    );

    // A comma-separated bootstrap list whose first address is dead works.
    let dead = format!("127.0.0.1:{}", free_port());
    let list = format!("{dead},{}", c.node(b).bootstrap());
    assert_eq!(consume_all(&c, &list, topic), sorted(&lines));

    // A group member fetches every assigned partition from its leader.
    let out = run_with_timeout(
        consume_cmd(&c, &c.node(b).bootstrap(), topic).args(["--group", "g1", "--from-beginning"]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "gregor consume --group failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(
        sorted_lines(&out.stdout),
        sorted(&lines),
        "the group member's records"
    );
}

fn perf_json(c: &Cluster, args: &[&str]) -> String {
    let out = run_with_timeout(c.gregor().arg("perf").args(args).arg("--json"), LIMIT);
    assert!(
        out.status.success(),
        "gregor perf {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The integer value of `"field":N` in a one-line JSON summary.
fn json_u64(json: &str, field: &str) -> u64 {
    let key = format!("\"{field}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        + key.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|e| panic!("{field} in {json}: {e}"))
}

// spec: PRD-7, PRD-4
#[test]
fn perf_produce_and_consume_through_one_broker_move_every_partition() {
    let topic = "perf-routed";
    let Some((c, m)) = cluster_with(topic) else {
        return;
    };
    let ids = c.ids();
    let a = not_leading_all(&m, topic, &ids);
    let b = *ids.iter().find(|&&i| i != a).expect("a second broker");
    let n = 20_000u64;
    let produced = perf_json(
        &c,
        &[
            "produce",
            "-b",
            &c.node(a).bootstrap(),
            "--topic",
            topic,
            "--num-records",
            &n.to_string(),
            "--record-size",
            "100",
            "--acks",
            "all",
            "--keys",
        ],
    );
    assert_eq!(json_u64(&produced, "records"), n, "{produced}");
    let mut total = 0;
    for p in 0..PARTITIONS as i32 {
        let leader = m.part(topic, p).expect("partition").leader;
        let end = end_offset_at(&c.node(leader).bootstrap(), topic, p)
            .unwrap_or_else(|e| panic!("end offset of {topic}-{p} at leader {leader}: {e}"));
        assert!(end > 0, "{topic}-{p} got no records");
        total += end;
    }
    assert_eq!(total as u64, n, "records on the partitions' leaders");

    let consumed = perf_json(
        &c,
        &["consume", "-b", &c.node(b).bootstrap(), "--topic", topic],
    );
    assert_eq!(json_u64(&consumed, "records"), n, "{consumed}");
}

// spec: PRD-8
#[test]
fn after_a_leader_is_killed_produce_and_consume_go_through_a_survivor() {
    let topic = "failover";
    let Some((mut c, m)) = cluster_with(topic) else {
        return;
    };
    let before = keyed_lines(0, 300);
    produce(&c, &c.bootstrap_of(&[1]), topic, &before);
    let victim = m.part(topic, 0).expect("partition 0").leader;
    let survivors: Vec<i32> = c.ids().into_iter().filter(|&i| i != victim).collect();
    let via = c.node(survivors[0]).bootstrap();

    // A follower started before the failure reads across it.
    let total = 600;
    let follow = Background::spawn(
        consume_cmd(&c, &via, topic).args(["--follow", "--count", &total.to_string()]),
        &c.scratch(""),
    );
    let deadline = Instant::now() + LIMIT;
    while sorted_lines(&follow.stdout_so_far()).len() < before.len() {
        assert!(
            Instant::now() < deadline,
            "the follower did not read the first records"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    c.kill9(victim);
    c.wait_meta_from(
        &survivors,
        LIMIT,
        &format!("every partition of {topic} led by a survivor of broker {victim}"),
        Some(topic),
        |m| {
            let t = m.topic(topic);
            t.len() == PARTITIONS as usize
                && t.values().all(|p| p.leader >= 0 && p.leader != victim)
        },
    );
    let after = keyed_lines(300, total - 300);
    produce(&c, &via, topic, &after);

    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(consume_all(&c, &via, topic), sorted(&all));

    let (status, out, err) = follow.wait(LIMIT);
    assert!(status.success(), "the follower failed: {err}\n{}", c.logs());
    assert_eq!(sorted_lines(&out), sorted(&all), "the follower's records");
}
