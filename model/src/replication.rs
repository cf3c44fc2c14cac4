//! The replication model: one partition, its replicas, a producer, a
//! consumer and the controller, driven through the real
//! [`gregor_core::replica::Replica`] and [`gregor_core::controller::Controller`].
//!
//! The protocol is Kafka's ISR replication as specified in
//! `spec/replication.md` (after KIP-101 leader epochs, KIP-279's walk-back,
//! KIP-320's fetch fencing and KIP-497's maximal ISR). The model is a plain
//! stateright [`Model`]: its state is the whole system — every broker's
//! replica and stored records, the controller, the messages in flight and
//! history variables — and every action is atomic. The model plays the
//! runtime: it holds the record "bytes" (record ids), applies the effects the
//! core emits, and moves messages between replicas.
//!
//! Failures, each bounded by a counter (REP-29): a process crash with the
//! disk intact, a power loss that drops the unflushed suffix, a broker whose
//! coordination session expires while it keeps running (a zombie), a lag
//! timeout that lets a leader shrink its ISR, and lost or late fetch
//! answers (a late answer is one delivered after its receiver moved to
//! another epoch or offset). Restarts, re-registration, message delivery and
//! flushes are unbounded: they heal, and bounding them would hide states.
//!
//! The properties are the invariants REP-30 to REP-35, each paired with a
//! `sometimes` guard so that a model in which nothing happens cannot pass.

use std::collections::{BTreeMap, BTreeSet};

use gregor_core::controller::{Controller, ControllerConfig, ControllerEffect, PartitionState};
use gregor_core::ids::{BrokerId, LeaderEpoch, Millis, Offset, PartitionEpoch, TopicPartition};
use gregor_core::log::LogMeta;
use gregor_core::replica::{
    Acks, Effect, FetchResponse, FollowerRequest, IsrProposal, LegacyRules, Replica, ReplicaConfig,
};
use stateright::{Model, Property};

/// A record as stored: the record's id (its producer-assigned value) and the
/// leader epoch that wrote it.
pub type Rec = (u8, LeaderEpoch);

/// `replica.lag.time.max.ms` in the model; a tick moves the clock just past
/// it.
pub const LAG_MS: i64 = 10;

/// The bounds and switches of one model configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicationModel {
    /// Replicas (and brokers), 1..=n.
    pub replicas: usize,
    /// Records the producer sends, one per request.
    pub max_records: u8,
    /// The largest leader epoch explored (the first leader has epoch 1).
    pub max_leader_epoch: i32,
    /// Process crashes (disk intact), in total.
    pub max_crashes: u8,
    /// Power losses (unflushed suffix dropped), in total.
    pub max_power_losses: u8,
    /// Session expiries of running brokers (zombies), in total.
    pub max_zombies: u8,
    /// Clock ticks past the lag time (which make ISR shrinks possible), in
    /// total.
    pub max_lag_timeouts: u8,
    /// Fetch answers held in flight (delivered late, or lost), in total.
    /// Other fetches are answered atomically.
    pub max_delayed_fetches: u8,
    /// Whether brokers flush (a `Flush` action); without flushes a power
    /// loss drops every record of the broker, the harshest case.
    pub flushes: bool,
    /// The producer's acks mode.
    pub acks: Acks,
    /// `min.insync.replicas` for replicas and controller.
    pub min_insync_replicas: usize,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
    /// Historical unsafe rules.
    pub legacy: LegacyRules,
}

impl ReplicationModel {
    /// The safe gating configuration: 3 replicas, 2 records, leader epochs up
    /// to 4, acks=all, `min.insync.replicas=2`, one power loss, one zombie.
    #[must_use]
    pub fn safe() -> Self {
        Self {
            replicas: 3,
            max_records: 2,
            max_leader_epoch: 4,
            max_crashes: 2,
            max_power_losses: 1,
            max_zombies: 1,
            max_lag_timeouts: 1,
            flushes: false,
            max_delayed_fetches: 1,
            acks: Acks::All,
            min_insync_replicas: 2,
            unclean_leader_election: false,
            legacy: LegacyRules::default(),
        }
    }

    /// The first exhaustively checked safe configuration (REP-36): leader
    /// epochs up to 4, one power loss and one zombie, no other perturbation.
    #[must_use]
    pub fn safe_gating() -> Self {
        Self {
            max_crashes: 0,
            max_lag_timeouts: 0,
            max_delayed_fetches: 0,
            ..Self::safe()
        }
    }

    /// The second exhaustively checked safe configuration (REP-36): a
    /// process crash, a clock tick that allows an ISR shrink and one late or
    /// lost fetch answer, at leader epochs up to 2.
    #[must_use]
    pub fn safe_with_crash_and_lag() -> Self {
        Self {
            max_leader_epoch: 2,
            max_crashes: 1,
            max_power_losses: 0,
            max_zombies: 0,
            max_lag_timeouts: 1,
            max_delayed_fetches: 1,
            ..Self::safe()
        }
    }

    fn broker(i: usize) -> BrokerId {
        BrokerId(i as i32 + 1)
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn replica_config(&self, i: usize) -> ReplicaConfig {
        ReplicaConfig {
            broker: Self::broker(i),
            min_insync_replicas: self.min_insync_replicas,
            replica_lag_time_max_ms: LAG_MS,
            legacy: self.legacy,
        }
    }
}

/// One broker as the model sees it.
// A running broker is the common case; boxing it would only add an
// allocation per clone on the checker's hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Broker {
    /// Running.
    Up {
        /// The core replica.
        replica: Replica,
        /// The stored records, one per offset (the runtime's bytes).
        data: Vec<Rec>,
        /// Whether its coordination session is live; `false` for a zombie.
        registered: bool,
    },
    /// Not running; the disk survives.
    Down {
        /// The log metadata recovered at the next start.
        log: LogMeta,
        /// The stored records.
        data: Vec<Rec>,
        /// The checkpointed high watermark.
        hw: Offset,
        /// Whether the shutdown kept every written record.
        clean: bool,
    },
}

/// A fetch answer in flight, with the records it carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InFlightFetch {
    /// The leader's answer.
    pub response: FetchResponse,
    /// The records from `response.fetch_offset` on.
    pub records: Vec<Rec>,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Brokers, index `i` is broker `i + 1`.
    pub brokers: Vec<Broker>,
    /// The controller.
    pub controller: Controller,
    /// The newest LeaderAndIsr not yet delivered to each broker.
    pub mailbox: Vec<Option<PartitionState>>,
    /// AlterPartition requests in flight.
    pub isr_requests: BTreeSet<IsrProposal>,
    /// One fetch answer in flight per follower.
    pub fetches: Vec<Option<InFlightFetch>>,
    /// The model clock.
    pub now: Millis,
    /// Records produced so far (record ids are 1..=produced).
    pub produced: u8,
    /// Perturbation counters.
    pub crashes: u8,
    /// Power losses so far.
    pub power_losses: u8,
    /// Session expiries so far.
    pub zombies: u8,
    /// Lag timeouts so far.
    pub lag_timeouts: u8,
    /// Fetch answers held in flight so far.
    pub delayed_fetches: u8,
    /// History: records acknowledged to the acks=all producer, by offset.
    pub acked: BTreeMap<i64, Rec>,
    /// History: records that were below some leader's high watermark.
    pub committed: BTreeMap<i64, Rec>,
    /// History: records the consumer read, by offset.
    pub read: BTreeMap<i64, Rec>,
    /// History: the leader of each epoch.
    pub epoch_leaders: BTreeMap<LeaderEpoch, BrokerId>,
    /// History: an invariant checked on a transition failed (the name).
    pub violation: Option<&'static str>,
}

/// An atomic step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The producer sends the next record to broker `b`, which believes it
    /// leads.
    Produce(usize),
    /// Broker `b` applies its pending LeaderAndIsr.
    DeliverPartitionState(usize),
    /// Follower `b` sends OffsetsForLeaderEpoch and gets the answer.
    QueryEpoch(usize),
    /// Follower `b`'s fetch is served by its leader and answered at once.
    Fetch(usize),
    /// Follower `b`'s fetch is served by its leader; the answer stays in
    /// flight (to arrive late, or never).
    FetchDelayed(usize),
    /// The fetch answer in flight to `b` arrives.
    DeliverFetch(usize),
    /// The fetch answer in flight to `b` is lost.
    LoseFetch(usize),
    /// The controller handles an AlterPartition request and answers.
    AlterPartition(IsrProposal),
    /// Broker `b` flushes its log.
    Flush(usize),
    /// Time passes by more than `replica.lag.time.max.ms`.
    Tick,
    /// Leader `b`'s lag timer fires (REP-9).
    LagTimeout(usize),
    /// Broker `b`'s process dies; the disk is intact.
    Crash(usize),
    /// Broker `b` loses power: the unflushed suffix is gone.
    PowerLoss(usize),
    /// Broker `b` starts again.
    Restart(usize),
    /// Broker `b`'s session expires while it keeps running.
    ExpireSession(usize),
    /// Zombie `b` registers again.
    Reregister(usize),
    /// The consumer reads every offset below the HW of broker `b`, which
    /// believes it leads.
    Read(usize),
}

impl State {
    /// The replica of broker `i`, if running.
    #[must_use]
    pub fn replica(&self, i: usize) -> Option<&Replica> {
        match &self.brokers[i] {
            Broker::Up { replica, .. } => Some(replica),
            Broker::Down { .. } => None,
        }
    }

    /// The stored records of broker `i`.
    #[must_use]
    pub fn data(&self, i: usize) -> &[Rec] {
        match &self.brokers[i] {
            Broker::Up { data, .. } | Broker::Down { data, .. } => data,
        }
    }

    fn registered(&self, i: usize) -> bool {
        matches!(
            self.brokers[i],
            Broker::Up {
                registered: true,
                ..
            }
        )
    }

    fn partition(&self) -> &PartitionState {
        self.controller
            .partition(&ReplicationModel::tp())
            .expect("the model's partition exists")
    }

    /// The controller's leader, if it is running, registered and has taken
    /// over in the controller's epoch.
    #[must_use]
    pub fn acting_leader(&self) -> Option<usize> {
        let p = self.partition();
        let i = p.leader?.get() as usize - 1;
        let r = self.replica(i)?;
        (self.registered(i) && r.is_leader() && r.leader_epoch() == p.leader_epoch).then_some(i)
    }
}

impl ReplicationModel {
    fn deliver_controller_effects(state: &mut State, effects: Vec<ControllerEffect>) {
        for ControllerEffect::SendPartitionState {
            broker, state: ps, ..
        } in effects
        {
            let i = broker.get() as usize - 1;
            // A change of ISR only (same leader epoch) matters to the leader
            // alone; followers would only record the new partition epoch.
            let isr_only = state
                .replica(i)
                .is_some_and(|r| r.leader_epoch() == ps.leader_epoch && ps.leader != Some(broker));
            if state.registered(i) && !isr_only {
                state.mailbox[i] = Some(ps);
            }
        }
    }

    fn registered_again(state: &mut State, i: usize) {
        let epoch = state.controller.broker_epoch(Self::broker(i));
        if let (Broker::Up { replica, .. }, Some(epoch)) = (&mut state.brokers[i], epoch) {
            replica.handle_registered(epoch);
        }
    }

    /// Drains broker `i`'s effects and applies them as the runtime would.
    /// `payload` holds the records of the fetch answer being applied.
    fn drain(&self, state: &mut State, i: usize, payload: Option<&InFlightFetch>) {
        let Broker::Up { replica, data, .. } = &mut state.brokers[i] else {
            return;
        };
        let mut acked = Vec::new();
        let mut proposals = Vec::new();
        while let Some(effect) = replica.poll_effect() {
            match effect {
                Effect::Append {
                    base,
                    count,
                    epoch,
                    request,
                } => {
                    for o in base.get()..base.get() + count {
                        let rec = match (request, payload) {
                            (Some(req), _) => (req as u8, epoch),
                            (None, Some(p)) => {
                                p.records[(o - p.response.fetch_offset.get()) as usize]
                            }
                            (None, None) => unreachable!("a follower append without a fetch"),
                        };
                        assert_eq!(rec.1, epoch, "the fetched record's epoch matches the batch");
                        assert_eq!(data.len() as i64, o, "appends are contiguous");
                        data.push(rec);
                    }
                }
                Effect::Truncate { offset } => data.truncate(offset.get() as usize),
                // Deleting records on request (REP-71) is outside the
                // model: no action issues DeleteRecords.
                Effect::AdvanceLogStart { .. } => unreachable!("the model deletes no records"),
                Effect::ProposeIsr(p) => proposals.push(p),
                Effect::ProduceCompleted {
                    base,
                    result: Ok(()),
                    ..
                } => {
                    acked.push((base.get(), data[base.get() as usize]));
                }
                Effect::ProduceCompleted { result: Err(_), .. }
                | Effect::BeginEpoch { .. }
                | Effect::HighWatermark(_) => {}
            }
        }
        assert_eq!(
            data.len() as i64,
            replica.log().log_end().get(),
            "the stored records match the log metadata"
        );
        if self.acks == Acks::All {
            state.acked.extend(acked);
        }
        state.isr_requests.extend(proposals);
    }

    fn crash(state: &mut State, i: usize, power_loss: bool) {
        let Broker::Up {
            replica,
            data,
            registered,
        } = &state.brokers[i]
        else {
            return;
        };
        let mut log = replica.log().clone();
        let mut data = data.clone();
        if power_loss {
            log.lose_unflushed();
            data.truncate(log.log_end().get() as usize);
        }
        let registered = *registered;
        state.brokers[i] = Broker::Down {
            log,
            data,
            hw: replica.high_watermark(),
            clean: !power_loss,
        };
        state.fetches[i] = None;
        state.mailbox[i] = None;
        if registered {
            let effects = state.controller.handle_broker_failure(Self::broker(i));
            Self::deliver_controller_effects(state, effects);
        }
    }

    /// History and transition checks after every step.
    fn observe(&self, before: &State, state: &mut State) {
        for i in 0..self.replicas {
            let Some(r) = state.replica(i) else { continue };
            let (is_leader, epoch, hw) = (r.is_leader(), r.leader_epoch(), r.high_watermark());
            if let Some(old) = before.replica(i) {
                if epoch < old.leader_epoch() {
                    state
                        .violation
                        .get_or_insert("REP-33: a replica's epoch went back");
                }
                if old.is_leader()
                    && is_leader
                    && old.leader_epoch() == epoch
                    && hw < old.high_watermark()
                {
                    state
                        .violation
                        .get_or_insert("REP-34: a leader's HW went back");
                }
            }
            if is_leader {
                let mut conflict = false;
                let Broker::Up { data, .. } = &state.brokers[i] else {
                    continue;
                };
                for (o, rec) in data[..hw.get() as usize].iter().enumerate() {
                    if *state.committed.entry(o as i64).or_insert(*rec) != *rec {
                        conflict = true;
                    }
                }
                if conflict {
                    state
                        .violation
                        .get_or_insert("REP-30: two leaders committed different records");
                }
                if *state.epoch_leaders.entry(epoch).or_insert(Self::broker(i)) != Self::broker(i) {
                    state
                        .violation
                        .get_or_insert("REP-33: two leaders in one epoch");
                }
            }
        }
        if state.partition().leader_epoch < before.partition().leader_epoch {
            state
                .violation
                .get_or_insert("REP-33: the controller's epoch went back");
        }
    }

    fn properties_list() -> Vec<Property<Self>> {
        vec![
            Property::<Self>::always("REP-30 no committed loss", |_, s| no_committed_loss(s)),
            Property::<Self>::always("REP-31 log matching", log_matching),
            Property::<Self>::always("REP-32 consistent read", |_, s| {
                s.violation.is_none_or(|v| !v.starts_with("REP-32"))
            }),
            Property::<Self>::always("REP-33 monotonic epochs, one leader per epoch", |_, s| {
                s.violation.is_none_or(|v| !v.starts_with("REP-33"))
            }),
            Property::<Self>::always("REP-34 HW monotonic and at most LEO", |m, s| {
                s.violation.is_none_or(|v| !v.starts_with("REP-34"))
                    && (0..m.replicas).all(|i| {
                        s.replica(i)
                            .is_none_or(|r| r.high_watermark() <= r.log().log_end())
                    })
            }),
            Property::<Self>::always("REP-35 leader in ISR", leader_in_isr),
            Property::<Self>::sometimes("a record was committed", |m, s| match m.acks {
                Acks::All => !s.acked.is_empty(),
                Acks::Leader => !s.committed.is_empty(),
            }),
            Property::<Self>::sometimes("the leader changed after a commit", |_, s| {
                s.committed
                    .values()
                    .any(|rec| rec.1 < s.partition().leader_epoch)
                    && s.acting_leader().is_some()
            }),
            Property::<Self>::sometimes("a record was read", |_, s| !s.read.is_empty()),
            // The guards of a perturbation hold trivially when the
            // configuration disables it.
            Property::<Self>::sometimes("a zombie leader served a write", |m, s| {
                m.max_zombies == 0
                    || (0..s.brokers.len()).any(|i| {
                    matches!(&s.brokers[i], Broker::Up { replica, registered: false, data }
                        if replica.is_leader() && data.last().is_some_and(|r| r.1 == replica.leader_epoch()))
                })
            }),
            Property::<Self>::sometimes("a broker lost power", |m, s| {
                m.max_power_losses == 0 || s.power_losses > 0
            }),
            Property::<Self>::sometimes("a late fetch answer arrived", |m, s| {
                m.max_delayed_fetches == 0
                    || (s.delayed_fetches > 0 && s.fetches.iter().all(Option::is_none))
            }),
        ]
    }
}

/// REP-30: every acknowledged or committed record is held at its offset by
/// the acting leader and by every live, registered ISR member.
fn no_committed_loss(s: &State) -> bool {
    if s.violation.is_some_and(|v| v.starts_with("REP-30")) {
        return false;
    }
    let p = s.partition();
    let holds = |i: usize| {
        let data = s.data(i);
        s.acked
            .iter()
            .chain(s.committed.iter())
            .all(|(o, rec)| data.get(*o as usize) == Some(rec))
    };
    if let Some(l) = s.acting_leader()
        && !holds(l)
    {
        return false;
    }
    p.isr.iter().all(|b| {
        let i = b.get() as usize - 1;
        !s.registered(i) || holds(i)
    })
}

/// REP-31: running replicas agree below the lower of their HWs.
fn log_matching(m: &ReplicationModel, s: &State) -> bool {
    for a in 0..m.replicas {
        let Some(ra) = s.replica(a) else { continue };
        for b in a + 1..m.replicas {
            let Some(rb) = s.replica(b) else { continue };
            let hw = ra.high_watermark().min(rb.high_watermark()).get() as usize;
            if s.data(a)[..hw] != s.data(b)[..hw] {
                return false;
            }
        }
    }
    true
}

/// REP-35: the controller's leader is in its ISR, and every replica acting
/// as leader counts itself in its ISR.
fn leader_in_isr(m: &ReplicationModel, s: &State) -> bool {
    let p = s.partition();
    p.leader.is_none_or(|l| p.isr.contains(&l))
        && (0..m.replicas).all(|i| {
            s.replica(i)
                .and_then(Replica::as_leader)
                .is_none_or(|l| l.isr().contains(&ReplicationModel::broker(i)))
        })
}

impl Model for ReplicationModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut controller = Controller::new(ControllerConfig {
            min_insync_replicas: self.min_insync_replicas,
            unclean_leader_election: self.unclean_leader_election,
        });
        controller.set_legacy_rules(self.legacy);
        let replicas: Vec<BrokerId> = (0..self.replicas).map(Self::broker).collect();
        // The topic exists with leader epoch 1 on the first replica; every
        // broker is registered and holds its LeaderAndIsr in its mailbox.
        let initial = PartitionState {
            replicas: replicas.clone(),
            leader: Some(replicas[0]),
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(1),
            isr: replicas.iter().copied().collect(),
        };
        controller.insert_partition(Self::tp(), initial.clone());
        for b in &replicas {
            controller.register_broker(*b, None);
            controller.handle_broker_startup(*b, true);
        }
        let brokers = (0..self.replicas)
            .map(|i| {
                let mut replica = Replica::new(self.replica_config(i), LogMeta::new(), Offset(0));
                replica.handle_registered(controller.broker_epoch(Self::broker(i)).unwrap_or(0));
                Broker::Up {
                    replica,
                    data: Vec::new(),
                    registered: true,
                }
            })
            .collect();
        vec![State {
            brokers,
            controller,
            mailbox: vec![Some(initial); self.replicas],
            isr_requests: BTreeSet::new(),
            fetches: vec![None; self.replicas],
            now: Millis(0),
            produced: 0,
            crashes: 0,
            power_losses: 0,
            zombies: 0,
            lag_timeouts: 0,
            delayed_fetches: 0,
            acked: BTreeMap::new(),
            committed: BTreeMap::new(),
            read: BTreeMap::new(),
            epoch_leaders: BTreeMap::new(),
            violation: None,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for i in 0..self.replicas {
            match &s.brokers[i] {
                Broker::Up {
                    replica,
                    registered,
                    ..
                } => {
                    if replica.is_leader() {
                        if s.produced < self.max_records {
                            actions.push(Action::Produce(i));
                        }
                        // The consumer reads everything below this leader's
                        // HW; the step matters only if it reads something new
                        // or something different (REP-32).
                        let hw = replica.high_watermark().get() as usize;
                        let data = s.data(i);
                        if (0..hw).any(|o| s.read.get(&(o as i64)) != Some(&data[o])) {
                            actions.push(Action::Read(i));
                        }
                        if replica.next_deadline().is_some_and(|d| d <= s.now) {
                            actions.push(Action::LagTimeout(i));
                        }
                    }
                    if s.mailbox[i].is_some() {
                        actions.push(Action::DeliverPartitionState(i));
                    }
                    match replica.poll_request() {
                        Some(FollowerRequest::OffsetsForLeaderEpoch { leader, .. })
                            if s.replica(leader.get() as usize - 1).is_some() =>
                        {
                            actions.push(Action::QueryEpoch(i));
                        }
                        Some(FollowerRequest::Fetch { leader, .. })
                            if s.fetches[i].is_none()
                                && s.replica(leader.get() as usize - 1).is_some() =>
                        {
                            actions.push(Action::Fetch(i));
                            if s.delayed_fetches < self.max_delayed_fetches {
                                actions.push(Action::FetchDelayed(i));
                            }
                        }
                        _ => {}
                    }
                    if s.fetches[i].is_some() {
                        actions.push(Action::DeliverFetch(i));
                        actions.push(Action::LoseFetch(i));
                    }
                    if self.flushes && replica.log().recovery_point() < replica.log().log_end() {
                        actions.push(Action::Flush(i));
                    }
                    if s.crashes < self.max_crashes {
                        actions.push(Action::Crash(i));
                    }
                    if s.power_losses < self.max_power_losses
                        && replica.log().recovery_point() < replica.log().log_end()
                    {
                        actions.push(Action::PowerLoss(i));
                    }
                    if *registered {
                        if s.zombies < self.max_zombies {
                            actions.push(Action::ExpireSession(i));
                        }
                    } else {
                        actions.push(Action::Reregister(i));
                    }
                }
                Broker::Down { .. } => actions.push(Action::Restart(i)),
            }
        }
        if s.lag_timeouts < self.max_lag_timeouts {
            actions.push(Action::Tick);
        }
        for p in &s.isr_requests {
            actions.push(Action::AlterPartition(p.clone()));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let now = s.now;
        match action {
            Action::Produce(i) => {
                let id = s.produced + 1;
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                replica
                    .handle_produce(u64::from(id), 1, self.acks, now)
                    .ok()?;
                s.produced = id;
                self.drain(&mut s, i, None);
            }
            Action::DeliverPartitionState(i) => {
                let ps = s.mailbox[i].take()?;
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                replica.handle_partition_state(&ps, now);
                self.drain(&mut s, i, None);
            }
            Action::QueryEpoch(i) => {
                let Some(FollowerRequest::OffsetsForLeaderEpoch { leader, query }) =
                    s.replica(i)?.poll_request()
                else {
                    return None;
                };
                let answer = s
                    .replica(leader.get() as usize - 1)?
                    .handle_offsets_for_leader_epoch(&query);
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                match answer {
                    Ok(a) => {
                        replica.handle_epoch_response(query.current_leader_epoch, query.epoch, a)
                    }
                    Err(e) => replica.handle_fetch_error(query.current_leader_epoch, e),
                }
                self.drain(&mut s, i, None);
            }
            Action::Fetch(i) | Action::FetchDelayed(i) => {
                let delayed = matches!(action, Action::FetchDelayed(_));
                let Some(FollowerRequest::Fetch { leader, request }) = s.replica(i)?.poll_request()
                else {
                    return None;
                };
                let l = leader.get() as usize - 1;
                let follower_hw = s.replica(i)?.high_watermark();
                let Broker::Up { replica, data, .. } = &mut s.brokers[l] else {
                    return None;
                };
                let leader_before = replica.clone();
                match replica.handle_fetch(&request, now) {
                    Ok(response) => {
                        // A fetch that changes neither side (nothing new for
                        // the follower, nothing learned by the leader) is a
                        // stutter step; skipping it keeps the space small
                        // without hiding any state.
                        if response.batches.is_empty()
                            && response.high_watermark.min(request.fetch_offset) == follower_hw
                            && *replica == leader_before
                        {
                            return None;
                        }
                        let records = data[request.fetch_offset.get() as usize..].to_vec();
                        let inflight = InFlightFetch { response, records };
                        self.drain(&mut s, l, None);
                        if delayed {
                            s.delayed_fetches += 1;
                            s.fetches[i] = Some(inflight);
                        } else {
                            let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                                return None;
                            };
                            if replica.handle_fetch_response(&inflight.response).is_err() {
                                s.violation
                                    .get_or_insert("REP-31: a fetched batch did not fit the log");
                            }
                            self.drain(&mut s, i, Some(&inflight));
                        }
                    }
                    Err(e) => {
                        let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                            return None;
                        };
                        replica.handle_fetch_error(request.leader_epoch, e);
                        self.drain(&mut s, i, None);
                    }
                }
            }
            Action::DeliverFetch(i) => {
                let inflight = s.fetches[i].take()?;
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                if replica.handle_fetch_response(&inflight.response).is_err() {
                    s.violation
                        .get_or_insert("REP-31: a fetched batch did not fit the log");
                }
                self.drain(&mut s, i, Some(&inflight));
            }
            Action::LoseFetch(i) => {
                s.fetches[i] = None;
            }
            Action::AlterPartition(p) => {
                s.isr_requests.remove(&p);
                let response = s.controller.answer_alter_partition(&Self::tp(), &p);
                let i = p.leader.get() as usize - 1;
                if let Broker::Up { replica, .. } = &mut s.brokers[i] {
                    replica.handle_isr_response(&p, response, now);
                    self.drain(&mut s, i, None);
                }
            }
            Action::Flush(i) => {
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                let end = replica.log().log_end();
                replica.handle_flushed(end);
            }
            Action::LagTimeout(i) => {
                let Broker::Up { replica, .. } = &mut s.brokers[i] else {
                    return None;
                };
                replica.on_timeout(now);
                self.drain(&mut s, i, None);
            }
            Action::Tick => {
                s.now = s.now.plus(LAG_MS + 1);
                s.lag_timeouts += 1;
            }
            Action::Crash(i) => {
                s.crashes += 1;
                Self::crash(&mut s, i, false);
            }
            Action::PowerLoss(i) => {
                s.power_losses += 1;
                Self::crash(&mut s, i, true);
            }
            Action::Restart(i) => {
                let Broker::Down {
                    log,
                    data,
                    hw,
                    clean,
                } = &s.brokers[i]
                else {
                    return None;
                };
                let replica = Replica::new(self.replica_config(i), log.clone(), *hw);
                let clean = *clean;
                s.brokers[i] = Broker::Up {
                    replica,
                    data: data.clone(),
                    registered: true,
                };
                self.drain(&mut s, i, None);
                let effects = s.controller.handle_broker_startup(Self::broker(i), clean);
                Self::registered_again(&mut s, i);
                Self::deliver_controller_effects(&mut s, effects);
            }
            Action::ExpireSession(i) => {
                let Broker::Up { registered, .. } = &mut s.brokers[i] else {
                    return None;
                };
                *registered = false;
                s.zombies += 1;
                s.mailbox[i] = None;
                let effects = s.controller.handle_broker_failure(Self::broker(i));
                Self::deliver_controller_effects(&mut s, effects);
            }
            Action::Reregister(i) => {
                let Broker::Up { registered, .. } = &mut s.brokers[i] else {
                    return None;
                };
                *registered = true;
                let effects = s.controller.handle_broker_startup(Self::broker(i), true);
                Self::registered_again(&mut s, i);
                Self::deliver_controller_effects(&mut s, effects);
            }
            Action::Read(i) => {
                let hw = s.replica(i)?.high_watermark().get() as usize;
                let data = s.data(i)[..hw].to_vec();
                for (o, rec) in data.into_iter().enumerate() {
                    if *s.read.entry(o as i64).or_insert(rec) != rec {
                        s.violation.get_or_insert("REP-32: a read record changed");
                    }
                }
            }
        }
        self.observe(last, &mut s);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        Self::properties_list()
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.partition().leader_epoch.get() <= self.max_leader_epoch
    }
}
