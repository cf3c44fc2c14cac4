//! A partition log: an ordered list of segments with one writer and any
//! number of concurrent readers (spec: STO-35 … STO-47, STO-50 … STO-62).
//!
//! [`Log`] is the writer: it appends entries whose offsets are already
//! assigned, rolls segments, truncates, applies retention and flushes. It
//! keeps a [`LogMeta`] (log start, log end, recovery point, leader-epoch
//! cache) in step with the files. [`LogReader`] is a cheap, cloneable handle
//! for fetches and ListOffsets that never waits for an append: appends
//! publish the new end after the bytes are written (spec: STO-45). Changes
//! to the segment list (roll, truncation, retention) swap the list under a
//! short lock.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use gregor_core::ids::{LeaderEpoch, Offset};
use gregor_core::log::{EpochCache, LogMeta};
use tracing::{debug, info, warn};

use super::checkpoint::{self, LEADER_EPOCH_CHECKPOINT};
use super::config::LogConfig;
use super::error::StorageError;
use super::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use super::publish::{PublishedEnd, Watermark};
use super::record::{self, EntryInfo, RecordIter};
use super::segment::{
    FileRange, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, is_legacy_wrapper,
    parse_file_name,
};

type SegmentList = Arc<Vec<Arc<Segment>>>;

/// State shared by the writer and its readers.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// The segments, oldest first; the last one is active. Swapped whole.
    segments: RwLock<SegmentList>,
    /// Log end offset and active segment length (spec: STO-45).
    end: PublishedEnd,
    /// Log start offset.
    start: Watermark,
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset of the first appended entry.
    pub first_offset: i64,
    /// Last offset of the last appended entry.
    pub last_offset: i64,
    /// Largest timestamp among the entries (-1 if none has one).
    pub max_timestamp: i64,
    /// Number of entries appended.
    pub entries: usize,
    /// Whether the append rolled a new segment first.
    pub rolled: bool,
}

/// How a log is opened by the log manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Recovery point from `recovery-point-offset-checkpoint`, if listed.
    pub recovery_point: Option<i64>,
    /// Log start from `log-start-offset-checkpoint`, if listed.
    pub log_start: Option<i64>,
    /// Whether the log directory had a clean-shutdown marker.
    pub clean_shutdown: bool,
    /// The current time.
    pub now_ms: i64,
}

/// The first entry a timestamp lookup found (ListOffsets, spec: STO-47).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampHit {
    /// Offset of the first record whose timestamp is ≥ the target.
    pub offset: i64,
    /// That record's timestamp.
    pub timestamp: i64,
}

/// Writer-side state of the active segment, the only one that receives
/// appends (spec: STO-35).
#[derive(Debug)]
struct Active {
    seg: Arc<Segment>,
    /// Bytes written.
    size: u64,
    /// Bytes appended since the last offset-index entry.
    bytes_since_index: u64,
    /// Largest timestamp so far and the offset of its entry.
    max_ts: i64,
    offset_of_max_ts: i64,
    /// Time the roll.ms clock counts from: the first entry's timestamp,
    /// else the segment's creation time (spec: STO-42).
    roll_base_ms: Option<i64>,
    created_ms: i64,
}

impl Active {
    fn new(seg: Arc<Segment>, now_ms: i64) -> Self {
        Self {
            seg,
            size: 0,
            bytes_since_index: 0,
            max_ts: -1,
            offset_of_max_ts: -1,
            roll_base_ms: None,
            created_ms: now_ms,
        }
    }

    /// Indexes the entry `info` written at `pos` (spec: STO-32, STO-33).
    fn index_entry(&mut self, info: &EntryInfo, pos: u64, interval: u64) {
        if info.max_timestamp > self.max_ts {
            self.max_ts = info.max_timestamp;
            self.offset_of_max_ts = info.base_offset;
        }
        if self.roll_base_ms.is_none() && pos == 0 && info.max_timestamp >= 0 {
            self.roll_base_ms = Some(info.max_timestamp);
        }
        if self.bytes_since_index > interval {
            self.seg.index().append(info.base_offset, pos as u32);
            if self.max_ts >= 0 {
                self.seg
                    .time_index()
                    .maybe_append(self.max_ts, self.offset_of_max_ts);
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += info.size as u64;
        self.seg.observe_timestamp(info.max_timestamp);
    }
}

/// A partition log: the writer side (see the module docs).
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    config: LogConfig,
    meta: LogMeta,
    active: Active,
    /// Offsets appended since the last flush.
    unflushed: u64,
    last_flush_ms: i64,
}

/// A read-only handle on a log for fetches; cheap to clone, never blocks
/// appends.
#[derive(Clone, Debug)]
pub struct LogReader {
    shared: Arc<Shared>,
}

fn io(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    StorageError::io(op, p)
}

/// Offsets must follow each other (spec: STO-40): a v2 batch or an
/// uncompressed legacy message starts exactly at `expected`; a legacy
/// compressed wrapper carries its last inner offset, at or after it.
fn contiguous(entry: &[u8], info: &EntryInfo, expected: i64) -> bool {
    if info.magic < 2 && is_legacy_wrapper(entry) {
        info.base_offset >= expected
    } else {
        info.base_offset == expected
    }
}

impl Log {
    /// Creates or opens the log in `dir` (spec: STO-55 … STO-62).
    pub fn open(dir: &Path, config: LogConfig, opts: OpenOptions) -> Result<Self, StorageError> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let epoch_path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let stored_epochs = checkpoint::read_epochs(&epoch_path)?;
        let mut epochs = EpochCache::from_entries(stored_epochs.iter().copied());
        let bases = list_segments(dir)?;
        let rp = if opts.clean_shutdown {
            i64::MAX
        } else {
            opts.recovery_point.unwrap_or(0)
        };
        let index_max = config.index_size_max_bytes as usize;
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut next_offset = None::<i64>;
        // Which of `segments` were re-validated (and must be fsynced).
        let mut recovered: Vec<bool> = Vec::new();
        // Largest leader epoch seen by the re-validation, across segments.
        let mut latest_epoch = -1;
        let mut last_len = 0u64;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(n) = next_offset
                && base != n
            {
                // spec: STO-57 — segments must continue each other.
                warn!(dir = %dir.display(), base, expected = n, "segment does not continue the log; deleting it and later ones");
                delete_from(dir, &bases[i..])?;
                break;
            }
            let next_base = bases.get(i + 1).copied();
            let indexes_missing = [INDEX_SUFFIX, TIME_INDEX_SUFFIX]
                .iter()
                .any(|s| !dir.join(super::segment::file_name(base, s)).exists());
            let seg = Segment::open(dir, base, None, None, false)?;
            // spec: STO-56, STO-61 — re-validate from the recovery point;
            // a missing index is rebuilt.
            let needs_recovery =
                indexes_missing || (!opts.clean_shutdown && next_base.is_none_or(|nb| nb > rp));
            let outcome = if needs_recovery {
                recover_segment(
                    &seg,
                    &config,
                    &mut epochs,
                    &mut latest_epoch,
                    dir,
                    index_max,
                )?
            } else {
                load_segment(&seg, &config, next_base, dir, index_max)?
            };
            let (seg, end, len, stop) = outcome;
            recovered.push(needs_recovery);
            next_offset = Some(end);
            last_len = len;
            segments.push(Arc::new(seg));
            if stop && i + 1 < bases.len() {
                warn!(dir = %dir.display(), at = end, "log truncated by recovery; deleting later segments");
                delete_from(dir, &bases[i + 1..])?;
                break;
            }
        }
        let ckpt_start = opts.log_start.unwrap_or(0);
        if segments.is_empty() {
            let base = ckpt_start.max(0);
            let seg = Segment::open(dir, base, Some(index_max), Some((0, 0)), true)?;
            next_offset = Some(base);
            segments.push(Arc::new(seg));
        }
        let first_base = segments[0].base_offset();
        let leo = next_offset.unwrap_or(first_base);
        // spec: STO-62
        let start = ckpt_start.max(first_base).min(leo);
        // The active segment's indexes are preallocated (spec: STO-32).
        let last = segments.len() - 1;
        let active_seg = Arc::new(segments[last].resized(Some(index_max))?);
        segments[last] = Arc::clone(&active_seg);
        // Everything recovered is flushed now: the recovery point is the end.
        for (s, _) in segments.iter().zip(&recovered).filter(|(_, r)| **r) {
            s.flush()?;
        }
        let mut meta = LogMeta::recovered(Offset(start), Offset(leo), Offset(leo), epochs);
        meta.flushed_to(Offset(leo));
        let mut active = Active::new(Arc::clone(&active_seg), opts.now_ms);
        restore_active(&mut active, last_len)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segments: RwLock::new(Arc::new(segments)),
            end: PublishedEnd::new(leo as u64, last_len),
            start: Watermark::new(start as u64),
        });
        let log = Self {
            shared,
            config,
            meta,
            active,
            unflushed: 0,
            last_flush_ms: opts.now_ms,
        };
        if log.meta.epochs().entries() != stored_epochs.as_slice() || !epoch_path.exists() {
            log.write_epoch_checkpoint()?;
        }
        info!(dir = %dir.display(), start, end = leo, clean = opts.clean_shutdown, "log loaded");
        Ok(log)
    }

    /// A reader handle.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The partition directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The log's configuration.
    #[must_use]
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (a topic's overrides changed, STO-54).
    /// Segment size, roll time, retention and flushing take effect with the
    /// next append or maintenance pass; a new index size with the next
    /// segment.
    ///
    /// # Errors
    /// The config is out of range; the old one stays.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The log metadata (start, end, recovery point, epoch cache).
    #[must_use]
    pub fn meta(&self) -> &LogMeta {
        &self.meta
    }

    /// The log end offset.
    #[must_use]
    pub fn log_end(&self) -> i64 {
        self.meta.log_end().get()
    }

    /// The log start offset.
    #[must_use]
    pub fn log_start(&self) -> i64 {
        self.meta.log_start().get()
    }

    /// Offsets below this are on stable storage.
    #[must_use]
    pub fn recovery_point(&self) -> i64 {
        self.meta.recovery_point().get()
    }

    /// Base offsets of the segments, oldest first.
    #[must_use]
    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments().iter().map(|s| s.base_offset()).collect()
    }

    /// Total bytes of all segments.
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        let segs = self.segments();
        let sealed: u64 = segs[..segs.len() - 1].iter().map(|s| s.sealed_len()).sum();
        sealed + self.active.size
    }

    fn segments(&self) -> SegmentList {
        Arc::clone(
            &self
                .shared
                .segments
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Changes the segment list under the write lock: `f` edits a copy,
    /// which replaces the list only if `f` succeeds (spec: STO-45).
    fn swap_segments<T>(
        &self,
        f: impl FnOnce(&mut Vec<Arc<Segment>>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut guard = self
            .shared
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Arc<Segment>> = guard.as_ref().clone();
        let out = f(&mut list)?;
        *guard = Arc::new(list);
        Ok(out)
    }

    /// Appends `entries` — one or more log entries whose offsets are already
    /// assigned and start at the log end — with one write (spec: STO-31,
    /// STO-40). Every entry is validated first; nothing is written if any
    /// entry is invalid, out of order or in an older leader epoch.
    pub fn append(&mut self, entries: &[u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        if entries.is_empty() {
            return Err(StorageError::EmptyAppend);
        }
        if entries.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::TooLarge {
                size: entries.len(),
                max: self.config.segment_bytes,
            });
        }
        let leo = self.log_end();
        let mut expected = leo;
        let mut latest_epoch = self.meta.latest_epoch().map_or(-1, LeaderEpoch::get);
        let mut pos = 0usize;
        let mut count = 0usize;
        let mut max_ts = -1i64;
        while pos < entries.len() {
            let info = record::parse_entry(&entries[pos..]).map_err(|source| {
                StorageError::InvalidEntry {
                    position: pos,
                    source,
                }
            })?;
            if !contiguous(&entries[pos..], &info, expected) {
                return Err(StorageError::NonContiguous {
                    expected,
                    got: info.base_offset,
                });
            }
            let ple = info.partition_leader_epoch;
            if info.magic >= 2 && ple >= 0 {
                if ple < latest_epoch {
                    return Err(StorageError::Meta(
                        gregor_core::log::LogError::EpochRegression {
                            latest: LeaderEpoch(latest_epoch),
                            got: LeaderEpoch(ple),
                        },
                    ));
                }
                latest_epoch = ple;
            }
            max_ts = max_ts.max(info.max_timestamp);
            expected = info.next_offset();
            pos += info.size;
            count += 1;
        }
        let last_offset = expected - 1;
        let rolled = self.maybe_roll(entries.len() as u64, last_offset, max_ts, now_ms)?;

        // spec: STO-31 — one write per append, then index, then publish.
        let start_pos = self.active.size;
        self.active.seg.write_at(entries, start_pos)?;
        let epochs_before = self.meta.epochs().latest();
        let interval = u64::from(self.config.index_interval_bytes);
        let mut pos = 0usize;
        while pos < entries.len() {
            let Some(info) = super::segment::peek_header(&entries[pos..]) else {
                break;
            };
            self.active
                .index_entry(&info, start_pos + pos as u64, interval);
            self.record_meta(&info)?;
            pos += info.size;
        }
        self.active.size += entries.len() as u64;
        self.shared
            .end
            .publish(self.log_end() as u64, self.active.size);
        if self.meta.epochs().latest() != epochs_before {
            self.write_epoch_checkpoint()?;
        }
        self.unflushed += (expected - leo) as u64;
        if self
            .config
            .flush_interval_messages
            .is_some_and(|n| self.unflushed >= n)
        {
            self.flush(now_ms)?;
        }
        Ok(AppendInfo {
            first_offset: leo,
            last_offset,
            max_timestamp: max_ts,
            entries: count,
            rolled,
        })
    }

    /// Reports one appended entry to the metadata (spec: STO-43).
    fn record_meta(&mut self, info: &EntryInfo) -> Result<(), StorageError> {
        let leo = self.meta.log_end();
        let count = info.next_offset() - leo.get();
        let ple = info.partition_leader_epoch;
        if info.magic >= 2 && ple >= 0 {
            self.meta.append(leo, count, LeaderEpoch(ple))?;
        } else if let Some(e) = self.meta.latest_epoch() {
            // Legacy entries carry no epoch: they extend the latest one.
            self.meta.append(leo, count, e)?;
        } else {
            self.meta = LogMeta::recovered(
                self.meta.log_start(),
                Offset(info.next_offset()),
                self.meta.recovery_point(),
                self.meta.epochs().clone(),
            );
        }
        Ok(())
    }

    /// Rolls before an append of `size` bytes ending at `last_offset` with
    /// largest timestamp `max_ts` if the active segment is non-empty and
    /// full by size, index or time (spec: STO-41, STO-42). Time counts, as
    /// in Kafka, from the segment's first entry timestamp to the incoming
    /// largest timestamp, or from the segment's creation to `now_ms` when
    /// the first entry has no timestamp.
    fn maybe_roll(
        &mut self,
        size: u64,
        last_offset: i64,
        max_ts: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let a = &self.active;
        if a.size == 0 {
            return Ok(false);
        }
        let by_size = a.size + size > self.config.segment_bytes;
        let by_index = a.seg.index().is_full() || a.seg.time_index().is_full();
        let waited = match a.roll_base_ms {
            Some(first_ts) => max_ts - first_ts,
            None => now_ms - a.created_ms,
        };
        let by_time = waited >= self.config.roll_ms;
        // spec: STO-34
        let by_offset = last_offset - a.seg.base_offset() > i64::from(u32::MAX);
        if by_size || by_index || by_time || by_offset {
            debug!(dir = %self.dir().display(), by_size, by_index, by_time, by_offset, "rolling segment");
            self.roll(now_ms)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Seals the active segment (indexes trimmed to their entries) and
    /// starts a new one at the log end (spec: STO-41). A no-op on an empty
    /// active segment.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if self.active.size == 0 {
            return Ok(());
        }
        let leo = self.log_end();
        let dir = self.dir().to_path_buf();
        let index_max = self.config.index_size_max_bytes as usize;
        let size = self.active.size;
        let new_seg = Arc::new(Segment::open(
            &dir,
            leo,
            Some(index_max),
            Some((0, 0)),
            true,
        )?);
        let old = Arc::clone(&self.active.seg);
        self.swap_segments(|list| {
            old.seal(size);
            let sealed = old.resized(None)?;
            sealed.seal(size);
            let last = list.len() - 1;
            list[last] = Arc::new(sealed);
            list.push(Arc::clone(&new_seg));
            self.shared.end.publish(leo as u64, 0);
            Ok(())
        })?;
        self.active = Active::new(new_seg, now_ms);
        Ok(())
    }

    /// Removes every entry at or above `offset` (a follower's truncation,
    /// spec: STO-44). The cut falls on an entry boundary: an entry that
    /// holds `offset` is removed whole. Later segments are deleted. Returns
    /// the new log end offset.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, StorageError> {
        let leo = self.log_end();
        if offset >= leo {
            return Ok(leo);
        }
        if offset < self.log_start() {
            self.truncate_fully_and_start_at(offset, self.active.created_ms)?;
            return Ok(offset);
        }
        let index_max = self.config.index_size_max_bytes as usize;
        let mut deleted = Vec::new();
        let active_size = self.active.size;
        let (new_active, new_end, cut) = self.swap_segments(|list| {
            while list.len() > 1 && list[list.len() - 1].base_offset() > offset {
                deleted.extend(list.pop());
            }
            let last = list.len() - 1;
            let seg = &list[last];
            let len = if deleted.is_empty() {
                active_size
            } else {
                seg.sealed_len()
            };
            let (_, mut pos) = {
                let (o, p) = seg.index().lookup(offset);
                (o, u64::from(p))
            };
            let mut end_of_seg = seg.base_offset();
            if pos > 0 {
                // Offset of the entry at the index position.
                end_of_seg = seg.peek(pos, len)?.map_or(end_of_seg, |h| h.base_offset);
            }
            while pos < len {
                let Some(h) = seg.peek(pos, len)? else { break };
                if h.last_offset >= offset {
                    end_of_seg = h.base_offset;
                    break;
                }
                pos += h.size as u64;
                end_of_seg = h.next_offset();
            }
            let (cut, new_end) = (pos, end_of_seg);
            seg.set_file_len(cut)?;
            seg.index().truncate_to(new_end);
            seg.time_index().truncate_to(new_end);
            let seg = Arc::new(seg.resized(Some(index_max))?);
            list[last] = Arc::clone(&seg);
            self.shared.end.publish(new_end as u64, cut);
            Ok((seg, new_end, cut))
        })?;
        for s in &deleted {
            s.delete_files()?;
        }
        let created = self.active.created_ms;
        let mut active = Active::new(new_active, created);
        restore_active(&mut active, cut)?;
        self.active = active;
        let start = self.log_start();
        if new_end < start {
            // The cut removed the entry holding the log start: nothing
            // readable is left, so the log restarts, empty, at its start.
            self.truncate_fully_and_start_at(start, created)?;
            return Ok(start);
        }
        self.meta.truncate_to(Offset(new_end));
        self.write_epoch_checkpoint()?;
        info!(dir = %self.dir().display(), requested = offset, end = new_end, "log truncated");
        Ok(new_end)
    }

    /// Deletes every segment and restarts the log, empty, at `offset`
    /// (spec: STO-44).
    pub fn truncate_fully_and_start_at(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let dir = self.dir().to_path_buf();
        let index_max = self.config.index_size_max_bytes as usize;
        let mut old = Vec::new();
        // Remove files first so a segment at `offset` is created fresh.
        let new_seg = self.swap_segments(|list| {
            old = std::mem::take(list);
            for s in &old {
                s.delete_files()?;
            }
            let seg = Arc::new(Segment::open(
                &dir,
                offset,
                Some(index_max),
                Some((0, 0)),
                true,
            )?);
            list.push(Arc::clone(&seg));
            self.shared.start.publish(offset as u64);
            self.shared.end.publish(offset as u64, 0);
            Ok(seg)
        })?;
        self.active = Active::new(new_seg, now_ms);
        self.meta.truncate_fully_and_start_at(Offset(offset));
        self.unflushed = 0;
        self.write_epoch_checkpoint()?;
        Ok(())
    }

    /// Moves the log start offset forward (DeleteRecords, or retention);
    /// segments wholly below it are deleted by the next
    /// [`Log::delete_old_segments`] (spec: STO-51).
    pub fn advance_start(&mut self, offset: i64, now_ms: i64) -> Result<(), StorageError> {
        if offset <= self.log_start() {
            return Ok(());
        }
        if offset > self.log_end() {
            return self.truncate_fully_and_start_at(offset, now_ms);
        }
        self.shared.start.publish(offset as u64);
        self.meta.advance_start(Offset(offset));
        self.write_epoch_checkpoint()
    }

    /// Records a new leader epoch starting at the log end (a leader taking
    /// over) and checkpoints the epoch cache.
    pub fn begin_epoch(&mut self, epoch: i32) -> Result<(), StorageError> {
        self.meta.begin_epoch(LeaderEpoch(epoch))?;
        self.write_epoch_checkpoint()
    }

    /// Applies retention at segment granularity: time (the segment's
    /// largest timestamp, else its file time, older than `retention.ms`),
    /// size (drop the oldest segments while the log stays above
    /// `retention.bytes`) and log start (segments wholly below it). Never
    /// deletes the active segment; moves the log start to the first kept
    /// segment (spec: STO-50, STO-51). Returns the number of deleted segments.
    pub fn delete_old_segments(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.delete_old_segments_below(now_ms, i64::MAX)
    }

    /// Retention as in [`Log::delete_old_segments`], over only the sealed
    /// segments whose records all lie below `limit` — the partition's high
    /// watermark, so that retention never deletes a record that is not
    /// committed (spec: STO-59).
    pub fn delete_old_segments_below(
        &mut self,
        now_ms: i64,
        limit: i64,
    ) -> Result<usize, StorageError> {
        let segs = self.segments();
        let below = segs[..segs.len() - 1]
            .iter()
            .enumerate()
            .take_while(|(i, _)| segs[i + 1].base_offset() <= limit)
            .count();
        let sealed = &segs[..below];
        let mut by_time = 0;
        if let Some(ms) = self.config.retention_ms {
            for s in sealed {
                let ts = match s.max_timestamp() {
                    t if t >= 0 => t,
                    _ => s.modified_ms()?,
                };
                if now_ms - ts > ms {
                    by_time += 1;
                } else {
                    break;
                }
            }
        }
        let mut by_size = 0;
        if let Some(limit) = self.config.retention_bytes {
            let mut excess = self.size_bytes() as i128 - i128::from(limit);
            for s in sealed {
                if excess - i128::from(s.sealed_len()) < 0 {
                    break;
                }
                excess -= i128::from(s.sealed_len());
                by_size += 1;
            }
        }
        let start = self.log_start();
        let by_start = sealed
            .iter()
            .enumerate()
            .take_while(|(i, _)| segs[i + 1].base_offset() <= start)
            .count();
        let n = by_time.max(by_size).max(by_start);
        if n == 0 {
            return Ok(0);
        }
        let new_start = segs[n].base_offset().max(start);
        let mut removed = Vec::new();
        self.swap_segments(|list| {
            removed = list.drain(..n).collect();
            self.shared.start.publish(new_start as u64);
            Ok(())
        })?;
        for s in &removed {
            s.delete_files()?;
        }
        self.meta.advance_start(Offset(new_start));
        self.write_epoch_checkpoint()?;
        info!(dir = %self.dir().display(), segments = n, by_time, by_size, start = new_start, "retention deleted segments");
        Ok(n)
    }

    /// Fsyncs every segment holding offsets at or above the recovery point
    /// and moves the recovery point to the log end (spec: STO-52).
    pub fn flush(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let rp = self.recovery_point();
        let segs = self.segments();
        for (i, s) in segs.iter().enumerate() {
            let next = segs.get(i + 1).map_or(i64::MAX, |n| n.base_offset());
            if next > rp {
                s.flush()?;
            }
        }
        self.meta.flushed_to(self.meta.log_end());
        self.unflushed = 0;
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// The periodic flush: everything if `log.flush.interval.ms` has
    /// passed since the last flush, otherwise the sealed segments that are
    /// not yet flushed, so recovery after a crash only rescans the active
    /// segment (spec: STO-52, STO-53). Returns whether it fsynced.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        if self
            .config
            .flush_interval_ms
            .is_some_and(|ms| now_ms - self.last_flush_ms >= ms)
            && self.unflushed > 0
        {
            self.flush(now_ms)?;
            return Ok(true);
        }
        let active_base = self.active.seg.base_offset();
        let rp = self.recovery_point();
        if rp >= active_base {
            return Ok(false);
        }
        let segs = self.segments();
        for (i, s) in segs[..segs.len() - 1].iter().enumerate() {
            if segs[i + 1].base_offset() > rp {
                s.flush()?;
            }
        }
        self.meta.flushed_to(Offset(active_base));
        Ok(true)
    }

    /// Clean close: flush, trim the active indexes to their entries and
    /// checkpoint the epoch cache (spec: STO-58).
    pub fn close(mut self, now_ms: i64) -> Result<(), StorageError> {
        self.flush(now_ms)?;
        let trimmed = self.active.seg.resized(None)?;
        trimmed.flush()?;
        self.write_epoch_checkpoint()?;
        Ok(())
    }

    /// Deletes the log's directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir().to_path_buf();
        drop(self);
        fs::remove_dir_all(&dir).map_err(io("delete", &dir))
    }

    fn write_epoch_checkpoint(&self) -> Result<(), StorageError> {
        let path = self.dir().join(LEADER_EPOCH_CHECKPOINT);
        checkpoint::write_epochs(&path, self.meta.epochs().entries())?;
        Ok(())
    }

    /// Reads like [`LogReader::read`].
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<FileRange>, StorageError> {
        self.reader().read(offset, max_bytes)
    }

    /// Looks up like [`LogReader::offset_for_timestamp`].
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampHit>, StorageError> {
        self.reader().offset_for_timestamp(timestamp)
    }

    /// Checks every index entry of every segment against the log file:
    /// each offset-index entry points at the start of the entry with that
    /// base offset, and each time-index entry names an entry whose
    /// timestamp is the largest so far (spec: STO-61). For tests and tools.
    pub fn verify_indexes(&self) -> Result<(), StorageError> {
        let segs = self.segments();
        for (i, s) in segs.iter().enumerate() {
            let len = if i + 1 == segs.len() {
                self.active.size
            } else {
                s.sealed_len()
            };
            let bad = |reason: String| StorageError::IndexMismatch {
                dir: self.dir().to_path_buf(),
                base_offset: s.base_offset(),
                reason,
            };
            let next = segs.get(i + 1).map(|n| n.base_offset());
            s.index().sanity_check(len, next).map_err(&bad)?;
            s.time_index().sanity_check(next).map_err(&bad)?;
            for k in 0..s.index().len() {
                let (o, p) = s.index().entry(k);
                match s.peek(u64::from(p), len)? {
                    Some(h) if h.base_offset == o => {}
                    other => {
                        return Err(bad(format!("index entry ({o}, {p}) points at {other:?}")));
                    }
                }
            }
            // Every time entry's timestamp is the max of the entries up to it.
            let mut pos = 0;
            let mut max_ts = -1;
            let mut k = 0;
            while pos < len {
                let Some(h) = s.peek(pos, len)? else {
                    return Err(bad(format!("no entry at {pos}")));
                };
                max_ts = max_ts.max(h.max_timestamp);
                while k < s.time_index().len() && s.time_index().entry(k).1 == h.base_offset {
                    if s.time_index().entry(k).0 != max_ts {
                        return Err(bad(format!(
                            "time entry {k} says {:?}, max so far {max_ts}",
                            s.time_index().entry(k)
                        )));
                    }
                    k += 1;
                }
                pos += h.size as u64;
            }
            if k != s.time_index().len() {
                return Err(bad(format!("time entry {k} names no entry")));
            }
        }
        Ok(())
    }
}

impl LogReader {
    fn guard(&self) -> RwLockReadGuard<'_, SegmentList> {
        self.shared
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The published log end offset.
    #[must_use]
    pub fn log_end(&self) -> i64 {
        self.shared.end.offset() as i64
    }

    /// The published log start offset.
    #[must_use]
    pub fn log_start(&self) -> i64 {
        self.shared.start.load() as i64
    }

    /// Whole entries starting with the one that holds `offset`, from one
    /// segment, at most `max_bytes` of them but always at least one, and
    /// never beyond the published end (spec: STO-46). `None` when `offset`
    /// is the log end.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<FileRange>, StorageError> {
        let segs = self.guard();
        let (end, active_len) = self.shared.end.snapshot();
        let (end, start) = (end as i64, self.shared.start.load() as i64);
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        if offset == end {
            return Ok(None);
        }
        let first = segs
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for (i, s) in segs.iter().enumerate().skip(first) {
            let len = if i + 1 == segs.len() {
                active_len
            } else {
                s.sealed_len()
            };
            let mut pos = if s.base_offset() <= offset {
                u64::from(s.index().lookup(offset).1)
            } else {
                0
            };
            while pos < len {
                let Some(h) = s.peek(pos, len)? else { break };
                if h.base_offset >= end {
                    return Ok(None);
                }
                if h.last_offset < offset {
                    pos += h.size as u64;
                    continue;
                }
                let limit = pos + (max_bytes as u64).max(h.size as u64);
                let mut stop = pos + h.size as u64;
                if limit > stop {
                    let (_, floor) = s.index().floor_by_position(limit, end);
                    stop = stop.max(u64::from(floor));
                    while stop < len {
                        let Some(n) = s.peek(stop, len)? else { break };
                        if n.base_offset >= end || stop + n.size as u64 > limit {
                            break;
                        }
                        stop += n.size as u64;
                    }
                }
                return Ok(Some(FileRange {
                    file: Arc::clone(s.file()),
                    segment_base: s.base_offset(),
                    position: pos,
                    len: stop - pos,
                    first_offset: h.base_offset,
                }));
            }
        }
        Ok(None)
    }

    /// The first entry whose largest timestamp is ≥ `timestamp`
    /// (ListOffsets by time, spec: STO-47); `None` if every entry is older.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampHit>, StorageError> {
        let segs = self.guard();
        let (end, active_len) = self.shared.end.snapshot();
        let (end, start) = (end as i64, self.shared.start.load() as i64);
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            if !last && s.max_timestamp() < timestamp {
                continue;
            }
            let len = if last { active_len } else { s.sealed_len() };
            let mut pos = match s.time_index().floor_below(timestamp) {
                Some((_, o)) => u64::from(s.index().lookup(o).1),
                None => 0,
            };
            while pos < len {
                let Some(h) = s.peek(pos, len)? else { break };
                if h.base_offset >= end {
                    break;
                }
                if h.max_timestamp >= timestamp && h.last_offset >= start {
                    return Ok(Some(first_record_at_or_after(s, pos, &h, start, timestamp)));
                }
                pos += h.size as u64;
            }
        }
        Ok(None)
    }
}

/// The first record at or above `start` whose timestamp reaches `target`,
/// inside the entry `h` at byte `pos` of segment `s`, which is known to hold
/// one (its largest timestamp reaches the target): Kafka answers ListOffsets
/// with the record, not the batch (spec: STO-47). Should the entry not
/// decode, its first offset and largest timestamp answer instead.
fn first_record_at_or_after(
    s: &Segment,
    pos: u64,
    h: &EntryInfo,
    start: i64,
    target: i64,
) -> TimestampHit {
    let fallback = TimestampHit {
        offset: h.base_offset.max(start),
        timestamp: h.max_timestamp,
    };
    let mut buf = vec![0u8; h.size];
    if s.file().read_exact_at(&mut buf, pos).is_err() {
        return fallback;
    }
    RecordIter::new(&buf, start)
        .filter_map(Result::ok)
        .find(|r| r.timestamp >= target)
        .map_or(fallback, |r| TimestampHit {
            offset: r.offset,
            timestamp: r.timestamp,
        })
}

/// Base offsets of the `.log` files in `dir`, sorted; removes index files
/// without a log and leftover temporary files.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for e in fs::read_dir(dir).map_err(io("list", dir))? {
        let e = e.map_err(io("list", dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(b) = parse_file_name(name, LOG_SUFFIX) {
            logs.push(b);
        } else if let Some(b) =
            parse_file_name(name, INDEX_SUFFIX).or_else(|| parse_file_name(name, TIME_INDEX_SUFFIX))
        {
            indexes.push((b, e.path()));
        } else if name.ends_with(".tmp") {
            let p = e.path();
            fs::remove_file(&p).map_err(io("delete", &p))?;
        }
    }
    logs.sort_unstable();
    for (b, p) in indexes {
        if logs.binary_search(&b).is_err() {
            fs::remove_file(&p).map_err(io("delete", &p))?;
        }
    }
    Ok(logs)
}

fn delete_from(dir: &Path, bases: &[i64]) -> Result<(), StorageError> {
    for &b in bases {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = dir.join(super::segment::file_name(b, suffix));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("delete", &p)(e)),
            }
        }
    }
    Ok(())
}

/// (segment with sized indexes, next offset, valid length, whether the log
/// was cut inside this segment)
type Loaded = (Segment, i64, u64, bool);

/// Re-validates every entry of a segment from its first byte, truncating at
/// the first invalid one and rebuilding both indexes (spec: STO-55, STO-56).
fn recover_segment(
    seg: &Segment,
    config: &LogConfig,
    epochs: &mut EpochCache,
    latest_epoch: &mut i32,
    dir: &Path,
    index_max: usize,
) -> Result<Loaded, StorageError> {
    let fresh = Segment::open(dir, seg.base_offset(), Some(index_max), Some((0, 0)), false)?;
    let mut active = Active::new(Arc::new(fresh), 0);
    let interval = u64::from(config.index_interval_bytes);
    let mut expected = seg.base_offset();
    let (valid, stopped) = seg.scan(0, |pos, info, bytes| {
        if !contiguous(bytes, info, expected) {
            return false;
        }
        let ple = info.partition_leader_epoch;
        if info.magic >= 2 && ple >= 0 {
            // An epoch older than an earlier entry's cannot have been written.
            if ple < *latest_epoch {
                return false;
            }
            *latest_epoch = ple;
            epochs.assign(LeaderEpoch(ple), Offset(info.base_offset));
        }
        active.index_entry(info, pos, interval);
        expected = info.next_offset();
        true
    })?;
    let file_len = seg.file_len()?;
    if valid < file_len {
        warn!(dir = %dir.display(), segment = seg.base_offset(), valid, file_len,
              reason = stopped.as_deref().unwrap_or(""), "truncating torn or corrupt log tail");
        seg.set_file_len(valid)?;
    }
    epochs.truncate_from_end(Offset(expected));
    active.seg.set_max_timestamp(active.max_ts);
    let sized = active.seg.resized(None)?;
    sized.seal(valid);
    Ok((sized, expected, valid, valid < file_len))
}

/// Opens a segment that needs no re-validation: checks its indexes
/// (rebuilding them if inconsistent, spec: STO-61) and scans its tail from
/// the last index entry to learn its end and largest timestamp.
fn load_segment(
    seg: &Segment,
    config: &LogConfig,
    next_base: Option<i64>,
    dir: &Path,
    index_max: usize,
) -> Result<Loaded, StorageError> {
    let file_len = seg.file_len()?;
    let odd_size = |p: &Path, n: usize| {
        fs::metadata(p)
            .map(|m| !(m.len() as usize).is_multiple_of(n))
            .unwrap_or(true)
    };
    let mut problem = None;
    if odd_size(seg.index().path(), OFFSET_ENTRY_BYTES)
        || odd_size(seg.time_index().path(), TIME_ENTRY_BYTES)
    {
        problem = Some("index size is not a whole number of entries".to_string());
    }
    if problem.is_none() {
        problem = seg.index().sanity_check(file_len, next_base).err();
    }
    if problem.is_none() {
        problem = seg.time_index().sanity_check(next_base).err();
    }
    if problem.is_none() && !seg.index().is_empty() {
        let (o, p) = seg.index().entry(seg.index().len() - 1);
        if seg
            .peek(u64::from(p), file_len)?
            .is_none_or(|h| h.base_offset != o)
        {
            problem = Some(format!(
                "last index entry ({o}, {p}) does not point at its entry"
            ));
        }
    }
    if let Some(reason) = problem {
        warn!(dir = %dir.display(), segment = seg.base_offset(), %reason, "rebuilding inconsistent index");
        let (mut scratch, mut latest) = (EpochCache::new(), -1);
        return recover_segment(seg, config, &mut scratch, &mut latest, dir, index_max);
    }
    let (from_offset, from_pos) = match seg.index().len() {
        0 => (seg.base_offset(), 0),
        n => {
            let (o, p) = seg.index().entry(n - 1);
            (o, u64::from(p))
        }
    };
    let mut expected = from_offset;
    let mut max_ts = seg.time_index().last().map_or(-1, |(t, _)| t);
    let (valid, _) = seg.scan(from_pos, |_, info, bytes| {
        if !contiguous(bytes, info, expected) {
            return false;
        }
        max_ts = max_ts.max(info.max_timestamp);
        expected = info.next_offset();
        true
    })?;
    if valid < file_len {
        warn!(dir = %dir.display(), segment = seg.base_offset(), valid, file_len, "corrupt tail after a clean shutdown; rebuilding segment");
        let (mut scratch, mut latest) = (EpochCache::new(), -1);
        return recover_segment(seg, config, &mut scratch, &mut latest, dir, index_max);
    }
    let loaded = seg.resized(None)?;
    loaded.set_max_timestamp(max_ts);
    loaded.seal(valid);
    Ok((loaded, expected, valid, false))
}

/// Rebuilds the writer state of an active segment of `size` bytes: the
/// largest timestamp so far and its entry come from a walk over every entry
/// header (one small read per entry, no checksums), because the time index
/// may hold only a prefix of its entries (a truncation, or a file cut after
/// a clean stop) and new time entries must carry the true maximum
/// (spec: STO-33, STO-61).
fn restore_active(active: &mut Active, size: u64) -> Result<(), StorageError> {
    let seg = Arc::clone(&active.seg);
    active.size = size;
    let from_pos = match seg.index().len() {
        0 => 0,
        n => u64::from(seg.index().entry(n - 1).1),
    };
    let (mut max_ts, mut off_max) = (-1, -1);
    let mut pos = 0;
    while pos < size {
        let Some(h) = seg.peek(pos, size)? else { break };
        if h.max_timestamp > max_ts {
            max_ts = h.max_timestamp;
            off_max = h.base_offset;
        }
        pos += h.size as u64;
    }
    active.bytes_since_index = size - from_pos;
    active.max_ts = max_ts;
    active.offset_of_max_ts = off_max;
    active.roll_base_ms = if size > 0 {
        seg.peek(0, size)?
            .map(|h| h.max_timestamp)
            .filter(|t| *t >= 0)
    } else {
        None
    };
    seg.set_max_timestamp(max_ts);
    Ok(())
}
