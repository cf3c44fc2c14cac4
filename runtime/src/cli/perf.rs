//! `gregor perf produce` and `gregor perf consume`: load generators in the
//! spirit of Kafka's producer and consumer performance tools, built on the
//! native client (spec: PRD-4 … PRD-6).

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use std::sync::{Arc, Mutex};

use crate::client::router::{self, Router, UNKNOWN_TOPIC_OR_PARTITION};
use crate::client::{self, ClientError, ProduceReceiver, ProduceSender};
use crate::partition::now_ms;
use crate::storage::record::{BatchBuilder, RecordIter};

fn parse_acks(acks: &str) -> anyhow::Result<i16> {
    Ok(match acks {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks {other}: expected 0, 1 or all"),
    })
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

use super::tools::DEFAULT_BOOTSTRAP;
use crate::storage::record::Codec;

/// Bytes of framing a v2 record adds to its key and value (upper bound
/// for small records: attributes, varint deltas and lengths).
const RECORD_OVERHEAD: usize = 12;
/// Size of a v2 batch header.
const V2_HEADER: usize = 61;

/// `gregor perf …`.
#[derive(Debug, clap::Subcommand)]
pub enum PerfCmd {
    /// Produce generated records as fast as allowed and report throughput
    /// and latency.
    Produce(ProduceArgs),
    /// Read a topic as fast as possible and report throughput.
    Consume(ConsumeArgs),
}

/// Arguments of `gregor perf produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Broker addresses, comma-separated (any broker of the cluster).
    #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_server: String,
    /// Topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// Records to send.
    #[arg(long)]
    pub num_records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Target records/s; -1 for unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub throughput: i64,
    /// 0, 1 or -1/all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// How long a batch waits for more records, in ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Bytes of records per batch before it is sent.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// Produce requests in flight on the connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Give each record a key (its sequence number, in decimal), routed by
    /// the key hash.
    #[arg(long)]
    pub keys: bool,
    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// How long metadata, connections and a batch refused because its
    /// partition's leader moved are retried, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

/// Arguments of `gregor perf consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Broker addresses, comma-separated (any broker of the cluster).
    #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_server: String,
    /// Topic to read.
    #[arg(long)]
    pub topic: String,
    /// Stop after this many records (default: at the end offsets seen at
    /// start).
    #[arg(long)]
    pub num_records: Option<u64>,
    /// Start at the beginning of each partition (the default and only mode).
    #[arg(long, default_value_t = true)]
    pub from_beginning: bool,
    /// Bytes asked for per fetch request.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_max_bytes: i32,
    /// Bytes asked for per partition in a fetch.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_partition_fetch_bytes: i32,
    /// Partitions to read: `all` or a comma-separated list.
    #[arg(long, default_value = "all")]
    pub partitions: String,
    /// Give up when no record arrives for this long, in ms (also how long
    /// a partition whose leader moved or cannot be reached is retried).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gregor perf`.
pub async fn run(cmd: PerfCmd) -> anyhow::Result<()> {
    match cmd {
        PerfCmd::Produce(a) => {
            let s = produce(&a).await?;
            s.print(a.json)
        }
        PerfCmd::Consume(a) => {
            let s = consume(&a).await?;
            s.print(a.json)
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A record set on its way to the broker.
#[derive(Debug)]
struct InFlight {
    /// Correlation id; `None` for acks=0 (no response comes).
    correlation_id: Option<i32>,
    /// Creation instant of every record of the request.
    created: Vec<Instant>,
    /// The partition and its record set, to send again if refused.
    batch: (i32, Bytes),
}

/// What `gregor perf produce` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProduceSummary {
    /// Records acknowledged.
    pub records: u64,
    /// Record value bytes acknowledged.
    pub bytes: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_sec: f64,
    /// Megabytes (10^6) of record values per second.
    pub mb_per_sec: f64,
    /// Produce requests sent.
    pub requests: u64,
    /// Mean latency, ms.
    pub latency_avg_ms: f64,
    /// Median latency, ms.
    pub latency_p50_ms: f64,
    /// 95th percentile, ms.
    pub latency_p95_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// 99.9th percentile, ms.
    pub latency_p999_ms: f64,
    /// Largest latency, ms.
    pub latency_max_ms: f64,
}

impl ProduceSummary {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string(self)?)?;
        } else {
            writeln!(
                out,
                "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, \
                 {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, \
                 {:.2} ms 99.9th.",
                self.records,
                self.records_per_sec,
                self.mb_per_sec,
                self.latency_avg_ms,
                self.latency_max_ms,
                self.latency_p50_ms,
                self.latency_p95_ms,
                self.latency_p99_ms,
                self.latency_p999_ms
            )?;
        }
        Ok(())
    }
}

/// Throughput and latency over the last progress window.
#[derive(Debug)]
struct Window {
    started: Instant,
    records: u64,
    latency_us: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            records: 0,
            latency_us: 0,
        }
    }
}

/// Ensures the topic exists and returns its partition count.
async fn ensure_topic(r: &mut Router, topic: &str, partitions: Option<i32>) -> anyhow::Result<i32> {
    match r.partitions(topic).await {
        Ok(n) => Ok(n),
        Err(ClientError::Kafka { code, .. }) if code == UNKNOWN_TOPIC_OR_PARTITION => {
            r.any()
                .await?
                .create_topic(topic, partitions.unwrap_or(-1), -1, &[])
                .await
                .with_context(|| format!("creating {topic}"))?;
            Ok(r.partitions(topic).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The value every record carries: printable pseudo-random bytes, made once.
fn payload(size: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// What the response readers of every broker share.
#[derive(Debug)]
struct Acked {
    hist: Histogram<u64>,
    records: u64,
    window: Window,
}

/// The response reader of one broker's pipeline: matches responses to
/// requests in order (spec: PRD-4) and records every record's latency.
///
/// A batch refused with a refresh-and-retry error (its partition's leader
/// moved, spec: PRD-8) is sent again through a router, waiting for its
/// answer; the responses behind it wait meanwhile. A broken connection
/// ends the run (spec: PRD-9).
async fn read_acks(
    mut receiver: ProduceReceiver,
    mut rx: mpsc::Receiver<InFlight>,
    acked: Arc<Mutex<Acked>>,
    show_progress: bool,
    record_size: usize,
    retry: (String, String, Duration, i16),
) -> anyhow::Result<()> {
    let (bootstrap, topic, timeout, acks) = retry;
    let mut router: Option<Router> = None;
    while let Some(f) = rx.recv().await {
        if let Some(id) = f.correlation_id {
            match receiver.recv(id).await {
                Ok(_) => {}
                Err(e)
                    if e.code().is_some_and(|c| {
                        router::retriable(c) || c == UNKNOWN_TOPIC_OR_PARTITION
                    }) =>
                {
                    let r = match &mut router {
                        Some(r) => r,
                        None => router.insert(Router::new(&bootstrap, timeout)?),
                    };
                    let (p, records) = f.batch.clone();
                    r.produce(&topic, p, records, acks).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let now = Instant::now();
        let mut a = acked.lock().unwrap_or_else(|e| e.into_inner());
        let a = &mut *a;
        for t in &f.created {
            // spec: PRD-6 — creation to acknowledgement.
            let us = now.duration_since(*t).as_micros().max(1) as u64;
            a.hist.saturating_record(us);
            a.window.latency_us += us;
        }
        a.records += f.created.len() as u64;
        a.window.records += f.created.len() as u64;
        if show_progress && a.window.started.elapsed() >= Duration::from_secs(1) {
            let w = &a.window;
            let secs = w.started.elapsed().as_secs_f64();
            eprintln!(
                "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency.",
                w.records,
                w.records as f64 / secs,
                mb(w.records * record_size as u64) / secs,
                w.latency_us as f64 / w.records.max(1) as f64 / 1000.0
            );
            a.window = Window::new();
        }
    }
    Ok(())
}

/// One leader broker's produce pipeline: the write half and the queue of
/// requests awaiting their responses.
#[derive(Debug)]
struct Pipeline {
    sender: ProduceSender,
    tx: mpsc::Sender<InFlight>,
}

/// Runs `gregor perf produce` and returns its summary.
pub async fn produce(args: &ProduceArgs) -> anyhow::Result<ProduceSummary> {
    let acks = parse_acks(&args.acks)?;
    let codec = codec(&args.compression)?;
    if args.max_in_flight == 0 {
        bail!("--max-in-flight must be at least 1");
    }
    let mut router = Router::new(
        &args.bootstrap_server,
        Duration::from_millis(args.timeout_ms),
    )?;
    let partitions = ensure_topic(&mut router, &args.topic, args.partitions).await?;
    // spec: PRD-7 — partitions grouped by leader, one pipelined connection
    // per leader broker.
    let leaders = router.leaders(&args.topic).await?;
    let topic = client::name(&args.topic);
    let show_progress = args.progress || std::io::stderr().is_terminal();
    let record_size = args.record_size;
    let acked = Arc::new(Mutex::new(Acked {
        hist: Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?,
        records: 0,
        window: Window::new(),
    }));
    // Pipeline index of each partition (by partition number).
    let mut route = vec![0usize; partitions.max(0) as usize];
    let mut pipelines: Vec<Pipeline> = Vec::new();
    let mut broker_of: BTreeMap<i32, usize> = BTreeMap::new();
    let mut readers = Vec::new();
    for (&p, l) in &leaders {
        let i = match broker_of.get(&l.broker) {
            Some(&i) => i,
            None => {
                let conn = router
                    .take_broker(l.broker)
                    .await
                    .with_context(|| format!("connecting to broker {}", l.broker))?;
                let (sender, receiver) = conn.into_pipeline();
                let (tx, rx) = mpsc::channel::<InFlight>(args.max_in_flight);
                readers.push(tokio::spawn(read_acks(
                    receiver,
                    rx,
                    acked.clone(),
                    show_progress,
                    record_size,
                    (
                        args.bootstrap_server.clone(),
                        args.topic.clone(),
                        Duration::from_millis(args.timeout_ms),
                        acks,
                    ),
                )));
                pipelines.push(Pipeline { sender, tx });
                broker_of.insert(l.broker, pipelines.len() - 1);
                pipelines.len() - 1
            }
        };
        if let Some(slot) = usize::try_from(p).ok().and_then(|p| route.get_mut(p)) {
            *slot = i;
        }
    }

    let value = payload(args.record_size);
    let linger = Duration::from_millis(args.linger_ms);
    let mut spread =
        gregor_core::partitioner::RoundRobin::starting_at((now_ms() as u32) ^ std::process::id());
    let mut sticky = gregor_core::partitioner::Sticky::default();
    // One open batch per partition: builder, bytes, record creation times,
    // creation of its first record.
    let mut open: BTreeMap<i32, (BatchBuilder, usize, Vec<Instant>, Instant)> = BTreeMap::new();
    let mut requests = 0u64;
    let started = Instant::now();
    let mut key_buf = itoa_buf();
    let sent = async {
        let mut send = async |p: i32,
                              batch: (BatchBuilder, usize, Vec<Instant>, Instant)|
               -> anyhow::Result<()> {
            let (b, _, created, _) = batch;
            let bytes = Bytes::from(b.build()?);
            let pipe = &mut pipelines[route[p as usize]];
            let id = pipe
                .sender
                .send(&topic, vec![(p, bytes.clone())], acks)
                .await?;
            requests += 1;
            let f = InFlight {
                correlation_id: (acks != 0).then_some(id),
                created,
                batch: (p, bytes),
            };
            if pipe.tx.send(f).await.is_err() {
                bail!("the response reader stopped");
            }
            Ok(())
        };
        for i in 0..args.num_records {
            // Throttle: record i is due at start + i / rate; an open batch
            // whose linger runs out meanwhile is sent on time.
            if args.throughput > 0 {
                let due = started + Duration::from_secs_f64(i as f64 / args.throughput as f64);
                loop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    let expiring = open
                        .iter()
                        .map(|(&p, b)| (b.3 + linger, p))
                        .min()
                        .filter(|&(at, _)| at < due);
                    match expiring {
                        Some((at, p)) => {
                            tokio::time::sleep_until(at.into()).await;
                            let batch = open.remove(&p).unwrap_or_else(|| unreachable!());
                            send(p, batch).await?;
                        }
                        None => tokio::time::sleep_until(due.into()).await,
                    }
                }
            }
            let key = args.keys.then(|| format_u64(&mut key_buf, i));
            // spec: PRD-1, PRD-2
            let p = match key {
                Some(k) => gregor_core::partitioner::partition_for_key(k, partitions),
                None => sticky.partition(partitions, |n| spread.next_partition(n)),
            };
            let now = Instant::now();
            let batch = match open.entry(p) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let cap = args.batch_size / (record_size + RECORD_OVERHEAD).max(1) + 1;
                    e.insert((
                        BatchBuilder::new(2, codec, 0)?,
                        V2_HEADER,
                        Vec::with_capacity(cap),
                        now,
                    ))
                }
            };
            batch.0.append(now_ms(), key, Some(&value), &[])?;
            batch.1 += record_size + key.map_or(0, <[u8]>::len) + RECORD_OVERHEAD;
            batch.2.push(now);
            // spec: PRD-5 — full, or lingered long enough.
            let full = batch.1 >= args.batch_size;
            if full || now.duration_since(batch.3) >= linger {
                let batch = open.remove(&p).unwrap_or_else(|| unreachable!());
                send(p, batch).await?;
                if key.is_none() {
                    sticky.batch_completed();
                }
            }
            // Batches of other partitions whose linger ran out.
            if !open.is_empty() && (i & 63) == 0 {
                let expired: Vec<i32> = open
                    .iter()
                    .filter(|(_, b)| now.duration_since(b.3) >= linger)
                    .map(|(&p, _)| p)
                    .collect();
                for p in expired {
                    let batch = open.remove(&p).unwrap_or_else(|| unreachable!());
                    send(p, batch).await?;
                }
            }
        }
        for (p, batch) in std::mem::take(&mut open) {
            send(p, batch).await?;
        }
        anyhow::Ok(())
    };
    let sent_result = sent.await;
    drop(pipelines);
    // A reader's error (the broker's answer) explains a failed send.
    for reader in readers {
        reader.await.context("response reader")??;
    }
    sent_result?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let a = acked.lock().unwrap_or_else(|e| e.into_inner());
    let (records, hist) = (a.records, &a.hist);
    let ms = |us: u64| us as f64 / 1000.0;
    let bytes = records * args.record_size as u64;
    Ok(ProduceSummary {
        records,
        bytes,
        elapsed_s: elapsed,
        records_per_sec: records as f64 / elapsed,
        mb_per_sec: mb(bytes) / elapsed,
        requests,
        latency_avg_ms: hist.mean() / 1000.0,
        latency_p50_ms: ms(hist.value_at_quantile(0.5)),
        latency_p95_ms: ms(hist.value_at_quantile(0.95)),
        latency_p99_ms: ms(hist.value_at_quantile(0.99)),
        latency_p999_ms: ms(hist.value_at_quantile(0.999)),
        latency_max_ms: ms(hist.max()),
    })
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Formats `n` in decimal into `buf` without allocating.
fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// What `gregor perf consume` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumeSummary {
    /// Records read.
    pub records: u64,
    /// Record-batch bytes read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_sec: f64,
    /// Megabytes (10^6) of record batches per second.
    pub mb_per_sec: f64,
    /// Fetch requests sent.
    pub fetches: u64,
    /// Time from start to the first record, ms.
    pub first_record_ms: f64,
}

impl ConsumeSummary {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string(self)?)?;
        } else {
            writeln!(
                out,
                "{} records read ({:.2} MB) in {:.2} s, {:.1} records/sec ({:.2} MB/sec), \
                 {} fetches, first record after {:.2} ms.",
                self.records,
                mb(self.bytes),
                self.elapsed_s,
                self.records_per_sec,
                self.mb_per_sec,
                self.fetches,
                self.first_record_ms
            )?;
        }
        Ok(())
    }
}

/// Records of a fetched record set at or after `from`, the bytes of the
/// complete batches, and the offset after the last one. v2 batches are
/// counted from their headers (no per-record work); older formats and a
/// batch that starts before `from` are decoded.
fn count_records(buf: &[u8], from: i64) -> anyhow::Result<(u64, u64, i64)> {
    let mut pos = 0usize;
    let mut records = 0u64;
    let mut next = from;
    while buf.len() - pos >= V2_HEADER {
        let at = |o: usize, n: usize| &buf[pos + o..pos + o + n];
        let base = i64::from_be_bytes(at(0, 8).try_into()?);
        let len = i32::from_be_bytes(at(8, 4).try_into()?);
        if len < 0 {
            bail!("negative batch length at byte {pos}");
        }
        let size = 12 + len as usize;
        if buf.len() - pos < size {
            break; // a partial batch ends the set
        }
        let entry = &buf[pos..pos + size];
        let magic = entry[16];
        if magic == 2 && base >= from {
            let last_delta = i32::from_be_bytes(entry[23..27].try_into()?);
            let count = i32::from_be_bytes(entry[57..61].try_into()?);
            records += count.max(0) as u64;
            next = next.max(base + last_delta as i64 + 1);
        } else {
            for r in RecordIter::new(entry, from) {
                let r = r.context("decoding fetched records")?;
                records += 1;
                next = next.max(r.offset + 1);
            }
        }
        pos += size;
    }
    Ok((records, pos as u64, next))
}

/// Runs `gregor perf consume` and returns its summary.
pub async fn consume(args: &ConsumeArgs) -> anyhow::Result<ConsumeSummary> {
    // spec: PRD-7 — offsets and records come from each partition's leader.
    let mut c = Router::new(
        &args.bootstrap_server,
        Duration::from_millis(args.timeout_ms),
    )?;
    let count = c.partitions(&args.topic).await?;
    let chosen: Vec<i32> = if args.partitions == "all" {
        (0..count).collect()
    } else {
        args.partitions
            .split(',')
            .map(|p| {
                let p: i32 = p
                    .trim()
                    .parse()
                    .with_context(|| format!("--partitions {p}"))?;
                if !(0..count).contains(&p) {
                    bail!("partition {p} does not exist: {} has {count}", args.topic);
                }
                Ok(p)
            })
            .collect::<anyhow::Result<_>>()?
    };
    let started = Instant::now();
    // Position and end of each partition.
    let mut pos: BTreeMap<i32, i64> = BTreeMap::new();
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &chosen {
        pos.insert(p, c.list_offset(&args.topic, p, -2).await?);
        end.insert(p, c.list_offset(&args.topic, p, -1).await?);
    }
    let show_progress = args.progress || std::io::stderr().is_terminal();
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut fetches = 0u64;
    let mut first: Option<Duration> = None;
    let mut last_progress = Instant::now();
    let mut window = (0u64, 0u64);
    let mut last_record = Instant::now();
    let mut positions: VecDeque<(i32, i64)> = VecDeque::new();
    let done =
        |records: u64, pos: &BTreeMap<i32, i64>, end: &BTreeMap<i32, i64>| match args.num_records {
            Some(n) => records >= n,
            None => pos.iter().all(|(p, o)| *o >= end[p]),
        };
    while !done(records, &pos, &end) {
        positions.clear();
        // Without --num-records a partition at its end is done: asking its
        // leader again would only wait out the fetch's max wait.
        positions.extend(
            pos.iter()
                .filter(|(p, o)| args.num_records.is_some() || **o < end[*p])
                .map(|(&p, &o)| (p, o)),
        );
        let wait = 100;
        let fetched = c
            .fetch_partitions(
                &args.topic,
                positions.make_contiguous(),
                wait,
                args.fetch_max_bytes,
                args.max_partition_fetch_bytes,
            )
            .await?;
        fetches += 1;
        let mut got = 0u64;
        for f in &fetched {
            if f.error_code != 0 {
                bail!(
                    "fetch {}-{}: Kafka error {}",
                    args.topic,
                    f.partition,
                    f.error_code
                );
            }
            let Some(at) = pos.get_mut(&f.partition) else {
                continue;
            };
            let (n, b, next) = count_records(&f.records, *at)?;
            *at = next;
            got += n;
            bytes += b;
            window.1 += b;
        }
        if got > 0 {
            records += got;
            window.0 += got;
            last_record = Instant::now();
            first.get_or_insert_with(|| started.elapsed());
        } else if last_record.elapsed() >= Duration::from_millis(args.timeout_ms) {
            bail!(
                "no records for {} ms after {records} records",
                args.timeout_ms
            );
        }
        if show_progress && last_progress.elapsed() >= Duration::from_secs(1) {
            let secs = last_progress.elapsed().as_secs_f64();
            eprintln!(
                "{} records read, {:.1} records/sec ({:.2} MB/sec).",
                window.0,
                window.0 as f64 / secs,
                mb(window.1) / secs
            );
            window = (0, 0);
            last_progress = Instant::now();
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(ConsumeSummary {
        records,
        bytes,
        elapsed_s: elapsed,
        records_per_sec: records as f64 / elapsed,
        mb_per_sec: mb(bytes) / elapsed,
        fetches,
        first_record_ms: first.unwrap_or_default().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(2, Codec::None, base).unwrap();
        for _ in 0..n {
            b.append(1, None, Some(b"v"), &[]).unwrap();
        }
        b.build().unwrap()
    }

    // spec: PRD-6
    #[test]
    fn counts_whole_batches_from_headers_and_skips_a_partial_tail() {
        let mut set = batch(0, 3);
        set.extend(batch(3, 4));
        let whole = set.len() as u64;
        let tail = batch(7, 2);
        set.extend(&tail[..tail.len() - 5]);
        assert_eq!(count_records(&set, 0).unwrap(), (7, whole, 7));
    }

    // spec: PRD-6
    #[test]
    fn a_batch_starting_before_the_position_counts_only_later_records() {
        let set = batch(10, 5);
        let (n, _, next) = count_records(&set, 12).unwrap();
        assert_eq!((n, next), (3, 15));
    }

    #[test]
    fn keys_format_in_decimal() {
        let mut b = itoa_buf();
        assert_eq!(format_u64(&mut b, 0), b"0");
        assert_eq!(format_u64(&mut b, u64::MAX), b"18446744073709551615");
    }
}
