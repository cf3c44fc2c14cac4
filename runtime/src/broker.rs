//! The broker's shared state: configuration, cluster metadata and the
//! address it announces to clients. One [`Broker`] is shared (behind an
//! `Arc`) by every connection task.

use std::sync::Mutex;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gregor_core::ids::TopicPartition;

use crate::cluster::{EmbeddedMetadata, NewTopic, TopicError, TopicMeta};
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
    /// ZooKeeper mode is not available in this build of the broker.
    #[error("zookeeper.connect is set, but only the embedded single-node mode is available")]
    ZooKeeperUnsupported,
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
    /// Topics and partitions (embedded mode).
    pub metadata: EmbeddedMetadata,
    /// The partition logs.
    pub partitions: Partitions,
    /// Set once the listener is bound (a configured port 0 becomes the real one).
    advertised: Mutex<Advertised>,
    /// The consumer-group coordinator.
    pub groups: crate::group::Coordinator,
}

impl Broker {
    /// Opens the data directories and the metadata file.
    pub fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
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
        if config.zookeeper_connect.is_some() {
            return Err(BrokerError::ZooKeeperUnsupported);
        }
        for dir in &config.log_dirs {
            std::fs::create_dir_all(dir).map_err(|source| BrokerError::LogDir {
                path: dir.clone(),
                source,
            })?;
        }
        let metadata = EmbeddedMetadata::open(&config.log_dirs[0], config.broker_id)?;
        let partitions = Partitions::open(&config, link)?;
        reconcile(&metadata, &partitions)?;
        for tp in partitions.held() {
            partitions.lead_alone(&tp)?;
        }
        let groups = crate::group::Coordinator::open(&config, &metadata, &partitions)?;
        let listener = &config.advertised_listeners[0];
        let host = match listener.host.as_str() {
            "" | "0.0.0.0" | "::" => {
                tracing::warn!(
                    "listener binds every interface; advertising 127.0.0.1 (set advertised.listeners for remote clients)"
                );
                "127.0.0.1".to_owned()
            }
            h => h.to_owned(),
        };
        let advertised = Advertised {
            host,
            port: i32::from(listener.port),
        };
        Ok(Self {
            config,
            metadata,
            partitions,
            advertised: Mutex::new(advertised),
            groups,
        })
    }

    /// The address announced in Metadata responses.
    pub fn advertised(&self) -> Advertised {
        self.advertised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the port actually bound when the configured one was 0.
    pub fn bound_port(&self, port: u16) {
        let mut a = self.advertised.lock().unwrap_or_else(|e| e.into_inner());
        if a.port == 0 {
            a.port = i32::from(port);
        }
    }

    /// Creates a topic: metadata first, then one log per partition.
    pub fn create_topic(
        &self,
        req: NewTopic,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        let name = req.name.clone();
        let meta = self
            .metadata
            .create_topic(&self.config, req, validate_only)?;
        if !validate_only {
            self.ensure_logs(&name, 0, meta.partitions)?;
        }
        Ok(meta)
    }

    /// Deletes a topic: metadata first, then its logs and files.
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, TopicError> {
        let meta = self.metadata.delete_topic(&self.config, name)?;
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
        let before = self
            .metadata
            .image()
            .topics
            .get(name)
            .map_or(0, |t| t.partitions);
        let meta = self
            .metadata
            .create_partitions(name, count, validate_only)?;
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
