//! Reading the cluster's znodes into a [`Snapshot`] and running a
//! [`Plan`]'s transactions behind the controller-epoch check.

use std::collections::{BTreeMap, BTreeSet};

use gregor_core::ids::BrokerId;
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

/// Children of `path`, empty when the node does not exist.
pub(crate) async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
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

/// Reads everything a pass needs. Damaged payloads are logged and skipped
/// (spec: CLU-74): one bad node must not stop the controller.
pub async fn read_snapshot(client: &zk::Client) -> Result<Snapshot, zk::Error> {
    let mut snap = Snapshot::default();
    for id in children(client, znodes::BROKER_IDS).await? {
        let Ok(n) = id.parse::<i32>() else { continue };
        let path = znodes::broker_path(BrokerId(n));
        let Some((d, stat)) = data(client, &path).await? else {
            continue;
        };
        match znodes::decode::<BrokerZnode>(&path, &d) {
            Ok(b) => {
                snap.brokers.insert(BrokerId(n), (b, stat.czxid));
            }
            Err(e) => tracing::warn!(error = %e, "broker registration skipped"),
        }
    }
    for t in children(client, znodes::BROKER_TOPICS).await? {
        let path = znodes::topic_path(&t);
        let Some((d, stat)) = data(client, &path).await? else {
            continue;
        };
        let znode = match znodes::decode::<TopicZnode>(&path, &d) {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(error = %e, "topic skipped");
                continue;
            }
        };
        let parts = children(client, &znodes::partitions_path(&t)).await?;
        let partitions_node = client
            .check_stat(&znodes::partitions_path(&t))
            .await?
            .is_some();
        let mut partition_nodes = BTreeSet::new();
        let mut states = BTreeMap::new();
        for p in parts {
            let Ok(p) = p.parse::<i32>() else { continue };
            partition_nodes.insert(p);
            let spath = znodes::partition_state_path(&t, p);
            if let Some((d, stat)) = data(client, &spath).await? {
                match znodes::decode::<PartitionStateZnode>(&spath, &d) {
                    Ok(s) => {
                        states.insert(p, (s, stat.version));
                    }
                    Err(e) => tracing::warn!(error = %e, "partition state skipped"),
                }
            }
        }
        let config_node = client
            .check_stat(&znodes::topic_config_path(&t))
            .await?
            .is_some();
        snap.topics.insert(
            t,
            TopicSnapshot {
                znode,
                version: stat.version,
                partitions_node,
                partition_nodes,
                states,
                config_node,
            },
        );
    }
    snap.deletions = children(client, znodes::ADMIN_DELETE_TOPICS)
        .await?
        .into_iter()
        .collect();
    if let Some((d, stat)) = data(client, znodes::ADMIN_REASSIGN).await? {
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
    snap.shutting_down = children(client, znodes::ADMIN_CONTROLLED_SHUTDOWN)
        .await?
        .iter()
        .filter_map(|c| c.parse().ok().map(BrokerId))
        .collect();
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
