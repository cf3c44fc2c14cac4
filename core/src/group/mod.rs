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

mod messages;
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

    // ----- JoinGroup ---------------------------------------------------

    fn join(&mut self, now: Millis, request: RequestId, r: JoinGroupRequest) {
        let fail = |error: ErrorCode, member_id: MemberId| {
            Response::Join(JoinGroupResponse {
                error,
                generation: Generation(-1),
                protocol_type: None,
                protocol_name: None,
                leader: MemberId::default(),
                member_id,
                members: Vec::new(),
            })
        };
        if self.group_id.is_empty() {
            return self.respond(request, fail(ErrorCode::InvalidGroupId, r.member_id));
        }
        // spec: GRP-12
        if r.session_timeout_ms < self.config.min_session_timeout_ms
            || r.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return self.respond(request, fail(ErrorCode::InvalidSessionTimeout, r.member_id));
        }
        if self.state == GroupState::Dead {
            return self.respond(
                request,
                fail(ErrorCode::CoordinatorNotAvailable, r.member_id),
            );
        }
        let known = !r.member_id.0.is_empty();
        if !known || !self.members.contains_key(&r.member_id) {
            let size = self.members.len() + self.pending_members.len();
            let is_pending = self.pending_members.contains_key(&r.member_id);
            let replaces_static = r
                .group_instance_id
                .as_ref()
                .is_some_and(|i| self.static_members.contains_key(i));
            if !is_pending && !replaces_static && size >= self.config.max_size as usize {
                return self.respond(request, fail(ErrorCode::GroupMaxSizeReached, r.member_id));
            }
        }
        // spec: GRP-13
        if !self.supports_protocols(&r.protocol_type, &r.protocols) {
            return self.respond(
                request,
                fail(ErrorCode::InconsistentGroupProtocol, r.member_id),
            );
        }
        if !known {
            self.join_unknown(now, request, r);
        } else {
            self.join_known(now, request, r, fail);
        }
    }

    /// A first join: hand out a member id (spec: GRP-10, GRP-11).
    fn join_unknown(&mut self, now: Millis, request: RequestId, r: JoinGroupRequest) {
        let member_id = self.new_member_id(&r.client_id);
        if let Some(instance) = r.group_instance_id.clone() {
            if let Some(old) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(now, request, r, old, member_id);
            }
            return self.add_member_and_rebalance(now, request, r, member_id);
        }
        if r.version >= 4 {
            // spec: GRP-11
            let deadline = now.plus(i64::from(r.session_timeout_ms));
            self.pending_members.insert(member_id.clone(), deadline);
            return self.respond(
                request,
                Response::Join(JoinGroupResponse {
                    error: ErrorCode::MemberIdRequired,
                    generation: Generation(-1),
                    protocol_type: None,
                    protocol_name: None,
                    leader: MemberId::default(),
                    member_id,
                    members: Vec::new(),
                }),
            );
        }
        self.add_member_and_rebalance(now, request, r, member_id);
    }

    fn join_known(
        &mut self,
        now: Millis,
        request: RequestId,
        r: JoinGroupRequest,
        fail: impl Fn(ErrorCode, MemberId) -> Response,
    ) {
        if self.pending_members.contains_key(&r.member_id) {
            let id = r.member_id.clone();
            self.pending_members.remove(&id);
            return self.add_member_and_rebalance(now, request, r, id);
        }
        if self.static_fenced(&r.member_id, r.group_instance_id.as_deref()) {
            // spec: GRP-31
            return self.respond(request, fail(ErrorCode::FencedInstanceId, r.member_id));
        }
        if !self.members.contains_key(&r.member_id) {
            return self.respond(request, fail(ErrorCode::UnknownMemberId, r.member_id));
        }
        let is_leader = self.leader.as_ref() == Some(&r.member_id);
        let same = self.members[&r.member_id].same_protocols(&r.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(now, request, r),
            GroupState::CompletingRebalance if same => {
                // A resent join of the generation being completed: answer it
                // again (spec: GRP-17).
                let response = self.join_response(&r.member_id, ErrorCode::None);
                if let Some(m) = self.members.get_mut(&r.member_id) {
                    m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
                }
                self.respond(request, Response::Join(response));
            }
            GroupState::Stable if same && !is_leader => {
                // Nothing changed: no rebalance (spec: GRP-17).
                let response = self.join_response(&r.member_id, ErrorCode::None);
                if let Some(m) = self.members.get_mut(&r.member_id) {
                    m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
                }
                self.respond(request, Response::Join(response));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(now, request, r);
            }
            GroupState::Empty | GroupState::Dead => {
                self.respond(request, fail(ErrorCode::UnknownMemberId, r.member_id));
            }
        }
    }

    /// Whether a joining member's protocols fit the group (spec: GRP-13).
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// spec: GRP-31 — an instance id held by another member id is fenced.
    fn static_fenced(&self, member_id: &MemberId, instance: Option<&str>) -> bool {
        instance.is_some_and(|i| {
            self.static_members
                .get(i)
                .is_some_and(|current| current != member_id)
        })
    }

    /// spec: GRP-10 — ids are `client_id-epoch-seq`: unique across
    /// coordinator moves because the coordinator epoch grows.
    fn new_member_id(&mut self, client_id: &str) -> MemberId {
        let seq = self.next_member_seq;
        self.next_member_seq += 1;
        MemberId(format!("{client_id}-{}-{seq}", self.coordinator_epoch))
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Millis,
        request: RequestId,
        r: JoinGroupRequest,
        member_id: MemberId,
    ) {
        let order = self.next_join_order;
        self.next_join_order += 1;
        if self.members.is_empty() {
            self.protocol_type = Some(r.protocol_type.clone());
        }
        if let Some(instance) = &r.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: r.group_instance_id,
            client_id: r.client_id,
            client_host: r.client_host,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            protocols: r.protocols,
            assignment: Vec::new(),
            join_order: order,
            pending_join: Some((request, r.version)),
            pending_sync: None,
            synced: false,
            session_deadline: now.plus(i64::from(r.session_timeout_ms)),
        };
        self.members.insert(member_id.clone(), member);
        // spec: GRP-18 — the first member to join leads.
        if self.leader.is_none() {
            self.leader = Some(member_id);
        }
        if let Some(RebalanceTimer::Initial { new_members, .. }) = &mut self.timer {
            *new_members = true;
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    fn update_member_and_rebalance(
        &mut self,
        now: Millis,
        request: RequestId,
        r: JoinGroupRequest,
    ) {
        let replaced = self
            .members
            .get_mut(&r.member_id)
            .and_then(|m| m.pending_join.replace((request, r.version)));
        if let Some((old, _)) = replaced {
            // A newer join replaces a held one; the old one is answered
            // so that no request is left hanging.
            let error = Response::Join(JoinGroupResponse {
                error: ErrorCode::RebalanceInProgress,
                generation: Generation(-1),
                protocol_type: None,
                protocol_name: None,
                leader: MemberId::default(),
                member_id: r.member_id.clone(),
                members: Vec::new(),
            });
            self.respond(old, error);
        }
        if let Some(m) = self.members.get_mut(&r.member_id) {
            m.protocols = r.protocols;
            m.client_id = r.client_id;
            m.client_host = r.client_host;
            m.session_timeout_ms = r.session_timeout_ms;
            m.rebalance_timeout_ms = r.rebalance_timeout_ms;
            m.session_deadline = now.plus(i64::from(r.session_timeout_ms));
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    /// spec: GRP-32 — a static member rejoining with a new member id takes
    /// over the old id's place and assignment; the old id is fenced.
    fn replace_static_member(
        &mut self,
        now: Millis,
        request: RequestId,
        r: JoinGroupRequest,
        old_id: MemberId,
        new_id: MemberId,
    ) {
        let Some(mut member) = self.members.remove(&old_id) else {
            // The mapping always names a member; repair rather than panic.
            self.static_members
                .remove(r.group_instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(now, request, r, new_id);
        };
        self.fence_held_requests(&mut member, ErrorCode::FencedInstanceId);
        let protocols_changed = !member.same_protocols(&r.protocols);
        member.member_id = new_id.clone();
        member.client_id = r.client_id.clone();
        member.client_host = r.client_host.clone();
        member.session_timeout_ms = r.session_timeout_ms;
        member.rebalance_timeout_ms = r.rebalance_timeout_ms;
        member.protocols = r.protocols.clone();
        member.session_deadline = now.plus(i64::from(r.session_timeout_ms));
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &r.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_ref() == Some(&old_id) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if !protocols_changed => {
                // Keep the assignment: answer with the current generation and
                // record the new id (spec: GRP-32).
                let response = self.join_response(&new_id, ErrorCode::None);
                let records = vec![GroupRecord::Metadata(self.snapshot())];
                self.persist(records, PendingPersist::Background);
                self.respond(request, Response::Join(response));
            }
            _ => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.pending_join = Some((request, r.version));
                }
                self.maybe_prepare_rebalance(now);
                self.try_complete_join(now);
            }
        }
    }

    /// Moves to PreparingRebalance from Empty, Stable or CompletingRebalance
    /// (spec: GRP-15, GRP-16).
    fn maybe_prepare_rebalance(&mut self, now: Millis) {
        if !matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate(ErrorCode::RebalanceInProgress);
        }
        let rebalance_ms = self.rebalance_timeout_ms();
        self.timer = Some(if self.state == GroupState::Empty {
            let delay = i64::from(self.config.initial_rebalance_delay_ms).min(rebalance_ms);
            RebalanceTimer::Initial {
                deadline: now.plus(delay),
                remaining_ms: (rebalance_ms - delay).max(0),
                new_members: false,
            }
        } else {
            RebalanceTimer::Join {
                deadline: now.plus(rebalance_ms),
            }
        });
        self.transition(now, GroupState::PreparingRebalance);
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Completes the join phase early once every member has rejoined and no
    /// handed-out member id is outstanding (spec: GRP-15).
    fn try_complete_join(&mut self, now: Millis) {
        if self.state != GroupState::PreparingRebalance
            || !matches!(self.timer, Some(RebalanceTimer::Join { .. }))
        {
            return;
        }
        if self.pending_members.is_empty()
            && self.members.values().all(|m| m.pending_join.is_some())
        {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: removes members that did not rejoin, starts the
    /// next generation and answers every held JoinGroup (spec: GRP-15,
    /// GRP-19, GRP-20).
    fn complete_join(&mut self, now: Millis) {
        let laggards: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&id, ErrorCode::UnknownMemberId);
        }
        self.timer = None;
        // spec: GRP-20 — generations only grow.
        self.generation = Generation(self.generation.0 + 1);
        for m in self.members.values_mut() {
            m.assignment.clear();
            m.synced = false;
        }
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.transition(now, GroupState::Empty);
            let records = vec![GroupRecord::Metadata(self.snapshot())];
            self.persist(records, PendingPersist::Background);
            return;
        }
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.first_member();
        }
        self.protocol_name = Some(self.select_protocol());
        self.transition(now, GroupState::CompletingRebalance);
        // spec: GRP-24 — the sync phase is bounded too.
        self.timer = Some(RebalanceTimer::Sync {
            deadline: now.plus(self.rebalance_timeout_ms()),
        });
        let ids: Vec<MemberId> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id, ErrorCode::None);
            let m = self.members.get_mut(&id).expect("listed above");
            m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
            if let Some((request, _)) = m.pending_join.take() {
                self.respond(request, Response::Join(response));
            }
        }
    }

    /// spec: GRP-19 — the protocol every member supports that most members
    /// prefer (each votes for its first supported candidate); ties go to the
    /// candidate the leader prefers.
    fn select_protocol(&self) -> String {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        let Some(leader) = leader else {
            return String::new();
        };
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(choice) = m
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| *c == p.name))
            {
                votes[choice] += 1;
            }
        }
        let mut best = 0;
        for (i, &v) in votes.iter().enumerate() {
            if v > votes[best] {
                best = i;
            }
        }
        candidates
            .get(best)
            .map_or_else(String::new, |c| (*c).to_owned())
    }

    fn first_member(&self) -> Option<MemberId> {
        self.members
            .values()
            .min_by_key(|m| m.join_order)
            .map(|m| m.member_id.clone())
    }

    /// The JoinGroup answer for `member_id` in the current generation; the
    /// leader also gets every member's metadata (spec: GRP-18).
    fn join_response(&self, member_id: &MemberId, error: ErrorCode) -> JoinGroupResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let is_leader = self.leader.as_ref() == Some(member_id);
        let mut members = Vec::new();
        if is_leader {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.join_order);
            members = all
                .into_iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol).to_vec(),
                })
                .collect();
        }
        JoinGroupResponse {
            error,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.clone(),
            members,
        }
    }

    // ----- SyncGroup ---------------------------------------------------

    fn sync(&mut self, now: Millis, request: RequestId, r: SyncGroupRequest) {
        let error = self.check_member(&r.member_id, r.group_instance_id.as_deref(), r.generation);
        let error = if !error.is_ok() {
            error
        } else if r
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || r.protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol_name.as_ref())
        {
            ErrorCode::InconsistentGroupProtocol
        } else {
            match self.state {
                GroupState::Empty => ErrorCode::UnknownMemberId,
                GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
                GroupState::Dead => ErrorCode::CoordinatorNotAvailable,
                GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            }
        };
        if !error.is_ok() {
            let response = self.sync_response(error, Vec::new());
            return self.respond(request, Response::Sync(response));
        }
        let m = self.members.get_mut(&r.member_id).expect("checked member");
        m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
        m.synced = true;
        if self.state == GroupState::Stable {
            let assignment = m.assignment.clone();
            let response = self.sync_response(ErrorCode::None, assignment);
            return self.respond(request, Response::Sync(response));
        }
        // CompletingRebalance: hold until the leader's plan is persisted
        // (spec: GRP-21, GRP-22).
        if let Some(old) = m.pending_sync.replace(request) {
            let response = self.sync_response(ErrorCode::RebalanceInProgress, Vec::new());
            self.respond(old, Response::Sync(response));
        }
        let is_leader = self.leader.as_ref() == Some(&r.member_id);
        let already = self.persists.values().any(|p| {
            matches!(p, PendingPersist::Assignment { generation, .. } if *generation == self.generation)
        });
        if is_leader && !already {
            // Members the leader left out get an empty assignment; entries
            // for non-members are ignored.
            let mut plan: BTreeMap<MemberId, Vec<u8>> = self
                .members
                .keys()
                .map(|id| (id.clone(), Vec::new()))
                .collect();
            for (id, bytes) in r.assignments {
                if let Some(slot) = plan.get_mut(&id) {
                    *slot = bytes;
                }
            }
            let mut snapshot = self.snapshot();
            for stored in &mut snapshot.members {
                if let Some(bytes) = plan.get(&stored.member_id) {
                    stored.assignment.clone_from(bytes);
                }
            }
            self.persist(
                vec![GroupRecord::Metadata(snapshot)],
                PendingPersist::Assignment {
                    generation: self.generation,
                    assignments: plan,
                },
            );
        }
    }

    /// spec: GRP-22 — the plan takes effect (and the group becomes Stable)
    /// only once persisted, and only if the generation is still current.
    fn assignment_persisted(
        &mut self,
        now: Millis,
        generation: Generation,
        assignments: BTreeMap<MemberId, Vec<u8>>,
        result: Result<(), PersistFailure>,
    ) {
        if generation != self.generation || self.state != GroupState::CompletingRebalance {
            return;
        }
        if let Err(failure) = result {
            self.reset_and_propagate(group_error(failure));
            self.maybe_prepare_rebalance(now);
            return;
        }
        for (id, bytes) in assignments {
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = bytes;
            }
        }
        self.timer = None;
        self.transition(now, GroupState::Stable);
        let held: Vec<(RequestId, Vec<u8>)> = self
            .members
            .values_mut()
            .filter_map(|m| {
                m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
                m.pending_sync.take().map(|r| (r, m.assignment.clone()))
            })
            .collect();
        for (request, assignment) in held {
            let response = self.sync_response(ErrorCode::None, assignment);
            self.respond(request, Response::Sync(response));
        }
    }

    /// Clears assignments and answers every held SyncGroup with `error`.
    fn reset_and_propagate(&mut self, error: ErrorCode) {
        let held: Vec<RequestId> = self
            .members
            .values_mut()
            .filter_map(|m| {
                m.assignment.clear();
                m.pending_sync.take()
            })
            .collect();
        for request in held {
            let response = self.sync_response(error, Vec::new());
            self.respond(request, Response::Sync(response));
        }
    }

    /// spec: GRP-24 — members that never sent SyncGroup are removed and the
    /// group rebalances without them.
    fn expire_sync(&mut self, now: Millis) {
        self.timer = None;
        let laggards: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| !m.synced)
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&id, ErrorCode::UnknownMemberId);
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    fn sync_response(&self, error: ErrorCode, assignment: Vec<u8>) -> SyncGroupResponse {
        SyncGroupResponse {
            error,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// The common member check of SyncGroup, Heartbeat and OffsetCommit:
    /// Dead, fenced instance, unknown member, wrong generation (spec: GRP-23).
    fn check_member(
        &self,
        member_id: &MemberId,
        instance: Option<&str>,
        generation: Generation,
    ) -> ErrorCode {
        if self.state == GroupState::Dead {
            ErrorCode::CoordinatorNotAvailable
        } else if self.static_fenced(member_id, instance) {
            ErrorCode::FencedInstanceId
        } else if !self.members.contains_key(member_id) {
            ErrorCode::UnknownMemberId
        } else if generation != self.generation {
            ErrorCode::IllegalGeneration
        } else {
            ErrorCode::None
        }
    }

    // ----- Heartbeat ---------------------------------------------------

    /// spec: GRP-14, GRP-23
    fn heartbeat(&mut self, now: Millis, r: &HeartbeatRequest) -> ErrorCode {
        let error = self.check_member(&r.member_id, r.group_instance_id.as_deref(), r.generation);
        if !error.is_ok() {
            return error;
        }
        if self.state == GroupState::Empty {
            return ErrorCode::UnknownMemberId;
        }
        if let Some(m) = self.members.get_mut(&r.member_id) {
            m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
        }
        if self.state == GroupState::PreparingRebalance {
            ErrorCode::RebalanceInProgress
        } else {
            ErrorCode::None
        }
    }

    // ----- LeaveGroup --------------------------------------------------

    /// spec: GRP-25
    fn leave(&mut self, now: Millis, r: LeaveGroupRequest) -> LeaveGroupResponse {
        if self.state == GroupState::Dead {
            return LeaveGroupResponse {
                error: ErrorCode::CoordinatorNotAvailable,
                members: Vec::new(),
            };
        }
        let mut members = Vec::with_capacity(r.members.len());
        for leaving in r.members {
            let error = self.leave_one(now, &leaving);
            members.push(LeftMember {
                member_id: leaving.member_id,
                group_instance_id: leaving.group_instance_id,
                error,
            });
        }
        LeaveGroupResponse {
            error: ErrorCode::None,
            members,
        }
    }

    fn leave_one(&mut self, now: Millis, leaving: &LeavingMember) -> ErrorCode {
        let instance = leaving.group_instance_id.as_deref();
        let id = if leaving.member_id.0.is_empty() {
            match instance.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return ErrorCode::UnknownMemberId,
            }
        } else {
            leaving.member_id.clone()
        };
        if self.pending_members.remove(&id).is_some() {
            self.try_complete_join(now);
            return ErrorCode::None;
        }
        if self.static_fenced(&id, instance) {
            return ErrorCode::FencedInstanceId;
        }
        if !self.members.contains_key(&id) {
            return ErrorCode::UnknownMemberId;
        }
        self.remove_member_and_update(now, &id);
        ErrorCode::None
    }

    // ----- membership changes ------------------------------------------

    /// Removes a member and answers its held requests with `error`.
    fn remove_member(&mut self, id: &MemberId, error: ErrorCode) {
        let Some(mut member) = self.members.remove(id) else {
            return;
        };
        self.fence_held_requests(&mut member, error);
        if let Some(instance) = &member.group_instance_id
            && self.static_members.get(instance) == Some(id)
        {
            self.static_members.remove(instance);
        }
        if self.leader.as_ref() == Some(id) {
            self.leader = self.first_member();
        }
    }

    fn fence_held_requests(&mut self, member: &mut Member, error: ErrorCode) {
        if let Some((request, _)) = member.pending_join.take() {
            let response = JoinGroupResponse {
                error,
                generation: Generation(-1),
                protocol_type: None,
                protocol_name: None,
                leader: MemberId::default(),
                member_id: member.member_id.clone(),
                members: Vec::new(),
            };
            self.respond(request, Response::Join(response));
        }
        if let Some(request) = member.pending_sync.take() {
            let response = self.sync_response(error, Vec::new());
            self.respond(request, Response::Sync(response));
        }
    }

    /// Removes a member (leave or session expiry) and rebalances the rest
    /// (spec: GRP-14, GRP-25).
    fn remove_member_and_update(&mut self, now: Millis, id: &MemberId) {
        if !self.members.contains_key(id) {
            return;
        }
        self.remove_member(id, ErrorCode::UnknownMemberId);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn transition(&mut self, now: Millis, to: GroupState) {
        self.state = to;
        self.state_since = now;
    }

    // ----- offsets -----------------------------------------------------

    /// spec: GRP-40, GRP-41, GRP-42
    fn commit(&mut self, now: Millis, request: RequestId, r: OffsetCommitRequest) {
        let simple =
            r.generation.0 < 0 && r.member_id.0.is_empty() && r.group_instance_id.is_none();
        let error = if self.state == GroupState::Dead {
            ErrorCode::CoordinatorNotAvailable
        } else if simple {
            // spec: GRP-44 — simple commits only while the group has no
            // members.
            if self.state == GroupState::Empty {
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            }
        } else {
            let mut e =
                self.check_member(&r.member_id, r.group_instance_id.as_deref(), r.generation);
            if e == ErrorCode::IllegalGeneration
                && self.config.accept_stale_generation_commits
                && r.generation < self.generation
            {
                // The broken rule the model must catch (spec: GRP-40).
                e = ErrorCode::None;
            }
            if e.is_ok() && self.state == GroupState::CompletingRebalance {
                ErrorCode::RebalanceInProgress
            } else {
                e
            }
        };
        if !error.is_ok() {
            let partitions = r
                .partitions
                .into_iter()
                .map(|p| (p.partition, error))
                .collect();
            return self.respond(
                request,
                Response::OffsetCommit(OffsetCommitResponse { partitions }),
            );
        }
        if let Some(m) = self.members.get_mut(&r.member_id) {
            m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
        }
        let expire = r.retention_ms.filter(|&ms| ms >= 0).map(|ms| now.plus(ms));
        let mut outcome = Vec::with_capacity(r.partitions.len());
        let mut values = Vec::with_capacity(r.partitions.len());
        for p in r.partitions {
            let too_large = p
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes);
            if too_large {
                outcome.push((p.partition, ErrorCode::OffsetMetadataTooLarge));
                continue;
            }
            outcome.push((p.partition.clone(), ErrorCode::None));
            values.push((
                p.partition,
                OffsetAndMetadata {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata: p.metadata,
                    commit_timestamp: now,
                    expire_timestamp: expire,
                },
            ));
        }
        if values.is_empty() {
            return self.respond(
                request,
                Response::OffsetCommit(OffsetCommitResponse {
                    partitions: outcome,
                }),
            );
        }
        let records = values
            .iter()
            .map(|(partition, value)| GroupRecord::Offset {
                partition: partition.clone(),
                value: value.clone(),
            })
            .collect();
        self.persist(
            records,
            PendingPersist::Commit {
                request,
                outcome,
                values,
            },
        );
    }

    fn fetch_offsets(&self, r: &OffsetFetchRequest) -> OffsetFetchResponse {
        let fetched = |partition: &TopicPartition| {
            let value = if self.state == GroupState::Dead {
                None
            } else {
                self.offsets.get(partition)
            };
            match value {
                Some(v) => FetchedOffset {
                    partition: partition.clone(),
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                },
                None => FetchedOffset {
                    partition: partition.clone(),
                    offset: Offset::UNDEFINED,
                    leader_epoch: LeaderEpoch::UNDEFINED,
                    metadata: None,
                },
            }
        };
        let partitions = match &r.partitions {
            Some(list) => list.iter().map(fetched).collect(),
            None if self.state == GroupState::Dead => Vec::new(),
            None => self.offsets.keys().map(fetched).collect(),
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            partitions,
        }
    }

    /// When `value` expires, if it can (spec: GRP-43): at its explicit
    /// expiry; otherwise `offsets.retention.minutes` after the group became
    /// Empty (consumer groups) or after the commit (groups that never had
    /// members). Offsets of groups with members never expire.
    fn offset_expiry(&self, value: &OffsetAndMetadata) -> Option<Millis> {
        if let Some(t) = value.expire_timestamp {
            return Some(t);
        }
        if self.state != GroupState::Empty {
            return None;
        }
        let base = if self.protocol_type.is_some() {
            self.state_since
        } else {
            value.commit_timestamp
        };
        Some(base.plus(self.config.offsets_retention_ms))
    }

    fn expire_offsets(&mut self, now: Millis) {
        let expired: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|&(_, v)| self.offset_expiry(v).is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(expired.len() + 1);
        for partition in expired {
            self.offsets.remove(&partition);
            records.push(GroupRecord::OffsetTombstone { partition });
        }
        if self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
        {
            // Nothing left: the group itself goes (spec: GRP-43).
            records.push(GroupRecord::GroupTombstone);
            self.transition(now, GroupState::Dead);
        }
        self.persist(records, PendingPersist::Background);
    }

    // ----- DescribeGroups / DeleteGroups ---------------------------------

    fn describe(&self) -> DescribeGroupResponse {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        DescribeGroupResponse {
            error: ErrorCode::None,
            state: self.state.kafka_name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .into_iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol).to_vec()
                    } else {
                        Vec::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }
    }

    /// spec: GRP-45
    fn delete(&mut self, now: Millis, request: RequestId) {
        let error = match self.state {
            GroupState::Dead => ErrorCode::GroupIdNotFound,
            GroupState::Empty => ErrorCode::None,
            _ => ErrorCode::NonEmptyGroup,
        };
        if !error.is_ok() {
            return self.respond(request, Response::Delete(DeleteGroupResponse { error }));
        }
        let mut records: Vec<GroupRecord> = self
            .offsets
            .keys()
            .map(|p| GroupRecord::OffsetTombstone {
                partition: p.clone(),
            })
            .collect();
        records.push(GroupRecord::GroupTombstone);
        self.offsets.clear();
        self.pending_members.clear();
        self.transition(now, GroupState::Dead);
        self.persist(records, PendingPersist::Delete { request });
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
