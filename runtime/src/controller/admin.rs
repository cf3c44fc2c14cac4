//! The requests brokers and operators make of the controller through
//! ZooKeeper: controlled shutdown (CLU-85 … CLU-87) and partition
//! reassignment (CLU-90 … CLU-92).

use std::time::{Duration, Instant};

use gregor_core::ids::BrokerId;
use zookeeper_client as zk;

use super::zkio;
use crate::cluster::znodes::{self, ReassignmentEntry, ReassignmentZnode};
use crate::config::BrokerConfig;

/// How often the requester looks at the partition states.
const POLL: Duration = Duration::from_millis(100);

/// Why a controlled shutdown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ControlledShutdownError {
    /// Leaderships that could have moved were still held at the deadline.
    #[error("{remaining} partition(s) still led by broker {broker} after {waited:?}")]
    TimedOut {
        /// The broker shutting down.
        broker: i32,
        /// Partitions it still leads although another ISR member is live.
        remaining: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// ZooKeeper failed the request.
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] zk::Error),
}

/// The time a broker gives its controlled shutdown:
/// `(controlled.shutdown.max.retries + 1) × controlled.shutdown.retry.backoff.ms`
/// (spec: CLU-87).
pub fn controlled_shutdown_timeout(config: &BrokerConfig) -> Duration {
    let retries: u64 = config
        .raw("controlled.shutdown.max.retries")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let backoff: u64 = config
        .raw("controlled.shutdown.retry.backoff.ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    Duration::from_millis((retries + 1).saturating_mul(backoff))
}

/// Asks the controller to move `broker`'s leaderships away before it stops
/// (spec: CLU-85): creates the ephemeral `/admin/controlled_shutdown/<id>`
/// in this broker's session and waits until no partition names `broker` as
/// leader while another live broker is in its ISR (a partition with no such
/// member cannot move and does not hold the shutdown up). The request node
/// is re-created if it vanished (a controller change or a reconnect) —
/// Kafka's retries. Fails with [`ControlledShutdownError::TimedOut`] after
/// `timeout`; the broker then stops anyway (CLU-87).
pub async fn controlled_shutdown(
    client: &zk::Client,
    broker: BrokerId,
    timeout: Duration,
) -> Result<(), ControlledShutdownError> {
    let start = Instant::now();
    let path = znodes::controlled_shutdown_path(broker);
    loop {
        // spec: CLU-86 — (re-)create the request.
        match client.create(&path, &[], &zkio::ephemeral()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(zk::Error::NoNode) => {
                zkio::ensure_layout(client).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let remaining = movable_leaderships(client, broker).await?;
        if remaining == 0 {
            tracing::info!(
                broker = broker.0,
                "controlled shutdown: no leaderships left"
            );
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(ControlledShutdownError::TimedOut {
                broker: broker.0,
                remaining,
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Partitions `broker` leads that another live ISR member could take.
async fn movable_leaderships(client: &zk::Client, broker: BrokerId) -> Result<usize, zk::Error> {
    let snap = zkio::read_snapshot(client).await?;
    let mut n = 0;
    for ts in snap.topics.values() {
        for (state, _) in ts.states.values() {
            if state.leader == broker.0
                && state.isr.iter().any(|m| {
                    *m != broker.0
                        && snap.brokers.contains_key(&BrokerId(*m))
                        && !snap.shutting_down.contains(&BrokerId(*m))
                })
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Why a reassignment request failed.
#[derive(Debug, thiserror::Error)]
pub enum ReassignError {
    /// The request names no partition, or a partition twice.
    #[error("invalid reassignment: {0}")]
    Invalid(String),
    /// ZooKeeper failed the request.
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] zk::Error),
    /// The pending request could not be parsed.
    #[error(transparent)]
    Znode(#[from] znodes::ZnodeError),
    /// `--wait` ran out of time.
    #[error("reassignment not finished after {0:?}")]
    TimedOut(Duration),
}

/// Writes `entries` to `/admin/reassign_partitions` (spec: CLU-90), merged
/// into a pending request: an entry for the same partition replaces the
/// pending one. The write is version-conditional and retried on a race.
pub async fn request_reassignment(
    client: &zk::Client,
    entries: &[ReassignmentEntry],
) -> Result<(), ReassignError> {
    if entries.is_empty() {
        return Err(ReassignError::Invalid("no partitions".into()));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.replicas.is_empty() {
            return Err(ReassignError::Invalid(format!(
                "{}-{}: empty replica list",
                e.topic, e.partition
            )));
        }
        let mut sorted = e.replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != e.replicas.len() {
            return Err(ReassignError::Invalid(format!(
                "{}-{}: a broker is named twice",
                e.topic, e.partition
            )));
        }
        if entries[..i]
            .iter()
            .any(|o| o.topic == e.topic && o.partition == e.partition)
        {
            return Err(ReassignError::Invalid(format!(
                "{}-{} is named twice",
                e.topic, e.partition
            )));
        }
    }
    update_node(client, znodes::ADMIN_REASSIGN, |pending| {
        let mut r = match pending {
            Some(d) => znodes::decode::<ReassignmentZnode>(znodes::ADMIN_REASSIGN, d)?,
            None => ReassignmentZnode {
                version: 1,
                partitions: Vec::new(),
            },
        };
        r.partitions.retain(|p| {
            !entries
                .iter()
                .any(|e| e.topic == p.topic && e.partition == p.partition)
        });
        r.partitions.extend(entries.iter().cloned());
        Ok(znodes::encode(&r))
    })
    .await
}

/// Writes `path` with what `next` makes of its current data (`None`:
/// missing), creating it if missing; the write is conditional on the data
/// version read, and a race is retried from a fresh read.
async fn update_node(
    client: &zk::Client,
    path: &str,
    next: impl Fn(Option<&[u8]>) -> Result<Vec<u8>, ReassignError>,
) -> Result<(), ReassignError> {
    zkio::ensure_layout(client).await?;
    loop {
        let result = match zkio::data(client, path).await? {
            Some((d, stat)) => client
                .set_data(path, &next(Some(&d))?, Some(stat.version))
                .await
                .map(|_| ()),
            None => client
                .create(path, &next(None)?, &zkio::persistent())
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether every entry is done (spec: CLU-91): no longer pending, and the
/// partition's replicas are the requested ones with nothing being added or
/// removed.
pub async fn reassignment_done(
    client: &zk::Client,
    entries: &[ReassignmentEntry],
) -> Result<bool, ReassignError> {
    if let Some((d, _)) = zkio::data(client, znodes::ADMIN_REASSIGN).await? {
        let r: ReassignmentZnode = znodes::decode(znodes::ADMIN_REASSIGN, &d)?;
        if r.partitions.iter().any(|p| {
            entries
                .iter()
                .any(|e| e.topic == p.topic && e.partition == p.partition)
        }) {
            return Ok(false);
        }
    }
    for e in entries {
        let path = znodes::topic_path(&e.topic);
        let Some((d, _)) = zkio::data(client, &path).await? else {
            continue;
        };
        let t: znodes::TopicZnode = znodes::decode(&path, &d)?;
        let key = e.partition.to_string();
        if t.partitions.get(&key) != Some(&e.replicas)
            || t.adding_replicas.get(&key).is_some_and(|v| !v.is_empty())
            || t.removing_replicas.get(&key).is_some_and(|v| !v.is_empty())
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits until [`reassignment_done`] holds, up to `timeout`.
pub async fn wait_for_reassignment(
    client: &zk::Client,
    entries: &[ReassignmentEntry],
    timeout: Duration,
) -> Result<(), ReassignError> {
    let start = Instant::now();
    while !reassignment_done(client, entries).await? {
        if start.elapsed() >= timeout {
            return Err(ReassignError::TimedOut(timeout));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// A partition being moved, as ListPartitionReassignments reports it
/// (spec: PRO-32): its replicas, and those being added and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The replicas now (target followed by the original replicas not in
    /// it, CLU-76).
    pub replicas: Vec<i32>,
    /// Target replicas not in the original set.
    pub adding: Vec<i32>,
    /// Original replicas not in the target set.
    pub removing: Vec<i32>,
}

/// Every partition under reassignment: those whose topic znode records
/// replicas being added or removed (CLU-76), and those with a pending
/// request entry the controller has not started yet, shown as step 1 will
/// write them.
pub async fn ongoing_reassignments(
    client: &zk::Client,
) -> Result<Vec<OngoingReassignment>, ReassignError> {
    let mut topics: std::collections::BTreeMap<String, znodes::TopicZnode> =
        std::collections::BTreeMap::new();
    let names = match client.list_children(znodes::BROKER_TOPICS).await {
        Ok(n) => n,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for name in names {
        let path = znodes::topic_path(&name);
        if let Some((d, _)) = zkio::data(client, &path).await? {
            topics.insert(name, znodes::decode(&path, &d)?);
        }
    }
    let mut out = Vec::new();
    for (topic, t) in &topics {
        for (key, replicas) in &t.partitions {
            let Ok(partition) = key.parse::<i32>() else {
                continue;
            };
            let adding = t.adding_replicas.get(key).cloned().unwrap_or_default();
            let removing = t.removing_replicas.get(key).cloned().unwrap_or_default();
            if !adding.is_empty() || !removing.is_empty() {
                out.push(OngoingReassignment {
                    topic: topic.clone(),
                    partition,
                    replicas: replicas.clone(),
                    adding,
                    removing,
                });
            }
        }
    }
    if let Some((d, _)) = zkio::data(client, znodes::ADMIN_REASSIGN).await? {
        let r: ReassignmentZnode = znodes::decode(znodes::ADMIN_REASSIGN, &d)?;
        for e in r.partitions {
            if out
                .iter()
                .any(|o| o.topic == e.topic && o.partition == e.partition)
            {
                continue;
            }
            let Some(current) = topics
                .get(&e.topic)
                .and_then(|t| t.partitions.get(&e.partition.to_string()))
            else {
                continue;
            };
            if *current == e.replicas {
                continue;
            }
            let mut replicas = e.replicas.clone();
            replicas.extend(current.iter().filter(|b| !e.replicas.contains(b)));
            out.push(OngoingReassignment {
                adding: e
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| !current.contains(b))
                    .collect(),
                removing: current
                    .iter()
                    .copied()
                    .filter(|b| !e.replicas.contains(b))
                    .collect(),
                topic: e.topic,
                partition: e.partition,
                replicas,
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// Adds `entries` to `/admin/preferred_replica_election` (created if
/// missing), for the controller to elect each partition's preferred
/// replica (spec: CLU-82). Version-conditional, retried on a race.
pub async fn request_preferred_election(
    client: &zk::Client,
    entries: &[znodes::ElectionEntry],
) -> Result<(), ReassignError> {
    update_node(client, znodes::ADMIN_PREFERRED_ELECTION, |pending| {
        // An unreadable request is replaced (the controller drops it too).
        let mut r = pending
            .and_then(|d| {
                znodes::decode::<znodes::PreferredElectionZnode>(
                    znodes::ADMIN_PREFERRED_ELECTION,
                    d,
                )
                .ok()
            })
            .unwrap_or(znodes::PreferredElectionZnode {
                version: 1,
                partitions: Vec::new(),
            });
        for e in entries {
            if !r.partitions.contains(e) {
                r.partitions.push(e.clone());
            }
        }
        Ok(znodes::encode(&r))
    })
    .await
}
