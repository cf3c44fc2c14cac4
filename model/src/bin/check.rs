//! Runs the replication model beyond the gating bounds.
//!
//! ```text
//! check [bfs|dfs|simulate|explore] [--replicas N] [--records N] [--epochs N]
//!       [--crashes N] [--power-losses N] [--zombies N] [--lag-timeouts N]
//!       [--min-isr N] [--acks 1|all] [--unclean] [--first] [--flushes] [--delayed-fetches N] [--legacy RULE]
//!       [--threads N] [--seed N] [--seconds N] [--steps N] [--port N]
//! ```
//!
//! `bfs`/`dfs` check exhaustively (to completion, or until `--seconds`
//! pass, which the report shows as `done: false`) and print the state count
//! and any counterexample; `simulate` runs random walks for `--seconds`
//! from a printed seed (given with `--seed`, or derived from the clock);
//! `--first` stops at the first violated property. `explore` serves stateright's explorer on 127.0.0.1:`--port`.
//! RULE is one of truncate-to-hw, naive-epoch-lookup, stale-epoch-fetches,
//! early-isr-expansion, hw-over-current-isr, last-member-unclean.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gregor_core::ids::TopicPartition;
use gregor_core::replica::Acks;
use gregor_model::replication::{Action, ReplicationModel};
use stateright::{Checker, HasDiscoveries, Model};

const USAGE: &str = "usage: check [bfs|dfs|simulate|explore] [--replicas N] [--records N] \
[--epochs N] [--crashes N] [--power-losses N] [--zombies N] [--lag-timeouts N] [--min-isr N] \
[--acks 1|all] [--unclean] [--first] [--flushes] [--delayed-fetches N] [--legacy RULE] [--threads N] [--seed N] [--seconds N] [--steps N] [--port N]";

struct Options {
    mode: String,
    model: ReplicationModel,
    threads: usize,
    seed: Option<u64>,
    seconds: u64,
    steps: usize,
    port: u16,
    first: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        mode: "bfs".into(),
        model: ReplicationModel::safe(),
        threads: 1,
        seed: None,
        seconds: 600,
        steps: 400,
        port: 3000,
        first: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match arg.as_str() {
            "bfs" | "dfs" | "simulate" | "explore" => o.mode = arg,
            "--replicas" => o.model.replicas = num(&arg, value(&arg)?)?,
            "--records" => o.model.max_records = num(&arg, value(&arg)?)?,
            "--epochs" => o.model.max_leader_epoch = num(&arg, value(&arg)?)?,
            "--crashes" => o.model.max_crashes = num(&arg, value(&arg)?)?,
            "--power-losses" => o.model.max_power_losses = num(&arg, value(&arg)?)?,
            "--zombies" => o.model.max_zombies = num(&arg, value(&arg)?)?,
            "--lag-timeouts" => o.model.max_lag_timeouts = num(&arg, value(&arg)?)?,
            "--min-isr" => o.model.min_insync_replicas = num(&arg, value(&arg)?)?,
            "--threads" => o.threads = num(&arg, value(&arg)?)?,
            "--seed" => o.seed = Some(num(&arg, value(&arg)?)?),
            "--seconds" => o.seconds = num(&arg, value(&arg)?)?,
            "--steps" => o.steps = num(&arg, value(&arg)?)?,
            "--port" => o.port = num(&arg, value(&arg)?)?,
            "--unclean" => o.model.unclean_leader_election = true,
            "--first" => o.first = true,
            "--flushes" => o.model.flushes = true,
            "--delayed-fetches" => o.model.max_delayed_fetches = num(&arg, value(&arg)?)?,
            "--acks" => {
                o.model.acks = match value(&arg)?.as_str() {
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    v => return Err(format!("--acks: expected 1 or all, got {v}")),
                }
            }
            "--legacy" => {
                let l = &mut o.model.legacy;
                match value(&arg)?.as_str() {
                    "truncate-to-hw" => l.truncate_to_hw_on_restart = true,
                    "naive-epoch-lookup" => l.naive_epoch_lookup = true,
                    "stale-epoch-fetches" => l.count_stale_epoch_fetches = true,
                    "early-isr-expansion" => l.early_isr_expansion = true,
                    "hw-over-current-isr" => l.hw_over_current_isr = true,
                    "last-member-unclean" => l.last_member_survives_unclean_restart = true,
                    v => return Err(format!("--legacy: unknown rule {v}")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    if o.model.replicas == 0 || o.model.min_insync_replicas == 0 {
        return Err("--replicas and --min-isr must be at least 1".into());
    }
    Ok(o)
}

fn report(checker: &impl Checker<ReplicationModel>, started: Instant) -> ExitCode {
    println!(
        "states: {} unique, {} generated, max depth {}, {:.1?}, done: {}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed(),
        checker.is_done()
    );
    let model = checker.model();
    let mut failed = false;
    for p in model.properties() {
        match (
            checker.discovery(p.name),
            p.expectation.discovery_is_failure(),
        ) {
            (Some(path), true) => {
                failed = true;
                println!("VIOLATED {}:\n{}", p.name, path);
            }
            (None, false) if checker.is_done() => {
                failed = true;
                println!("NEVER REACHED {}", p.name);
            }
            _ => println!("ok {}", p.name),
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!("model: {:?}", o.model);
    let started = Instant::now();
    let builder = o.model.clone().checker().threads(o.threads);
    // Exhaustive runs stop after --seconds too, reporting done: false.
    let limit = Duration::from_secs(o.seconds);
    let builder = if o.first {
        builder.finish_when(HasDiscoveries::AnyFailures)
    } else {
        builder
    };
    match o.mode.as_str() {
        "bfs" => report(&builder.timeout(limit).spawn_bfs().join(), started),
        "dfs" => report(&builder.timeout(limit).spawn_dfs().join(), started),
        "simulate" => {
            let seed = o.seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
            println!("seed: {seed} (rerun with --seed {seed})");
            simulate(
                &o.model,
                seed,
                o.steps,
                Duration::from_secs(o.seconds),
                started,
            )
        }
        _ => {
            let address = format!("127.0.0.1:{}", o.port);
            println!("explorer on http://{address}/");
            o.model.checker().threads(o.threads).serve(address.as_str());
            ExitCode::SUCCESS
        }
    }
}

/// A small deterministic generator (xorshift64*), the one of the REP-37
/// property test.
fn next_choice(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

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

/// Random walks from `seed` until `limit` passes (REP-38). stateright's own
/// simulation is not used: it records the index of every action it tried,
/// including those `next_state` ignores, so its counterexample paths cannot
/// be rebuilt for this model.
fn simulate(
    model: &ReplicationModel,
    seed: u64,
    steps_per_walk: usize,
    limit: Duration,
    started: Instant,
) -> ExitCode {
    let properties: Vec<_> = model
        .properties()
        .into_iter()
        .filter(|p| p.expectation.discovery_is_failure())
        .collect();
    let mut rng = seed.max(1);
    let (mut walks, mut total, mut offline) = (0u64, 0u64, 0u64);
    let mut actions = Vec::new();
    while started.elapsed() < limit {
        walks += 1;
        let walk_seed = next_choice(&mut rng).max(1);
        let mut walk_rng = walk_seed;
        let mut state = model.init_states().pop().expect("one initial state");
        let mut trail = Vec::new();
        let mut attempts = 0;
        while trail.len() < steps_per_walk && attempts < 20 * steps_per_walk {
            attempts += 1;
            actions.clear();
            model.actions(&state, &mut actions);
            if actions.is_empty() {
                break;
            }
            let pick = (next_choice(&mut walk_rng) % actions.len() as u64) as usize;
            let action = actions.swap_remove(pick);
            if is_perturbation(&action) && !next_choice(&mut walk_rng).is_multiple_of(8) {
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
            total += 1;
            if let Some(p) = properties.iter().find(|p| !(p.condition)(model, &state)) {
                println!(
                    "VIOLATED {} in walk {walks} (walk seed {walk_seed}) after {} steps:",
                    p.name,
                    trail.len()
                );
                for a in &trail {
                    println!("  {a:?}");
                }
                return ExitCode::FAILURE;
            }
        }
        if trail.len() < steps_per_walk {
            let p = state
                .controller
                .partition(&TopicPartition::new("t", 0))
                .expect("the model's partition exists");
            if p.leader.is_none() && p.isr.is_empty() && !model.unclean_leader_election {
                offline += 1;
            } else {
                println!(
                    "walk {walks} (walk seed {walk_seed}) stopped early after {} steps: {trail:?}",
                    trail.len()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "walks: {walks} ({offline} ended offline for good), {total} steps, {:.1?}; every always property held",
        started.elapsed()
    );
    ExitCode::SUCCESS
}
