//! The broker's shared state: configuration, cluster metadata and the
//! address it announces to clients. One [`Broker`] is shared (behind an
//! `Arc`) by every connection task.

use std::sync::Mutex;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gregor_core::ids::TopicPartition;

use crate::cluster::zk::{ClusterError, ZkCluster};
use crate::cluster::{EmbeddedMetadata, Metadata, NewTopic, TopicError, TopicMeta};
use crate::codec::CodecError;
use crate::config::BrokerConfig;
use crate::partition::Partitions;
use crate::storage::error::StorageError;

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The data directory could not be created.
    #[error("cannot create log dir {path}: {source}")]
    LogDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata file is unreadable or damaged.
    #[error("cluster metadata: {0}")]
    Metadata(#[from] CodecError),
    /// The storage engine could not open the logs.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// ZooKeeper mode could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
}

/// Host and port clients are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: i32,
}

/// State shared by all connections of one broker.
#[derive(Debug)]
pub struct Broker {
    /// The validated configuration.
    pub config: BrokerConfig,
    /// Topics and partitions: the embedded file or the ZooKeeper cache.
    pub metadata: Metadata,
    /// The partition logs.
    pub partitions: Partitions,
    /// Per advertised listener, set once bound (a configured port 0
    /// becomes the real one).
    advertised: Mutex<Vec<(String, Advertised)>>,
    /// The producer ids of the claimed block not handed out yet
    /// (ZooKeeper mode): next, last.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Whether the logs were not shut down cleanly last time.
    unclean_start: bool,
    /// The consumer-group coordinator.
    pub groups: crate::group::Coordinator,
}

impl Broker {
    /// Opens the data directories and the metadata file.
    pub fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        if config.zookeeper.is_some() {
            // spec: CLU-30 — the ZooKeeper cache replaces the metadata
            // file and is the replicas' link to the rest of the cluster.
            let zk = ZkCluster::new(Arc::new(config.clone()));
            let link: Arc<dyn crate::cluster::link::ClusterLink> = zk.clone();
            return Self::open_inner(config, Some(zk), link);
        }
        let link = Arc::new(crate::cluster::link::SoloLink::new(
            gregor_core::ids::BrokerId(config.broker_id),
        ));
        Self::open_with_link(config, link)
    }

    /// Opens the broker with topics from the embedded metadata file and
    /// replica roles from `link`. Every partition first leads alone (the
    /// single-node mode, spec: REP-60); a backend with other brokers then
    /// applies its own records through `Partitions::apply_state`.
    pub fn open_with_link(
        config: BrokerConfig,
        link: Arc<dyn crate::cluster::link::ClusterLink>,
    ) -> Result<Self, BrokerError> {
        Self::open_inner(config, None, link)
    }

    fn open_inner(
        config: BrokerConfig,
        zk: Option<Arc<ZkCluster>>,
        link: Arc<dyn crate::cluster::link::ClusterLink>,
    ) -> Result<Self, BrokerError> {
        for dir in &config.log_dirs {
            std::fs::create_dir_all(dir).map_err(|source| BrokerError::LogDir {
                path: dir.clone(),
                source,
            })?;
        }
        let unclean_start = config.log_dirs.iter().any(|d| {
            let has_logs = std::fs::read_dir(d).is_ok_and(|mut it| {
                it.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir())))
            });
            has_logs
                && !d
                    .join(crate::storage::manager::CLEAN_SHUTDOWN_FILE)
                    .exists()
        });
        let (metadata, partitions) = if let Some(zk) = zk {
            // Logs follow the partition states the cache hands over.
            (Metadata::ZooKeeper(zk), Partitions::open(&config, link)?)
        } else {
            let metadata = EmbeddedMetadata::open(&config.log_dirs[0], config.broker_id)?;
            let partitions = Partitions::open(&config, link)?;
            // spec: STO-54 — each topic's overrides before any log is used.
            for (name, t) in &metadata.image().topics {
                partitions.set_topic_config(name, &t.configs);
            }
            reconcile(&metadata, &partitions)?;
            for tp in partitions.held() {
                partitions.lead_alone(&tp)?;
            }
            (Metadata::Embedded(metadata), partitions)
        };
        let groups = crate::group::Coordinator::open(&config, &metadata, &partitions)?;
        let advertised = config
            .advertised_listeners
            .iter()
            .map(|listener| {
                let host = match listener.host.as_str() {
                    "" | "0.0.0.0" | "::" => {
                        tracing::warn!(
                            listener = %listener.name,
                            "listener binds every interface; advertising 127.0.0.1 (set advertised.listeners for remote clients)"
                        );
                        "127.0.0.1".to_owned()
                    }
                    h => h.to_owned(),
                };
                (
                    listener.name.clone(),
                    Advertised {
                        host,
                        port: i32::from(listener.port),
                    },
                )
            })
            .collect();
        Ok(Self {
            config,
            metadata,
            partitions,
            advertised: Mutex::new(advertised),
            producer_ids: tokio::sync::Mutex::new((0, -1)),
            unclean_start,
            groups,
        })
    }

    /// The address of the first advertised listener.
    pub fn advertised(&self) -> Advertised {
        self.advertised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map(|(_, a)| a.clone())
            .unwrap_or(Advertised {
                host: "127.0.0.1".into(),
                port: 0,
            })
    }

    /// The address announced on listener `name` (spec: CLU-31); the first
    /// listener's when `name` is unknown.
    pub fn advertised_on(&self, name: &str) -> Advertised {
        let all = self.advertised.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .find(|(n, _)| n == name)
            .or(all.first())
            .map(|(_, a)| a.clone())
            .unwrap_or(Advertised {
                host: "127.0.0.1".into(),
                port: 0,
            })
    }

    /// Every advertised listener as (name, host, port).
    pub fn advertised_listeners(&self) -> Vec<(String, String, u16)> {
        self.advertised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, a)| (n.clone(), a.host.clone(), a.port as u16))
            .collect()
    }

    /// Records the port actually bound when the first listener's
    /// configured one was 0.
    pub fn bound_port(&self, port: u16) {
        let name = self.config.listeners[0].name.clone();
        self.bound_port_of(&name, port);
    }

    /// Records the port listener `name` actually bound when the
    /// configured one was 0.
    pub fn bound_port_of(&self, name: &str, port: u16) {
        let mut all = self.advertised.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, a)) = all.iter_mut().find(|(n, _)| n == name)
            && a.port == 0
        {
            a.port = i32::from(port);
        }
    }

    /// Starts ZooKeeper mode once every listener is bound: registers this
    /// broker and fills the cache (spec: CLU-4). Nothing in embedded mode.
    pub async fn start_cluster(self: &Arc<Self>) -> Result<(), ClusterError> {
        if let Some(zk) = self.metadata.zk() {
            // Every ZooKeeper session of this broker campaigns for the
            // controller role (spec: CLU-60).
            zk.set_default_controller(Arc::new(|client, config, broker_id, stop| {
                Box::pin(crate::controller::run(
                    client,
                    crate::controller::ControllerContext::new(config, broker_id, stop),
                ))
            }));
            zk.start(self, self.advertised_listeners(), self.unclean_start)
                .await?;
        }
        Ok(())
    }

    /// In ZooKeeper mode with `controlled.shutdown.enable`, asks the
    /// controller to move this broker's leaderships to other in-sync
    /// replicas and waits until none is left or the retries run out
    /// (spec: CLU-85, CLU-87).
    pub async fn controlled_shutdown(&self) {
        let Some(zk) = self.metadata.zk() else {
            return;
        };
        if !self.config.controlled_shutdown_enable {
            return;
        }
        let me = gregor_core::ids::BrokerId(self.config.broker_id);
        let timeout = crate::controller::controlled_shutdown_timeout(&self.config);
        let client = match zk.connected_client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "controlled shutdown skipped: no ZooKeeper session");
                return;
            }
        };
        match crate::controller::controlled_shutdown(&client, me, timeout).await {
            Ok(()) => tracing::info!("controlled shutdown: no partition is led here any more"),
            Err(e) => tracing::warn!(error = %e, "controlled shutdown incomplete; stopping anyway"),
        }
    }

    /// Ends the ZooKeeper session, if any (spec: CLU-10).
    pub async fn stop_cluster(&self) {
        if let Some(zk) = self.metadata.zk() {
            zk.stop().await;
        }
    }

    fn zk_topic_request(&self, mut req: NewTopic) -> Result<NewTopic, TopicError> {
        // spec: CLU-27 — the offsets topic gets
        // offsets.topic.replication.factor replicas, and is not created
        // while fewer brokers are alive, as in Kafka.
        if req.name == crate::group::OFFSETS_TOPIC {
            let rf = self.config.offsets_topic_replication_factor;
            let live = self.metadata.live_brokers().len();
            if (rf as usize) > live {
                return Err(TopicError::InvalidReplicationFactor(format!(
                    "offsets.topic.replication.factor {rf} needs more brokers than the {live} alive"
                )));
            }
            req.replication_factor = rf;
        }
        Ok(req)
    }

    /// Creates a topic in either mode; in ZooKeeper mode waits up to
    /// `timeout` for the controller to elect every leader.
    pub async fn create_topic_async(
        &self,
        req: NewTopic,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        match self.metadata.zk() {
            Some(zk) => {
                let req = self.zk_topic_request(req)?;
                zk.create_topic(req, validate_only, timeout).await
            }
            None => self.create_topic(req, validate_only),
        }
    }

    /// Deletes a topic in either mode.
    pub async fn delete_topic_async(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        match self.metadata.zk() {
            Some(zk) => zk.delete_topic(name, timeout).await,
            None => self.delete_topic(name),
        }
    }

    /// Replaces a topic's config overrides in either mode; the topic's logs
    /// follow (spec: PRO-27, STO-54).
    pub async fn set_topic_configs_async(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<(), TopicError> {
        match &self.metadata {
            Metadata::ZooKeeper(zk) => {
                zk.set_topic_configs(name, configs, validate_only, timeout)
                    .await
            }
            Metadata::Embedded(m) => {
                let meta = m.set_topic_configs(name, configs, validate_only)?;
                if !validate_only {
                    self.partitions.set_topic_config(name, &meta.configs);
                }
                Ok(())
            }
        }
    }

    /// Grows a topic in either mode.
    pub async fn create_partitions_async(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        match self.metadata.zk() {
            Some(zk) => {
                zk.create_partitions(name, count, validate_only, timeout)
                    .await
            }
            None => self.create_partitions(name, count, validate_only),
        }
    }

    /// Hands out a producer id never given before (spec: PRO-82); in
    /// ZooKeeper mode from blocks claimed cluster-wide (spec: CLU-28).
    pub async fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        let Some(zk) = self.metadata.zk() else {
            return match &self.metadata {
                Metadata::Embedded(m) => m.allocate_producer_id(),
                Metadata::ZooKeeper(_) => Err(TopicError::Storage("no metadata".into())),
            };
        };
        let mut block = self.producer_ids.lock().await;
        if block.0 > block.1 {
            *block = zk.claim_producer_id_block().await?;
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Creates a topic: metadata first, then one log per partition.
    pub fn create_topic(
        &self,
        req: NewTopic,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        let name = req.name.clone();
        let embedded = match &self.metadata {
            Metadata::Embedded(m) => m,
            Metadata::ZooKeeper(zk) => {
                // Called from blocking code (the group coordinator).
                let req = self.zk_topic_request(req)?;
                // Kafka answers COORDINATOR_NOT_AVAILABLE right after
                // creating the offsets topic; a short wait saves a retry.
                let timeout = Duration::from_secs(1);
                return zk
                    .block_on(zk.create_topic(req, validate_only, timeout))
                    .map_err(|e| TopicError::Storage(e.to_string()))?;
            }
        };
        let meta = embedded.create_topic(&self.config, req, validate_only)?;
        if !validate_only {
            self.partitions.set_topic_config(&name, &meta.configs);
            self.ensure_logs(&name, 0, meta.partitions)?;
        }
        Ok(meta)
    }

    /// Deletes a topic: metadata first, then its logs and files.
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, TopicError> {
        let Some(embedded) = self.metadata.embedded() else {
            return Err(TopicError::Storage(
                "deletion in ZooKeeper mode goes through the controller".into(),
            ));
        };
        let meta = embedded.delete_topic(&self.config, name)?;
        for p in 0..meta.partitions {
            self.partitions
                .remove(&TopicPartition::new(name, p))
                .map_err(|e| TopicError::Storage(e.to_string()))?;
        }
        Ok(meta)
    }

    /// Grows a topic and creates the new partitions' logs.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        let Some(embedded) = self.metadata.embedded() else {
            return Err(TopicError::Storage(
                "partitions in ZooKeeper mode are added through the controller".into(),
            ));
        };
        let before = embedded
            .image()
            .topics
            .get(name)
            .map_or(0, |t| t.partitions);
        let meta = embedded.create_partitions(name, count, validate_only)?;
        if !validate_only {
            self.ensure_logs(name, before, meta.partitions)?;
        }
        Ok(meta)
    }

    fn ensure_logs(&self, name: &str, from: i32, to: i32) -> Result<(), TopicError> {
        for p in from..to {
            self.partitions
                .lead_alone(&TopicPartition::new(name, p))
                .map_err(|e| TopicError::Storage(e.to_string()))?;
        }
        Ok(())
    }

    /// Runs retention, flushes and checkpoints on their intervals until the
    /// broker shuts down.
    pub async fn maintenance(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        const TICK: Duration = Duration::from_secs(1);
        let retention_every =
            Duration::from_millis(self.config.log_retention_check_interval_ms.max(1) as u64);
        let checkpoint_every = Duration::from_millis(
            self.config
                .raw("log.flush.offset.checkpoint.interval.ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(60_000)
                .max(1),
        );
        tokio::spawn(crate::replication::run(self.clone(), stop.clone()));
        let start = tokio::time::Instant::now();
        let (mut last_retention, mut last_checkpoint) = (start, start);
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let now = tokio::time::Instant::now();
            let retention_due = now - last_retention >= retention_every;
            let checkpoint_due = now - last_checkpoint >= checkpoint_every;
            if retention_due {
                last_retention = now;
            }
            if checkpoint_due {
                last_checkpoint = now;
            }
            let b = self.clone();
            let res = tokio::task::spawn_blocking(move || {
                b.partitions.maintain(retention_due, checkpoint_due)
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "log maintenance failed"),
                Err(e) => tracing::error!(error = %e, "log maintenance task failed"),
            }
        }
    }

    /// Flushes every log, writes checkpoints and the clean-shutdown marker
    /// (spec: PRO-30). Metadata changes are already durable when acknowledged.
    pub fn shutdown(&self) {
        match self.partitions.shutdown() {
            Ok(()) => tracing::info!(
                broker_id = self.config.broker_id,
                "logs flushed, clean shutdown recorded"
            ),
            Err(e) => tracing::error!(error = %e, "clean shutdown of the logs failed"),
        }
    }
}

/// Makes the logs match the metadata after a crash between the two: logs of
/// partitions the metadata lacks are deleted, missing logs are created
/// (spec: PRO-63).
fn reconcile(metadata: &EmbeddedMetadata, partitions: &Partitions) -> Result<(), StorageError> {
    let image = metadata.image();
    let wanted: BTreeSet<TopicPartition> = image
        .topics
        .iter()
        .flat_map(|(t, m)| (0..m.partitions).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    for tp in partitions.held() {
        if !wanted.contains(&tp) {
            tracing::warn!(partition = %tp, "log of a deleted partition; removing");
            partitions.remove(&tp)?;
        }
    }
    for tp in &wanted {
        partitions.ensure(tp)?;
    }
    Ok(())
}
