//! The runtime group coordinator: drives one [`gregor_core::group::Group`]
//! per consumer group, holds delayed JoinGroup/SyncGroup/OffsetCommit
//! answers until the core releases them, runs the groups' timers, and
//! persists group records to `__consumer_offsets` (spec: `spec/groups.md`,
//! "Runtime coordinator", GRP-100..GRP-110).
//!
//! The coordinator serves the groups of the `__consumer_offsets`
//! partitions this broker leads: it loads a partition when it comes to
//! lead it and unloads it when it stops (spec: REP-66). In the single-node
//! mode this broker leads every partition, so it is the coordinator of
//! every group. Group records are written like acks=all produce requests
//! (Kafka commits with acks=-1).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use gregor_core::group::{
    Effect, Group, GroupConfig, GroupRecord, PersistFailure, Request, RequestId, Response,
};
use gregor_core::ids::{LeaderEpoch, Millis, TopicPartition};
use gregor_core::partitioner::coordinator_partition;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::cluster::{Metadata, NewTopic, TopicError};
use crate::codec;
use crate::config::{BrokerConfig, TimestampType};
use crate::partition::{AppendError, AppendOptions, LeadershipChange, Partitions, now_ms};
use crate::storage::error::StorageError;
use crate::storage::record::{BatchBuilder, Codec, RecordIter, Validator};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often the timer task looks for expired sessions and rebalances.
pub const TIMER_TICK: Duration = Duration::from_millis(100);

/// Bytes read at a time when replaying an offsets partition.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The key of a group record in `__consumer_offsets`, versioned by variant
/// (spec: GRP-102).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordKey {
    /// Version 0: a committed offset of one partition.
    OffsetV0 {
        /// The group.
        group_id: String,
        /// The committed partition.
        partition: TopicPartition,
    },
    /// Version 0: anything else about the group (metadata, tombstones).
    GroupV0 {
        /// The group.
        group_id: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    #[must_use]
    pub fn group_id(&self) -> &str {
        match self {
            RecordKey::OffsetV0 { group_id, .. } | RecordKey::GroupV0 { group_id } => group_id,
        }
    }
}

/// The value of a group record, versioned by variant (spec: GRP-102).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordValue {
    /// Version 0: the core's record as is.
    V0(GroupRecord),
}

/// Why the coordinator cannot serve a request right now.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// `__consumer_offsets` could not be created.
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    OffsetsTopic(#[from] TopicError),
    /// The group was removed before its answer was ready.
    #[error("group removed while the request waited")]
    Abandoned,
}

/// One group with the requests waiting for its answers.
#[derive(Debug)]
struct Slot {
    group: Group,
    waiters: HashMap<RequestId, oneshot::Sender<Response>>,
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<String, Slot>,
    /// Whether `__consumer_offsets` is known to exist.
    topic_ready: bool,
    /// The offsets partitions whose groups are loaded (spec: REP-66).
    loaded: std::collections::HashSet<i32>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group id.
    pub group_id: String,
    /// The protocol type, empty if none.
    pub protocol_type: String,
    /// The state's Kafka name.
    pub state: &'static str,
}

/// The coordinator of every group this broker serves.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    num_partitions: i32,
    max_entry_bytes: usize,
    state: Mutex<State>,
    next_request: AtomicU64,
    /// `offsets.commit.timeout.ms`: how long a group write waits for the
    /// in-sync replicas.
    commit_timeout: Duration,
    /// Leadership changes of this broker, consumed by [`run_timers`].
    leadership: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<LeadershipChange>>>,
}

/// The group settings from the broker configuration (spec: GRP-100).
#[must_use]
pub fn group_config(cfg: &BrokerConfig) -> GroupConfig {
    let defaults = GroupConfig::default();
    let int = |key: &str, default: i64| {
        cfg.raw(key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    };
    GroupConfig {
        min_session_timeout_ms: int(
            "group.min.session.timeout.ms",
            i64::from(defaults.min_session_timeout_ms),
        ) as i32,
        max_session_timeout_ms: int(
            "group.max.session.timeout.ms",
            i64::from(defaults.max_session_timeout_ms),
        ) as i32,
        initial_rebalance_delay_ms: cfg.group_initial_rebalance_delay_ms,
        max_size: int("group.max.size", i64::from(defaults.max_size)).clamp(1, i64::from(u32::MAX))
            as u32,
        offsets_retention_ms: int("offsets.retention.minutes", 7 * 24 * 60).saturating_mul(60_000),
        offset_metadata_max_bytes: int(
            "offset.metadata.max.bytes",
            defaults.offset_metadata_max_bytes as i64,
        )
        .max(0) as usize,
        accept_stale_generation_commits: false,
    }
}

impl Coordinator {
    /// Opens the coordinator: if `__consumer_offsets` exists, replays every
    /// partition of it to rebuild the groups (spec: GRP-104).
    ///
    /// # Errors
    /// A storage error while reading the offsets partitions.
    pub fn open(
        cfg: &BrokerConfig,
        metadata: &Metadata,
        partitions: &Partitions,
    ) -> Result<Self, StorageError> {
        let mut config = group_config(cfg);
        if let Err(e) = config.validate() {
            tracing::error!(error = %e, "invalid group settings; using Kafka's defaults");
            config = GroupConfig::default();
        }
        let image = metadata.image();
        let existing = image.topics.get(OFFSETS_TOPIC).map(|t| t.partitions);
        let num_partitions = existing.unwrap_or(cfg.offsets_topic_num_partitions.max(1));
        let mut state = State {
            groups: HashMap::new(),
            topic_ready: existing.is_some(),
            loaded: std::collections::HashSet::new(),
        };
        let leadership = partitions.subscribe_leadership();
        if let Some(n) = existing {
            let now = Millis::new(now_ms());
            let mut records: HashMap<String, Vec<GroupRecord>> = HashMap::new();
            for p in 0..n {
                let tp = TopicPartition::new(OFFSETS_TOPIC, p);
                // spec: REP-66 — only the partitions this broker leads.
                if partitions.is_leader(&tp) {
                    replay_partition(partitions, &tp, &mut records)?;
                    state.loaded.insert(p);
                }
            }
            for (group_id, recs) in records {
                let group = Group::load(
                    group_id.clone(),
                    config.clone(),
                    LeaderEpoch::new(0),
                    recs,
                    now,
                );
                if group.members().is_empty() && group.offsets().is_empty() {
                    continue;
                }
                tracing::debug!(group = %group_id, state = group.state().kafka_name(), offsets = group.offsets().len(), "group loaded");
                state.groups.insert(
                    group_id,
                    Slot {
                        group,
                        waiters: HashMap::new(),
                    },
                );
            }
            tracing::info!(
                groups = state.groups.len(),
                "group coordinator loaded {OFFSETS_TOPIC}"
            );
        }
        Ok(Self {
            config,
            num_partitions,
            max_entry_bytes: usize::try_from(cfg.message_max_bytes).unwrap_or(1 << 20),
            state: Mutex::new(state),
            next_request: AtomicU64::new(0),
            commit_timeout: Duration::from_millis(
                cfg.raw("offsets.commit.timeout.ms")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(5000)
                    .max(1),
            ),
            leadership: Mutex::new(Some(leadership)),
        })
    }

    /// This broker came to lead offsets partition `partition`: replays it
    /// and serves its groups, replacing anything held for them
    /// (spec: REP-66).
    ///
    /// # Errors
    /// A storage error while reading the partition.
    pub fn load_partition(
        &self,
        partitions: &Partitions,
        partition: i32,
    ) -> Result<(), StorageError> {
        let now = Millis::new(now_ms());
        let mut records: HashMap<String, Vec<GroupRecord>> = HashMap::new();
        let mut st = self.lock();
        if !st.loaded.insert(partition) {
            return Ok(());
        }
        if let Err(e) = replay_partition(
            partitions,
            &TopicPartition::new(OFFSETS_TOPIC, partition),
            &mut records,
        ) {
            st.loaded.remove(&partition);
            return Err(e);
        }
        st.groups
            .retain(|id, _| self.partition_for(id) != partition);
        let mut loaded = 0;
        for (group_id, recs) in records {
            if self.partition_for(&group_id) != partition {
                continue;
            }
            let group = Group::load(
                group_id.clone(),
                self.config.clone(),
                LeaderEpoch::new(0),
                recs,
                now,
            );
            if group.members().is_empty() && group.offsets().is_empty() {
                continue;
            }
            loaded += 1;
            st.groups.insert(
                group_id,
                Slot {
                    group,
                    waiters: HashMap::new(),
                },
            );
        }
        tracing::info!(
            partition,
            groups = loaded,
            "loaded {OFFSETS_TOPIC} partition"
        );
        Ok(())
    }

    /// This broker stopped leading offsets partition `partition`: forgets
    /// its groups; their waiting requests are dropped and clients look the
    /// coordinator up again (spec: REP-66).
    pub fn unload_partition(&self, partition: i32) {
        let mut st = self.lock();
        st.loaded.remove(&partition);
        let before = st.groups.len();
        st.groups
            .retain(|id, _| self.partition_for(id) != partition);
        tracing::info!(
            partition,
            groups = before - st.groups.len(),
            "unloaded {OFFSETS_TOPIC} partition"
        );
    }

    /// Applies one leadership change of this broker (spec: REP-66).
    pub fn leadership_changed(&self, partitions: &Partitions, change: &LeadershipChange) {
        if change.partition.topic != OFFSETS_TOPIC {
            return;
        }
        let p = change.partition.partition;
        if change.leading {
            if let Err(e) = self.load_partition(partitions, p) {
                tracing::error!(partition = p, error = %e, "cannot load group records");
            }
        } else {
            self.unload_partition(p);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `__consumer_offsets` partition of `group_id` (spec: GRP-101).
    #[must_use]
    pub fn partition_for(&self, group_id: &str) -> i32 {
        coordinator_partition(group_id, self.num_partitions)
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does on the first
    /// FindCoordinator (spec: GRP-101).
    ///
    /// # Errors
    /// The topic could not be created.
    pub fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), CoordinatorError> {
        let mut st = self.lock();
        self.ensure_topic_locked(broker, &mut st)
    }

    fn ensure_topic_locked(&self, broker: &Broker, st: &mut State) -> Result<(), CoordinatorError> {
        if st.topic_ready {
            return Ok(());
        }
        let mut configs = std::collections::BTreeMap::new();
        configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
        let req = NewTopic {
            name: OFFSETS_TOPIC.to_owned(),
            partitions: self.num_partitions,
            replication_factor: 1,
            assignments: std::collections::BTreeMap::new(),
            configs,
        };
        match broker.create_topic(req, false) {
            Ok(_) | Err(TopicError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(partitions = self.num_partitions, "created {OFFSETS_TOPIC}");
        st.topic_ready = true;
        for p in 0..self.num_partitions {
            if broker
                .partitions
                .is_leader(&TopicPartition::new(OFFSETS_TOPIC, p))
            {
                // Empty and led from birth: nothing to replay.
                st.loaded.insert(p);
            }
        }
        Ok(())
    }

    /// Hands `body` to the group `group_id` (creating it if needed) and
    /// returns a receiver for its answer, which may come much later
    /// (spec: GRP-103).
    ///
    /// # Errors
    /// `__consumer_offsets` could not be created.
    pub fn submit(
        &self,
        broker: &Broker,
        group_id: &str,
        body: Request,
    ) -> Result<oneshot::Receiver<Response>, CoordinatorError> {
        let now = Millis::new(now_ms());
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        self.ensure_topic_locked(broker, &mut st)?;
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.partition_for(group_id));
        if !broker.partitions.is_leader(&tp) {
            // spec: REP-66 — clients look the coordinator up again.
            let _ = tx.send(not_coordinator(&body));
            return Ok(rx);
        }
        let slot = st
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Slot {
                group: Group::new(group_id, self.config.clone(), LeaderEpoch::new(0), now),
                waiters: HashMap::new(),
            });
        slot.waiters.insert(id, tx);
        slot.group.handle(now, id, body);
        self.drive(broker, slot, now);
        if slot_is_idle(slot) {
            st.groups.remove(group_id);
        }
        Ok(rx)
    }

    /// Submits `body` and waits for its answer.
    ///
    /// # Errors
    /// See [`Coordinator::submit`]; also a group dropped before answering.
    pub async fn call(
        &self,
        broker: &Broker,
        group_id: &str,
        body: Request,
    ) -> Result<Response, CoordinatorError> {
        let rx = self.submit(broker, group_id, body)?;
        rx.await.map_err(|_| CoordinatorError::Abandoned)
    }

    /// Whether the group exists (has members or offsets, or is rebalancing).
    #[must_use]
    pub fn exists(&self, group_id: &str) -> bool {
        self.lock().groups.contains_key(group_id)
    }

    /// Every live group, sorted by id (ListGroups).
    #[must_use]
    pub fn list(&self) -> Vec<ListedGroup> {
        let st = self.lock();
        let mut out: Vec<ListedGroup> = st
            .groups
            .iter()
            .filter(|(_, s)| s.group.state() != gregor_core::group::GroupState::Dead)
            .map(|(id, s)| ListedGroup {
                group_id: id.clone(),
                protocol_type: s.group.protocol_type().unwrap_or_default().to_owned(),
                state: s.group.state().kafka_name(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Lets time pass for every group whose deadline has come
    /// (spec: GRP-105).
    pub fn tick(&self, broker: &Broker) {
        let now = Millis::new(now_ms());
        let mut st = self.lock();
        let due: Vec<String> = st
            .groups
            .iter()
            .filter(|(_, s)| s.group.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(slot) = st.groups.get_mut(&id) else {
                continue;
            };
            slot.group.on_timeout(now);
            self.drive(broker, slot, now);
            if slot_is_idle(slot) {
                st.groups.remove(&id);
            }
        }
    }

    /// Applies the group's effects until there are none: answers go to
    /// their waiters, persists are appended in order and reported back.
    fn drive(&self, broker: &Broker, slot: &mut Slot, now: Millis) {
        loop {
            let effects: Vec<Effect> = slot.group.drain_effects().collect();
            if effects.is_empty() {
                return;
            }
            for effect in effects {
                match effect {
                    Effect::Respond { request, response } => {
                        if let Some(tx) = slot.waiters.remove(&request) {
                            // The client may have gone; nothing to do then.
                            let _ = tx.send(response);
                        }
                    }
                    Effect::Persist { id, records } => {
                        let result = self.persist(broker, slot.group.group_id(), &records);
                        slot.group.persist_completed(now, id, result);
                    }
                }
            }
        }
    }

    /// Appends `records` as one v2 batch to the group's offsets partition;
    /// the caller answers only after this returns (spec: GRP-102, GRP-103).
    fn persist(
        &self,
        broker: &Broker,
        group_id: &str,
        records: &[GroupRecord],
    ) -> Result<(), PersistFailure> {
        if records.is_empty() {
            return Ok(());
        }
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.partition_for(group_id));
        let now = now_ms();
        let mut builder = BatchBuilder::new(2, Codec::None, 0).map_err(|e| {
            tracing::error!(error = %e, "cannot build group records");
            PersistFailure::Unavailable
        })?;
        for record in records {
            let key = match record {
                GroupRecord::Offset { partition, .. }
                | GroupRecord::OffsetTombstone { partition } => RecordKey::OffsetV0 {
                    group_id: group_id.to_owned(),
                    partition: partition.clone(),
                },
                GroupRecord::Metadata(_) | GroupRecord::GroupTombstone => RecordKey::GroupV0 {
                    group_id: group_id.to_owned(),
                },
            };
            let encoded = codec::encode(&key)
                .and_then(|k| Ok((k, codec::encode(&RecordValue::V0(record.clone()))?)));
            let (k, v) = encoded.map_err(|e| {
                tracing::error!(error = %e, "cannot encode group record");
                PersistFailure::Unavailable
            })?;
            builder
                .append(now, Some(&k), Some(&v), &[])
                .map_err(|_| PersistFailure::TooLarge)?;
        }
        let bytes = builder.build().map_err(|_| PersistFailure::TooLarge)?;
        let opts = AppendOptions {
            max_entry_bytes: self.max_entry_bytes,
            timestamp_type: TimestampType::CreateTime,
            require_v2: true,
        };
        // Written like an acks=all produce (Kafka commits with acks=-1),
        // under the broker's min.insync.replicas, capped at the partition's
        // replica count so a single-node offsets topic still takes commits.
        // The same value keeps the leader from shrinking the ISR below it,
        // so the group can move when the coordinator's broker dies.
        let replicas = broker
            .partitions
            .replica_view(&tp)
            .map_or(1, |v| v.replicas.len().max(1));
        let min_isr = usize::try_from(broker.config.min_insync_replicas)
            .unwrap_or(1)
            .clamp(1, replicas);
        match broker.partitions.produce(
            &tp,
            &bytes,
            opts,
            &mut Validator::default(),
            gregor_core::replica::Acks::All,
            min_isr,
        ) {
            Ok(produced) => match produced.wait {
                None => Ok(()),
                Some(wait) => self.await_commit(&tp, wait),
            },
            Err(AppendError::NotLeader(_)) => Err(PersistFailure::NotLeader),
            Err(AppendError::TooLarge { .. }) => Err(PersistFailure::TooLarge),
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "group records not persisted");
                Err(PersistFailure::Unavailable)
            }
        }
    }
}

impl Coordinator {
    /// Waits (at most `offsets.commit.timeout.ms`) until the in-sync
    /// replicas hold a group write. With one replica the answer is already
    /// there; otherwise this blocks the calling thread, which is always a
    /// blocking-pool thread (`submit`, `tick`).
    fn await_commit(
        &self,
        tp: &TopicPartition,
        mut wait: crate::partition::ProduceWait,
    ) -> Result<(), PersistFailure> {
        let result = match wait.try_recv() {
            Ok(r) => Ok(r),
            Err(oneshot::error::TryRecvError::Closed) => Err(()),
            Err(oneshot::error::TryRecvError::Empty) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => handle
                        .block_on(tokio::time::timeout(self.commit_timeout, wait))
                        .map_err(|_| ())
                        .and_then(|r| r.map_err(|_| ())),
                    Err(_) => Err(()),
                }
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(gregor_core::replica::ProduceError::NotLeader)) => {
                Err(PersistFailure::NotLeader)
            }
            Ok(Err(e)) => {
                tracing::warn!(partition = %tp, error = %e, "group records not committed");
                Err(PersistFailure::Unavailable)
            }
            Err(()) => {
                tracing::warn!(partition = %tp, "group records not committed in time");
                Err(PersistFailure::Unavailable)
            }
        }
    }
}

/// The NOT_COORDINATOR answer to `request`, variant for variant
/// (spec: REP-66).
fn not_coordinator(request: &Request) -> Response {
    use gregor_core::group::{
        DeleteGroupResponse, DescribeGroupResponse, ErrorCode, JoinGroupResponse,
        LeaveGroupResponse, OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse,
        SyncGroupResponse,
    };
    use gregor_core::ids::{Generation, MemberId};
    let error = ErrorCode::NotCoordinator;
    match request {
        Request::Join(_) => Response::Join(JoinGroupResponse {
            error,
            generation: Generation::new(-1),
            protocol_type: None,
            protocol_name: None,
            leader: MemberId(String::new()),
            member_id: MemberId(String::new()),
            members: Vec::new(),
        }),
        Request::Sync(_) => Response::Sync(SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }),
        Request::Heartbeat(_) => Response::Heartbeat(error),
        Request::Leave(_) => Response::Leave(LeaveGroupResponse {
            error,
            members: Vec::new(),
        }),
        Request::OffsetCommit(c) => Response::OffsetCommit(OffsetCommitResponse {
            partitions: c
                .partitions
                .iter()
                .map(|p| (p.partition.clone(), error))
                .collect(),
        }),
        Request::OffsetFetch(_) => Response::OffsetFetch(OffsetFetchResponse {
            error,
            partitions: Vec::new(),
        }),
        Request::Describe => Response::Describe(DescribeGroupResponse {
            error,
            state: "",
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }),
        Request::Delete => Response::Delete(DeleteGroupResponse { error }),
        Request::OffsetDelete(_) => Response::OffsetDelete(OffsetDeleteResponse {
            error,
            partitions: Vec::new(),
        }),
    }
}

/// spec: GRP-108 — a group worth forgetting: nothing to remember, nobody waiting and no
/// timer running (a member id handed out with MEMBER_ID_REQUIRED keeps a
/// deadline until it is claimed or lapses).
fn slot_is_idle(slot: &Slot) -> bool {
    let g = &slot.group;
    slot.waiters.is_empty()
        && !g.has_pending_persists()
        && (g.state() == gregor_core::group::GroupState::Dead
            || (g.state() == gregor_core::group::GroupState::Empty
                && g.members().is_empty()
                && g.offsets().is_empty()
                && g.next_deadline().is_none()))
}

/// Reads one offsets partition from its start, appending each group's
/// records in log order (spec: GRP-104). Undecodable records are skipped
/// with a warning.
fn replay_partition(
    partitions: &Partitions,
    tp: &TopicPartition,
    out: &mut HashMap<String, Vec<GroupRecord>>,
) -> Result<(), StorageError> {
    let Some(reader) = partitions.reader(tp) else {
        return Ok(());
    };
    let mut offset = reader.log_start();
    let end = reader.log_end();
    let mut buf = Vec::new();
    while offset < end {
        let Some(range) = reader.read(offset, REPLAY_READ_BYTES)? else {
            break;
        };
        buf.clear();
        range
            .read_into(&mut buf)
            .map_err(|source| StorageError::Io {
                op: "read",
                path: std::path::PathBuf::from(format!("{tp}")),
                source,
            })?;
        let mut next = offset;
        for record in RecordIter::new(&buf, offset) {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "damaged group records skipped");
                    break;
                }
            };
            next = next.max(record.offset + 1);
            let (Some(k), Some(v)) = (record.key.as_deref(), record.value.as_deref()) else {
                continue;
            };
            match (
                codec::decode::<RecordKey>(k),
                codec::decode::<RecordValue>(v),
            ) {
                (Ok(key), Ok(RecordValue::V0(value))) => {
                    out.entry(key.group_id().to_owned())
                        .or_default()
                        .push(value);
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(partition = %tp, offset = record.offset, error = %e, "undecodable group record skipped");
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}

/// Runs every group's timers until the broker stops (spec: GRP-105).
pub async fn run_timers(
    broker: std::sync::Arc<Broker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = broker
        .groups
        .leadership
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(change) = async {
                match leadership.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let b = broker.clone();
                let res = tokio::task::spawn_blocking(move || {
                    b.groups.leadership_changed(&b.partitions, &change);
                })
                .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, "group leadership task failed");
                }
                continue;
            }
            _ = stop.changed() => return,
        }
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || b.groups.tick(&b)).await {
            tracing::error!(error = %e, "group timer task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload after the codec's format byte and checksum.
    fn payload<T: Serialize>(value: &T) -> Vec<u8> {
        codec::encode(value).unwrap()[5..].to_vec()
    }

    #[test]
    fn record_keys_and_values_keep_their_stored_layout() {
        // spec: GRP-102 — data already written must stay readable: these
        // bytes are the version-0 format on disk.
        let offset_key = RecordKey::OffsetV0 {
            group_id: "g".into(),
            partition: TopicPartition::new("t", 3),
        };
        assert_eq!(payload(&offset_key), [0, 1, b'g', 1, b't', 6]);
        let group_key = RecordKey::GroupV0 {
            group_id: "g".into(),
        };
        assert_eq!(payload(&group_key), [1, 1, b'g']);
        let tombstone = RecordValue::V0(GroupRecord::GroupTombstone);
        assert_eq!(payload(&tombstone), [0, 3]);
        let bytes = codec::encode(&offset_key).unwrap();
        assert_eq!(codec::decode::<RecordKey>(&bytes).unwrap(), offset_key);
        assert_eq!(offset_key.group_id(), "g");
    }

    #[test]
    fn settings_come_from_the_broker_configuration() {
        // spec: GRP-100
        let cfg = BrokerConfig::from_pairs(vec![
            ("group.min.session.timeout.ms".to_owned(), "250".to_owned()),
            (
                "group.initial.rebalance.delay.ms".to_owned(),
                "0".to_owned(),
            ),
            ("offsets.retention.minutes".to_owned(), "2".to_owned()),
        ])
        .unwrap();
        let g = group_config(&cfg);
        assert_eq!(g.min_session_timeout_ms, 250);
        assert_eq!(g.max_session_timeout_ms, 1_800_000);
        assert_eq!(g.initial_rebalance_delay_ms, 0);
        assert_eq!(g.offsets_retention_ms, 120_000);
        assert!(g.validate().is_ok());
    }
}
