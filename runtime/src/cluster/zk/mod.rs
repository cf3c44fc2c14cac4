//! ZooKeeper mode, broker side: the session, the broker's registration, the
//! metadata cache kept current by a watch, and the [`ClusterLink`] the data
//! plane uses (spec: CLU-3 … CLU-40).
//!
//! One task owns the session for the broker's lifetime. It connects
//! (creating the chroot and the persistent paths if missing), registers
//! `/brokers/ids/<id>` as an ephemeral node whose `czxid` is the broker
//! epoch, reads the whole cluster state and then follows one persistent
//! recursive watch on the root. Every change of a partition this broker
//! hosts is handed to the data plane. When the session expires the data
//! plane is told at once, and the task starts a new session, registers
//! again (with a new epoch) and reads everything again. A ZooKeeper that is
//! unreachable for less than the session timeout changes nothing: the
//! client reconnects to the same session and the cache is re-read.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use gregor_core::controller::PartitionState;
use gregor_core::ids::{BrokerId, PartitionEpoch, TopicPartition};
use gregor_core::replica::{IsrProposal, IsrResponse};
use tokio::sync::watch;
use zookeeper_client::{
    Acls, AddWatchMode, Client, CreateMode, CreateOptions, Error as ZkError, EventType,
    SessionState,
};

use super::link::{ClusterLink, Endpoint};
use super::znodes::{self, BrokerZnode, ClusterIdZnode, ControllerZnode, PartitionStateZnode};
use super::{ClusterImage, TopicMeta};
use crate::broker::Broker;
use crate::config::BrokerConfig;

mod admin;
pub use admin::topic_id_text;

/// Why ZooKeeper mode could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// ZooKeeper answered with an error.
    #[error("zookeeper {op} {path}: {source}")]
    Zk {
        /// The operation.
        op: &'static str,
        /// The node.
        path: String,
        /// ZooKeeper's answer.
        source: ZkError,
    },
    /// No session could be established in time.
    #[error("cannot connect to ZooKeeper at {servers}: {source}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why.
        source: ZkError,
    },
    /// Another live broker is registered with this broker's id.
    #[error(
        "broker id {0} is registered by another live broker (/brokers/ids/{0} did not expire within the session timeout)"
    )]
    IdTaken(i32),
    /// A znode holds something unreadable.
    #[error(transparent)]
    Znode(#[from] znodes::ZnodeError),
    /// The broker is shutting down or has no session.
    #[error("no ZooKeeper session")]
    NoSession,
    /// The log directories belong to another cluster than the one found
    /// under `zookeeper.connect` (spec: CLU-37).
    #[error(
        "the cluster id {found} in ZooKeeper does not match the cluster id {stored} in \
         meta.properties of the log directories: this broker is joining the wrong \
         cluster; zookeeper.connect (and its chroot) may be wrong"
    )]
    WrongCluster {
        /// The id the log directories record.
        stored: String,
        /// The id under `zookeeper.connect`.
        found: String,
    },
    /// The log directories' identity could not be checked.
    #[error("cannot check the log directories' cluster id: {0}")]
    ClusterIdCheck(String),
}

fn zk_err(op: &'static str, path: &str) -> impl FnOnce(ZkError) -> ClusterError + use<> {
    let path = path.to_owned();
    move |source| ClusterError::Zk { op, path, source }
}

/// The controller, run for the lifetime of one session (it campaigns for
/// `/controller` and acts while it holds it). Installed by the broker's
/// start-up; `stop` fires at shutdown.
pub type ControllerTask = Arc<
    dyn Fn(
            Client,
            Arc<BrokerConfig>,
            BrokerId,
            watch::Receiver<bool>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A registered broker as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    /// Its registration.
    pub registration: BrokerZnode,
    /// Its broker epoch: the registration's `czxid` (spec: CLU-6).
    pub epoch: i64,
}

/// One topic as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicView {
    /// Topic id.
    pub id: [u8; 16],
    /// Replicas per partition, preferred leader first.
    pub assignment: BTreeMap<i32, Vec<BrokerId>>,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partition states written by the controller, with the epoch of the
    /// controller that wrote each.
    pub states: BTreeMap<i32, (PartitionState, i32)>,
}

/// Everything the broker knows about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// `/cluster/id`.
    pub cluster_id: String,
    /// Registered brokers.
    pub brokers: BTreeMap<BrokerId, LiveBroker>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicView>,
    /// The current controller, if any.
    pub controller: Option<BrokerId>,
}

impl ClusterView {
    /// The state of one partition, if the controller wrote it.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.topics
            .get(&tp.topic)?
            .states
            .get(&tp.partition)
            .map(|(s, _)| s)
    }

    /// The endpoint of `listener` of broker `id`.
    pub fn endpoint(&self, id: BrokerId, listener: &str) -> Option<Endpoint> {
        let b = self.brokers.get(&id)?;
        let (host, port) = b.registration.endpoint(listener)?;
        Some(Endpoint { host, port })
    }

    fn image(&self) -> ClusterImage {
        ClusterImage {
            cluster_id: self.cluster_id.clone(),
            topics: self
                .topics
                .iter()
                .map(|(name, t)| {
                    let rf = t.assignment.values().next().map_or(0, Vec::len);
                    (
                        name.clone(),
                        TopicMeta {
                            id: t.id,
                            partitions: t.assignment.len() as i32,
                            replication_factor: rf as i16,
                            configs: t.configs.clone(),
                        },
                    )
                })
                .collect(),
            next_producer_id: 0,
        }
    }
}

/// The broker side of ZooKeeper mode.
pub struct ZkCluster {
    config: Arc<BrokerConfig>,
    id: BrokerId,
    view: RwLock<Arc<ClusterView>>,
    image: RwLock<Arc<ClusterImage>>,
    /// Bumped after every cache update; waiters watch it.
    version: watch::Sender<u64>,
    client: RwLock<Option<Client>>,
    broker_epoch: AtomicI64,
    /// The id of the last session this broker lost (0: none).
    last_session: AtomicI64,
    broker: OnceLock<Weak<Broker>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    controller: Mutex<Option<ControllerTask>>,
    stop: watch::Sender<bool>,
    /// What this broker hosts, as last handed to the data plane.
    applied: Mutex<BTreeMap<TopicPartition, PartitionState>>,
    registration: Mutex<Option<BrokerZnode>>,
    session_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ZkCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkCluster")
            .field("broker", &self.id)
            .field("broker_epoch", &self.broker_epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ZkCluster {
    /// A cluster backend for broker `config.broker_id`; nothing is
    /// contacted until [`ZkCluster::start`].
    pub fn new(config: Arc<BrokerConfig>) -> Arc<Self> {
        Arc::new(Self {
            id: BrokerId(config.broker_id),
            config,
            view: RwLock::new(Arc::new(ClusterView::default())),
            image: RwLock::new(Arc::new(ClusterImage::default())),
            version: watch::channel(0).0,
            client: RwLock::new(None),
            broker_epoch: AtomicI64::new(-1),
            last_session: AtomicI64::new(0),
            broker: OnceLock::new(),
            runtime: OnceLock::new(),
            controller: Mutex::new(None),
            stop: watch::channel(false).0,
            applied: Mutex::new(BTreeMap::new()),
            registration: Mutex::new(None),
            session_task: Mutex::new(None),
        })
    }

    /// Installs the controller run for every session (spec: CLU-9).
    pub fn set_controller(&self, task: ControllerTask) {
        *self.controller.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Installs `task` unless one is installed already (tests install
    /// their own before start).
    pub fn set_default_controller(&self, task: ControllerTask) {
        self.controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(task);
    }

    /// The current cache.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cache as the embedded-mode image the data-plane handlers read.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This broker's epoch in the current session, -1 when unregistered.
    pub fn broker_epoch_now(&self) -> i64 {
        self.broker_epoch.load(Ordering::SeqCst)
    }

    /// The ids of the registered brokers.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.view().brokers.keys().map(|b| b.0).collect()
    }

    /// The current session's client.
    pub fn client(&self) -> Result<Client, ClusterError> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(ClusterError::NoSession)
    }

    /// The current session's client once it is connected: a request made
    /// while the connection is being re-established waits for it, up to
    /// `zookeeper.connection.timeout.ms`, instead of failing at once
    /// (spec: CLU-8).
    pub async fn connected_client(&self) -> Result<Client, ClusterError> {
        let wait = Duration::from_millis(self.config.zookeeper_connection_timeout_ms as u64);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(client) = self.client() {
                let mut states = client.state_watcher();
                match client.state() {
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        return Ok(client);
                    }
                    s if s.is_terminated() => {}
                    _ => {
                        let _ = tokio::time::timeout_at(deadline, states.changed()).await;
                        continue_if_before(deadline)?;
                        continue;
                    }
                }
            }
            continue_if_before(deadline)?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Subscribes to cache updates.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits until `done` holds for the cache, or `timeout` passes;
    /// returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&ClusterView) -> bool,
    ) -> bool {
        let mut rx = self.subscribe();
        let wait = async {
            loop {
                if done(&self.view()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Runs `fut` to completion from a blocking thread (never from an
    /// async task).
    pub fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, ClusterError> {
        let rt = self.runtime.get().ok_or(ClusterError::NoSession)?;
        Ok(rt.block_on(fut))
    }

    /// Connects, registers this broker with `endpoints` (every advertised
    /// listener with its bound port) and reads the cluster; then follows
    /// the session in a background task until [`ZkCluster::stop`].
    pub async fn start(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        endpoints: Vec<(String, String, u16)>,
        unclean_start: bool,
    ) -> Result<(), ClusterError> {
        let _ = self.broker.set(Arc::downgrade(broker));
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let first = endpoints.first().cloned().unwrap_or_default();
        let registration = BrokerZnode {
            version: 5,
            host: first.1,
            port: i32::from(first.2),
            jmx_port: -1,
            timestamp: crate::partition::now_ms().to_string(),
            endpoints: endpoints
                .iter()
                .map(|(n, h, p)| format!("{n}://{h}:{p}"))
                .collect(),
            listener_security_protocol_map: endpoints
                .iter()
                .map(|(n, _, _)| (n.clone(), "PLAINTEXT".to_owned()))
                .collect(),
            rack: self.config.rack.clone(),
            unclean_start,
        };
        *self.registration.lock().unwrap_or_else(|e| e.into_inner()) = Some(registration);
        let client = self.open_session(true).await?;
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(client).await });
        *self.session_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    /// Ends the session: the registration disappears at once and the
    /// controller stops (spec: CLU-10).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let client = self
            .client
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(c) = client {
            let _ = c.delete(&znodes::broker_path(self.id), None).await;
        }
        // The session task ends once the controller has stopped; its
        // client handles go with it, which closes the session.
        let task = self
            .session_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut task) = task {
            // A new session being opened does not watch the stop flag;
            // do not wait for it longer than a session timeout.
            let limit = Duration::from_millis(self.config.zookeeper_session_timeout_ms as u64);
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn connect(&self) -> Result<Client, ClusterError> {
        let zk = self
            .config
            .zookeeper
            .clone()
            .ok_or(ClusterError::NoSession)?;
        let session = Duration::from_millis(self.config.zookeeper_session_timeout_ms as u64);
        let conn = Duration::from_millis(self.config.zookeeper_connection_timeout_ms as u64);
        let connect = |servers: String| async move {
            Client::connector()
                .with_session_timeout(session)
                .with_connection_timeout(conn)
                .connect(&servers)
                .await
                .map_err(|source| ClusterError::Connect { servers, source })
        };
        let root = connect(zk.servers.clone()).await?;
        let Some(chroot) = zk.chroot else {
            return Ok(root);
        };
        // spec: CLU-3 — the chroot is created if missing, as Kafka does.
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match root.mkdir(&chroot, &opts).await {
            Ok(()) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(zk_err("mkdir", &chroot)(e)),
        }
        root.chroot(chroot.clone()).map_err(|_| ClusterError::Zk {
            op: "chroot",
            path: chroot,
            source: ZkError::BadArguments(&"invalid chroot"),
        })
    }

    /// Opens a session, creates the persistent paths and the cluster id,
    /// registers and loads the cache (spec: CLU-4, CLU-5, CLU-6).
    async fn open_session(&self, first: bool) -> Result<Client, ClusterError> {
        let client = self.connect().await?;
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        for path in znodes::PERSISTENT_PATHS {
            match client.create(path, b"", &opts).await {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(e) => return Err(zk_err("create", path)(e)),
            }
        }
        // spec: CLU-26 — the first broker's id wins; the others read it.
        let fresh = ClusterIdZnode {
            version: "1".into(),
            id: super::cluster_id_text(&super::fresh_id("cluster")),
        };
        match client
            .create(znodes::CLUSTER_ID, &znodes::encode(&fresh), &opts)
            .await
        {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(zk_err("create", znodes::CLUSTER_ID)(e)),
        }
        // spec: CLU-37 — never join another cluster with these logs.
        let (data, _) = client
            .get_data(znodes::CLUSTER_ID)
            .await
            .map_err(zk_err("get", znodes::CLUSTER_ID))?;
        let cluster: ClusterIdZnode = znodes::decode(znodes::CLUSTER_ID, &data)?;
        if let Some(b) = self.target() {
            match b.partitions.check_cluster_id(&cluster.id) {
                Ok(()) => {}
                Err(crate::partition::ClusterIdCheck::Other(stored)) => {
                    return Err(ClusterError::WrongCluster {
                        stored,
                        found: cluster.id,
                    });
                }
                Err(crate::partition::ClusterIdCheck::Unreadable(e)) => {
                    return Err(ClusterError::ClusterIdCheck(e));
                }
            }
        }
        let epoch = self.register(&client, first).await?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        self.broker_epoch.store(epoch, Ordering::SeqCst);
        tracing::info!(
            broker = self.id.0,
            broker_epoch = epoch,
            "registered in ZooKeeper"
        );
        // spec: CLU-6 — the data plane learns the new epoch before any
        // partition state of this session.
        if let Some(b) = self.target() {
            b.partitions.registered(epoch);
        }
        self.reload_all(&client).await?;
        Ok(client)
    }

    /// Creates the ephemeral registration; a node left by an earlier
    /// session of this id is waited out for one session timeout, a node
    /// that outlives that belongs to a live broker (spec: CLU-5).
    async fn register(&self, client: &Client, first: bool) -> Result<i64, ClusterError> {
        let path = znodes::broker_path(self.id);
        let data = znodes::encode(
            self.registration
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .ok_or(ClusterError::NoSession)?,
        );
        let opts = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        let patience = Duration::from_millis(self.config.zookeeper_session_timeout_ms as u64)
            + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match client.create(&path, &data, &opts).await {
                Ok((stat, _)) => return Ok(stat.czxid),
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(zk_err("create", &path)(e)),
            }
            let (stat, watcher) = client
                .check_and_watch_stat(&path)
                .await
                .map_err(zk_err("exists", &path))?;
            match stat {
                None => continue,
                Some(s) if s.ephemeral_owner == client.session_id().0 => return Ok(s.czxid),
                // spec: CLU-5 — our own previous session, lost to us: its
                // node goes now rather than at its server-side expiry.
                Some(s) if s.ephemeral_owner == self.last_session.load(Ordering::SeqCst) => {
                    match client.delete(&path, Some(s.version)).await {
                        Ok(()) | Err(ZkError::NoNode | ZkError::BadVersion) => continue,
                        Err(e) => return Err(zk_err("delete", &path)(e)),
                    }
                }
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::IdTaken(self.id.0));
            }
            tracing::warn!(
                broker = self.id.0,
                first,
                "{path} exists (an earlier session of this id?); waiting for it to expire"
            );
            let _ = tokio::time::timeout_at(deadline, watcher.changed()).await;
        }
    }

    fn target(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// Follows sessions until the broker stops.
    async fn run(self: Arc<Self>, mut client: Client) {
        let mut stop = self.stop.subscribe();
        loop {
            let (ctl_stop_tx, ctl_stop) = watch::channel(false);
            let controller = self
                .controller
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let ctl = controller.map(|task| {
                tokio::spawn(task(client.clone(), self.config.clone(), self.id, ctl_stop))
            });
            let outcome = self.follow(&client, &mut stop).await;
            let _ = ctl_stop_tx.send(true);
            let expired = outcome.is_some() && !self.stopping();
            if expired {
                // spec: CLU-7 — the session is gone: the data plane steps
                // down at once, then a new session registers with a new
                // epoch.
                self.broker_epoch.store(-1, Ordering::SeqCst);
                *self.client.write().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::warn!(
                    broker = self.id.0,
                    "ZooKeeper session expired; registering again"
                );
                if let Some(b) = self.target() {
                    b.partitions.session_lost();
                }
                self.applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            if let Some(h) = ctl {
                let _ = h.await;
            }
            if !expired {
                return;
            }
            // Closing our handle ends the session on the server too if the
            // loss was only seen here (the client library gives up on its
            // own after 1.4 session timeouts without an answer).
            let lost = client.session_id().0;
            self.last_session.store(lost, Ordering::SeqCst);
            drop(client);
            client = loop {
                if self.stopping() {
                    return;
                }
                match self.open_session(false).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open a new ZooKeeper session; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
            };
        }
    }

    /// Follows one session's watch; `Some(())` when the session expired,
    /// `None` when the broker stops.
    async fn follow(&self, client: &Client, stop: &mut watch::Receiver<bool>) -> Option<()> {
        let mut states = client.state_watcher();
        let ended = |this: &Self| if this.stopping() { None } else { Some(()) };
        let Some(mut watcher) = self.watch_root(client, stop).await else {
            return ended(self);
        };
        // Changes between the load and the watch: read once more.
        let mut stale = true;
        loop {
            if stale {
                match self.reload_all(client).await {
                    Ok(()) => {
                        stale = false;
                        self.set_aside_strays();
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the cluster state yet"),
                }
            }
            let retry = async {
                if stale {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = stop.changed() => return None,
                () = retry => {}
                state = states.changed() => match state {
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        // spec: CLU-8 — back on the same session: the
                        // watch is set again and everything re-read, since
                        // events may have been missed while disconnected.
                        let Some(w) = self.watch_root(client, stop).await else {
                            return ended(self);
                        };
                        watcher = w;
                        stale = true;
                    }
                    SessionState::Disconnected => {
                        tracing::info!("ZooKeeper connection lost; the session continues");
                    }
                    s if s.is_terminated() => return Some(()),
                    _ => {}
                },
                event = watcher.changed() => {
                    if event.event_type == EventType::Session {
                        if event.session_state.is_terminated() {
                            return Some(());
                        }
                        continue;
                    }
                    if let Err(e) = self.on_event(client, &event.path).await {
                        tracing::warn!(error = %e, path = %event.path, "cannot follow a change; re-reading");
                        stale = true;
                    }
                }
            }
        }
    }

    /// Sets the persistent recursive watch on the root (spec: CLU-11);
    /// `None` when the session ended or the broker stops first.
    async fn watch_root(
        &self,
        client: &Client,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<zookeeper_client::PersistentWatcher> {
        loop {
            match client.watch("/", AddWatchMode::PersistentRecursive).await {
                Ok(w) => return Some(w),
                Err(e) => {
                    // A connection loss is not the end of the session.
                    if client.state().is_terminated() {
                        return None;
                    }
                    tracing::warn!(error = %e, "cannot watch the cluster root yet; retrying");
                    tokio::select! {
                        _ = stop.changed() => return None,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    /// Re-reads what the changed node `path` affects (spec: CLU-11).
    async fn on_event(&self, client: &Client, path: &str) -> Result<(), ClusterError> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["brokers", "ids", ..] => {
                let brokers = load_brokers(client).await?;
                self.update(|v| v.brokers = brokers);
            }
            ["brokers", "topics", topic, ..] | ["config", "topics", topic] => {
                let t = load_topic(client, topic).await?;
                let name = (*topic).to_owned();
                self.update(|v| match t {
                    Some(t) => {
                        v.topics.insert(name, t);
                    }
                    None => {
                        v.topics.remove(&name);
                    }
                });
            }
            ["controller"] => {
                let c = load_controller(client).await?;
                self.update(|v| v.controller = c);
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads the whole cluster state into the cache.
    async fn reload_all(&self, client: &Client) -> Result<(), ClusterError> {
        let (data, _) = client
            .get_data(znodes::CLUSTER_ID)
            .await
            .map_err(zk_err("get", znodes::CLUSTER_ID))?;
        let cluster: ClusterIdZnode = znodes::decode(znodes::CLUSTER_ID, &data)?;
        let brokers = load_brokers(client).await?;
        let mut topics = BTreeMap::new();
        let names = match client.list_children(znodes::BROKER_TOPICS).await {
            Ok(n) => n,
            Err(ZkError::NoNode) => Vec::new(),
            Err(e) => return Err(zk_err("list", znodes::BROKER_TOPICS)(e)),
        };
        for name in names {
            if let Some(t) = load_topic(client, &name).await? {
                topics.insert(name, t);
            }
        }
        let controller = load_controller(client).await?;
        self.update(|v| {
            *v = ClusterView {
                cluster_id: cluster.id,
                brokers,
                topics,
                controller,
            }
        });
        Ok(())
    }

    /// Applies a change to the cache, publishes it and hands what changed
    /// for this broker's replicas to the data plane (spec: CLU-12, CLU-13).
    fn update(&self, change: impl FnOnce(&mut ClusterView)) {
        let next = {
            let mut guard = self.view.write().unwrap_or_else(|e| e.into_inner());
            let mut next = (**guard).clone();
            change(&mut next);
            if next == **guard {
                return;
            }
            let next = Arc::new(next);
            *guard = next.clone();
            next
        };
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next.image());
        self.reconcile(&next);
        self.version.send_modify(|v| *v += 1);
    }

    /// spec: CLU-36 — after a complete read of the cluster state, every
    /// local log whose partition is not assigned to this broker (its topic
    /// was deleted, or the replica moved, while the broker was away) is set
    /// aside, never served.
    fn set_aside_strays(&self) {
        let Some(broker) = self.target() else {
            return;
        };
        let view = self.view();
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        for tp in broker.partitions.held() {
            let assigned = view.topics.get(&tp.topic).is_some_and(|t| {
                t.assignment
                    .get(&tp.partition)
                    .is_some_and(|r| r.contains(&self.id))
            });
            if assigned {
                continue;
            }
            applied.remove(&tp);
            tracing::warn!(partition = %tp, "log of a partition not assigned to this broker");
            if let Err(e) = broker.partitions.set_aside(&tp) {
                tracing::error!(partition = %tp, error = %e, "cannot set a stray log aside");
            }
        }
    }

    fn reconcile(&self, view: &ClusterView) {
        let Some(broker) = self.target() else {
            return;
        };
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let mut hosted = BTreeSet::new();
        for (name, t) in &view.topics {
            if t.assignment.values().any(|r| r.contains(&self.id)) {
                // spec: STO-54 — before any of its logs is created.
                broker.partitions.set_topic_config(name, &t.configs);
            }
            for (p, replicas) in &t.assignment {
                if !replicas.contains(&self.id) {
                    continue;
                }
                let tp = TopicPartition::new(name.clone(), *p);
                hosted.insert(tp.clone());
                // spec: CLU-35 — a log left from an earlier topic of the
                // same name is set aside before anything is applied.
                let id = (t.id != [0; 16]).then(|| topic_id_text(&t.id));
                if let Some(id) = &id {
                    match broker.partitions.adopt_topic_id(&tp, id) {
                        Ok(true) => {
                            applied.remove(&tp);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(partition = %tp, error = %e, "cannot check the log's topic id");
                            continue;
                        }
                    }
                }
                let Some((state, _)) = t.states.get(p) else {
                    continue;
                };
                let mut state = state.clone();
                state.replicas = replicas.clone();
                if applied.get(&tp) == Some(&state) {
                    continue;
                }
                match broker.partitions.apply_state(&tp, &state) {
                    Ok(()) => {
                        // A log created just now records its topic id.
                        if let Some(id) = &id
                            && let Err(e) = broker.partitions.adopt_topic_id(&tp, id)
                        {
                            tracing::error!(partition = %tp, error = %e, "cannot record the log's topic id");
                        }
                        applied.insert(tp, state);
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "cannot apply a partition state")
                    }
                }
            }
        }
        // spec: CLU-13 — partitions no longer assigned here are dropped.
        let gone: Vec<TopicPartition> = applied
            .keys()
            .filter(|tp| !hosted.contains(*tp))
            .cloned()
            .collect();
        for tp in gone {
            applied.remove(&tp);
            if let Err(e) = broker.partitions.remove(&tp) {
                tracing::error!(partition = %tp, error = %e, "cannot remove a partition");
            }
        }
    }

    /// Writes a leader's ISR proposal to the state znode, conditional on
    /// the partition epoch (spec: CLU-14, CLU-15, REP-19, REP-23).
    pub async fn write_isr(
        &self,
        tp: &TopicPartition,
        proposal: &IsrProposal,
    ) -> Result<IsrResponse, ClusterError> {
        let client = self.connected_client().await?;
        let path = znodes::partition_state_path(&tp.topic, tp.partition);
        let (data, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Ok(IsrResponse::Rejected),
            Err(e) => return Err(zk_err("get", &path)(e)),
        };
        let current: PartitionStateZnode = znodes::decode(&path, &data)?;
        if stat.version != proposal.partition_epoch.0
            || current.leader != proposal.leader.0
            || current.leader_epoch != proposal.leader_epoch.0
        {
            return Ok(IsrResponse::Rejected);
        }
        let view = self.view();
        let before: BTreeSet<i32> = current.isr.iter().copied().collect();
        for m in &proposal.isr {
            if before.contains(&m.0) {
                continue;
            }
            let registered = view.brokers.get(m).map(|b| b.epoch);
            if registered.is_none() || registered != proposal.broker_epochs.get(m).copied() {
                tracing::info!(partition = %tp, broker = m.0, "ISR expansion refused: broker epoch is not current");
                return Ok(IsrResponse::Rejected);
            }
        }
        let next = PartitionStateZnode {
            controller_epoch: current.controller_epoch,
            leader: current.leader,
            version: 1,
            leader_epoch: current.leader_epoch,
            isr: proposal.isr.iter().map(|b| b.0).collect(),
        };
        match client
            .set_data(
                &path,
                &znodes::encode(&next),
                Some(proposal.partition_epoch.0),
            )
            .await
        {
            Ok(stat) => Ok(IsrResponse::Accepted(PartitionEpoch(stat.version))),
            Err(ZkError::BadVersion | ZkError::NoNode) => Ok(IsrResponse::Rejected),
            Err(e) => Err(zk_err("set", &path)(e)),
        }
    }
}

impl ClusterLink for ZkCluster {
    fn local_broker(&self) -> BrokerId {
        self.id
    }

    // spec: CLU-16
    fn endpoint(&self, broker: BrokerId) -> Option<Endpoint> {
        self.view()
            .endpoint(broker, &self.config.inter_broker_listener_name)
    }

    fn broker_epoch(&self, broker: BrokerId) -> Option<i64> {
        self.view().brokers.get(&broker).map(|b| b.epoch)
    }

    fn propose_isr(&self, partition: TopicPartition, proposal: IsrProposal) {
        let (Some(rt), Some(weak)) = (self.runtime.get(), self.broker.get()) else {
            tracing::warn!(%partition, "ISR proposal before the cluster started; dropped");
            return;
        };
        let weak = weak.clone();
        rt.spawn(async move {
            let Some(broker) = weak.upgrade() else {
                return;
            };
            let Some(zk) = broker.metadata.zk() else {
                return;
            };
            let answer = match zk.write_isr(&partition, &proposal).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%partition, error = %e, "ISR write failed");
                    IsrResponse::Rejected
                }
            };
            broker
                .partitions
                .isr_response(&partition, &proposal, answer);
        });
    }
}

fn continue_if_before(deadline: tokio::time::Instant) -> Result<(), ClusterError> {
    if tokio::time::Instant::now() >= deadline {
        Err(ClusterError::NoSession)
    } else {
        Ok(())
    }
}

async fn load_brokers(client: &Client) -> Result<BTreeMap<BrokerId, LiveBroker>, ClusterError> {
    let ids = client
        .list_children(znodes::BROKER_IDS)
        .await
        .map_err(zk_err("list", znodes::BROKER_IDS))?;
    let mut out = BTreeMap::new();
    for id in ids {
        let Ok(n) = id.parse::<i32>() else {
            continue;
        };
        let path = znodes::broker_path(BrokerId(n));
        match client.get_data(&path).await {
            Ok((data, stat)) => {
                let registration: BrokerZnode = znodes::decode(&path, &data)?;
                out.insert(
                    BrokerId(n),
                    LiveBroker {
                        registration,
                        epoch: stat.czxid,
                    },
                );
            }
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(zk_err("get", &path)(e)),
        }
    }
    Ok(out)
}

async fn load_topic(client: &Client, name: &str) -> Result<Option<TopicView>, ClusterError> {
    let path = znodes::topic_path(name);
    let data = match client.get_data(&path).await {
        Ok((d, _)) => d,
        Err(ZkError::NoNode) => return Ok(None),
        Err(e) => return Err(zk_err("get", &path)(e)),
    };
    let znode: znodes::TopicZnode = znodes::decode(&path, &data)?;
    let cpath = znodes::topic_config_path(name);
    let configs = match client.get_data(&cpath).await {
        Ok((d, _)) => znodes::decode::<znodes::TopicConfigZnode>(&cpath, &d)?.config,
        Err(ZkError::NoNode) => BTreeMap::new(),
        Err(e) => return Err(zk_err("get", &cpath)(e)),
    };
    let assignment = znode.assignment();
    let mut states = BTreeMap::new();
    for (p, replicas) in &assignment {
        let spath = znodes::partition_state_path(name, *p);
        match client.get_data(&spath).await {
            Ok((d, stat)) => {
                let s: PartitionStateZnode = znodes::decode(&spath, &d)?;
                states.insert(
                    *p,
                    (
                        s.to_core(replicas.clone(), stat.version),
                        s.controller_epoch,
                    ),
                );
            }
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(zk_err("get", &spath)(e)),
        }
    }
    Ok(Some(TopicView {
        id: znode
            .topic_id
            .as_deref()
            .and_then(admin::topic_id_bytes)
            .unwrap_or([0; 16]),
        assignment,
        configs,
        states,
    }))
}

async fn load_controller(client: &Client) -> Result<Option<BrokerId>, ClusterError> {
    match client.get_data(znodes::CONTROLLER).await {
        Ok((d, _)) => {
            let c: ControllerZnode = znodes::decode(znodes::CONTROLLER, &d)?;
            Ok(Some(BrokerId(c.brokerid)))
        }
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(zk_err("get", znodes::CONTROLLER)(e)),
    }
}

/// Options for a persistent node.
fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gregor_core::ids::LeaderEpoch;

    fn registration(endpoints: &[&str]) -> BrokerZnode {
        BrokerZnode {
            version: 5,
            host: "h".into(),
            port: 1,
            jmx_port: -1,
            timestamp: "0".into(),
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            listener_security_protocol_map: BTreeMap::new(),
            rack: None,
            unclean_start: false,
        }
    }

    // spec: CLU-16, CLU-30
    #[test]
    fn the_cache_serves_endpoints_per_listener_and_the_topic_image() {
        let mut view = ClusterView {
            cluster_id: "c".into(),
            ..ClusterView::default()
        };
        view.brokers.insert(
            BrokerId(2),
            LiveBroker {
                registration: registration(&["CLIENT://c2:9092", "REPLICATION://r2:9093"]),
                epoch: 77,
            },
        );
        assert_eq!(
            view.endpoint(BrokerId(2), "REPLICATION"),
            Some(Endpoint {
                host: "r2".into(),
                port: 9093
            })
        );
        assert_eq!(view.endpoint(BrokerId(2), "OTHER"), None);
        assert_eq!(view.endpoint(BrokerId(3), "CLIENT"), None);
        let replicas = vec![BrokerId(2), BrokerId(1)];
        let state = PartitionState {
            replicas: replicas.clone(),
            leader: Some(BrokerId(2)),
            leader_epoch: LeaderEpoch(4),
            partition_epoch: PartitionEpoch(9),
            isr: [BrokerId(2)].into(),
        };
        view.topics.insert(
            "t".into(),
            TopicView {
                id: [7; 16],
                assignment: [(0, replicas.clone()), (1, replicas)].into(),
                configs: [("retention.ms".to_owned(), "1000".to_owned())].into(),
                states: [(0, (state.clone(), 3))].into(),
            },
        );
        assert_eq!(view.partition(&TopicPartition::new("t", 0)), Some(&state));
        assert_eq!(view.partition(&TopicPartition::new("t", 1)), None);
        let image = view.image();
        assert_eq!(image.cluster_id, "c");
        let t = &image.topics["t"];
        assert_eq!((t.partitions, t.replication_factor, t.id), (2, 2, [7; 16]));
        assert_eq!(t.configs["retention.ms"], "1000");
    }
}
