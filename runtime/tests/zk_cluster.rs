//! ZooKeeper mode, broker side, against a real ZooKeeper: registration and
//! broker epochs, the chroot, topics described identically by every broker,
//! conditional ISR writes, session expiry, producer-id blocks, listeners.

mod protocol_support;
mod zk_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gregor_core::ids::{BrokerId, LeaderEpoch, PartitionEpoch, TopicPartition};
use gregor_core::replica::{IsrProposal, IsrResponse};
use gregor_runtime::cluster::NewTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, CreateTopicsRequest, FindCoordinatorRequest,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use protocol_support::Conn;
use zk_support::{ZkBroker, ZkServer, eventually, spawn_state_writer};

fn creatable(t: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(t.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

fn new_topic(name: &str, assignment: &[&[i32]]) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: -1,
        replication_factor: -1,
        assignments: assignment
            .iter()
            .enumerate()
            .map(|(p, r)| (p as i32, r.to_vec()))
            .collect(),
        configs: BTreeMap::new(),
    }
}

/// What a client learns from Metadata, in a comparable form.
fn described(resp: &MetadataResponse) -> String {
    let mut brokers: Vec<String> = resp
        .brokers
        .iter()
        .map(|b| format!("{}@{}:{}", b.node_id.0, b.host.as_str(), b.port))
        .collect();
    brokers.sort();
    let mut topics: Vec<String> = resp
        .topics
        .iter()
        .map(|t| {
            let parts: Vec<String> = t
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}:e{} l{} ep{} r{:?} isr{:?} off{:?}",
                        p.partition_index,
                        p.error_code,
                        p.leader_id.0,
                        p.leader_epoch,
                        p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
                    )
                })
                .collect();
            format!(
                "{:?} {} {:?}",
                t.name.as_ref().map(|n| n.0.to_string()),
                t.topic_id,
                parts
            )
        })
        .collect();
    topics.sort();
    format!(
        "brokers={brokers:?} controller={} cluster={:?} topics={topics:?}",
        resp.controller_id.0, resp.cluster_id
    )
}

// spec: CLU-3, CLU-4, CLU-5, CLU-6, CLU-10, CLU-20, CLU-21, CLU-22, CLU-26, CLU-31, CLU-32, CLU-33
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_register_under_the_chroot_and_describe_topics_alike() {
    let zk = ZkServer::start().await;
    let root = zk.client("").await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/gregor/a")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/gregor/a", zk.connect());
    let mut brokers = Vec::new();
    for id in 0..3 {
        brokers.push(ZkBroker::start(id, &connect, &[]).await);
    }
    // The chroot (created although missing) holds the registrations; the
    // root does not.
    let mut ids = root.list_children("/gregor/a/brokers/ids").await.unwrap();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2"]);
    assert!(root.check_stat("/brokers").await.unwrap().is_none());
    // The broker epoch is the registration's czxid, and every broker
    // learned it from its own registration.
    let mut epochs = BTreeSet::new();
    for b in &brokers {
        let (_, stat) = root
            .get_data(&format!("/gregor/a/brokers/ids/{}", b.id))
            .await
            .unwrap();
        assert_eq!(b.zk().broker_epoch_now(), stat.czxid);
        assert_eq!(b.broker.partitions.broker_epoch(), Some(stat.czxid));
        epochs.insert(stat.czxid);
    }
    assert_eq!(epochs.len(), 3, "broker epochs are distinct");
    for b in &brokers {
        eventually(10, "every broker sees three live brokers", || {
            b.zk().view().brokers.len() == 3
        })
        .await;
    }

    // Created through one broker: answered once every leader is elected.
    let mut c = Conn::connect(brokers[0].addr).await;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![creatable("orders", 3, 3), creatable("too-wide", 1, 4)])
        .with_timeout_ms(10_000);
    let resp = c.call(5, 1, &req).await;
    let codes: BTreeMap<String, i16> = resp
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    assert_eq!(codes["orders"], 0);
    assert_eq!(codes["too-wide"], 38, "INVALID_REPLICATION_FACTOR");
    let (data, _) = root
        .get_data("/gregor/a/brokers/topics/orders")
        .await
        .unwrap();
    let assignment: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(assignment["partitions"].as_object().unwrap().len(), 3);
    assert!(
        root.check_stat("/gregor/a/config/topics/orders")
            .await
            .unwrap()
            .is_some()
    );

    // Every broker describes the cluster identically.
    let mut seen = Vec::new();
    for b in &brokers {
        eventually(10, "the topic's states reach every broker", || {
            b.zk()
                .view()
                .topics
                .get("orders")
                .is_some_and(|t| t.states.len() == 3)
        })
        .await;
        let mut c = Conn::connect(b.addr).await;
        let resp = c
            .call(9, 2, &MetadataRequest::default().with_topics(None))
            .await;
        assert_eq!(resp.brokers.len(), 3);
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("orders"))
            .expect("orders described");
        for p in &t.partitions {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.replica_nodes.len(), 3);
            assert_eq!(p.leader_id, p.replica_nodes[0]);
        }
        seen.push(described(&resp));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    // Leaders spread over the brokers (round-robin placement).
    let leaders: BTreeSet<i32> = brokers[0].zk().view().topics["orders"]
        .states
        .values()
        .filter_map(|(s, _)| s.leader.map(|l| l.0))
        .collect();
    assert_eq!(leaders.len(), 3);

    writer.abort();
    for b in brokers {
        b.stop().await;
    }
    // A clean stop removes the registration at once.
    assert!(
        root.list_children("/gregor/a/brokers/ids")
            .await
            .unwrap()
            .is_empty()
    );
}

// spec: CLU-14, CLU-15, CLU-12, STO-54, PRO-27
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_writes_are_conditional_on_the_partition_epoch_and_broker_epochs() {
    let zk = ZkServer::start().await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/isr")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/isr", zk.connect());
    let b0 = ZkBroker::start(0, &connect, &[]).await;
    let b1 = ZkBroker::start(1, &connect, &[]).await;
    eventually(10, "two live brokers", || b0.zk().view().brokers.len() == 2).await;
    let topic = NewTopic {
        configs: [("segment.bytes".to_owned(), "100000".to_owned())].into(),
        ..new_topic("t", &[&[0, 1]])
    };
    b0.broker
        .create_topic_async(topic, false, Duration::from_secs(10))
        .await
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    eventually(10, "broker 0 hosts t-0", || {
        b0.broker.partitions.replica_view(&tp).is_some()
    })
    .await;
    // spec: STO-54 — both replicas' logs take the topic's override from
    // /config/topics.
    for b in [&b0, &b1] {
        eventually(
            10,
            "the replica's log runs with segment.bytes=100000",
            || {
                b.broker
                    .partitions
                    .log_config_of(&tp)
                    .is_some_and(|c| c.segment_bytes == 100_000)
            },
        )
        .await;
    }
    // spec: PRO-27 — a change through one broker reaches every replica's log.
    b1.broker
        .set_topic_configs_async(
            "t",
            [("segment.bytes".to_owned(), "200000".to_owned())].into(),
            false,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    for b in [&b0, &b1] {
        eventually(
            10,
            "the replica's log runs with segment.bytes=200000",
            || {
                b.broker
                    .partitions
                    .log_config_of(&tp)
                    .is_some_and(|c| c.segment_bytes == 200_000)
            },
        )
        .await;
    }
    let view = b0.broker.partitions.replica_view(&tp).unwrap();
    assert_eq!(view.leader, Some(BrokerId(0)));
    assert_eq!(view.partition_epoch, PartitionEpoch(0));
    let epoch1 = b1.zk().broker_epoch_now();
    let shrink = IsrProposal {
        leader: BrokerId(0),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
        isr: [BrokerId(0)].into(),
        broker_epochs: BTreeMap::new(),
    };
    assert_eq!(
        b0.zk().write_isr(&tp, &shrink).await.unwrap(),
        IsrResponse::Accepted(PartitionEpoch(1))
    );
    // The same proposal again is based on a stale partition epoch.
    assert_eq!(
        b0.zk().write_isr(&tp, &shrink).await.unwrap(),
        IsrResponse::Rejected
    );
    // Adding broker 1 with a broker epoch it no longer has is refused.
    let mut grow = IsrProposal {
        partition_epoch: PartitionEpoch(1),
        isr: [BrokerId(0), BrokerId(1)].into(),
        broker_epochs: [(BrokerId(1), epoch1 - 1)].into(),
        ..shrink.clone()
    };
    assert_eq!(
        b0.zk().write_isr(&tp, &grow).await.unwrap(),
        IsrResponse::Rejected
    );
    // A proposal from a stale leader epoch is refused.
    let stale_leader = IsrProposal {
        leader_epoch: LeaderEpoch(7),
        ..grow.clone()
    };
    assert_eq!(
        b0.zk().write_isr(&tp, &stale_leader).await.unwrap(),
        IsrResponse::Rejected
    );
    grow.broker_epochs = [(BrokerId(1), epoch1)].into();
    // With the current epochs the same growth is applied. The live replicas
    // may change the record meanwhile (the leader re-adds a caught-up
    // follower itself), so the proposal is based on the version read from
    // ZooKeeper, as a leader's is, and retried if it raced.
    let reader = zk.client("/isr").await;
    let mut applied = None;
    for _ in 0..20 {
        let (_, stat) = reader
            .get_data("/brokers/topics/t/partitions/0/state")
            .await
            .unwrap();
        grow.partition_epoch = PartitionEpoch(stat.version);
        if let IsrResponse::Accepted(e) = b0.zk().write_isr(&tp, &grow).await.unwrap() {
            assert_eq!(e, PartitionEpoch(stat.version + 1));
            applied = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = applied.expect("a proposal on current epochs is applied");
    // The change reaches the data plane of both replicas through the watch:
    // each sees the applied partition epoch (or a later one, should the
    // leader have written since) with both replicas in the ISR.
    for b in [&b0, &b1] {
        eventually(10, "the new ISR reaches the replica", || {
            b.broker
                .partitions
                .replica_view(&tp)
                .is_some_and(|v| v.partition_epoch >= applied && v.isr.len() == 2)
        })
        .await;
    }
    // Through the link, as the data plane calls it: the write lands in
    // ZooKeeper as the next version of the record.
    use gregor_runtime::cluster::link::ClusterLink;
    let (_, stat) = reader
        .get_data("/brokers/topics/t/partitions/0/state")
        .await
        .unwrap();
    b0.zk().propose_isr(
        tp.clone(),
        IsrProposal {
            partition_epoch: PartitionEpoch(stat.version),
            ..shrink.clone()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = reader
            .get_data("/brokers/topics/t/partitions/0/state")
            .await
            .unwrap();
        if now.version > stat.version {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proposal made through the link is written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
    b1.stop().await;
    b0.stop().await;
}

// spec: CLU-7, CLU-6, CLU-9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_makes_the_broker_step_down_and_register_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A controller task that counts the sessions it runs for and the stops
    // it is given.
    let runs = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let counts = runs.clone();
    let controller: gregor_runtime::cluster::zk::ControllerTask =
        Arc::new(move |_client, _config, _id, mut stop| {
            let counts = counts.clone();
            Box::pin(async move {
                counts.0.fetch_add(1, Ordering::SeqCst);
                let _ = stop.wait_for(|s| *s).await;
                counts.1.fetch_add(1, Ordering::SeqCst);
            })
        });
    let zk = ZkServer::start().await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/exp")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/exp", zk.connect());
    let b = ZkBroker::start_with(0, &connect, &[], Some(controller)).await;
    eventually(10, "the controller runs for the first session", || {
        runs.0.load(Ordering::SeqCst) == 1
    })
    .await;
    b.broker
        .create_topic_async(new_topic("t", &[&[0]]), false, Duration::from_secs(10))
        .await
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    eventually(10, "t-0 hosted", || {
        b.broker.partitions.replica_view(&tp).is_some()
    })
    .await;
    let before = b.zk().broker_epoch_now();
    // End the broker's session from outside: attach to it and close it.
    // The broker's own client reconnects to the session as soon as the
    // server drops its connection for the thief's, and may take the
    // session back before the thief's close request is sent; then the
    // session lives on, and the theft is tried again.
    let session = b.zk().client().unwrap().session().clone();
    let mut attempts = 0;
    loop {
        let thief = zookeeper_client::Client::connector()
            .with_session(session.clone())
            .connect(&zk.connect())
            .await;
        attempts += 1;
        match thief {
            Ok(c) => drop(c),
            Err(e) => {
                assert!(attempts < 20, "cannot attach to the broker's session: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.zk().broker_epoch_now() <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if b.zk().broker_epoch_now() > before {
            break;
        }
        assert!(attempts < 5, "the broker's session never ended");
    }
    let after = b.zk().broker_epoch_now();
    let root = zk.client("").await;
    let (_, stat) = root.get_data("/exp/brokers/ids/0").await.unwrap();
    assert_eq!(
        stat.czxid, after,
        "the new registration's czxid is the new epoch"
    );
    assert_eq!(b.broker.partitions.broker_epoch(), Some(after));
    eventually(10, "one controller run per session", || {
        runs.0.load(Ordering::SeqCst) == 2 && runs.1.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually(10, "t-0 hosted again after re-reading", || {
        b.broker.partitions.replica_view(&tp).is_some()
    })
    .await;
    writer.abort();
    b.stop().await;
    assert_eq!(
        runs.1.load(Ordering::SeqCst),
        2,
        "the controller stops with the broker"
    );
}

// spec: CLU-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_id_held_by_a_live_session_is_refused_with_a_clear_error() {
    let zk = ZkServer::start().await;
    let holder = zk.client("").await;
    for p in ["/dup", "/dup/brokers", "/dup/brokers/ids"] {
        let _ = holder
            .create(
                p,
                b"",
                &zookeeper_client::CreateMode::Persistent
                    .with_acls(zookeeper_client::Acls::anyone_all()),
            )
            .await;
    }
    holder
        .create(
            "/dup/brokers/ids/4",
            br#"{"version":5,"host":"h","port":1,"timestamp":"0","endpoints":["PLAINTEXT://h:1"]}"#,
            &zookeeper_client::CreateMode::Ephemeral
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = gregor_runtime::config::BrokerConfig::from_pairs([
        ("broker.id", "4"),
        ("listeners", "PLAINTEXT://127.0.0.1:0"),
        ("log.dirs", dir.path().to_str().unwrap()),
        ("zookeeper.connect", &format!("{}/dup", zk.connect())),
        ("zookeeper.session.timeout.ms", "1000"),
    ])
    .unwrap();
    let broker = std::sync::Arc::new(gregor_runtime::broker::Broker::open(config).unwrap());
    let err = gregor_runtime::server::Server::bind(broker)
        .await
        .expect_err("the id is taken");
    assert!(
        err.to_string()
            .contains("registered by another live broker"),
        "{err}"
    );
    drop(holder);
}

// spec: CLU-28, CLU-29, CLU-27
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_id_blocks_are_disjoint_and_coordinators_wait_for_enough_brokers() {
    let zk = ZkServer::start().await;
    let connect = format!("{}/pid", zk.connect());
    let b0 = ZkBroker::start(0, &connect, &[]).await;
    let b1 = ZkBroker::start(1, &connect, &[]).await;
    let a = b0.broker.allocate_producer_id().await.unwrap();
    let b = b1.broker.allocate_producer_id().await.unwrap();
    let a2 = b0.broker.allocate_producer_id().await.unwrap();
    assert_eq!((a, a2), (0, 1), "ids come from broker 0's block in order");
    assert_eq!(b, 1000, "broker 1 claimed the next block");
    // offsets.topic.replication.factor defaults to 3: with two brokers
    // alive there is no coordinator, and no offsets topic is created.
    let mut c = Conn::connect(b0.addr).await;
    let resp = c
        .call(
            2,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        )
        .await;
    assert_eq!(resp.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
    assert!(!b0.zk().view().topics.contains_key("__consumer_offsets"));
    b1.stop().await;
    b0.stop().await;
}

// spec: CLU-31
#[tokio::test]
async fn every_listener_is_bound_and_metadata_answers_with_the_callers_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (zk_support::free_port(), zk_support::free_port());
    let config = gregor_runtime::config::BrokerConfig::from_pairs([
        (
            "listeners",
            format!("CLIENT://127.0.0.1:{p1},REPLICATION://127.0.0.1:{p2}").as_str(),
        ),
        ("inter.broker.listener.name", "REPLICATION"),
        ("log.dirs", dir.path().to_str().unwrap()),
    ])
    .unwrap();
    let broker = std::sync::Arc::new(gregor_runtime::broker::Broker::open(config).unwrap());
    let server = gregor_runtime::server::Server::bind(broker).await.unwrap();
    assert_eq!(server.local_addrs().len(), 2);
    let (_, handle, task) = server.spawn();
    for port in [p1, p2] {
        let mut c = Conn::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let resp = c
            .call(9, 1, &MetadataRequest::default().with_topics(None))
            .await;
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(resp.brokers[0].port, i32::from(port));
    }
    handle.shutdown();
    task.await.unwrap();
}

// spec: CLU-8, CLU-11, CLU-13, CLU-23, CLU-24, CLU-34
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_restart_keeps_the_session_and_changes_keep_flowing() {
    let mut zk = ZkServer::start().await;
    let connect = format!("{}/rs", zk.connect());
    // The client library backs off exponentially while reconnecting and
    // gives up 1.4 session timeouts after the last answer: the timeout
    // must leave room for a JVM restart on a busy machine.
    let long = [("zookeeper.session.timeout.ms", "20000")];
    let b0 = ZkBroker::start(0, &connect, &long).await;
    let b1 = ZkBroker::start(1, &connect, &long).await;
    let epochs = (b0.zk().broker_epoch_now(), b1.zk().broker_epoch_now());
    // ZooKeeper away for less than the session timeout.
    zk.restart().await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/rs")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    for b in [&b0, &b1] {
        eventually(30, "the session reconnects", || {
            b.zk()
                .client()
                .is_ok_and(|c| c.state() == zookeeper_client::SessionState::SyncConnected)
        })
        .await;
    }
    // Auto-creation: LEADER_NOT_AVAILABLE first, then the topic with its
    // leaders once they are elected.
    let mut c = Conn::connect(b1.addr).await;
    let ask = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("auto")))),
        ]))
        .with_allow_auto_topic_creation(true);
    let first = c.call(9, 1, &ask).await;
    assert_eq!(first.topics[0].error_code, 5, "LEADER_NOT_AVAILABLE");
    let mut ready = false;
    for i in 0..200 {
        let resp = c.call(9, 2 + i, &ask).await;
        let t = &resp.topics[0];
        if t.error_code == 0
            && !t.partitions.is_empty()
            && t.partitions
                .iter()
                .all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the auto-created topic got its leaders");
    assert_eq!(
        (b0.zk().broker_epoch_now(), b1.zk().broker_epoch_now()),
        epochs,
        "the sessions survived the restart"
    );
    // Growing a topic through either broker reaches both.
    b0.broker
        .create_topic_async(
            new_topic("grow", &[&[0, 1]]),
            false,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let grown = b1
        .broker
        .create_partitions_async("grow", 3, false, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(grown.partitions, 3);
    for b in [&b0, &b1] {
        eventually(10, "three partitions of grow", || {
            b.broker
                .metadata
                .image()
                .topics
                .get("grow")
                .map(|t| t.partitions)
                == Some(3)
        })
        .await;
    }
    let hosted = TopicPartition::new("grow", 0);
    eventually(10, "grow-0 hosted on broker 1", || {
        b1.broker.partitions.held().contains(&hosted)
    })
    .await;
    // Deletion: answered once the topic is gone; its logs go too.
    b0.broker
        .delete_topic_async("grow", Duration::from_secs(10))
        .await
        .unwrap();
    for b in [&b0, &b1] {
        eventually(10, "grow's logs removed", || {
            !b.broker
                .partitions
                .held()
                .iter()
                .any(|tp| tp.topic == "grow")
        })
        .await;
    }
    assert!(matches!(
        b0.broker
            .delete_topic_async("grow", Duration::from_secs(1))
            .await,
        Err(gregor_runtime::cluster::TopicError::Unknown(_))
    ));
    writer.abort();
    b1.stop().await;
    b0.stop().await;
}

// spec: CLU-27, CLU-29
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_is_sent_to_the_leader_of_its_offsets_partition() {
    let zk = ZkServer::start().await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/fc")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/fc", zk.connect());
    let settings = [
        ("offsets.topic.replication.factor", "2"),
        ("offsets.topic.num.partitions", "4"),
    ];
    let b0 = ZkBroker::start(0, &connect, &settings).await;
    let b1 = ZkBroker::start(1, &connect, &settings).await;
    eventually(10, "two live brokers", || b0.zk().view().brokers.len() == 2).await;
    let mut c = Conn::connect(b1.addr).await;
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let ask = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(keys.iter().map(|k| StrBytes::from_static_str(k)).collect());
    let mut answered = None;
    for i in 0..100 {
        let resp = c.call(4, 10 + i, &ask).await;
        if resp.coordinators.iter().all(|k| k.error_code == 0) {
            answered = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = answered.expect("every key gets a coordinator");
    let view = b1.zk().view();
    let offsets = &view.topics["__consumer_offsets"];
    assert_eq!(offsets.assignment.len(), 4);
    assert!(offsets.assignment.values().all(|r| r.len() == 2));
    let mut nodes = BTreeSet::new();
    for k in &resp.coordinators {
        let p = b1.broker.groups.partition_for(k.key.as_str());
        let leader = offsets.states[&p].0.leader.unwrap();
        assert_eq!(k.node_id.0, leader.0, "{}", k.key.as_str());
        let addr = [&b0, &b1].iter().find(|b| b.id == leader.0).unwrap().addr;
        assert_eq!(k.port, i32::from(addr.port()));
        nodes.insert(k.node_id.0);
    }
    assert_eq!(nodes.len(), 2, "the groups spread over both brokers");
    writer.abort();
    b1.stop().await;
    b0.stop().await;
}

// spec: CLU-20
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_placed_across_racks() {
    let zk = ZkServer::start().await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/rack")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/rack", zk.connect());
    let mut brokers = Vec::new();
    for (id, rack) in [(0, "r1"), (1, "r1"), (2, "r2")] {
        brokers.push(ZkBroker::start(id, &connect, &[("broker.rack", rack)]).await);
    }
    eventually(10, "three live brokers", || {
        brokers[0].zk().view().brokers.len() == 3
    })
    .await;
    let req = NewTopic {
        partitions: 6,
        replication_factor: 2,
        ..new_topic("spread", &[])
    };
    let meta = brokers[0]
        .broker
        .create_topic_async(req, false, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((meta.partitions, meta.replication_factor), (6, 2));
    let view = brokers[0].zk().view();
    let rack_of = |b: &BrokerId| view.brokers[b].registration.rack.clone().unwrap();
    for (p, replicas) in &view.topics["spread"].assignment {
        let racks: BTreeSet<String> = replicas.iter().map(rack_of).collect();
        assert_eq!(
            racks.len(),
            2,
            "partition {p} replicas {replicas:?} share a rack"
        );
    }
    writer.abort();
    for b in brokers {
        b.stop().await;
    }
}

/// Names of the entries of `dir`.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every byte of the `.log` segment files of one partition directory.
fn segment_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in entries(dir) {
        if name.ends_with(".log") {
            all.extend(std::fs::read(dir.join(name)).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn produce_values(
    addr: std::net::SocketAddr,
    topic: &str,
    acks: i16,
    prefix: &str,
    n: usize,
) {
    use gregor_runtime::storage::record::{BatchBuilder, Codec};
    let mut b = BatchBuilder::new(2, Codec::None, 0).unwrap();
    for i in 0..n {
        b.append(0, None, Some(format!("{prefix}-{i}").as_bytes()), &[])
            .unwrap();
    }
    let mut c = gregor_runtime::client::Client::connect(&addr.to_string())
        .await
        .unwrap();
    c.produce(topic, 0, bytes::Bytes::from(b.build().unwrap()), acks)
        .await
        .unwrap();
}

// spec: CLU-35, CLU-36
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_topics_deleted_or_recreated_while_a_broker_was_away_are_set_aside() {
    let zk = ZkServer::start().await;
    let admin = zk.client("/strays").await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/strays")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/strays", zk.connect());
    let b0 = ZkBroker::start(0, &connect, &[]).await;
    let b1 = ZkBroker::start(1, &connect, &[]).await;
    eventually(10, "two live brokers", || b0.zk().view().brokers.len() == 2).await;
    for t in ["phoenix", "gone"] {
        b0.broker
            .create_topic_async(new_topic(t, &[&[0, 1]]), false, Duration::from_secs(10))
            .await
            .unwrap();
        let tp = TopicPartition::new(t, 0);
        eventually(10, "both replicas in the ISR", || {
            b0.broker
                .partitions
                .replica_view(&tp)
                .is_some_and(|v| v.leader == Some(BrokerId(0)) && v.isr.len() == 2)
        })
        .await;
        // acks=all: answered once broker 1 has the records too.
        produce_values(b0.addr, t, -1, "old", 5).await;
    }
    let phoenix = TopicPartition::new("phoenix", 0);
    eventually(10, "broker 1 has the old records", || {
        b1.broker
            .partitions
            .replica_view(&phoenix)
            .is_some_and(|v| v.high_watermark == 5)
    })
    .await;
    let dir = b1.stop_keeping_dir().await;
    assert!(contains(
        &segment_bytes(&dir.path().join("phoenix-0")),
        b"old-4"
    ));

    // While broker 1 is away: "gone" is deleted, "phoenix" deleted and made
    // again under the same name (a new topic id), still with broker 1 as a
    // replica, and written to.
    for t in ["phoenix", "gone"] {
        b0.broker
            .delete_topic_async(t, Duration::from_secs(10))
            .await
            .unwrap();
        eventually(10, "the topic is gone", || {
            !b0.zk().view().topics.contains_key(t)
        })
        .await;
    }
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let znode = serde_json::json!({
        "version": 3,
        "partitions": {"0": [0, 1]},
        "topic_id": "AAAAAAAAAAAAAAAAAAAAAQ",
    });
    admin
        .create(
            "/brokers/topics/phoenix",
            znode.to_string().as_bytes(),
            &opts,
        )
        .await
        .unwrap();
    eventually(10, "broker 0 leads the new phoenix-0", || {
        b0.broker.partitions.is_leader(&phoenix)
            && b0
                .zk()
                .view()
                .topics
                .get("phoenix")
                .is_some_and(|t| t.id[15] == 1)
    })
    .await;
    produce_values(b0.addr, "phoenix", 1, "new", 3).await;

    let b1 = ZkBroker::start_in(1, &connect, &[], dir).await;
    let root = b1.dir.path().to_path_buf();
    eventually(20, "broker 1 holds the new phoenix-0, caught up", || {
        b1.broker
            .partitions
            .replica_view(&phoenix)
            .is_some_and(|v| v.high_watermark == 3)
    })
    .await;
    let stray = |names: &[String], prefix: &str| {
        names
            .iter()
            .any(|n| n.starts_with(&format!("{prefix}.")) && n.ends_with("-stray"))
    };
    // The check for logs of unassigned partitions follows a complete read
    // of the cluster state, which may come after the first changes.
    eventually(10, "the deleted topic's log set aside", || {
        stray(&entries(&root), "gone-0")
    })
    .await;
    let names = entries(&root);
    assert!(!names.contains(&"gone-0".to_owned()), "{names:?}");
    assert!(
        stray(&names, "phoenix-0"),
        "the earlier phoenix log is set aside: {names:?}"
    );
    // The log broker 1 now holds has the new records only: none of the
    // earlier topic's survived under the new topic's offsets.
    let log = segment_bytes(&root.join("phoenix-0"));
    assert!(contains(&log, b"new-2"));
    assert!(
        !contains(&log, b"old-"),
        "records of the deleted topic are kept"
    );
    let recorded = std::fs::read_to_string(root.join("phoenix-0/partition.metadata")).unwrap();
    assert!(
        recorded.contains("topic_id: AAAAAAAAAAAAAAAAAAAAAQ"),
        "{recorded}"
    );
    assert!(
        b1.broker
            .partitions
            .reader(&TopicPartition::new("gone", 0))
            .is_none()
    );

    writer.abort();
    b1.stop().await;
    b0.stop().await;
}

// spec: CLU-37
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_directories_refuse_to_join_another_cluster() {
    let zk = ZkServer::start().await;
    let home = format!("{}/home", zk.connect());
    let b = ZkBroker::start(0, &home, &[]).await;
    let (data, _) = zk
        .client("/home")
        .await
        .get_data("/cluster/id")
        .await
        .unwrap();
    let id: serde_json::Value = serde_json::from_slice(&data).unwrap();
    let id = id["id"].as_str().unwrap().to_owned();
    let meta = std::fs::read_to_string(b.dir.path().join("meta.properties")).unwrap();
    assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
    let dir = b.stop_keeping_dir().await;
    // The same log directory pointed at another chroot: another cluster.
    let elsewhere = format!("{}/elsewhere", zk.connect());
    let (err, dir) = match ZkBroker::try_start_in(0, &elsewhere, dir).await {
        Ok(_) => panic!("a broker joined another cluster with its logs"),
        Err(e) => e,
    };
    assert!(err.contains("wrong cluster"), "{err}");
    assert!(err.contains(&id), "the error names the recorded id: {err}");
    let registered = zk
        .client("/elsewhere")
        .await
        .list_children("/brokers/ids")
        .await
        .unwrap_or_default();
    assert!(registered.is_empty(), "registered anyway: {registered:?}");
    // Back at the right address it starts.
    let b = ZkBroker::start_in(0, &home, &[], dir).await;
    b.stop().await;
}

fn reassign(topic: &str, moves: &[(i32, Option<&[i32]>)]) -> AlterPartitionReassignmentsRequest {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(
                    moves
                        .iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(r.map(|r| {
                                    r.iter()
                                        .map(|b| kafka_protocol::messages::BrokerId(*b))
                                        .collect()
                                }))
                        })
                        .collect(),
                ),
        ])
}

/// (partition, error code) of every answered partition.
fn reassigned(
    resp: &kafka_protocol::messages::AlterPartitionReassignmentsResponse,
) -> Vec<(i32, i16)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.error_code))
        .collect()
}

/// (topic, partition, replicas, adding, removing) of a listed move.
type Listed = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// Every listed move.
fn ongoing(resp: &kafka_protocol::messages::ListPartitionReassignmentsResponse) -> Vec<Listed> {
    let v = |b: &[kafka_protocol::messages::BrokerId]| b.iter().map(|b| b.0).collect::<Vec<_>>();
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    v(&p.replicas),
                    v(&p.adding_replicas),
                    v(&p.removing_replicas),
                )
            })
        })
        .collect()
}

// spec: PRO-32, CLU-90
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_reassignments_are_recorded_listed_and_cancelled() {
    use kafka_protocol::messages::ListPartitionReassignmentsRequest;
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    // No controller runs: a recorded request stays pending, so what is
    // listed and cancelled does not race with the move itself.
    let zk = ZkServer::start().await;
    let root = zk.client("").await;
    let writer = spawn_state_writer(
        zk.client("")
            .await
            .chroot("/r")
            .unwrap_or_else(|_| panic!("chroot")),
    );
    let connect = format!("{}/r", zk.connect());
    let idle: gregor_runtime::cluster::zk::ControllerTask =
        std::sync::Arc::new(|_client, _config, _id, mut stop| {
            Box::pin(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
        });
    let a = ZkBroker::start_with(0, &connect, &[], Some(idle.clone())).await;
    let b = ZkBroker::start_with(1, &connect, &[], Some(idle)).await;
    eventually(10, "both brokers registered", || {
        a.zk().view().brokers.len() == 2
    })
    .await;
    a.broker
        .create_topic_async(
            new_topic("moved", &[&[0], &[0]]),
            false,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    eventually(10, "the topic's states", || {
        a.zk()
            .view()
            .topics
            .get("moved")
            .is_some_and(|t| t.states.len() == 2)
    })
    .await;
    let mut c = Conn::connect(a.addr).await;
    let resp = c
        .call(
            0,
            1,
            &reassign(
                "moved",
                &[(0, Some(&[1, 0])), (1, Some(&[0, 7])), (5, Some(&[1]))],
            ),
        )
        .await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        reassigned(&resp),
        vec![(0, 0), (1, 39), (5, 3)],
        "accepted; an unregistered broker; an unknown partition"
    );
    let resp = c.call(0, 2, &reassign("moved", &[(1, None)])).await;
    assert_eq!(
        reassigned(&resp),
        vec![(1, 85)],
        "NO_REASSIGNMENT_IN_PROGRESS"
    );
    let pending = || async {
        let (d, _) = root.get_data("/r/admin/reassign_partitions").await.unwrap();
        String::from_utf8(d).unwrap()
    };
    let text = pending().await;
    assert!(text.contains(r#""replicas":[1,0]"#), "{text}");

    let all = ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000);
    let resp = c.call(0, 3, &all).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        ongoing(&resp),
        vec![("moved".to_owned(), 0, vec![1, 0], vec![1], vec![])]
    );
    let only_one = all.clone().with_topics(Some(vec![
        ListPartitionReassignmentsTopics::default()
            .with_name(TopicName(StrBytes::from_static_str("moved")))
            .with_partition_indexes(vec![1]),
    ]));
    assert!(ongoing(&c.call(0, 4, &only_one).await).is_empty());

    // Cancelling sends the partition back to its original replicas.
    let resp = c.call(0, 5, &reassign("moved", &[(0, None)])).await;
    assert_eq!(reassigned(&resp), vec![(0, 0)]);
    assert!(ongoing(&c.call(0, 6, &all).await).is_empty());
    let text = pending().await;
    assert!(text.contains(r#""replicas":[0]"#), "{text}");

    writer.abort();
    a.stop().await;
    b.stop().await;
}
