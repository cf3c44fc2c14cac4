//! One reconciliation pass of the controller, as a pure function: from a
//! [`Snapshot`] of the cluster's znodes to the transactions that bring the
//! partition states in line with the rules of `spec/controller.md`.
//!
//! The pass is level-triggered: it does not remember which event woke it.
//! Every decision about leaders and ISRs is made by a fresh
//! [`gregor_core::controller::Controller`] loaded with the live brokers and
//! the current states, so the rules of REP-16 … REP-23 stay in one place.

use std::collections::{BTreeMap, BTreeSet};

use gregor_core::controller::{Controller, ControllerConfig, PartitionState};
use gregor_core::ids::{BrokerId, LeaderEpoch, TopicPartition};

use crate::cluster::znodes::{
    self, BrokerZnode, PartitionStateZnode, ReassignmentZnode, TopicZnode,
};

/// A topic as read from ZooKeeper.
#[derive(Debug, Clone)]
pub struct TopicSnapshot {
    /// `/brokers/topics/<t>`.
    pub znode: TopicZnode,
    /// Its data version.
    pub version: i32,
    /// Whether `/brokers/topics/<t>/partitions` exists.
    pub partitions_node: bool,
    /// Partitions whose `/brokers/topics/<t>/partitions/<p>` node exists.
    pub partition_nodes: BTreeSet<i32>,
    /// The state znodes that exist, with their data versions.
    pub states: BTreeMap<i32, (PartitionStateZnode, i32)>,
    /// Whether `/config/topics/<t>` exists.
    pub config_node: bool,
}

/// What the controller reads before a pass.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Registered brokers with the czxid of their registration (the broker
    /// epoch, REP-23).
    pub brokers: BTreeMap<BrokerId, (BrokerZnode, i64)>,
    /// The data version of each registration (CLU-68 clears
    /// `unclean_start` at it).
    pub broker_versions: BTreeMap<BrokerId, i32>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicSnapshot>,
    /// Children of `/admin/delete_topics`.
    pub deletions: BTreeSet<String>,
    /// `/admin/reassign_partitions` and its data version.
    pub reassignment: Option<(ReassignmentZnode, i32)>,
    /// Children of `/admin/controlled_shutdown` that parse as broker ids.
    pub shutting_down: BTreeSet<BrokerId>,
    /// The partitions of `/admin/preferred_replica_election`, if it
    /// exists (an unreadable one is empty).
    pub preferred_election: Option<BTreeSet<TopicPartition>>,
}

/// The settings a pass depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanConfig {
    /// `min.insync.replicas` and `unclean.leader.election.enable`.
    pub core: ControllerConfig,
    /// `leader.imbalance.per.broker.percentage`.
    pub imbalance_percentage: u32,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Create a persistent node.
    Create {
        /// Path.
        path: String,
        /// Payload.
        data: Vec<u8>,
    },
    /// Set a node's data at an expected version.
    Set {
        /// Path.
        path: String,
        /// Payload.
        data: Vec<u8>,
        /// Expected data version.
        version: i32,
    },
    /// Delete a node (any version).
    Delete {
        /// Path.
        path: String,
    },
}

/// Writes applied atomically, behind the controller-epoch check (CLU-61).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// What the transaction does, for the logs.
    pub what: String,
    /// The writes, in order.
    pub ops: Vec<WriteOp>,
}

/// The outcome of planning a pass.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Transactions to run, independent of each other.
    pub txns: Vec<Txn>,
    /// Transactions to run only when every one of `txns` applied: they
    /// record that an unclean start was handled (CLU-68).
    pub after: Vec<Txn>,
    /// Registrations (broker → czxid) live in this pass; to be remembered
    /// once every transaction has succeeded (CLU-68).
    pub seen: BTreeMap<BrokerId, i64>,
}

/// What one pass changes for a partition.
fn state_txn(tp: &TopicPartition, state: &PartitionState, version: i32, epoch: i32) -> WriteOp {
    WriteOp::Set {
        path: znodes::partition_state_path(&tp.topic, tp.partition),
        data: znodes::encode(&PartitionStateZnode::from_core(state, epoch)),
        version,
    }
}

fn same_decision(a: &PartitionState, b: &PartitionState) -> bool {
    a.leader == b.leader && a.leader_epoch == b.leader_epoch && a.isr == b.isr
}

fn ids(v: &[BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.0).collect()
}

/// Plans one pass. `seen` holds the registrations whose start an earlier
/// pass of this controller already handled; `controller_epoch` is written
/// into every state znode; `rebalance` asks for the preferred-leader check
/// (CLU-80).
pub fn plan(
    snap: &Snapshot,
    config: &PlanConfig,
    seen: &BTreeMap<BrokerId, i64>,
    controller_epoch: i32,
    rebalance: bool,
) -> Plan {
    let mut txns = Vec::new();

    // spec: CLU-75 — deletions first; a topic being deleted is left alone
    // by every other rule.
    for t in &snap.deletions {
        let mut ops = Vec::new();
        if !config.delete_topic_enable {
            // spec: CLU-75 — with deletion disabled the request is dropped.
            tracing::warn!(topic = %t, "delete.topic.enable=false: deletion request dropped");
        } else if let Some(ts) = snap.topics.get(t) {
            for p in ts.states.keys() {
                ops.push(WriteOp::Delete {
                    path: znodes::partition_state_path(t, *p),
                });
            }
            for p in &ts.partition_nodes {
                ops.push(WriteOp::Delete {
                    path: znodes::partition_path(t, *p),
                });
            }
            if ts.partitions_node {
                ops.push(WriteOp::Delete {
                    path: znodes::partitions_path(t),
                });
            }
            ops.push(WriteOp::Delete {
                path: znodes::topic_path(t),
            });
            if ts.config_node {
                ops.push(WriteOp::Delete {
                    path: znodes::topic_config_path(t),
                });
            }
        }
        ops.push(WriteOp::Delete {
            path: znodes::delete_topic_path(t),
        });
        txns.push(Txn {
            what: format!("delete topic {t}"),
            ops,
        });
    }
    let topics: BTreeMap<&String, &TopicSnapshot> = snap
        .topics
        .iter()
        .filter(|(t, _)| !snap.deletions.contains(*t))
        .collect();

    // spec: CLU-65 — a broker asking for a controlled shutdown is treated
    // as gone for leadership and ISR purposes while it is still running.
    let live: BTreeSet<BrokerId> = snap
        .brokers
        .keys()
        .copied()
        .filter(|b| !snap.shutting_down.contains(b))
        .collect();

    let mut core = Controller::new(config.core);
    for b in &live {
        core.register_broker(*b, snap.brokers[b].0.rack.clone());
        // No partitions are loaded yet: this only marks the broker live.
        core.handle_broker_startup(*b, true);
    }
    let mut original: BTreeMap<TopicPartition, (PartitionState, i32)> = BTreeMap::new();
    let mut referenced: BTreeSet<BrokerId> = BTreeSet::new();
    for (t, ts) in &topics {
        let assignment = ts.znode.assignment();
        let mut missing = Vec::new();
        for (p, replicas) in &assignment {
            referenced.extend(replicas.iter().copied());
            let tp = TopicPartition::new(t.as_str(), *p);
            match ts.states.get(p) {
                Some((st, version)) => {
                    let state = st.to_core(replicas.clone(), *version);
                    referenced.extend(state.isr.iter().copied());
                    core.insert_partition(tp.clone(), state.clone());
                    original.insert(tp, (state, *version));
                }
                None => missing.push((*p, replicas.clone())),
            }
        }
        if !missing.is_empty() {
            txns.push(create_states(t, ts, &missing, &live, controller_epoch));
        }
    }

    // spec: CLU-66 — brokers without a registration leave ISRs (bounded by
    // min.insync.replicas, REP-18) and lose their leaderships (REP-20).
    for b in referenced.difference(&live) {
        core.handle_broker_failure(*b);
    }
    // spec: CLU-68 — a broker that registered again since the last pass
    // (a new czxid, so it went away in between) is failed first, as if its
    // loss had been seen: it gives up its leaderships with a leader-epoch
    // bump before it starts again.
    for b in &live {
        if seen.get(b).is_some_and(|czxid| *czxid != snap.brokers[b].1) {
            core.handle_broker_failure(*b);
        }
    }
    // spec: CLU-67, CLU-68 — every live broker takes the offline partitions
    // it can lead; a registration that still says it came from an unclean
    // start leaves the ISRs it is in (REP-22), and once that is written the
    // flag is cleared in the registration, so that no later pass or later
    // controller applies it again.
    let mut new_seen = BTreeMap::new();
    let mut after = Vec::new();
    for b in &live {
        let (znode, czxid) = &snap.brokers[b];
        core.handle_broker_startup(*b, !znode.unclean_start);
        new_seen.insert(*b, *czxid);
        if znode.unclean_start
            && let Some(version) = snap.broker_versions.get(b)
        {
            let handled = BrokerZnode {
                unclean_start: false,
                ..znode.clone()
            };
            after.push(Txn {
                what: format!("unclean start of broker {} handled", b.0),
                ops: vec![WriteOp::Set {
                    path: znodes::broker_path(*b),
                    data: znodes::encode(&handled),
                    version: *version,
                }],
            });
        }
    }

    let mut decided: BTreeMap<TopicPartition, PartitionState> = BTreeMap::new();
    for (tp, (before, _)) in &original {
        let Some(after) = core.partition(tp) else {
            continue;
        };
        // spec: CLU-72
        if same_decision(before, after) {
            continue;
        }
        // spec: CLU-65 — a shutting-down leader with no live ISR member to
        // hand over to keeps its leadership until it really stops.
        if after.leader.is_none()
            && before
                .leader
                .is_some_and(|l| snap.shutting_down.contains(&l) && snap.brokers.contains_key(&l))
        {
            continue;
        }
        decided.insert(tp.clone(), after.clone());
    }
    for (tp, state) in &decided {
        let version = original[tp].1;
        txns.push(Txn {
            what: format!(
                "{tp}: leader {:?} epoch {} isr {:?}",
                state.leader.map(|b| b.0),
                state.leader_epoch.0,
                ids(&state.isr.iter().copied().collect::<Vec<_>>())
            ),
            ops: vec![state_txn(tp, state, version, controller_epoch)],
        });
    }

    let (reassign_txns, reassigning) =
        plan_reassignment(snap, &topics, &original, &decided, &live, controller_epoch);
    txns.extend(reassign_txns);

    // spec: CLU-82 — elections asked for through ElectLeaders.
    let mut excluded = reassigning;
    if let Some(requested) = &snap.preferred_election {
        for tp in requested {
            let Some((state, version)) = original.get(tp) else {
                continue;
            };
            let Some(preferred) = state.replicas.first().copied() else {
                continue;
            };
            if state.leader == Some(preferred)
                || decided.contains_key(tp)
                || excluded.contains(tp)
                || !live.contains(&preferred)
                || snap.shutting_down.contains(&preferred)
                || !state.isr.contains(&preferred)
            {
                continue;
            }
            let mut next = state.clone();
            next.leader = Some(preferred);
            next.leader_epoch = next.leader_epoch.next();
            txns.push(Txn {
                what: format!("{tp}: preferred leader {} elected on request", preferred.0),
                ops: vec![state_txn(tp, &next, *version, controller_epoch)],
            });
            excluded.insert(tp.clone());
        }
        // The request is done once this pass's writes applied; a conflict
        // leaves it for the next pass.
        after.push(Txn {
            what: "preferred-leader election request handled".into(),
            ops: vec![WriteOp::Delete {
                path: znodes::ADMIN_PREFERRED_ELECTION.to_owned(),
            }],
        });
    }

    if rebalance {
        txns.extend(plan_rebalance(
            config,
            &topics,
            &original,
            &decided,
            &excluded,
            &live,
            controller_epoch,
        ));
    }

    Plan {
        txns,
        after,
        seen: new_seen,
    }
}

/// spec: CLU-70, CLU-71 — the initial state of new partitions: the first
/// live replica leads in leader epoch 0 with the live replicas as ISR; with
/// no live replica the partition starts offline with every replica in the
/// ISR (all logs are empty, so all are in sync).
fn create_states(
    topic: &str,
    ts: &TopicSnapshot,
    missing: &[(i32, Vec<BrokerId>)],
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> Txn {
    let mut ops = Vec::new();
    if !ts.partitions_node {
        ops.push(WriteOp::Create {
            path: znodes::partitions_path(topic),
            data: Vec::new(),
        });
    }
    for (p, replicas) in missing {
        let live_replicas: Vec<BrokerId> = replicas
            .iter()
            .copied()
            .filter(|r| live.contains(r))
            .collect();
        let (leader, isr) = if live_replicas.is_empty() {
            (None, replicas.iter().copied().collect())
        } else {
            (
                live_replicas.first().copied(),
                live_replicas.iter().copied().collect(),
            )
        };
        let state = PartitionState {
            replicas: replicas.clone(),
            leader,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: gregor_core::ids::PartitionEpoch(0),
            isr,
        };
        if !ts.partition_nodes.contains(p) {
            ops.push(WriteOp::Create {
                path: znodes::partition_path(topic, *p),
                data: Vec::new(),
            });
        }
        ops.push(WriteOp::Create {
            path: znodes::partition_state_path(topic, *p),
            data: znodes::encode(&PartitionStateZnode::from_core(&state, controller_epoch)),
        });
    }
    Txn {
        what: format!(
            "create states of {topic} partitions {:?}",
            missing.iter().map(|m| m.0).collect::<Vec<_>>()
        ),
        ops,
    }
}

/// The reassignment steps (CLU-76 … CLU-79). Returns the transactions and
/// the partitions under reassignment.
fn plan_reassignment(
    snap: &Snapshot,
    topics: &BTreeMap<&String, &TopicSnapshot>,
    original: &BTreeMap<TopicPartition, (PartitionState, i32)>,
    decided: &BTreeMap<TopicPartition, PartitionState>,
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> (Vec<Txn>, BTreeSet<TopicPartition>) {
    let mut txns = Vec::new();
    let mut reassigning = BTreeSet::new();
    // Partitions with replicas being added or removed are under
    // reassignment even when their request entry is gone.
    for (t, ts) in topics {
        for (k, v) in ts
            .znode
            .adding_replicas
            .iter()
            .chain(&ts.znode.removing_replicas)
        {
            if let Ok(p) = k.parse::<i32>()
                && !v.is_empty()
            {
                reassigning.insert(TopicPartition::new(t.as_str(), p));
            }
        }
    }
    let Some((request, request_version)) = &snap.reassignment else {
        return (txns, reassigning);
    };
    let mut keep: Vec<znodes::ReassignmentEntry> = Vec::new();
    // Per topic: the new topic znode and the state writes.
    let mut per_topic: BTreeMap<String, (TopicZnode, Vec<WriteOp>, Vec<String>)> = BTreeMap::new();
    for e in &request.partitions {
        let tp = TopicPartition::new(e.topic.as_str(), e.partition);
        let target: Vec<BrokerId> = e.replicas.iter().map(|b| BrokerId(*b)).collect();
        let distinct: BTreeSet<BrokerId> = target.iter().copied().collect();
        let Some(ts) = topics.get(&e.topic) else {
            // spec: CLU-79 — entries naming no partition are dropped.
            tracing::warn!(partition = %tp, "reassignment of an unknown topic dropped");
            continue;
        };
        let key = e.partition.to_string();
        let (Some(current), Some((state, version))) =
            (ts.znode.partitions.get(&key), original.get(&tp))
        else {
            if ts.znode.partitions.contains_key(&key) {
                // The state znode is still being created: try later.
                keep.push(e.clone());
            } else {
                tracing::warn!(partition = %tp, "reassignment of an unknown partition dropped");
            }
            continue;
        };
        if target.is_empty() || distinct.len() != target.len() {
            tracing::warn!(partition = %tp, "reassignment with empty or repeated replicas dropped");
            continue;
        }
        let current: Vec<BrokerId> = current.iter().map(|b| BrokerId(*b)).collect();
        let adding: Vec<BrokerId> = ts
            .znode
            .adding_replicas
            .get(&key)
            .map(|v| v.iter().map(|b| BrokerId(*b)).collect())
            .unwrap_or_default();
        let removing: Vec<BrokerId> = ts
            .znode
            .removing_replicas
            .get(&key)
            .map(|v| v.iter().map(|b| BrokerId(*b)).collect())
            .unwrap_or_default();
        let in_progress = !adding.is_empty() || !removing.is_empty();
        if !in_progress && current == target {
            // spec: CLU-79 — done: the entry goes.
            continue;
        }
        keep.push(e.clone());
        reassigning.insert(tp.clone());
        if decided.contains_key(&tp) {
            // This pass already writes the state; the next pass continues.
            continue;
        }
        let entry = per_topic
            .entry(e.topic.clone())
            .or_insert_with(|| (ts.znode.clone(), Vec::new(), Vec::new()));
        let in_flight_target: Vec<BrokerId> = current
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        if !in_progress || in_flight_target != target {
            // spec: CLU-76 — step 1: replicas = target ∪ original, the
            // additions recorded; the leader epoch is bumped so the leader
            // tracks the new followers.
            let orig: Vec<BrokerId> = current
                .iter()
                .copied()
                .filter(|r| !adding.contains(r))
                .collect();
            let mut all = target.clone();
            all.extend(orig.iter().copied().filter(|r| !target.contains(r)));
            let add: Vec<BrokerId> = target
                .iter()
                .copied()
                .filter(|r| !orig.contains(r))
                .collect();
            let remove: Vec<BrokerId> = orig
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            entry.0.partitions.insert(key.clone(), ids(&all));
            set_or_clear(&mut entry.0.adding_replicas, &key, ids(&add));
            set_or_clear(&mut entry.0.removing_replicas, &key, ids(&remove));
            let mut next = state.clone();
            next.replicas = all;
            next.leader_epoch = next.leader_epoch.next();
            entry
                .1
                .push(state_txn(&tp, &next, *version, controller_epoch));
            entry
                .2
                .push(format!("{tp} step 1 towards {:?}", ids(&target)));
            continue;
        }
        // spec: CLU-77 — step 2 waits until every target replica is in the
        // ISR.
        if !target.iter().all(|r| state.isr.contains(r)) {
            continue;
        }
        // spec: CLU-78 — step 2: leadership moves into the target set if
        // needed, replicas = target, ISR ∩ target, leader epoch bumped.
        let leader = match state.leader {
            Some(l) if target.contains(&l) && live.contains(&l) => Some(l),
            _ => target
                .iter()
                .copied()
                .find(|r| live.contains(r) && state.isr.contains(r)),
        };
        if leader.is_none() {
            continue;
        }
        let mut next = state.clone();
        next.leader = leader;
        next.isr = state
            .isr
            .iter()
            .copied()
            .filter(|r| target.contains(r))
            .collect();
        next.replicas = target.clone();
        next.leader_epoch = next.leader_epoch.next();
        entry.0.partitions.insert(key.clone(), ids(&target));
        entry.0.adding_replicas.remove(&key);
        entry.0.removing_replicas.remove(&key);
        entry
            .1
            .push(state_txn(&tp, &next, *version, controller_epoch));
        entry.2.push(format!("{tp} step 2 onto {:?}", ids(&target)));
    }
    for (t, (znode, mut state_ops, what)) in per_topic {
        if state_ops.is_empty() {
            continue;
        }
        let mut ops = vec![WriteOp::Set {
            path: znodes::topic_path(&t),
            data: znodes::encode(&znode),
            version: topics[&t].version,
        }];
        ops.append(&mut state_ops);
        txns.push(Txn {
            what: format!("reassign {}", what.join(", ")),
            ops,
        });
    }
    if keep.len() != request.partitions.len() {
        let path = znodes::ADMIN_REASSIGN.to_owned();
        let op = if keep.is_empty() {
            WriteOp::Delete { path }
        } else {
            WriteOp::Set {
                path,
                data: znodes::encode(&ReassignmentZnode {
                    version: request.version,
                    partitions: keep,
                }),
                version: *request_version,
            }
        };
        txns.push(Txn {
            what: "drop finished reassignment entries".into(),
            ops: vec![op],
        });
    }
    (txns, reassigning)
}

fn set_or_clear(map: &mut BTreeMap<String, Vec<i32>>, key: &str, v: Vec<i32>) {
    if v.is_empty() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), v);
    }
}

/// spec: CLU-80, CLU-81 — preferred-leader rebalance.
fn plan_rebalance(
    config: &PlanConfig,
    topics: &BTreeMap<&String, &TopicSnapshot>,
    original: &BTreeMap<TopicPartition, (PartitionState, i32)>,
    decided: &BTreeMap<TopicPartition, PartitionState>,
    reassigning: &BTreeSet<TopicPartition>,
    live: &BTreeSet<BrokerId>,
    controller_epoch: i32,
) -> Vec<Txn> {
    let mut by_preferred: BTreeMap<BrokerId, (usize, Vec<TopicPartition>)> = BTreeMap::new();
    for (tp, (state, _)) in original {
        if !topics.contains_key(&tp.topic) {
            continue;
        }
        let Some(preferred) = state.replicas.first().copied() else {
            continue;
        };
        let e = by_preferred.entry(preferred).or_default();
        e.0 += 1;
        if state.leader != Some(preferred) {
            e.1.push(tp.clone());
        }
    }
    let mut txns = Vec::new();
    for (preferred, (total, off)) in by_preferred {
        if total == 0 || off.is_empty() || !live.contains(&preferred) {
            continue;
        }
        // Kafka's check: the imbalance ratio exceeds the percentage.
        if off.len() * 100 <= config.imbalance_percentage as usize * total {
            continue;
        }
        for tp in off {
            if decided.contains_key(&tp) || reassigning.contains(&tp) {
                continue;
            }
            let (state, version) = &original[&tp];
            if !state.isr.contains(&preferred) {
                continue;
            }
            let mut next = state.clone();
            next.leader = Some(preferred);
            next.leader_epoch = next.leader_epoch.next();
            txns.push(Txn {
                what: format!("{tp}: preferred leader {} back", preferred.0),
                ops: vec![state_txn(&tp, &next, *version, controller_epoch)],
            });
        }
    }
    txns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::znodes::ReassignmentEntry;

    fn broker(id: i32, unclean_start: bool) -> (BrokerId, (BrokerZnode, i64)) {
        let z = BrokerZnode {
            version: 5,
            host: "h".into(),
            port: 9092,
            jmx_port: -1,
            timestamp: "0".into(),
            endpoints: vec![],
            listener_security_protocol_map: BTreeMap::new(),
            rack: None,
            unclean_start,
        };
        (BrokerId(id), (z, 100 + i64::from(id)))
    }

    fn topic(assignment: &[&[i32]], states: &[(i32, &[i32], i32)]) -> TopicSnapshot {
        TopicSnapshot {
            znode: TopicZnode {
                version: 3,
                partitions: assignment
                    .iter()
                    .enumerate()
                    .map(|(p, r)| (p.to_string(), r.to_vec()))
                    .collect(),
                adding_replicas: BTreeMap::new(),
                removing_replicas: BTreeMap::new(),
                topic_id: None,
            },
            version: 0,
            partitions_node: true,
            partition_nodes: (0..assignment.len() as i32).collect(),
            states: states
                .iter()
                .enumerate()
                .map(|(p, (leader, isr, epoch))| {
                    (
                        p as i32,
                        (
                            PartitionStateZnode {
                                controller_epoch: 1,
                                leader: *leader,
                                version: 1,
                                leader_epoch: *epoch,
                                isr: isr.to_vec(),
                            },
                            4,
                        ),
                    )
                })
                .collect(),
            config_node: true,
        }
    }

    fn config(unclean: bool) -> PlanConfig {
        PlanConfig {
            core: ControllerConfig {
                min_insync_replicas: 1,
                unclean_leader_election: unclean,
            },
            imbalance_percentage: 10,
            delete_topic_enable: true,
        }
    }

    fn written_state(txn: &Txn) -> (String, PartitionStateZnode, i32) {
        match &txn.ops[..] {
            [
                WriteOp::Set {
                    path,
                    data,
                    version,
                },
            ] => (path.clone(), znodes::decode(path, data).unwrap(), *version),
            other => panic!("not a single state write: {other:?}"),
        }
    }

    /// CLU-67, REP-20, REP-21: with only out-of-sync replicas alive the
    /// partition stays offline unless unclean election is enabled.
    #[test]
    fn unclean_election_only_when_enabled() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(3, false)]);
        snap.topics
            .insert("t".into(), topic(&[&[1, 2, 3]], &[(1, &[1, 2], 5)]));
        let clean = plan(&snap, &config(false), &BTreeMap::new(), 2, false);
        let (_, s, _) = written_state(&clean.txns[0]);
        assert_eq!(s.leader, -1, "offline");
        assert_eq!(s.isr.len(), 1, "REP-18: the ISR keeps one member");
        let unclean = plan(&snap, &config(true), &BTreeMap::new(), 2, false);
        let (path, s, version) = written_state(&unclean.txns[0]);
        assert_eq!(path, "/brokers/topics/t/partitions/0/state");
        assert_eq!((s.leader, s.leader_epoch, s.isr), (3, 6, vec![3]));
        assert_eq!(
            (version, s.controller_epoch),
            (4, 2),
            "conditional, stamped"
        );
    }

    /// CLU-68: an unclean start leaves the ISR; then the flag is cleared
    /// in the registration, at its version, and nothing more happens.
    #[test]
    fn unclean_start_handled_once() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(1, false), broker(2, true)]);
        snap.broker_versions.insert(BrokerId(2), 0);
        snap.topics
            .insert("t".into(), topic(&[&[1, 2]], &[(1, &[1, 2], 0)]));
        let first = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        let (_, s, _) = written_state(&first.txns[0]);
        assert_eq!((s.leader, s.isr), (1, vec![1]));
        let (path, b, version) = match &first.after[..] {
            [Txn { ops, .. }] => match &ops[..] {
                [
                    WriteOp::Set {
                        path,
                        data,
                        version,
                    },
                ] => (
                    path.clone(),
                    znodes::decode::<BrokerZnode>(path, data).unwrap(),
                    *version,
                ),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (path.as_str(), b.unclean_start, version),
            ("/brokers/ids/2", false, 0)
        );
        snap.brokers.get_mut(&BrokerId(2)).unwrap().0 = b;
        snap.topics
            .get_mut("t")
            .unwrap()
            .states
            .get_mut(&0)
            .unwrap()
            .0
            .isr = vec![1, 2];
        let again = plan(&snap, &config(false), &first.seen, 1, false);
        assert!(again.txns.is_empty() && again.after.is_empty(), "{again:?}");
    }

    /// CLU-68: a broker that registered again between two passes loses
    /// its leadership as if its loss had been seen.
    #[test]
    fn quick_reregistration_is_a_restart() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(1, false), broker(2, false)]);
        snap.topics
            .insert("t".into(), topic(&[&[1, 2]], &[(1, &[1, 2], 3)]));
        let first = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        assert!(first.txns.is_empty());
        snap.brokers.get_mut(&BrokerId(1)).unwrap().1 += 1000;
        let p = plan(&snap, &config(false), &first.seen, 1, false);
        let (_, s, _) = written_state(&p.txns[0]);
        assert_eq!((s.leader, s.leader_epoch, s.isr), (2, 4, vec![2]));
    }

    /// CLU-79: a request with a repeated broker is dropped; a finished one
    /// too.
    #[test]
    fn bad_or_finished_reassignments_are_dropped() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(1, false), broker(2, false)]);
        snap.topics.insert(
            "t".into(),
            topic(&[&[1, 2], &[2, 1]], &[(1, &[1, 2], 0), (2, &[1, 2], 0)]),
        );
        snap.reassignment = Some((
            ReassignmentZnode {
                version: 1,
                partitions: vec![
                    ReassignmentEntry {
                        topic: "t".into(),
                        partition: 0,
                        replicas: vec![2, 2],
                    },
                    ReassignmentEntry {
                        topic: "t".into(),
                        partition: 1,
                        replicas: vec![2, 1],
                    },
                ],
            },
            7,
        ));
        let p = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        assert_eq!(p.txns.len(), 1, "{:?}", p.txns);
        assert_eq!(
            p.txns[0].ops,
            vec![WriteOp::Delete {
                path: znodes::ADMIN_REASSIGN.into()
            }]
        );
    }

    /// CLU-80, CLU-81: no move while the imbalance is within the
    /// percentage; a move back to the preferred leader beyond it.
    #[test]
    fn rebalance_respects_the_percentage() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(1, false), broker(2, false)]);
        // Broker 1 is preferred for 10 partitions and leads 9 of them.
        let assignment: Vec<&[i32]> = vec![&[1, 2]; 10];
        let mut states: Vec<(i32, &[i32], i32)> = vec![(1, &[1, 2], 0); 10];
        states[3] = (2, &[1, 2], 1);
        snap.topics.insert("t".into(), topic(&assignment, &states));
        let mut cfg = config(false);
        assert!(
            plan(&snap, &cfg, &BTreeMap::new(), 1, true).txns.is_empty(),
            "10% is not above 10%"
        );
        cfg.imbalance_percentage = 5;
        assert!(
            plan(&snap, &cfg, &BTreeMap::new(), 1, false)
                .txns
                .is_empty(),
            "only when due"
        );
        let p = plan(&snap, &cfg, &BTreeMap::new(), 1, true);
        let (path, s, _) = written_state(&p.txns[0]);
        assert_eq!(path, "/brokers/topics/t/partitions/3/state");
        assert_eq!((s.leader, s.leader_epoch), (1, 2));
    }

    /// CLU-82: a requested election moves leadership to the preferred
    /// replica whatever the imbalance, only when it is live and in the
    /// ISR, and the request goes once the pass's writes applied.
    #[test]
    fn requested_preferred_elections() {
        let mut snap = Snapshot::default();
        snap.brokers.extend([broker(1, false), broker(2, false)]);
        let assignment: Vec<&[i32]> = vec![&[1, 2], &[1, 2], &[1, 2], &[3, 2]];
        let states: Vec<(i32, &[i32], i32)> =
            vec![(2, &[1, 2], 1), (2, &[2], 1), (1, &[1, 2], 0), (2, &[2], 1)];
        snap.topics.insert("t".into(), topic(&assignment, &states));
        let p = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        assert!(p.txns.is_empty() && p.after.is_empty(), "nothing asked");
        snap.preferred_election = Some((0..5).map(|p| TopicPartition::new("t", p)).collect());
        let p = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        // Partition 1: preferred not in the ISR; 2: already leads; 3:
        // preferred not registered; 4: no such partition.
        assert_eq!(p.txns.len(), 1, "{:?}", p.txns);
        let (path, s, version) = written_state(&p.txns[0]);
        assert_eq!(path, "/brokers/topics/t/partitions/0/state");
        assert_eq!((s.leader, s.leader_epoch, version), (1, 2, 4));
        assert!(matches!(
            &p.after[..],
            [Txn { ops, .. }] if ops == &[WriteOp::Delete { path: znodes::ADMIN_PREFERRED_ELECTION.into() }]
        ));
        // A broker shutting down is not elected (its leaderships move
        // away instead, CLU-65).
        snap.shutting_down.insert(BrokerId(1));
        let p = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        assert!(
            p.txns.iter().all(|t| written_state(t).1.leader != 1),
            "{:?}",
            p.txns
        );
    }

    /// CLU-75: a deletion request for a topic that is already gone only
    /// removes the request.
    #[test]
    fn deletion_of_a_missing_topic_clears_the_request() {
        let mut snap = Snapshot::default();
        snap.deletions.insert("gone".into());
        let p = plan(&snap, &config(false), &BTreeMap::new(), 1, false);
        assert_eq!(
            p.txns[0].ops,
            vec![WriteOp::Delete {
                path: "/admin/delete_topics/gone".into()
            }]
        );
        // With deletion disabled an existing topic stays; the request goes.
        snap.deletions = ["t".to_string()].into();
        snap.topics
            .insert("t".into(), topic(&[&[1]], &[(1, &[1], 0)]));
        let mut cfg = config(false);
        cfg.delete_topic_enable = false;
        let p = plan(&snap, &cfg, &BTreeMap::new(), 1, false);
        assert_eq!(
            p.txns[0].ops,
            vec![WriteOp::Delete {
                path: "/admin/delete_topics/t".into()
            }]
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// One partition: replicas (a permutation prefix of brokers 1..=5),
        /// leader index or none, ISR membership bits.
        fn partition() -> impl Strategy<Value = (Vec<i32>, Option<usize>, Vec<bool>, i32)> {
            (1usize..=4, Just(vec![1, 2, 3, 4, 5]).prop_shuffle()).prop_flat_map(|(rf, order)| {
                let replicas: Vec<i32> = order[..rf].to_vec();
                (
                    Just(replicas),
                    proptest::option::of(0..rf),
                    proptest::collection::vec(any::<bool>(), rf),
                    0i32..5,
                )
            })
        }

        proptest! {
            /// CLU-66, CLU-67, CLU-72, REP-17, REP-18, REP-20: whatever the
            /// cluster looks like, every state a pass writes names a live
            /// leader from the old ISR (or none) that is in the new ISR,
            /// bumps the leader epoch when the leader changes, keeps the
            /// ISR within the replicas and at least min.insync.replicas
            /// strong (or as strong as it was), and is conditional on the
            /// version read.
            #[test]
            fn written_states_follow_the_rules(
                parts in proptest::collection::vec(partition(), 1..5),
                live in proptest::collection::btree_set(1i32..=5, 0..=5),
                min in 1usize..=3,
            ) {
                let mut snap = Snapshot::default();
                for b in &live {
                    let (id, reg) = broker(*b, false);
                    snap.brokers.insert(id, reg);
                }
                let assignment: Vec<&[i32]> = parts.iter().map(|p| p.0.as_slice()).collect();
                let isrs: Vec<Vec<i32>> = parts
                    .iter()
                    .map(|(r, leader, bits, _)| {
                        r.iter()
                            .zip(bits)
                            .enumerate()
                            .filter(|(i, (_, b))| **b || Some(*i) == *leader)
                            .map(|(_, (id, _))| *id)
                            .collect()
                    })
                    .collect();
                let states: Vec<(i32, &[i32], i32)> = parts
                    .iter()
                    .zip(&isrs)
                    .map(|((r, leader, _, epoch), isr)| {
                        (leader.map_or(-1, |i| r[i]), isr.as_slice(), *epoch)
                    })
                    .collect();
                snap.topics.insert("t".into(), topic(&assignment, &states));
                let mut cfg = config(false);
                cfg.core.min_insync_replicas = min;
                let p = plan(&snap, &cfg, &BTreeMap::new(), 3, false);
                for txn in &p.txns {
                    let (path, s, version) = written_state(txn);
                    let part: usize = path.split('/').nth(5).unwrap().parse().unwrap();
                    let (before_leader, before_isr, before_epoch) = states[part];
                    let replicas = &parts[part].0;
                    prop_assert_eq!(version, 4);
                    prop_assert_eq!(s.controller_epoch, 3);
                    prop_assert!(s.isr.iter().all(|m| replicas.contains(m)), "{:?}", s);
                    if s.leader >= 0 {
                        prop_assert!(live.contains(&s.leader), "{:?}", s);
                        prop_assert!(s.isr.contains(&s.leader), "{:?}", s);
                        prop_assert!(before_isr.contains(&s.leader), "clean election: {:?}", s);
                    }
                    if s.leader != before_leader && s.leader >= 0 {
                        prop_assert!(s.leader_epoch > before_epoch, "{:?}", s);
                    }
                    prop_assert!(
                        s.isr.len() >= min.min(before_isr.len()),
                        "ISR {:?} below min.insync {} (was {:?})", s.isr, min, before_isr
                    );
                }
            }
        }
    }
}
