//! A model of one consumer group: the real [`gregor_core::group::Group`]
//! coordinator and a handful of consumers that join, sync, heartbeat,
//! commit, leave and fall silent, checked exhaustively with
//! stateright (spec: `spec/groups.md`, invariants GRP-90–GRP-93).
//!
//! # The system
//!
//! * The coordinator is the core state machine itself. Every request a
//!   consumer sends goes through [`Group::handle`]; time passes through
//!   [`Group::on_timeout`] in unit steps ([`Action::Tick`]). Heartbeats are
//!   folded into the tick: every live consumer that has a member id
//!   heartbeats once per time unit (the heartbeat interval is below the
//!   session timeout, as Kafka requires), and learns of a rebalance from the
//!   answer. The runtime's
//!   persists to `__consumer_offsets` either complete at once or stay in
//!   flight until [`Action::PersistDone`] (when [`GroupModel::async_persist`]
//!   is set), which is where a slow leader plan and a late commit
//!   acknowledgement come from.
//! * A consumer is a small client state machine ([`Client`]) that follows
//!   Kafka's consumer protocol: JoinGroup until it is a member, SyncGroup
//!   (the leader runs a real [`gregor_core::assignor`] over the decoded
//!   subscriptions and sends encoded assignments), then heartbeats and
//!   commits. A consumer may *pause* (a crash, a long GC pause, a network
//!   partition): it stops heartbeating and handling responses, is expired
//!   by the coordinator, but still believes it owns its partitions and may
//!   commit with its old generation — the "zombie" the fencing rules exist
//!   for. A consumer may also rejoin late, leave, or wait before sending
//!   SyncGroup (a slow sync, removed at the sync deadline).
//! * Responses travel instantly; a request the coordinator holds (a join
//!   waiting for the rebalance, a sync waiting for the plan) is delivered
//!   when the coordinator releases it.
//!
//! # Properties
//!
//! Each `always` is paired with a `sometimes` so a model in which nothing
//! happens cannot pass: see [`GroupModel::properties`].

use std::collections::BTreeMap;

use gregor_core::assignor::{Assignor, MemberSubscription};
use gregor_core::consumer_protocol::{Assignment, Subscription};
use gregor_core::group::{
    CommitPartition, Effect, ErrorCode, Group, GroupConfig, GroupState, HeartbeatRequest,
    JoinGroupRequest, JoinedMember, LeaveGroupRequest, LeavingMember, OffsetCommitRequest,
    PersistId, Protocol, Request, RequestId, Response, SyncGroupRequest,
};
use gregor_core::ids::{Generation, LeaderEpoch, MemberId, Millis, Offset, TopicPartition};
use stateright::{Model, Property};

/// The one topic the consumers subscribe to.
pub const TOPIC: &str = "t";

/// Session timeout of every consumer, in model time units (ms in the core):
/// one tick without a heartbeat expires a member.
pub const SESSION_TIMEOUT: i32 = 1;
/// Rebalance timeout of every consumer: a member told of a rebalance by its
/// heartbeat at one tick may still rejoin before the next.
pub const REBALANCE_TIMEOUT: i32 = 2;

/// Bounds and switches of one model configuration.
#[derive(Clone, Debug)]
pub struct GroupModel {
    /// Number of consumers (at least 3 for the gating runs).
    pub clients: usize,
    /// Partitions of [`TOPIC`].
    pub partitions: i32,
    /// States with a higher generation are outside the boundary.
    pub max_generation: i32,
    /// Model time stops here.
    pub max_time: i64,
    /// How many consumers may pause (stop forever, except for commits).
    pub max_pauses: u8,
    /// How many times consumers may leave the group in total.
    pub max_leaves: u8,
    /// How many offset commits may be sent in total.
    pub max_commits: u8,
    /// JoinGroup version the consumers send (4+ adds MEMBER_ID_REQUIRED).
    pub join_version: i16,
    /// Whether persists stay in flight until [`Action::PersistDone`].
    pub async_persist: bool,
    /// The assignor the leader runs.
    pub assignor: Assignor,
    /// The coordinator configuration (the stale-commit variant flips
    /// `accept_stale_generation_commits`).
    pub config: GroupConfig,
}

impl GroupModel {
    /// The gating configuration: 3 consumers, 3 partitions, range.
    #[must_use]
    pub fn new() -> GroupModel {
        GroupModel {
            clients: 3,
            partitions: 3,
            max_generation: 3,
            max_time: 3,
            max_pauses: 1,
            max_leaves: 1,
            max_commits: 2,
            join_version: 3,
            async_persist: false,
            assignor: Assignor::Range,
            config: GroupConfig {
                min_session_timeout_ms: 1,
                max_session_timeout_ms: 100,
                initial_rebalance_delay_ms: 0,
                ..GroupConfig::default()
            },
        }
    }

    /// The variant that re-enables accepting commits from an older
    /// generation (spec: GRP-40); the checker must find the violation.
    #[must_use]
    pub fn accepting_stale_commits(mut self) -> GroupModel {
        self.config.accept_stale_generation_commits = true;
        self
    }
}

impl Default for GroupModel {
    fn default() -> Self {
        GroupModel::new()
    }
}

/// Where a consumer is in the group protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not (or no longer) a member as far as it knows; it may join.
    Idle,
    /// Its JoinGroup is held by the coordinator.
    Joining,
    /// It joined `generation`; the leader also holds the member list.
    Joined {
        /// The generation joined.
        generation: Generation,
        /// Whether it leads.
        leader: bool,
        /// The members and their subscriptions (leader only).
        members: Vec<JoinedMember>,
    },
    /// Its SyncGroup is held by the coordinator.
    Syncing {
        /// The generation it syncs.
        generation: Generation,
    },
    /// It consumes its assignment of `generation`.
    Active {
        /// The generation of the assignment.
        generation: Generation,
    },
}

/// One consumer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// Its member id, once the coordinator gave one.
    pub member_id: Option<MemberId>,
    /// Its protocol phase.
    pub phase: Phase,
    /// The generation of its last JoinGroup answer (-1 before).
    pub generation: Generation,
    /// Paused consumers neither heartbeat nor handle answers; they may
    /// still commit (with what they believe).
    pub paused: bool,
    /// The partitions it believes it owns and the generation they came
    /// with — kept after it is expired or rejoins, which is what makes it
    /// a stale committer.
    pub owned: Option<(Generation, Vec<i32>)>,
}

/// History the invariants are checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// A commit was acknowledged although its member was not current or its
    /// generation not the group's when it was accepted (GRP-92).
    pub fenced_commit_violation: bool,
    /// The coordinator's generation went down at some step (GRP-93).
    pub generation_regressed: bool,
    /// Some commit was acknowledged.
    pub commit_accepted: bool,
    /// Some commit from a stale generation or unknown member was refused.
    pub stale_commit_refused: bool,
    /// A member's session expired.
    pub member_expired: bool,
    /// Commits sent so far.
    pub commits: u8,
    /// Pauses so far.
    pub pauses: u8,
    /// Leaves so far.
    pub leaves: u8,
}

/// The whole system's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelState {
    /// The coordinator under check.
    pub group: Group,
    /// Model time.
    pub now: Millis,
    /// The consumers.
    pub clients: Vec<Client>,
    /// Persists in flight (with `async_persist`), oldest first.
    pub in_flight: Vec<PersistId>,
    /// Commits whose acceptance was recorded, by request, with whether the
    /// committer was current when accepted.
    pub accepted_commits: BTreeMap<RequestId, bool>,
    /// History variables.
    pub history: History,
}

/// A step of the system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Consumer `i` sends JoinGroup.
    Join(usize),
    /// Consumer `i` sends SyncGroup (with the plan, if it leads).
    Sync(usize),
    /// Consumer `i` commits an offset with the generation it last synced.
    Commit(usize),
    /// Consumer `i` leaves the group.
    Leave(usize),
    /// Consumer `i` pauses for good.
    Pause(usize),
    /// One unit of time passes; live members heartbeat.
    Tick,
    /// The oldest persist in flight completes.
    PersistDone,
}

/// Requests of one kind from one consumer share an id: a consumer never has
/// two of the same kind outstanding.
fn request_id(client: usize, kind: u64) -> RequestId {
    RequestId(client as u64 * 8 + kind)
}

const JOIN: u64 = 0;
const SYNC: u64 = 1;
const HEARTBEAT: u64 = 2;
const COMMIT: u64 = 3;
const LEAVE: u64 = 4;

impl GroupModel {
    fn subscription(&self, client: &Client) -> Vec<u8> {
        let owned = client
            .owned
            .as_ref()
            .map(|(_, ps)| ps.iter().map(|&p| TopicPartition::new(TOPIC, p)).collect())
            .unwrap_or_default();
        let generation = client.owned.as_ref().map_or(-1, |(g, _)| g.get());
        Subscription {
            version: 2,
            topics: vec![TOPIC.to_owned()],
            user_data: None,
            owned_partitions: owned,
            generation,
            rack_id: None,
        }
        .encode()
        .expect("a small subscription encodes")
    }

    /// The leader's plan: decode every member's subscription, run the
    /// assignor, encode the assignments.
    fn plan(&self, members: &[JoinedMember]) -> Vec<(MemberId, Vec<u8>)> {
        let subs: Vec<MemberSubscription> = members
            .iter()
            .map(|m| {
                let s = Subscription::decode(&m.metadata).unwrap_or_default();
                MemberSubscription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    topics: s.topics,
                    owned: s.owned_partitions,
                    generation: s.generation,
                }
            })
            .collect();
        let topics = BTreeMap::from([(TOPIC.to_owned(), self.partitions)]);
        self.assignor
            .assign(&subs, &topics)
            .into_iter()
            .map(|(id, partitions)| {
                let bytes = Assignment {
                    version: 0,
                    partitions,
                    user_data: None,
                }
                .encode()
                .expect("a small assignment encodes");
                (id, bytes)
            })
            .collect()
    }

    /// Sends one request and settles everything it causes.
    fn send(&self, s: &mut ModelState, client: usize, kind: u64, request: Request) {
        let id = request_id(client, kind);
        s.group.handle(s.now, id, request);
        self.settle(s);
    }

    /// Drains the coordinator's effects: responses go to their consumers,
    /// persists complete at once or join the in-flight queue. Timers already
    /// due fire at once, as the broker's timer would.
    fn settle(&self, s: &mut ModelState) {
        loop {
            let mut effects: Vec<Effect> = s.group.drain_effects().collect();
            if effects.is_empty() && s.group.next_deadline().is_some_and(|d| d <= s.now) {
                s.group.on_timeout(s.now);
                effects = s.group.drain_effects().collect();
            }
            if effects.is_empty() {
                return;
            }
            for effect in effects {
                match effect {
                    Effect::Respond { request, response } => self.deliver(s, request, response),
                    Effect::Persist { id, .. } => {
                        if self.async_persist {
                            s.in_flight.push(id);
                        } else {
                            s.group.persist_completed(s.now, id, Ok(()));
                        }
                    }
                }
            }
        }
    }

    fn deliver(&self, s: &mut ModelState, request: RequestId, response: Response) {
        let i = usize::try_from(request.0 / 8).unwrap_or(usize::MAX);
        let Some(c) = s.clients.get_mut(i) else {
            return;
        };
        if c.paused {
            if let Response::OffsetCommit(r) = response {
                self.commit_answered(s, request, &r.partitions);
            }
            return;
        }
        match response {
            Response::Join(r) => match r.error {
                ErrorCode::None => {
                    c.member_id = Some(r.member_id.clone());
                    c.generation = r.generation;
                    c.phase = Phase::Joined {
                        generation: r.generation,
                        leader: r.leader == r.member_id,
                        members: r.members,
                    };
                }
                ErrorCode::MemberIdRequired => {
                    c.member_id = Some(r.member_id);
                    c.phase = Phase::Idle;
                }
                ErrorCode::RebalanceInProgress => {}
                _ => {
                    c.member_id = None;
                    c.phase = Phase::Idle;
                }
            },
            Response::Sync(r) => match r.error {
                ErrorCode::None => {
                    let generation = match c.phase {
                        Phase::Syncing { generation } => generation,
                        _ => return,
                    };
                    let partitions = Assignment::decode(&r.assignment)
                        .map(|a| a.partitions.into_iter().map(|tp| tp.partition).collect())
                        .unwrap_or_default();
                    c.owned = Some((generation, partitions));
                    c.phase = Phase::Active { generation };
                }
                ErrorCode::RebalanceInProgress => c.phase = Phase::Idle,
                _ => {
                    c.member_id = None;
                    c.phase = Phase::Idle;
                }
            },
            Response::Heartbeat(e) => match e {
                ErrorCode::None => {}
                ErrorCode::RebalanceInProgress => c.phase = Phase::Idle,
                _ => {
                    c.member_id = None;
                    c.phase = Phase::Idle;
                }
            },
            Response::OffsetCommit(r) => self.commit_answered(s, request, &r.partitions),
            Response::Leave(_)
            | Response::OffsetFetch(_)
            | Response::Describe(_)
            | Response::Delete(_)
            | Response::OffsetDelete(_) => {}
        }
    }
}

impl GroupModel {
    /// Records a commit's outcome against whether its committer was
    /// current when the commit was sent (spec: GRP-92).
    fn commit_answered(
        &self,
        s: &mut ModelState,
        request: RequestId,
        partitions: &[(TopicPartition, ErrorCode)],
    ) {
        let was_current = s.accepted_commits.remove(&request);
        if partitions.iter().all(|(_, e)| e.is_ok()) {
            s.history.commit_accepted = true;
            if was_current == Some(false) {
                s.history.fenced_commit_violation = true;
            }
        } else if was_current == Some(false) {
            s.history.stale_commit_refused = true;
        }
    }

    /// Heartbeats of every live consumer with a member id, all at `s.now`
    /// before any timer fires.
    fn heartbeats(&self, s: &mut ModelState) {
        for i in 0..s.clients.len() {
            let c = &s.clients[i];
            let Some(member_id) = c.member_id.clone() else {
                continue;
            };
            if c.paused || matches!(c.phase, Phase::Joining | Phase::Syncing { .. }) {
                continue;
            }
            let request = HeartbeatRequest {
                member_id,
                generation: c.generation,
                group_instance_id: None,
            };
            s.group
                .handle(s.now, request_id(i, HEARTBEAT), Request::Heartbeat(request));
        }
        self.settle(s);
    }
}

impl Model for GroupModel {
    type State = ModelState;
    type Action = Action;

    fn init_states(&self) -> Vec<ModelState> {
        vec![ModelState {
            group: Group::new("g", self.config.clone(), LeaderEpoch(0), Millis(0)),
            now: Millis(0),
            clients: vec![
                Client {
                    member_id: None,
                    phase: Phase::Idle,
                    generation: Generation(-1),
                    paused: false,
                    owned: None,
                };
                self.clients
            ],
            in_flight: Vec::new(),
            accepted_commits: BTreeMap::new(),
            history: History::default(),
        }]
    }

    fn actions(&self, s: &ModelState, actions: &mut Vec<Action>) {
        for (i, c) in s.clients.iter().enumerate() {
            if !c.paused {
                match c.phase {
                    Phase::Idle => actions.push(Action::Join(i)),
                    Phase::Joined { .. } => actions.push(Action::Sync(i)),
                    Phase::Active { .. } if s.history.leaves < self.max_leaves => {
                        actions.push(Action::Leave(i));
                    }
                    Phase::Active { .. } | Phase::Joining | Phase::Syncing { .. } => {}
                }
            }
            if c.owned.is_some()
                && c.member_id.is_some()
                && s.history.commits < self.max_commits
                && !s.accepted_commits.contains_key(&request_id(i, COMMIT))
            {
                actions.push(Action::Commit(i));
            }
            if !c.paused && s.history.pauses < self.max_pauses {
                actions.push(Action::Pause(i));
            }
        }
        if s.now.get() < self.max_time {
            actions.push(Action::Tick);
        }
        if !s.in_flight.is_empty() {
            actions.push(Action::PersistDone);
        }
    }

    fn next_state(&self, last: &ModelState, action: Action) -> Option<ModelState> {
        let mut s = last.clone();
        let generation_before = s.group.generation();
        match action {
            Action::Join(i) => {
                let c = &s.clients[i];
                let request = JoinGroupRequest {
                    version: self.join_version,
                    member_id: c.member_id.clone().unwrap_or_default(),
                    group_instance_id: None,
                    client_id: format!("c{i}"),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: SESSION_TIMEOUT,
                    rebalance_timeout_ms: REBALANCE_TIMEOUT,
                    protocol_type: "consumer".into(),
                    protocols: vec![Protocol {
                        name: self.assignor.name().into(),
                        metadata: self.subscription(c),
                    }],
                };
                s.clients[i].phase = Phase::Joining;
                self.send(&mut s, i, JOIN, Request::Join(request));
            }
            Action::Sync(i) => {
                let c = &s.clients[i];
                let Phase::Joined {
                    generation,
                    leader,
                    members,
                } = &c.phase
                else {
                    return None;
                };
                let generation = *generation;
                let assignments = if *leader {
                    self.plan(members)
                } else {
                    Vec::new()
                };
                let request = SyncGroupRequest {
                    member_id: c.member_id.clone().unwrap_or_default(),
                    generation,
                    group_instance_id: None,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some(self.assignor.name().into()),
                    assignments,
                };
                s.clients[i].phase = Phase::Syncing { generation };
                self.send(&mut s, i, SYNC, Request::Sync(request));
            }
            Action::Commit(i) => {
                let c = &s.clients[i];
                let (generation, _) = c.owned.clone()?;
                let member_id = c.member_id.clone()?;
                // Whether the committer is current right now: the only
                // commits the coordinator may accept (spec: GRP-40).
                let current = s.group.is_member(&member_id) && s.group.generation() == generation;
                s.history.commits += 1;
                s.accepted_commits.insert(request_id(i, COMMIT), current);
                let request = OffsetCommitRequest {
                    member_id,
                    generation,
                    group_instance_id: None,
                    retention_ms: None,
                    partitions: vec![CommitPartition {
                        partition: TopicPartition::new(TOPIC, 0),
                        offset: Offset(i64::from(s.history.commits)),
                        leader_epoch: LeaderEpoch(0),
                        metadata: None,
                    }],
                };
                self.send(&mut s, i, COMMIT, Request::OffsetCommit(request));
            }
            Action::Leave(i) => {
                let member_id = s.clients[i].member_id.clone()?;
                s.history.leaves += 1;
                s.clients[i].member_id = None;
                s.clients[i].phase = Phase::Idle;
                s.clients[i].owned = None;
                let request = LeaveGroupRequest {
                    members: vec![LeavingMember {
                        member_id,
                        group_instance_id: None,
                    }],
                };
                self.send(&mut s, i, LEAVE, Request::Leave(request));
            }
            Action::Pause(i) => {
                s.clients[i].paused = true;
                s.history.pauses += 1;
            }
            Action::Tick => {
                s.now = s.now.plus(1);
                let before = s.group.members().len();
                self.heartbeats(&mut s);
                s.group.on_timeout(s.now);
                self.settle(&mut s);
                if s.group.members().len() < before {
                    s.history.member_expired = true;
                }
            }
            Action::PersistDone => {
                let id = s.in_flight.remove(0);
                s.group.persist_completed(s.now, id, Ok(()));
                self.settle(&mut s);
            }
        }
        if s.group.generation() < generation_before {
            s.history.generation_regressed = true;
        }
        Some(s)
    }

    fn within_boundary(&self, s: &ModelState) -> bool {
        s.group.generation().get() <= self.max_generation
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            // spec: GRP-90
            Property::<Self>::always("no double assignment", |_, s| no_double_assignment(s)),
            Property::<Self>::sometimes("two members share a generation", |_, s| {
                active_generations(s).windows(2).any(|w| w[0] == w[1])
            }),
            // spec: GRP-91
            Property::<Self>::always("stable means complete", stable_is_complete),
            Property::<Self>::sometimes("a rebalance completed", |_, s| {
                s.group.state() == GroupState::Stable && s.group.members().len() >= 2
            }),
            // spec: GRP-92
            Property::<Self>::always("fenced commits", |_, s| !s.history.fenced_commit_violation),
            Property::<Self>::sometimes("a commit was accepted", |_, s| s.history.commit_accepted),
            Property::<Self>::sometimes("a stale commit was refused", |_, s| {
                s.history.stale_commit_refused
            }),
            // spec: GRP-93
            Property::<Self>::always("generations only grow", |_, s| {
                !s.history.generation_regressed
            }),
            Property::<Self>::sometimes("a member expired and the group moved on", |_, s| {
                s.history.member_expired && s.group.generation().get() >= 2
            }),
        ]
    }
}

/// The generations of consumers that hold an assignment, sorted.
fn active_generations(s: &ModelState) -> Vec<i32> {
    let mut v: Vec<i32> = s
        .clients
        .iter()
        .filter_map(|c| match c.phase {
            Phase::Active { generation } => Some(generation.get()),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

/// spec: GRP-90 — no partition is owned twice within one generation, neither
/// by consumers that believe they are active nor in the coordinator's
/// assignments.
fn no_double_assignment(s: &ModelState) -> bool {
    let mut owners: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    for c in &s.clients {
        if let (Phase::Active { generation }, Some((owned_generation, partitions))) =
            (&c.phase, &c.owned)
        {
            debug_assert_eq!(generation, owned_generation);
            for &p in partitions {
                *owners.entry((generation.get(), p)).or_default() += 1;
            }
        }
    }
    if owners.values().any(|&n| n > 1) {
        return false;
    }
    let mut seen = std::collections::BTreeSet::new();
    s.group.members().values().all(|m| {
        Assignment::decode(&m.assignment)
            .map(|a| a.partitions.into_iter().all(|tp| seen.insert(tp)))
            .unwrap_or(false)
    })
}

/// spec: GRP-91 — in Stable every partition has exactly one owner among the
/// coordinator's members.
fn stable_is_complete(m: &GroupModel, s: &ModelState) -> bool {
    if s.group.state() != GroupState::Stable {
        return true;
    }
    let mut owned: Vec<i32> = Vec::new();
    for member in s.group.members().values() {
        match Assignment::decode(&member.assignment) {
            Ok(a) => owned.extend(a.partitions.into_iter().map(|tp| tp.partition)),
            Err(_) => return false,
        }
    }
    owned.sort_unstable();
    owned == (0..m.partitions).collect::<Vec<_>>()
}
