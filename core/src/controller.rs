//! Cluster decisions for partitions: replica placement for new topics,
//! leader election on broker loss, and conditional ISR changes
//! (`spec/replication.md`, REP-16 to REP-23).
//!
//! # Driving contract
//!
//! The [`Controller`] holds the authoritative [`PartitionState`] of every
//! partition and the set of live brokers. Inputs are
//! [`Controller::create_topic`], [`Controller::handle_broker_startup`],
//! [`Controller::handle_broker_failure`] (a broker's coordination session
//! expired — it may still be running) and
//! [`Controller::handle_alter_partition`]. Each input returns the
//! LeaderAndIsr messages to deliver ([`ControllerEffect`]); a broker applies
//! them with `Replica::handle_partition_state`, which ignores stale ones, so
//! delivery may be delayed or superseded. The runtime persists the
//! partition states (ZooKeeper or the embedded metadata file) before sending
//! the effects.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{BrokerId, LeaderEpoch, PartitionEpoch, TopicPartition};
use crate::replica::{IsrProposal, IsrResponse, LegacyRules};

/// The controller's record of one partition (Kafka's LeaderAndIsr).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionState {
    /// The assigned replicas, in preference order (the first is the
    /// preferred leader).
    pub replicas: Vec<BrokerId>,
    /// The leader; `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change (REP-17).
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change of this record (REP-17, REP-19).
    pub partition_epoch: PartitionEpoch,
    /// The in-sync replicas.
    pub isr: BTreeSet<BrokerId>,
}

/// Controller settings, the cluster-wide defaults of the topic configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `min.insync.replicas`: the ISR is not shrunk below this on broker
    /// loss (REP-18).
    pub min_insync_replicas: usize,
    /// `unclean.leader.election.enable` (default `false`, REP-21).
    pub unclean_leader_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// A LeaderAndIsr message to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControllerEffect {
    /// Tell `broker` the new state of `partition`.
    SendPartitionState {
        /// The receiving broker.
        broker: BrokerId,
        /// The partition.
        partition: TopicPartition,
        /// Its new state.
        state: PartitionState,
    },
}

/// Why a topic cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// Partition count and replication factor must be positive.
    #[error(
        "partitions ({partitions}) and replication factor ({replication_factor}) must be positive"
    )]
    NonPositive {
        /// The requested partition count.
        partitions: i32,
        /// The requested replication factor.
        replication_factor: usize,
    },
    /// More replicas than live brokers (INVALID_REPLICATION_FACTOR).
    #[error("replication factor {replication_factor} larger than the {brokers} live brokers")]
    NotEnoughBrokers {
        /// The requested replication factor.
        replication_factor: usize,
        /// The live brokers.
        brokers: usize,
    },
    /// Some brokers have a `broker.rack` and others do not.
    #[error("broker.rack is set on some brokers but not on others")]
    MixedRacks,
    /// The topic already exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
}

/// Why an ISR change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum AlterPartitionError {
    /// The partition is unknown.
    #[error("unknown partition")]
    UnknownPartition,
    /// The proposer is not the leader of the current epoch
    /// (FENCED_LEADER_EPOCH).
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// The proposal names an old partition epoch (INVALID_UPDATE_VERSION).
    #[error("stale partition epoch")]
    InvalidUpdateVersion,
    /// The proposed ISR does not contain the leader, or names a broker that
    /// is not an assigned replica (INVALID_REQUEST).
    #[error("invalid ISR")]
    InvalidIsr,
    /// A member to add is offline or has registered again since it fetched
    /// (INELIGIBLE_REPLICA, REP-23).
    #[error("broker {0} is not eligible to join the ISR")]
    IneligibleReplica(BrokerId),
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct BrokerInfo {
    rack: Option<String>,
    live: bool,
    /// Incremented by every registration (REP-23).
    epoch: i64,
}

/// The cluster controller (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Controller {
    config: ControllerConfig,
    brokers: BTreeMap<BrokerId, BrokerInfo>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Historical unsafe rules; all off in a real cluster (only
    /// `last_member_survives_unclean_restart` concerns the controller).
    #[serde(default)]
    legacy: LegacyRules,
}

/// Places `partitions` partitions with `replication_factor` replicas each on
/// `brokers` (REP-16), Kafka's round-robin with a shifting follower offset:
/// leaders go round the broker list starting at `start`, and followers of
/// partition `p` start `1 + shift` brokers after the leader, where the shift
/// grows every full round so that follower sets differ. When racks are set,
/// the broker list alternates racks first and a follower is skipped while a
/// rack that holds no replica of the partition yet is still available.
/// `start` is the caller's random choice (the core draws no randomness).
pub fn assign_replicas(
    brokers: &[(BrokerId, Option<String>)],
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if partitions <= 0 || replication_factor == 0 {
        return Err(PlacementError::NonPositive {
            partitions,
            replication_factor,
        });
    }
    let n = brokers.len();
    if replication_factor > n {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            brokers: n,
        });
    }
    let with_rack = brokers.iter().filter(|b| b.1.is_some()).count();
    if with_rack != 0 && with_rack != n {
        return Err(PlacementError::MixedRacks);
    }
    let mut sorted: Vec<(BrokerId, Option<String>)> = brokers.to_vec();
    sorted.sort();
    let ordered = if with_rack == n {
        rack_alternated(&sorted)
    } else {
        sorted
    };
    let racks: BTreeSet<&Option<String>> = ordered.iter().map(|b| &b.1).collect();
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        let leader_idx = (start + p) % n;
        let shift = if n > 1 {
            (start / n.max(1) + p / n) % (n - 1)
        } else {
            0
        };
        let mut chosen = vec![ordered[leader_idx].0];
        let mut used_racks: BTreeSet<&Option<String>> = [&ordered[leader_idx].1].into();
        let mut k = 0;
        while chosen.len() < replication_factor {
            let idx = (leader_idx + 1 + (shift + k) % (n - 1)) % n;
            k += 1;
            let (id, rack) = &ordered[idx];
            if chosen.contains(id) {
                continue;
            }
            let rack_free = !used_racks.contains(rack) || used_racks.len() == racks.len();
            // After one full pass, take any unused broker.
            if rack_free || k > n {
                chosen.push(*id);
                used_racks.insert(rack);
            }
            if k > 2 * n {
                break;
            }
        }
        debug_assert_eq!(
            chosen.len(),
            replication_factor,
            "REP-16: placement fell short"
        );
        out.push(chosen);
    }
    Ok(out)
}

/// Orders brokers so that consecutive ones sit on different racks: the
/// first broker of each rack, then the second of each, and so on.
fn rack_alternated(sorted: &[(BrokerId, Option<String>)]) -> Vec<(BrokerId, Option<String>)> {
    let mut by_rack: BTreeMap<&Option<String>, Vec<&(BrokerId, Option<String>)>> = BTreeMap::new();
    for b in sorted {
        by_rack.entry(&b.1).or_default().push(b);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(sorted.len());
    for i in 0..longest {
        for members in by_rack.values() {
            if let Some(b) = members.get(i) {
                out.push((*b).clone());
            }
        }
    }
    out
}

impl Controller {
    /// A controller with no brokers and no partitions.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            brokers: BTreeMap::new(),
            partitions: BTreeMap::new(),
            legacy: LegacyRules::default(),
        }
    }

    /// Switches historical unsafe rules back on (models and tests only; a
    /// real cluster keeps the default, every rule off). Only
    /// `last_member_survives_unclean_restart` concerns the controller.
    pub fn set_legacy_rules(&mut self, legacy: LegacyRules) {
        self.legacy = legacy;
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The state of `partition`.
    #[must_use]
    pub fn partition(&self, partition: &TopicPartition) -> Option<&PartitionState> {
        self.partitions.get(partition)
    }

    /// The epoch of `broker`'s current registration (REP-23), if it ever
    /// registered.
    #[must_use]
    pub fn broker_epoch(&self, broker: BrokerId) -> Option<i64> {
        self.brokers
            .get(&broker)
            .filter(|b| b.epoch >= 0)
            .map(|b| b.epoch)
    }

    /// Whether `broker` is registered and live.
    #[must_use]
    pub fn is_live(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| b.live)
    }

    /// Registers `broker` with its `broker.rack`, as not yet live.
    pub fn register_broker(&mut self, broker: BrokerId, rack: Option<String>) {
        self.brokers.entry(broker).or_insert(BrokerInfo {
            rack,
            live: false,
            epoch: -1,
        });
    }

    /// Creates a topic on the live brokers (REP-16). The first replica of
    /// each partition leads in leader epoch 0 with every replica in the ISR.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: usize,
        start: usize,
    ) -> Result<Vec<ControllerEffect>, PlacementError> {
        if self.partitions.keys().any(|tp| tp.topic == topic) {
            return Err(PlacementError::TopicExists(topic.to_string()));
        }
        let live: Vec<(BrokerId, Option<String>)> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.live)
            .map(|(id, b)| (*id, b.rack.clone()))
            .collect();
        let placement = assign_replicas(&live, partitions, replication_factor, start)?;
        let mut effects = Vec::new();
        for (p, replicas) in placement.into_iter().enumerate() {
            let tp = TopicPartition::new(topic, p as i32);
            let state = PartitionState {
                leader: replicas.first().copied(),
                isr: replicas.iter().copied().collect(),
                replicas,
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
            };
            self.partitions.insert(tp.clone(), state);
            self.notify(&tp, &mut effects);
        }
        Ok(effects)
    }

    /// Adds a partition with a given state (recovery of persisted metadata,
    /// tests and models).
    pub fn insert_partition(&mut self, partition: TopicPartition, state: PartitionState) {
        self.partitions.insert(partition, state);
    }

    fn notify(&self, tp: &TopicPartition, effects: &mut Vec<ControllerEffect>) {
        let Some(state) = self.partitions.get(tp) else {
            return;
        };
        for r in &state.replicas {
            if self.is_live(*r) {
                effects.push(ControllerEffect::SendPartitionState {
                    broker: *r,
                    partition: tp.clone(),
                    state: state.clone(),
                });
            }
        }
    }

    /// The first live replica, in preference order, among `candidates`.
    fn first_live(
        &self,
        state: &PartitionState,
        candidates: &BTreeSet<BrokerId>,
    ) -> Option<BrokerId> {
        state
            .replicas
            .iter()
            .copied()
            .find(|r| candidates.contains(r) && self.is_live(*r))
    }

    /// Elects a leader for an offline partition or one whose leader is gone
    /// (REP-20, REP-21). Returns whether the state changed.
    fn elect(&self, state: &mut PartitionState) -> bool {
        if let Some(l) = state.leader
            && self.is_live(l)
        {
            return false;
        }
        // spec: REP-20 — clean election: first live ISR member.
        let mut chosen = self.first_live(state, &state.isr.clone());
        if chosen.is_none() && self.config.unclean_leader_election {
            // spec: REP-21 — unclean election, a documented trade-off.
            let all: BTreeSet<BrokerId> = state.replicas.iter().copied().collect();
            chosen = self.first_live(state, &all);
            if let Some(c) = chosen {
                state.isr = [c].into();
            }
        }
        match chosen {
            Some(c) => {
                state.leader = Some(c);
                state.leader_epoch = state.leader_epoch.next();
                true
            }
            None => {
                let changed = state.leader.is_some();
                state.leader = None;
                changed
            }
        }
    }

    /// A broker's session started (a fresh start, a restart, or a zombie
    /// re-registering). `clean_shutdown` is false when the broker recovered
    /// from an unclean shutdown and may have lost unflushed records: it then
    /// leaves every ISR it is in (REP-22), even as its last member, which
    /// leaves the partition offline rather than electing a replica that may
    /// lack committed records (REP-50).
    pub fn handle_broker_startup(
        &mut self,
        broker: BrokerId,
        clean_shutdown: bool,
    ) -> Vec<ControllerEffect> {
        let info = self.brokers.entry(broker).or_insert(BrokerInfo {
            rack: None,
            live: false,
            epoch: -1,
        });
        info.live = true;
        info.epoch += 1;
        let mut effects = Vec::new();
        let tps: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in tps {
            let mut state = self.partitions[&tp].clone();
            if !state.replicas.contains(&broker) {
                continue;
            }
            let mut changed = false;
            // spec: REP-22, REP-50 — an unclean restart leaves the ISR, even
            // as its last member: its log may lack records the HW passed.
            let last_member_stays =
                self.legacy.last_member_survives_unclean_restart && state.isr.len() == 1;
            if !clean_shutdown && state.isr.contains(&broker) && !last_member_stays {
                state.isr.remove(&broker);
                if state.leader == Some(broker) {
                    // Its failure was never reported: it cannot keep leading
                    // from outside the ISR (REP-35).
                    state.leader = None;
                }
                changed = true;
            }
            changed |= self.elect(&mut state);
            if changed {
                state.partition_epoch = PartitionEpoch(state.partition_epoch.get() + 1);
                self.partitions.insert(tp.clone(), state);
                self.notify(&tp, &mut effects);
            } else {
                effects.push(ControllerEffect::SendPartitionState {
                    broker,
                    partition: tp.clone(),
                    state,
                });
            }
        }
        effects
    }

    /// A broker's session expired (REP-18, REP-20): it leaves the ISR of
    /// each partition unless that would leave fewer than
    /// `min.insync.replicas` members (or none), and partitions it led elect
    /// a new leader.
    pub fn handle_broker_failure(&mut self, broker: BrokerId) -> Vec<ControllerEffect> {
        if let Some(b) = self.brokers.get_mut(&broker) {
            b.live = false;
        }
        let min = self.config.min_insync_replicas.max(1);
        let mut effects = Vec::new();
        let tps: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in tps {
            let mut state = self.partitions[&tp].clone();
            if !state.replicas.contains(&broker) {
                continue;
            }
            let mut changed = false;
            if state.isr.contains(&broker) && state.isr.len() > min {
                // spec: REP-18
                state.isr.remove(&broker);
                changed = true;
            }
            changed |= self.elect(&mut state);
            if changed {
                state.partition_epoch = PartitionEpoch(state.partition_epoch.get() + 1);
                self.partitions.insert(tp.clone(), state);
                self.notify(&tp, &mut effects);
            }
        }
        effects
    }

    /// A leader's ISR change (AlterPartition, REP-19): applied only if the
    /// proposer leads the current leader epoch and the proposal names the
    /// current partition epoch. The answer goes back to the proposer.
    pub fn handle_alter_partition(
        &mut self,
        partition: &TopicPartition,
        proposal: &IsrProposal,
    ) -> Result<PartitionState, AlterPartitionError> {
        let state = self
            .partitions
            .get_mut(partition)
            .ok_or(AlterPartitionError::UnknownPartition)?;
        if state.leader != Some(proposal.leader) || state.leader_epoch != proposal.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if state.partition_epoch != proposal.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        if !proposal.isr.contains(&proposal.leader)
            || proposal.isr.iter().any(|m| !state.replicas.contains(m))
        {
            return Err(AlterPartitionError::InvalidIsr);
        }
        // spec: REP-23 — a joining member must be live and still the same
        // registration that fetched.
        for m in proposal.isr.difference(&state.isr) {
            let current = self.brokers.get(m).filter(|b| b.live).map(|b| b.epoch);
            if current.is_none() || current != proposal.broker_epochs.get(m).copied() {
                return Err(AlterPartitionError::IneligibleReplica(*m));
            }
        }
        state.isr = proposal.isr.clone();
        state.partition_epoch = PartitionEpoch(state.partition_epoch.get() + 1);
        Ok(state.clone())
    }

    /// [`Controller::handle_alter_partition`] as the replica's
    /// [`IsrResponse`].
    pub fn answer_alter_partition(
        &mut self,
        partition: &TopicPartition,
        proposal: &IsrProposal,
    ) -> IsrResponse {
        match self.handle_alter_partition(partition, proposal) {
            Ok(s) => IsrResponse::Accepted(s.partition_epoch),
            Err(_) => IsrResponse::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: i32) -> BrokerId {
        BrokerId(i)
    }

    fn cluster(min: usize, unclean: bool) -> (Controller, TopicPartition) {
        let mut c = Controller::new(ControllerConfig {
            min_insync_replicas: min,
            unclean_leader_election: unclean,
        });
        for i in 1..=3 {
            c.register_broker(b(i), None);
            c.handle_broker_startup(b(i), true);
        }
        c.create_topic("t", 1, 3, 0).unwrap();
        (c, TopicPartition::new("t", 0))
    }

    /// REP-17, REP-18, REP-20: clean election of the first live ISR member
    /// with both epochs bumped; the ISR keeps min.insync.replicas members.
    #[test]
    fn leader_loss_elects_first_live_isr_member() {
        let (mut c, tp) = cluster(2, false);
        assert_eq!(c.partition(&tp).unwrap().leader, Some(b(1)));
        let effects = c.handle_broker_failure(b(1));
        let s = c.partition(&tp).unwrap().clone();
        assert_eq!(
            (s.leader, s.leader_epoch, s.partition_epoch),
            (Some(b(2)), LeaderEpoch(1), PartitionEpoch(1))
        );
        assert_eq!(s.isr, [b(2), b(3)].into());
        assert_eq!(effects.len(), 2, "both live replicas are told");
        c.handle_broker_failure(b(2));
        let s = c.partition(&tp).unwrap();
        assert_eq!(s.leader, Some(b(3)));
        assert_eq!(
            s.isr,
            [b(2), b(3)].into(),
            "REP-18: not below min.insync.replicas"
        );
        c.handle_broker_failure(b(3));
        assert_eq!(
            c.partition(&tp).unwrap().leader,
            None,
            "offline, no unclean election"
        );
        c.handle_broker_startup(b(1), true);
        assert_eq!(c.partition(&tp).unwrap().leader, None, "1 left the ISR");
        c.handle_broker_startup(b(2), true);
        assert_eq!(c.partition(&tp).unwrap().leader, Some(b(2)));
    }

    /// REP-21: the unclean switch elects an out-of-sync replica.
    #[test]
    fn unclean_election_is_a_switch() {
        let (mut c, tp) = cluster(1, true);
        c.handle_broker_failure(b(3));
        c.handle_broker_failure(b(2));
        c.handle_broker_failure(b(1));
        c.handle_broker_startup(b(3), true);
        let s = c.partition(&tp).unwrap();
        assert_eq!((s.leader, s.isr.clone()), (Some(b(3)), [b(3)].into()));
    }

    /// REP-19: a proposal on an old partition epoch or from an old leader is
    /// refused.
    #[test]
    fn alter_partition_is_conditional() {
        let (mut c, tp) = cluster(1, false);
        let stale = IsrProposal {
            leader: b(1),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            isr: [b(1), b(2)].into(),
            broker_epochs: BTreeMap::new(),
        };
        c.handle_broker_failure(b(3));
        assert_eq!(
            c.handle_alter_partition(&tp, &stale),
            Err(AlterPartitionError::InvalidUpdateVersion)
        );
        let ok = IsrProposal {
            partition_epoch: PartitionEpoch(1),
            ..stale.clone()
        };
        assert!(c.handle_alter_partition(&tp, &ok).is_ok());
        c.handle_broker_failure(b(1));
        let zombie = IsrProposal {
            partition_epoch: PartitionEpoch(3),
            ..stale
        };
        assert_eq!(
            c.handle_alter_partition(&tp, &zombie),
            Err(AlterPartitionError::FencedLeaderEpoch)
        );
    }

    /// REP-22: an unclean restart leaves the ISR, except as its last member.
    /// REP-23: a member that registered again since it fetched may not join.
    #[test]
    fn stale_registration_cannot_join_isr() {
        let (mut c, tp) = cluster(1, false);
        c.handle_broker_failure(b(3));
        let epoch_before = c.broker_epoch(b(3)).unwrap();
        c.handle_broker_startup(b(3), false);
        let pe = c.partition(&tp).unwrap().partition_epoch;
        let mut join = IsrProposal {
            leader: b(1),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: pe,
            isr: [b(1), b(2), b(3)].into(),
            broker_epochs: [(b(3), epoch_before)].into(),
        };
        assert_eq!(
            c.handle_alter_partition(&tp, &join),
            Err(AlterPartitionError::IneligibleReplica(b(3)))
        );
        join.broker_epochs
            .insert(b(3), c.broker_epoch(b(3)).unwrap());
        assert!(c.handle_alter_partition(&tp, &join).is_ok());
    }

    #[test]
    fn unclean_restart_leaves_isr() {
        let (mut c, tp) = cluster(2, false);
        c.handle_broker_failure(b(2));
        c.handle_broker_startup(b(2), false);
        assert_eq!(c.partition(&tp).unwrap().isr, [b(1), b(3)].into());
    }

    /// REP-50: the last ISR member leaves the ISR on an unclean restart too;
    /// the partition stays offline (no replica is known to hold every
    /// committed record) instead of electing it. A clean restart of the last
    /// member still brings the partition back.
    #[test]
    fn unclean_restart_of_last_member_keeps_partition_offline() {
        let (mut c, tp) = cluster(2, false);
        c.handle_broker_failure(b(1));
        c.handle_broker_failure(b(2));
        c.handle_broker_failure(b(3));
        assert_eq!(c.partition(&tp).unwrap().isr, [b(2), b(3)].into());
        c.handle_broker_startup(b(2), false);
        assert_eq!(c.partition(&tp).unwrap().isr, [b(3)].into());
        let before = c.partition(&tp).unwrap().clone();
        c.handle_broker_startup(b(3), false);
        c.handle_broker_startup(b(1), true);
        let s = c.partition(&tp).unwrap();
        assert_eq!((s.leader, s.isr.len()), (None, 0), "offline, empty ISR");
        assert_eq!(s.leader_epoch, before.leader_epoch, "REP-17: no bump");
        assert!(s.partition_epoch > before.partition_epoch);

        // The same history with a clean restart of the last member.
        let (mut c, tp) = cluster(2, false);
        c.handle_broker_failure(b(1));
        c.handle_broker_failure(b(2));
        c.handle_broker_failure(b(3));
        c.handle_broker_startup(b(2), false);
        c.handle_broker_startup(b(3), true);
        let s = c.partition(&tp).unwrap();
        assert_eq!((s.leader, s.isr.clone()), (Some(b(3)), [b(3)].into()));

        // The former rule (REP-51) elects the member that lost records.
        let (mut c, tp) = cluster(2, false);
        c.set_legacy_rules(LegacyRules {
            last_member_survives_unclean_restart: true,
            ..LegacyRules::default()
        });
        c.handle_broker_failure(b(1));
        c.handle_broker_failure(b(2));
        c.handle_broker_failure(b(3));
        c.handle_broker_startup(b(2), false);
        c.handle_broker_startup(b(3), false);
        assert_eq!(c.partition(&tp).unwrap().leader, Some(b(3)));
    }

    /// REP-50 with unclean election (REP-21): an empty ISR still allows the
    /// documented trade-off.
    #[test]
    fn unclean_election_recovers_an_empty_isr() {
        let (mut c, tp) = cluster(1, true);
        c.handle_broker_failure(b(2));
        c.handle_broker_failure(b(3));
        c.handle_broker_failure(b(1));
        assert_eq!(c.partition(&tp).unwrap().isr, [b(1)].into());
        c.handle_broker_startup(b(1), false);
        let s = c.partition(&tp).unwrap();
        assert_eq!((s.leader, s.isr.clone()), (Some(b(1)), [b(1)].into()));
    }

    /// REP-16: leaders and followers spread evenly; racks are respected.
    #[test]
    fn placement_spreads_and_respects_racks() {
        let brokers: Vec<_> = (1..=4).map(|i| (b(i), None)).collect();
        let p = assign_replicas(&brokers, 8, 3, 0).unwrap();
        let mut leaders = BTreeMap::new();
        for r in &p {
            *leaders.entry(r[0]).or_insert(0) += 1;
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");

        let racked: Vec<_> = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
            .iter()
            .map(|(i, r)| (b(*i), Some(r.to_string())))
            .collect();
        let rack_of = |id: BrokerId| racked.iter().find(|x| x.0 == id).unwrap().1.clone();
        for r in assign_replicas(&racked, 12, 3, 5).unwrap() {
            let racks: BTreeSet<_> = r.iter().map(|id| rack_of(*id)).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {r:?}");
        }
        assert_eq!(
            assign_replicas(&brokers, 1, 5, 0),
            Err(PlacementError::NotEnoughBrokers {
                replication_factor: 5,
                brokers: 4
            })
        );
        let mixed = vec![(b(1), Some("a".into())), (b(2), None)];
        assert_eq!(
            assign_replicas(&mixed, 1, 1, 0),
            Err(PlacementError::MixedRacks)
        );
    }
}
