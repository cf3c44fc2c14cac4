//! `gregor groups list|describe|reset-offsets|delete` and
//! `gregor consume --group` (spec: GRP-120 … GRP-128).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use gregor_core::assignor::Assignor;
use gregor_core::consumer_protocol::Assignment;

use super::tools::ConsumeArgs;
use crate::client::Client;
use crate::client::group::{GroupMember, MemberConfig};
use crate::client::router::{DEFAULT_TIMEOUT, Router};
use crate::storage::record::RecordIter;

/// Bytes asked for per fetch.
const FETCH_BYTES: i32 = 1 << 20;
/// How long one fetch waits for new data with `--follow`.
const FETCH_WAIT_MS: i32 = 500;
/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `gregor groups …`.
#[derive(Debug, clap::Subcommand)]
pub enum GroupsCmd {
    /// List the consumer groups.
    List,
    /// Describe a group: state, members, assignments, offsets and lag.
    Describe {
        /// The group id.
        group: String,
    },
    /// Move a group's committed offsets (only while the group is Empty).
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// To the log start of every partition.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To the log end of every partition.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset on every partition (clamped to the log).
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Commit the plan; without it only print it.
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group and its committed offsets (only while Empty).
    Delete {
        /// The group id.
        group: String,
    },
    /// Forget a group's committed offsets of a topic (OffsetDelete): allowed
    /// while no member of the group subscribes to the topic.
    DeleteOffsets {
        /// The group id.
        group: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Partitions, repeatable or comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        partition: Vec<i32>,
    },
}

/// Runs `gregor groups`.
pub async fn groups(bootstrap: &str, cmd: GroupsCmd) -> anyhow::Result<()> {
    let mut c = Client::connect_any(bootstrap).await?;
    // Log start and end offsets come from each partition's leader.
    let mut r = Router::new(bootstrap, DEFAULT_TIMEOUT)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupsCmd::List => {
            let mut gs = c.list_groups().await?;
            gs.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
            for g in gs {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    g.group_id.0, g.group_state, g.protocol_type
                )?;
            }
        }
        GroupsCmd::Describe { group } => describe(&mut c, &mut r, &group, &mut out).await?,
        GroupsCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(o)) => Target::Offset(o),
                _ => bail!("choose one of --to-earliest, --to-latest or --to-offset N"),
            };
            reset_offsets(&mut c, &mut r, &group, &topic, target, execute, &mut out).await?;
        }
        GroupsCmd::Delete { group } => {
            c.delete_group(&group).await?;
            writeln!(out, "Deleted group {group}.")?;
        }
        GroupsCmd::DeleteOffsets {
            group,
            topic,
            partition,
        } => {
            let partitions = if partition.is_empty() {
                (0..r.partitions(&topic).await?).collect()
            } else {
                partition
            };
            let mut refused = Vec::new();
            for (p, code) in c.delete_offsets(&group, &topic, &partitions).await? {
                if code == 0 {
                    writeln!(out, "Deleted the committed offset of {topic}-{p}.")?;
                } else {
                    let why = kafka_protocol::ResponseError::try_from_code(code)
                        .map_or_else(|| format!("Kafka error {code}"), |e| e.to_string());
                    refused.push(format!("{topic}-{p}: {why}"));
                }
            }
            if !refused.is_empty() {
                bail!("offsets kept: {}", refused.join("; "));
            }
        }
    }
    Ok(())
}

/// spec: GRP-126 — state, protocol, every member with its client id, host
/// and decoded assignment, then per partition the committed offset, the
/// log end offset and the lag between them.
async fn describe(
    c: &mut Client,
    r: &mut Router,
    group: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let g = c.describe_group(group).await?;
    writeln!(
        out,
        "Group: {group}\tState: {}\tProtocolType: {}\tProtocol: {}\tMembers: {}",
        g.group_state,
        g.protocol_type,
        g.protocol_data,
        g.members.len()
    )?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &g.members {
        let parts = if m.member_assignment.is_empty() {
            Vec::new()
        } else {
            Assignment::decode(&m.member_assignment)
                .with_context(|| format!("assignment of member {}", m.member_id))?
                .partitions
        };
        for tp in &parts {
            owner.insert((tp.topic.clone(), tp.partition), m.member_id.to_string());
        }
        let list = parts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            out,
            "\tMember: {}\tClientId: {}\tHost: {}\tPartitions: {list}",
            m.member_id, m.client_id, m.client_host
        )?;
    }
    let mut committed = c.committed_offsets(group, None).await?;
    committed.sort_by(|a, b| {
        a.tp.topic
            .cmp(&b.tp.topic)
            .then(a.tp.partition.cmp(&b.tp.partition))
    });
    writeln!(
        out,
        "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER"
    )?;
    for e in committed {
        let end = r.list_offset(&e.tp.topic, e.tp.partition, -1).await?;
        let (current, lag) = if e.offset < 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (e.offset.to_string(), (end - e.offset).max(0).to_string())
        };
        let member = owner
            .get(&(e.tp.topic.clone(), e.tp.partition))
            .map_or("-", String::as_str);
        writeln!(
            out,
            "{}\t{}\t{current}\t{end}\t{lag}\t{member}",
            e.tp.topic, e.tp.partition
        )?;
    }
    Ok(())
}

/// Where `reset-offsets` moves a group.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

/// spec: GRP-127 — only an Empty (or unknown) group's offsets move; the
/// plan is printed, and committed with generation -1 and an empty member
/// id only with `--execute`.
async fn reset_offsets(
    c: &mut Client,
    r: &mut Router,
    group: &str,
    topic: &str,
    target: Target,
    execute: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let g = c.describe_group(group).await?;
    let state = g.group_state.to_string();
    if !matches!(state.as_str(), "Empty" | "Dead") {
        bail!(
            "group {group} is {state} with {} member(s): offsets can only be reset while it is Empty",
            g.members.len()
        );
    }
    let n = r.partitions(topic).await?;
    let mut plan = Vec::with_capacity(n as usize);
    for p in 0..n {
        let start = r.list_offset(topic, p, -2).await?;
        let end = r.list_offset(topic, p, -1).await?;
        let to = match target {
            Target::Earliest => start,
            Target::Latest => end,
            Target::Offset(o) => o.clamp(start, end),
        };
        plan.push((p, to));
    }
    writeln!(out, "TOPIC\tPARTITION\tNEW-OFFSET")?;
    for (p, o) in &plan {
        writeln!(out, "{topic}\t{p}\t{o}")?;
    }
    if execute {
        let code = c.commit_offsets(group, -1, "", topic, &plan).await?;
        if code != 0 {
            bail!(
                "resetting offsets of {group}: {} (Kafka error {code})",
                kafka_protocol::ResponseError::try_from_code(code)
                    .map_or_else(|| "unknown error".to_owned(), |e| e.to_string())
            );
        }
        writeln!(out, "Reset offsets of group {group} on {topic}.")?;
    } else {
        writeln!(out, "Dry run: add --execute to commit these offsets.")?;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The assigned partitions' positions and, without `--follow`, where to
/// stop.
struct Positions {
    pos: BTreeMap<i32, i64>,
    end: BTreeMap<i32, i64>,
    /// Positions not yet committed.
    dirty: bool,
}

/// spec: GRP-128 — start each assigned partition at the group's committed
/// offset, else at the log start with `--from-beginning` or the log end
/// without it.
async fn positions(
    c: &mut Router,
    member: &mut GroupMember,
    topic: &str,
    from_beginning: bool,
) -> anyhow::Result<Positions> {
    let parts: Vec<i32> = member
        .assignment()
        .iter()
        .filter(|tp| tp.topic == topic)
        .map(|tp| tp.partition)
        .collect();
    let committed = if parts.is_empty() {
        Vec::new()
    } else {
        member.committed(topic, &parts).await?
    };
    let mut pos = BTreeMap::new();
    let mut end = BTreeMap::new();
    for &p in &parts {
        let stored = committed
            .iter()
            .find(|e| e.tp.partition == p)
            .map_or(-1, |e| e.offset);
        let start = if stored >= 0 {
            stored
        } else {
            c.list_offset(topic, p, if from_beginning { -2 } else { -1 })
                .await?
        };
        pos.insert(p, start);
        end.insert(p, c.list_offset(topic, p, -1).await?);
    }
    Ok(Positions {
        pos,
        end,
        dirty: false,
    })
}

/// Runs `gregor consume --group`: joins the group, reads the assigned
/// partitions, commits after every poll and on exit, then leaves.
pub async fn consume_group(bootstrap: &str, args: &ConsumeArgs) -> anyhow::Result<()> {
    let group = args.group.as_deref().unwrap_or_default();
    let assignor = Assignor::from_name(&args.assignor).with_context(|| {
        format!(
            "--assignor {}: expected range, roundrobin or sticky",
            args.assignor
        )
    })?;
    let topic = args.topic.as_str();
    // spec: PRD-7 — fetches and list-offsets go to each partition's leader;
    // the group's requests go to its coordinator.
    let mut c = Router::new(bootstrap, std::time::Duration::from_millis(args.timeout_ms))?;
    c.partitions(topic).await?;
    let config = MemberConfig::new(group, vec![topic.to_owned()], assignor);
    let mut member = GroupMember::join(bootstrap, config).await?;
    let mut at = positions(&mut c, &mut member, topic, args.from_beginning).await?;
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    'poll: loop {
        if !args.follow && at.pos.iter().all(|(p, o)| *o >= at.end[p]) {
            break;
        }
        let wanted: Vec<(i32, i64)> = at
            .pos
            .iter()
            .filter(|(p, o)| args.follow || **o < at.end[*p])
            .map(|(&p, &o)| (p, o))
            .collect();
        let wait = if args.follow { FETCH_WAIT_MS } else { 0 };
        let fetched = if wanted.is_empty() {
            // Nothing assigned: stay a member and keep heartbeating.
            tokio::select! {
                biased;
                () = &mut stop => break 'poll,
                () = tokio::time::sleep(std::time::Duration::from_millis(FETCH_WAIT_MS as u64)) => Vec::new(),
            }
        } else {
            tokio::select! {
                biased;
                () = &mut stop => break 'poll,
                r = c.fetch_partitions(topic, &wanted, wait, FETCH_BYTES, FETCH_BYTES) => r?,
            }
        };
        let mut progressed = false;
        for f in fetched {
            if f.retry {
                // Its leader moved: not at the end, ask again.
                progressed = true;
                continue;
            }
            let from = at.pos[&f.partition];
            if f.error_code == OFFSET_OUT_OF_RANGE {
                let reset = c
                    .list_offset(
                        topic,
                        f.partition,
                        if args.from_beginning { -2 } else { -1 },
                    )
                    .await?;
                tracing::warn!(partition = f.partition, from, reset, "offset out of range");
                at.pos.insert(f.partition, reset);
                continue;
            }
            if f.error_code != 0 {
                bail!(
                    "fetch {topic}-{}@{from}: Kafka error {}",
                    f.partition,
                    f.error_code
                );
            }
            for r in RecordIter::new(&f.records, from) {
                let r = r?;
                if r.offset < from {
                    continue;
                }
                if args.print_key {
                    if let Some(k) = &r.key {
                        out.write_all(k)?;
                    }
                    out.write_all(args.key_separator.as_bytes())?;
                }
                if let Some(v) = &r.value {
                    out.write_all(v)?;
                }
                out.write_all(b"\n")?;
                at.pos.insert(f.partition, r.offset + 1);
                at.dirty = true;
                progressed = true;
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    break 'poll;
                }
            }
        }
        out.flush()?;
        // Auto-commit after every poll that moved, once the records are out.
        let mut rejoin = false;
        if at.dirty {
            let offsets: Vec<(i32, i64)> = at.pos.iter().map(|(&p, &o)| (p, o)).collect();
            rejoin = member.commit(topic, &offsets).await?;
            at.dirty = rejoin;
        }
        rejoin |= member.maybe_heartbeat().await?;
        if rejoin {
            member.rejoin().await?;
            at = positions(&mut c, &mut member, topic, args.from_beginning).await?;
        } else if !progressed && !args.follow && !wanted.is_empty() {
            // The log ends before the recorded end (truncated meanwhile).
            break;
        }
    }
    out.flush()?;
    if at.dirty {
        let offsets: Vec<(i32, i64)> = at.pos.iter().map(|(&p, &o)| (p, o)).collect();
        if member.commit(topic, &offsets).await? {
            tracing::warn!(group, "final commit fenced by a rebalance");
        }
    }
    member.leave().await?;
    Ok(())
}
