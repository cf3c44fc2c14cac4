//! Scenario tests of the coordinator, driven the way the broker drives it:
//! requests in, effects drained, persists acknowledged, time advanced.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 20_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Drives one group against a virtual clock and collects its effects.
struct Harness {
    group: Group,
    now: Millis,
    next_request: u64,
    responses: BTreeMap<RequestId, Response>,
    persists: Vec<(PersistId, Vec<GroupRecord>)>,
    /// Every persisted record, in order, as the offsets partition holds them.
    log: Vec<GroupRecord>,
}

impl Harness {
    fn new(config: GroupConfig) -> Harness {
        Harness {
            group: Group::new("g", config, LeaderEpoch(0), Millis(0)),
            now: Millis(0),
            next_request: 0,
            responses: BTreeMap::new(),
            persists: Vec::new(),
            log: Vec::new(),
        }
    }

    fn collect(&mut self) {
        for effect in self.group.drain_effects().collect::<Vec<_>>() {
            match effect {
                Effect::Respond { request, response } => {
                    assert!(
                        self.responses.insert(request, response).is_none(),
                        "request {request:?} answered twice"
                    );
                }
                Effect::Persist { id, records } => self.persists.push((id, records)),
            }
        }
    }

    fn send(&mut self, request: Request) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.group.handle(self.now, id, request);
        self.collect();
        id
    }

    /// Completes every outstanding persist successfully.
    fn persist_all(&mut self) {
        while !self.persists.is_empty() {
            let (id, records) = self.persists.remove(0);
            self.log.extend(records);
            self.group.persist_completed(self.now, id, Ok(()));
            self.collect();
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now = self.now.plus(ms);
        self.group.on_timeout(self.now);
        self.collect();
    }

    fn response(&self, id: RequestId) -> Option<&Response> {
        self.responses.get(&id)
    }

    fn join_response(&self, id: RequestId) -> &JoinGroupResponse {
        match self.response(id) {
            Some(Response::Join(r)) => r,
            other => panic!("expected a join response, got {other:?}"),
        }
    }

    fn sync_response(&self, id: RequestId) -> &SyncGroupResponse {
        match self.response(id) {
            Some(Response::Sync(r)) => r,
            other => panic!("expected a sync response, got {other:?}"),
        }
    }

    fn join_request(member: &str, client: &str, protocols: &[&str]) -> JoinGroupRequest {
        JoinGroupRequest {
            version: 3,
            member_id: MemberId(member.into()),
            group_instance_id: None,
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| Protocol {
                    name: (*p).into(),
                    metadata: p.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    fn join(&mut self, member: &str, client: &str) -> RequestId {
        self.send(Request::Join(Self::join_request(
            member,
            client,
            &["range"],
        )))
    }

    fn sync(
        &mut self,
        member: &MemberId,
        generation: i32,
        plan: Vec<(MemberId, Vec<u8>)>,
    ) -> RequestId {
        self.send(Request::Sync(SyncGroupRequest {
            member_id: member.clone(),
            generation: Generation(generation),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: plan,
        }))
    }

    fn heartbeat(&mut self, member: &MemberId, generation: i32) -> ErrorCode {
        let id = self.send(Request::Heartbeat(HeartbeatRequest {
            member_id: member.clone(),
            generation: Generation(generation),
            group_instance_id: None,
        }));
        match self.response(id) {
            Some(Response::Heartbeat(e)) => *e,
            other => panic!("expected a heartbeat response, got {other:?}"),
        }
    }

    fn commit(&mut self, member: &MemberId, generation: i32, offset: i64) -> RequestId {
        self.send(Request::OffsetCommit(OffsetCommitRequest {
            member_id: member.clone(),
            generation: Generation(generation),
            group_instance_id: None,
            retention_ms: None,
            partitions: vec![CommitPartition {
                partition: tp(0),
                offset: Offset(offset),
                leader_epoch: LeaderEpoch(0),
                metadata: Some("m".into()),
            }],
        }))
    }

    fn commit_errors(&self, id: RequestId) -> Vec<ErrorCode> {
        match self.response(id) {
            Some(Response::OffsetCommit(r)) => r.partitions.iter().map(|(_, e)| *e).collect(),
            other => panic!("expected a commit response, got {other:?}"),
        }
    }

    /// Three dynamic members join (v3, no MEMBER_ID_REQUIRED), the group
    /// completes the join immediately (delay 0) and the leader syncs a plan
    /// giving member i the bytes `[i]`. Returns the member ids in join order.
    fn stable_group_of_three(&mut self) -> Vec<MemberId> {
        let joins: Vec<RequestId> = ["a", "b", "c"].iter().map(|c| self.join("", c)).collect();
        assert!(
            joins.iter().all(|j| self.response(*j).is_none()),
            "joins are held"
        );
        self.advance(0);
        let ids: Vec<MemberId> = joins
            .iter()
            .map(|j| self.join_response(*j).member_id.clone())
            .collect();
        let plan: Vec<(MemberId, Vec<u8>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), vec![u8::try_from(i).unwrap()]))
            .collect();
        let syncs: Vec<RequestId> = ids
            .iter()
            .map(|id| self.sync(id, 1, plan.clone()))
            .collect();
        self.persist_all();
        for (i, s) in syncs.iter().enumerate() {
            assert_eq!(
                self.sync_response(*s).assignment,
                vec![u8::try_from(i).unwrap()]
            );
        }
        assert_eq!(self.group.state(), GroupState::Stable);
        ids
    }
}

/// spec: GRP-2, GRP-15, GRP-18, GRP-21, GRP-22 — the whole happy path.
#[test]
fn three_members_join_and_sync_to_stable() {
    let mut h = Harness::new(config());
    let joins: Vec<RequestId> = ["a", "b", "c"].iter().map(|c| h.join("", c)).collect();
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    h.advance(0);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    let first = h.join_response(joins[0]).clone();
    assert_eq!(first.generation, Generation(1));
    assert_eq!(
        first.leader, first.member_id,
        "the first member to join leads"
    );
    assert_eq!(first.members.len(), 3, "the leader sees every member");
    assert_eq!(first.protocol_name.as_deref(), Some("range"));
    assert!(
        h.join_response(joins[1]).members.is_empty(),
        "followers see no members"
    );

    // A follower's sync waits for the leader's plan, which waits for its
    // persist.
    let follower = h.join_response(joins[1]).member_id.clone();
    let s1 = h.sync(&follower, 1, Vec::new());
    assert!(h.response(s1).is_none());
    let s0 = h.sync(&first.member_id, 1, vec![(follower.clone(), vec![7])]);
    assert!(h.response(s0).is_none() && h.response(s1).is_none());
    assert_eq!(
        h.group.state(),
        GroupState::CompletingRebalance,
        "not Stable before the persist"
    );
    h.persist_all();
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.sync_response(s1).assignment, vec![7]);
    assert!(
        h.sync_response(s0).assignment.is_empty(),
        "left out of the plan: empty"
    );
    // The third member syncs late and still gets its (empty) assignment.
    let third = h.join_response(joins[2]).member_id.clone();
    let s2 = h.sync(&third, 1, Vec::new());
    assert_eq!(h.sync_response(s2).error, ErrorCode::None);
}

/// spec: GRP-10, GRP-11 — v4+ first joins get an id to rejoin with.
#[test]
fn member_id_required_from_v4() {
    let mut h = Harness::new(config());
    let mut req = Harness::join_request("", "client", &["range"]);
    req.version = 4;
    let first = h.send(Request::Join(req.clone()));
    let r = h.join_response(first).clone();
    assert_eq!(r.error, ErrorCode::MemberIdRequired);
    assert_eq!(r.member_id, MemberId("client-0-0".into()));
    assert_eq!(
        h.group.state(),
        GroupState::Empty,
        "no member until it rejoins"
    );
    req.member_id = r.member_id.clone();
    let second = h.send(Request::Join(req));
    h.advance(0);
    let r2 = h.join_response(second);
    assert_eq!(r2.error, ErrorCode::None);
    assert_eq!(r2.member_id, r.member_id);
    assert_eq!(r2.generation, Generation(1));

    // An id that is never used lapses after the session timeout.
    let mut other = Harness::join_request("", "late", &["range"]);
    other.version = 5;
    let id = h.send(Request::Join(other.clone()));
    let lapsed = h.join_response(id).member_id.clone();
    h.advance(i64::from(SESSION));
    other.member_id = lapsed;
    let again = h.send(Request::Join(other));
    assert_eq!(h.join_response(again).error, ErrorCode::UnknownMemberId);
}

/// spec: GRP-16 — the first rebalance of an empty group waits for more
/// members, extending while they keep arriving, bounded by the rebalance
/// timeout.
#[test]
fn initial_rebalance_delay_gathers_members() {
    let mut h = Harness::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let a = h.join("", "a");
    assert_eq!(h.group.next_deadline(), Some(Millis(3_000)));
    h.advance(2_000);
    let b = h.join("", "b");
    h.advance(1_000);
    assert!(
        h.response(a).is_none(),
        "a member arrived during the delay: wait again"
    );
    h.advance(2_999);
    assert!(h.response(a).is_none());
    h.advance(1);
    assert_eq!(h.join_response(a).generation, Generation(1));
    assert_eq!(h.join_response(b).generation, Generation(1));
}

/// spec: GRP-12
#[test]
fn session_timeout_must_be_within_bounds() {
    let mut h = Harness::new(config());
    for timeout in [5_999, 1_800_001] {
        let mut req = Harness::join_request("", "a", &["range"]);
        req.session_timeout_ms = timeout;
        let id = h.send(Request::Join(req));
        assert_eq!(h.join_response(id).error, ErrorCode::InvalidSessionTimeout);
    }
}

/// spec: GRP-13, GRP-19
#[test]
fn protocols_must_be_compatible_and_the_vote_picks_one() {
    let mut h = Harness::new(config());
    let a = h.send(Request::Join(Harness::join_request(
        "",
        "a",
        &["range", "roundrobin"],
    )));
    let b = h.send(Request::Join(Harness::join_request(
        "",
        "b",
        &["roundrobin", "range"],
    )));
    let c = h.send(Request::Join(Harness::join_request(
        "",
        "c",
        &["roundrobin", "sticky", "range"],
    )));
    let bad = h.send(Request::Join(Harness::join_request("", "d", &["sticky"])));
    assert_eq!(
        h.join_response(bad).error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut other_type = Harness::join_request("", "e", &["range"]);
    other_type.protocol_type = "connect".into();
    let bad_type = h.send(Request::Join(other_type));
    assert_eq!(
        h.join_response(bad_type).error,
        ErrorCode::InconsistentGroupProtocol
    );
    h.advance(0);
    for id in [a, b, c] {
        assert_eq!(
            h.join_response(id).protocol_name.as_deref(),
            Some("roundrobin"),
            "two votes to one"
        );
    }
    // The leader gets each member's metadata for the chosen protocol.
    let leader = h.join_response(a);
    assert!(leader.members.iter().all(|m| m.metadata == b"roundrobin"));
}

/// spec: GRP-14, GRP-23 — heartbeat answers.
#[test]
fn heartbeats_report_rebalances_and_fence_stale_members() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    assert_eq!(h.heartbeat(&ids[0], 1), ErrorCode::None);
    assert_eq!(h.heartbeat(&ids[0], 0), ErrorCode::IllegalGeneration);
    assert_eq!(
        h.heartbeat(&MemberId("x".into()), 1),
        ErrorCode::UnknownMemberId
    );
    // A new member triggers a rebalance; existing members learn it from
    // their heartbeat.
    let d = h.join("", "d");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[1], 1), ErrorCode::RebalanceInProgress);
    // a and b rejoin; c does not and is dropped at the rebalance timeout.
    let ra = h.join(&ids[0].0, "a");
    let rb = h.join(&ids[1].0, "b");
    h.advance(i64::from(REBALANCE));
    assert_eq!(h.group.generation(), Generation(2));
    assert!(!h.group.is_member(&ids[2]));
    assert_eq!(h.group.members().len(), 3);
    for r in [ra, rb, d] {
        assert_eq!(h.join_response(r).generation, Generation(2));
    }
    assert_eq!(h.heartbeat(&ids[2], 1), ErrorCode::UnknownMemberId);
}

/// spec: GRP-14 — a silent member is removed after its session timeout and
/// the others rebalance without it.
#[test]
fn session_expiry_removes_a_silent_member() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    h.advance(i64::from(SESSION) - 1);
    assert_eq!(h.heartbeat(&ids[0], 1), ErrorCode::None);
    assert_eq!(h.heartbeat(&ids[1], 1), ErrorCode::None);
    h.advance(1);
    assert!(!h.group.is_member(&ids[2]));
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let ra = h.join(&ids[0].0, "a");
    let rb = h.join(&ids[1].0, "b");
    // Everyone left has rejoined: no need to wait for the timeout.
    assert_eq!(h.join_response(ra).generation, Generation(2));
    assert_eq!(h.join_response(rb).leader, ids[0]);
}

/// spec: GRP-18 — when the leader goes, the oldest remaining member leads.
#[test]
fn a_new_leader_is_the_oldest_remaining_member() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let leave = h.send(Request::Leave(LeaveGroupRequest {
        members: vec![LeavingMember {
            member_id: ids[0].clone(),
            group_instance_id: None,
        }],
    }));
    assert!(
        matches!(h.response(leave), Some(Response::Leave(r)) if r.members[0].error == ErrorCode::None)
    );
    let rc = h.join(&ids[2].0, "c");
    let rb = h.join(&ids[1].0, "b");
    assert_eq!(h.join_response(rc).leader, ids[1]);
    assert_eq!(h.join_response(rb).members.len(), 2);
}

/// spec: GRP-25 — LeaveGroup v3 batches members; each gets its own answer.
#[test]
fn batched_leave_answers_each_member() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let leave = h.send(Request::Leave(LeaveGroupRequest {
        members: vec![
            LeavingMember {
                member_id: ids[0].clone(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: MemberId("nobody".into()),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: ids[1].clone(),
                group_instance_id: None,
            },
        ],
    }));
    let Some(Response::Leave(r)) = h.response(leave) else {
        panic!("no leave response")
    };
    let errors: Vec<ErrorCode> = r.members.iter().map(|m| m.error).collect();
    assert_eq!(
        errors,
        [ErrorCode::None, ErrorCode::UnknownMemberId, ErrorCode::None]
    );
    assert_eq!(h.group.members().len(), 1);
    let rc = h.join(&ids[2].0, "c");
    assert_eq!(h.join_response(rc).generation, Generation(2));
}

/// spec: GRP-30, GRP-31, GRP-32 — a static member restarting with a new id
/// keeps its assignment without a rebalance; its old id is fenced.
#[test]
fn static_member_rejoin_keeps_assignment_and_fences_old_id() {
    let mut h = Harness::new(config());
    let mut req = Harness::join_request("", "s", &["range"]);
    req.version = 5;
    req.group_instance_id = Some("instance-1".into());
    let j = h.send(Request::Join(req.clone()));
    let j2 = h.join("", "b");
    h.advance(0);
    let old = h.join_response(j).member_id.clone();
    let other = h.join_response(j2).member_id.clone();
    let s = h.sync(
        &old,
        1,
        vec![(old.clone(), vec![1]), (other.clone(), vec![2])],
    );
    h.persist_all();
    assert_eq!(h.sync_response(s).assignment, vec![1]);

    // Restart: same instance id, no member id.
    let rejoin = h.send(Request::Join(req));
    assert_eq!(h.persists.len(), 1, "the new member id is recorded");
    h.persist_all();
    let r = h.join_response(rejoin).clone();
    assert_eq!(r.error, ErrorCode::None);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation, Generation(1), "no rebalance");
    assert_eq!(h.group.state(), GroupState::Stable);
    let s2 = h.send(Request::Sync(SyncGroupRequest {
        member_id: r.member_id.clone(),
        generation: Generation(1),
        group_instance_id: Some("instance-1".into()),
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: Vec::new(),
    }));
    assert_eq!(h.sync_response(s2).assignment, vec![1], "assignment kept");
    let hb = h.send(Request::Heartbeat(HeartbeatRequest {
        member_id: old.clone(),
        generation: Generation(1),
        group_instance_id: Some("instance-1".into()),
    }));
    assert_eq!(
        h.response(hb),
        Some(&Response::Heartbeat(ErrorCode::FencedInstanceId))
    );
    let c = h.send(Request::OffsetCommit(OffsetCommitRequest {
        member_id: old,
        generation: Generation(1),
        group_instance_id: Some("instance-1".into()),
        retention_ms: None,
        partitions: vec![CommitPartition {
            partition: tp(0),
            offset: Offset(1),
            leader_epoch: LeaderEpoch(0),
            metadata: None,
        }],
    }));
    assert_eq!(h.commit_errors(c), [ErrorCode::FencedInstanceId]);
    assert!(h.persists.is_empty());
}

/// spec: GRP-40, GRP-42 — commits are fenced by generation and member, and
/// acknowledged only after their persist.
#[test]
fn offset_commits_are_fenced_and_acknowledged_after_persist() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let ok = h.commit(&ids[0], 1, 42);
    assert!(
        h.response(ok).is_none(),
        "not acknowledged before the persist"
    );
    assert_eq!(h.persists.len(), 1);
    h.persist_all();
    assert_eq!(h.commit_errors(ok), [ErrorCode::None]);
    assert_eq!(h.group.offsets()[&tp(0)].offset, Offset(42));

    let stale = h.commit(&ids[0], 0, 50);
    assert_eq!(h.commit_errors(stale), [ErrorCode::IllegalGeneration]);
    let unknown = h.commit(&MemberId("ghost".into()), 1, 50);
    assert_eq!(h.commit_errors(unknown), [ErrorCode::UnknownMemberId]);
    let simple = h.commit(&MemberId::default(), -1, 50);
    assert_eq!(
        h.commit_errors(simple),
        [ErrorCode::UnknownMemberId],
        "simple commits need an empty group"
    );
    assert!(h.persists.is_empty(), "nothing rejected is persisted");

    // During PreparingRebalance the current generation may still commit
    // (consumers commit before they rejoin).
    h.join("", "d");
    let during = h.commit(&ids[1], 1, 60);
    h.persist_all();
    assert_eq!(h.commit_errors(during), [ErrorCode::None]);
    for (id, name) in ids.iter().zip(["a", "b", "c"]) {
        h.join(&id.0, name);
    }
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    let completing = h.commit(&ids[1], 2, 61);
    assert_eq!(
        h.commit_errors(completing),
        [ErrorCode::RebalanceInProgress]
    );
    let old_gen = h.commit(&ids[1], 1, 61);
    assert_eq!(h.commit_errors(old_gen), [ErrorCode::IllegalGeneration]);
    assert_eq!(h.group.offsets()[&tp(0)].offset, Offset(60));
}

/// spec: GRP-61 — a failed persist is not acknowledged as a commit.
#[test]
fn a_failed_persist_fails_the_commit() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let c = h.commit(&ids[0], 1, 5);
    let (id, _) = h.persists.remove(0);
    h.group
        .persist_completed(h.now, id, Err(PersistFailure::NotLeader));
    h.collect();
    assert_eq!(h.commit_errors(c), [ErrorCode::NotCoordinator]);
    assert!(h.group.offsets().is_empty());
}

/// spec: GRP-41
#[test]
fn oversized_metadata_is_refused_per_partition() {
    let mut h = Harness::new(GroupConfig {
        offset_metadata_max_bytes: 4,
        ..config()
    });
    let id = h.send(Request::OffsetCommit(OffsetCommitRequest {
        member_id: MemberId::default(),
        generation: Generation(-1),
        group_instance_id: None,
        retention_ms: None,
        partitions: vec![
            CommitPartition {
                partition: tp(0),
                offset: Offset(1),
                leader_epoch: LeaderEpoch(-1),
                metadata: Some("12345".into()),
            },
            CommitPartition {
                partition: tp(1),
                offset: Offset(1),
                leader_epoch: LeaderEpoch(-1),
                metadata: Some("1234".into()),
            },
        ],
    }));
    h.persist_all();
    assert_eq!(
        h.commit_errors(id),
        [ErrorCode::OffsetMetadataTooLarge, ErrorCode::None]
    );
    assert_eq!(h.group.offsets().len(), 1);
}

/// spec: GRP-43, GRP-44 — simple commits to an empty group; offsets expire
/// `offsets.retention.minutes` after the commit, then the group goes.
#[test]
fn simple_commits_and_their_expiry() {
    let mut h = Harness::new(GroupConfig {
        offsets_retention_ms: 60_000,
        ..config()
    });
    let c = h.commit(&MemberId::default(), -1, 9);
    h.persist_all();
    assert_eq!(h.commit_errors(c), [ErrorCode::None]);
    assert_eq!(h.group.next_deadline(), Some(Millis(60_000)));
    h.advance(59_999);
    assert_eq!(h.group.offsets().len(), 1);
    h.advance(1);
    assert!(h.group.offsets().is_empty());
    assert_eq!(h.group.state(), GroupState::Dead);
    assert!(matches!(
        h.persists.last(),
        Some((_, records)) if records == &vec![GroupRecord::OffsetTombstone { partition: tp(0) }, GroupRecord::GroupTombstone]
    ));
}

/// spec: GRP-43 — a consumer group's offsets never expire while it has
/// members, and expire a retention period after it became Empty.
#[test]
fn consumer_group_offsets_expire_only_once_empty() {
    let mut h = Harness::new(GroupConfig {
        offsets_retention_ms: 60_000,
        ..config()
    });
    let ids = h.stable_group_of_three();
    h.commit(&ids[0], 1, 3);
    h.persist_all();
    for _ in 0..10 {
        h.advance(9_000);
        for id in &ids {
            h.heartbeat(id, 1);
        }
    }
    assert_eq!(h.group.offsets().len(), 1, "members present: no expiry");
    h.send(Request::Leave(LeaveGroupRequest {
        members: ids
            .iter()
            .map(|id| LeavingMember {
                member_id: id.clone(),
                group_instance_id: None,
            })
            .collect(),
    }));
    assert_eq!(h.group.state(), GroupState::Empty);
    h.advance(59_999);
    assert_eq!(h.group.offsets().len(), 1);
    h.advance(1);
    assert!(h.group.offsets().is_empty());
}

/// spec: GRP-24 — a member that never syncs is removed at the sync deadline.
#[test]
fn slow_sync_is_removed_at_the_deadline() {
    let mut h = Harness::new(config());
    let a = h.join("", "a");
    let b = h.join("", "b");
    h.advance(0);
    let leader = h.join_response(a).member_id.clone();
    let slow = h.join_response(b).member_id.clone();
    // The leader syncs but its persist has not completed; b never syncs.
    let s = h.sync(&leader, 1, vec![]);
    // Keep the persist pending and let the deadline pass.
    let (pid, _) = h.persists.remove(0);
    h.advance(i64::from(REBALANCE));
    assert!(!h.group.is_member(&slow));
    assert_eq!(h.sync_response(s).error, ErrorCode::RebalanceInProgress);
    // The late persist completion of the old generation changes nothing.
    h.group.persist_completed(h.now, pid, Ok(()));
    h.collect();
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let again = h.join(&leader.0, "a");
    assert_eq!(h.join_response(again).generation, Generation(2));
}

/// spec: GRP-53 — the group comes back from its records.
#[test]
fn load_rebuilds_the_group_from_its_records() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    h.commit(&ids[1], 1, 77);
    h.persist_all();
    let loaded = Group::load("g", config(), LeaderEpoch(1), h.log.clone(), Millis(1_000));
    assert_eq!(loaded.state(), GroupState::Stable);
    assert_eq!(loaded.generation(), Generation(1));
    assert_eq!(loaded.leader(), Some(&ids[0]));
    assert_eq!(loaded.offsets()[&tp(0)].offset, Offset(77));
    assert_eq!(loaded.members()[&ids[2]].assignment, vec![2]);
    let mut h2 = Harness {
        group: loaded,
        now: Millis(1_000),
        ..Harness::new(config())
    };
    assert_eq!(h2.heartbeat(&ids[2], 1), ErrorCode::None);
    let fetch = h2.send(Request::OffsetFetch(OffsetFetchRequest {
        partitions: Some(vec![tp(0), tp(1)]),
    }));
    let Some(Response::OffsetFetch(f)) = h2.response(fetch) else {
        panic!("no fetch response")
    };
    assert_eq!(f.partitions[0].offset, Offset(77));
    assert_eq!(f.partitions[1].offset, Offset::UNDEFINED);
    // New member ids are unique across the coordinator move.
    let j = h2.join("", "a");
    assert!(h2.response(j).is_none());
    assert!(h2.group.members().keys().any(|k| k.0 == "a-1-0"));
}

/// spec: GRP-45 — only empty groups can be deleted.
#[test]
fn delete_requires_an_empty_group() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let d = h.send(Request::Delete);
    assert_eq!(
        h.response(d),
        Some(&Response::Delete(DeleteGroupResponse {
            error: ErrorCode::NonEmptyGroup
        }))
    );
    h.commit(&ids[0], 1, 1);
    h.persist_all();
    h.send(Request::Leave(LeaveGroupRequest {
        members: ids
            .iter()
            .map(|id| LeavingMember {
                member_id: id.clone(),
                group_instance_id: None,
            })
            .collect(),
    }));
    let d = h.send(Request::Delete);
    assert!(
        h.response(d).is_none(),
        "answered after the tombstones are written"
    );
    h.persist_all();
    assert_eq!(
        h.response(d),
        Some(&Response::Delete(DeleteGroupResponse {
            error: ErrorCode::None
        }))
    );
    assert_eq!(h.group.state(), GroupState::Dead);
    let d2 = h.send(Request::Delete);
    assert_eq!(
        h.response(d2),
        Some(&Response::Delete(DeleteGroupResponse {
            error: ErrorCode::GroupIdNotFound
        }))
    );
    let reloaded = Group::load("g", config(), LeaderEpoch(1), h.log.clone(), Millis(0));
    assert!(reloaded.offsets().is_empty() && reloaded.members().is_empty());
}

fn offset_delete(h: &mut Harness, partitions: &[TopicPartition]) -> RequestId {
    h.send(Request::OffsetDelete(OffsetDeleteRequest {
        partitions: partitions.to_vec(),
    }))
}

fn offset_delete_outcome(h: &Harness, id: RequestId) -> Option<(ErrorCode, Vec<ErrorCode>)> {
    match h.response(id)? {
        Response::OffsetDelete(r) => {
            Some((r.error, r.partitions.iter().map(|(_, e)| *e).collect()))
        }
        other => panic!("expected an OffsetDelete response, got {other:?}"),
    }
}

/// spec: GRP-47 — OffsetDelete spares the topics a member subscribes to,
/// answers after the tombstones are persisted, and the deletion survives
/// a reload; an unreadable subscription protects everything.
#[test]
fn offset_delete_spares_subscribed_topics() {
    use crate::consumer_protocol::Subscription;
    let u = |p: i32| TopicPartition::new("u", p);
    // Members whose metadata is not a subscription: nothing can go.
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    h.commit(&ids[0], 1, 5);
    h.persist_all();
    let d = offset_delete(&mut h, &[tp(0)]);
    assert_eq!(
        offset_delete_outcome(&h, d),
        Some((ErrorCode::None, vec![ErrorCode::GroupSubscribedToTopic]))
    );

    // One member subscribed to "t" that committed t-0 and u-0.
    let mut h = Harness::new(config());
    let mut join = Harness::join_request("", "c", &["range"]);
    join.protocols[0].metadata = Subscription {
        topics: vec!["t".into()],
        ..Subscription::default()
    }
    .encode()
    .unwrap();
    let j = h.send(Request::Join(join));
    h.advance(0);
    let member = h.join_response(j).member_id.clone();
    let generation = h.join_response(j).generation.0;
    h.sync(&member, generation, vec![(member.clone(), vec![1])]);
    h.persist_all();
    let c = h.send(Request::OffsetCommit(OffsetCommitRequest {
        member_id: member.clone(),
        generation: Generation(generation),
        group_instance_id: None,
        retention_ms: None,
        partitions: [tp(0), u(0)]
            .into_iter()
            .map(|partition| CommitPartition {
                partition,
                offset: Offset(7),
                leader_epoch: LeaderEpoch(0),
                metadata: None,
            })
            .collect(),
    }));
    h.persist_all();
    assert_eq!(h.commit_errors(c), vec![ErrorCode::None; 2]);
    let d = offset_delete(&mut h, &[tp(0), u(0), u(1)]);
    assert_eq!(
        offset_delete_outcome(&h, d),
        None,
        "answered once persisted"
    );
    h.persist_all();
    assert_eq!(
        offset_delete_outcome(&h, d),
        Some((
            ErrorCode::None,
            vec![
                ErrorCode::GroupSubscribedToTopic,
                ErrorCode::None,
                ErrorCode::None
            ]
        ))
    );
    assert!(h.group.offsets().contains_key(&tp(0)));
    assert!(!h.group.offsets().contains_key(&u(0)));
    let reloaded = Group::load("g", config(), LeaderEpoch(1), h.log.clone(), Millis(0));
    assert!(reloaded.offsets().contains_key(&tp(0)) && !reloaded.offsets().contains_key(&u(0)));

    // Once the group is empty every offset may go.
    h.send(Request::Leave(LeaveGroupRequest {
        members: vec![LeavingMember {
            member_id: member,
            group_instance_id: None,
        }],
    }));
    h.persist_all();
    let d = offset_delete(&mut h, &[tp(0)]);
    h.persist_all();
    assert_eq!(
        offset_delete_outcome(&h, d),
        Some((ErrorCode::None, vec![ErrorCode::None]))
    );
    assert!(h.group.offsets().is_empty());
    h.send(Request::Delete);
    h.persist_all();
    let d = offset_delete(&mut h, &[tp(0)]);
    assert_eq!(
        offset_delete_outcome(&h, d),
        Some((ErrorCode::GroupIdNotFound, vec![]))
    );
}

/// DescribeGroups shows members and assignments in Stable.
#[test]
fn describe_shows_stable_members() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    let d = h.send(Request::Describe);
    let Some(Response::Describe(r)) = h.response(d) else {
        panic!("no describe response")
    };
    assert_eq!(r.state, "Stable");
    assert_eq!(r.protocol, "range");
    let members: Vec<&MemberId> = r.members.iter().map(|m| &m.member_id).collect();
    assert_eq!(members, ids.iter().collect::<Vec<_>>());
    assert_eq!(r.members[1].assignment, vec![1]);
}

/// Every held request is answered exactly once, even when its member is
/// removed while it waits (the harness asserts no double answers).
#[test]
fn held_requests_of_removed_members_are_answered() {
    let mut h = Harness::new(config());
    let ids = h.stable_group_of_three();
    h.join("", "d");
    let held = h.join(&ids[0].0, "a");
    assert!(h.response(held).is_none());
    h.send(Request::Leave(LeaveGroupRequest {
        members: vec![LeavingMember {
            member_id: ids[0].clone(),
            group_instance_id: None,
        }],
    }));
    assert_eq!(h.join_response(held).error, ErrorCode::UnknownMemberId);
}

/// spec: GRP-24 — a slow persist of the plan is not a slow sync: when every
/// member has synced, the deadline removes nobody.
#[test]
fn slow_plan_persist_does_not_trigger_a_rebalance() {
    let mut h = Harness::new(config());
    let a = h.join("", "a");
    let b = h.join("", "b");
    h.advance(0);
    let leader = h.join_response(a).member_id.clone();
    let follower = h.join_response(b).member_id.clone();
    let sf = h.sync(&follower, 1, vec![]);
    let sl = h.sync(&leader, 1, vec![(follower.clone(), vec![5])]);
    h.advance(i64::from(REBALANCE));
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert_eq!(h.group.members().len(), 2);
    h.persist_all();
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.sync_response(sf).assignment, vec![5]);
    assert_eq!(h.sync_response(sl).error, ErrorCode::None);
}

mod random {
    //! Random request sequences: whatever clients send, in whatever order
    //! and timing, the coordinator never panics, answers every request
    //! exactly once, and keeps its generation monotonic (spec: GRP-20,
    //! GRP-25).

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Join {
            client: usize,
            version: i16,
            fresh: bool,
            instance: bool,
            alt_protocol: bool,
        },
        Sync {
            client: usize,
        },
        Heartbeat {
            client: usize,
        },
        Leave {
            client: usize,
            by_instance: bool,
        },
        Commit {
            client: usize,
            simple: bool,
            generation_delta: i32,
        },
        Fetch,
        Describe,
        Delete,
        OffsetDelete,
        Advance(i64),
        PersistOk,
        PersistFail,
    }

    fn op() -> impl Strategy<Value = Op> {
        let client = 0usize..3;
        prop_oneof![
            3 => (client.clone(), 0i16..8, prop::bool::weighted(0.2), any::<bool>(), prop::bool::weighted(0.2)).prop_map(
                |(client, version, fresh, instance, alt_protocol)| Op::Join { client, version, fresh, instance, alt_protocol }
            ),
            3 => client.clone().prop_map(|client| Op::Sync { client }),
            2 => client.clone().prop_map(|client| Op::Heartbeat { client }),
            1 => (client.clone(), any::<bool>()).prop_map(|(client, by_instance)| Op::Leave { client, by_instance }),
            3 => (client, prop::bool::weighted(0.2), prop_oneof![4 => Just(0i32), 1 => Just(-1), 1 => Just(1)])
                .prop_map(|(client, simple, generation_delta)| Op::Commit { client, simple, generation_delta }),
            1 => Just(Op::Fetch),
            1 => Just(Op::Describe),
            1 => Just(Op::Delete),
            1 => Just(Op::OffsetDelete),
            3 => prop_oneof![0i64..10, 1_000i64..25_000].prop_map(Op::Advance),
            3 => Just(Op::PersistOk),
            1 => Just(Op::PersistFail),
        ]
    }

    #[derive(Clone, Default)]
    struct ClientView {
        member_id: MemberId,
        generation: i32,
        leader: bool,
        members: Vec<MemberId>,
    }

    fn learn(
        views: &mut [ClientView],
        owner: &BTreeMap<RequestId, usize>,
        responses: &BTreeMap<RequestId, Response>,
        seen: &mut std::collections::BTreeSet<RequestId>,
    ) {
        for (id, response) in responses {
            if !seen.insert(*id) {
                continue;
            }
            if let (Some(&c), Response::Join(r)) = (owner.get(id), response)
                && (r.error.is_ok() || r.error == ErrorCode::MemberIdRequired)
            {
                views[c].member_id = r.member_id.clone();
                views[c].generation = r.generation.get();
                views[c].leader = r.leader == r.member_id;
                views[c].members = r.members.iter().map(|m| m.member_id.clone()).collect();
            }
        }
    }

    proptest! {
        #[test]
        fn every_request_is_answered_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
            let mut h = Harness::new(GroupConfig { initial_rebalance_delay_ms: 1_000, ..config() });
            let mut views = vec![ClientView::default(); 3];
            let mut owner: BTreeMap<RequestId, usize> = BTreeMap::new();
            let mut sent = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut commits: BTreeMap<RequestId, bool> = BTreeMap::new();
            let mut last_generation = h.group.generation();
            for op in ops {
                let next = RequestId(h.next_request);
                match op {
                    Op::Join { client, version, fresh, instance, alt_protocol } => {
                        let protocols: &[&str] = if alt_protocol { &["roundrobin", "range"] } else { &["range"] };
                        let mut r = Harness::join_request(if fresh { "" } else { &views[client].member_id.0 }, &format!("c{client}"), protocols);
                        r.version = version;
                        r.group_instance_id = (instance && version >= 5).then(|| format!("i{client}"));
                        owner.insert(next, client);
                        sent.push(h.send(Request::Join(r)));
                    }
                    Op::Sync { client } => {
                        let v = views[client].clone();
                        let plan = if v.leader { v.members.iter().map(|m| (m.clone(), vec![1])).collect() } else { Vec::new() };
                        sent.push(h.sync(&v.member_id, v.generation, plan));
                    }
                    Op::Heartbeat { client } => {
                        let v = views[client].clone();
                        sent.push(h.send(Request::Heartbeat(HeartbeatRequest { member_id: v.member_id, generation: Generation(v.generation), group_instance_id: None })));
                    }
                    Op::Leave { client, by_instance } => {
                        let v = views[client].clone();
                        let member = if by_instance {
                            LeavingMember { member_id: MemberId::default(), group_instance_id: Some(format!("i{client}")) }
                        } else {
                            LeavingMember { member_id: v.member_id, group_instance_id: None }
                        };
                        sent.push(h.send(Request::Leave(LeaveGroupRequest { members: vec![member] })));
                    }
                    Op::Commit { client, simple, generation_delta } => {
                        let v = views[client].clone();
                        let generation = v.generation + generation_delta;
                        // spec: GRP-40, GRP-44 — who may commit right now.
                        let simple_form = simple || (generation < 0 && v.member_id.0.is_empty());
                        let allowed = if simple_form {
                            h.group.state() == GroupState::Empty
                        } else {
                            h.group.is_member(&v.member_id)
                                && h.group.generation().get() == generation
                                && matches!(h.group.state(), GroupState::Stable | GroupState::PreparingRebalance)
                        };
                        let id = if simple {
                            h.commit(&MemberId::default(), -1, 1)
                        } else {
                            h.commit(&v.member_id, generation, 1)
                        };
                        commits.insert(id, allowed);
                        sent.push(id);
                    }
                    Op::Fetch => sent.push(h.send(Request::OffsetFetch(OffsetFetchRequest { partitions: None }))),
                    Op::Describe => sent.push(h.send(Request::Describe)),
                    Op::Delete => sent.push(h.send(Request::Delete)),
                    Op::OffsetDelete => sent.push(h.send(Request::OffsetDelete(OffsetDeleteRequest {
                        partitions: vec![tp(0), tp(1)],
                    }))),
                    Op::Advance(ms) => h.advance(ms),
                    Op::PersistOk => {
                        if !h.persists.is_empty() {
                            let (id, records) = h.persists.remove(0);
                            h.log.extend(records);
                            h.group.persist_completed(h.now, id, Ok(()));
                            h.collect();
                        }
                    }
                    Op::PersistFail => {
                        if !h.persists.is_empty() {
                            let (id, _) = h.persists.remove(0);
                            h.group.persist_completed(h.now, id, Err(PersistFailure::Unavailable));
                            h.collect();
                        }
                    }
                }
                learn(&mut views, &owner, &h.responses, &mut seen);
                prop_assert!(h.group.generation() >= last_generation, "generation went down");
                last_generation = h.group.generation();
                if h.group.state() == GroupState::Stable {
                    prop_assert!(!h.group.members().is_empty());
                }
            }
            // Let every timer run out and every persist complete: nothing
            // may be left unanswered.
            for _ in 0..4 {
                h.persist_all();
                h.advance(i64::from(REBALANCE) + i64::from(SESSION));
            }
            h.persist_all();
            for id in sent {
                prop_assert!(h.response(id).is_some(), "request {:?} never answered", id);
            }
            for (id, allowed) in commits {
                let acknowledged = h.commit_errors(id).iter().all(|e| e.is_ok());
                prop_assert!(allowed || !acknowledged, "commit {:?} acknowledged from a fenced member", id);
            }
            // The log replays to the same committed offsets.
            if h.group.state() != GroupState::Dead {
                let reloaded = Group::load("g", config(), LeaderEpoch(1), h.log.clone(), h.now);
                prop_assert_eq!(reloaded.offsets(), h.group.offsets());
            }
        }
    }
}

/// spec: GRP-60 — the wire codes clients switch on.
#[test]
fn error_codes_match_kafka() {
    let codes = [
        (ErrorCode::None, 0),
        (ErrorCode::UnknownServerError, -1),
        (ErrorCode::OffsetMetadataTooLarge, 12),
        (ErrorCode::CoordinatorLoadInProgress, 14),
        (ErrorCode::CoordinatorNotAvailable, 15),
        (ErrorCode::NotCoordinator, 16),
        (ErrorCode::IllegalGeneration, 22),
        (ErrorCode::InconsistentGroupProtocol, 23),
        (ErrorCode::InvalidGroupId, 24),
        (ErrorCode::UnknownMemberId, 25),
        (ErrorCode::InvalidSessionTimeout, 26),
        (ErrorCode::RebalanceInProgress, 27),
        (ErrorCode::InvalidCommitOffsetSize, 28),
        (ErrorCode::NonEmptyGroup, 68),
        (ErrorCode::GroupIdNotFound, 69),
        (ErrorCode::MemberIdRequired, 79),
        (ErrorCode::GroupMaxSizeReached, 81),
        (ErrorCode::FencedInstanceId, 82),
    ];
    for (error, code) in codes {
        assert_eq!(error.code(), code, "{error:?}");
    }
}

/// spec: GRP-40 — the broker refuses the model-only stale-commit rule and
/// nonsensical bounds.
#[test]
fn config_validation() {
    assert_eq!(GroupConfig::default().validate(), Ok(()));
    let stale = GroupConfig {
        accept_stale_generation_commits: true,
        ..GroupConfig::default()
    };
    assert_eq!(
        stale.validate(),
        Err(GroupConfigError::StaleCommitsAccepted)
    );
    let inverted = GroupConfig {
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 5,
        ..GroupConfig::default()
    };
    assert!(matches!(
        inverted.validate(),
        Err(GroupConfigError::SessionTimeoutBounds { .. })
    ));
}

/// A lone leader of a Stable group rejoining (kafka-python does this when
/// its first plan assigned nothing) starts a rebalance that completes at
/// once, because every member has joined: the join is answered with the
/// next generation without waiting for the rebalance timeout (spec: GRP-15).
#[test]
fn lone_leader_rejoin_completes_at_once() {
    let mut h = Harness::new(config());
    let j = h.join("", "solo");
    h.advance(0);
    let id = h.join_response(j).member_id.clone();
    let s = h.sync(&id, 1, vec![(id.clone(), vec![1])]);
    h.persist_all();
    assert_eq!(h.sync_response(s).assignment, vec![1]);
    assert_eq!(h.group.state(), GroupState::Stable);

    let rejoin = h.join(&id.0, "solo");
    h.advance(0);
    let r = h.join_response(rejoin);
    assert_eq!(r.error, ErrorCode::None);
    assert_eq!(r.generation, Generation(2));
}
