//! The broker's data plane: every partition's storage log, the produce path
//! (validate → idempotence check → assign offsets → one append) and the
//! wake-ups that end Fetch long polls.
//!
//! Appends go through one lock around the [`LogManager`]; fetches read
//! through cloned [`LogReader`]s and never take it (spec: PRO-70).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use gregor_core::ids::TopicPartition;
use tokio::sync::Notify;

use crate::config::{BrokerConfig, TimestampType};
use crate::storage::config::LogConfig;
use crate::storage::error::StorageError;
use crate::storage::log::LogReader;
use crate::storage::manager::LogManager;
use crate::storage::record::{RecordError, Validator};

/// Batches remembered per producer and partition for duplicate detection;
/// Kafka's clients keep at most five in flight.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Bytes read at a time when rebuilding producer state from a log.
const REBUILD_READ_BYTES: usize = 1 << 20;

/// Why an append was refused. Each maps to one Kafka error code in
/// [`crate::protocol::error`].
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// No such partition on this broker.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    /// An entry is larger than `message.max.bytes`.
    #[error("entry of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Entry size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The records failed validation (CRC, framing, codec, rules).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The request version and the record format do not match.
    #[error("{0}")]
    WrongFormat(&'static str),
    /// The producer epoch is older than the one last seen.
    #[error("producer epoch {got} is older than {current}")]
    ProducerFenced {
        /// Epoch in the batch.
        got: i16,
        /// Epoch on record.
        current: i16,
    },
    /// The sequence does not follow the last one written.
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrder {
        /// First sequence of the batch.
        got: i32,
        /// The next sequence expected.
        expected: i32,
    },
    /// A non-zero first sequence from a producer this partition does not know.
    #[error("unknown producer id {0}")]
    UnknownProducer(i64),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The broker is shutting down.
    #[error("broker is shutting down")]
    ShuttingDown,
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The append time stamped under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already written.
    pub duplicate: bool,
}

/// One batch remembered for duplicate detection.
#[derive(Debug, Clone, Copy)]
struct SeqBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

/// What one partition knows about one idempotent producer (spec: PRO-80).
#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<SeqBatch>,
}

/// The verdict of the sequence check.
enum SeqCheck {
    Append,
    Duplicate(i64),
}

impl ProducerEntry {
    fn check(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Result<SeqCheck, AppendError> {
        if epoch < self.epoch {
            return Err(AppendError::ProducerFenced {
                got: epoch,
                current: self.epoch,
            });
        }
        if epoch > self.epoch || self.batches.is_empty() {
            // spec: PRO-80 — a new epoch starts at sequence 0.
            return if first_seq == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(AppendError::OutOfOrder {
                    got: first_seq,
                    expected: 0,
                })
            };
        }
        if let Some(b) = self
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate(b.base_offset));
        }
        let last = self.batches.back().map_or(-1, |b| b.last_seq);
        let expected = if last == i32::MAX { 0 } else { last + 1 };
        if first_seq != expected {
            return Err(AppendError::OutOfOrder {
                got: first_seq,
                expected,
            });
        }
        Ok(SeqCheck::Append)
    }

    fn record(&mut self, epoch: i16, b: SeqBatch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            self.batches.pop_front();
        }
        self.batches.push_back(b);
    }
}

/// A partition's leadership as this broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// The leader, `None` when offline.
    pub leader: Option<gregor_core::ids::BrokerId>,
    /// The leader epoch.
    pub leader_epoch: gregor_core::ids::LeaderEpoch,
    /// The partition epoch.
    pub partition_epoch: gregor_core::ids::PartitionEpoch,
    /// The in-sync replicas.
    pub isr: std::collections::BTreeSet<gregor_core::ids::BrokerId>,
}

/// What the coordination backend told this broker.
#[derive(Debug, Default)]
struct ClusterSide {
    broker_epoch: Option<i64>,
    views: HashMap<TopicPartition, ReplicaView>,
}

/// Options of one append, resolved from broker and topic configs.
#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// Largest entry accepted (`message.max.bytes` / `max.message.bytes`).
    pub max_entry_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// The Produce request asks for v2 batches (v3+) or legacy messages (v0–2).
    pub require_v2: bool,
}

/// Every partition log of the broker, with producer state and wake-ups.
#[derive(Debug)]
pub struct Partitions {
    logs: Mutex<Option<LogManager>>,
    readers: RwLock<HashMap<TopicPartition, LogReader>>,
    producers: Mutex<HashMap<TopicPartition, BTreeMap<i64, ProducerEntry>>>,
    /// Long-polling fetches to wake, per partition (spec: PRO-72).
    waiters: Mutex<HashMap<TopicPartition, Vec<Weak<Notify>>>>,
    /// What the coordination backend told this broker (ZooKeeper mode).
    cluster: Mutex<ClusterSide>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The storage config the broker config describes.
pub fn log_config(cfg: &BrokerConfig) -> LogConfig {
    LogConfig {
        segment_bytes: cfg.log_segment_bytes as u64,
        roll_ms: cfg.log_roll_ms,
        index_size_max_bytes: cfg.log_index_size_max_bytes as u32,
        index_interval_bytes: cfg.log_index_interval_bytes as u32,
        retention_ms: (cfg.log_retention_ms >= 0).then_some(cfg.log_retention_ms),
        retention_bytes: u64::try_from(cfg.log_retention_bytes).ok(),
        flush_interval_messages: (cfg.log_flush_interval_messages != i64::MAX)
            .then_some(cfg.log_flush_interval_messages as u64),
        flush_interval_ms: (cfg.log_flush_interval_ms != i64::MAX)
            .then_some(cfg.log_flush_interval_ms),
    }
}

impl Partitions {
    /// Opens every log (recovering as needed) and rebuilds producer state
    /// from the logs (spec: PRO-81).
    pub fn open(cfg: &BrokerConfig) -> Result<Self, StorageError> {
        let mgr = LogManager::open(&cfg.log_dirs, cfg.broker_id, log_config(cfg), now_ms())?;
        let mut readers = HashMap::new();
        let mut producers = HashMap::new();
        for tp in mgr.partitions() {
            if let Some(log) = mgr.get(tp) {
                let reader = log.reader();
                let state = rebuild_producers(&reader)?;
                if !state.is_empty() {
                    producers.insert(tp.clone(), state);
                }
                readers.insert(tp.clone(), reader);
            }
        }
        Ok(Self {
            logs: Mutex::new(Some(mgr)),
            readers: RwLock::new(readers),
            producers: Mutex::new(producers),
            waiters: Mutex::new(HashMap::new()),
            cluster: Mutex::new(ClusterSide::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<LogManager>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partitions held.
    pub fn held(&self) -> Vec<TopicPartition> {
        self.lock()
            .as_ref()
            .map(|m| m.partitions().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates the log of `tp` if it does not exist.
    pub fn ensure(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let Some(mgr) = guard.as_mut() else {
            return Ok(());
        };
        let log = mgr.get_or_create(tp, now_ms())?;
        let reader = log.reader();
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tp.clone(), reader);
        Ok(())
    }

    /// Deletes the log of `tp` and its files, if present.
    pub fn remove(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let mut guard = self.lock();
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp);
        self.producers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp);
        match guard.as_mut() {
            Some(mgr) if mgr.get(tp).is_some() => mgr.delete(tp),
            _ => Ok(()),
        }
    }

    /// A reader for fetches, without taking the append lock.
    pub fn reader(&self, tp: &TopicPartition) -> Option<LogReader> {
        self.readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .cloned()
    }

    /// Asks for `waiter` to be notified at the next append to any of `tps`
    /// (spec: PRO-72). Register before reading: a notification that comes
    /// between the read and the wait is kept as a permit, never lost.
    /// Registrations are one-shot; dead ones are pruned here.
    pub fn wake_on_append(&self, tps: &[TopicPartition], waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for tp in tps {
            let list = waiters.entry(tp.clone()).or_default();
            list.retain(|w| w.strong_count() > 0);
            if !list
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(waiter)))
            {
                list.push(Arc::downgrade(waiter));
            }
        }
    }

    fn wake(&self, tp: &TopicPartition) {
        let woken = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tp)
            .unwrap_or_default();
        for w in woken.iter().filter_map(Weak::upgrade) {
            w.notify_one();
        }
    }

    /// Validates and appends a produce payload to `tp` (spec: PRO-70,
    /// PRO-71, PRO-80).
    pub fn append(
        &self,
        tp: &TopicPartition,
        payload: &[u8],
        opts: AppendOptions,
        validator: &mut Validator,
    ) -> Result<Appended, AppendError> {
        for size in entry_sizes(payload) {
            if size > opts.max_entry_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    max: opts.max_entry_bytes,
                });
            }
        }
        let now = now_ms();
        let append_time = (opts.timestamp_type == TimestampType::LogAppendTime).then_some(now);

        let mut guard = self.lock();
        let mgr = guard.as_mut().ok_or(AppendError::ShuttingDown)?;
        let log = mgr
            .get_mut(tp)
            .ok_or_else(|| AppendError::UnknownPartition(tp.to_string()))?;
        // Validation (CRCs, framing, rules) and offset assignment in one
        // pass over a private copy; nothing reaches the log unless all of
        // it passes.
        let base_offset = log.log_end();
        let mut buf = payload.to_vec();
        let (summary, _) = validator.validate_and_assign(&mut buf, base_offset, 0, append_time)?;
        match (opts.require_v2, summary.single_magic()) {
            (true, Some(2)) => {}
            (true, _) => {
                return Err(AppendError::WrongFormat(
                    "Produce v3+ must carry only v2 record batches",
                ));
            }
            (false, Some(m)) if m < 2 => {}
            (false, _) => {
                return Err(AppendError::WrongFormat(
                    "Produce v0-2 must carry only v0/v1 messages",
                ));
            }
        }
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let producer = summary.producer.filter(|p| p.producer_id >= 0);
        if let Some(p) = producer {
            let entry = producers
                .get(tp)
                .and_then(|m| m.get(&p.producer_id))
                .cloned();
            let verdict = match entry {
                Some(e) => e.check(p.producer_epoch, p.base_sequence, p.last_sequence)?,
                None if p.base_sequence == 0 => SeqCheck::Append,
                None => return Err(AppendError::UnknownProducer(p.producer_id)),
            };
            if let SeqCheck::Duplicate(base_offset) = verdict {
                return Ok(Appended {
                    base_offset,
                    log_append_time: append_time.unwrap_or(-1),
                    log_start_offset: log.log_start(),
                    duplicate: true,
                });
            }
        }
        log.append(&buf, now)?;
        let log_start_offset = log.log_start();
        if let Some(p) = producer {
            producers
                .entry(tp.clone())
                .or_default()
                .entry(p.producer_id)
                .or_default()
                .record(
                    p.producer_epoch,
                    SeqBatch {
                        first_seq: p.base_sequence,
                        last_seq: p.last_sequence,
                        base_offset,
                    },
                );
        }
        drop(producers);
        drop(guard);
        self.wake(tp);
        Ok(Appended {
            base_offset,
            log_append_time: append_time.unwrap_or(-1),
            log_start_offset,
            duplicate: false,
        })
    }

    /// Periodic work: retention, time-based flushes and checkpoints.
    pub fn maintain(&self, retention_due: bool, checkpoint_due: bool) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let Some(mgr) = guard.as_mut() else {
            return Ok(());
        };
        let now = now_ms();
        if retention_due {
            let deleted = mgr.cleanup_logs(now)?;
            if deleted > 0 {
                tracing::info!(segments = deleted, "retention deleted segments");
            }
        }
        mgr.flush_logs(now)?;
        if checkpoint_due {
            mgr.checkpoint()?;
        }
        Ok(())
    }

    /// Clean shutdown: flush, checkpoint, write the clean-shutdown marker
    /// (spec: PRO-30). Later appends fail with "shutting down".
    pub fn shutdown(&self) -> Result<(), StorageError> {
        match self.lock().take() {
            Some(mgr) => mgr.shutdown(now_ms()),
            None => Ok(()),
        }
    }

    // ---- Coordination backend entry points (ZooKeeper mode). ----
    // The replication engine replaces these with its replica state
    // machines; until then they record what the backend says, create the
    // logs of hosted partitions and answer `replica_view`.

    /// The controller's record of a partition this broker hosts changed
    /// (spec: CLU-12): the log exists from now on.
    pub fn apply_state(
        &self,
        tp: &TopicPartition,
        state: &gregor_core::controller::PartitionState,
    ) -> Result<(), StorageError> {
        self.ensure(tp)?;
        let mut side = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        side.views.insert(
            tp.clone(),
            ReplicaView {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
                isr: state.isr.clone(),
            },
        );
        Ok(())
    }

    /// This broker registered with `broker_epoch` (spec: CLU-6).
    pub fn registered(&self, broker_epoch: i64) {
        self.cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .broker_epoch = Some(broker_epoch);
    }

    /// The session ended: nothing this broker knew about leadership holds
    /// any more (spec: CLU-7).
    pub fn session_lost(&self) {
        let mut side = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        side.broker_epoch = None;
        side.views.clear();
    }

    /// The backend's answer to an ISR proposal (spec: CLU-14).
    pub fn isr_response(
        &self,
        tp: &TopicPartition,
        proposal: &gregor_core::replica::IsrProposal,
        response: gregor_core::replica::IsrResponse,
    ) {
        if let gregor_core::replica::IsrResponse::Accepted(epoch) = response {
            let mut side = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = side.views.get_mut(tp)
                && v.leader_epoch == proposal.leader_epoch
            {
                v.partition_epoch = epoch;
                v.isr = proposal.isr.clone();
            }
        }
    }

    /// Leader, leader epoch and ISR of `tp` as this broker knows them.
    pub fn replica_view(&self, tp: &TopicPartition) -> Option<ReplicaView> {
        self.cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .views
            .get(tp)
            .cloned()
    }

    /// The broker epoch of the current registration, if any.
    pub fn broker_epoch(&self) -> Option<i64> {
        self.cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .broker_epoch
    }
}

/// Sizes of the entries of a payload, log overhead included, as far as
/// their size fields can be read (the validator checks the framing).
fn entry_sizes(payload: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let e = payload.get(pos..pos + 12)?;
        let size = 12 + i32::from_be_bytes([e[8], e[9], e[10], e[11]]).max(0) as usize;
        pos += size;
        Some(size)
    })
}

/// Reads every v2 batch header of a log and keeps, per producer, its epoch
/// and last batches (spec: PRO-81).
fn rebuild_producers(reader: &LogReader) -> Result<BTreeMap<i64, ProducerEntry>, StorageError> {
    let mut out: BTreeMap<i64, ProducerEntry> = BTreeMap::new();
    let mut offset = reader.log_start();
    let end = reader.log_end();
    let mut buf = Vec::new();
    while offset < end {
        let Some(range) = reader.read(offset, REBUILD_READ_BYTES)? else {
            break;
        };
        buf.clear();
        range
            .read_into(&mut buf)
            .map_err(StorageError::io("read", std::path::Path::new("segment")))?;
        let mut pos = 0;
        let mut last = offset;
        while pos + 61 <= buf.len() {
            let e = &buf[pos..];
            let size = 12 + i32::from_be_bytes([e[8], e[9], e[10], e[11]]).max(0) as usize;
            if size > e.len() {
                break;
            }
            let base = i64::from_be_bytes(e[0..8].try_into().unwrap_or([0; 8]));
            let mut last_offset = base;
            if e[16] == 2 {
                let delta = i32::from_be_bytes([e[23], e[24], e[25], e[26]]);
                last_offset = base + i64::from(delta);
                let pid = i64::from_be_bytes(e[43..51].try_into().unwrap_or([0; 8]));
                let epoch = i16::from_be_bytes([e[51], e[52]]);
                let first_seq = i32::from_be_bytes([e[53], e[54], e[55], e[56]]);
                if pid >= 0 && first_seq >= 0 {
                    let last_seq = first_seq.wrapping_add(delta);
                    out.entry(pid).or_default().record(
                        epoch,
                        SeqBatch {
                            first_seq,
                            last_seq,
                            base_offset: base,
                        },
                    );
                }
            }
            last = last.max(last_offset + 1);
            pos += size.max(1);
        }
        if last <= offset {
            break;
        }
        offset = last;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-80
    #[test]
    fn sequence_rules() {
        let mut e = ProducerEntry::default();
        assert!(matches!(e.check(0, 0, 4), Ok(SeqCheck::Append)));
        e.record(
            0,
            SeqBatch {
                first_seq: 0,
                last_seq: 4,
                base_offset: 10,
            },
        );
        assert!(matches!(e.check(0, 0, 4), Ok(SeqCheck::Duplicate(10))));
        assert!(matches!(e.check(0, 5, 9), Ok(SeqCheck::Append)));
        assert!(matches!(
            e.check(0, 6, 9),
            Err(AppendError::OutOfOrder {
                got: 6,
                expected: 5
            })
        ));
        assert!(matches!(e.check(1, 0, 0), Ok(SeqCheck::Append)));
        assert!(matches!(
            e.check(1, 3, 3),
            Err(AppendError::OutOfOrder { .. })
        ));
        e.record(
            1,
            SeqBatch {
                first_seq: 0,
                last_seq: 0,
                base_offset: 20,
            },
        );
        assert!(matches!(
            e.check(0, 5, 9),
            Err(AppendError::ProducerFenced { .. })
        ));
        for i in 1..10 {
            e.record(
                1,
                SeqBatch {
                    first_seq: i,
                    last_seq: i,
                    base_offset: 20 + i64::from(i),
                },
            );
        }
        assert_eq!(e.batches.len(), PRODUCER_BATCHES_REMEMBERED);
    }
}
