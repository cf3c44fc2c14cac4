//! The log manager: every partition log of a broker across its `log.dirs`
//! (spec: STO-72 … STO-79).
//!
//! ```text
//! <log.dir>/.lock                              held with File::try_lock
//! <log.dir>/meta.properties                    version=0, broker.id=N
//! <log.dir>/.gregor_cleanshutdown              present only after a clean shutdown
//! <log.dir>/recovery-point-offset-checkpoint
//! <log.dir>/replication-offset-checkpoint
//! <log.dir>/log-start-offset-checkpoint
//! <log.dir>/<topic>-<partition>/…              one Log each
//! <log.dir>/<topic>-<partition>/partition.metadata   version: 0, topic_id: …
//! <log.dir>/<topic>-<partition>.<n>-stray/…    set aside, never opened
//! ```
//!
//! Periodic work is exposed as plain methods taking `now_ms`
//! ([`LogManager::cleanup_logs`], [`LogManager::flush_logs`],
//! [`LogManager::checkpoint`]); the broker calls them from its timers.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions as FsOpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use gregor_core::ids::{Offset, TopicPartition};
use tracing::{info, warn};

use super::checkpoint::{
    self, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
};
use super::config::LogConfig;
use super::error::StorageError;
use super::log::{Log, OpenOptions};

/// The lock file in every log directory.
pub const LOCK_FILE: &str = ".lock";
/// The broker identity file in every log directory.
pub const META_PROPERTIES: &str = "meta.properties";
/// The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_FILE: &str = ".gregor_cleanshutdown";
/// The file naming the topic id a partition log belongs to.
pub const PARTITION_METADATA: &str = "partition.metadata";
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// One log directory, locked for this broker's lifetime.
#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    /// Holds the exclusive lock; released when dropped.
    _lock: File,
}

#[derive(Debug)]
struct Managed {
    dir: usize,
    log: Log,
}

/// All partition logs of one broker (see the module docs).
#[derive(Debug)]
pub struct LogManager {
    broker_id: i32,
    config: LogConfig,
    dirs: Vec<LogDir>,
    logs: BTreeMap<TopicPartition, Managed>,
    /// High watermarks to checkpoint, set by the replication layer.
    high_watermarks: BTreeMap<TopicPartition, i64>,
}

/// One log directory as [`LogManager::dir_usage`] reports it.
#[derive(Debug, Clone)]
pub struct DirUsage {
    /// The directory.
    pub path: PathBuf,
    /// (partition, bytes of its segment files, log end offset).
    pub partitions: Vec<(TopicPartition, u64, i64)>,
    /// Size of the file system holding it.
    pub total_bytes: Option<u64>,
    /// Bytes an unprivileged writer may still use there.
    pub usable_bytes: Option<u64>,
}

/// (total, available) bytes of the file system holding `path`.
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by the call
    // before it is read, only when the call succeeds.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    let frsize = st.f_frsize as u64;
    Some((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

/// Whether `topic` is a legal Kafka topic name.
#[must_use]
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_NAME_LEN
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parses a partition directory name `<topic>-<partition>`.
#[must_use]
pub fn parse_partition_dir(name: &str) -> Option<TopicPartition> {
    let (topic, p) = name.rsplit_once('-')?;
    let p: i32 = p.parse().ok().filter(|p| *p >= 0)?;
    if !p.to_string().eq(name.rsplit_once('-')?.1) || !valid_topic_name(topic) {
        return None;
    }
    Some(TopicPartition::new(topic, p))
}

fn lock_dir(path: &Path) -> Result<File, StorageError> {
    fs::create_dir_all(path).map_err(StorageError::io("create", path))?;
    let lock_path = path.join(LOCK_FILE);
    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(StorageError::io("open", &lock_path))?;
    // spec: STO-73
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(StorageError::DirLocked(path.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(StorageError::io("lock", &lock_path)(e)),
    }
}

/// The `cluster.id` recorded in a log directory's `meta.properties`.
fn meta_cluster_id(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(META_PROPERTIES)).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "cluster.id")
            .then(|| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// Writes `meta.properties` (with `cluster.id` when given), durably:
/// temporary file, fsync, rename, directory fsync.
fn write_meta_properties(
    dir: &Path,
    broker_id: i32,
    cluster_id: Option<&str>,
) -> Result<(), StorageError> {
    let path = dir.join(META_PROPERTIES);
    let mut body = format!("#\n# Written by the Gregor broker\nversion=0\nbroker.id={broker_id}\n");
    if let Some(id) = cluster_id {
        body.push_str(&format!("cluster.id={id}\n"));
    }
    let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
    fs::write(&tmp, body).map_err(StorageError::io("write", &tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StorageError::io("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(StorageError::io("rename", &path))?;
    checkpoint::sync_dir(dir).map_err(StorageError::io("fsync", dir))
}

/// Checks or writes `meta.properties` (spec: STO-74).
fn check_meta_properties(dir: &Path, broker_id: i32) -> Result<(), StorageError> {
    let path = dir.join(META_PROPERTIES);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return write_meta_properties(dir, broker_id, None);
        }
        Err(e) => return Err(StorageError::io("read", &path)(e)),
    };
    let bad = |reason: String| StorageError::MetaProperties {
        path: path.clone(),
        reason,
    };
    let mut version = None;
    let mut id = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(bad(format!("line without '=': {line:?}")));
        };
        match k.trim() {
            "version" => version = Some(v.trim().to_string()),
            "broker.id" => {
                id = Some(
                    v.trim()
                        .parse::<i32>()
                        .map_err(|_| bad(format!("invalid broker.id {v:?}")))?,
                );
            }
            _ => {}
        }
    }
    if version.as_deref() != Some("0") {
        return Err(bad(format!("unsupported version {version:?}")));
    }
    match id {
        Some(found) if found != broker_id => Err(StorageError::BrokerIdMismatch {
            path: path.clone(),
            found,
            expected: broker_id,
        }),
        Some(_) => Ok(()),
        None => Err(bad("missing broker.id".into())),
    }
}

fn offsets_map(path: &Path) -> Result<BTreeMap<TopicPartition, i64>, StorageError> {
    Ok(checkpoint::read_offsets(path)?
        .into_iter()
        .map(|(tp, o)| (tp, o.get()))
        .collect())
}

impl LogManager {
    /// Locks and loads every log directory: checks `meta.properties`,
    /// reads the checkpoints, opens every `<topic>-<partition>` directory
    /// (recovering it if the directory was not shut down cleanly) and then
    /// removes the clean-shutdown marker (spec: STO-72 … STO-76).
    pub fn open(
        dirs: &[PathBuf],
        broker_id: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        config.validate()?;
        let mut locked = Vec::with_capacity(dirs.len());
        for d in dirs {
            let lock = lock_dir(d)?;
            check_meta_properties(d, broker_id)?;
            locked.push(LogDir {
                path: d.clone(),
                _lock: lock,
            });
        }
        let mut mgr = Self {
            broker_id,
            config,
            dirs: locked,
            logs: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
        };
        for i in 0..mgr.dirs.len() {
            mgr.load_dir(i, now_ms)?;
        }
        for d in &mgr.dirs {
            let marker = d.path.join(CLEAN_SHUTDOWN_FILE);
            if marker.exists() {
                fs::remove_file(&marker).map_err(StorageError::io("delete", &marker))?;
            }
        }
        // Checkpoint the recovered state so the next start begins from it.
        mgr.checkpoint()?;
        info!(
            broker = broker_id,
            dirs = mgr.dirs.len(),
            partitions = mgr.logs.len(),
            "logs loaded"
        );
        Ok(mgr)
    }

    fn load_dir(&mut self, i: usize, now_ms: i64) -> Result<(), StorageError> {
        let root = self.dirs[i].path.clone();
        let clean = root.join(CLEAN_SHUTDOWN_FILE).exists();
        let recovery = offsets_map(&root.join(RECOVERY_POINT_CHECKPOINT))?;
        let starts = offsets_map(&root.join(LOG_START_OFFSET_CHECKPOINT))?;
        let hws = offsets_map(&root.join(REPLICATION_OFFSET_CHECKPOINT))?;
        let mut entries: Vec<_> = fs::read_dir(&root)
            .map_err(StorageError::io("list", &root))?
            .collect::<Result<_, _>>()
            .map_err(StorageError::io("list", &root))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for e in entries {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let name = e.file_name();
            let Some(tp) = name.to_str().and_then(parse_partition_dir) else {
                warn!(dir = %path.display(), "not a partition directory; ignored");
                continue;
            };
            if self.logs.contains_key(&tp) {
                return Err(StorageError::PartitionExists(format!(
                    "{tp} (also in {})",
                    root.display()
                )));
            }
            let opts = OpenOptions {
                recovery_point: recovery.get(&tp).copied(),
                log_start: starts.get(&tp).copied(),
                clean_shutdown: clean,
                now_ms,
            };
            let log = Log::open(&path, self.config.clone(), opts)?;
            if let Some(&hw) = hws.get(&tp) {
                self.high_watermarks.insert(tp.clone(), hw);
            }
            self.logs.insert(tp, Managed { dir: i, log });
        }
        Ok(())
    }

    /// The cluster these log directories belong to, as recorded in their
    /// `meta.properties` (spec: CLU-37): `Ok(None)` when none records one,
    /// an error when two directories disagree.
    pub fn cluster_id(&self) -> Result<Option<String>, StorageError> {
        let mut found: Option<(String, &Path)> = None;
        for d in &self.dirs {
            if let Some(id) = meta_cluster_id(&d.path) {
                match &found {
                    Some((other, at)) if *other != id => {
                        return Err(StorageError::MetaProperties {
                            path: d.path.join(META_PROPERTIES),
                            reason: format!(
                                "cluster.id {id} differs from cluster.id {other} in {}",
                                at.display()
                            ),
                        });
                    }
                    Some(_) => {}
                    None => found = Some((id, &d.path)),
                }
            }
        }
        Ok(found.map(|(id, _)| id))
    }

    /// Records `cluster_id` in every log directory's `meta.properties`
    /// that lacks it.
    pub fn record_cluster_id(&self, cluster_id: &str) -> Result<(), StorageError> {
        for d in &self.dirs {
            if meta_cluster_id(&d.path).is_none() {
                write_meta_properties(&d.path, self.broker_id, Some(cluster_id))?;
            }
        }
        Ok(())
    }

    /// This broker's id.
    #[must_use]
    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    /// The log directories, in configuration order.
    #[must_use]
    pub fn log_dirs(&self) -> Vec<&Path> {
        self.dirs.iter().map(|d| d.path.as_path()).collect()
    }

    /// The partitions held, sorted.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.logs.keys()
    }

    /// The log of `tp`.
    #[must_use]
    pub fn get(&self, tp: &TopicPartition) -> Option<&Log> {
        self.logs.get(tp).map(|m| &m.log)
    }

    /// The log of `tp`, for writing.
    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut Log> {
        self.logs.get_mut(tp).map(|m| &mut m.log)
    }

    /// Creates the log of `tp` in the directory holding the fewest
    /// partitions (spec: STO-72).
    pub fn create(&mut self, tp: &TopicPartition, now_ms: i64) -> Result<&mut Log, StorageError> {
        let config = self.config.clone();
        self.create_with(tp, config, now_ms)
    }

    /// Creates the log of `tp` with `config` (its topic's overrides
    /// applied, STO-54) in the directory holding the fewest partitions.
    pub fn create_with(
        &mut self,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<&mut Log, StorageError> {
        if self.logs.contains_key(tp) {
            return Err(StorageError::PartitionExists(tp.to_string()));
        }
        if !valid_topic_name(&tp.topic) || tp.partition < 0 {
            return Err(StorageError::BadPartitionDir(PathBuf::from(tp.to_string())));
        }
        let mut counts = vec![0usize; self.dirs.len()];
        for m in self.logs.values() {
            counts[m.dir] += 1;
        }
        let dir = (0..self.dirs.len())
            .min_by_key(|&i| (counts[i], i))
            .unwrap_or(0);
        let path = self.dirs[dir].path.join(tp.to_string());
        let opts = OpenOptions {
            recovery_point: None,
            log_start: None,
            clean_shutdown: true,
            now_ms,
        };
        let log = Log::open(&path, config, opts)?;
        checkpoint::sync_dir(&self.dirs[dir].path)
            .map_err(StorageError::io("fsync", &self.dirs[dir].path))?;
        info!(partition = %tp, dir = %path.display(), "created log");
        Ok(&mut self
            .logs
            .entry(tp.clone())
            .or_insert(Managed { dir, log })
            .log)
    }

    /// The log of `tp`, created if missing.
    pub fn get_or_create(
        &mut self,
        tp: &TopicPartition,
        now_ms: i64,
    ) -> Result<&mut Log, StorageError> {
        let config = self.config.clone();
        self.get_or_create_with(tp, config, now_ms)
    }

    /// The log of `tp`, created with `config` if missing.
    pub fn get_or_create_with(
        &mut self,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<&mut Log, StorageError> {
        if !self.logs.contains_key(tp) {
            self.create_with(tp, config, now_ms)?;
        }
        self.get_mut(tp)
            .ok_or_else(|| StorageError::UnknownPartition(tp.to_string()))
    }

    /// Deletes the log of `tp` and its files.
    pub fn delete(&mut self, tp: &TopicPartition) -> Result<(), StorageError> {
        let m = self
            .logs
            .remove(tp)
            .ok_or_else(|| StorageError::UnknownPartition(tp.to_string()))?;
        self.high_watermarks.remove(tp);
        m.log.delete()?;
        info!(partition = %tp, "deleted log");
        self.checkpoint()
    }

    /// Sets the log of `tp` aside: closes it and renames its directory to
    /// `<topic>-<partition>.<n>-stray`, which is never opened again, so an
    /// operator can inspect or delete it (spec: CLU-36). Returns the new
    /// path.
    pub fn set_aside(&mut self, tp: &TopicPartition, now_ms: i64) -> Result<PathBuf, StorageError> {
        let m = self
            .logs
            .remove(tp)
            .ok_or_else(|| StorageError::UnknownPartition(tp.to_string()))?;
        self.high_watermarks.remove(tp);
        let dir = m.log.dir().to_path_buf();
        m.log.close(now_ms)?;
        let root = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut n = now_ms;
        let to = loop {
            let to = root.join(format!("{tp}.{n}-stray"));
            if !to.exists() {
                break to;
            }
            n += 1;
        };
        fs::rename(&dir, &to).map_err(StorageError::io("rename", &dir))?;
        checkpoint::sync_dir(&root).map_err(StorageError::io("fsync", &root))?;
        warn!(partition = %tp, dir = %to.display(), "log set aside");
        self.checkpoint()?;
        Ok(to)
    }

    /// The topic id recorded in the log directory of `tp`, if any
    /// (`partition.metadata`, spec: CLU-35).
    #[must_use]
    pub fn topic_id(&self, tp: &TopicPartition) -> Option<String> {
        let path = self.logs.get(tp)?.log.dir().join(PARTITION_METADATA);
        let text = fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("topic_id:")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    }

    /// Records the topic id of `tp` in its log directory, durably.
    pub fn set_topic_id(&mut self, tp: &TopicPartition, id: &str) -> Result<(), StorageError> {
        let dir = self
            .logs
            .get(tp)
            .ok_or_else(|| StorageError::UnknownPartition(tp.to_string()))?
            .log
            .dir()
            .to_path_buf();
        let path = dir.join(PARTITION_METADATA);
        let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
        fs::write(&tmp, format!("version: 0\ntopic_id: {id}\n"))
            .map_err(StorageError::io("write", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(StorageError::io("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(StorageError::io("rename", &path))?;
        checkpoint::sync_dir(&dir).map_err(StorageError::io("fsync", &dir))?;
        Ok(())
    }

    /// Records the high watermark of `tp` for `replication-offset-checkpoint`.
    pub fn set_high_watermark(&mut self, tp: &TopicPartition, hw: i64) {
        self.high_watermarks.insert(tp.clone(), hw);
    }

    /// The high watermark of `tp` as last set or checkpointed.
    #[must_use]
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(tp).copied()
    }

    /// Retention for every log (spec: STO-50, STO-79); returns deleted
    /// segments.
    pub fn cleanup_logs(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut n = 0;
        for (tp, m) in &mut self.logs {
            // spec: STO-59 — only below the high watermark, where known.
            let limit = self.high_watermarks.get(tp).copied().unwrap_or(i64::MAX);
            n += m.log.delete_old_segments_below(now_ms, limit)?;
        }
        Ok(n)
    }

    /// The flush policy for every log (spec: STO-52, STO-53).
    pub fn flush_logs(&mut self, now_ms: i64) -> Result<(), StorageError> {
        for m in self.logs.values_mut() {
            m.log.flush_if_due(now_ms)?;
        }
        Ok(())
    }

    /// Every log directory with the partition logs in it: (partition,
    /// bytes on disk, log end offset), in partition order, and the
    /// directory's file system size and free space when they can be read
    /// (DescribeLogDirs, spec: PRO-31).
    #[must_use]
    pub fn dir_usage(&self) -> Vec<DirUsage> {
        self.dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (total_bytes, usable_bytes) = disk_space(&d.path).unzip();
                DirUsage {
                    path: d.path.clone(),
                    partitions: self
                        .logs
                        .iter()
                        .filter(|(_, m)| m.dir == i)
                        .map(|(tp, m)| (tp.clone(), m.log.size_bytes(), m.log.log_end()))
                        .collect(),
                    total_bytes,
                    usable_bytes,
                }
            })
            .collect()
    }

    /// Writes the three per-directory checkpoints (spec: STO-70).
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        for (i, d) in self.dirs.iter().enumerate() {
            let mut rp = Vec::new();
            let mut starts = Vec::new();
            let mut hws = Vec::new();
            for (tp, m) in self.logs.iter().filter(|(_, m)| m.dir == i) {
                rp.push((tp.clone(), Offset(m.log.recovery_point())));
                starts.push((tp.clone(), Offset(m.log.log_start())));
                if let Some(&hw) = self.high_watermarks.get(tp) {
                    hws.push((tp.clone(), Offset(hw)));
                }
            }
            checkpoint::write_offsets(&d.path.join(RECOVERY_POINT_CHECKPOINT), &rp)?;
            checkpoint::write_offsets(&d.path.join(LOG_START_OFFSET_CHECKPOINT), &starts)?;
            checkpoint::write_offsets(&d.path.join(REPLICATION_OFFSET_CHECKPOINT), &hws)?;
        }
        Ok(())
    }

    /// Clean shutdown: flushes and closes every log, writes the checkpoints
    /// and the clean-shutdown marker, and releases the directory locks
    /// (spec: STO-58, STO-75).
    pub fn shutdown(mut self, now_ms: i64) -> Result<(), StorageError> {
        for m in self.logs.values_mut() {
            m.log.flush(now_ms)?;
        }
        self.checkpoint()?;
        for (_, m) in std::mem::take(&mut self.logs) {
            m.log.close(now_ms)?;
        }
        for d in &self.dirs {
            let marker = d.path.join(CLEAN_SHUTDOWN_FILE);
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .map_err(StorageError::io("write", &marker))?;
            checkpoint::sync_dir(&d.path).map_err(StorageError::io("fsync", &d.path))?;
        }
        info!(broker = self.broker_id, "log manager shut down cleanly");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names() {
        assert_eq!(
            parse_partition_dir("demo-0"),
            Some(TopicPartition::new("demo", 0))
        );
        assert_eq!(
            parse_partition_dir("a-b-12"),
            Some(TopicPartition::new("a-b", 12))
        );
        for bad in ["demo", "demo-", "demo-x", "-1", "demo-01", "lost+found"] {
            assert_eq!(parse_partition_dir(bad), None, "{bad}");
        }
    }
}
