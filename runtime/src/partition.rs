//! The broker's data plane: every partition's storage log, the produce path
//! (validate → idempotence check → assign offsets → one append) and the
//! wake-ups that end Fetch long polls.
//!
//! Appends go through one lock around the [`LogManager`]; fetches read
//! through cloned [`LogReader`]s and never take it (spec: PRO-70).
//!
//! Every hosted partition is also a [`Replica`] of `gregor_core`: the core
//! decides who may append, where the high watermark is, when acks=all
//! requests are answered and which ISR changes to propose; this module
//! carries its effects out on the storage log (spec: REP-60..REP-66).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use gregor_core::controller::PartitionState;
use gregor_core::ids::{BrokerId, LeaderEpoch, Millis, Offset, PartitionEpoch, TopicPartition};
use gregor_core::replica::{
    Acks, Batch, DeleteRecordsError, Effect, EpochAnswer, EpochQuery, FetchError, FetchRequest,
    FetchResponse, FollowerRequest, IsrProposal, IsrResponse, ProduceError, Replica, ReplicaConfig,
    RequestId,
};
use tokio::sync::{Notify, oneshot};

use crate::cluster::link::ClusterLink;
use crate::config::{BrokerConfig, TimestampType};
use crate::storage::config::LogConfig;
use crate::storage::error::StorageError;
use crate::storage::log::LogReader;
use crate::storage::manager::LogManager;
use crate::storage::record::{RecordError, Validator};

/// Batches remembered per producer and partition for duplicate detection;
/// Kafka's clients keep at most five in flight.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Bytes read at a time when rebuilding producer state from a log.
const REBUILD_READ_BYTES: usize = 1 << 20;

/// Why an append was refused. Each maps to one Kafka error code in
/// [`crate::protocol::error`].
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// No such partition on this broker.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    /// An entry is larger than `message.max.bytes`.
    #[error("entry of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Entry size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The records failed validation (CRC, framing, codec, rules).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The request version and the record format do not match.
    #[error("{0}")]
    WrongFormat(&'static str),
    /// The producer epoch is older than the one last seen.
    #[error("producer epoch {got} is older than {current}")]
    ProducerFenced {
        /// Epoch in the batch.
        got: i16,
        /// Epoch on record.
        current: i16,
    },
    /// The sequence does not follow the last one written.
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrder {
        /// First sequence of the batch.
        got: i32,
        /// The next sequence expected.
        expected: i32,
    },
    /// A non-zero first sequence from a producer this partition does not know.
    #[error("unknown producer id {0}")]
    UnknownProducer(i64),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The broker is shutting down.
    #[error("broker is shutting down")]
    ShuttingDown,
    /// This broker does not lead the partition (spec: REP-61).
    #[error("not the leader of {0}")]
    NotLeader(String),
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`
    /// (spec: REP-62).
    #[error("not enough replicas: ISR {isr} < min.insync.replicas {min}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// The minimum.
        min: usize,
    },
}

/// Why DeleteRecords was refused for a partition (spec: PRO-28, REP-71).
/// Each maps to one Kafka error code in [`crate::protocol::error`].
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsFailure {
    /// No such partition on this broker.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    /// This broker does not lead the partition.
    #[error("not the leader of {0}")]
    NotLeader(String),
    /// The offset is negative (other than -1) or above the high watermark.
    #[error("offset {offset} is outside [0, high watermark {high_watermark}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The leader's high watermark.
        high_watermark: i64,
    },
    /// The topic's `cleanup.policy` does not include `delete`.
    #[error("records of {0} cannot be deleted: its cleanup.policy does not include delete")]
    PolicyViolation(String),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The append time stamped under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already written.
    pub duplicate: bool,
}

/// One batch remembered for duplicate detection.
#[derive(Debug, Clone, Copy)]
struct SeqBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

/// What one partition knows about one idempotent producer (spec: PRO-80).
#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<SeqBatch>,
}

/// The verdict of the sequence check.
enum SeqCheck {
    Append,
    Duplicate(i64),
}

impl ProducerEntry {
    fn check(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Result<SeqCheck, AppendError> {
        if epoch < self.epoch {
            return Err(AppendError::ProducerFenced {
                got: epoch,
                current: self.epoch,
            });
        }
        if epoch > self.epoch || self.batches.is_empty() {
            // spec: PRO-80 — a new epoch starts at sequence 0.
            return if first_seq == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(AppendError::OutOfOrder {
                    got: first_seq,
                    expected: 0,
                })
            };
        }
        if let Some(b) = self
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate(b.base_offset));
        }
        let last = self.batches.back().map_or(-1, |b| b.last_seq);
        let expected = if last == i32::MAX { 0 } else { last + 1 };
        if first_seq != expected {
            return Err(AppendError::OutOfOrder {
                got: first_seq,
                expected,
            });
        }
        Ok(SeqCheck::Append)
    }

    fn record(&mut self, epoch: i16, b: SeqBatch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            self.batches.pop_front();
        }
        self.batches.push_back(b);
    }
}

/// Options of one append, resolved from broker and topic configs.
#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// Largest entry accepted (`message.max.bytes` / `max.message.bytes`).
    pub max_entry_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// The Produce request asks for v2 batches (v3+) or legacy messages (v0–2).
    pub require_v2: bool,
}

/// The answer to an acks=all produce request, once the core decides it.
pub type ProduceWait = oneshot::Receiver<Result<(), ProduceError>>;

/// A successful leader append, possibly still waiting for acks=all.
#[derive(Debug)]
pub struct Produced {
    /// Where the records went.
    pub appended: Appended,
    /// For acks=all: resolves once the high watermark passes the records
    /// or the core fails them (spec: REP-62).
    pub wait: Option<ProduceWait>,
}

/// Leader, epoch and ISR of a hosted partition as this broker's replica
/// knows them (Metadata answers, `topics describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// The assigned replicas, in preference order.
    pub replicas: Vec<BrokerId>,
    /// The leader, `None` while offline or unknown.
    pub leader: Option<BrokerId>,
    /// The leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch.
    pub partition_epoch: PartitionEpoch,
    /// The in-sync replicas (the leader's current ISR when this broker
    /// leads, else the controller's record).
    pub isr: BTreeSet<BrokerId>,
    /// This replica's high watermark.
    pub high_watermark: i64,
}

/// This broker started or stopped leading a partition (spec: REP-66).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadershipChange {
    /// The partition.
    pub partition: TopicPartition,
    /// `true` when it now leads, `false` when it stopped.
    pub leading: bool,
    /// The leader epoch of the change.
    pub leader_epoch: LeaderEpoch,
}

/// What consumers need without taking the append lock: the reader and the
/// replica's published role, epoch and high watermark (spec: REP-63).
#[derive(Debug)]
struct Published {
    high_watermark: AtomicI64,
    leader_epoch: AtomicI32,
    leading: AtomicBool,
}

/// A hosted partition as the fetch path sees it.
#[derive(Debug, Clone)]
pub struct Hosted {
    /// The log reader.
    pub reader: LogReader,
    published: Arc<Published>,
}

impl Hosted {
    /// The high watermark: consumers read below it.
    #[must_use]
    pub fn high_watermark(&self) -> i64 {
        self.published.high_watermark.load(Ordering::Acquire)
    }

    /// The leader epoch this replica knows.
    #[must_use]
    pub fn leader_epoch(&self) -> i32 {
        self.published.leader_epoch.load(Ordering::Acquire)
    }

    /// Whether this broker leads the partition.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.published.leading.load(Ordering::Acquire)
    }

    /// Checks a client's `current_leader_epoch` (-1: not given) against
    /// this leader (spec: REP-63).
    pub fn fence(&self, current_leader_epoch: i32) -> Result<(), FetchError> {
        if !self.is_leader() {
            return Err(FetchError::NotLeader);
        }
        let current = LeaderEpoch(self.leader_epoch());
        let request = LeaderEpoch(current_leader_epoch);
        if current_leader_epoch < 0 || request == current {
            Ok(())
        } else if request < current {
            Err(FetchError::FencedLeaderEpoch { request, current })
        } else {
            Err(FetchError::UnknownLeaderEpoch { request, current })
        }
    }
}

/// One hosted partition's replica and the controller record it follows.
#[derive(Debug)]
struct Slot {
    replica: Replica,
    state: Option<PartitionState>,
    published: Arc<Published>,
}

#[derive(Debug)]
struct Inner {
    mgr: Option<LogManager>,
    slots: HashMap<TopicPartition, Slot>,
}

/// Work found under the lock and done after releasing it: calls into the
/// coordination backend may call back into [`Partitions`].
#[derive(Debug, Default)]
struct Deferred {
    proposals: Vec<(TopicPartition, IsrProposal)>,
    leadership: Vec<LeadershipChange>,
    wake: Vec<TopicPartition>,
    plan_changed: bool,
}

/// Every partition log of the broker, with its replica, producer state and
/// wake-ups.
#[derive(Debug)]
pub struct Partitions {
    inner: Mutex<Inner>,
    readers: RwLock<HashMap<TopicPartition, Hosted>>,
    producers: Mutex<HashMap<TopicPartition, BTreeMap<i64, ProducerEntry>>>,
    /// Long-polling fetches to wake, per partition (spec: PRO-72).
    waiters: Mutex<HashMap<TopicPartition, Vec<Weak<Notify>>>>,
    link: Arc<dyn ClusterLink>,
    replica_config: ReplicaConfig,
    /// acks=all requests waiting for the core's answer (spec: REP-62).
    purgatory: Mutex<HashMap<RequestId, oneshot::Sender<Result<(), ProduceError>>>>,
    next_request: AtomicU64,
    broker_epoch: AtomicI64,
    started: std::time::Instant,
    /// The leader each followed partition fetches from (spec: REP-64).
    plan: Mutex<BTreeMap<TopicPartition, BrokerId>>,
    plan_changed: Notify,
    leadership: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<LeadershipChange>>>,
    /// The broker's `log.*` settings.
    base_log_config: LogConfig,
    /// Each topic's storage config, its overrides applied (spec: STO-54).
    topic_log_configs: Mutex<HashMap<String, LogConfig>>,
    /// Logs whose recorded topic id is known to match (spec: CLU-35).
    topic_ids: Mutex<HashMap<TopicPartition, String>>,
}

/// Why [`Partitions::check_cluster_id`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterIdCheck {
    /// The log directories belong to the cluster with this id.
    Other(String),
    /// `meta.properties` could not be read or written.
    Unreadable(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The storage config the broker config describes.
pub fn log_config(cfg: &BrokerConfig) -> LogConfig {
    LogConfig {
        segment_bytes: cfg.log_segment_bytes as u64,
        roll_ms: cfg.log_roll_ms,
        index_size_max_bytes: cfg.log_index_size_max_bytes as u32,
        index_interval_bytes: cfg.log_index_interval_bytes as u32,
        retention_ms: (cfg.log_retention_ms >= 0).then_some(cfg.log_retention_ms),
        retention_bytes: u64::try_from(cfg.log_retention_bytes).ok(),
        flush_interval_messages: (cfg.log_flush_interval_messages != i64::MAX)
            .then_some(cfg.log_flush_interval_messages as u64),
        flush_interval_ms: (cfg.log_flush_interval_ms != i64::MAX)
            .then_some(cfg.log_flush_interval_ms),
        deletable: true,
    }
}

/// The replica settings of the broker config (`min.insync.replicas`,
/// `replica.lag.time.max.ms`), Kafka's defaults where unusable.
pub fn replica_config(cfg: &BrokerConfig) -> ReplicaConfig {
    let mut rc = ReplicaConfig::new(BrokerId(cfg.broker_id));
    rc.min_insync_replicas = usize::try_from(cfg.min_insync_replicas).unwrap_or(1).max(1);
    if let Some(lag) = cfg
        .raw("replica.lag.time.max.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v > 0)
    {
        rc.replica_lag_time_max_ms = lag;
    }
    if let Err(e) = rc.validate() {
        tracing::error!(error = %e, "invalid replica settings; using Kafka's defaults");
        rc = ReplicaConfig::new(BrokerId(cfg.broker_id));
    }
    rc
}

fn published(replica: &Replica) -> Arc<Published> {
    Arc::new(Published {
        high_watermark: AtomicI64::new(replica.high_watermark().get()),
        leader_epoch: AtomicI32::new(replica.leader_epoch().get()),
        leading: AtomicBool::new(replica.is_leader()),
    })
}

impl Partitions {
    /// Opens every log (recovering as needed) and rebuilds producer state
    /// from the logs (spec: PRO-81). `link` is the coordination backend;
    /// no partition leads or follows until [`Partitions::apply_state`]
    /// names its role (spec: REP-60).
    pub fn open(cfg: &BrokerConfig, link: Arc<dyn ClusterLink>) -> Result<Self, StorageError> {
        let base_log_config = log_config(cfg);
        let mgr = LogManager::open(
            &cfg.log_dirs,
            cfg.broker_id,
            base_log_config.clone(),
            now_ms(),
        )?;
        let replica_config = replica_config(cfg);
        let mut readers = HashMap::new();
        let mut producers = HashMap::new();
        let mut slots = HashMap::new();
        for tp in mgr.partitions() {
            if let Some(log) = mgr.get(tp) {
                let reader = log.reader();
                let state = rebuild_producers(&reader)?;
                if !state.is_empty() {
                    producers.insert(tp.clone(), state);
                }
                let hw = Offset(mgr.high_watermark(tp).unwrap_or(0));
                let replica = Replica::new(replica_config, log.meta().clone(), hw);
                let published = published(&replica);
                readers.insert(
                    tp.clone(),
                    Hosted {
                        reader,
                        published: Arc::clone(&published),
                    },
                );
                slots.insert(
                    tp.clone(),
                    Slot {
                        replica,
                        state: None,
                        published,
                    },
                );
            }
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                mgr: Some(mgr),
                slots,
            }),
            readers: RwLock::new(readers),
            producers: Mutex::new(producers),
            waiters: Mutex::new(HashMap::new()),
            link,
            replica_config,
            purgatory: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            broker_epoch: AtomicI64::new(-1),
            started: std::time::Instant::now(),
            plan: Mutex::new(BTreeMap::new()),
            plan_changed: Notify::new(),
            leadership: Mutex::new(Vec::new()),
            base_log_config,
            topic_log_configs: Mutex::new(HashMap::new()),
            topic_ids: Mutex::new(HashMap::new()),
        })
    }

    /// A topic's configs are known or changed: its logs (and the ones
    /// created later) use the broker's `log.*` settings with the topic's
    /// overrides (spec: STO-54). Cheap when nothing changed.
    pub fn set_topic_config(&self, topic: &str, configs: &BTreeMap<String, String>) {
        let config = self
            .base_log_config
            .with_topic_overrides(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        {
            let mut known = self
                .topic_log_configs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if known.get(topic) == Some(&config) {
                return;
            }
            known.insert(topic.to_owned(), config.clone());
        }
        let mut guard = self.lock();
        let Some(mgr) = guard.mgr.as_mut() else {
            return;
        };
        let tps: Vec<TopicPartition> = mgr
            .partitions()
            .filter(|tp| tp.topic == topic)
            .cloned()
            .collect();
        for tp in tps {
            if let Some(log) = mgr.get_mut(&tp)
                && *log.config() != config
            {
                match log.set_config(config.clone()) {
                    Ok(()) => tracing::info!(partition = %tp, "topic storage config applied"),
                    Err(e) => {
                        tracing::warn!(partition = %tp, error = %e, "topic storage config refused")
                    }
                }
            }
        }
    }

    /// spec: CLU-37 — checks the cluster id read from ZooKeeper against the
    /// one the log directories record, and records it where missing.
    pub fn check_cluster_id(&self, cluster_id: &str) -> Result<(), ClusterIdCheck> {
        let guard = self.lock();
        let Some(mgr) = guard.mgr.as_ref() else {
            return Ok(());
        };
        match mgr
            .cluster_id()
            .map_err(|e| ClusterIdCheck::Unreadable(e.to_string()))?
        {
            Some(stored) if stored != cluster_id => Err(ClusterIdCheck::Other(stored)),
            Some(_) => Ok(()),
            None => mgr
                .record_cluster_id(cluster_id)
                .map_err(|e| ClusterIdCheck::Unreadable(e.to_string())),
        }
    }

    /// The storage config the log of `tp` runs with, if it is held here.
    pub fn log_config_of(&self, tp: &TopicPartition) -> Option<LogConfig> {
        self.lock()
            .mgr
            .as_ref()
            .and_then(|m| m.get(tp))
            .map(|log| log.config().clone())
    }

    /// The storage config of `topic`'s logs.
    fn topic_log_config(&self, topic: &str) -> LogConfig {
        self.topic_log_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned()
            .unwrap_or_else(|| self.base_log_config.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replica clock: milliseconds since the partitions were opened.
    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as i64)
    }

    /// The coordination backend.
    pub fn link(&self) -> &Arc<dyn ClusterLink> {
        &self.link
    }

    /// The partitions held.
    pub fn held(&self) -> Vec<TopicPartition> {
        self.lock()
            .mgr
            .as_ref()
            .map(|m| m.partitions().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates the log of `tp` (and its replica, which waits for its
    /// controller record) if it does not exist.
    pub fn ensure(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let mut guard = self.lock();
        self.ensure_locked(&mut guard, tp)
    }

    fn ensure_locked(&self, inner: &mut Inner, tp: &TopicPartition) -> Result<(), StorageError> {
        let Some(mgr) = inner.mgr.as_mut() else {
            return Ok(());
        };
        if mgr.get(tp).is_some() && inner.slots.contains_key(tp) {
            return Ok(());
        }
        let hw = Offset(mgr.high_watermark(tp).unwrap_or(0));
        let log = mgr.get_or_create_with(tp, self.topic_log_config(&tp.topic), now_ms())?;
        let mut replica = Replica::new(self.replica_config, log.meta().clone(), hw);
        replica.handle_registered(self.broker_epoch.load(Ordering::Acquire));
        let published = published(&replica);
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                tp.clone(),
                Hosted {
                    reader: log.reader(),
                    published: Arc::clone(&published),
                },
            );
        inner.slots.insert(
            tp.clone(),
            Slot {
                replica,
                state: None,
                published,
            },
        );
        Ok(())
    }

    /// Single-node mode: this broker is the only replica, leader and ISR of
    /// `tp`, in the newest epoch its log has seen (spec: REP-60). Creates
    /// the log if needed.
    pub fn lead_alone(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let me = self.link.local_broker();
        let epoch = {
            let mut guard = self.lock();
            self.ensure_locked(&mut guard, tp)?;
            guard.slots.get(tp).map_or(LeaderEpoch(0), |s| {
                let known = s.state.as_ref().map(|st| st.leader_epoch);
                known.unwrap_or_else(|| {
                    s.replica
                        .log()
                        .latest_epoch()
                        .unwrap_or(LeaderEpoch(0))
                        .max(LeaderEpoch(0))
                })
            })
        };
        let state = PartitionState {
            replicas: vec![me],
            leader: Some(me),
            leader_epoch: epoch,
            partition_epoch: PartitionEpoch(0),
            isr: [me].into(),
        };
        self.apply_state(tp, &state)
    }

    /// The controller's record of `tp` changed (or is first seen): creates
    /// the log if this broker is a replica and has none, feeds
    /// `Replica::handle_partition_state`, and starts or stops the follower
    /// fetch for it. Idempotent; stale records are ignored by the core
    /// (REP-2). A record that does not list this broker is ignored: the
    /// backend calls [`Partitions::remove`] for those (spec: REP-60).
    pub fn apply_state(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
    ) -> Result<(), StorageError> {
        let me = self.link.local_broker();
        if !state.replicas.contains(&me) {
            tracing::debug!(partition = %tp, "record does not list this broker; ignored");
            return Ok(());
        }
        let mut deferred = Deferred::default();
        let result = {
            let mut guard = self.lock();
            self.ensure_locked(&mut guard, tp)?;
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return Ok(());
            };
            let newer = slot.state.as_ref().is_none_or(|s| {
                (state.leader_epoch, state.partition_epoch) > (s.leader_epoch, s.partition_epoch)
            });
            if newer {
                slot.state = Some(state.clone());
            }
            let before = slot.replica.is_leader();
            slot.replica.handle_partition_state(state, self.now());
            let result = self.apply_effects(mgr, tp, slot, None, &mut deferred);
            self.after_role(tp, slot, before, &mut deferred);
            result
        };
        self.finish(deferred);
        result
    }

    /// This broker (re)registered and got `broker_epoch`; its fetches carry
    /// it from now on (REP-23).
    pub fn registered(&self, broker_epoch: i64) {
        self.broker_epoch.store(broker_epoch, Ordering::Release);
        let mut guard = self.lock();
        for slot in guard.slots.values_mut() {
            slot.replica.handle_registered(broker_epoch);
        }
    }

    /// The broker epoch of the current registration, `None` between
    /// sessions (spec: CLU-6).
    pub fn broker_epoch(&self) -> Option<i64> {
        let e = self.broker_epoch.load(Ordering::Acquire);
        (e >= 0).then_some(e)
    }

    /// This broker lost its coordination session: it stops leading and
    /// following everywhere until new records arrive through
    /// [`Partitions::apply_state`]. Produce and fetch answer
    /// NOT_LEADER_OR_FOLLOWER and waiting acks=all requests fail
    /// (spec: REP-65).
    pub fn session_lost(&self) {
        // The registration ended with the session (spec: CLU-7).
        self.broker_epoch.store(-1, Ordering::Release);
        let mut deferred = Deferred::default();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(mgr) = inner.mgr.as_ref() else {
                return;
            };
            for (tp, slot) in inner.slots.iter_mut() {
                let Some(log) = mgr.get(tp) else { continue };
                let before = slot.replica.is_leader();
                let hw = slot.replica.high_watermark();
                slot.replica = Replica::new(self.replica_config, log.meta().clone(), hw);
                slot.replica
                    .handle_registered(self.broker_epoch.load(Ordering::Acquire));
                slot.state = None;
                self.after_role(tp, slot, before, &mut deferred);
            }
        }
        let failed: Vec<_> = self
            .purgatory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, tx) in failed {
            let _ = tx.send(Err(ProduceError::NotLeader));
        }
        tracing::warn!("coordination session lost: not leading or following any partition");
        self.finish(deferred);
    }

    /// The controller's answer to a proposal made through
    /// `ClusterLink::propose_isr` (spec: REP-7).
    pub fn isr_response(&self, tp: &TopicPartition, proposal: &IsrProposal, response: IsrResponse) {
        let mut deferred = Deferred::default();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return;
            };
            slot.replica
                .handle_isr_response(proposal, response, self.now());
            // A storage failure is logged and the replica rebuilt there.
            let _ = self.apply_effects(mgr, tp, slot, None, &mut deferred);
        }
        self.finish(deferred);
    }

    /// Leader, leader epoch and ISR as this broker's replica knows them;
    /// `None` when `tp` is not hosted or has no controller record yet.
    pub fn replica_view(&self, tp: &TopicPartition) -> Option<ReplicaView> {
        let guard = self.lock();
        let slot = guard.slots.get(tp)?;
        let state = slot.state.as_ref()?;
        let (isr, partition_epoch) = match slot.replica.as_leader() {
            Some(l) => (l.isr().clone(), slot.replica.partition_epoch()),
            None => (state.isr.clone(), state.partition_epoch),
        };
        Some(ReplicaView {
            replicas: state.replicas.clone(),
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch,
            isr,
            high_watermark: slot.replica.high_watermark().get(),
        })
    }

    /// Whether this broker currently leads `tp`.
    pub fn is_leader(&self, tp: &TopicPartition) -> bool {
        self.hosted(tp).is_some_and(|h| h.is_leader())
    }

    /// Subscribes to this broker's leadership changes (spec: REP-66).
    pub fn subscribe_leadership(&self) -> tokio::sync::mpsc::UnboundedReceiver<LeadershipChange> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Deletes the log of `tp` and its files, if present: this broker is no
    /// longer a replica (reassignment, deletion). Stops fetching it and
    /// fails requests waiting on it.
    pub fn remove(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        self.drop_partition(tp, false)
    }

    /// Like [`Partitions::remove`], but the log's directory is renamed to
    /// `<topic>-<partition>.<n>-stray` instead of deleted (spec: CLU-35,
    /// CLU-36).
    pub fn set_aside(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        self.drop_partition(tp, true)
    }

    /// spec: CLU-35 — makes sure the log of `tp`, if held, belongs to the
    /// topic with id `id` (text form): a log recorded under another id is
    /// from an earlier topic of the same name and is set aside (returns
    /// true); a log without a recorded id adopts this one.
    pub fn adopt_topic_id(&self, tp: &TopicPartition, id: &str) -> Result<bool, StorageError> {
        let stored = {
            let guard = self.lock();
            let Some(mgr) = guard.mgr.as_ref() else {
                return Ok(false);
            };
            if mgr.get(tp).is_none() {
                return Ok(false);
            }
            if self
                .topic_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(tp)
                .is_some_and(|known| known == id)
            {
                return Ok(false);
            }
            mgr.topic_id(tp)
        };
        match stored {
            Some(s) if s != id => {
                tracing::warn!(
                    partition = %tp,
                    recorded = %s,
                    current = %id,
                    "log belongs to an earlier topic of the same name; setting it aside"
                );
                self.set_aside(tp)?;
                Ok(true)
            }
            found => {
                if found.is_none()
                    && let Some(mgr) = self.lock().mgr.as_mut()
                    && mgr.get(tp).is_some()
                {
                    mgr.set_topic_id(tp, id)?;
                }
                self.topic_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tp.clone(), id.to_owned());
                Ok(false)
            }
        }
    }

    fn drop_partition(&self, tp: &TopicPartition, aside: bool) -> Result<(), StorageError> {
        self.topic_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp);
        let mut deferred = Deferred::default();
        let result = {
            let mut guard = self.lock();
            self.readers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(tp);
            self.producers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(tp);
            let inner = &mut *guard;
            if let Some(mut slot) = inner.slots.remove(tp) {
                let before = slot.replica.is_leader();
                let hw = slot.replica.high_watermark();
                let log = slot.replica.log().clone();
                slot.replica = Replica::new(self.replica_config, log, hw);
                self.after_role(tp, &mut slot, before, &mut deferred);
            }
            deferred.plan_changed |= self
                .plan
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(tp)
                .is_some();
            match inner.mgr.as_mut() {
                Some(mgr) if mgr.get(tp).is_some() && aside => {
                    mgr.set_aside(tp, now_ms()).map(|_| ())
                }
                Some(mgr) if mgr.get(tp).is_some() => mgr.delete(tp),
                _ => Ok(()),
            }
        };
        self.finish(deferred);
        result
    }

    /// A reader for fetches, without taking the append lock.
    pub fn reader(&self, tp: &TopicPartition) -> Option<LogReader> {
        self.hosted(tp).map(|h| h.reader)
    }

    /// The reader and published replica state of `tp`.
    pub fn hosted(&self, tp: &TopicPartition) -> Option<Hosted> {
        self.readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .cloned()
    }

    /// Asks for `waiter` to be notified at the next append to, or high
    /// watermark advance of, any of `tps` (spec: PRO-72, REP-63). Register
    /// before reading: a notification that comes between the read and the
    /// wait is kept as a permit, never lost. Registrations are one-shot;
    /// dead ones are pruned here.
    pub fn wake_on_append(&self, tps: &[TopicPartition], waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for tp in tps {
            let list = waiters.entry(tp.clone()).or_default();
            list.retain(|w| w.strong_count() > 0);
            if !list
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(waiter)))
            {
                list.push(Arc::downgrade(waiter));
            }
        }
    }

    fn wake(&self, tp: &TopicPartition) {
        let woken = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp)
            .unwrap_or_default();
        for w in woken.iter().filter_map(Weak::upgrade) {
            w.notify_one();
        }
    }

    /// Validates and appends a produce payload to `tp` as its leader,
    /// answered at once (acks=1; spec: PRO-70, PRO-71, PRO-80, REP-61).
    pub fn append(
        &self,
        tp: &TopicPartition,
        payload: &[u8],
        opts: AppendOptions,
        validator: &mut Validator,
    ) -> Result<Appended, AppendError> {
        self.produce(tp, payload, opts, validator, Acks::Leader, 1)
            .map(|p| p.appended)
    }

    /// Validates and appends a produce payload to `tp` as its leader
    /// (spec: PRO-70, PRO-71, PRO-80, REP-61, REP-62). For acks=all the
    /// result carries a receiver that resolves when the core completes the
    /// request; `min_insync` is the topic's `min.insync.replicas`.
    pub fn produce(
        &self,
        tp: &TopicPartition,
        payload: &[u8],
        opts: AppendOptions,
        validator: &mut Validator,
        acks: Acks,
        min_insync: usize,
    ) -> Result<Produced, AppendError> {
        for size in entry_sizes(payload) {
            if size > opts.max_entry_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    max: opts.max_entry_bytes,
                });
            }
        }
        let now = now_ms();
        let append_time = (opts.timestamp_type == TimestampType::LogAppendTime).then_some(now);

        let mut deferred = Deferred::default();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mgr = inner.mgr.as_mut().ok_or(AppendError::ShuttingDown)?;
        let log = mgr
            .get_mut(tp)
            .ok_or_else(|| AppendError::UnknownPartition(tp.to_string()))?;
        let slot = inner
            .slots
            .get_mut(tp)
            .ok_or_else(|| AppendError::UnknownPartition(tp.to_string()))?;
        // spec: REP-61 — only the leader appends client records.
        let Some(leader) = slot.replica.as_leader() else {
            return Err(AppendError::NotLeader(tp.to_string()));
        };
        // spec: REP-62 — the topic's min.insync.replicas, checked before
        // anything is written.
        // spec: REP-70 — ISR members whose broker is not registered (the
        // controller keeps up to min.insync.replicas of them, REP-18) cannot
        // acknowledge: with too few live members the request is refused
        // rather than left to time out.
        let me = self.link.local_broker();
        let isr = leader
            .isr()
            .iter()
            .filter(|b| **b == me || self.link.broker_epoch(**b).is_some())
            .count();
        if acks == Acks::All && isr < min_insync {
            return Err(AppendError::NotEnoughReplicas {
                isr,
                min: min_insync,
            });
        }
        let epoch = slot.replica.leader_epoch();
        // Validation (CRCs, framing, rules) and offset assignment in one
        // pass over a private copy; nothing reaches the log unless all of
        // it passes. v2 batches are stamped with the leader epoch.
        let base_offset = log.log_end();
        let mut buf = payload.to_vec();
        let (summary, assigned) =
            validator.validate_and_assign(&mut buf, base_offset, epoch.get(), append_time)?;
        match (opts.require_v2, summary.single_magic()) {
            (true, Some(2)) => {}
            (true, _) => {
                return Err(AppendError::WrongFormat(
                    "Produce v3+ must carry only v2 record batches",
                ));
            }
            (false, Some(m)) if m < 2 => {}
            (false, _) => {
                return Err(AppendError::WrongFormat(
                    "Produce v0-2 must carry only v0/v1 messages",
                ));
            }
        }
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let producer = summary.producer.filter(|p| p.producer_id >= 0);
        if let Some(p) = producer {
            let entry = producers
                .get(tp)
                .and_then(|m| m.get(&p.producer_id))
                .cloned();
            let verdict = match entry {
                Some(e) => e.check(p.producer_epoch, p.base_sequence, p.last_sequence)?,
                None if p.base_sequence == 0 => SeqCheck::Append,
                None => return Err(AppendError::UnknownProducer(p.producer_id)),
            };
            if let SeqCheck::Duplicate(base_offset) = verdict {
                return Ok(Produced {
                    appended: Appended {
                        base_offset,
                        log_append_time: append_time.unwrap_or(-1),
                        log_start_offset: log.log_start(),
                        duplicate: true,
                    },
                    wait: None,
                });
            }
        }
        let count = assigned.last_offset - base_offset + 1;
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let wait = (acks == Acks::All).then(|| {
            let (tx, rx) = oneshot::channel();
            self.purgatory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(request, tx);
            rx
        });
        // spec: REP-62 — the topic's min.insync.replicas, not only the
        // broker default, governs acks=all in the core too.
        slot.replica.set_min_insync_replicas(min_insync);
        let core_base = match slot
            .replica
            .handle_produce(request, count, acks, self.now())
        {
            Ok(b) => b,
            Err(e) => {
                self.purgatory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&request);
                return Err(match e {
                    ProduceError::NotEnoughReplicas { isr, min }
                    | ProduceError::NotEnoughReplicasAfterAppend { isr, min } => {
                        AppendError::NotEnoughReplicas { isr, min }
                    }
                    ProduceError::NotLeader | ProduceError::Empty => {
                        AppendError::NotLeader(tp.to_string())
                    }
                });
            }
        };
        debug_assert_eq!(
            core_base.get(),
            base_offset,
            "REP-60: core and log disagree"
        );
        if let Err(e) = self.apply_effects(mgr, tp, slot, Some(&buf), &mut deferred) {
            self.purgatory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&request);
            drop(producers);
            drop(guard);
            self.finish(deferred);
            return Err(e.into());
        }
        let log_start_offset = mgr.get(tp).map_or(0, |l| l.log_start());
        if let Some(p) = producer {
            producers
                .entry(tp.clone())
                .or_default()
                .entry(p.producer_id)
                .or_default()
                .record(
                    p.producer_epoch,
                    SeqBatch {
                        first_seq: p.base_sequence,
                        last_seq: p.last_sequence,
                        base_offset,
                    },
                );
        }
        drop(producers);
        drop(guard);
        self.finish(deferred);
        Ok(Produced {
            appended: Appended {
                base_offset,
                log_append_time: append_time.unwrap_or(-1),
                log_start_offset,
                duplicate: false,
            },
            wait,
        })
    }

    /// A follower's fetch arrived at this leader (spec: REP-63): records its
    /// progress in the core, which may expand the ISR, advance the high
    /// watermark and complete acks=all requests. Returns the high watermark
    /// to send back.
    pub fn follower_fetch(
        &self,
        tp: &TopicPartition,
        replica: BrokerId,
        current_leader_epoch: i32,
        fetch_offset: i64,
    ) -> Result<i64, FetchError> {
        let broker_epoch = self.link.broker_epoch(replica).unwrap_or(-1);
        let mut deferred = Deferred::default();
        let result = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return Err(FetchError::NotLeader);
            };
            let leader_epoch = if current_leader_epoch < 0 {
                slot.replica.leader_epoch()
            } else {
                LeaderEpoch(current_leader_epoch)
            };
            let request = FetchRequest {
                replica,
                broker_epoch,
                leader_epoch,
                fetch_offset: Offset(fetch_offset),
            };
            let r = slot.replica.handle_fetch(&request, self.now());
            // Storage failures are logged where they happen; the fetch
            // itself is answered from the log as it is.
            let _ = self.apply_effects(mgr, tp, slot, None, &mut deferred);
            r.map(|resp| resp.high_watermark.get())
        };
        self.finish(deferred);
        result
    }

    /// Every log directory with its partition logs (DescribeLogDirs, spec:
    /// PRO-31): size on disk and `max(0, high watermark − log end)` as the
    /// offset lag, as Kafka reports for a current (not future) log.
    pub fn log_dirs(&self) -> Vec<(crate::storage::manager::DirUsage, Vec<i64>)> {
        let guard = self.lock();
        let Some(mgr) = guard.mgr.as_ref() else {
            return Vec::new();
        };
        mgr.dir_usage()
            .into_iter()
            .map(|d| {
                let lags = d
                    .partitions
                    .iter()
                    .map(|(tp, _, end)| {
                        guard
                            .slots
                            .get(tp)
                            .map_or(0, |s| (s.replica.high_watermark().get() - end).max(0))
                    })
                    .collect();
                (d, lags)
            })
            .collect()
    }

    /// DeleteRecords as the partition's leader (spec: PRO-28, REP-71):
    /// moves the log start to `offset` (-1: the high watermark), never past
    /// the high watermark, and returns the log start afterwards (the low
    /// watermark). The new start is checkpointed before the answer.
    pub fn delete_records(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<i64, DeleteRecordsFailure> {
        let mut deferred = Deferred::default();
        let result = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return Err(DeleteRecordsFailure::UnknownPartition(tp.to_string()));
            };
            if !slot.replica.is_leader() {
                return Err(DeleteRecordsFailure::NotLeader(tp.to_string()));
            }
            if offset < -1 {
                return Err(DeleteRecordsFailure::OffsetOutOfRange {
                    offset,
                    high_watermark: slot.replica.high_watermark().get(),
                });
            }
            if !mgr.get(tp).is_none_or(|l| l.config().deletable) {
                return Err(DeleteRecordsFailure::PolicyViolation(tp.to_string()));
            }
            let target = (offset >= 0).then_some(Offset(offset));
            match slot.replica.handle_delete_records(target) {
                Ok(start) => self
                    .apply_effects(mgr, tp, slot, None, &mut deferred)
                    .map(|()| start.get())
                    .map_err(DeleteRecordsFailure::from),
                Err(DeleteRecordsError::NotLeader) => {
                    Err(DeleteRecordsFailure::NotLeader(tp.to_string()))
                }
                Err(DeleteRecordsError::OffsetOutOfRange {
                    offset,
                    high_watermark,
                }) => Err(DeleteRecordsFailure::OffsetOutOfRange {
                    offset: offset.get(),
                    high_watermark: high_watermark.get(),
                }),
            }
        };
        self.finish(deferred);
        result
    }

    /// Answers an OffsetForLeaderEpoch query as the leader (STO-4, REP-11):
    /// the end offset of the largest epoch ≤ `epoch`, fenced like a fetch;
    /// `current_leader_epoch` -1 means "not given".
    pub fn offsets_for_leader_epoch(
        &self,
        tp: &TopicPartition,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<EpochAnswer, FetchError> {
        let guard = self.lock();
        let slot = guard.slots.get(tp).ok_or(FetchError::NotLeader)?;
        let current = if current_leader_epoch < 0 {
            slot.replica.leader_epoch()
        } else {
            LeaderEpoch(current_leader_epoch)
        };
        slot.replica.handle_offsets_for_leader_epoch(&EpochQuery {
            current_leader_epoch: current,
            epoch: LeaderEpoch(epoch),
        })
    }

    /// The partitions this broker follows, with their leaders (spec: REP-64).
    pub fn fetch_plan(&self) -> BTreeMap<TopicPartition, BrokerId> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves when the fetch plan changes.
    pub async fn plan_changed(&self) {
        self.plan_changed.notified().await;
    }

    /// What the follower of `tp` sends its leader next, if anything.
    pub fn poll_request(&self, tp: &TopicPartition) -> Option<FollowerRequest> {
        self.lock().slots.get(tp)?.replica.poll_request()
    }

    /// The leader's answer to this follower's OffsetForLeaderEpoch query
    /// (REP-11, REP-12): truncates as the core says.
    pub fn follower_epoch_answer(
        &self,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        queried: LeaderEpoch,
        answer: EpochAnswer,
    ) {
        let mut deferred = Deferred::default();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return;
            };
            slot.replica
                .handle_epoch_response(leader_epoch, queried, answer);
            let _ = self.apply_effects(mgr, tp, slot, None, &mut deferred);
        }
        self.finish(deferred);
    }

    /// The leader refused this follower's fetch or query.
    pub fn follower_error(
        &self,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        error: FetchError,
    ) {
        let mut guard = self.lock();
        if let Some(slot) = guard.slots.get_mut(tp) {
            slot.replica.handle_fetch_error(leader_epoch, error);
        }
    }

    /// The leader answered OFFSET_OUT_OF_RANGE to this follower's fetch
    /// from `fetch_offset`; `leader_start` is the leader's log start. A
    /// follower whose end fell below the leader's log start (retention
    /// removed what it lacks) empties its log and restarts at the leader's
    /// start (spec: REP-68); otherwise the core decides (REP-6).
    pub fn follower_out_of_range(
        &self,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        fetch_offset: i64,
        leader_start: i64,
    ) {
        let mut deferred = Deferred::default();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return;
            };
            let current = slot.replica.leader_epoch() == leader_epoch
                && slot.replica.log().log_end().get() == fetch_offset
                && !slot.replica.is_leader();
            if !current || leader_start <= fetch_offset {
                slot.replica.handle_fetch_error(
                    leader_epoch,
                    FetchError::OffsetOutOfRange {
                        offset: Offset(fetch_offset),
                        start: Offset(leader_start),
                        end: Offset(-1),
                    },
                );
                return;
            }
            let Some(log) = mgr.get_mut(tp) else { return };
            tracing::warn!(partition = %tp, end = fetch_offset, leader_start, "follower fell below the leader's log start; restarting there");
            if let Err(e) = log.truncate_fully_and_start_at(leader_start, now_ms()) {
                tracing::error!(partition = %tp, error = %e, "cannot restart the log");
                return;
            }
            slot.replica = Replica::new(
                self.replica_config,
                log.meta().clone(),
                Offset(leader_start),
            );
            slot.replica
                .handle_registered(self.broker_epoch.load(Ordering::Acquire));
            if let Some(state) = slot.state.clone() {
                slot.replica.handle_partition_state(&state, self.now());
            }
            let _ = self.apply_effects(mgr, tp, slot, None, &mut deferred);
            self.after_role(tp, slot, false, &mut deferred);
        }
        self.finish(deferred);
    }

    /// Records fetched from the leader (spec: REP-64): the entries are
    /// checked (framing, CRC) and appended as they are — offsets and
    /// epochs kept — when the core accepts them for its current end; the
    /// high watermark becomes `min(leader HW, own end)`. A trailing partial
    /// entry (cut by the byte limit) is left for the next fetch. The log
    /// start follows the leader's `leader_log_start` up to the new high
    /// watermark (REP-72; -1: not given).
    pub fn follower_fetched(
        &self,
        tp: &TopicPartition,
        leader_epoch: LeaderEpoch,
        fetch_offset: i64,
        records: &[u8],
        high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), AppendError> {
        let mut deferred = Deferred::default();
        let result: Result<(), AppendError> = (|| {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (Some(mgr), Some(slot)) = (inner.mgr.as_mut(), inner.slots.get_mut(tp)) else {
                return Ok(());
            };
            let mut batches: Vec<Batch> = Vec::new();
            let mut expected = fetch_offset;
            let mut pos = 0usize;
            let mut start = 0usize;
            let mut epoch = slot.replica.log().latest_epoch().unwrap_or(LeaderEpoch(0));
            while pos + 12 <= records.len() {
                let e = &records[pos..];
                let size = 12 + i32::from_be_bytes([e[8], e[9], e[10], e[11]]).max(0) as usize;
                if size > e.len() {
                    break;
                }
                let info = crate::storage::record::parse_entry(e)?;
                if info.next_offset() <= expected {
                    // An entry the follower already has (the leader's read
                    // starts at the entry holding the offset).
                    pos += info.size;
                    start = pos;
                    continue;
                }
                if info.magic >= 2 && info.partition_leader_epoch >= 0 {
                    epoch = LeaderEpoch(info.partition_leader_epoch);
                }
                let count = info.next_offset() - expected;
                match batches.last_mut() {
                    Some(b) if b.epoch == epoch => b.count += count,
                    _ => batches.push(Batch {
                        base: Offset(expected),
                        count,
                        epoch,
                    }),
                }
                expected = info.next_offset();
                pos += info.size;
            }
            let chunk = &records[start..pos];
            let response = FetchResponse {
                leader_epoch,
                fetch_offset: Offset(fetch_offset),
                batches,
                high_watermark: Offset(high_watermark),
            };
            if let Err(e) = slot.replica.handle_fetch_response(&response) {
                tracing::warn!(partition = %tp, error = %e, "fetched records do not fit; truncating again");
            }
            if leader_log_start >= 0 {
                // spec: REP-72
                slot.replica
                    .handle_leader_log_start(leader_epoch, Offset(leader_log_start));
            }
            self.apply_effects(mgr, tp, slot, Some(chunk), &mut deferred)?;
            Ok(())
        })();
        self.finish(deferred);
        result
    }

    /// Timer input (REP-9): lets every leader whose lag deadline passed
    /// propose removing followers that have not caught up.
    pub fn tick(&self) {
        let now = self.now();
        let mut deferred = Deferred::default();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(mgr) = inner.mgr.as_mut() else {
                return;
            };
            for (tp, slot) in inner.slots.iter_mut() {
                if slot.replica.next_deadline().is_some_and(|d| d <= now) {
                    slot.replica.on_timeout(now);
                    let _ = self.apply_effects(mgr, tp, slot, None, &mut deferred);
                }
            }
        }
        self.finish(deferred);
    }

    /// Carries out the replica's effects in order (spec: REP-60). `bytes`
    /// are the entries of the current input: a leader's validated produce
    /// payload or a follower's fetched chunk, written at the first
    /// [`Effect::Append`]. On a storage failure the replica is rebuilt
    /// from the log as it is on disk and the error returned.
    fn apply_effects(
        &self,
        mgr: &mut LogManager,
        tp: &TopicPartition,
        slot: &mut Slot,
        mut bytes: Option<&[u8]>,
        deferred: &mut Deferred,
    ) -> Result<(), StorageError> {
        let mut failure = None;
        let mut start_moved = false;
        while let Some(effect) = slot.replica.poll_effect() {
            if failure.is_some() {
                // The replica is rebuilt below; answers still go out.
                if let Effect::ProduceCompleted {
                    request, result, ..
                } = effect
                {
                    self.complete(request, result);
                }
                continue;
            }
            let Some(log) = mgr.get_mut(tp) else {
                failure = Some(StorageError::UnknownPartition(tp.to_string()));
                continue;
            };
            match effect {
                Effect::Append { request, .. } => {
                    // A leader's payload is one append, as validated; a
                    // follower's chunk may span segments.
                    let mut appended = |b: &[u8]| match request {
                        Some(_) => log.append(b, now_ms()).map(|_| ()),
                        None => append_in_segments(log, b),
                    };
                    if let Some(b) = bytes.take().filter(|b| !b.is_empty())
                        && let Err(e) = appended(b)
                    {
                        failure = Some(e);
                        continue;
                    }
                    push_once(&mut deferred.wake, tp);
                }
                Effect::Truncate { offset } => match log.truncate_to(offset.get()) {
                    Ok(end) if end == offset.get() => {}
                    Ok(end) => {
                        tracing::warn!(partition = %tp, wanted = offset.get(), end, "truncation cut inside an entry");
                        failure = Some(StorageError::UnknownPartition(tp.to_string()));
                    }
                    Err(e) => failure = Some(e),
                },
                Effect::BeginEpoch { epoch, .. } => {
                    if let Err(e) = log.begin_epoch(epoch.get()) {
                        tracing::warn!(partition = %tp, error = %e, "epoch not recorded");
                    }
                }
                Effect::HighWatermark(hw) => {
                    // spec: REP-63 — published for consumers, persisted in
                    // replication-offset-checkpoint, long polls woken.
                    slot.published
                        .high_watermark
                        .store(hw.get(), Ordering::Release);
                    mgr.set_high_watermark(tp, hw.get());
                    push_once(&mut deferred.wake, tp);
                }
                Effect::ProposeIsr(p) => deferred.proposals.push((tp.clone(), p)),
                Effect::ProduceCompleted {
                    request, result, ..
                } => self.complete(request, result),
                Effect::AdvanceLogStart { offset } => {
                    // spec: REP-71, REP-72 — readers see the new start at
                    // once; segments wholly below it go at the next
                    // retention pass (STO-51).
                    if let Err(e) = log.advance_start(offset.get(), now_ms()) {
                        failure = Some(e);
                        continue;
                    }
                    start_moved = true;
                }
            }
        }
        if start_moved && failure.is_none() {
            // The new start survives a restart (log-start-offset-checkpoint).
            if let Err(e) = mgr.checkpoint() {
                tracing::warn!(partition = %tp, error = %e, "log start not checkpointed");
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                tracing::error!(partition = %tp, error = %e, "storage failed under the replica; rebuilding it from the log");
                if let Some(log) = mgr.get(tp) {
                    let hw = slot.replica.high_watermark().min(Offset(log.log_end()));
                    slot.replica = Replica::new(self.replica_config, log.meta().clone(), hw);
                    slot.replica
                        .handle_registered(self.broker_epoch.load(Ordering::Acquire));
                    if let Some(state) = slot.state.clone() {
                        slot.replica.handle_partition_state(&state, self.now());
                        let _ = self.apply_effects(mgr, tp, slot, None, deferred);
                    }
                }
                Err(e)
            }
        }
    }

    fn complete(&self, request: RequestId, result: Result<(), ProduceError>) {
        let tx = self
            .purgatory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request);
        if let Some(tx) = tx {
            // The client may have timed out; nothing to do then.
            let _ = tx.send(result);
        }
    }

    /// Publishes the replica's role and updates the fetch plan after an
    /// input that may have changed it.
    fn after_role(
        &self,
        tp: &TopicPartition,
        slot: &mut Slot,
        was_leader: bool,
        deferred: &mut Deferred,
    ) {
        let r = &slot.replica;
        let leading = r.is_leader();
        slot.published
            .leader_epoch
            .store(r.leader_epoch().get(), Ordering::Release);
        slot.published.leading.store(leading, Ordering::Release);
        slot.published
            .high_watermark
            .store(r.high_watermark().get(), Ordering::Release);
        if leading && !was_leader {
            self.reload_producers(tp);
        }
        if leading != was_leader {
            deferred.leadership.push(LeadershipChange {
                partition: tp.clone(),
                leading,
                leader_epoch: r.leader_epoch(),
            });
        }
        let follow = match r.role() {
            gregor_core::replica::Role::Follower(f) => f.leader,
            _ => None,
        };
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match follow {
            Some(l) => plan.insert(tp.clone(), l) != Some(l),
            None => plan.remove(tp).is_some(),
        };
        deferred.plan_changed |= changed;
        push_once(&mut deferred.wake, tp);
    }

    /// Rebuilds the idempotent-producer state of a partition this broker
    /// has just come to lead from the batch headers of its log: records it
    /// appended as a follower, or a suffix it truncated, must count before
    /// the first produce is checked (spec: PRO-81, REP-69). Called with the
    /// partitions lock held, so no produce runs in between.
    fn reload_producers(&self, tp: &TopicPartition) {
        let reader = self
            .readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .map(|h| h.reader.clone());
        let Some(reader) = reader else { return };
        match rebuild_producers(&reader) {
            Ok(state) => {
                let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
                if state.is_empty() {
                    producers.remove(tp);
                } else {
                    producers.insert(tp.clone(), state);
                }
            }
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "cannot rebuild producer state")
            }
        }
    }

    /// Does the work deferred until the lock is released.
    fn finish(&self, deferred: Deferred) {
        for tp in &deferred.wake {
            self.wake(tp);
        }
        if deferred.plan_changed {
            self.plan_changed.notify_waiters();
        }
        if !deferred.leadership.is_empty() {
            let mut subs = self.leadership.lock().unwrap_or_else(|e| e.into_inner());
            for change in &deferred.leadership {
                tracing::info!(partition = %change.partition, leading = change.leading, epoch = change.leader_epoch.get(), "leadership changed");
                subs.retain(|s| s.send(change.clone()).is_ok());
            }
        }
        for (tp, proposal) in deferred.proposals {
            tracing::info!(partition = %tp, isr = ?proposal.isr, "proposing ISR change");
            self.link.propose_isr(tp, proposal);
        }
    }

    /// Periodic work: retention, time-based flushes and checkpoints.
    pub fn maintain(&self, retention_due: bool, checkpoint_due: bool) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let Some(mgr) = guard.mgr.as_mut() else {
            return Ok(());
        };
        let now = now_ms();
        if retention_due {
            let deleted = mgr.cleanup_logs(now)?;
            if deleted > 0 {
                tracing::info!(segments = deleted, "retention deleted segments");
                // The replicas' copies of the log start follow (STO-59).
                let inner = &mut *guard;
                if let Some(mgr) = inner.mgr.as_ref() {
                    for (tp, slot) in &mut inner.slots {
                        if let Some(log) = mgr.get(tp) {
                            slot.replica.handle_log_start_moved(Offset(log.log_start()));
                        }
                    }
                }
            }
        }
        let Some(mgr) = guard.mgr.as_mut() else {
            return Ok(());
        };
        mgr.flush_logs(now)?;
        if checkpoint_due {
            mgr.checkpoint()?;
        }
        Ok(())
    }

    /// Clean shutdown: flush, checkpoint, write the clean-shutdown marker
    /// (spec: PRO-30). Later appends fail with "shutting down".
    pub fn shutdown(&self) -> Result<(), StorageError> {
        match self.lock().mgr.take() {
            Some(mgr) => mgr.shutdown(now_ms()),
            None => Ok(()),
        }
    }
}

/// Appends whole entries, in as few writes as the segment size allows: a
/// follower's fetched chunk may be larger than one segment (spec: REP-64).
fn append_in_segments(
    log: &mut crate::storage::log::Log,
    entries: &[u8],
) -> Result<(), StorageError> {
    let max = usize::try_from(log.config().segment_bytes).unwrap_or(usize::MAX);
    if entries.len() <= max {
        return log.append(entries, now_ms()).map(|_| ());
    }
    let mut start = 0;
    let mut pos = 0;
    for size in entry_sizes(entries) {
        if pos + size > entries.len() {
            break;
        }
        if pos > start && pos + size - start > max {
            log.append(&entries[start..pos], now_ms())?;
            start = pos;
        }
        pos += size;
    }
    if pos > start {
        log.append(&entries[start..pos], now_ms())?;
    }
    Ok(())
}

fn push_once(list: &mut Vec<TopicPartition>, tp: &TopicPartition) {
    if !list.contains(tp) {
        list.push(tp.clone());
    }
}

/// Sizes of the entries of a payload, log overhead included, as far as
/// their size fields can be read (the validator checks the framing).
fn entry_sizes(payload: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let e = payload.get(pos..pos + 12)?;
        let size = 12 + i32::from_be_bytes([e[8], e[9], e[10], e[11]]).max(0) as usize;
        pos += size;
        Some(size)
    })
}

/// Reads every v2 batch header of a log and keeps, per producer, its epoch
/// and last batches (spec: PRO-81).
fn rebuild_producers(reader: &LogReader) -> Result<BTreeMap<i64, ProducerEntry>, StorageError> {
    let mut out: BTreeMap<i64, ProducerEntry> = BTreeMap::new();
    let mut offset = reader.log_start();
    let end = reader.log_end();
    let mut buf = Vec::new();
    while offset < end {
        let Some(range) = reader.read(offset, REBUILD_READ_BYTES)? else {
            break;
        };
        buf.clear();
        range
            .read_into(&mut buf)
            .map_err(StorageError::io("read", std::path::Path::new("segment")))?;
        let mut pos = 0;
        let mut last = offset;
        while pos + 61 <= buf.len() {
            let e = &buf[pos..];
            let size = 12 + i32::from_be_bytes([e[8], e[9], e[10], e[11]]).max(0) as usize;
            if size > e.len() {
                break;
            }
            let base = i64::from_be_bytes(e[0..8].try_into().unwrap_or([0; 8]));
            let mut last_offset = base;
            if e[16] == 2 {
                let delta = i32::from_be_bytes([e[23], e[24], e[25], e[26]]);
                last_offset = base + i64::from(delta);
                let pid = i64::from_be_bytes(e[43..51].try_into().unwrap_or([0; 8]));
                let epoch = i16::from_be_bytes([e[51], e[52]]);
                let first_seq = i32::from_be_bytes([e[53], e[54], e[55], e[56]]);
                if pid >= 0 && first_seq >= 0 {
                    let last_seq = first_seq.wrapping_add(delta);
                    out.entry(pid).or_default().record(
                        epoch,
                        SeqBatch {
                            first_seq,
                            last_seq,
                            base_offset: base,
                        },
                    );
                }
            }
            last = last.max(last_offset + 1);
            pos += size.max(1);
        }
        if last <= offset {
            break;
        }
        offset = last;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-80
    #[test]
    fn sequence_rules() {
        let mut e = ProducerEntry::default();
        assert!(matches!(e.check(0, 0, 4), Ok(SeqCheck::Append)));
        e.record(
            0,
            SeqBatch {
                first_seq: 0,
                last_seq: 4,
                base_offset: 10,
            },
        );
        assert!(matches!(e.check(0, 0, 4), Ok(SeqCheck::Duplicate(10))));
        assert!(matches!(e.check(0, 5, 9), Ok(SeqCheck::Append)));
        assert!(matches!(
            e.check(0, 6, 9),
            Err(AppendError::OutOfOrder {
                got: 6,
                expected: 5
            })
        ));
        assert!(matches!(e.check(1, 0, 0), Ok(SeqCheck::Append)));
        assert!(matches!(
            e.check(1, 3, 3),
            Err(AppendError::OutOfOrder { .. })
        ));
        e.record(
            1,
            SeqBatch {
                first_seq: 0,
                last_seq: 0,
                base_offset: 20,
            },
        );
        assert!(matches!(
            e.check(0, 5, 9),
            Err(AppendError::ProducerFenced { .. })
        ));
        for i in 1..10 {
            e.record(
                1,
                SeqBatch {
                    first_seq: i,
                    last_seq: i,
                    base_offset: 20 + i64::from(i),
                },
            );
        }
        assert_eq!(e.batches.len(), PRODUCER_BATCHES_REMEMBERED);
    }
}
