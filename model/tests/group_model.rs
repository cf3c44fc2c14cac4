//! Exhaustive checks of the consumer-group model over the real coordinator
//! (spec: GRP-90–GRP-93; bounds and sizes in `spec/groups.md` §8).
//!
//! Each gating run is a complete breadth-first search of its configuration
//! (no depth or state-count cut-off); the unique state count is pinned so a
//! silent change of the explored space shows up as a failure to look at.

use std::time::Instant;

use gregor_core::assignor::Assignor;
use gregor_model::group::{Action, GroupModel};
use stateright::{Checker, HasDiscoveries, Model};

/// Runs `model` to completion, prints its size and time, and checks every
/// property: each `always` holds and each `sometimes` guard was reached.
fn check_exhaustively(name: &str, model: GroupModel) -> usize {
    let started = Instant::now();
    let checker = model.checker().spawn_bfs().join();
    let unique = checker.unique_state_count();
    eprintln!(
        "{name}: {unique} unique states ({} visited), max depth {}, {:.1?}",
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
    unique
}

/// spec: GRP-90, GRP-91, GRP-92, GRP-93 — 3 consumers, 3 partitions, range:
/// joins, rejoins, a leave, a pause (expiry, then zombie commits), slow
/// syncs, up to two commits, two generations, three time units.
#[test]
fn range_group_of_three_is_safe() {
    let model = GroupModel {
        max_generation: 2,
        max_time: 3,
        max_commits: 2,
        ..GroupModel::new()
    };
    assert_eq!(check_exhaustively("range", model), 615_832);
}

/// spec: GRP-22, GRP-42, GRP-84 and GRP-90–GRP-93 — the sticky assignor
/// with persists that stay in flight (a slow plan persist, a late commit
/// acknowledgement).
#[test]
fn sticky_group_with_slow_persists_is_safe() {
    let model = GroupModel {
        max_generation: 2,
        max_time: 2,
        max_commits: 1,
        async_persist: true,
        assignor: Assignor::Sticky,
        ..GroupModel::new()
    };
    assert_eq!(check_exhaustively("sticky, async persists", model), 468_045);
}

/// spec: GRP-11 and GRP-90–GRP-93 — consumers join with JoinGroup v4:
/// MEMBER_ID_REQUIRED first, then a second join with the handed-out id.
#[test]
fn member_id_required_joins_are_safe() {
    let model = GroupModel {
        max_generation: 2,
        max_time: 1,
        max_commits: 1,
        max_leaves: 0,
        join_version: 4,
        ..GroupModel::new()
    };
    assert_eq!(check_exhaustively("v4 joins", model), 110_630);
}

/// spec: GRP-40, GRP-92 — re-enabling the broken rule (accept a commit from
/// an older generation) is caught: the checker finds a commit from a member
/// of generation 1 acknowledged while the group is in generation 2.
#[test]
fn accepting_stale_generation_commits_breaks_fencing() {
    let model = GroupModel {
        max_generation: 2,
        max_commits: 2,
        ..GroupModel::new()
    }
    .accepting_stale_commits();
    let checker = model
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let path = checker
        .discovery("fenced commits")
        .expect("the checker must find the fenced-commit violation");
    eprintln!("fenced-commit counterexample:\n{path}");
    let states = path.clone().into_states();
    let last = states.last().expect("a path has states");
    assert!(last.history.fenced_commit_violation);
    assert!(last.group.generation().get() >= 2);
    let actions = path.into_actions();
    assert!(matches!(actions.last(), Some(Action::Commit(_))));
    assert_eq!(actions.len(), 7, "BFS finds the shortest counterexample");
}
