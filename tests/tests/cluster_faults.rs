//! A three-broker ZooKeeper cluster under crash, freeze and network faults,
//! with an idempotent acks=all librdkafka producer and a consumer running
//! throughout; afterwards every acknowledged record must have been consumed
//! at the offset it was acknowledged at, with no gap in any partition
//! (spec: E2E-16, E2E-17, E2E-18 … E2E-23). The tests of this file run one at a
//! time (the harness serializes clusters).

use std::time::Duration;

use tests::cluster::*;

const TOPIC: &str = "faults";
const PARTITIONS: u32 = 3;
/// Records per second of the background producer.
const RATE: u32 = 150;
/// How long a fault may stall producing before the test fails.
const STALL: Duration = Duration::from_secs(60);

/// A cluster with the topic created (RF 3, min.insync 2) and the load
/// running, with 300 records acknowledged before the fault.
fn setup() -> Option<(Cluster, Load)> {
    let c = Cluster::start(3)?;
    c.create_topic(TOPIC, PARTITIONS);
    let load = Load::start(&c, TOPIC, RATE);
    load.wait_acked(&c, 300, STALL, "producing before the fault");
    Some((c, load))
}

/// The end of every test: producing continues after the repair, then the
/// checker runs.
fn finish(c: &Cluster, load: Load, fault: &str) {
    c.wait_in_sync(TOPIC, PARTITIONS, Duration::from_secs(60));
    load.wait_more(
        c,
        200,
        STALL,
        &format!("producing after {fault} was repaired"),
    );
    let r = load.finish(c);
    r.assert_ok(c, fault);
}

fn replicas_of(m: &Meta, p: i32) -> PartMeta {
    m.part(TOPIC, p).cloned().expect("partition in Metadata")
}

/// Each fault the harness injects is seen by the cluster the way it is
/// meant to be (no controller or replication involved): a broker cut off
/// by its proxies, frozen, or killed leaves `/brokers/ids` once its session
/// expires and registers again once healed, thawed or restarted; after a
/// ZooKeeper restart every broker is registered; SIGTERM exits 0.
// spec: E2E-17
#[test]
fn registrations_follow_every_injected_fault() {
    let Some(mut c) = Cluster::start_registered(3, &[]) else {
        return;
    };
    let gone = |c: &Cluster, id: i32, others: &[i32], what: &str| {
        let t = std::time::Instant::now();
        c.wait_meta_from(
            others,
            SESSION_TIMEOUT * 4,
            &format!("broker {id} unregistered after {what}"),
            None,
            |m| !m.brokers.contains(&id),
        );
        let took = t.elapsed();
        eprintln!("broker {id} unregistered {took:?} after {what}");
        assert!(
            took + Duration::from_secs(2) >= SESSION_TIMEOUT,
            "broker {id} left after {took:?}, before its {SESSION_TIMEOUT:?} session timeout"
        );
    };
    let back = |c: &Cluster, id: i32, others: &[i32], what: &str| {
        c.wait_meta_from(
            others,
            Duration::from_secs(30),
            &format!("broker {id} registered again after {what}"),
            None,
            |m| m.brokers.contains(&id),
        );
    };
    // Clients are given the PLAINTEXT listeners, never the proxied
    // replication ones (or a cut would cut the clients too).
    let m = c.metadata(None).expect("metadata");
    for id in c.ids() {
        assert_eq!(
            m.addrs.get(&id),
            Some(&c.node(id).bootstrap()),
            "broker {id}'s address in Metadata: {m:?}"
        );
    }
    c.isolate(1);
    gone(&c, 1, &[2, 3], "being cut off");
    assert!(
        c.node(1).zk_proxy.counts().1 > 0,
        "no reconnect was refused"
    );
    c.heal();
    back(&c, 1, &[2, 3], "the heal");

    c.sigstop(2);
    gone(&c, 2, &[1, 3], "SIGSTOP");
    c.sigcont(2);
    back(&c, 2, &[1, 3], "SIGCONT");

    c.kill9(3);
    gone(&c, 3, &[1, 2], "kill -9");
    c.restart(3);
    back(&c, 3, &[1, 2], "its restart");

    c.zk.kill9();
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
    c.zk.restart();
    tests::wait_until(
        Duration::from_secs(30),
        "/brokers/ids/1..3 after ZooKeeper's restart",
        || {
            let ids = c.zk.cli(&["ls", &format!("{CHROOT}/brokers/ids")]);
            String::from_utf8_lossy(&ids.stdout).contains("[1, 2, 3]")
        },
    );
    let status = c.sigterm(1);
    assert!(status.success(), "SIGTERM: {status}");
}

// spec: E2E-18
#[test]
fn leader_killed_then_restarted_loses_no_acknowledged_record() {
    let Some((mut c, load)) = setup() else { return };
    let leader = c.leader(TOPIC, 0);
    c.kill9(leader);
    c.wait_meta(
        Duration::from_secs(30),
        &format!("a new leader for {TOPIC}-0 after broker {leader} was killed"),
        Some(TOPIC),
        |m| {
            m.part(TOPIC, 0)
                .is_some_and(|p| p.leader >= 0 && p.leader != leader)
        },
    );
    load.wait_more(&c, 300, STALL, "producing with the leader dead");
    c.restart(leader);
    finish(&c, load, "a leader kill -9");
}

// spec: E2E-19
#[test]
fn follower_killed_then_restarted_rejoins_the_isr() {
    let Some((mut c, load)) = setup() else { return };
    let m = c.metadata(Some(TOPIC)).expect("metadata");
    let p0 = replicas_of(&m, 0);
    let follower = *p0
        .replicas
        .iter()
        .find(|&&r| r != p0.leader)
        .expect("a follower");
    c.kill9(follower);
    c.wait_meta(
        Duration::from_secs(30),
        &format!("broker {follower} dropped from the ISR of every partition after its kill -9"),
        Some(TOPIC),
        |m| {
            m.topic(TOPIC)
                .values()
                .all(|p| !p.isr.contains(&follower) && p.isr.len() >= 2)
        },
    );
    load.wait_more(&c, 300, STALL, "producing with a follower dead");
    c.restart(follower);
    let others: Vec<i32> = c.ids().into_iter().filter(|&i| i != follower).collect();
    let m = c.wait_meta_from(
        &others,
        Duration::from_secs(60),
        &format!("restarted broker {follower} back in the ISR of every partition"),
        Some(TOPIC),
        |m| m.topic(TOPIC).values().all(|p| p.isr.contains(&follower)),
    );
    eprintln!("ISR after the restart: {:?}", m.topic(TOPIC));
    finish(&c, load, "a follower kill -9");
}

// spec: E2E-20
#[test]
fn frozen_leader_is_replaced_and_rejoins_as_follower() {
    let Some((c, load)) = setup() else { return };
    let zombie = c.leader(TOPIC, 0);
    let others: Vec<i32> = c.ids().into_iter().filter(|&i| i != zombie).collect();
    c.sigstop(zombie);
    let frozen = std::time::Instant::now();
    c.wait_meta_from(
        &others,
        Duration::from_secs(40),
        &format!("a new leader for {TOPIC}-0 while broker {zombie} is frozen"),
        Some(TOPIC),
        |m| {
            m.part(TOPIC, 0)
                .is_some_and(|p| p.leader >= 0 && p.leader != zombie)
        },
    );
    load.wait_more(&c, 300, STALL, "producing while the old leader is frozen");
    // Past the session timeout for sure: the zombie's session is gone.
    if let Some(rest) = (SESSION_TIMEOUT + Duration::from_secs(1)).checked_sub(frozen.elapsed()) {
        std::thread::sleep(rest);
    }
    c.sigcont(zombie);
    // The zombie must learn it lost leadership, truncate and follow. Ask
    // the others: the zombie's own answer may be stale for a moment.
    c.wait_meta_from(
        &others,
        Duration::from_secs(60),
        &format!("the thawed broker {zombie} back in every ISR"),
        Some(TOPIC),
        |m| m.topic(TOPIC).values().all(|p| p.isr.contains(&zombie)),
    );
    finish(
        &c,
        load,
        "a leader frozen past its session timeout (SIGSTOP/SIGCONT)",
    );
}

// spec: E2E-21
#[test]
fn leader_cut_off_from_peers_and_zookeeper_then_healed() {
    let Some((c, load)) = setup() else { return };
    let cut = c.leader(TOPIC, 0);
    let others: Vec<i32> = c.ids().into_iter().filter(|&i| i != cut).collect();
    c.isolate(cut);
    c.wait_meta_from(
        &others,
        Duration::from_secs(40),
        &format!("a new leader for {TOPIC}-0 while broker {cut} is cut off"),
        Some(TOPIC),
        |m| {
            m.part(TOPIC, 0)
                .is_some_and(|p| p.leader >= 0 && p.leader != cut && !p.isr.contains(&cut))
        },
    );
    load.wait_more(&c, 300, STALL, "producing while the old leader is cut off");
    let (_, refused) = c.node(cut).zk_proxy.counts();
    eprintln!("broker {cut}'s ZooKeeper reconnects refused while cut off: {refused}");
    c.heal();
    c.wait_meta_from(
        &others,
        Duration::from_secs(60),
        &format!("the healed broker {cut} back in every ISR"),
        Some(TOPIC),
        |m| m.topic(TOPIC).values().all(|p| p.isr.contains(&cut)),
    );
    finish(&c, load, "a leader network partition");
}

// spec: E2E-22
#[test]
fn controller_killed_another_broker_takes_over() {
    let Some((mut c, load)) = setup() else { return };
    let m = c.metadata(Some(TOPIC)).expect("metadata");
    let old = m.controller;
    assert!(old >= 1, "no controller in Metadata: {m:?}");
    c.kill9(old);
    let m = c.wait_meta(
        Duration::from_secs(30),
        &format!("a new controller after controller {old} was killed"),
        Some(TOPIC),
        |m| m.controller >= 1 && m.controller != old && !m.brokers.contains(&old),
    );
    let new = m.controller;
    let znode =
        c.zk.get(&format!("{CHROOT}/controller"))
            .unwrap_or_default();
    assert!(
        znode.contains(&format!("\"brokerid\":{new}")),
        "the /controller znode names broker {new}: {znode}"
    );
    c.wait_meta(
        Duration::from_secs(30),
        "every partition led by a live broker",
        Some(TOPIC),
        |m| {
            m.topic(TOPIC)
                .values()
                .all(|p| p.leader >= 1 && p.leader != old)
        },
    );
    load.wait_more(&c, 300, STALL, "producing after the controller died");
    c.restart(old);
    finish(&c, load, "a controller kill -9");
}

// spec: E2E-23
#[test]
fn zookeeper_restart_brokers_reregister_and_producing_continues() {
    let Some((mut c, load)) = setup() else { return };
    c.zk.kill9();
    // Longer than the session timeout: the brokers' sessions may expire,
    // and they must come back either way.
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
    c.zk.restart();
    c.wait_meta(
        Duration::from_secs(60),
        "all three brokers registered and a controller after ZooKeeper's restart",
        Some(TOPIC),
        |m| m.brokers.len() == 3 && m.controller >= 1,
    );
    tests::wait_until(
        Duration::from_secs(30),
        "the brokers' znodes /brokers/ids/1..3 after ZooKeeper's restart",
        || {
            let ids = c.zk.cli(&["ls", &format!("{CHROOT}/brokers/ids")]);
            String::from_utf8_lossy(&ids.stdout).contains("[1, 2, 3]")
        },
    );
    load.wait_more(&c, 300, STALL, "producing after ZooKeeper's restart");
    finish(&c, load, "a ZooKeeper restart");
}
