//! Partition assignors run by a group's leader: range, round-robin and
//! sticky, as pure functions (spec: GRP-80–GRP-84).
//!
//! The broker never assigns partitions; it relays the leader's plan. These
//! functions are what Gregor's own client runs as leader, and what the group
//! model's leader runs. Each takes the members (with their subscriptions
//! and, for sticky, the partitions they owned) and the partition count of
//! every known topic, and returns every member's partitions. Topics without
//! a known partition count are skipped; every member appears in the result,
//! possibly with no partitions.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{MemberId, TopicPartition};

/// One member as an assignor sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: MemberId,
    /// Its `group.instance.id`; static members sort first, by instance id,
    /// as in Kafka (spec: GRP-80).
    pub group_instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it owned in its last generation (sticky only).
    pub owned: Vec<TopicPartition>,
    /// The generation of `owned`, if known (-1 otherwise); on conflicting
    /// claims the newer generation wins (spec: GRP-83).
    pub generation: i32,
}

/// The plan: every member's partitions, sorted.
pub type Plan = BTreeMap<MemberId, Vec<TopicPartition>>;

/// The assignment strategies, by their Kafka protocol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// `range`: each topic's partitions split into contiguous ranges.
    Range,
    /// `roundrobin`: all partitions dealt out in turn.
    RoundRobin,
    /// `sticky`: balanced, moving as few partitions as possible.
    Sticky,
}

impl Assignor {
    /// The protocol name members advertise in JoinGroup.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
        }
    }

    /// The assignor with protocol name `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            "sticky" => Some(Assignor::Sticky),
            _ => None,
        }
    }

    /// Runs this strategy.
    #[must_use]
    pub fn assign(self, members: &[MemberSubscription], topics: &BTreeMap<String, i32>) -> Plan {
        match self {
            Assignor::Range => range(members, topics),
            Assignor::RoundRobin => round_robin(members, topics),
            Assignor::Sticky => sticky(members, topics),
        }
    }
}

/// Kafka's member order: static members first by instance id, then
/// dynamic members by member id (spec: GRP-80).
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn sorted(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.iter().collect();
    v.sort_by(|a, b| member_order(a, b));
    v
}

fn empty_plan(members: &[MemberSubscription]) -> Plan {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

fn subscribes(m: &MemberSubscription, topic: &str) -> bool {
    m.topics.iter().any(|t| t == topic)
}

/// The partitions of every topic some member subscribes to, sorted.
fn subscribed_partitions(
    members: &[MemberSubscription],
    topics: &BTreeMap<String, i32>,
) -> Vec<TopicPartition> {
    let wanted: BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.topics.iter().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for topic in wanted {
        if let Some(&n) = topics.get(topic) {
            out.extend((0..n.max(0)).map(|p| TopicPartition::new(topic, p)));
        }
    }
    out
}

/// spec: GRP-81 — per topic, the subscribed members in Kafka's order each
/// get `n / c` consecutive partitions, the first `n % c` one more.
#[must_use]
pub fn range(members: &[MemberSubscription], topics: &BTreeMap<String, i32>) -> Plan {
    let mut plan = empty_plan(members);
    let order = sorted(members);
    for (topic, &count) in topics {
        let subscribers: Vec<&&MemberSubscription> =
            order.iter().filter(|m| subscribes(m, topic)).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let c = subscribers.len();
        let n = usize::try_from(count).unwrap_or(0);
        let (per, extra) = (n / c, n % c);
        for (i, m) in subscribers.iter().enumerate() {
            let start = per * i + i.min(extra);
            let len = per + usize::from(i < extra);
            let slot = plan.entry(m.member_id.clone()).or_default();
            slot.extend(
                (start..start + len).map(|p| {
                    TopicPartition::new(topic.clone(), i32::try_from(p).unwrap_or(i32::MAX))
                }),
            );
        }
    }
    plan
}

/// spec: GRP-82 — all subscribed partitions in (topic, partition) order,
/// dealt to the members in Kafka's order, skipping members not subscribed
/// to the partition's topic.
#[must_use]
pub fn round_robin(members: &[MemberSubscription], topics: &BTreeMap<String, i32>) -> Plan {
    let mut plan = empty_plan(members);
    let order = sorted(members);
    if order.is_empty() {
        return plan;
    }
    let mut next = 0usize;
    for tp in subscribed_partitions(members, topics) {
        for step in 0..order.len() {
            let m = order[(next + step) % order.len()];
            if subscribes(m, &tp.topic) {
                plan.entry(m.member_id.clone()).or_default().push(tp);
                next = (next + step + 1) % order.len();
                break;
            }
        }
    }
    plan
}

/// spec: GRP-83, GRP-84 — a balanced plan that keeps previous ownership
/// where balance allows:
///
/// 1. every member keeps the partitions it owned that still exist and that
///    it still subscribes to (a partition claimed twice goes to the claim
///    with the newer generation, then to the first member in Kafka's order);
/// 2. unowned partitions go, one at a time in partition order, to the
///    subscribed member with the fewest partitions;
/// 3. while some member holds at least two more partitions than another
///    member subscribed to one of them, one moves — preferring partitions
///    the donor did not own before, so owners keep their own.
///
/// Step 3 strictly lowers the sum of squared counts, so it ends; when all
/// members subscribe to the same topics it ends with counts within one of
/// each other, each member keeping at least `min(owned, floor(P / M))` of
/// its valid previous partitions.
#[must_use]
pub fn sticky(members: &[MemberSubscription], topics: &BTreeMap<String, i32>) -> Plan {
    let order = sorted(members);
    let all: BTreeSet<TopicPartition> =
        subscribed_partitions(members, topics).into_iter().collect();
    // 1. Valid claims, newest generation first, then member order.
    let mut owner: BTreeMap<&TopicPartition, (i32, usize)> = BTreeMap::new();
    for (rank, m) in order.iter().enumerate() {
        for tp in &m.owned {
            let Some(tp) = all.get(tp) else { continue };
            if !subscribes(m, &tp.topic) {
                continue;
            }
            let better = owner.get(tp).is_none_or(|&(generation, first)| {
                m.generation > generation || (m.generation == generation && rank < first)
            });
            if better {
                owner.insert(tp, (m.generation, rank));
            }
        }
    }
    let mut held: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); order.len()];
    for (tp, &(_, rank)) in &owner {
        held[rank].insert((*tp).clone());
    }
    let previously: Vec<BTreeSet<TopicPartition>> = held.clone();
    // 2. Unowned partitions to the least-loaded subscriber.
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        let target = (0..order.len())
            .filter(|&i| subscribes(order[i], &tp.topic))
            .min_by_key(|&i| (held[i].len(), i));
        if let Some(i) = target {
            held[i].insert(tp.clone());
        }
    }
    // 3. Balance.
    loop {
        let mut best: Option<(usize, usize, TopicPartition)> = None;
        // The most loaded donor first; for it, the least loaded receiver.
        let mut donors: Vec<usize> = (0..order.len()).collect();
        donors.sort_by_key(|&i| (std::cmp::Reverse(held[i].len()), i));
        'search: for &d in &donors {
            let mut receivers: Vec<usize> = (0..order.len())
                .filter(|&r| held[r].len() + 2 <= held[d].len())
                .collect();
            receivers.sort_by_key(|&r| (held[r].len(), r));
            for &r in &receivers {
                // Prefer a partition the donor did not own before.
                let movable = |tp: &&TopicPartition| subscribes(order[r], &tp.topic);
                let pick = held[d]
                    .iter()
                    .rfind(|tp| movable(tp) && !previously[d].contains(*tp))
                    .or_else(|| held[d].iter().rfind(movable));
                if let Some(tp) = pick {
                    best = Some((d, r, tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((d, r, tp)) = best else { break };
        held[d].remove(&tp);
        held[r].insert(tp);
    }
    let mut plan = empty_plan(members);
    for (i, m) in order.iter().enumerate() {
        plan.insert(m.member_id.clone(), held[i].iter().cloned().collect());
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: MemberId(id.into()),
            topics: topics.iter().map(|t| (*t).to_string()).collect(),
            generation: -1,
            ..MemberSubscription::default()
        }
    }

    fn tps(plan: &Plan, id: &str) -> Vec<String> {
        plan[&MemberId(id.into())]
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Kafka's RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions
    /// shape: 3 partitions over 2 members per topic (spec: GRP-81).
    #[test]
    fn range_splits_each_topic_into_ranges() {
        let topics = BTreeMap::from([("t1".to_string(), 3), ("t2".to_string(), 3)]);
        let members = [member("c1", &["t1", "t2"]), member("c0", &["t1", "t2"])];
        let plan = range(&members, &topics);
        assert_eq!(tps(&plan, "c0"), ["t1-0", "t1-1", "t2-0", "t2-1"]);
        assert_eq!(tps(&plan, "c1"), ["t1-2", "t2-2"]);
    }

    /// Static members sort before dynamic ones, by instance id.
    #[test]
    fn range_orders_static_members_first() {
        let topics = BTreeMap::from([("t".to_string(), 2)]);
        let mut s = member("zzz", &["t"]);
        s.group_instance_id = Some("i".into());
        let plan = range(&[member("aaa", &["t"]), s], &topics);
        assert_eq!(tps(&plan, "zzz"), ["t-0"]);
        assert_eq!(tps(&plan, "aaa"), ["t-1"]);
    }

    /// spec: GRP-82 — members not subscribed to a topic are skipped.
    #[test]
    fn round_robin_deals_partitions_in_turn() {
        let topics = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 2)]);
        let members = [
            member("c0", &["a", "b"]),
            member("c1", &["a"]),
            member("c2", &["b"]),
        ];
        let plan = round_robin(&members, &topics);
        assert_eq!(tps(&plan, "c0"), ["a-0", "a-2", "b-1"]);
        assert_eq!(tps(&plan, "c1"), ["a-1"]);
        assert_eq!(tps(&plan, "c2"), ["b-0"]);
    }

    /// spec: GRP-84 — a member joining takes partitions only from members
    /// above the new quota; nobody else moves.
    #[test]
    fn sticky_moves_the_minimum_when_a_member_joins() {
        let topics = BTreeMap::from([("t".to_string(), 6)]);
        let mut a = member("a", &["t"]);
        a.owned = (0..3).map(|p| TopicPartition::new("t", p)).collect();
        let mut b = member("b", &["t"]);
        b.owned = (3..6).map(|p| TopicPartition::new("t", p)).collect();
        let c = member("c", &["t"]);
        let plan = sticky(&[a, b, c], &topics);
        assert_eq!(plan[&MemberId("a".into())].len(), 2);
        assert_eq!(plan[&MemberId("b".into())].len(), 2);
        assert_eq!(plan[&MemberId("c".into())].len(), 2);
        for p in &plan[&MemberId("a".into())] {
            assert!(p.partition < 3);
        }
        for p in &plan[&MemberId("b".into())] {
            assert!(p.partition >= 3);
        }
    }

    /// A partition claimed by two members goes to the newer generation.
    #[test]
    fn sticky_resolves_double_claims_by_generation() {
        let topics = BTreeMap::from([("t".to_string(), 2)]);
        let mut a = member("a", &["t"]);
        a.owned = vec![TopicPartition::new("t", 0)];
        a.generation = 3;
        let mut b = member("b", &["t"]);
        b.owned = vec![TopicPartition::new("t", 0)];
        b.generation = 4;
        let plan = sticky(&[a, b], &topics);
        assert_eq!(tps(&plan, "b"), ["t-0"]);
        assert_eq!(tps(&plan, "a"), ["t-1"]);
    }

    #[test]
    fn names_round_trip() {
        for a in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            assert_eq!(Assignor::from_name(a.name()), Some(a));
        }
        assert_eq!(Assignor::from_name("cooperative-sticky"), None);
    }

    /// Members (1–5) with random subscriptions over up to 3 topics, random
    /// previous ownership, and partition counts 0–7.
    fn scenario() -> impl Strategy<Value = (Vec<MemberSubscription>, BTreeMap<String, i32>)> {
        let names = ["t0", "t1", "t2"];
        (
            proptest::collection::vec(0i32..8, 3),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<bool>(), 3),
                    proptest::collection::vec((0usize..3, 0i32..8), 0..6),
                    -1i32..3,
                ),
                1..6,
            ),
        )
            .prop_map(move |(counts, raw)| {
                let topics: BTreeMap<String, i32> = names
                    .iter()
                    .zip(counts)
                    .map(|(n, c)| ((*n).to_string(), c))
                    .collect();
                let members = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (subs, owned, generation))| MemberSubscription {
                        member_id: MemberId(format!("m{i}")),
                        group_instance_id: None,
                        topics: names
                            .iter()
                            .zip(subs)
                            .filter(|(_, s)| *s)
                            .map(|(n, _)| (*n).to_string())
                            .collect(),
                        owned: owned
                            .into_iter()
                            .map(|(t, p)| TopicPartition::new(names[t], p))
                            .collect(),
                        generation,
                    })
                    .collect();
                (members, topics)
            })
    }

    /// spec: GRP-80 — every subscribed partition exactly once, to a
    /// subscriber, and every member listed.
    fn check_complete(
        members: &[MemberSubscription],
        topics: &BTreeMap<String, i32>,
        plan: &Plan,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(plan.len(), members.len());
        let mut seen = BTreeSet::new();
        for m in members {
            for tp in &plan[&m.member_id] {
                prop_assert!(
                    subscribes(m, &tp.topic),
                    "{} got {} without subscribing",
                    m.member_id,
                    tp
                );
                prop_assert!(seen.insert(tp.clone()), "{} assigned twice", tp);
            }
        }
        let expected: BTreeSet<TopicPartition> =
            subscribed_partitions(members, topics).into_iter().collect();
        prop_assert_eq!(seen, expected);
        Ok(())
    }

    fn counts(plan: &Plan) -> (usize, usize) {
        let lens = plan.values().map(Vec::len);
        (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
    }

    fn same_subscriptions(members: &mut [MemberSubscription]) {
        let topics = members[0].topics.clone();
        for m in members {
            m.topics.clone_from(&topics);
        }
    }

    proptest! {
        #[test]
        fn every_assignor_assigns_each_partition_once((members, topics) in scenario()) {
            for a in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
                check_complete(&members, &topics, &a.assign(&members, &topics))?;
            }
        }

        /// spec: GRP-82, GRP-84 — with identical subscriptions round-robin
        /// and sticky are balanced within one; range is, per topic.
        #[test]
        fn identical_subscriptions_balance_within_one((mut members, topics) in scenario()) {
            same_subscriptions(&mut members);
            for a in [Assignor::RoundRobin, Assignor::Sticky] {
                let (lo, hi) = counts(&a.assign(&members, &topics));
                prop_assert!(hi - lo <= 1, "{:?}: {} vs {}", a, lo, hi);
            }
            let plan = range(&members, &topics);
            for topic in &members[0].topics {
                let per: Vec<usize> = plan.values().map(|v| v.iter().filter(|tp| &tp.topic == topic).count()).collect();
                let (lo, hi) = (per.iter().min().copied().unwrap_or(0), per.iter().max().copied().unwrap_or(0));
                prop_assert!(hi - lo <= 1);
            }
        }

        /// spec: GRP-84 — with identical subscriptions, each member keeps at
        /// least min(valid owned, floor(P / M)) of its partitions, and
        /// re-running sticky on its own output changes nothing.
        #[test]
        fn sticky_keeps_ownership_where_balance_allows((mut members, topics) in scenario()) {
            same_subscriptions(&mut members);
            // Give each partition at most one claimant so ownership is clear.
            let mut claimed = BTreeSet::new();
            for m in &mut members {
                m.generation = 1;
                m.owned.retain(|tp| topics.get(&tp.topic).is_some_and(|&n| tp.partition < n) && m.topics.contains(&tp.topic) && claimed.insert(tp.clone()));
            }
            let plan = sticky(&members, &topics);
            let total: usize = plan.values().map(Vec::len).sum();
            let floor = total / members.len();
            for m in &members {
                let kept = plan[&m.member_id].iter().filter(|tp| m.owned.contains(tp)).count();
                prop_assert!(kept >= m.owned.len().min(floor), "{} kept {} of {} (floor {})", m.member_id, kept, m.owned.len(), floor);
            }
            let again: Vec<MemberSubscription> = members.iter().map(|m| MemberSubscription { owned: plan[&m.member_id].clone(), ..m.clone() }).collect();
            prop_assert_eq!(sticky(&again, &topics), plan);
        }
    }
}
