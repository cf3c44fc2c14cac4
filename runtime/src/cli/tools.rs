//! `gregor topics`, `gregor produce` and `gregor consume`: the native
//! client from the command line. Output goes to stdout; logs to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use gregor_core::partitioner::{RoundRobin, Sticky, partition_for_key};

use crate::client::Client;
use crate::client::router::Router;
use crate::partition::now_ms;
use crate::storage::record::{BatchBuilder, Codec, RecordIter};

/// Default broker address (the embedded single-node listener).
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Records per produced batch before it is sent.
const BATCH_RECORDS: usize = 1000;
/// Bytes per produced batch before it is sent.
const BATCH_BYTES: usize = 512 * 1024;
/// Bytes asked for per fetch.
const FETCH_BYTES: i32 = 1 << 20;
/// How long one fetch waits for new data.
const FETCH_WAIT_MS: i32 = 500;

/// `gregor topics …`.
#[derive(Debug, clap::Subcommand)]
pub enum TopicsCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic config, repeatable: --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Describe topics (all when none is named).
    Describe {
        /// Topics to describe.
        topics: Vec<String>,
    },
    /// Change a topic's configs while it runs (IncrementalAlterConfigs).
    Alter {
        /// Topic name.
        topic: String,
        /// Set a topic config, repeatable: --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove an override (back to the broker default), repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Show a topic's configs: its overrides, or every key with --all.
    Configs {
        /// Topic name.
        topic: String,
        /// Every topic-level key with its effective value.
        #[arg(long)]
        all: bool,
    },
    /// Delete the records below an offset (DeleteRecords): consumers then
    /// start there, and whole segments below it are removed.
    DeleteRecords {
        /// Topic name.
        topic: String,
        /// Partitions, repeatable or comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        partition: Vec<i32>,
        /// Delete the records below this offset; -1 deletes every
        /// committed record (up to the high watermark).
        #[arg(long, allow_hyphen_values = true)]
        before: i64,
        /// How long to retry while a partition has no reachable leader, in
        /// milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        topic: String,
    },
    /// Move partition replicas to other brokers (ZooKeeper mode).
    Reassign(super::topics::ReassignArgs),
}

/// Runs `gregor topics`.
pub async fn topics(bootstrap: &str, cmd: TopicsCmd) -> anyhow::Result<()> {
    if let TopicsCmd::Reassign(args) = cmd {
        return super::topics::reassign(args).await;
    }
    if let TopicsCmd::DeleteRecords {
        topic,
        partition,
        before,
        timeout_ms,
    } = cmd
    {
        return delete_records(bootstrap, &topic, partition, before, timeout_ms).await;
    }
    let mut c = Client::connect_any(bootstrap).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicsCmd::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = key_values(&configs)?;
            c.create_topic(&topic, partitions, replication_factor, &configs)
                .await?;
            writeln!(out, "Created topic {topic}.")?;
        }
        TopicsCmd::List => {
            let md = c.metadata(None).await?;
            let mut names: Vec<String> = md
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            names.sort();
            for n in names {
                writeln!(out, "{n}")?;
            }
        }
        TopicsCmd::Describe { topics } => {
            let md = c
                .metadata(if topics.is_empty() {
                    None
                } else {
                    Some(&topics)
                })
                .await?;
            for t in &md.topics {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if t.error_code != 0 {
                    writeln!(out, "Topic: {name}\tError: {}", t.error_code)?;
                    continue;
                }
                let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
                writeln!(
                    out,
                    "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}",
                    t.topic_id,
                    t.partitions.len()
                )?;
                for p in &t.partitions {
                    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                        v.iter()
                            .map(|b| b.0.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    writeln!(
                        out,
                        "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        p.partition_index,
                        p.leader_id.0,
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes)
                    )?;
                }
            }
        }
        TopicsCmd::Alter {
            topic,
            configs,
            delete,
        } => {
            if configs.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --config KEY=VALUE or --delete-config KEY");
            }
            c.alter_topic_configs(&topic, &key_values(&configs)?, &delete)
                .await?;
            writeln!(out, "Altered configs of topic {topic}.")?;
        }
        TopicsCmd::Configs { topic, all } => {
            for (k, v, overridden) in c.topic_configs(&topic).await? {
                if all || overridden {
                    let v = v.unwrap_or_default();
                    let mark = if overridden { "" } else { "\t(default)" };
                    writeln!(out, "{k}={v}{mark}")?;
                }
            }
        }
        TopicsCmd::Delete { topic } => {
            c.delete_topic(&topic).await?;
            writeln!(out, "Deleted topic {topic}.")?;
        }
        TopicsCmd::Reassign(args) => super::topics::reassign(args).await?,
        TopicsCmd::DeleteRecords { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `gregor topics delete-records`: each partition's leader moves its log
/// start (spec: PRO-28); prints every partition's new low watermark.
async fn delete_records(
    bootstrap: &str,
    topic: &str,
    partitions: Vec<i32>,
    before: i64,
    timeout_ms: u64,
) -> anyhow::Result<()> {
    if before < -1 {
        bail!("--before {before}: give an offset, or -1 for the high watermark");
    }
    let mut router = Router::new(bootstrap, Duration::from_millis(timeout_ms))?;
    let partitions = if partitions.is_empty() {
        (0..router.partitions(topic).await?).collect()
    } else {
        partitions
    };
    let mut out = std::io::stdout().lock();
    for p in partitions {
        let low = router.delete_records(topic, p, before).await?;
        writeln!(out, "Partition: {p}\tLowWatermark: {low}")?;
    }
    Ok(())
}

/// Parses `KEY=VALUE` arguments.
fn key_values(kvs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    kvs.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--config {kv}: expected KEY=VALUE"))
        })
        .collect()
}

/// Arguments of `gregor produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// 0, 1 or -1/all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// How long a batch is retried while its partition's leader moves or
    /// cannot be reached, in ms (like Kafka's delivery.timeout.ms).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

fn codec(name: &str) -> anyhow::Result<Codec> {
    Ok(match name {
        "none" => Codec::None,
        "gzip" => Codec::Gzip,
        "snappy" => Codec::Snappy,
        "lz4" => Codec::Lz4,
        "zstd" => Codec::Zstd,
        other => bail!("unknown compression {other}: none, gzip, snappy, lz4 or zstd"),
    })
}

/// Runs `gregor produce`: one record per stdin line.
pub async fn produce(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let acks: i16 = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks {other}: expected 0, 1 or all"),
    };
    let codec = codec(&args.compression)?;
    // spec: PRD-7 — every batch goes to its partition's leader.
    let mut c = Router::new(bootstrap, Duration::from_millis(args.timeout_ms))?;
    let partitions = c.partitions(&args.topic).await?;
    if let Some(p) = args.partition
        && !(0..partitions).contains(&p)
    {
        bail!(
            "partition {p} does not exist: {} has {partitions}",
            args.topic
        );
    }
    // spec: PRD-2 — key-less records stick to one partition per batch; the
    // next partition comes from a round-robin seeded by the clock.
    let mut spread = RoundRobin::starting_at((now_ms() as u32) ^ std::process::id());
    let mut sticky = Sticky::default();
    let mut batches: BTreeMap<i32, (BatchBuilder, usize)> = BTreeMap::new();
    let mut sent = 0u64;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                None => (None, line.as_bytes().to_vec()),
            },
            None => (None, line.as_bytes().to_vec()),
        };
        // spec: PRD-3, PRD-1, PRD-2
        let p = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => sticky.partition(partitions, |n| spread.next_partition(n)),
        };
        let (b, bytes) = match batches.entry(p) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((BatchBuilder::new(2, codec, 0)?, 0))
            }
        };
        b.append(now_ms(), key.as_deref(), Some(&value), &[])?;
        *bytes += value.len() + key.as_ref().map_or(0, Vec::len);
        if b.len() >= BATCH_RECORDS || *bytes >= BATCH_BYTES {
            let (b, _) = batches
                .remove(&p)
                .unwrap_or_else(|| unreachable!("just inserted"));
            sent += send(&mut c, &args.topic, p, &b, acks).await?;
            if key.is_none() && args.partition.is_none() {
                sticky.batch_completed();
            }
        }
    }
    for (p, (b, _)) in std::mem::take(&mut batches) {
        sent += send(&mut c, &args.topic, p, &b, acks).await?;
    }
    tracing::info!(records = sent, topic = %args.topic, "produced");
    Ok(())
}

async fn send(
    c: &mut Router,
    topic: &str,
    partition: i32,
    b: &BatchBuilder,
    acks: i16,
) -> anyhow::Result<u64> {
    if b.is_empty() {
        return Ok(0);
    }
    let n = b.len() as u64;
    let bytes = Bytes::from(b.build()?);
    c.produce(topic, partition, bytes, acks).await?;
    Ok(n)
}

/// Arguments of `gregor consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at the beginning of the log (the default).
    #[arg(long, conflicts_with_all = ["offset", "from_end", "from_timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset (with --partition).
    #[arg(long, requires = "partition")]
    pub offset: Option<i64>,
    /// Start at the end: only new records.
    #[arg(long)]
    pub from_end: bool,
    /// Start at the first record with a timestamp ≥ this (ms since the epoch).
    #[arg(long)]
    pub from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// Print the key before the value.
    #[arg(long)]
    pub print_key: bool,
    /// Separator between key and value when printing keys.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
    /// Consume as a member of this consumer group: partitions are assigned
    /// by the group, reading resumes at the committed offsets and progress
    /// is committed.
    #[arg(long, conflicts_with_all = ["partition", "offset", "from_timestamp"])]
    pub group: Option<String>,
    /// The group's assignor when this member leads: range, roundrobin or sticky.
    #[arg(long, default_value = "range", requires = "group")]
    pub assignor: String,
    /// How long a read is retried while its partition's leader moves or
    /// cannot be reached, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

/// Runs `gregor consume`: prints one record per line.
pub async fn consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.is_some() {
        return super::groups::consume_group(bootstrap, &args).await;
    }
    // spec: PRD-7 — offsets and records come from each partition's leader.
    let mut c = Router::new(bootstrap, Duration::from_millis(args.timeout_ms))?;
    let partitions = c.partitions(&args.topic).await?;
    let chosen: Vec<i32> = match args.partition {
        Some(p) if (0..partitions).contains(&p) => vec![p],
        Some(p) => bail!(
            "partition {p} does not exist: {} has {partitions}",
            args.topic
        ),
        None => (0..partitions).collect(),
    };
    // Position and stopping point of each partition.
    let mut pos = BTreeMap::new();
    let mut end = BTreeMap::new();
    for &p in &chosen {
        let start = if let Some(o) = args.offset {
            o
        } else if args.from_end {
            c.list_offset(&args.topic, p, -1).await?
        } else if let Some(ts) = args.from_timestamp {
            match c.list_offset(&args.topic, p, ts).await? {
                -1 => c.list_offset(&args.topic, p, -1).await?,
                o => o,
            }
        } else {
            c.list_offset(&args.topic, p, -2).await?
        };
        pos.insert(p, start);
        end.insert(p, c.list_offset(&args.topic, p, -1).await?);
    }
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let mut progressed = false;
        for &p in &chosen {
            let at = pos[&p];
            if !args.follow && at >= end[&p] {
                continue;
            }
            let wait = if args.follow { FETCH_WAIT_MS } else { 0 };
            let (_hw, records) = c.fetch(&args.topic, p, at, wait, FETCH_BYTES).await?;
            for r in RecordIter::new(&records, at) {
                let r = r?;
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
                pos.insert(p, r.offset + 1);
                progressed = true;
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    out.flush()?;
                    return Ok(());
                }
            }
        }
        out.flush()?;
        if !args.follow && chosen.iter().all(|p| pos[p] >= end[p]) {
            return Ok(());
        }
        if !progressed && !args.follow {
            // The log ends before the recorded end (truncated meanwhile).
            return Ok(());
        }
    }
}
