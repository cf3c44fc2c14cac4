//! Reading the cluster's znodes into a [`Snapshot`] and running a
//! [`Plan`]'s transactions behind the controller-epoch check.

use std::collections::{BTreeMap, BTreeSet};

use gregor_core::ids::{BrokerId, TopicPartition};
use zookeeper_client::{self as zk, Acls, CreateMode, MultiWriteError};

use super::ControllerError;
use super::plan::{Snapshot, TopicSnapshot, Txn, WriteOp};
use crate::cluster::znodes::{
    self, BrokerZnode, PartitionStateZnode, ReassignmentZnode, TopicZnode,
};

/// Options of every persistent node the controller creates.
pub(crate) fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Options of the ephemeral nodes (`/controller`, shutdown requests).
pub(crate) fn ephemeral() -> zk::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

/// Data and stat of `path`, `None` when it does not exist.
pub(crate) async fn data(
    client: &zk::Client,
    path: &str,
) -> Result<Option<(Vec<u8>, zk::Stat)>, zk::Error> {
    match client.get_data(path).await {
        Ok(d) => Ok(Some(d)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the persistent layout nodes that are missing (spec: CLU-64).
pub(crate) async fn ensure_layout(client: &zk::Client) -> Result<(), zk::Error> {
    for path in znodes::PERSISTENT_PATHS {
        match client.create(path, &[], &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads in one batched request per step, up to this many at a time.
const READ_BATCH: usize = 500;

/// One read of a batch.
enum Read {
    Data(String),
    Children(String),
}

/// The answer to one [`Read`]; `None` when the node does not exist.
enum Answer {
    Data(Option<(Vec<u8>, zk::Stat)>),
    Children(Option<Vec<String>>),
}

impl Answer {
    fn data(self) -> Option<(Vec<u8>, zk::Stat)> {
        match self {
            Answer::Data(d) => d,
            Answer::Children(_) => None,
        }
    }

    fn children(self) -> Vec<String> {
        match self {
            Answer::Children(c) => c.unwrap_or_default(),
            Answer::Data(_) => Vec::new(),
        }
    }

    fn exists(&self) -> bool {
        matches!(self, Answer::Data(Some(_)) | Answer::Children(Some(_)))
    }
}

/// Runs `reads` as ZooKeeper multi-reads (one round trip per
/// [`READ_BATCH`] reads; each batch is a consistent view).
async fn read_batch(client: &zk::Client, reads: &[Read]) -> Result<Vec<Answer>, zk::Error> {
    let mut out = Vec::with_capacity(reads.len());
    for chunk in reads.chunks(READ_BATCH) {
        let mut r = client.new_multi_reader();
        for read in chunk {
            match read {
                Read::Data(p) => r.add_get_data(p)?,
                Read::Children(p) => r.add_get_children(p)?,
            }
        }
        let results = r.commit().await?;
        if results.len() != chunk.len() {
            return Err(zk::Error::UnexpectedError(format!(
                "multi-read answered {} of {} reads",
                results.len(),
                chunk.len()
            )));
        }
        for (read, result) in chunk.iter().zip(results) {
            out.push(match (read, result) {
                (Read::Data(_), zk::MultiReadResult::Data { data, stat }) => {
                    Answer::Data(Some((data, stat)))
                }
                (Read::Children(_), zk::MultiReadResult::Children { children }) => {
                    Answer::Children(Some(children))
                }
                (
                    Read::Data(_),
                    zk::MultiReadResult::Error {
                        err: zk::Error::NoNode,
                    },
                ) => Answer::Data(None),
                (
                    Read::Children(_),
                    zk::MultiReadResult::Error {
                        err: zk::Error::NoNode,
                    },
                ) => Answer::Children(None),
                (_, zk::MultiReadResult::Error { err }) => return Err(err),
                (_, other) => {
                    return Err(zk::Error::UnexpectedError(format!(
                        "multi-read answer {other:?} does not match its request"
                    )));
                }
            });
        }
    }
    Ok(out)
}

/// Reads everything a pass needs, in three batched round trips. Damaged
/// payloads are logged and skipped (spec: CLU-74): one bad node must not
/// stop the controller.
pub async fn read_snapshot(client: &zk::Client) -> Result<Snapshot, zk::Error> {
    let mut snap = Snapshot::default();
    let first = read_batch(
        client,
        &[
            Read::Children(znodes::BROKER_IDS.into()),
            Read::Children(znodes::BROKER_TOPICS.into()),
            Read::Children(znodes::ADMIN_DELETE_TOPICS.into()),
            Read::Data(znodes::ADMIN_REASSIGN.into()),
            Read::Children(znodes::ADMIN_CONTROLLED_SHUTDOWN.into()),
            Read::Data(znodes::ADMIN_PREFERRED_ELECTION.into()),
        ],
    )
    .await?;
    let mut first = first.into_iter();
    let (Some(ids), Some(topics), Some(deletions), Some(reassign), Some(shutdowns), Some(election)) = (
        first.next(),
        first.next(),
        first.next(),
        first.next(),
        first.next(),
        first.next(),
    ) else {
        return Err(zk::Error::UnexpectedError("short multi-read".into()));
    };
    let ids: Vec<i32> = ids
        .children()
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let topics = topics.children();
    snap.deletions = deletions.children().into_iter().collect();
    if let Some((d, stat)) = reassign.data() {
        match znodes::decode::<ReassignmentZnode>(znodes::ADMIN_REASSIGN, &d) {
            Ok(r) => snap.reassignment = Some((r, stat.version)),
            Err(e) => {
                // spec: CLU-79 — an unreadable request is removed so that a
                // new one can be written.
                tracing::warn!(error = %e, "unreadable reassignment request removed");
                snap.reassignment = Some((
                    ReassignmentZnode {
                        version: 1,
                        partitions: Vec::new(),
                    },
                    stat.version,
                ));
            }
        }
    }
    if let Some((d, _)) = election.data() {
        let partitions = match znodes::decode::<znodes::PreferredElectionZnode>(
            znodes::ADMIN_PREFERRED_ELECTION,
            &d,
        ) {
            Ok(e) => e.partitions,
            Err(e) => {
                // An unreadable request is removed, as CLU-79 does.
                tracing::warn!(error = %e, "unreadable preferred-leader election request removed");
                Vec::new()
            }
        };
        snap.preferred_election = Some(
            partitions
                .into_iter()
                .map(|e| TopicPartition::new(e.topic, e.partition))
                .collect(),
        );
    }
    snap.shutting_down = shutdowns
        .children()
        .iter()
        .filter_map(|c| c.parse().ok().map(BrokerId))
        .collect();

    let mut second = Vec::with_capacity(ids.len() + 3 * topics.len());
    for id in &ids {
        second.push(Read::Data(znodes::broker_path(BrokerId(*id))));
    }
    for t in &topics {
        second.push(Read::Data(znodes::topic_path(t)));
        second.push(Read::Children(znodes::partitions_path(t)));
        second.push(Read::Data(znodes::topic_config_path(t)));
    }
    let mut second = read_batch(client, &second).await?.into_iter();
    for id in &ids {
        let path = znodes::broker_path(BrokerId(*id));
        let Some((d, stat)) = second.next().and_then(Answer::data) else {
            continue;
        };
        match znodes::decode::<BrokerZnode>(&path, &d) {
            Ok(b) => {
                snap.brokers.insert(BrokerId(*id), (b, stat.czxid));
                snap.broker_versions.insert(BrokerId(*id), stat.version);
            }
            Err(e) => tracing::warn!(error = %e, "broker registration skipped"),
        }
    }
    let mut third = Vec::new();
    let mut wanted: Vec<(String, i32)> = Vec::new();
    for t in topics {
        let (Some(topic), Some(parts), Some(config)) =
            (second.next(), second.next(), second.next())
        else {
            break;
        };
        let path = znodes::topic_path(&t);
        let Some((d, stat)) = topic.data() else {
            continue;
        };
        let znode = match znodes::decode::<TopicZnode>(&path, &d) {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(error = %e, "topic skipped");
                continue;
            }
        };
        let partitions_node = parts.exists();
        let partition_nodes: BTreeSet<i32> = parts
            .children()
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        for p in &partition_nodes {
            third.push(Read::Data(znodes::partition_state_path(&t, *p)));
            wanted.push((t.clone(), *p));
        }
        snap.topics.insert(
            t,
            TopicSnapshot {
                znode,
                version: stat.version,
                partitions_node,
                partition_nodes,
                states: BTreeMap::new(),
                config_node: config.exists(),
            },
        );
    }
    let answers = read_batch(client, &third).await?;
    for ((t, p), answer) in wanted.into_iter().zip(answers) {
        let Some((d, stat)) = answer.data() else {
            continue;
        };
        let spath = znodes::partition_state_path(&t, p);
        match znodes::decode::<PartitionStateZnode>(&spath, &d) {
            Ok(s) => {
                if let Some(ts) = snap.topics.get_mut(&t) {
                    ts.states.insert(p, (s, stat.version));
                }
            }
            Err(e) => tracing::warn!(error = %e, "partition state skipped"),
        }
    }
    Ok(snap)
}

/// How a transaction ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxnOutcome {
    /// Applied.
    Applied,
    /// A node changed since it was read: plan again.
    Conflict,
}

/// Runs `txn` fenced by the controller epoch (spec: CLU-61): the first
/// operation checks that `/controller_epoch` still has the version this
/// controller wrote.
pub(crate) async fn execute(
    client: &zk::Client,
    epoch_version: i32,
    txn: &Txn,
) -> Result<TxnOutcome, ControllerError> {
    let mut w = client.new_multi_writer();
    w.add_check_version(znodes::CONTROLLER_EPOCH, epoch_version)?;
    for op in &txn.ops {
        match op {
            WriteOp::Create { path, data } => w.add_create(path, data, &persistent())?,
            WriteOp::Set {
                path,
                data,
                version,
            } => w.add_set_data(path, data, Some(*version))?,
            WriteOp::Delete { path } => w.add_delete(path, None)?,
        }
    }
    match w.commit().await {
        Ok(_) => {
            tracing::info!(what = %txn.what, "controller write applied");
            Ok(TxnOutcome::Applied)
        }
        Err(MultiWriteError::OperationFailed { index: 0, source }) => {
            tracing::warn!(error = %source, "controller epoch moved on: deposed");
            Err(ControllerError::Fenced)
        }
        Err(MultiWriteError::OperationFailed { index, source }) => {
            // spec: CLU-73 — the next pass reads again.
            tracing::debug!(what = %txn.what, index, error = %source, "controller write conflicted");
            match source {
                zk::Error::BadVersion
                | zk::Error::NoNode
                | zk::Error::NodeExists
                | zk::Error::NotEmpty => Ok(TxnOutcome::Conflict),
                e => Err(e.into()),
            }
        }
        Err(MultiWriteError::RequestFailed { source }) => Err(source.into()),
    }
}
