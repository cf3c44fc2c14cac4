//! One partition replica as a sans-I/O state machine: the leader side (ISR,
//! follower progress, high watermark, acks=all completion, ISR proposals) and
//! the follower side (epoch-fenced truncation, fetching, high watermark from
//! the leader). The rules are specified in `spec/replication.md` (`REP-n`).
//!
//! # Driving contract
//!
//! A [`Replica`] never performs I/O, reads a clock or draws random numbers.
//! The caller (the broker's partition and its follower fetcher, the model
//! checker, or a test) owns the record bytes, the sockets and the clock:
//!
//! * **Inputs** are the `handle_*` methods, [`Replica::on_timeout`] and
//!   [`Replica::handle_flushed`]. Every time-dependent input takes `now`, a
//!   logical millisecond counter that never moves backwards.
//! * **Outputs** are [`Effect`]s queued inside the replica. After *every*
//!   input, drain them with [`Replica::poll_effect`] until it returns `None`,
//!   and apply them in order: an [`Effect::Append`] or [`Effect::Truncate`]
//!   must reach the storage engine before a later [`Effect::ProduceCompleted`]
//!   is answered. Effects that promise durability or commit
//!   ([`Effect::ProduceCompleted`], a higher [`Effect::HighWatermark`]) are
//!   only emitted by the input that reports the fact they depend on (a
//!   follower's fetch, an accepted ISR change), never ahead of it (REP-15).
//! * **Requests to send** are not effects: a follower asks
//!   [`Replica::poll_request`] what to send to its leader now (an
//!   OffsetsForLeaderEpoch query while truncating, a fetch afterwards) and
//!   sends it again if the answer is lost. Answers come back through
//!   [`Replica::handle_epoch_response`], [`Replica::handle_fetch_response`]
//!   and [`Replica::handle_fetch_error`]; stale answers (another epoch, an
//!   offset the follower has moved away from) are ignored, so answers may be
//!   lost, delayed, duplicated or reordered.
//! * **Timers**: [`Replica::next_deadline`] is the next time
//!   [`Replica::on_timeout`] has work to do (the ISR lag check, REP-9). A call
//!   that arrives early does nothing.
//! * **Controller messages**: [`Replica::handle_partition_state`] applies a
//!   LeaderAndIsr decision; [`Replica::handle_isr_response`] the answer to an
//!   [`Effect::ProposeIsr`].
//!
//! Record bytes never enter: a produce request is a record count, a fetch
//! answer is a list of [`Batch`]es `(base offset, count, epoch)`. The runtime
//! looks the bytes up by offset.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::controller::PartitionState;
use crate::ids::{BrokerId, LeaderEpoch, Millis, Offset, PartitionEpoch};
use crate::log::{LogError, LogMeta};

/// Historical rules that Kafka had to replace because they lose committed
/// records. Every switch is `false` in a real broker; the model turns them on
/// one at a time to show that the rule replacing each one is necessary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LegacyRules {
    /// Pre-KIP-101: on restart, truncate the log to the checkpointed high
    /// watermark instead of asking the leader (replaces REP-11).
    pub truncate_to_hw_on_restart: bool,
    /// Pre-KIP-279: trust the leader's end offset whatever epoch it names,
    /// without walking back to the largest common epoch (replaces REP-12).
    pub naive_epoch_lookup: bool,
    /// Pre-KIP-320: fetches from an older leader epoch are served and count
    /// towards the high watermark (replaces REP-6).
    pub count_stale_epoch_fetches: bool,
    /// Let a follower rejoin the ISR once its end offset reaches the high
    /// watermark, without also reaching the start of the leader's epoch
    /// (replaces REP-8).
    pub early_isr_expansion: bool,
    /// Compute the high watermark over the current ISR only, ignoring a
    /// pending expansion (replaces REP-4's maximal ISR).
    pub hw_over_current_isr: bool,
    /// The controller keeps the last ISR member in the ISR when it restarts
    /// after an unclean shutdown, so it can be elected although it may have
    /// lost committed records (the former REP-22 exception, replaced by
    /// REP-50). Read by `core::controller`, not by the replica.
    #[serde(default)]
    pub last_member_survives_unclean_restart: bool,
}

/// A replica's configuration, validated once by [`ReplicaConfig::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// The broker this replica lives on.
    pub broker: BrokerId,
    /// `min.insync.replicas`: acks=all produce needs at least this many ISR
    /// members (REP-10).
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this
    /// long leaves the ISR (REP-9).
    pub replica_lag_time_max_ms: i64,
    /// Historical unsafe rules; all off in a broker.
    pub legacy: LegacyRules,
}

/// Why a [`ReplicaConfig`] is unusable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `min.insync.replicas` must be at least 1.
    #[error("min.insync.replicas must be at least 1")]
    MinInsyncZero,
    /// `replica.lag.time.max.ms` must be positive.
    #[error("replica.lag.time.max.ms must be positive, got {0}")]
    LagTime(i64),
}

impl ReplicaConfig {
    /// Kafka's defaults (`min.insync.replicas=1`,
    /// `replica.lag.time.max.ms=30000`) for `broker`.
    #[must_use]
    pub fn new(broker: BrokerId) -> Self {
        Self {
            broker,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            legacy: LegacyRules::default(),
        }
    }

    /// Checks the values once, at the boundary.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_insync_replicas == 0 {
            return Err(ConfigError::MinInsyncZero);
        }
        if self.replica_lag_time_max_ms <= 0 {
            return Err(ConfigError::LagTime(self.replica_lag_time_max_ms));
        }
        Ok(())
    }
}

/// A produce request's acknowledgement mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=1`: answered once the leader has appended.
    Leader,
    /// `acks=all` (`-1`): answered once the high watermark passes the
    /// request's last offset (REP-14).
    All,
}

/// The caller's id for a produce request, echoed in
/// [`Effect::ProduceCompleted`].
pub type RequestId = u64;

/// A run of consecutive records written in one leader epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Batch {
    /// The first offset of the run.
    pub base: Offset,
    /// The number of records.
    pub count: i64,
    /// The epoch that wrote them.
    pub epoch: LeaderEpoch,
}

/// A follower's fetch, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The fetching follower.
    pub replica: BrokerId,
    /// The follower's broker epoch: which registration of its broker sent
    /// the fetch (REP-23).
    pub broker_epoch: i64,
    /// The leader epoch the follower believes current (REP-6).
    pub leader_epoch: LeaderEpoch,
    /// The follower's log end offset: where it wants records from.
    pub fetch_offset: Offset,
}

/// The leader's answer to a [`FetchRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The leader epoch the answer was made in.
    pub leader_epoch: LeaderEpoch,
    /// The offset that was asked for.
    pub fetch_offset: Offset,
    /// The records from `fetch_offset` to the leader's end, by epoch.
    pub batches: Vec<Batch>,
    /// The leader's high watermark after taking the fetch into account.
    pub high_watermark: Offset,
}

/// An OffsetsForLeaderEpoch query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EpochQuery {
    /// The leader epoch the follower believes current (fenced like a fetch).
    pub current_leader_epoch: LeaderEpoch,
    /// The epoch whose end offset is asked for: the follower's latest.
    pub epoch: LeaderEpoch,
}

/// The leader's answer to an [`EpochQuery`]: `None` when it knows no epoch
/// at or below the one asked for.
pub type EpochAnswer = Option<(LeaderEpoch, Offset)>;

/// What a follower sends to its leader next (see [`Replica::poll_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FollowerRequest {
    /// Find out where to truncate (REP-11).
    OffsetsForLeaderEpoch {
        /// The leader to ask.
        leader: BrokerId,
        /// The query.
        query: EpochQuery,
    },
    /// Fetch records (REP-13).
    Fetch {
        /// The leader to fetch from.
        leader: BrokerId,
        /// The fetch.
        request: FetchRequest,
    },
}

/// Why a fetch or OffsetsForLeaderEpoch request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum FetchError {
    /// This replica is not the leader (NOT_LEADER_OR_FOLLOWER).
    #[error("not the leader")]
    NotLeader,
    /// The request names an older leader epoch (FENCED_LEADER_EPOCH, REP-6).
    #[error("fenced leader epoch: request {request}, current {current}")]
    FencedLeaderEpoch {
        /// The epoch in the request.
        request: LeaderEpoch,
        /// The leader's epoch.
        current: LeaderEpoch,
    },
    /// The request names a newer leader epoch than this leader knows
    /// (UNKNOWN_LEADER_EPOCH, REP-6).
    #[error("unknown leader epoch: request {request}, current {current}")]
    UnknownLeaderEpoch {
        /// The epoch in the request.
        request: LeaderEpoch,
        /// The leader's epoch.
        current: LeaderEpoch,
    },
    /// The fetch offset is outside the leader's log (OFFSET_OUT_OF_RANGE).
    #[error("fetch offset {offset} outside [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: Offset,
        /// The leader's log start.
        start: Offset,
        /// The leader's log end.
        end: Offset,
    },
    /// The fetching broker holds no replica of this partition.
    #[error("broker {0} is not a replica")]
    UnknownReplica(BrokerId),
}

/// Why a produce request is refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum ProduceError {
    /// This replica is not (or no longer) the leader.
    #[error("not the leader")]
    NotLeader,
    /// Fewer ISR members than `min.insync.replicas` (NOT_ENOUGH_REPLICAS).
    #[error("not enough replicas: ISR {isr} < min.insync.replicas {min}")]
    NotEnoughReplicas {
        /// The current ISR size.
        isr: usize,
        /// The configured minimum.
        min: usize,
    },
    /// The records were appended but the ISR shrank below
    /// `min.insync.replicas` before they were committed
    /// (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    #[error("not enough replicas after append: ISR {isr} < {min}")]
    NotEnoughReplicasAfterAppend {
        /// The ISR size at completion.
        isr: usize,
        /// The configured minimum.
        min: usize,
    },
    /// A produce request must carry at least one record.
    #[error("empty produce request")]
    Empty,
}

/// Why a request to delete the records below an offset is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum DeleteRecordsError {
    /// This replica is not the leader (NOT_LEADER_OR_FOLLOWER).
    #[error("not the leader")]
    NotLeader,
    /// The offset is above the high watermark (OFFSET_OUT_OF_RANGE): only
    /// committed records may be deleted (REP-71).
    #[error("offset {offset} is above the high watermark {high_watermark}")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: Offset,
        /// The leader's high watermark.
        high_watermark: Offset,
    },
}

/// A failure applying an answer from the leader to the log: the leader sent
/// records that do not fit (a leader bug or a corrupt answer). The replica
/// is unchanged and goes back to truncation.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReplicaError {
    /// The records could not be appended.
    #[error("fetched records do not fit the log: {0}")]
    Log(#[from] LogError),
}

/// An ISR change the leader asks the controller to make (AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IsrProposal {
    /// The proposing leader.
    pub leader: BrokerId,
    /// Its leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the proposal is based on; the controller rejects
    /// it unless this is still current (REP-19).
    pub partition_epoch: PartitionEpoch,
    /// The proposed ISR.
    pub isr: BTreeSet<BrokerId>,
    /// The broker epoch each proposed member last fetched with; the
    /// controller refuses to add a member whose broker has registered again
    /// since (REP-23).
    pub broker_epochs: BTreeMap<BrokerId, i64>,
}

/// An output of the replica; see the driving contract in the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// Append `count` records at `base` written in `epoch`: a produce
    /// request's records on a leader, a fetched batch on a follower.
    Append {
        /// The first offset.
        base: Offset,
        /// The number of records.
        count: i64,
        /// Their leader epoch.
        epoch: LeaderEpoch,
        /// The produce request the records come from (leader appends).
        request: Option<RequestId>,
    },
    /// Remove every record at or above `offset`.
    Truncate {
        /// The new log end.
        offset: Offset,
    },
    /// Persist a new epoch-cache entry: `epoch` starts at `start_offset`.
    BeginEpoch {
        /// The new epoch.
        epoch: LeaderEpoch,
        /// Its first offset.
        start_offset: Offset,
    },
    /// The high watermark changed (persist it in the checkpoint, wake
    /// consumers).
    HighWatermark(Offset),
    /// Send this ISR change to the controller.
    ProposeIsr(IsrProposal),
    /// Move the log start forward to `offset`: the records below it are
    /// deleted (DeleteRecords on the leader, the leader's log start on a
    /// follower; REP-71, REP-72).
    AdvanceLogStart {
        /// The new log start.
        offset: Offset,
    },
    /// Answer this produce request.
    ProduceCompleted {
        /// The request.
        request: RequestId,
        /// The offset of its first record.
        base: Offset,
        /// Success, or why the records are not known to be committed.
        result: Result<(), ProduceError>,
    },
}

/// The controller's answer to an [`IsrProposal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IsrResponse {
    /// The proposal was applied with this new partition epoch.
    Accepted(PartitionEpoch),
    /// The proposal was based on an old partition epoch or leader epoch.
    Rejected,
}

/// How far a follower has got, as its leader knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FollowerProgress {
    /// The follower's end offset as of its last fetch *in the current leader
    /// epoch*; `None` before its first such fetch (REP-5).
    pub log_end: Option<Offset>,
    /// The last time the follower had caught up with the leader's end.
    pub last_caught_up: Millis,
    /// The broker epoch of the follower's last fetch (REP-23).
    pub broker_epoch: i64,
}

/// An acks=all produce request waiting for the high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Waiting {
    request: RequestId,
    base: Offset,
    last: Offset,
}

/// The leader side of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderState {
    /// The assigned replicas, in preference order.
    replicas: Vec<BrokerId>,
    /// The ISR as last confirmed by the controller.
    isr: BTreeSet<BrokerId>,
    /// The ISR change sent to the controller and not yet answered (REP-7).
    pending: Option<IsrProposal>,
    /// Progress of every other assigned replica.
    followers: BTreeMap<BrokerId, FollowerProgress>,
    /// The log end when this epoch began (REP-8).
    epoch_start: Offset,
    /// acks=all requests waiting for the high watermark, oldest first.
    waiting: Vec<Waiting>,
}

impl LeaderState {
    /// The ISR the controller last confirmed.
    #[must_use]
    pub fn isr(&self) -> &BTreeSet<BrokerId> {
        &self.isr
    }

    /// The ISR proposal in flight, if any.
    #[must_use]
    pub fn pending(&self) -> Option<&IsrProposal> {
        self.pending.as_ref()
    }

    /// The maximal ISR: the current ISR together with the members of a
    /// pending proposal (REP-4).
    #[must_use]
    pub fn maximal_isr(&self) -> BTreeSet<BrokerId> {
        let mut all = self.isr.clone();
        if let Some(p) = &self.pending {
            all.extend(p.isr.iter().copied());
        }
        all
    }

    /// A follower's progress.
    #[must_use]
    pub fn progress(&self, follower: BrokerId) -> Option<&FollowerProgress> {
        self.followers.get(&follower)
    }

    /// The first offset of this leader's epoch.
    #[must_use]
    pub fn epoch_start(&self) -> Offset {
        self.epoch_start
    }
}

/// Where a follower is in its cycle (REP-11, REP-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FollowerPhase {
    /// Asking OffsetsForLeaderEpoch until the log matches the leader's.
    Truncating,
    /// Fetching records.
    Fetching,
}

/// The follower side of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FollowerState {
    /// The leader to follow; `None` while the partition has no leader.
    pub leader: Option<BrokerId>,
    /// What the follower does next.
    pub phase: FollowerPhase,
}

/// The role a replica currently plays.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Started, but not yet told its role by the controller.
    Unassigned,
    /// Leading the partition.
    Leader(LeaderState),
    /// Following a leader.
    Follower(FollowerState),
}

/// One partition replica, leader or follower.
///
/// Driving it, in short (the module docs give the details):
///
/// 1. Create it with [`Replica::new`] from the recovered log and the
///    checkpointed HW; report the registration with
///    [`Replica::handle_registered`].
/// 2. Feed inputs as they happen, each with a non-decreasing `now`:
///    [`Replica::handle_partition_state`] (controller),
///    [`Replica::handle_produce`], [`Replica::handle_fetch`] and
///    [`Replica::handle_offsets_for_leader_epoch`] (leader side),
///    [`Replica::handle_epoch_response`], [`Replica::handle_fetch_response`]
///    and [`Replica::handle_fetch_error`] (follower side),
///    [`Replica::handle_isr_response`], [`Replica::handle_flushed`], and
///    [`Replica::on_timeout`] once [`Replica::next_deadline`] has passed.
/// 3. After each input, drain [`Replica::poll_effect`] to `None` and apply
///    the effects in order (storage first, then answers).
/// 4. On the follower side, send what [`Replica::poll_request`] returns; send
///    it again when an answer is lost.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replica {
    config: ReplicaConfig,
    log: LogMeta,
    high_watermark: Offset,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    role: Role,
    broker_epoch: i64,
    effects: VecDeque<Effect>,
}

/// The high watermark a leader may advance to (REP-3, REP-4, REP-5): the
/// smallest end offset among itself and the members of `isr` other than
/// itself, where a member that has not fetched in the current epoch (`None`)
/// pins the result to `current`. Never below `current`, never above
/// `leader_end`.
///
/// Edge cases: an ISR of just the leader commits everything it holds; a
/// member unknown to `progress` (not an assigned replica) pins like a member
/// that has not fetched.
#[must_use]
pub fn high_watermark_over(
    me: BrokerId,
    leader_end: Offset,
    current: Offset,
    isr: &BTreeSet<BrokerId>,
    progress: &BTreeMap<BrokerId, FollowerProgress>,
) -> Offset {
    let mut hw = leader_end;
    for member in isr.iter().filter(|m| **m != me) {
        match progress.get(member).and_then(|p| p.log_end) {
            Some(end) => hw = hw.min(end),
            None => return current,
        }
    }
    hw.max(current)
}

impl Replica {
    /// A replica starting (or restarting) with the log `log` recovered from
    /// disk and the high watermark `checkpointed_hw` read from the
    /// replication checkpoint. The replica waits for the controller's
    /// [`PartitionState`] before it leads or follows. It never truncates on
    /// its own: truncation waits for the leader's answer (REP-11).
    #[must_use]
    pub fn new(config: ReplicaConfig, log: LogMeta, checkpointed_hw: Offset) -> Self {
        let mut replica = Self {
            config,
            high_watermark: checkpointed_hw.clamp(log.log_start(), log.log_end()),
            log,
            leader_epoch: LeaderEpoch::UNDEFINED,
            partition_epoch: PartitionEpoch(-1),
            role: Role::Unassigned,
            broker_epoch: -1,
            effects: VecDeque::new(),
        };
        if config.legacy.truncate_to_hw_on_restart && replica.high_watermark < replica.log.log_end()
        {
            // The pre-KIP-101 rule REP-11 replaced.
            let hw = replica.high_watermark;
            replica.truncate(hw);
        }
        replica
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The log metadata.
    #[must_use]
    pub fn log(&self) -> &LogMeta {
        &self.log
    }

    /// The high watermark: offsets below it are committed (as far as this
    /// replica knows).
    #[must_use]
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The newest leader epoch this replica has been told about.
    #[must_use]
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// The newest partition epoch this replica has been told about.
    #[must_use]
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The current role.
    #[must_use]
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The leader state, if leading.
    #[must_use]
    pub fn as_leader(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// Whether this replica currently leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The next queued output, oldest first.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// This broker registered with the controller and got `broker_epoch`;
    /// its fetches carry it from now on (REP-23).
    pub fn handle_registered(&mut self, broker_epoch: i64) {
        self.broker_epoch = broker_epoch;
    }

    /// Everything below `offset` reached stable storage.
    pub fn handle_flushed(&mut self, offset: Offset) {
        self.log.flushed_to(offset);
    }

    // ----- controller input ------------------------------------------------

    /// Applies the controller's LeaderAndIsr decision. Decisions older than
    /// what the replica knows are ignored (REP-2): a lower leader epoch, or
    /// the same leader epoch with a partition epoch not above the known one.
    pub fn handle_partition_state(&mut self, state: &PartitionState, now: Millis) {
        let newer_epoch = state.leader_epoch > self.leader_epoch;
        let same_epoch_newer =
            state.leader_epoch == self.leader_epoch && state.partition_epoch > self.partition_epoch;
        if !newer_epoch && !same_epoch_newer {
            return;
        }
        self.partition_epoch = state.partition_epoch;
        let me = self.config.broker;
        if !newer_epoch {
            // Same leadership term, new ISR (the controller removed a failed
            // broker): a leader adopts it and drops its now-stale proposal.
            if let Role::Leader(l) = &mut self.role {
                l.isr = state.isr.clone();
                l.pending = None;
                self.after_leader_change(now);
            }
            return;
        }
        self.leader_epoch = state.leader_epoch;
        self.fail_waiting(ProduceError::NotLeader);
        if state.leader == Some(me) {
            self.become_leader(state, now);
        } else {
            self.become_follower(state.leader);
        }
    }

    fn become_leader(&mut self, state: &PartitionState, now: Millis) {
        let me = self.config.broker;
        let epoch = self.leader_epoch;
        // spec: REP-1 — the new epoch starts at the current end.
        if self.log.begin_epoch(epoch).is_ok() {
            self.effects.push_back(Effect::BeginEpoch {
                epoch,
                start_offset: self.log.log_end(),
            });
        }
        let followers = state
            .replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    FollowerProgress {
                        log_end: None,
                        last_caught_up: now,
                        broker_epoch: -1,
                    },
                )
            })
            .collect();
        self.role = Role::Leader(LeaderState {
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            followers,
            epoch_start: self.log.log_end(),
            waiting: Vec::new(),
        });
        self.after_leader_change(now);
    }

    fn become_follower(&mut self, leader: Option<BrokerId>) {
        // spec: REP-11 — a new follower first truncates through
        // OffsetsForLeaderEpoch; with no epoch in its log there is nothing
        // to compare and it fetches from its end.
        let phase = if self.log.truncation_query().is_some() {
            FollowerPhase::Truncating
        } else {
            FollowerPhase::Fetching
        };
        self.role = Role::Follower(FollowerState { leader, phase });
    }

    /// Applies the controller's answer to this replica's pending ISR
    /// proposal (REP-7). An answer for a proposal this replica no longer has
    /// pending is ignored.
    pub fn handle_isr_response(
        &mut self,
        proposal: &IsrProposal,
        response: IsrResponse,
        now: Millis,
    ) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.pending.as_ref() != Some(proposal) {
            return;
        }
        let pending = l.pending.take();
        if let (IsrResponse::Accepted(pe), Some(p)) = (response, pending)
            && pe > self.partition_epoch
        {
            l.isr = p.isr;
            self.partition_epoch = pe;
        }
        self.after_leader_change(now);
    }

    // ----- leader input ----------------------------------------------------

    /// The partition's `min.insync.replicas` (a topic-level override of
    /// the broker default) is now `n`; from the next produce on, acks=all
    /// and ISR shrinking use it (REP-10). Zero is treated as one.
    pub fn set_min_insync_replicas(&mut self, n: usize) {
        self.config.min_insync_replicas = n.max(1);
    }

    /// A produce request of `count` records (REP-10, REP-14). On success the
    /// records get offsets `base..base+count`; an [`Effect::Append`] is queued
    /// and, for acks=1, the answer right after it.
    pub fn handle_produce(
        &mut self,
        request: RequestId,
        count: i64,
        acks: Acks,
        now: Millis,
    ) -> Result<Offset, ProduceError> {
        let min = self.config.min_insync_replicas;
        let Role::Leader(l) = &self.role else {
            return Err(ProduceError::NotLeader);
        };
        if count <= 0 {
            return Err(ProduceError::Empty);
        }
        // spec: REP-10 — min.insync.replicas is checked before appending.
        if acks == Acks::All && l.isr.len() < min {
            return Err(ProduceError::NotEnoughReplicas {
                isr: l.isr.len(),
                min,
            });
        }
        let base = self.log.log_end();
        let epoch = self.leader_epoch;
        if let Err(e) = self.log.append(base, count, epoch) {
            // The log ends at `base` and the epoch is the newest: this is a
            // broken invariant of the replica itself.
            debug_assert!(false, "REP-1: leader append refused: {e}");
            return Err(ProduceError::NotLeader);
        }
        self.effects.push_back(Effect::Append {
            base,
            count,
            epoch,
            request: Some(request),
        });
        match acks {
            Acks::Leader => self.effects.push_back(Effect::ProduceCompleted {
                request,
                base,
                result: Ok(()),
            }),
            Acks::All => {
                if let Role::Leader(l) = &mut self.role {
                    l.waiting.push(Waiting {
                        request,
                        base,
                        last: base.plus(count - 1),
                    });
                }
            }
        }
        // A leader alone in its ISR commits at once.
        self.after_leader_change(now);
        Ok(base)
    }

    /// Checks a request's leader epoch against this leader's (REP-6).
    fn fence(&self, request: LeaderEpoch) -> Result<(), FetchError> {
        if !self.is_leader() {
            return Err(FetchError::NotLeader);
        }
        let current = self.leader_epoch;
        if request < current && !self.config.legacy.count_stale_epoch_fetches {
            return Err(FetchError::FencedLeaderEpoch { request, current });
        }
        if request > current {
            return Err(FetchError::UnknownLeaderEpoch { request, current });
        }
        Ok(())
    }

    /// Serves a follower's fetch (REP-5, REP-6, REP-8, REP-9): records the
    /// follower's progress, may propose an ISR expansion, advances the high
    /// watermark and completes acks=all requests it now covers.
    pub fn handle_fetch(
        &mut self,
        request: &FetchRequest,
        now: Millis,
    ) -> Result<FetchResponse, FetchError> {
        self.fence(request.leader_epoch)?;
        let (start, end) = (self.log.log_start(), self.log.log_end());
        if request.fetch_offset < start || request.fetch_offset > end {
            return Err(FetchError::OffsetOutOfRange {
                offset: request.fetch_offset,
                start,
                end,
            });
        }
        let Role::Leader(l) = &mut self.role else {
            return Err(FetchError::NotLeader);
        };
        let Some(progress) = l.followers.get_mut(&request.replica) else {
            return Err(FetchError::UnknownReplica(request.replica));
        };
        // spec: REP-5 — only a fetch in this epoch reports progress.
        progress.log_end = Some(request.fetch_offset);
        progress.broker_epoch = request.broker_epoch;
        if request.fetch_offset >= end {
            progress.last_caught_up = now;
        }
        // spec: REP-8 — ISR expansion.
        let follower_end = request.fetch_offset;
        let eligible = follower_end >= self.high_watermark
            && (self.config.legacy.early_isr_expansion || follower_end >= l.epoch_start);
        if eligible && l.pending.is_none() && !l.isr.contains(&request.replica) {
            let mut isr = l.isr.clone();
            isr.insert(request.replica);
            self.propose(isr);
        }
        self.after_leader_change(now);
        Ok(FetchResponse {
            leader_epoch: self.leader_epoch,
            fetch_offset: request.fetch_offset,
            batches: self.batches_from(request.fetch_offset),
            high_watermark: self.high_watermark,
        })
    }

    /// The records from `from` to the log end, one [`Batch`] per epoch run.
    fn batches_from(&self, from: Offset) -> Vec<Batch> {
        let end = self.log.log_end();
        let entries = self.log.epochs().entries();
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let run_end = entries.get(i + 1).map_or(end, |n| n.start_offset);
            let base = e.start_offset.max(from);
            if base < run_end {
                out.push(Batch {
                    base,
                    count: run_end.get() - base.get(),
                    epoch: e.epoch,
                });
            }
        }
        out
    }

    /// Answers an OffsetsForLeaderEpoch query (STO-4), fenced like a fetch.
    pub fn handle_offsets_for_leader_epoch(
        &self,
        query: &EpochQuery,
    ) -> Result<EpochAnswer, FetchError> {
        self.fence(query.current_leader_epoch)?;
        Ok(self.log.end_offset_for_epoch(query.epoch))
    }

    /// The time at which [`Replica::on_timeout`] next has work: the earliest
    /// moment an ISR follower exceeds `replica.lag.time.max.ms` (REP-9).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        let l = self.as_leader()?;
        if l.pending.is_some() {
            return None;
        }
        l.isr
            .iter()
            .filter_map(|m| l.followers.get(m))
            .map(|p| {
                p.last_caught_up
                    .plus(self.config.replica_lag_time_max_ms + 1)
            })
            .min()
    }

    /// Timer input: proposes removing ISR followers that have not caught up
    /// for longer than `replica.lag.time.max.ms`, unless that would leave
    /// fewer than `min.insync.replicas` members (REP-9).
    pub fn on_timeout(&mut self, now: Millis) {
        let lag = self.config.replica_lag_time_max_ms;
        let min = self.config.min_insync_replicas;
        let Role::Leader(l) = &self.role else { return };
        if l.pending.is_some() {
            return;
        }
        let keep: BTreeSet<BrokerId> = l
            .isr
            .iter()
            .copied()
            .filter(|m| {
                l.followers
                    .get(m)
                    .is_none_or(|p| now.get() - p.last_caught_up.get() <= lag)
            })
            .collect();
        if keep.len() < l.isr.len() && keep.len() >= min && keep.contains(&self.config.broker) {
            self.propose(keep);
        }
    }

    fn propose(&mut self, isr: BTreeSet<BrokerId>) {
        let Role::Leader(l) = &self.role else { return };
        let broker_epochs = isr
            .iter()
            .filter_map(|m| l.followers.get(m).map(|p| (*m, p.broker_epoch)))
            .collect();
        let proposal = IsrProposal {
            leader: self.config.broker,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr,
            broker_epochs,
        };
        if let Role::Leader(l) = &mut self.role {
            // spec: REP-7 — one proposal in flight.
            debug_assert!(l.pending.is_none(), "REP-7: second ISR proposal");
            l.pending = Some(proposal.clone());
        }
        self.effects.push_back(Effect::ProposeIsr(proposal));
    }

    /// Recomputes the high watermark and completes covered acks=all
    /// requests (REP-3, REP-14).
    fn after_leader_change(&mut self, _now: Millis) {
        let me = self.config.broker;
        let min = self.config.min_insync_replicas;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // spec: REP-4 — the maximal ISR, unless the legacy rule is on.
        let isr = if self.config.legacy.hw_over_current_isr {
            l.isr.clone()
        } else {
            l.maximal_isr()
        };
        let hw = high_watermark_over(
            me,
            self.log.log_end(),
            self.high_watermark,
            &isr,
            &l.followers,
        );
        debug_assert!(hw >= self.high_watermark, "REP-3: leader HW moved back");
        if hw != self.high_watermark {
            self.high_watermark = hw;
            self.effects.push_back(Effect::HighWatermark(hw));
        }
        let isr_size = l.isr.len();
        let done = l.waiting.iter().take_while(|w| w.last < hw).count();
        for w in l.waiting.drain(..done) {
            // spec: REP-14 — committed; still refused if the ISR shrank
            // below min.insync.replicas meanwhile (REP-10).
            let result = if isr_size < min {
                Err(ProduceError::NotEnoughReplicasAfterAppend { isr: isr_size, min })
            } else {
                Ok(())
            };
            self.effects.push_back(Effect::ProduceCompleted {
                request: w.request,
                base: w.base,
                result,
            });
        }
    }

    fn fail_waiting(&mut self, error: ProduceError) {
        if let Role::Leader(l) = &mut self.role {
            for w in l.waiting.drain(..) {
                self.effects.push_back(Effect::ProduceCompleted {
                    request: w.request,
                    base: w.base,
                    result: Err(error),
                });
            }
        }
    }

    // ----- follower input --------------------------------------------------

    /// What a follower should send its leader now, if anything.
    #[must_use]
    pub fn poll_request(&self) -> Option<FollowerRequest> {
        let Role::Follower(FollowerState {
            leader: Some(leader),
            phase,
        }) = self.role
        else {
            return None;
        };
        match phase {
            FollowerPhase::Truncating => {
                let epoch = self.log.truncation_query()?;
                Some(FollowerRequest::OffsetsForLeaderEpoch {
                    leader,
                    query: EpochQuery {
                        current_leader_epoch: self.leader_epoch,
                        epoch,
                    },
                })
            }
            FollowerPhase::Fetching => Some(FollowerRequest::Fetch {
                leader,
                request: FetchRequest {
                    replica: self.config.broker,
                    broker_epoch: self.broker_epoch,
                    leader_epoch: self.leader_epoch,
                    fetch_offset: self.log.log_end(),
                },
            }),
        }
    }

    fn following(&self, leader_epoch: LeaderEpoch, phase: FollowerPhase) -> bool {
        matches!(self.role, Role::Follower(f) if f.phase == phase && f.leader.is_some())
            && leader_epoch == self.leader_epoch
    }

    fn set_phase(&mut self, phase: FollowerPhase) {
        if let Role::Follower(f) = &mut self.role {
            f.phase = phase;
        }
    }

    fn truncate(&mut self, offset: Offset) {
        if offset < self.log.log_end() {
            self.log.truncate_to(offset);
            self.effects.push_back(Effect::Truncate {
                offset: self.log.log_end(),
            });
        }
        if self.high_watermark > self.log.log_end() {
            self.high_watermark = self.log.log_end();
            self.effects
                .push_back(Effect::HighWatermark(self.high_watermark));
        }
    }

    /// The leader's answer to the OffsetsForLeaderEpoch query for `queried`
    /// made in `leader_epoch` (REP-11, REP-12). Truncates, then either asks
    /// again (walk-back) or starts fetching. Stale answers are ignored.
    pub fn handle_epoch_response(
        &mut self,
        leader_epoch: LeaderEpoch,
        queried: LeaderEpoch,
        answer: EpochAnswer,
    ) {
        if !self.following(leader_epoch, FollowerPhase::Truncating)
            || self.log.truncation_query() != Some(queried)
        {
            return;
        }
        let t = if self.config.legacy.naive_epoch_lookup {
            self.log.naive_follower_truncation(answer)
        } else {
            // spec: REP-12 — walk back to the largest common epoch.
            self.log.follower_truncation(answer)
        };
        self.truncate(t.offset);
        if t.complete || self.log.truncation_query().is_none() {
            self.set_phase(FollowerPhase::Fetching);
        }
    }

    /// The leader's answer to this follower's fetch (REP-13). Applies the
    /// records if the answer is for the current epoch and the current end
    /// offset, then takes the high watermark as `min(leader HW, own end)`.
    pub fn handle_fetch_response(&mut self, response: &FetchResponse) -> Result<(), ReplicaError> {
        if !self.following(response.leader_epoch, FollowerPhase::Fetching)
            || response.fetch_offset != self.log.log_end()
        {
            return Ok(());
        }
        let mut scratch = self.log.clone();
        for b in &response.batches {
            if let Err(e) = scratch.append(b.base, b.count, b.epoch) {
                self.set_phase(FollowerPhase::Truncating);
                return Err(e.into());
            }
        }
        self.log = scratch;
        for b in &response.batches {
            self.effects.push_back(Effect::Append {
                base: b.base,
                count: b.count,
                epoch: b.epoch,
                request: None,
            });
        }
        // spec: REP-13 — never above the follower's own end.
        let hw = response.high_watermark.min(self.log.log_end());
        if hw != self.high_watermark {
            self.high_watermark = hw;
            self.effects.push_back(Effect::HighWatermark(hw));
        }
        Ok(())
    }

    /// The leader refused this follower's fetch or query. An out-of-range
    /// offset sends the follower back to truncation; fencing errors wait for
    /// the controller's next decision (REP-6).
    pub fn handle_fetch_error(&mut self, leader_epoch: LeaderEpoch, error: FetchError) {
        if leader_epoch != self.leader_epoch || !matches!(self.role, Role::Follower(_)) {
            return;
        }
        if let FetchError::OffsetOutOfRange { .. } = error
            && self.log.truncation_query().is_some()
        {
            self.set_phase(FollowerPhase::Truncating);
        }
    }
}

impl Replica {
    // ----- log start -------------------------------------------------------

    /// DeleteRecords on the leader (REP-71): moves the log start to
    /// `offset`, or to the high watermark when `offset` is `None`. Only
    /// committed records may go: an offset above the high watermark is
    /// refused. An offset at or below the current start changes nothing.
    /// Returns the log start afterwards (the partition's low watermark on
    /// this broker) and emits [`Effect::AdvanceLogStart`] when it moved.
    pub fn handle_delete_records(
        &mut self,
        offset: Option<Offset>,
    ) -> Result<Offset, DeleteRecordsError> {
        if !self.is_leader() {
            return Err(DeleteRecordsError::NotLeader);
        }
        let target = offset.unwrap_or(self.high_watermark);
        if target > self.high_watermark {
            return Err(DeleteRecordsError::OffsetOutOfRange {
                offset: target,
                high_watermark: self.high_watermark,
            });
        }
        self.advance_log_start(target);
        Ok(self.log.log_start())
    }

    /// A follower learned the leader's log start from a fetch answer in
    /// `leader_epoch` (REP-72): its own start follows, but never past its
    /// own high watermark, so a follower never deletes a record it does not
    /// know to be committed. Answers of another epoch are ignored.
    pub fn handle_leader_log_start(&mut self, leader_epoch: LeaderEpoch, leader_start: Offset) {
        if leader_epoch != self.leader_epoch || !matches!(self.role, Role::Follower(_)) {
            return;
        }
        let target = leader_start.min(self.high_watermark);
        self.advance_log_start(target);
    }

    /// The storage engine moved the log start on its own (retention deleted
    /// whole segments, STO-50, STO-59): the replica's copy of the log
    /// follows. No effect is emitted: storage already did it.
    pub fn handle_log_start_moved(&mut self, offset: Offset) {
        if offset > self.log.log_start() {
            self.log.advance_start(offset);
            self.high_watermark = self.high_watermark.max(self.log.log_start());
        }
    }

    fn advance_log_start(&mut self, target: Offset) {
        if target > self.log.log_start() {
            self.log.advance_start(target);
            self.effects
                .push_back(Effect::AdvanceLogStart { offset: target });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: i32) -> BrokerId {
        BrokerId(i)
    }

    fn state(leader: Option<i32>, epoch: i32, pe: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: vec![b(1), b(2), b(3)],
            leader: leader.map(b),
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: PartitionEpoch(pe),
            isr: isr.iter().copied().map(b).collect(),
        }
    }

    fn replica(id: i32, min_isr: usize) -> Replica {
        let mut cfg = ReplicaConfig::new(b(id));
        cfg.min_insync_replicas = min_isr;
        cfg.replica_lag_time_max_ms = 100;
        Replica::new(cfg, LogMeta::new(), Offset(0))
    }

    fn drain(r: &mut Replica) -> Vec<Effect> {
        std::iter::from_fn(|| r.poll_effect()).collect()
    }

    fn fetch(r: &mut Replica, from: i32, epoch: i32, offset: i64, now: i64) -> FetchResponse {
        r.handle_fetch(
            &FetchRequest {
                replica: b(from),
                broker_epoch: 0,
                leader_epoch: LeaderEpoch(epoch),
                fetch_offset: Offset(offset),
            },
            Millis(now),
        )
        .unwrap()
    }

    fn completed(effects: &[Effect]) -> Vec<(RequestId, Result<(), ProduceError>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::ProduceCompleted {
                    request, result, ..
                } => Some((*request, *result)),
                _ => None,
            })
            .collect()
    }

    /// REP-3, REP-14: acks=all is answered only after every ISR follower has
    /// fetched past the record.
    #[test]
    fn acks_all_waits_for_every_isr_member() {
        let mut l = replica(1, 2);
        l.handle_partition_state(&state(Some(1), 1, 1, &[1, 2, 3]), Millis(0));
        drain(&mut l);
        assert_eq!(l.handle_produce(7, 2, Acks::All, Millis(1)), Ok(Offset(0)));
        assert!(completed(&drain(&mut l)).is_empty());
        fetch(&mut l, 2, 1, 2, 2);
        assert!(
            completed(&drain(&mut l)).is_empty(),
            "follower 3 has not fetched"
        );
        assert_eq!(l.high_watermark(), Offset(0));
        fetch(&mut l, 3, 1, 1, 3);
        assert_eq!(l.high_watermark(), Offset(1));
        assert!(
            completed(&drain(&mut l)).is_empty(),
            "offset 1 is not yet committed"
        );
        fetch(&mut l, 3, 1, 2, 4);
        assert_eq!(completed(&drain(&mut l)), vec![(7, Ok(()))]);
        assert_eq!(l.high_watermark(), Offset(2));
    }

    /// REP-6: fetches from another epoch are refused and do not count.
    #[test]
    fn fetch_epoch_is_fenced() {
        let mut l = replica(1, 1);
        l.handle_partition_state(&state(Some(1), 3, 1, &[1, 2]), Millis(0));
        l.handle_produce(1, 1, Acks::All, Millis(0)).unwrap();
        let stale = FetchRequest {
            replica: b(2),
            broker_epoch: 0,
            leader_epoch: LeaderEpoch(2),
            fetch_offset: Offset(1),
        };
        assert!(matches!(
            l.handle_fetch(&stale, Millis(1)),
            Err(FetchError::FencedLeaderEpoch { .. })
        ));
        let ahead = FetchRequest {
            leader_epoch: LeaderEpoch(4),
            ..stale
        };
        assert!(matches!(
            l.handle_fetch(&ahead, Millis(1)),
            Err(FetchError::UnknownLeaderEpoch { .. })
        ));
        assert_eq!(
            l.high_watermark(),
            Offset(0),
            "a fenced fetch must not commit"
        );
    }

    /// REP-10: acks=all is refused below min.insync.replicas.
    #[test]
    fn min_insync_refuses_acks_all() {
        let mut l = replica(1, 2);
        l.handle_partition_state(&state(Some(1), 1, 1, &[1]), Millis(0));
        assert_eq!(
            l.handle_produce(1, 1, Acks::All, Millis(0)),
            Err(ProduceError::NotEnoughReplicas { isr: 1, min: 2 })
        );
        assert_eq!(
            l.handle_produce(2, 1, Acks::Leader, Millis(0)),
            Ok(Offset(0))
        );
    }

    /// REP-4, REP-7, REP-8: expansion waits for the epoch start, one proposal
    /// at a time, and the pending member pins the high watermark.
    #[test]
    fn expansion_and_maximal_isr() {
        let mut l = replica(1, 1);
        let mut log = LogMeta::new();
        log.append(Offset(0), 2, LeaderEpoch(1)).unwrap();
        l = Replica::new(*l.config(), log, Offset(0));
        l.handle_partition_state(&state(Some(1), 2, 1, &[1, 2]), Millis(0));
        fetch(&mut l, 3, 2, 1, 1);
        assert!(
            l.as_leader().unwrap().pending().is_none(),
            "REP-8: below the epoch start"
        );
        fetch(&mut l, 3, 2, 2, 1);
        let proposal = l.as_leader().unwrap().pending().cloned().expect("proposal");
        assert_eq!(proposal.isr, [b(1), b(2), b(3)].into());
        l.handle_produce(9, 1, Acks::All, Millis(2)).unwrap();
        fetch(&mut l, 2, 2, 3, 3);
        assert_eq!(
            l.high_watermark(),
            Offset(2),
            "REP-4: pending member 3 pins the HW"
        );
        l.handle_isr_response(
            &proposal,
            IsrResponse::Accepted(PartitionEpoch(2)),
            Millis(4),
        );
        assert_eq!(l.as_leader().unwrap().isr().len(), 3);
        fetch(&mut l, 3, 2, 3, 5);
        assert_eq!(l.high_watermark(), Offset(3));
    }

    /// REP-9: a follower that stops catching up is proposed for removal
    /// after the lag time, but never below min.insync.replicas.
    #[test]
    fn lagging_follower_is_shrunk() {
        let mut l = replica(1, 2);
        l.handle_partition_state(&state(Some(1), 1, 1, &[1, 2, 3]), Millis(0));
        l.handle_produce(1, 1, Acks::Leader, Millis(0)).unwrap();
        fetch(&mut l, 2, 1, 1, 50);
        assert_eq!(l.next_deadline(), Some(Millis(101)));
        l.on_timeout(Millis(100));
        assert!(
            l.as_leader().unwrap().pending().is_none(),
            "early timeout does nothing"
        );
        l.on_timeout(Millis(101));
        let p = l.as_leader().unwrap().pending().cloned().unwrap();
        assert_eq!(p.isr, [b(1), b(2)].into());
        l.handle_isr_response(&p, IsrResponse::Accepted(PartitionEpoch(2)), Millis(102));
        l.on_timeout(Millis(1000));
        assert!(
            l.as_leader().unwrap().pending().is_none(),
            "REP-9: would go below min ISR"
        );
    }

    /// REP-11, REP-13: a follower truncates through the leader's answer, not
    /// its own HW, and its HW never exceeds its end.
    #[test]
    fn follower_truncates_then_fetches() {
        let mut log = LogMeta::new();
        log.append(Offset(0), 3, LeaderEpoch(1)).unwrap();
        let mut f = Replica::new(ReplicaConfig::new(b(2)), log, Offset(1));
        assert_eq!(
            f.log().log_end(),
            Offset(3),
            "REP-11: no truncation to the HW on restart"
        );
        f.handle_partition_state(&state(Some(1), 2, 2, &[1, 2]), Millis(0));
        let Some(FollowerRequest::OffsetsForLeaderEpoch { query, .. }) = f.poll_request() else {
            panic!("expected a truncation query");
        };
        assert_eq!(query.epoch, LeaderEpoch(1));
        f.handle_epoch_response(
            LeaderEpoch(2),
            LeaderEpoch(1),
            Some((LeaderEpoch(1), Offset(2))),
        );
        assert_eq!(f.log().log_end(), Offset(2));
        assert_eq!(drain(&mut f), vec![Effect::Truncate { offset: Offset(2) }]);
        let Some(FollowerRequest::Fetch { request, .. }) = f.poll_request() else {
            panic!()
        };
        assert_eq!(request.fetch_offset, Offset(2));
        let resp = FetchResponse {
            leader_epoch: LeaderEpoch(2),
            fetch_offset: Offset(2),
            batches: vec![Batch {
                base: Offset(2),
                count: 1,
                epoch: LeaderEpoch(2),
            }],
            high_watermark: Offset(9),
        };
        f.handle_fetch_response(&resp).unwrap();
        assert_eq!(f.log().log_end(), Offset(3));
        assert_eq!(
            f.high_watermark(),
            Offset(3),
            "REP-13: HW capped at own end"
        );
        // A duplicate of the same answer is stale now and changes nothing.
        f.handle_fetch_response(&resp).unwrap();
        assert_eq!(f.log().log_end(), Offset(3));
    }

    /// REP-71: DeleteRecords on the leader moves the log start up to the
    /// high watermark and never past it; followers below it are sent back
    /// with OFFSET_OUT_OF_RANGE; a follower refuses it.
    #[test]
    fn delete_records_moves_the_leader_start_up_to_the_high_watermark() {
        let mut l = replica(1, 2);
        l.handle_partition_state(&state(Some(1), 1, 1, &[1, 2, 3]), Millis(0));
        assert_eq!(l.handle_produce(1, 5, Acks::All, Millis(1)), Ok(Offset(0)));
        fetch(&mut l, 2, 1, 5, 2);
        fetch(&mut l, 3, 1, 3, 2);
        assert_eq!(l.high_watermark(), Offset(3));
        drain(&mut l);
        assert_eq!(
            l.handle_delete_records(Some(Offset(4))),
            Err(DeleteRecordsError::OffsetOutOfRange {
                offset: Offset(4),
                high_watermark: Offset(3)
            }),
            "uncommitted records are not deleted"
        );
        assert!(drain(&mut l).is_empty());
        assert_eq!(l.handle_delete_records(Some(Offset(2))), Ok(Offset(2)));
        assert_eq!(
            drain(&mut l),
            vec![Effect::AdvanceLogStart { offset: Offset(2) }]
        );
        assert_eq!(l.log().log_start(), Offset(2));
        // Below the start: nothing moves, the current start is the answer.
        assert_eq!(l.handle_delete_records(Some(Offset(1))), Ok(Offset(2)));
        assert!(drain(&mut l).is_empty());
        // No offset: up to the high watermark.
        assert_eq!(l.handle_delete_records(None), Ok(Offset(3)));
        assert!(matches!(
            l.handle_fetch(
                &FetchRequest {
                    replica: b(3),
                    broker_epoch: 0,
                    leader_epoch: LeaderEpoch(1),
                    fetch_offset: Offset(1),
                },
                Millis(3)
            ),
            Err(FetchError::OffsetOutOfRange { .. })
        ));
        let mut f = replica(2, 2);
        f.handle_partition_state(&state(Some(1), 1, 1, &[1, 2, 3]), Millis(0));
        assert_eq!(
            f.handle_delete_records(None),
            Err(DeleteRecordsError::NotLeader)
        );
    }

    /// REP-72: a follower's log start follows the leader's, never past the
    /// follower's own high watermark, and only in the current epoch;
    /// retention's moves are taken over without an effect.
    #[test]
    fn follower_start_follows_the_leader_up_to_its_own_high_watermark() {
        let mut log = LogMeta::new();
        log.append(Offset(0), 6, LeaderEpoch(1)).unwrap();
        let mut f = Replica::new(ReplicaConfig::new(b(2)), log, Offset(4));
        f.handle_partition_state(&state(Some(1), 1, 1, &[1, 2]), Millis(0));
        drain(&mut f);
        f.handle_leader_log_start(LeaderEpoch(0), Offset(3));
        assert_eq!(f.log().log_start(), Offset(0), "another epoch is ignored");
        f.handle_leader_log_start(LeaderEpoch(1), Offset(5));
        assert_eq!(
            drain(&mut f),
            vec![Effect::AdvanceLogStart { offset: Offset(4) }],
            "capped at the follower's high watermark"
        );
        assert_eq!(f.log().log_start(), Offset(4));
        f.handle_leader_log_start(LeaderEpoch(1), Offset(2));
        assert!(drain(&mut f).is_empty(), "never backwards");
        f.handle_log_start_moved(Offset(5));
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.log().log_start(), Offset(5));
        assert_eq!(f.high_watermark(), Offset(5));
    }

    /// REP-12: a follower whose latest epoch the leader never had walks
    /// back to the largest common epoch and keeps only the common prefix;
    /// stale answers (another epoch, another query) change nothing.
    #[test]
    fn follower_walks_back_to_common_epoch() {
        // Follower: offset 0 in epoch 1, offsets 1..3 in its own epoch 2.
        let mut log = LogMeta::new();
        log.append(Offset(0), 1, LeaderEpoch(1)).unwrap();
        log.append(Offset(1), 2, LeaderEpoch(2)).unwrap();
        let mut f = Replica::new(ReplicaConfig::new(b(2)), log, Offset(0));
        f.handle_partition_state(&state(Some(1), 3, 3, &[1, 2]), Millis(0));
        // The leader holds epochs 1 (offsets 0..3) and 3: it answers the
        // query for epoch 2 with (1, 3).
        f.handle_epoch_response(
            LeaderEpoch(2),
            LeaderEpoch(2),
            Some((LeaderEpoch(1), Offset(3))),
        );
        assert_eq!(
            f.log().log_end(),
            Offset(3),
            "an answer from another epoch is stale"
        );
        f.handle_epoch_response(
            LeaderEpoch(3),
            LeaderEpoch(2),
            Some((LeaderEpoch(1), Offset(3))),
        );
        assert_eq!(
            f.log().log_end(),
            Offset(1),
            "the leader never had epoch 2: only offset 0 of epoch 1 is common"
        );
        assert!(matches!(
            f.poll_request(),
            Some(FollowerRequest::Fetch { .. })
        ));
    }

    /// REP-2: an older decision is ignored; a new epoch fails waiting
    /// acks=all requests.
    #[test]
    fn stale_decisions_are_ignored_and_waiters_fail_on_new_epoch() {
        let mut l = replica(1, 1);
        l.handle_partition_state(&state(Some(1), 2, 2, &[1, 2]), Millis(0));
        l.handle_partition_state(&state(Some(2), 1, 5, &[1, 2]), Millis(0));
        assert!(l.is_leader(), "epoch 1 is older than 2");
        l.handle_produce(4, 1, Acks::All, Millis(0)).unwrap();
        drain(&mut l);
        l.handle_partition_state(&state(Some(2), 3, 3, &[2]), Millis(1));
        assert!(!l.is_leader());
        assert_eq!(
            completed(&drain(&mut l)),
            vec![(4, Err(ProduceError::NotLeader))]
        );
    }

    #[test]
    fn legacy_restart_truncates_to_hw() {
        let mut log = LogMeta::new();
        log.append(Offset(0), 3, LeaderEpoch(1)).unwrap();
        let mut cfg = ReplicaConfig::new(b(2));
        cfg.legacy.truncate_to_hw_on_restart = true;
        let f = Replica::new(cfg, log, Offset(1));
        assert_eq!(f.log().log_end(), Offset(1));
    }

    #[test]
    fn config_is_validated() {
        let mut cfg = ReplicaConfig::new(b(1));
        assert_eq!(cfg.validate(), Ok(()));
        cfg.min_insync_replicas = 0;
        assert_eq!(cfg.validate(), Err(ConfigError::MinInsyncZero));
    }
}
