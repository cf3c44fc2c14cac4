//! The broker's shared state: configuration, cluster metadata and the
//! address it announces to clients. One [`Broker`] is shared (behind an
//! `Arc`) by every connection task.

use std::sync::Mutex;

use crate::cluster::EmbeddedMetadata;
use crate::codec::CodecError;
use crate::config::BrokerConfig;

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
    /// Set once the listener is bound (a configured port 0 becomes the real one).
    advertised: Mutex<Advertised>,
}

impl Broker {
    /// Opens the data directories and the metadata file.
    pub fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
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
            advertised: Mutex::new(advertised),
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

    /// Flushes state before exit. Metadata changes are already durable when
    /// they are acknowledged, so this only records the clean shutdown.
    pub fn shutdown(&self) {
        tracing::info!(broker_id = self.config.broker_id, "broker state flushed");
    }
}
