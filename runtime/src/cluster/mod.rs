//! Cluster metadata: which topics exist, their partition counts, replication
//! factors and topic-level configs.
//!
//! In embedded (single-broker) mode the metadata lives in one local file,
//! `<first log dir>/cluster-metadata`, rewritten atomically through
//! [`crate::codec`] on every change (spec: PRO-61, PRO-62). Every change is
//! validated here with Kafka's rules before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub mod link;
pub mod zk;
pub mod znodes;

use crate::codec::{self, CodecError};
use crate::config::{self, BrokerConfig};

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Largest partition count one topic may have; keeps a request from asking
/// the broker to create millions of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Name of the metadata file inside the first log directory.
pub const METADATA_FILE: &str = "cluster-metadata";

/// Internal topics whose names start with `__`; reported with `is_internal`.
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Why a topic operation was refused. Each variant maps to one Kafka error
/// code in [`crate::protocol::error`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    /// The name breaks Kafka's topic name rules.
    #[error("{0}")]
    InvalidName(String),
    /// A topic with this name already exists.
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    /// No topic with this name exists.
    #[error("This server does not host this topic-partition.")]
    Unknown(String),
    /// The partition count is not acceptable.
    #[error("{0}")]
    InvalidPartitions(String),
    /// The replication factor is not acceptable.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment is not acceptable.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A topic config key or value is not acceptable.
    #[error("{0}")]
    InvalidConfig(String),
    /// Topic deletion is disabled by `delete.topic.enable=false`.
    #[error("Topic deletion is disabled.")]
    DeletionDisabled,
    /// The metadata file could not be written.
    #[error("metadata store: {0}")]
    Storage(String),
    /// The change was made but did not complete within the request's
    /// timeout (ZooKeeper mode: the controller has not acted yet).
    #[error("{0}")]
    TimedOut(String),
}

/// One topic as recorded in the metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic id (Kafka's UUID), random at creation.
    pub id: [u8; 16],
    /// Number of partitions, numbered `0..partitions`.
    pub partitions: i32,
    /// Replication factor (always 1 in embedded mode).
    pub replication_factor: i16,
    /// Topic-level config overrides, validated against [`config::TOPIC_KEYS`].
    pub configs: BTreeMap<String, String>,
}

/// The whole metadata image, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    /// Cluster id reported in Metadata responses; fixed at first start.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next producer id InitProducerId hands out.
    pub next_producer_id: i64,
}

/// A request to create one topic, after version defaults are applied.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count; -1 means `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 means `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual assignment: partition index → broker ids (empty: automatic).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Topic-level configs.
    pub configs: BTreeMap<String, String>,
}

/// Checks a CreateTopics manual replica assignment with Kafka's rules and
/// messages: no partition count or replication factor beside it,
/// partitions numbered 0.., the same number of distinct replicas each, every
/// broker known (`known`). Returns the partition count and replication
/// factor.
pub fn check_manual_assignment(
    req: &NewTopic,
    known: impl Fn(i32) -> bool,
) -> Result<(i32, i16), TopicError> {
    if req.partitions != -1 || req.replication_factor != -1 {
        return Err(TopicError::InvalidReplicaAssignment(
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        ));
    }
    let n = req.assignments.len() as i32;
    let rf = req.assignments.values().next().map_or(0, Vec::len);
    for (p, brokers) in &req.assignments {
        if *p < 0 || *p >= n {
            return Err(TopicError::InvalidReplicaAssignment(
                "Partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        if brokers.is_empty() || brokers.len() != rf {
            return Err(TopicError::InvalidReplicaAssignment(
                "All partitions should have the same number of replicas".into(),
            ));
        }
        let distinct: std::collections::BTreeSet<&i32> = brokers.iter().collect();
        if distinct.len() != brokers.len() {
            return Err(TopicError::InvalidReplicaAssignment(
                "Duplicate brokers not allowed in replica assignment".into(),
            ));
        }
        if let Some(b) = brokers.iter().find(|b| !known(**b)) {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "Unknown broker id {b} in replica assignment"
            )));
        }
    }
    Ok((n, i16::try_from(rf).unwrap_or(i16::MAX)))
}

/// Checks a topic name against Kafka's rules (spec: PRO-50).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidName(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidName(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicError::InvalidName(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(TopicError::InvalidName(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Kafka treats `.` and `_` as the same character in metric names, so two
/// topics that differ only there collide (spec: PRO-50).
pub(crate) fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// A fresh 16-byte id. Not cryptographic: unique enough to tell a deleted
/// topic from a re-created one with the same name.
pub(crate) fn fresh_id(seed: &str) -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(seed.as_bytes());
        h.write_u128(nanos);
        h.write_usize(i);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    if out == [0; 16] {
        out[0] = 1;
    }
    out
}

/// The broker's cluster metadata in either mode (spec: CLU-30): the
/// embedded file of a single-node broker, or the ZooKeeper cache. Both
/// serve the same [`ClusterImage`] to the data-plane handlers.
#[derive(Debug)]
pub enum Metadata {
    /// Single-node mode: the local metadata file.
    Embedded(EmbeddedMetadata),
    /// ZooKeeper mode.
    ZooKeeper(Arc<zk::ZkCluster>),
}

impl Metadata {
    /// The current topics and cluster id.
    pub fn image(&self) -> Arc<ClusterImage> {
        match self {
            Self::Embedded(m) => m.image(),
            Self::ZooKeeper(z) => z.image(),
        }
    }

    /// The ids of the live brokers.
    pub fn live_brokers(&self) -> Vec<i32> {
        match self {
            Self::Embedded(m) => m.live_brokers(),
            Self::ZooKeeper(z) => z.live_brokers(),
        }
    }

    /// The ZooKeeper backend, in ZooKeeper mode.
    pub fn zk(&self) -> Option<&Arc<zk::ZkCluster>> {
        match self {
            Self::Embedded(_) => None,
            Self::ZooKeeper(z) => Some(z),
        }
    }

    /// The metadata file, in embedded mode.
    pub fn embedded(&self) -> Option<&EmbeddedMetadata> {
        match self {
            Self::Embedded(m) => Some(m),
            Self::ZooKeeper(_) => None,
        }
    }
}

/// Embedded-mode metadata store: an in-memory image mirrored to one file.
#[derive(Debug)]
pub struct EmbeddedMetadata {
    path: PathBuf,
    broker_id: i32,
    image: Mutex<Arc<ClusterImage>>,
}

impl EmbeddedMetadata {
    /// Opens (or initialises) the metadata file in `dir`.
    pub fn open(dir: &Path, broker_id: i32) -> Result<Self, CodecError> {
        let path = dir.join(METADATA_FILE);
        let image = match codec::read_file::<ClusterImage>(&path)? {
            Some(image) => image,
            None => {
                let id = fresh_id("cluster");
                let image = ClusterImage {
                    cluster_id: cluster_id_text(&id),
                    topics: BTreeMap::new(),
                    next_producer_id: 0,
                };
                codec::write_atomic(&path, &image)?;
                image
            }
        };
        tracing::info!(path = %path.display(), topics = image.topics.len(), "metadata loaded");
        Ok(Self {
            path,
            broker_id,
            image: Mutex::new(Arc::new(image)),
        })
    }

    /// The current metadata image (cheap: shared, immutable).
    pub fn image(&self) -> Arc<ClusterImage> {
        self.lock().clone()
    }

    /// The broker ids currently alive (embedded mode: just this broker).
    pub fn live_brokers(&self) -> Vec<i32> {
        vec![self.broker_id]
    }

    fn lock(&self) -> MutexGuard<'_, Arc<ClusterImage>> {
        // A panic while holding the lock cannot leave a half-applied image:
        // images are replaced whole, so the poisoned value is still valid.
        self.image.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(
        &self,
        guard: &mut MutexGuard<'_, Arc<ClusterImage>>,
        next: ClusterImage,
    ) -> Result<(), TopicError> {
        codec::write_atomic(&self.path, &next).map_err(|e| TopicError::Storage(e.to_string()))?;
        **guard = Arc::new(next);
        Ok(())
    }

    /// Validates and (unless `validate_only`) creates a topic
    /// (spec: PRO-50, PRO-51, PRO-52).
    pub fn create_topic(
        &self,
        cfg: &BrokerConfig,
        req: NewTopic,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        validate_topic_name(&req.name)?;
        let mut guard = self.lock();
        if guard.topics.contains_key(&req.name) {
            return Err(TopicError::AlreadyExists(req.name));
        }
        let key = collision_key(&req.name);
        if let Some(other) = guard.topics.keys().find(|t| collision_key(t) == key) {
            return Err(TopicError::InvalidName(format!(
                "Topic '{}' collides with existing topic: {other}",
                req.name
            )));
        }
        let live = self.live_brokers();
        let (partitions, replication_factor) = if req.assignments.is_empty() {
            let partitions = if req.partitions == -1 {
                cfg.num_partitions
            } else {
                req.partitions
            };
            let rf = if req.replication_factor == -1 {
                cfg.default_replication_factor
            } else {
                req.replication_factor
            };
            if partitions <= 0 {
                return Err(TopicError::InvalidPartitions(
                    "Number of partitions must be larger than 0.".into(),
                ));
            }
            if rf <= 0 {
                return Err(TopicError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0.".into(),
                ));
            }
            if rf as usize > live.len() {
                return Err(TopicError::InvalidReplicationFactor(format!(
                    "Replication factor: {rf} larger than available brokers: {}.",
                    live.len()
                )));
            }
            (partitions, rf)
        } else {
            check_manual_assignment(&req, |b| live.contains(&b))?
        };
        if partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {partitions} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
            )));
        }
        validate_topic_configs(&req.configs)?;
        let meta = TopicMeta {
            id: fresh_id(&req.name),
            partitions,
            replication_factor,
            configs: req.configs,
        };
        if !validate_only {
            let mut next = (**guard).clone();
            next.topics.insert(req.name.clone(), meta.clone());
            self.commit(&mut guard, next)?;
            tracing::info!(topic = %req.name, partitions, "topic created");
        }
        Ok(meta)
    }

    /// Hands out a producer id never given before, even across restarts
    /// (spec: PRO-82).
    pub fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        let mut guard = self.lock();
        let id = guard.next_producer_id;
        let mut next = (**guard).clone();
        next.next_producer_id = id + 1;
        self.commit(&mut guard, next)?;
        Ok(id)
    }

    /// Deletes a topic from the metadata (spec: PRO-53).
    pub fn delete_topic(&self, cfg: &BrokerConfig, name: &str) -> Result<TopicMeta, TopicError> {
        if !cfg.delete_topic_enable {
            return Err(TopicError::DeletionDisabled);
        }
        let mut guard = self.lock();
        let Some(meta) = guard.topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_owned()));
        };
        let mut next = (**guard).clone();
        next.topics.remove(name);
        self.commit(&mut guard, next)?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(meta)
    }

    /// Replaces a topic's config overrides (spec: PRO-27).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        validate_topic_configs(&configs)?;
        let mut guard = self.lock();
        let Some(meta) = guard.topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_owned()));
        };
        let changed = TopicMeta { configs, ..meta };
        if !validate_only {
            let mut next = (**guard).clone();
            next.topics.insert(name.to_owned(), changed.clone());
            self.commit(&mut guard, next)?;
            tracing::info!(topic = %name, configs = ?changed.configs, "topic configs changed");
        }
        Ok(changed)
    }

    /// Grows a topic to `count` partitions (spec: PRO-54).
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        let mut guard = self.lock();
        let Some(meta) = guard.topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_owned()));
        };
        if count < meta.partitions {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {} partitions, which is higher than the requested {count}.",
                meta.partitions
            )));
        }
        if count == meta.partitions {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic already has {count} partitions."
            )));
        }
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {count} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
            )));
        }
        let grown = TopicMeta {
            partitions: count,
            ..meta
        };
        if !validate_only {
            let mut next = (**guard).clone();
            next.topics.insert(name.to_owned(), grown.clone());
            self.commit(&mut guard, next)?;
            tracing::info!(topic = %name, partitions = count, "partitions added");
        }
        Ok(grown)
    }
}

/// Validates topic-level configs against [`config::TOPIC_KEYS`].
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (k, v) in configs {
        let def = config::topic_key(k)
            .ok_or_else(|| TopicError::InvalidConfig(format!("Unknown topic config name: {k}")))?;
        config::validate(k, def.kind, v).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
    }
    Ok(())
}

/// Kafka renders cluster ids as URL-safe base64 of 16 bytes (22 characters).
pub(crate) fn cluster_id_text(id: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = u128::from_be_bytes(*id);
    let mut out = Vec::with_capacity(22);
    // 22 sextets cover 132 bits; the top 4 are zero padding.
    for _ in 0..22 {
        out.push(ALPHABET[(bits & 63) as usize]);
        bits >>= 6;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    // spec: PRO-50
    #[test]
    fn topic_name_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a b", "é", "a/b"] {
            assert!(
                matches!(validate_topic_name(bad), Err(TopicError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    // spec: PRO-51, PRO-52, PRO-62
    #[test]
    fn create_validate_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::default();
        let store = EmbeddedMetadata::open(dir.path(), 0).unwrap();
        let cluster_id = store.image().cluster_id.clone();
        assert_eq!(cluster_id.len(), 22);
        let t = store
            .create_topic(&cfg, new_topic("a.b", 3, 1), false)
            .unwrap();
        assert_eq!(t.partitions, 3);
        assert_eq!(
            store.create_topic(&cfg, new_topic("a.b", 1, 1), false),
            Err(TopicError::AlreadyExists("a.b".into()))
        );
        assert!(matches!(
            store.create_topic(&cfg, new_topic("a_b", 1, 1), false),
            Err(TopicError::InvalidName(_))
        ));
        assert!(matches!(
            store.create_topic(&cfg, new_topic("z", 0, 1), false),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(matches!(
            store.create_topic(&cfg, new_topic("z", 1, 2), false),
            Err(TopicError::InvalidReplicationFactor(_))
        ));
        let mut bad_cfg = new_topic("z", 1, 1);
        bad_cfg.configs.insert("retention.mss".into(), "1".into());
        assert!(matches!(
            store.create_topic(&cfg, bad_cfg, false),
            Err(TopicError::InvalidConfig(_))
        ));
        // Defaults (-1) come from the broker config; validate_only writes nothing.
        let d = store
            .create_topic(&cfg, new_topic("d", -1, -1), true)
            .unwrap();
        assert_eq!(d.partitions, cfg.num_partitions);
        assert!(!store.image().topics.contains_key("d"));
        store.create_partitions("a.b", 5, false).unwrap();
        assert!(store.create_partitions("a.b", 4, false).is_err());
        drop(store);

        let again = EmbeddedMetadata::open(dir.path(), 0).unwrap();
        let image = again.image();
        assert_eq!(image.cluster_id, cluster_id);
        assert_eq!(image.topics["a.b"].partitions, 5);
        again.delete_topic(&cfg, "a.b").unwrap();
        assert_eq!(
            again.delete_topic(&cfg, "a.b"),
            Err(TopicError::Unknown("a.b".into()))
        );
        drop(again);
        assert!(
            EmbeddedMetadata::open(dir.path(), 0)
                .unwrap()
                .image()
                .topics
                .is_empty()
        );
    }

    #[test]
    fn manual_assignment_rules() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::default();
        let store = EmbeddedMetadata::open(dir.path(), 0).unwrap();
        let mut t = new_topic("m", -1, -1);
        t.assignments = [(0, vec![0]), (1, vec![0])].into_iter().collect();
        assert_eq!(store.create_topic(&cfg, t, false).unwrap().partitions, 2);
        let mut t = new_topic("n", -1, -1);
        t.assignments = [(0, vec![7])].into_iter().collect();
        assert!(matches!(
            store.create_topic(&cfg, t, false),
            Err(TopicError::InvalidReplicaAssignment(_))
        ));
    }

    #[test]
    fn deletion_can_be_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::from_pairs([("delete.topic.enable", "false")]).unwrap();
        let store = EmbeddedMetadata::open(dir.path(), 0).unwrap();
        store
            .create_topic(&cfg, new_topic("x", 1, 1), false)
            .unwrap();
        assert_eq!(
            store.delete_topic(&cfg, "x"),
            Err(TopicError::DeletionDisabled)
        );
    }
}
