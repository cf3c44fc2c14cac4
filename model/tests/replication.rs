//! Model checking of the replication core (`spec/replication.md`, §4–§6).
//!
//! * The safe configurations are checked exhaustively: BFS to completion,
//!   no depth cut-off; the unique state counts are pinned (REP-36).
//! * Each historical rule, switched back on alone, must lose a committed
//!   record; the counterexample is printed (REP-40 to REP-46, REP-51).
//! * A property test drives the same model with long random schedules over
//!   5 replicas and many records, checking every invariant at every step
//!   (REP-37).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gregor_core::ids::TopicPartition;
use gregor_core::replica::Acks;
use gregor_model::replication::{Action, ReplicationModel, State};
use proptest::prelude::*;
use stateright::{Checker, HasDiscoveries, Model};

/// Runs BFS to completion and asserts every property (each `always` holds,
/// each `sometimes` is reached). Returns the unique state count.
fn check_exhaustively(model: ReplicationModel) -> usize {
    let started = Instant::now();
    let checker = model.checker().spawn_bfs().join();
    assert!(checker.is_done(), "the search must run to completion");
    checker.assert_properties();
    let states = checker.unique_state_count();
    println!(
        "{} unique states, max depth {}, {:.1?}",
        states,
        checker.max_depth(),
        started.elapsed()
    );
    states
}

/// REP-36: the gating configuration — 3 replicas, 2 records, leader epochs
/// up to 4, acks=all, min.insync.replicas=2, one power loss (no flushes, so
/// it drops the whole log), one zombie leader.
#[test]
fn safe_configuration_power_loss_and_zombie() {
    let states = check_exhaustively(ReplicationModel::safe_gating());
    assert_eq!(
        states, 750_364,
        "the explored space changed: review the model"
    );
}

/// REP-36: the gating configuration's second half — a process crash, a
/// lag-time ISR shrink and a late or lost fetch answer, at leader epochs up
/// to 2.
#[test]
fn safe_configuration_crash_shrink_and_late_fetch() {
    let states = check_exhaustively(ReplicationModel::safe_with_crash_and_lag());
    assert_eq!(
        states, 970_594,
        "the explored space changed: review the model"
    );
}

/// REP-36: acks=1 keeps every record a consumer could read (the HW) safe,
/// even though acknowledged records may be lost.
#[test]
fn safe_configuration_acks_one() {
    let model = ReplicationModel {
        acks: Acks::Leader,
        max_leader_epoch: 3,
        max_zombies: 1,
        max_power_losses: 0,
        max_crashes: 1,
        max_delayed_fetches: 0,
        max_lag_timeouts: 0,
        ..ReplicationModel::safe()
    };
    let states = check_exhaustively(model);
    assert_eq!(
        states, STATES_ACKS_ONE,
        "the explored space changed: review the model"
    );
}

const STATES_ACKS_ONE: usize = 411_223;

/// Searches `model` breadth-first until some property fails, prints the
/// shortest counterexample and returns the name of the failed property.
fn rediscover(name: &str, model: ReplicationModel) -> Vec<&'static str> {
    let started = Instant::now();
    let checker = model
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let model = checker.model();
    let mut failed = Vec::new();
    for p in model.properties() {
        if p.expectation.discovery_is_failure()
            && let Some(path) = checker.discovery(p.name)
        {
            let actions = path.into_actions();
            println!(
                "{name}: `{}` fails after {} steps ({:.1?}):",
                p.name,
                actions.len(),
                started.elapsed()
            );
            for action in actions {
                println!("  {action:?}");
            }
            failed.push(p.name);
        }
    }
    failed
}

fn small() -> ReplicationModel {
    ReplicationModel {
        max_leader_epoch: 3,
        max_crashes: 2,
        max_power_losses: 0,
        max_zombies: 0,
        max_lag_timeouts: 0,
        max_delayed_fetches: 0,
        ..ReplicationModel::safe()
    }
}

/// REP-40 (pre-KIP-101): truncating to the HW on restart drops a record
/// the leader already committed.
#[test]
fn rediscovers_truncate_to_hw_on_restart() {
    let mut m = small();
    m.legacy.truncate_to_hw_on_restart = true;
    assert!(rediscover("truncate-to-hw", m).contains(&"REP-30 no committed loss"));
}

/// REP-41 (pre-KIP-279): trusting the leader's end offset for an epoch the
/// follower does not share keeps a divergent record.
#[test]
fn rediscovers_naive_epoch_lookup() {
    let mut m = small();
    m.legacy.naive_epoch_lookup = true;
    let failed = rediscover("naive-epoch-lookup", m);
    assert!(failed.contains(&"REP-31 log matching"), "{failed:?}");
}

/// REP-42 (pre-KIP-320): a fetch from an older epoch advances the HW over
/// records the follower does not have.
#[test]
fn rediscovers_stale_epoch_fetches() {
    let mut m = small();
    m.legacy.count_stale_epoch_fetches = true;
    assert!(rediscover("stale-epoch-fetches", m).contains(&"REP-30 no committed loss"));
}

/// REP-43: letting a follower rejoin before it reaches the start of the
/// leader's epoch puts a replica that lacks committed records in the ISR.
#[test]
fn rediscovers_early_isr_expansion() {
    let mut m = ReplicationModel {
        max_leader_epoch: 2,
        max_crashes: 1,
        max_lag_timeouts: 1,
        max_delayed_fetches: 1,
        ..small()
    };
    m.legacy.early_isr_expansion = true;
    assert!(rediscover("early-isr-expansion", m).contains(&"REP-30 no committed loss"));
}

/// REP-44 (pre-KIP-497): a HW over the current ISR commits past a member
/// whose addition is in flight.
#[test]
fn rediscovers_hw_over_current_isr() {
    let mut m = small();
    m.legacy.hw_over_current_isr = true;
    assert!(rediscover("hw-over-current-isr", m).contains(&"REP-30 no committed loss"));
}

/// REP-45: unclean leader election loses acknowledged records (a documented
/// trade-off).
#[test]
fn rediscovers_unclean_election_loss() {
    let m = ReplicationModel {
        max_crashes: 3,
        unclean_leader_election: true,
        ..small()
    };
    assert!(rediscover("unclean-election", m).contains(&"REP-30 no committed loss"));
}

/// REP-46: acks=all with min.insync.replicas=1 lets the leader alone
/// acknowledge a record. With REP-50 a single power loss of that leader then
/// takes the partition offline for good (the documented trade-off is now
/// availability); with the former REP-22 exception (REP-51) the same steps
/// lose the acknowledged record.
#[test]
fn rediscovers_min_insync_one_loss() {
    let mut m = ReplicationModel {
        max_crashes: 1,
        max_power_losses: 1,
        max_lag_timeouts: 1,
        min_insync_replicas: 1,
        ..small()
    };
    // The loss BFS finds with the former rule: the leader shrinks the ISR
    // to itself, acknowledges alone, loses power and restarts.
    let steps: [fn(&Action) -> bool; 7] = [
        |a| *a == Action::DeliverPartitionState(0),
        |a| *a == Action::Produce(0),
        |a| *a == Action::Tick,
        |a| *a == Action::LagTimeout(0),
        |a| matches!(a, Action::AlterPartition(_)),
        |a| *a == Action::PowerLoss(0),
        |a| *a == Action::Restart(0),
    ];
    let end = replay(&m, &steps);
    assert!(!end.acked.is_empty(), "the leader acknowledged alone");
    assert!(
        violated_invariant(&m, &end, &[]).is_ok(),
        "REP-50 keeps every invariant"
    );
    assert!(
        offline_for_good(&m, &end),
        "the only ISR member lost power: the partition must stay offline"
    );
    m.legacy.last_member_survives_unclean_restart = true;
    assert!(rediscover("min-insync-1", m).contains(&"REP-30 no committed loss"));
}

/// Applies, from the initial state, the first enabled action matching each
/// step in turn; panics if a step has no matching action.
fn replay(model: &ReplicationModel, steps: &[fn(&Action) -> bool]) -> State {
    let mut state = model.init_states().pop().expect("one initial state");
    let mut actions = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        actions.clear();
        model.actions(&state, &mut actions);
        let action = actions
            .iter()
            .find(|a| step(a))
            .unwrap_or_else(|| panic!("step {n} is not enabled: {actions:?}"))
            .clone();
        state = model
            .next_state(&state, action)
            .unwrap_or_else(|| panic!("step {n} changes nothing"));
    }
    state
}

/// REP-51: keeping the last ISR member across its unclean restart (the
/// former REP-22 exception) elects a broker that lost committed records to
/// a power loss; REP-50 is needed.
#[test]
fn rediscovers_last_member_unclean_restart() {
    let mut m = ReplicationModel {
        max_leader_epoch: 3,
        max_crashes: 1,
        max_power_losses: 2,
        ..small()
    };
    m.legacy.last_member_survives_unclean_restart = true;
    assert!(rediscover("last-member-unclean", m).contains(&"REP-30 no committed loss"));
}

/// A large model for random walks: 5 replicas, many records, generous
/// perturbation budgets.
fn wide() -> ReplicationModel {
    ReplicationModel {
        replicas: 5,
        max_records: 100,
        max_leader_epoch: 40,
        max_crashes: 12,
        max_power_losses: 4,
        max_zombies: 4,
        max_lag_timeouts: 12,
        max_delayed_fetches: 40,
        flushes: true,
        min_insync_replicas: 3,
        ..ReplicationModel::safe()
    }
}

/// Checks every `always` property on `state`; the name of the first that
/// fails, with the actions that led there.
fn violated_invariant(
    model: &ReplicationModel,
    state: &State,
    trail: &[Action],
) -> Result<(), String> {
    for p in model.properties() {
        if p.expectation.discovery_is_failure() && !(p.condition)(model, state) {
            return Err(format!("`{}` fails after {:?}", p.name, trail));
        }
    }
    Ok(())
}

/// How a random schedule ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// All the steps were taken.
    Completed,
    /// The partition went offline for good: every ISR member restarted
    /// after an unclean shutdown and left the ISR (REP-50), and without
    /// unclean leader election nothing can bring it back. No step is left
    /// that changes the state in a way that matters.
    OfflineForGood,
}

/// Whether the partition is offline with an empty ISR (REP-50's
/// availability cost; only unclean election would end it).
fn offline_for_good(model: &ReplicationModel, state: &State) -> bool {
    let p = state
        .controller
        .partition(&TopicPartition::new("t", 0))
        .expect("the model's partition exists");
    !model.unclean_leader_election && p.leader.is_none() && p.isr.is_empty()
}

/// Runs one random schedule from `seed` over `model`, checking every
/// invariant after every step. Returns the steps taken and how the schedule
/// ended, or the first violation. A schedule may end early only with the
/// partition offline for good (REP-50).
fn run_schedule(model: &ReplicationModel, seed: u64) -> Result<(usize, Ending), String> {
    let mut state = model.init_states().pop().expect("one initial state");
    let mut trail = Vec::new();
    let mut actions = Vec::new();
    let mut rng = seed;
    let mut steps = 0;
    let mut attempts = 0;
    while steps < STEPS_PER_CASE && attempts < 20 * STEPS_PER_CASE {
        attempts += 1;
        actions.clear();
        model.actions(&state, &mut actions);
        if actions.is_empty() {
            break;
        }
        let action = actions[(next_choice(&mut rng) % actions.len() as u64) as usize].clone();
        // Perturbations are rarer than progress, so that schedules stay
        // long and varied instead of spending every budget at once.
        if is_perturbation(&action) && !next_choice(&mut rng).is_multiple_of(8) {
            continue;
        }
        let Some(next) = model.next_state(&state, action.clone()) else {
            continue;
        };
        if !model.within_boundary(&next) || next == state {
            continue;
        }
        trail.push(action);
        state = next;
        steps += 1;
        violated_invariant(model, &state, &trail)?;
    }
    if steps == STEPS_PER_CASE {
        Ok((steps, Ending::Completed))
    } else if offline_for_good(model, &state) {
        Ok((steps, Ending::OfflineForGood))
    } else {
        Err(format!("the schedule stopped early: {trail:?}"))
    }
}

/// REP-47 (closed): this schedule — four power losses over a run with 5
/// replicas and `min.insync.replicas=3` — once elected a broker that lost
/// committed records to unflushed writes: the last ISR member stayed in the
/// ISR across its unclean restart. With REP-50 it leaves the ISR; the
/// partition goes offline (no other replica is known to hold every
/// committed record) instead of serving a log without them, and every
/// invariant holds at every step.
#[test]
fn rep47_repeated_power_losses() {
    let model = wide();
    let (steps, ending) = run_schedule(&model, REP47_SEED).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ending,
        Ending::OfflineForGood,
        "after {steps} steps: the last two ISR members lost power, so the \
         partition must be offline, not led by either of them"
    );
    // The same schedule with the former rule breaks REP-30 (REP-51).
    let mut legacy = model;
    legacy.legacy.last_member_survives_unclean_restart = true;
    let err = run_schedule(&legacy, REP47_SEED).expect_err("the former rule loses records");
    assert!(err.contains("REP-30 no committed loss"), "{err}");
    println!("REP-47 with the former rule: {err}");
}

/// The proptest input of the REP-47 counterexample.
const REP47_SEED: u64 = 7_424_622_205_542_232_984;

/// The proptest generator seed: fixed so that the suite is reproducible,
/// or `PROPTEST_RNG_SEED` to explore fresh seeds (REP-37).
fn generator_seed() -> proptest::test_runner::RngSeed {
    let fixed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6772_6567_6f72);
    proptest::test_runner::RngSeed::Fixed(fixed)
}

/// Steps taken by all random cases so far.
static TOTAL_STEPS: AtomicUsize = AtomicUsize::new(0);

fn is_perturbation(action: &Action) -> bool {
    matches!(
        action,
        Action::Crash(_)
            | Action::PowerLoss(_)
            | Action::ExpireSession(_)
            | Action::Tick
            | Action::FetchDelayed(_)
            | Action::LoseFetch(_)
    )
}

/// Effective steps per random case.
const STEPS_PER_CASE: usize = 400;

/// A small deterministic generator (xorshift64*) so that a failing case is
/// reproduced from the seed proptest prints.
fn next_choice(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

proptest! {
    // A fixed generator seed keeps the suite reproducible; fresh seeds are
    // explored with `PROPTEST_RNG_SEED=<n>` and `check simulate`. The
    // REP-47 counterexample came from a fresh seed; `rep47_repeated_power_losses`
    // replays it.
    #![proptest_config(ProptestConfig {
        cases: 30,
        rng_seed: generator_seed(),
        ..ProptestConfig::default()
    })]

    /// REP-37: 30 cases × 400 effective steps = 12,000 random steps over 5
    /// replicas and up to 40 records, every invariant checked after every
    /// step.
    #[test]
    fn random_schedules_keep_invariants(seed in 1u64..u64::MAX) {
        let (steps, ending) = run_schedule(&wide(), seed).map_err(TestCaseError::fail)?;
        TOTAL_STEPS.fetch_add(steps, Ordering::Relaxed);
        println!(
            "seed {seed}: {steps} steps ({ending:?}), {} in total",
            TOTAL_STEPS.load(Ordering::Relaxed)
        );
    }
}
