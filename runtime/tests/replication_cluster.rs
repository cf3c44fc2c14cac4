//! Three in-process brokers joined by an in-memory controller: the
//! replication data plane end to end (spec: REP-60..REP-67).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gregor_core::controller::PartitionState;
use gregor_core::ids::{BrokerId, LeaderEpoch, PartitionEpoch, TopicPartition};
use gregor_core::replica::{IsrProposal, IsrResponse};
use gregor_runtime::broker::Broker;
use gregor_runtime::client::{Client, name};
use gregor_runtime::cluster::NewTopic;
use gregor_runtime::cluster::link::{ClusterLink, Endpoint};
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::server::{Server, ShutdownHandle};
use gregor_runtime::storage::record::{BatchBuilder, Codec, RecordIter};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, ProduceRequest,
};

const TOPIC: &str = "replicated";

/// The controller's table, shared by every broker's link.
#[derive(Debug, Default)]
struct Table {
    endpoints: HashMap<BrokerId, Endpoint>,
    brokers: HashMap<BrokerId, Arc<Broker>>,
    states: HashMap<TopicPartition, PartitionState>,
    down: HashSet<BrokerId>,
}

/// The in-memory controller: applies ISR proposals conditionally (REP-19)
/// and tells every live broker the new record.
#[derive(Debug, Default)]
struct Controller {
    table: Mutex<Table>,
}

impl Controller {
    fn live(&self) -> Vec<Arc<Broker>> {
        let t = self.table.lock().unwrap();
        t.brokers
            .iter()
            .filter(|(id, _)| !t.down.contains(id))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Records `state` and sends it to `to` (every live broker when None).
    fn send(&self, tp: &TopicPartition, state: &PartitionState, to: Option<&[i32]>) {
        self.table
            .lock()
            .unwrap()
            .states
            .insert(tp.clone(), state.clone());
        for b in self.live() {
            if to.is_none_or(|ids| ids.contains(&b.config.broker_id)) {
                b.partitions.apply_state(tp, state).unwrap();
            }
        }
    }

    fn alter(&self, tp: TopicPartition, p: IsrProposal) {
        let (response, next, leader) = {
            let mut t = self.table.lock().unwrap();
            let leader = t.brokers.get(&p.leader).cloned();
            let st = t.states.get(&tp).cloned();
            match st {
                Some(st)
                    if st.leader_epoch == p.leader_epoch
                        && st.partition_epoch == p.partition_epoch =>
                {
                    let next = PartitionState {
                        isr: p.isr.clone(),
                        partition_epoch: PartitionEpoch(st.partition_epoch.get() + 1),
                        ..st
                    };
                    t.states.insert(tp.clone(), next.clone());
                    (
                        IsrResponse::Accepted(next.partition_epoch),
                        Some(next),
                        leader,
                    )
                }
                _ => (IsrResponse::Rejected, None, leader),
            }
        };
        if let Some(l) = leader {
            l.partitions.isr_response(&tp, &p, response);
        }
        if let Some(next) = next {
            for b in self.live() {
                b.partitions.apply_state(&tp, &next).unwrap();
            }
        }
    }
}

#[derive(Debug)]
struct TestLink {
    me: BrokerId,
    controller: Arc<Controller>,
}

impl ClusterLink for TestLink {
    fn local_broker(&self) -> BrokerId {
        self.me
    }

    fn endpoint(&self, broker: BrokerId) -> Option<Endpoint> {
        let t = self.controller.table.lock().unwrap();
        if t.down.contains(&broker) {
            return None;
        }
        t.endpoints.get(&broker).cloned()
    }

    fn broker_epoch(&self, broker: BrokerId) -> Option<i64> {
        // A stopped broker is no longer registered.
        (!self.controller.table.lock().unwrap().down.contains(&broker)).then_some(1)
    }

    fn propose_isr(&self, partition: TopicPartition, proposal: IsrProposal) {
        // Answer later, as a real controller does.
        let c = self.controller.clone();
        std::thread::spawn(move || c.alter(partition, proposal));
    }
}

struct Node {
    broker: Arc<Broker>,
    addr: String,
    handle: Option<ShutdownHandle>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Cluster {
    controller: Arc<Controller>,
    nodes: Vec<Node>,
    tp: TopicPartition,
}

fn state(leader: Option<i32>, epoch: i32, pe: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        replicas: vec![BrokerId(1), BrokerId(2), BrokerId(3)],
        leader: leader.map(BrokerId),
        leader_epoch: LeaderEpoch(epoch),
        partition_epoch: PartitionEpoch(pe),
        isr: isr.iter().copied().map(BrokerId).collect(),
    }
}

impl Cluster {
    /// Three brokers hosting one partition led by broker 1 in epoch 1 with
    /// ISR {1, 2, 3}.
    async fn start(lag_ms: &str, topic_min_isr: &str) -> Self {
        Self::start_with(lag_ms, topic_min_isr, &[]).await
    }

    async fn start_with(lag_ms: &str, topic_min_isr: &str, extra: &[(&str, &str)]) -> Self {
        let controller = Arc::new(Controller::default());
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let mut pairs = vec![
                ("broker.id".to_owned(), id.to_string()),
                ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
                ("log.dirs".to_owned(), dir.path().display().to_string()),
                ("replica.lag.time.max.ms".to_owned(), lag_ms.to_owned()),
                ("replica.fetch.wait.max.ms".to_owned(), "100".to_owned()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let config = BrokerConfig::from_pairs(pairs).unwrap();
            let link = Arc::new(TestLink {
                me: BrokerId(id),
                controller: controller.clone(),
            });
            let broker = Arc::new(Broker::open_with_link(config, link).unwrap());
            let mut configs = BTreeMap::new();
            configs.insert("min.insync.replicas".to_owned(), topic_min_isr.to_owned());
            broker
                .create_topic(
                    NewTopic {
                        name: TOPIC.to_owned(),
                        partitions: 1,
                        replication_factor: 1,
                        assignments: BTreeMap::new(),
                        configs,
                    },
                    false,
                )
                .unwrap();
            let server = Server::bind(broker.clone()).await.unwrap();
            let (addr, handle, task) = server.spawn();
            {
                let mut t = controller.table.lock().unwrap();
                t.endpoints.insert(
                    BrokerId(id),
                    Endpoint {
                        host: "127.0.0.1".into(),
                        port: addr.port(),
                    },
                );
                t.brokers.insert(BrokerId(id), broker.clone());
            }
            nodes.push(Node {
                broker,
                addr: addr.to_string(),
                handle: Some(handle),
                task: Some(task),
                _dir: dir,
            });
        }
        let tp = TopicPartition::new(TOPIC, 0);
        controller.send(&tp, &state(Some(1), 1, 1, &[1, 2, 3]), None);
        Self {
            controller,
            nodes,
            tp,
        }
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn log_end(&self, id: i32) -> i64 {
        self.node(id)
            .broker
            .partitions
            .reader(&self.tp)
            .unwrap()
            .log_end()
    }

    fn log_start(&self, id: i32) -> i64 {
        self.node(id)
            .broker
            .partitions
            .reader(&self.tp)
            .unwrap()
            .log_start()
    }

    fn isr(&self, id: i32) -> Vec<i32> {
        let v = self
            .node(id)
            .broker
            .partitions
            .replica_view(&self.tp)
            .unwrap();
        v.isr.iter().map(|b| b.get()).collect()
    }

    async fn client(&self, id: i32) -> Client {
        Client::connect(&self.node(id).addr).await.unwrap()
    }

    /// Stops broker `id`'s server (its fetchers stop with it) and marks it
    /// down in the controller.
    async fn stop(&mut self, id: i32) {
        self.controller
            .table
            .lock()
            .unwrap()
            .down
            .insert(BrokerId(id));
        let n = &mut self.nodes[(id - 1) as usize];
        n.handle.take().unwrap().shutdown();
        tokio::time::timeout(Duration::from_secs(10), n.task.take().unwrap())
            .await
            .expect("server stops")
            .unwrap();
    }

    /// Every record value of broker `id`'s log, with its offset.
    fn records(&self, id: i32) -> Vec<(i64, Vec<u8>)> {
        let reader = self.node(id).broker.partitions.reader(&self.tp).unwrap();
        let mut out = Vec::new();
        let mut offset = reader.log_start();
        while let Some(range) = reader.read(offset, 1 << 20).unwrap() {
            let mut buf = Vec::new();
            range.read_into(&mut buf).unwrap();
            for r in RecordIter::new(&buf, offset) {
                let r = r.unwrap();
                offset = r.offset + 1;
                out.push((r.offset, r.value.unwrap_or_default().to_vec()));
            }
        }
        out
    }
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(2, Codec::None, 0).unwrap();
    for v in values {
        b.append(0, None, Some(v.as_bytes()), &[]).unwrap();
    }
    Bytes::from(b.build().unwrap())
}

/// Produce; returns (error code, base offset).
async fn produce(c: &mut Client, acks: i16, timeout_ms: i32, values: &[&str]) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(TOPIC))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(values))),
                ]),
        ]);
    let resp = c.call(9, &req).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Consumer fetch (v12); returns (error code, high watermark, values).
async fn consume(c: &mut Client, offset: i64, epoch: i32) -> (i16, i64, Vec<(i64, Vec<u8>)>) {
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(epoch)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp = c.call(12, &req).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    let bytes = p.records.clone().unwrap_or_default();
    let values = RecordIter::new(&bytes, offset)
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.value.unwrap_or_default().to_vec())
        })
        .collect();
    (p.error_code, p.high_watermark, values)
}

async fn latest(c: &mut Client) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(TOPIC))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(-1),
                ]),
        ]);
    let resp = c.call(7, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// REP-62, REP-64: acks=all is answered only once both followers hold the
/// records; while one ISR follower does not fetch, it is not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_every_follower() {
    let c = Cluster::start("10000", "2").await;
    let mut leader = c.client(1).await;
    for i in 0..5 {
        let (err, base) = produce(&mut leader, -1, 10_000, &["a", "b"]).await;
        assert_eq!((err, base), (0, i * 2), "acks=all produce {i}");
        let end = (i + 1) * 2;
        assert!(c.log_end(2) >= end, "REP-62: follower 2 lacks the records");
        assert!(c.log_end(3) >= end, "REP-62: follower 3 lacks the records");
    }
    assert_eq!(
        c.records(2),
        c.records(1),
        "REP-64: same offsets, same records"
    );
    assert_eq!(c.records(3), c.records(1));

    // Follower 3 stops fetching (told there is no leader); the ISR still
    // holds it (lag time 10 s), so acks=all cannot complete.
    c.controller
        .send(&c.tp, &state(None, 2, 2, &[1, 2, 3]), Some(&[3]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (err, _) = produce(&mut leader, -1, 500, &["late"]).await;
    assert_eq!(err, 7, "REP-62: REQUEST_TIMED_OUT while follower 3 lags");
    assert!(c.log_end(2) >= 11);
    assert_eq!(c.log_end(3), 10);
    // acks=1 is answered at once.
    assert_eq!(produce(&mut leader, 1, 500, &["one"]).await, (0, 11));
}

/// REP-9, REP-62: a stopped follower leaves the ISR after the lag time;
/// acks=all with min.insync.replicas=2 succeeds with two in-sync replicas
/// and fails with NOT_ENOUGH_REPLICAS with one live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_followers_leave_the_isr() {
    let mut c = Cluster::start("300", "2").await;
    let mut leader = c.client(1).await;
    assert_eq!(produce(&mut leader, -1, 10_000, &["x"]).await, (0, 0));
    c.stop(3).await;
    assert_eq!(
        produce(&mut leader, -1, 10_000, &["y"]).await,
        (0, 1),
        "acks=all completes once the ISR shrank to {{1, 2}}"
    );
    assert_eq!(c.isr(1), vec![1, 2]);
    eventually("follower 2 learns the ISR", || c.isr(2) == vec![1, 2]).await;

    c.stop(2).await;
    // spec: REP-9 — the leader does not shrink the ISR below the topic's
    // min.insync.replicas, however long broker 2 lags.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(c.isr(1), vec![1, 2]);
    // spec: REP-70 — broker 2 is not registered, so one live member is
    // left: acks=all is refused at once.
    assert_eq!(
        produce(&mut leader, -1, 10_000, &["z"]).await.0,
        19,
        "REP-62, REP-70: NOT_ENOUGH_REPLICAS below min.insync.replicas"
    );
    assert_eq!(
        produce(&mut leader, 1, 10_000, &["z"]).await,
        (0, 2),
        "acks=1 still works"
    );
}

/// REP-11, REP-12, REP-61, REP-63, REP-64, REP-67: a leader change. The old
/// leader's uncommitted suffix is invisible to consumers, truncated when it
/// follows the new leader, and every acknowledged record keeps its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_truncates_the_divergent_suffix() {
    let c = Cluster::start("10000", "2").await;
    let mut one = c.client(1).await;
    assert_eq!(
        produce(&mut one, -1, 10_000, &["a", "b", "c"]).await,
        (0, 0)
    );
    let acked = c.records(1);
    assert_eq!(acked.len(), 3);

    // Followers lose the leader; the old leader takes uncommitted writes.
    c.controller
        .send(&c.tp, &state(None, 2, 2, &[1, 2, 3]), Some(&[2, 3]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(produce(&mut one, 1, 1000, &["d", "e"]).await, (0, 3));
    assert_eq!(c.log_end(1), 5);
    // spec: REP-63 — consumers see only what is below the high watermark.
    let (err, hw, values) = consume(&mut one, 0, 1).await;
    assert_eq!((err, hw), (0, 3));
    assert_eq!(values.len(), 3, "records above the HW are not served");
    assert_eq!(consume(&mut one, 3, 1).await.2.len(), 0);
    assert_eq!(
        latest(&mut one).await,
        (0, 3),
        "ListOffsets latest is the HW"
    );

    // Broker 2 leads epoch 3 with ISR {2, 3}; broker 1 follows.
    c.controller
        .send(&c.tp, &state(Some(2), 3, 3, &[2, 3]), None);
    let mut two = c.client(2).await;
    eventually("broker 2 leads", || {
        c.node(2).broker.partitions.is_leader(&c.tp)
    })
    .await;
    // spec: REP-61 — the old leader refuses produce.
    assert_eq!(produce(&mut one, 1, 1000, &["x"]).await.0, 6);
    assert_eq!(
        consume(&mut one, 0, 3).await.0,
        6,
        "a follower serves no consumer"
    );
    // spec: REP-67 — the new leader answers OffsetForLeaderEpoch.
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(3)
                        .with_leader_epoch(1),
                ]),
        ]);
    let resp = two.call(4, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 1, 3));

    assert_eq!(produce(&mut two, -1, 10_000, &["f"]).await, (0, 3));
    eventually("broker 1 truncated and caught up", || {
        c.log_end(1) == 4 && c.records(1) == c.records(2)
    })
    .await;
    let after = c.records(1);
    assert_eq!(
        &after[..3],
        &acked[..],
        "acknowledged records keep their offsets"
    );
    assert_eq!(after[3], (3, b"f".to_vec()), "the divergent suffix is gone");
    assert_eq!(c.records(3), c.records(2));

    // spec: REP-63 — stale and future epochs are refused.
    assert_eq!(consume(&mut two, 0, 1).await.0, 74, "FENCED_LEADER_EPOCH");
    assert_eq!(consume(&mut two, 0, 9).await.0, 75, "UNKNOWN_LEADER_EPOCH");
    let (err, hw, values) = consume(&mut two, 0, 3).await;
    assert_eq!((err, hw, values.len()), (0, 4, 4));
}

/// REP-66: the group coordinator follows the leadership of its
/// `__consumer_offsets` partition. Commits are replicated before they are
/// answered; after a leader change the new leader serves the group with
/// the committed offset and the old one no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_coordinator_follows_offsets_leadership() {
    let c = Cluster::start_with("10000", "1", &[("offsets.topic.num.partitions", "1")]).await;
    let offsets = TopicPartition::new("__consumer_offsets", 0);
    for n in &c.nodes {
        n.broker.groups.ensure_offsets_topic(&n.broker).unwrap();
    }
    c.controller
        .send(&offsets, &state(Some(1), 1, 1, &[1, 2, 3]), None);
    let offsets_end = |id: i32| {
        c.node(id)
            .broker
            .partitions
            .reader(&offsets)
            .unwrap()
            .log_end()
    };
    let mut one = c.client(1).await;
    assert_eq!(
        one.commit_offsets("g", -1, "", TOPIC, &[(0, 42)])
            .await
            .unwrap(),
        0
    );
    assert!(offsets_end(1) >= 1);
    assert!(
        offsets_end(2) >= offsets_end(1),
        "commit answered before replication"
    );
    assert!(
        offsets_end(3) >= offsets_end(1),
        "commit answered before replication"
    );

    c.controller
        .send(&offsets, &state(Some(2), 2, 2, &[1, 2, 3]), None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut two = c.client(2).await;
        if let Ok(committed) = two.committed_offsets("g", Some((TOPIC, &[0]))).await
            && committed.first().map(|o| o.offset) == Some(42)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new coordinator never loaded the group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut one = c.client(1).await;
    assert_eq!(
        one.commit_offsets("g", -1, "", TOPIC, &[(0, 43)])
            .await
            .unwrap(),
        16,
        "NOT_COORDINATOR from the old coordinator"
    );
}

/// REP-65: a broker that loses its coordination session stops leading:
/// the waiting acks=all request fails, produce and fetch answer
/// NOT_LEADER_OR_FOLLOWER until a new record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_loss_stops_leading() {
    let c = Cluster::start("10000", "1").await;
    let mut leader = c.client(1).await;
    assert_eq!(produce(&mut leader, -1, 10_000, &["a"]).await, (0, 0));
    // Follower 3 stops fetching, so the next acks=all request waits.
    c.controller
        .send(&c.tp, &state(None, 2, 2, &[1, 2, 3]), Some(&[3]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = c.client(1).await;
    let pending = tokio::spawn(async move { produce(&mut waiting, -1, 10_000, &["b"]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "acks=all waits for follower 3");
    c.node(1).broker.partitions.session_lost();
    let (err, _) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the waiting request is answered")
        .unwrap();
    assert_eq!(err, 6, "REP-65: the waiting acks=all request fails");
    assert_eq!(produce(&mut leader, 1, 1000, &["c"]).await.0, 6);
    assert_eq!(consume(&mut leader, 0, -1).await.0, 6);
    assert!(c.node(1).broker.partitions.replica_view(&c.tp).is_none());
    // A new record brings it back.
    c.controller
        .send(&c.tp, &state(Some(1), 3, 3, &[1, 2]), Some(&[1, 2]));
    assert_eq!(produce(&mut leader, -1, 10_000, &["d"]).await.0, 0);
}

/// REP-68, REP-64: a follower whose end fell below the leader's log start
/// (retention ran meanwhile) restarts at the leader's start and catches
/// up; fetched chunks larger than a segment are appended segment by
/// segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_below_the_leader_log_start_restarts_there() {
    let c = Cluster::start_with(
        "10000",
        "1",
        &[
            ("log.segment.bytes", "1024"),
            ("log.retention.bytes", "2048"),
            ("log.retention.check.interval.ms", "100"),
        ],
    )
    .await;
    let mut leader = c.client(1).await;
    assert_eq!(produce(&mut leader, -1, 10_000, &["first"]).await, (0, 0));
    // Broker 3 stops following; the others go on without it, so the high
    // watermark moves and retention may delete below it (STO-59).
    c.controller
        .send(&c.tp, &state(None, 2, 2, &[1, 2, 3]), Some(&[3]));
    c.controller
        .send(&c.tp, &state(Some(1), 2, 2, &[1, 2]), Some(&[1, 2]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let value = "v".repeat(100);
    for i in 0..60 {
        assert_eq!(produce(&mut leader, 1, 1000, &[&value]).await, (0, i + 1));
    }
    eventually("retention on the leader", || c.log_start(1) > 1).await;
    assert_eq!(c.log_end(3), 1);
    c.controller
        .send(&c.tp, &state(Some(1), 3, 3, &[1, 2]), None);
    eventually(
        "follower 3 restarts at the leader's start and catches up",
        || c.log_end(3) == c.log_end(1),
    )
    .await;
    assert!(c.log_start(3) > 1, "REP-68: restarted above its old end");
    let (three, one) = (c.records(3), c.records(1));
    assert!(!three.is_empty());
    assert!(
        one.ends_with(&three) || three.ends_with(&one),
        "the same offsets hold the same records"
    );
}

/// DeleteRecords v2 on broker `c`'s connection; (error code, low watermark).
async fn delete_records(c: &mut Client, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::DeleteRecordsRequest;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(name(TOPIC))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ]),
        ]);
    let resp = c.call(2, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// REP-71, REP-72: DeleteRecords on the leader moves its log start up to
/// the high watermark; the followers' starts follow on their next fetch; a
/// follower refuses the request; consumers below the start get
/// OFFSET_OUT_OF_RANGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_on_the_leader_reaches_the_followers() {
    let c = Cluster::start("10000", "2").await;
    let mut leader = c.client(1).await;
    for i in 0..5 {
        assert_eq!(
            produce(&mut leader, -1, 10_000, &["a", "b"]).await,
            (0, 2 * i)
        );
    }
    assert_eq!(delete_records(&mut leader, 11).await, (1, -1));
    assert_eq!(delete_records(&mut leader, 6).await, (0, 6));
    assert_eq!(c.log_start(1), 6);
    eventually("the followers' starts follow", || {
        c.log_start(2) == 6 && c.log_start(3) == 6
    })
    .await;
    let mut two = c.client(2).await;
    assert_eq!(delete_records(&mut two, 8).await, (6, -1));
    assert_eq!(consume(&mut leader, 2, 1).await.0, 1);
    let (err, _, values) = consume(&mut leader, 6, 1).await;
    assert_eq!(err, 0);
    assert!(values.iter().any(|(o, _)| *o == 6));
    assert_eq!(delete_records(&mut leader, -1).await, (0, 10));
    eventually("the followers' starts reach the high watermark", || {
        c.log_start(2) == 10 && c.log_start(3) == 10
    })
    .await;
    // New records go on from there, on every replica.
    assert_eq!(produce(&mut leader, -1, 10_000, &["c"]).await, (0, 10));
    assert_eq!(c.records(2), vec![(10, b"c".to_vec())]);
}
