//! The cluster controller in ZooKeeper mode (`spec/controller.md`,
//! CLU-60 … CLU-99).
//!
//! Every broker runs [`run`] once per ZooKeeper session. It campaigns for
//! the ephemeral `/controller` node; the winner bumps `/controller_epoch`
//! and, while it holds the node, keeps every partition's state znode in
//! line with the cluster: leaders for partitions whose leader is gone, ISR
//! shrink on broker loss, initial states for new topics, deletions,
//! reassignments, controlled shutdowns and preferred-leader rebalance. The
//! decisions about leaders and ISRs are made by
//! [`gregor_core::controller::Controller`] (see [`plan`]); this module reads
//! ZooKeeper and writes the results as version-conditional transactions
//! fenced by the controller epoch. Brokers learn of every change through
//! their own watches on the state znodes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gregor_core::controller::ControllerConfig;
use gregor_core::ids::BrokerId;
use tokio::sync::watch;
use zookeeper_client::{self as zk, AddWatchMode, EventType, SessionState};

use crate::cluster::znodes::{self, ControllerZnode};
use crate::config::BrokerConfig;

pub mod admin;
pub mod plan;
mod zkio;

pub use admin::{ControlledShutdownError, controlled_shutdown, controlled_shutdown_timeout};
pub use zkio::read_snapshot;

/// How often the controller re-reads everything even without a watch event
/// (events can be lost across a reconnection).
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// How long the controller gathers watch events before a pass.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Pause after a transient ZooKeeper error.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why the controller stopped acting.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A newer controller bumped the controller epoch (CLU-61).
    #[error("fenced by a newer controller epoch")]
    Fenced,
    /// ZooKeeper failed the request.
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] zk::Error),
    /// A znode could not be parsed.
    #[error(transparent)]
    Znode(#[from] znodes::ZnodeError),
}

/// What the controller needs from its broker.
#[derive(Debug, Clone)]
pub struct ControllerContext {
    /// The broker's configuration (min.insync.replicas, unclean election,
    /// rebalance settings).
    pub config: Arc<BrokerConfig>,
    /// This broker's id, written into `/controller`.
    pub broker_id: BrokerId,
    /// Becomes `true` when the broker shuts down.
    pub stop: watch::Receiver<bool>,
}

impl ControllerContext {
    /// A context for `broker_id`.
    pub fn new(
        config: Arc<BrokerConfig>,
        broker_id: BrokerId,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            config,
            broker_id,
            stop,
        }
    }
}

/// The controller-relevant settings of a broker configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// What a pass needs.
    pub plan: plan::PlanConfig,
    /// `auto.leader.rebalance.enable`.
    pub auto_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub rebalance_interval: Duration,
}

impl Settings {
    /// Reads the settings from `config` (defaults as in Kafka).
    pub fn from_config(config: &BrokerConfig) -> Self {
        let flag = |k: &str, d: bool| config.raw(k).map_or(d, |v| v.eq_ignore_ascii_case("true"));
        let num = |k: &str, d: u64| config.raw(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        Self {
            plan: plan::PlanConfig {
                core: ControllerConfig {
                    min_insync_replicas: config.min_insync_replicas.max(1) as usize,
                    unclean_leader_election: flag("unclean.leader.election.enable", false),
                },
                imbalance_percentage: num("leader.imbalance.per.broker.percentage", 10) as u32,
                delete_topic_enable: config.delete_topic_enable,
            },
            auto_rebalance: flag("auto.leader.rebalance.enable", true),
            rebalance_interval: Duration::from_secs(
                num("leader.imbalance.check.interval.seconds", 300).max(1),
            ),
        }
    }
}

/// Why a stretch of controllership ended.
enum End {
    /// The session ended or the broker stops: return.
    Done,
    /// Deposed or the node vanished: campaign again.
    Lost,
}

fn terminal(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
    )
}

/// Runs for the lifetime of ONE ZooKeeper session: campaigns for
/// `/controller`; while it holds it, acts as controller; campaigns again if
/// it loses the node (deposed, or the node was deleted) while the session
/// lives. Returns when the session ends or `stop` fires (spec: CLU-60).
pub async fn run(client: zk::Client, mut ctx: ControllerContext) {
    let settings = Settings::from_config(&ctx.config);
    loop {
        if *ctx.stop.borrow() || terminal(client.state()) {
            return;
        }
        let won = tokio::select! {
            r = campaign(&client, ctx.broker_id) => r,
            _ = ctx.stop.wait_for(|s| *s) => return,
            _ = session_end(&client) => return,
        };
        let epoch = match won {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                if terminal(client.state()) {
                    return;
                }
                tracing::warn!(error = %e, "controller election failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        tracing::info!(
            broker = ctx.broker_id.0,
            epoch = epoch.0,
            "elected controller"
        );
        let end = tokio::select! {
            e = serve(&client, &settings, epoch) => e,
            _ = ctx.stop.wait_for(|s| *s) => End::Done,
            _ = session_end(&client) => End::Done,
        };
        match end {
            End::Done => {
                // spec: CLU-63 — hand the role over at once rather than at
                // session expiry.
                if !terminal(client.state()) {
                    resign(&client).await;
                }
                return;
            }
            End::Lost => {
                tracing::warn!(broker = ctx.broker_id.0, "controllership lost");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Resolves when the session reaches a terminal state.
async fn session_end(client: &zk::Client) {
    let mut w = client.state_watcher();
    loop {
        if terminal(w.state()) {
            return;
        }
        if terminal(w.changed().await) {
            return;
        }
    }
}

/// Deletes `/controller` if this session owns it.
async fn resign(client: &zk::Client) {
    if let Ok(Some(stat)) = client.check_stat(znodes::CONTROLLER).await
        && stat.ephemeral_owner == client.session_id().0
    {
        let _ = client.delete(znodes::CONTROLLER, Some(stat.version)).await;
    }
}

/// The controller epoch this controller holds: its value and the data
/// version of `/controller_epoch` it wrote.
#[derive(Debug, Clone, Copy)]
struct Epoch(i32, i32);

/// One round of the election (spec: CLU-60): creates the ephemeral
/// `/controller` and bumps `/controller_epoch` in one transaction. Returns
/// the epoch when won, `None` once the current holder is gone (campaign
/// again).
async fn campaign(client: &zk::Client, me: BrokerId) -> Result<Option<Epoch>, ControllerError> {
    zkio::ensure_layout(client).await?;
    loop {
        let current = zkio::data(client, znodes::CONTROLLER_EPOCH).await?;
        let (next, expected) = match &current {
            Some((d, stat)) => {
                let v: i32 = std::str::from_utf8(d)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                (v + 1, Some(stat.version))
            }
            None => (1, None),
        };
        let payload = znodes::encode(&ControllerZnode {
            version: 1,
            brokerid: me.0,
            timestamp: crate::partition::now_ms().to_string(),
        });
        let mut w = client.new_multi_writer();
        w.add_create(znodes::CONTROLLER, &payload, &zkio::ephemeral())?;
        match expected {
            Some(v) => w.add_set_data(
                znodes::CONTROLLER_EPOCH,
                next.to_string().as_bytes(),
                Some(v),
            )?,
            None => w.add_create(
                znodes::CONTROLLER_EPOCH,
                next.to_string().as_bytes(),
                &zkio::persistent(),
            )?,
        }
        match w.commit().await {
            Ok(results) => {
                let version = match results.get(1) {
                    Some(zk::MultiWriteResult::SetData { stat }) => stat.version,
                    _ => 0,
                };
                return Ok(Some(Epoch(next, version)));
            }
            Err(zk::MultiWriteError::OperationFailed { index: 0, .. }) => {
                // Someone holds /controller: wait for it to go.
                let (stat, watcher) = client.check_and_watch_stat(znodes::CONTROLLER).await?;
                match stat {
                    None => return Ok(None),
                    Some(s) if s.ephemeral_owner == client.session_id().0 => {
                        // Left over from an earlier run in this session.
                        let _ = client.delete(znodes::CONTROLLER, Some(s.version)).await;
                        return Ok(None);
                    }
                    Some(_) => {
                        let ev = watcher.changed().await;
                        if ev.event_type == EventType::Session && terminal(ev.session_state) {
                            return Err(zk::Error::SessionExpired.into());
                        }
                        return Ok(None);
                    }
                }
            }
            // The epoch node changed under us: read it again.
            Err(zk::MultiWriteError::OperationFailed { .. }) => continue,
            Err(zk::MultiWriteError::RequestFailed { source }) => return Err(source.into()),
        }
    }
}

/// Acts as controller until deposed or the node is lost.
async fn serve(client: &zk::Client, settings: &Settings, epoch: Epoch) -> End {
    let mut brokers = match client
        .watch("/brokers", AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch /brokers");
            return End::Lost;
        }
    };
    let mut admin = match client
        .watch("/admin", AddWatchMode::PersistentRecursive)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch /admin");
            return End::Lost;
        }
    };
    // spec: CLU-69 — passes on every event, periodically, and after
    // conflicts.
    let mut seen: BTreeMap<BrokerId, i64> = BTreeMap::new();
    let mut dirty = true;
    let mut rebalance_due = false;
    let mut next_rebalance = Instant::now() + settings.rebalance_interval;
    let mut next_resync = Instant::now() + RESYNC_INTERVAL;
    loop {
        if dirty {
            dirty = false;
            match pass(client, settings, epoch, &mut seen, rebalance_due).await {
                Ok(again) => {
                    rebalance_due = false;
                    if again {
                        // A node changed under the pass: read again shortly.
                        tokio::time::sleep(DEBOUNCE).await;
                        dirty = true;
                    }
                }
                Err(ControllerError::Fenced) => return End::Lost,
                Err(e) => {
                    if terminal(client.state()) {
                        return End::Done;
                    }
                    tracing::warn!(error = %e, "controller pass failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    dirty = true;
                }
            }
            // spec: CLU-62 — the controller checks it still owns its node.
            match client.check_stat(znodes::CONTROLLER).await {
                Ok(Some(s)) if s.ephemeral_owner == client.session_id().0 => {}
                Ok(_) => return End::Lost,
                Err(_) if terminal(client.state()) => return End::Done,
                Err(_) => dirty = true,
            }
            continue;
        }
        let now = Instant::now();
        if settings.auto_rebalance && now >= next_rebalance {
            next_rebalance = now + settings.rebalance_interval;
            rebalance_due = true;
            dirty = true;
            continue;
        }
        if now >= next_resync {
            next_resync = now + RESYNC_INTERVAL;
            dirty = true;
            continue;
        }
        let wake = if settings.auto_rebalance {
            next_resync.min(next_rebalance)
        } else {
            next_resync
        };
        let ev = tokio::select! {
            ev = brokers.changed() => Some(ev),
            ev = admin.changed() => Some(ev),
            _ = tokio::time::sleep_until(wake.into()) => None,
        };
        if let Some(ev) = ev {
            if ev.event_type == EventType::Session && terminal(ev.session_state) {
                return End::Done;
            }
            dirty = true;
            tokio::time::sleep(DEBOUNCE).await;
            // Every event gathered meanwhile is covered by the coming pass.
            for w in [&mut brokers, &mut admin] {
                while let Ok(ev) = tokio::time::timeout(Duration::ZERO, w.changed()).await {
                    if ev.event_type == EventType::Session && terminal(ev.session_state) {
                        return End::Done;
                    }
                }
            }
        }
    }
}

/// One reconciliation pass; returns whether another pass is needed at
/// once (a write conflicted).
async fn pass(
    client: &zk::Client,
    settings: &Settings,
    epoch: Epoch,
    seen: &mut BTreeMap<BrokerId, i64>,
    rebalance: bool,
) -> Result<bool, ControllerError> {
    let snap = zkio::read_snapshot(client).await?;
    let plan = plan::plan(&snap, &settings.plan, seen, epoch.0, rebalance);
    let mut conflict = false;
    for txn in &plan.txns {
        if zkio::execute(client, epoch.1, txn).await? == zkio::TxnOutcome::Conflict {
            conflict = true;
        }
    }
    if !conflict {
        for txn in &plan.after {
            if zkio::execute(client, epoch.1, txn).await? == zkio::TxnOutcome::Conflict {
                conflict = true;
            }
        }
    }
    if !conflict {
        *seen = plan.seen;
    }
    Ok(conflict)
}

/// Runs `txn` as the controller does (spec: CLU-61): in one ZooKeeper
/// transaction behind a check that `/controller_epoch` still has data
/// version `epoch_version`. Returns `Ok(false)` when a node of the
/// transaction changed since it was read, and [`ControllerError::Fenced`]
/// when a newer controller moved the epoch on.
pub async fn write_fenced(
    client: &zk::Client,
    epoch_version: i32,
    txn: &plan::Txn,
) -> Result<bool, ControllerError> {
    Ok(zkio::execute(client, epoch_version, txn).await? == zkio::TxnOutcome::Applied)
}
