//! The controller against a real ZooKeeper, with brokers played by
//! ephemeral registrations from sessions the tests open and close
//! (`spec/controller.md`).

mod ctrl_support;

use std::time::Duration;

use gregor_core::ids::BrokerId;
use gregor_runtime::cluster::znodes::{self, PartitionStateZnode, ReassignmentEntry};
use gregor_runtime::controller::{self, ControllerError, admin, plan};
use zookeeper_client::{Acls, CreateMode};

use ctrl_support::{Zk, eventually};

/// Waits until the state of `topic`-`p` satisfies `pred`, returns it.
async fn state_where(
    zk: &Zk,
    topic: &str,
    p: i32,
    what: &str,
    pred: impl Fn(&PartitionStateZnode) -> bool,
) -> (PartitionStateZnode, i32) {
    eventually(what, || async {
        zk.state(topic, p).await.filter(|(s, _)| pred(s))
    })
    .await
}

/// CLU-60: one controller at a time; the epoch goes up with every
/// election; when the controller stops, another broker takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_and_reelection() {
    let zk = Zk::new("election").await;
    let a = zk.start_controller(1, &[]).await;
    let first = eventually("a controller", || zk.controller()).await;
    assert_eq!(first, 1);
    assert_eq!(zk.controller_epoch().await, Some(1));
    let b = zk.start_controller(2, &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(zk.controller().await, Some(1), "the holder keeps the role");
    a.stop().await;
    eventually("broker 2 takes over", || async {
        (zk.controller().await == Some(2)).then_some(())
    })
    .await;
    assert_eq!(zk.controller_epoch().await, Some(2), "CLU-60: epoch bumped");
    b.stop().await;
}

/// CLU-60, CLU-63: a controller cut off from ZooKeeper loses its session;
/// `/controller` goes with it, another broker takes over with a higher
/// epoch, and the old controller's `run` returns once it learns that its
/// session expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_controller_is_replaced() {
    let zk = Zk::new("isolation").await;
    let proxy = zk.proxy().await;
    let _b2 = zk.register(2, false).await;
    let old = zk.start_controller_via(&proxy, 1, &[]).await;
    eventually("1 controls", || async {
        (zk.controller().await == Some(1)).then_some(())
    })
    .await;
    let other = zk.start_controller(2, &[]).await;
    proxy.cut();
    eventually("2 takes over", || async {
        (zk.controller().await == Some(2)).then_some(())
    })
    .await;
    assert_eq!(zk.controller_epoch().await, Some(2));
    proxy.restore().await;
    old.ended().await;
    assert_eq!(
        zk.controller().await,
        Some(2),
        "the old controller did not come back"
    );
    other.stop().await;
}

/// CLU-70, CLU-66, CLU-67, REP-18, REP-20: initial state for a new topic;
/// when the leader's registration goes, the next ISR member leads with a
/// bumped leader epoch; the ISR is not shrunk below min.insync.replicas;
/// CLU-68/REP-22: an unclean restart leaves the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loss_moves_leadership() {
    let zk = Zk::new("loss").await;
    let b1 = zk.register(1, false).await;
    let b2 = zk.register(2, false).await;
    let _b3 = zk.register(3, false).await;
    let ctl = zk
        .start_controller(
            9,
            &[
                ("min.insync.replicas", "2"),
                ("auto.leader.rebalance.enable", "false"),
            ],
        )
        .await;
    zk.create_topic("t", &[&[1, 2, 3]]).await;
    let (s, v) = state_where(&zk, "t", 0, "initial state", |_| true).await;
    assert_eq!(
        (s.leader, s.leader_epoch, s.isr.clone(), v),
        (1, 0, vec![1, 2, 3], 0)
    );

    drop(b1);
    let (s, _) = state_where(&zk, "t", 0, "leader 2", |s| s.leader == 2).await;
    assert_eq!((s.leader_epoch, s.isr.clone()), (1, vec![2, 3]));

    drop(b2);
    let (s, _) = state_where(&zk, "t", 0, "leader 3", |s| s.leader == 3).await;
    assert_eq!(s.isr, vec![2, 3], "REP-18: kept at min.insync.replicas");
    assert_eq!(s.leader_epoch, 2);

    // Broker 2 comes back after a crash: it leaves the ISR (REP-22).
    let _b2 = zk.register(2, true).await;
    let (s, _) = state_where(&zk, "t", 0, "2 leaves the ISR", |s| s.isr == vec![3]).await;
    assert_eq!((s.leader, s.leader_epoch), (3, 2), "leadership unchanged");
    let flag_cleared = || async {
        let (d, _) = zk
            .admin
            .get_data(&znodes::broker_path(BrokerId(2)))
            .await
            .ok()?;
        let b: znodes::BrokerZnode = znodes::decode("/brokers/ids/2", &d).ok()?;
        (!b.unclean_start).then_some(())
    };
    eventually("CLU-68: unclean start marked handled", flag_cleared).await;
    ctl.stop().await;
}

/// CLU-61: a write fenced by an old controller epoch fails and changes
/// nothing; with the current epoch it applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_controller_write_fails() {
    let zk = Zk::new("fencing").await;
    let _b1 = zk.register(1, false).await;
    let ctl = zk
        .start_controller(1, &[("auto.leader.rebalance.enable", "false")])
        .await;
    zk.create_topic("t", &[&[1]]).await;
    let (s, v) = state_where(&zk, "t", 0, "state", |_| true).await;
    let (_, epoch_stat) = zk.admin.get_data(znodes::CONTROLLER_EPOCH).await.unwrap();
    let stale_version = epoch_stat.version;
    ctl.stop().await;
    // A newer controller is elected meanwhile.
    let newer = zk
        .start_controller(2, &[("auto.leader.rebalance.enable", "false")])
        .await;
    eventually("new epoch", || async {
        (zk.controller_epoch().await == Some(2)).then_some(())
    })
    .await;
    let mut changed = s.clone();
    changed.leader = -1;
    let txn = plan::Txn {
        what: "stale write".into(),
        ops: vec![plan::WriteOp::Set {
            path: znodes::partition_state_path("t", 0),
            data: znodes::encode(&changed),
            version: v,
        }],
    };
    let r = controller::write_fenced(&zk.admin, stale_version, &txn).await;
    assert!(matches!(r, Err(ControllerError::Fenced)), "{r:?}");
    assert_eq!(zk.state("t", 0).await.unwrap().0, s, "nothing written");
    newer.stop().await;
}

/// CLU-70, CLU-75: states for every partition of a new topic; deletion
/// removes states, topic, config and the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_topic_then_deletion() {
    let zk = Zk::new("deletion").await;
    let _b1 = zk.register(1, false).await;
    let _b2 = zk.register(2, false).await;
    let ctl = zk
        .start_controller(1, &[("auto.leader.rebalance.enable", "false")])
        .await;
    // Broker 3 is not registered: it is left out of the ISR.
    zk.create_topic("d", &[&[1, 2], &[2, 3]]).await;
    let (s0, _) = state_where(&zk, "d", 0, "p0", |_| true).await;
    let (s1, _) = state_where(&zk, "d", 1, "p1", |_| true).await;
    assert_eq!((s0.leader, s0.isr), (1, vec![1, 2]));
    assert_eq!(
        (s1.leader, s1.isr),
        (2, vec![2]),
        "CLU-70: ISR = live replicas"
    );

    // A partition added to the existing topic gets its state too.
    let mut t = zk.topic("d").await.unwrap();
    t.partitions.insert("2".into(), vec![2, 1]);
    zk.admin
        .set_data(&znodes::topic_path("d"), &znodes::encode(&t), None)
        .await
        .unwrap();
    let (s2, _) = state_where(&zk, "d", 2, "p2", |_| true).await;
    assert_eq!((s2.leader, s2.leader_epoch, s2.isr), (2, 0, vec![1, 2]));

    zk.admin
        .create(
            &znodes::delete_topic_path("d"),
            &[],
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    eventually("deletion done", || async {
        (!zk.exists(&znodes::delete_topic_path("d")).await).then_some(())
    })
    .await;
    assert!(!zk.exists(&znodes::topic_path("d")).await);
    assert!(!zk.exists(&znodes::topic_config_path("d")).await);
    assert!(!zk.exists(&znodes::partition_state_path("d", 0)).await);
    ctl.stop().await;
}

/// CLU-76 … CLU-79, CLU-90: replicas grow to old ∪ new with a leader
/// epoch bump; once the new replica is in the ISR, leadership moves into
/// the target set, the replicas shrink to the target and the request goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_steps() {
    let zk = Zk::new("reassign").await;
    let mut regs = Vec::new();
    for id in 1..=4 {
        regs.push(zk.register(id, false).await);
    }
    let ctl = zk
        .start_controller(9, &[("auto.leader.rebalance.enable", "false")])
        .await;
    zk.create_topic("r", &[&[1, 2, 3]]).await;
    state_where(&zk, "r", 0, "state", |_| true).await;

    let entries = vec![ReassignmentEntry {
        topic: "r".into(),
        partition: 0,
        replicas: vec![4, 2, 3],
    }];
    admin::request_reassignment(&zk.admin, &entries)
        .await
        .unwrap();
    let t = eventually("step 1", || async {
        zk.topic("r")
            .await
            .filter(|t| !t.adding_replicas.is_empty())
    })
    .await;
    assert_eq!(t.partitions["0"], vec![4, 2, 3, 1]);
    assert_eq!(t.adding_replicas["0"], vec![4]);
    assert_eq!(t.removing_replicas["0"], vec![1]);
    let (s, v) = state_where(&zk, "r", 0, "epoch bump", |s| s.leader_epoch == 1).await;
    assert_eq!((s.leader, s.isr.clone()), (1, vec![1, 2, 3]));
    assert!(!admin::reassignment_done(&zk.admin, &entries).await.unwrap());

    // The leader adds the caught-up replica 4 to the ISR, as a
    // conditional write of its own.
    let mut grown = s.clone();
    grown.isr = vec![1, 2, 3, 4];
    zk.admin
        .set_data(
            &znodes::partition_state_path("r", 0),
            &znodes::encode(&grown),
            Some(v),
        )
        .await
        .unwrap();
    admin::wait_for_reassignment(&zk.admin, &entries, ctrl_support::WAIT)
        .await
        .unwrap();
    let (s, _) = zk.state("r", 0).await.unwrap();
    assert_eq!((s.leader, s.leader_epoch, s.isr), (4, 2, vec![2, 3, 4]));
    let t = zk.topic("r").await.unwrap();
    assert_eq!(t.partitions["0"], vec![4, 2, 3]);
    assert!(t.adding_replicas.is_empty() && t.removing_replicas.is_empty());
    assert!(!zk.exists(znodes::ADMIN_REASSIGN).await, "request removed");
    ctl.stop().await;
}

/// CLU-80: with auto rebalance, leadership goes back to the preferred
/// replica once it is live and in the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leader_rebalance() {
    let zk = Zk::new("rebalance").await;
    let _b2 = zk.register(2, false).await;
    let _b3 = zk.register(3, false).await;
    let ctl = zk
        .start_controller(
            9,
            &[
                ("leader.imbalance.check.interval.seconds", "1"),
                ("min.insync.replicas", "2"),
            ],
        )
        .await;
    zk.create_topic("p", &[&[1, 2, 3]]).await;
    // Broker 1 is down at creation: 2 leads.
    let (s, v) = state_where(&zk, "p", 0, "state", |_| true).await;
    assert_eq!((s.leader, s.isr.clone()), (2, vec![2, 3]));
    let _b1 = zk.register(1, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        zk.state("p", 0).await.unwrap().0.leader,
        2,
        "1 is not in the ISR yet"
    );
    let mut caught_up = s.clone();
    caught_up.isr = vec![1, 2, 3];
    zk.admin
        .set_data(
            &znodes::partition_state_path("p", 0),
            &znodes::encode(&caught_up),
            Some(v),
        )
        .await
        .unwrap();
    let (s, _) = state_where(&zk, "p", 0, "preferred leader", |s| s.leader == 1).await;
    assert_eq!((s.leader_epoch, s.isr), (1, vec![1, 2, 3]));
    ctl.stop().await;
}

/// CLU-65, CLU-85: a controlled shutdown moves the broker's leaderships to
/// other ISR members and takes it out of ISRs above min.insync.replicas;
/// a partition with nobody to take over does not hold it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_moves_leaders() {
    let zk = Zk::new("shutdown").await;
    let b1 = zk.register(1, false).await;
    let _b2 = zk.register(2, false).await;
    let _b3 = zk.register(3, false).await;
    let ctl = zk
        .start_controller(
            9,
            &[
                ("min.insync.replicas", "2"),
                ("auto.leader.rebalance.enable", "false"),
            ],
        )
        .await;
    zk.create_topic("s", &[&[1, 2, 3], &[2, 1, 3]]).await;
    zk.create_topic("solo", &[&[1]]).await;
    state_where(&zk, "s", 0, "p0", |_| true).await;
    state_where(&zk, "s", 1, "p1", |_| true).await;
    state_where(&zk, "solo", 0, "solo", |_| true).await;

    controller::controlled_shutdown(&b1, BrokerId(1), Duration::from_secs(10))
        .await
        .unwrap();
    let (s0, _) = zk.state("s", 0).await.unwrap();
    assert_eq!((s0.leader, s0.leader_epoch, s0.isr), (2, 1, vec![2, 3]));
    let (s1, _) = zk.state("s", 1).await.unwrap();
    assert_eq!((s1.leader, s1.isr), (2, vec![2, 3]));
    assert_eq!(
        zk.state("solo", 0).await.unwrap().0.leader,
        1,
        "nobody to take over"
    );
    drop(b1);
    state_where(&zk, "solo", 0, "offline once 1 is gone", |s| s.leader == -1).await;
    ctl.stop().await;
}

/// CLU-90, CLU-92: `gregor topics reassign` writes Kafka's request format
/// and refuses a partition that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassign_cli_writes_the_request() {
    let zk = Zk::new("cli").await;
    zk.create_topic("c", &[&[1, 2]]).await;
    let gregor = env!("CARGO_BIN_EXE_gregor");
    let run = |args: &[&str]| {
        std::process::Command::new(gregor)
            .args(["topics", "reassign", "--zookeeper", &zk.connect])
            .args(args)
            .output()
            .unwrap()
    };
    let _b2 = zk.register(2, false).await;
    let _b3 = zk.register(3, false).await;
    let bad = run(&["--topic", "c", "--partition", "5", "--replicas", "2,3"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no partition 5"));
    let bad = run(&["--topic", "c", "--partition", "0", "--replicas", "3,7"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("broker(s) 7 not registered"));
    let ok = run(&["--topic", "c", "--partition", "0", "--replicas", "3,2"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (d, _) = zk.admin.get_data(znodes::ADMIN_REASSIGN).await.unwrap();
    let r: znodes::ReassignmentZnode = znodes::decode(znodes::ADMIN_REASSIGN, &d).unwrap();
    assert_eq!(
        r.partitions,
        vec![ReassignmentEntry {
            topic: "c".into(),
            partition: 0,
            replicas: vec![3, 2]
        }]
    );
}
