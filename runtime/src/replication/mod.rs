//! Follower fetchers: this broker's replicas of partitions led elsewhere
//! copy their leaders' logs (spec: REP-64).
//!
//! One task per (source broker, fetcher index) — `num.replica.fetchers`
//! tasks at most per leader, partitions spread by hash — fetches every
//! partition this broker follows from that leader over one connection to
//! the leader's inter-broker listener. Each round asks the core what each
//! partition needs ([`crate::partition::Partitions::poll_request`]):
//! truncating partitions first send OffsetForLeaderEpoch, fetching ones
//! one Fetch (v12, `replica_id` = own id, `current_leader_epoch`). Fetched
//! entries are appended as they are (offsets and epochs kept, CRCs
//! checked) and the leader's high watermark learnt. Errors back off and
//! the leader's endpoint is resolved again through the `ClusterLink`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use gregor_core::ids::{BrokerId, LeaderEpoch, Offset, TopicPartition};
use gregor_core::replica::{FetchError, FollowerRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{FetchRequest, OffsetForLeaderEpochRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::client::{Client, ClientError, name};

/// How often leaders check follower lag and the fetcher set is reconciled.
pub const TICK: Duration = Duration::from_millis(50);

/// First back-off after a failed round; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Longest back-off between failed rounds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Fetch version used between brokers.
const FETCH_V: i16 = 12;

/// OffsetForLeaderEpoch version used between brokers.
const EPOCH_V: i16 = 4;

/// The fetcher settings from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct FetcherConfig {
    /// `replica.fetch.max.bytes`: per partition.
    pub max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per response.
    pub response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`.
    pub wait_max_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub min_bytes: i32,
    /// `num.replica.fetchers`.
    pub fetchers: usize,
}

impl FetcherConfig {
    /// Reads the keys where present, Kafka's defaults otherwise.
    #[must_use]
    pub fn from_broker(cfg: &crate::config::BrokerConfig) -> Self {
        let int = |key: &str, default: i64| {
            cfg.raw(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        Self {
            max_bytes: int("replica.fetch.max.bytes", 1_048_576).clamp(1, i64::from(i32::MAX))
                as i32,
            response_max_bytes: int("replica.fetch.response.max.bytes", 10_485_760)
                .clamp(1, i64::from(i32::MAX)) as i32,
            wait_max_ms: int("replica.fetch.wait.max.ms", 500).clamp(0, 30_000) as i32,
            min_bytes: int("replica.fetch.min.bytes", 1).clamp(0, i64::from(i32::MAX)) as i32,
            fetchers: int("num.replica.fetchers", 1).clamp(1, 64) as usize,
        }
    }
}

fn fetcher_index(tp: &TopicPartition, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// Runs the leaders' lag timer and the follower fetchers until `stop`
/// (spec: REP-9, REP-64).
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let cfg = FetcherConfig::from_broker(&broker.config);
    let mut fetchers: HashMap<(BrokerId, usize), JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = broker.partitions.plan_changed() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        // The lag check takes the partitions lock, which appends hold
        // across disk writes: keep it off the async workers.
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || b.partitions.tick()).await {
            tracing::error!(error = %e, "replica timer task failed");
        }
        let plan = broker.partitions.fetch_plan();
        let mut wanted: BTreeMap<(BrokerId, usize), ()> = BTreeMap::new();
        for (tp, leader) in &plan {
            wanted.insert((*leader, fetcher_index(tp, cfg.fetchers)), ());
        }
        fetchers.retain(|key, task| {
            let keep = wanted.contains_key(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted.keys() {
            if !fetchers.contains_key(key) {
                let task = tokio::spawn(fetcher(broker.clone(), key.0, key.1, cfg));
                fetchers.insert(*key, task);
            }
        }
    }
    for (_, task) in fetchers {
        task.abort();
    }
}

/// The partitions fetcher `index` copies from `leader` now.
fn assigned(broker: &Broker, leader: BrokerId, index: usize, n: usize) -> Vec<TopicPartition> {
    broker
        .partitions
        .fetch_plan()
        .into_iter()
        .filter(|(tp, l)| *l == leader && fetcher_index(tp, n) == index)
        .map(|(tp, _)| tp)
        .collect()
}

async fn fetcher(broker: Arc<Broker>, leader: BrokerId, index: usize, cfg: FetcherConfig) {
    let me = broker.partitions.link().local_broker();
    let mut client: Option<Client> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        let tps = assigned(&broker, leader, index, cfg.fetchers);
        if tps.is_empty() {
            return;
        }
        if client.is_none() {
            let Some(ep) = broker.partitions.link().endpoint(leader) else {
                tracing::debug!(leader = leader.get(), "leader endpoint unknown; waiting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            };
            match Client::connect(&format!("{}:{}", ep.host, ep.port)).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!(leader = leader.get(), error = %e, "cannot reach leader");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        match round(&broker, c, me, leader, &tps, cfg).await {
            Ok(true) => backoff = MIN_BACKOFF,
            Ok(false) => tokio::time::sleep(TICK).await,
            Err(e) => {
                tracing::debug!(leader = leader.get(), error = %e, "fetch round failed; reconnecting");
                client = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One round: truncation queries, then one fetch. `Ok(false)` when there
/// was nothing to send.
async fn round(
    broker: &Arc<Broker>,
    client: &mut Client,
    me: BrokerId,
    leader: BrokerId,
    tps: &[TopicPartition],
    cfg: FetcherConfig,
) -> Result<bool, ClientError> {
    let mut queries = Vec::new();
    let mut fetches = Vec::new();
    for tp in tps {
        match broker.partitions.poll_request(tp) {
            Some(FollowerRequest::OffsetsForLeaderEpoch { leader: l, query }) if l == leader => {
                queries.push((tp.clone(), query));
            }
            Some(FollowerRequest::Fetch { leader: l, request }) if l == leader => {
                fetches.push((tp.clone(), request));
            }
            _ => {}
        }
    }
    if queries.is_empty() && fetches.is_empty() {
        return Ok(false);
    }
    if !queries.is_empty() {
        // spec: REP-64 — truncation through OffsetForLeaderEpoch first.
        let mut by_topic: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (tp, q) in &queries {
            by_topic.entry(tp.topic.as_str()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(q.current_leader_epoch.get())
                    .with_leader_epoch(q.epoch.get()),
            );
        }
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(me.get()))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = client.call(EPOCH_V, &req).await?;
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
                let Some((_, q)) = queries.iter().find(|(q_tp, _)| *q_tp == tp) else {
                    continue;
                };
                if p.error_code == 0 {
                    let answer = (p.leader_epoch >= 0 && p.end_offset >= 0)
                        .then_some((LeaderEpoch(p.leader_epoch), Offset(p.end_offset)));
                    let b = broker.clone();
                    let q = *q;
                    let _ = tokio::task::spawn_blocking(move || {
                        b.partitions.follower_epoch_answer(
                            &tp,
                            q.current_leader_epoch,
                            q.epoch,
                            answer,
                        );
                    })
                    .await;
                } else {
                    report_error(broker, &tp, q.current_leader_epoch, p.error_code);
                }
            }
        }
    }
    if fetches.is_empty() {
        return Ok(true);
    }
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, f) in &fetches {
        by_topic.entry(tp.topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(f.leader_epoch.get())
                .with_fetch_offset(f.fetch_offset.get())
                .with_partition_max_bytes(cfg.max_bytes),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(me.get()))
        .with_max_wait_ms(cfg.wait_max_ms)
        .with_min_bytes(cfg.min_bytes)
        .with_max_bytes(cfg.response_max_bytes)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = client.call(FETCH_V, &req).await?;
    let mut applied = Vec::new();
    for t in resp.responses {
        for p in t.partitions {
            let tp = TopicPartition::new(t.topic.0.to_string(), p.partition_index);
            let Some((_, f)) = fetches.iter().find(|(f_tp, _)| *f_tp == tp) else {
                continue;
            };
            if p.error_code == 1 {
                // spec: REP-68 — below the leader's log start?
                let (b, epoch, offset, start) = (
                    broker.clone(),
                    f.leader_epoch,
                    f.fetch_offset.get(),
                    p.log_start_offset,
                );
                let _ = tokio::task::spawn_blocking(move || {
                    b.partitions
                        .follower_out_of_range(&tp, epoch, offset, start);
                })
                .await;
                continue;
            }
            if p.error_code != 0 {
                report_error(broker, &tp, f.leader_epoch, p.error_code);
                continue;
            }
            applied.push((
                tp,
                f.leader_epoch,
                f.fetch_offset.get(),
                p.records.unwrap_or_default(),
                p.high_watermark,
                p.log_start_offset,
            ));
        }
    }
    let b = broker.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (tp, epoch, offset, records, hw, start) in applied {
            if let Err(e) = b
                .partitions
                .follower_fetched(&tp, epoch, offset, &records, hw, start)
            {
                tracing::warn!(partition = %tp, error = %e, "fetched records refused");
            }
        }
    })
    .await;
    Ok(true)
}

/// Feeds a leader's refusal back to the core (REP-6): out of range sends
/// the follower back to truncation; fencing waits for the next record.
fn report_error(broker: &Broker, tp: &TopicPartition, epoch: LeaderEpoch, code: i16) {
    let error = match code {
        1 => FetchError::OffsetOutOfRange {
            offset: Offset(-1),
            start: Offset(-1),
            end: Offset(-1),
        },
        74 => FetchError::FencedLeaderEpoch {
            request: epoch,
            current: epoch,
        },
        75 => FetchError::UnknownLeaderEpoch {
            request: epoch,
            current: epoch,
        },
        _ => FetchError::NotLeader,
    };
    tracing::debug!(partition = %tp, code, "leader refused the follower");
    broker.partitions.follower_error(tp, epoch, error);
}
