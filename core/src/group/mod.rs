//! The classic consumer-group coordinator for one group, as a sans-I/O state
//! machine (spec: `spec/groups.md`).
//!
//! # Driving a [`Group`]
//!
//! * **Inputs.** [`Group::handle`] takes a decoded request with the caller's
//!   [`RequestId`]; [`Group::persist_completed`] reports the outcome of a
//!   [`Effect::Persist`]; [`Group::on_timeout`] lets time pass. Every input
//!   takes `now`, which must never go backwards.
//! * **Outputs.** After every input, drain [`Group::drain_effects`] in order:
//!   [`Effect::Respond`] answers a request (immediately or long after it
//!   arrived: a JoinGroup waits for the rebalance, a SyncGroup for the
//!   leader's plan, an OffsetCommit for its persist), [`Effect::Persist`]
//!   asks for records to be appended to `__consumer_offsets`. Persists must
//!   be appended in the order they are emitted.
//! * **Timers.** [`Group::next_deadline`] is the earliest time at which
//!   [`Group::on_timeout`] has work to do.
//! * **Recovery.** [`Group::load`] rebuilds the group from its persisted
//!   records when the broker starts or becomes the coordinator.
//!
//! The state machine is Kafka's: Empty → PreparingRebalance →
//! CompletingRebalance → Stable, back to PreparingRebalance on any membership
//! change, and Dead once deleted or expired (spec: GRP-2). A Dead group
//! answers as Kafka does for a group removed under a request's feet; the
//! caller should drop it and start a fresh one for the next request.

mod membership;
mod messages;
mod offsets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use messages::*;

use crate::ids::{Generation, LeaderEpoch, MemberId, Millis, Offset, TopicPartition};

/// The coordinator settings that shape one group's behaviour (Kafka's broker
/// configs of the same names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (spec: GRP-12).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (spec: GRP-12).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (spec: GRP-16).
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_size: u32,
    /// `offsets.retention.minutes`, in ms (spec: GRP-43).
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes` (spec: GRP-41).
    pub offset_metadata_max_bytes: usize,
    /// A deliberately broken rule kept for the model's mutation test: accept
    /// offset commits from members of an older generation. Never set in a
    /// broker; [`GroupConfig::validate`] refuses it (spec: GRP-40).
    pub accept_stale_generation_commits: bool,
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as u32,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offset_metadata_max_bytes: 4096,
            accept_stale_generation_commits: false,
        }
    }
}

/// A [`GroupConfig`] the broker must refuse to start with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupConfigError {
    /// The session-timeout bounds are empty or negative.
    #[error(
        "group.min.session.timeout.ms {min} must be positive and at most group.max.session.timeout.ms {max}"
    )]
    SessionTimeoutBounds {
        /// The minimum.
        min: i32,
        /// The maximum.
        max: i32,
    },
    /// A negative delay or retention.
    #[error("{0} must not be negative")]
    Negative(&'static str),
    /// The test-only stale-commit rule is switched on.
    #[error("accept_stale_generation_commits is for the model only")]
    StaleCommitsAccepted,
}

impl GroupConfig {
    /// Checks the settings once, at the broker's boundary.
    ///
    /// # Errors
    /// Returns the first setting that is out of range.
    pub fn validate(&self) -> Result<(), GroupConfigError> {
        if self.min_session_timeout_ms <= 0
            || self.min_session_timeout_ms > self.max_session_timeout_ms
        {
            return Err(GroupConfigError::SessionTimeoutBounds {
                min: self.min_session_timeout_ms,
                max: self.max_session_timeout_ms,
            });
        }
        if self.initial_rebalance_delay_ms < 0 {
            return Err(GroupConfigError::Negative(
                "group.initial.rebalance.delay.ms",
            ));
        }
        if self.offsets_retention_ms < 0 {
            return Err(GroupConfigError::Negative("offsets.retention.minutes"));
        }
        if self.accept_stale_generation_commits {
            return Err(GroupConfigError::StaleCommitsAccepted);
        }
        Ok(())
    }
}

/// The group's state (spec: GRP-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's plan.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted or expired; the caller drops the group.
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups show.
    #[must_use]
    pub const fn kafka_name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One current member of the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The member id.
    pub member_id: MemberId,
    /// `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Session timeout: the member is removed if it is silent this long.
    pub session_timeout_ms: i32,
    /// Rebalance timeout: how long a rebalance waits for it.
    pub rebalance_timeout_ms: i32,
    /// The protocols it supports, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Its assignment in the current generation (empty outside Stable).
    pub assignment: Vec<u8>,
    /// The order in which members joined; the earliest leads.
    join_order: u64,
    /// Its JoinGroup, held until the rebalance completes.
    pending_join: Option<(RequestId, i16)>,
    /// Its SyncGroup, held until the leader's plan is persisted.
    pending_sync: Option<RequestId>,
    /// Whether it has sent SyncGroup in this generation.
    synced: bool,
    /// When its session expires unless it is heard from.
    session_deadline: Millis,
}

impl Member {
    /// The member's metadata for `protocol`, empty if it does not support
    /// it.
    #[must_use]
    pub fn metadata_for(&self, protocol: &str) -> &[u8] {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map_or(&[][..], |p| &p.metadata)
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn same_protocols(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }
}

/// Which deadline the group's rebalance timer enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RebalanceTimer {
    /// PreparingRebalance of an empty group: wait
    /// `group.initial.rebalance.delay.ms` at a time while members keep
    /// arriving, at most `remaining_ms` more (spec: GRP-16).
    Initial {
        deadline: Millis,
        remaining_ms: i64,
        new_members: bool,
    },
    /// PreparingRebalance: members that have not rejoined by the deadline
    /// are removed (spec: GRP-15).
    Join { deadline: Millis },
    /// CompletingRebalance: members that have not sent SyncGroup by the
    /// deadline are removed (spec: GRP-24).
    Sync { deadline: Millis },
}

impl RebalanceTimer {
    fn deadline(self) -> Millis {
        match self {
            RebalanceTimer::Initial { deadline, .. }
            | RebalanceTimer::Join { deadline }
            | RebalanceTimer::Sync { deadline } => deadline,
        }
    }
}

/// What a persist in flight is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PendingPersist {
    /// The leader's plan for `generation` (spec: GRP-22).
    Assignment {
        generation: Generation,
        assignments: BTreeMap<MemberId, Vec<u8>>,
    },
    /// An offset commit, answered once persisted (spec: GRP-42).
    Commit {
        request: RequestId,
        /// Per-partition outcome decided up front (errors) or pending
        /// (`None`, to be written).
        outcome: Vec<(TopicPartition, ErrorCode)>,
        values: Vec<(TopicPartition, OffsetAndMetadata)>,
    },
    /// DeleteGroups tombstones (spec: GRP-45).
    Delete { request: RequestId },
    /// OffsetDelete tombstones (spec: GRP-47): `outcome` per requested
    /// partition, `deleted` leave the cache once persisted.
    OffsetDelete {
        request: RequestId,
        outcome: Vec<(TopicPartition, ErrorCode)>,
        deleted: Vec<TopicPartition>,
    },
    /// A snapshot whose outcome needs no answer.
    Background,
}

/// One consumer group's coordinator state. See the module documentation for
/// how to drive it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    /// The group id.
    group_id: String,
    /// Settings.
    config: GroupConfig,
    /// The coordinator's epoch (the offsets partition's leader epoch),
    /// which makes generated member ids unique across coordinator moves.
    coordinator_epoch: LeaderEpoch,
    state: GroupState,
    /// When the group entered `state`; offsets expire relative to the time
    /// the group became Empty (spec: GRP-43).
    state_since: Millis,
    generation: Generation,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<MemberId>,
    members: BTreeMap<MemberId, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline by
    /// which they must rejoin (spec: GRP-11).
    pending_members: BTreeMap<MemberId, Millis>,
    /// `group.instance.id` → its current member id (spec: GRP-30).
    static_members: BTreeMap<String, MemberId>,
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    timer: Option<RebalanceTimer>,
    persists: BTreeMap<PersistId, PendingPersist>,
    next_persist: u64,
    next_member_seq: u64,
    next_join_order: u64,
    effects: Vec<Effect>,
}

impl Group {
    /// A new, empty group (generation 0, no offsets).
    #[must_use]
    pub fn new(
        group_id: impl Into<String>,
        config: GroupConfig,
        coordinator_epoch: LeaderEpoch,
        now: Millis,
    ) -> Group {
        Group {
            group_id: group_id.into(),
            config,
            coordinator_epoch,
            state: GroupState::Empty,
            state_since: now,
            generation: Generation(0),
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            timer: None,
            persists: BTreeMap::new(),
            next_persist: 0,
            next_member_seq: 0,
            next_join_order: 0,
            effects: Vec::new(),
        }
    }

    /// Rebuilds a group from its records in `__consumer_offsets`, in log
    /// order (spec: GRP-53). Members are restored with fresh sessions
    /// starting at `now`; a group with members comes back Stable, one
    /// without Empty. Requests held by the previous coordinator are lost;
    /// their clients retry.
    #[must_use]
    pub fn load(
        group_id: impl Into<String>,
        config: GroupConfig,
        coordinator_epoch: LeaderEpoch,
        records: impl IntoIterator<Item = GroupRecord>,
        now: Millis,
    ) -> Group {
        let mut group = Group::new(group_id, config, coordinator_epoch, now);
        let mut snapshot: Option<StoredGroup> = None;
        for record in records {
            match record {
                GroupRecord::Metadata(stored) => snapshot = Some(stored),
                GroupRecord::Offset { partition, value } => {
                    group.offsets.insert(partition, value);
                }
                GroupRecord::OffsetTombstone { partition } => {
                    group.offsets.remove(&partition);
                }
                GroupRecord::GroupTombstone => {
                    snapshot = None;
                    group.offsets.clear();
                }
            }
        }
        if let Some(stored) = snapshot {
            group.protocol_type = stored.protocol_type;
            group.generation = stored.generation;
            group.protocol_name = stored.protocol_name.clone();
            group.state_since = stored.state_timestamp;
            let protocol = stored.protocol_name.unwrap_or_default();
            for m in stored.members {
                let order = group.next_join_order;
                group.next_join_order += 1;
                if let Some(instance) = &m.group_instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), m.member_id.clone());
                }
                group.members.insert(
                    m.member_id.clone(),
                    Member {
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout_ms: m.session_timeout_ms,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        protocols: vec![Protocol {
                            name: protocol.clone(),
                            metadata: m.subscription,
                        }],
                        assignment: m.assignment,
                        join_order: order,
                        pending_join: None,
                        pending_sync: None,
                        synced: true,
                        session_deadline: now.plus(i64::from(m.session_timeout_ms)),
                    },
                );
            }
            if !group.members.is_empty() {
                group.state = GroupState::Stable;
                group.leader = stored
                    .leader
                    .filter(|l| group.members.contains_key(l))
                    .or_else(|| group.first_member());
            }
        }
        group
    }

    // ----- observers ---------------------------------------------------

    /// The group id.
    #[must_use]
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    #[must_use]
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The leader's member id, if the group has members.
    #[must_use]
    pub fn leader(&self) -> Option<&MemberId> {
        self.leader.as_ref()
    }

    /// The group's protocol type, once a member has joined.
    #[must_use]
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol selected for the current generation.
    #[must_use]
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The current members, by member id.
    #[must_use]
    pub fn members(&self) -> &BTreeMap<MemberId, Member> {
        &self.members
    }

    /// Whether `member_id` is a current member.
    #[must_use]
    pub fn is_member(&self, member_id: &MemberId) -> bool {
        self.members.contains_key(member_id)
    }

    /// The committed offsets.
    #[must_use]
    pub fn offsets(&self) -> &BTreeMap<TopicPartition, OffsetAndMetadata> {
        &self.offsets
    }

    /// Whether a persist is in flight.
    #[must_use]
    pub fn has_pending_persists(&self) -> bool {
        !self.persists.is_empty()
    }

    /// The earliest time at which [`Group::on_timeout`] has work to do.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        let mut next = self.timer.map(RebalanceTimer::deadline);
        let mut consider = |t: Millis| {
            next = Some(next.map_or(t, |n: Millis| n.min(t)));
        };
        for m in self.members.values() {
            if m.pending_join.is_none() && m.pending_sync.is_none() {
                consider(m.session_deadline);
            }
        }
        for &deadline in self.pending_members.values() {
            consider(deadline);
        }
        for value in self.offsets.values() {
            if let Some(t) = self.offset_expiry(value) {
                consider(t);
            }
        }
        next
    }

    /// Takes the effects produced so far, in order.
    pub fn drain_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    // ----- inputs ------------------------------------------------------

    /// Handles one request. Its response, now or later, comes out as an
    /// [`Effect::Respond`] naming `request`.
    pub fn handle(&mut self, now: Millis, request: RequestId, body: Request) {
        match body {
            Request::Join(r) => self.join(now, request, r),
            Request::Sync(r) => self.sync(now, request, r),
            Request::Heartbeat(r) => {
                let error = self.heartbeat(now, &r);
                self.respond(request, Response::Heartbeat(error));
            }
            Request::Leave(r) => {
                let response = self.leave(now, r);
                self.respond(request, Response::Leave(response));
            }
            Request::OffsetCommit(r) => self.commit(now, request, r),
            Request::OffsetFetch(r) => {
                let response = self.fetch_offsets(&r);
                self.respond(request, Response::OffsetFetch(response));
            }
            Request::Describe => {
                let response = self.describe();
                self.respond(request, Response::Describe(response));
            }
            Request::Delete => self.delete(now, request),
            Request::OffsetDelete(r) => self.delete_offsets(request, r),
        }
    }

    /// Reports that the persist `id` finished, successfully or not.
    /// Unknown ids (from before a reload) are ignored.
    pub fn persist_completed(
        &mut self,
        now: Millis,
        id: PersistId,
        result: Result<(), PersistFailure>,
    ) {
        let Some(pending) = self.persists.remove(&id) else {
            return;
        };
        match pending {
            PendingPersist::Assignment {
                generation,
                assignments,
            } => self.assignment_persisted(now, generation, assignments, result),
            PendingPersist::Commit {
                request,
                mut outcome,
                values,
            } => {
                // spec: GRP-42 — acknowledged only once persisted.
                let error = match result {
                    Err(failure) => commit_error(failure),
                    Ok(()) if self.state == GroupState::Dead => ErrorCode::CoordinatorNotAvailable,
                    Ok(()) => ErrorCode::None,
                };
                if error.is_ok() {
                    for (partition, value) in values {
                        self.offsets.insert(partition, value);
                    }
                }
                for (_, e) in &mut outcome {
                    if e.is_ok() {
                        *e = error;
                    }
                }
                self.respond(
                    request,
                    Response::OffsetCommit(OffsetCommitResponse {
                        partitions: outcome,
                    }),
                );
            }
            PendingPersist::Delete { request } => {
                let error = match result {
                    Ok(()) => ErrorCode::None,
                    Err(failure) => group_error(failure),
                };
                self.respond(request, Response::Delete(DeleteGroupResponse { error }));
            }
            PendingPersist::OffsetDelete {
                request,
                mut outcome,
                deleted,
            } => {
                let error = match result {
                    Ok(()) => {
                        for p in &deleted {
                            self.offsets.remove(p);
                        }
                        ErrorCode::None
                    }
                    Err(failure) => group_error(failure),
                };
                for (p, e) in &mut outcome {
                    if e.is_ok() && deleted.contains(p) {
                        *e = error;
                    }
                }
                self.respond(
                    request,
                    Response::OffsetDelete(OffsetDeleteResponse {
                        error: ErrorCode::None,
                        partitions: outcome,
                    }),
                );
            }
            PendingPersist::Background => {
                // A lost snapshot is superseded by the next one; nothing
                // waits on it.
                let _ = result;
            }
        }
    }

    /// Lets time pass: expires sessions, pending member ids, rebalance and
    /// sync deadlines, and offsets.
    pub fn on_timeout(&mut self, now: Millis) {
        if self.state == GroupState::Dead {
            return;
        }
        // spec: GRP-11 — unclaimed member ids lapse after a session timeout.
        let lapsed: Vec<MemberId> = self
            .pending_members
            .iter()
            .filter(|&(_, &d)| d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending_members.remove(&id);
            self.try_complete_join(now);
        }
        // spec: GRP-14 — session expiry.
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| {
                m.pending_join.is_none() && m.pending_sync.is_none() && m.session_deadline <= now
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(now, &id);
        }
        if let Some(timer) = self.timer
            && timer.deadline() <= now
        {
            match timer {
                RebalanceTimer::Initial {
                    remaining_ms,
                    new_members,
                    ..
                } if new_members
                    && remaining_ms > 0
                    && self.config.initial_rebalance_delay_ms > 0 =>
                {
                    let delay = i64::from(self.config.initial_rebalance_delay_ms).min(remaining_ms);
                    self.timer = Some(RebalanceTimer::Initial {
                        deadline: now.plus(delay),
                        remaining_ms: remaining_ms - delay,
                        new_members: false,
                    });
                }
                RebalanceTimer::Initial { .. } | RebalanceTimer::Join { .. } => {
                    self.complete_join(now);
                }
                RebalanceTimer::Sync { .. } => self.expire_sync(now),
            }
        }
        self.expire_offsets(now);
    }

    // ----- plumbing ----------------------------------------------------

    fn respond(&mut self, request: RequestId, response: Response) {
        self.effects.push(Effect::Respond { request, response });
    }

    fn persist(&mut self, records: Vec<GroupRecord>, pending: PendingPersist) {
        let id = PersistId(self.next_persist);
        self.next_persist += 1;
        self.persists.insert(id, pending);
        self.effects.push(Effect::Persist { id, records });
    }

    /// The membership snapshot written to `__consumer_offsets`.
    fn snapshot(&self) -> StoredGroup {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        StoredGroup {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since,
            members: members
                .into_iter()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol).to_vec(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// spec: GRP-61 — persist failures as group-operation errors.
fn group_error(failure: PersistFailure) -> ErrorCode {
    match failure {
        PersistFailure::NotLeader => ErrorCode::NotCoordinator,
        PersistFailure::Unavailable => ErrorCode::CoordinatorNotAvailable,
        PersistFailure::TooLarge => ErrorCode::UnknownServerError,
    }
}

/// spec: GRP-61 — persist failures as offset-commit errors.
fn commit_error(failure: PersistFailure) -> ErrorCode {
    match failure {
        PersistFailure::NotLeader => ErrorCode::NotCoordinator,
        PersistFailure::Unavailable => ErrorCode::CoordinatorNotAvailable,
        PersistFailure::TooLarge => ErrorCode::InvalidCommitOffsetSize,
    }
}
