//! Membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the
//! rebalance they drive (spec: GRP-10–GRP-32).

use std::collections::BTreeMap;

use super::{
    ErrorCode, Generation, Group, GroupRecord, GroupState, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, JoinedMember, LeaveGroupRequest, LeaveGroupResponse, LeavingMember,
    LeftMember, Member, MemberId, Millis, PendingPersist, PersistFailure, Protocol, RebalanceTimer,
    RequestId, Response, SyncGroupRequest, SyncGroupResponse, group_error,
};

impl Group {
    // ----- JoinGroup ---------------------------------------------------

    pub(super) fn join(&mut self, now: Millis, request: RequestId, r: JoinGroupRequest) {
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
    pub(super) fn join_unknown(&mut self, now: Millis, request: RequestId, r: JoinGroupRequest) {
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

    pub(super) fn join_known(
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
    pub(super) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
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
    pub(super) fn static_fenced(&self, member_id: &MemberId, instance: Option<&str>) -> bool {
        instance.is_some_and(|i| {
            self.static_members
                .get(i)
                .is_some_and(|current| current != member_id)
        })
    }

    /// spec: GRP-10 — ids are `client_id-epoch-seq`: unique across
    /// coordinator moves because the coordinator epoch grows.
    pub(super) fn new_member_id(&mut self, client_id: &str) -> MemberId {
        let seq = self.next_member_seq;
        self.next_member_seq += 1;
        MemberId(format!("{client_id}-{}-{seq}", self.coordinator_epoch))
    }

    pub(super) fn add_member_and_rebalance(
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

    pub(super) fn update_member_and_rebalance(
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
    pub(super) fn replace_static_member(
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
    pub(super) fn maybe_prepare_rebalance(&mut self, now: Millis) {
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
    pub(super) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Completes the join phase early once every member has rejoined and no
    /// handed-out member id is outstanding (spec: GRP-15).
    pub(super) fn try_complete_join(&mut self, now: Millis) {
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
    pub(super) fn complete_join(&mut self, now: Millis) {
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
    pub(super) fn select_protocol(&self) -> String {
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

    pub(super) fn first_member(&self) -> Option<MemberId> {
        self.members
            .values()
            .min_by_key(|m| m.join_order)
            .map(|m| m.member_id.clone())
    }

    /// The JoinGroup answer for `member_id` in the current generation; the
    /// leader also gets every member's metadata (spec: GRP-18).
    pub(super) fn join_response(
        &self,
        member_id: &MemberId,
        error: ErrorCode,
    ) -> JoinGroupResponse {
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

    pub(super) fn sync(&mut self, now: Millis, request: RequestId, r: SyncGroupRequest) {
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
    pub(super) fn assignment_persisted(
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
    pub(super) fn reset_and_propagate(&mut self, error: ErrorCode) {
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
    pub(super) fn expire_sync(&mut self, now: Millis) {
        self.timer = None;
        let laggards: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| !m.synced)
            .map(|m| m.member_id.clone())
            .collect();
        if laggards.is_empty() {
            // Everyone synced; only the plan's persist is outstanding.
            return;
        }
        for id in laggards {
            self.remove_member(&id, ErrorCode::UnknownMemberId);
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    pub(super) fn sync_response(&self, error: ErrorCode, assignment: Vec<u8>) -> SyncGroupResponse {
        SyncGroupResponse {
            error,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// The common member check of SyncGroup, Heartbeat and OffsetCommit:
    /// Dead, fenced instance, unknown member, wrong generation (spec: GRP-23).
    pub(super) fn check_member(
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
    pub(super) fn heartbeat(&mut self, now: Millis, r: &HeartbeatRequest) -> ErrorCode {
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
    pub(super) fn leave(&mut self, now: Millis, r: LeaveGroupRequest) -> LeaveGroupResponse {
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

    pub(super) fn leave_one(&mut self, now: Millis, leaving: &LeavingMember) -> ErrorCode {
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
    pub(super) fn remove_member(&mut self, id: &MemberId, error: ErrorCode) {
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

    pub(super) fn fence_held_requests(&mut self, member: &mut Member, error: ErrorCode) {
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
    pub(super) fn remove_member_and_update(&mut self, now: Millis, id: &MemberId) {
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

    pub(super) fn transition(&mut self, now: Millis, to: GroupState) {
        self.state = to;
        self.state_since = now;
    }
}
