//! The sparse, memory-mapped `.index` (offset → file position) and
//! `.timeindex` (timestamp → offset) files of a segment (spec: STO-32,
//! STO-33, STO-34).
//!
//! ```text
//! .index      8-byte entries:  relative offset u32 BE | file position u32 BE
//! .timeindex 12-byte entries:  timestamp i64 BE      | relative offset u32 BE
//! ```
//!
//! Relative offsets are `offset - segment base offset`. While a segment is
//! active both files are preallocated to `log.index.size.max.bytes` (rounded
//! down to whole entries) and mapped with memmap2; the zero-filled tail is
//! not part of the index. When the segment is sealed the files are trimmed
//! to their entries.
//!
//! The writer adds entries while readers search: each 4-byte word of the
//! map is accessed as an `AtomicU32`, and the entry count is a
//! [`Watermark`] the writer publishes after the entry's words are stored, so
//! a reader only looks at complete entries (spec: STO-45).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::error::StorageError;
use super::publish::Watermark;

/// Bytes of one `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// A mapped index file of fixed-size entries made of big-endian `u32` words.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    /// Words (u32) per entry: 2 or 3.
    words: usize,
    /// Entries the file (as mapped) has room for.
    capacity: usize,
    /// Complete entries, published after their words are stored.
    entries: Watermark,
}

impl IndexFile {
    /// Opens (creating if needed) `path` and sizes it to `len_bytes`,
    /// rounded down to whole entries; `entries` of them are in use.
    fn open(
        path: &Path,
        entry_bytes: usize,
        len_bytes: usize,
        entries: usize,
    ) -> Result<Self, StorageError> {
        let len = len_bytes / entry_bytes * entry_bytes;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StorageError::io("open", path))?;
        if file
            .metadata()
            .map_err(StorageError::io("stat", path))?
            .len()
            != len as u64
        {
            file.set_len(len as u64)
                .map_err(StorageError::io("resize", path))?;
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(StorageError::io("mmap", path))?;
        let capacity = len / entry_bytes;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            map,
            words: entry_bytes / 4,
            capacity,
            entries: Watermark::new(entries.min(capacity) as u64),
        })
    }

    fn word(&self, entry: usize, w: usize) -> &AtomicU32 {
        let idx = entry * self.words + w;
        assert!(
            idx * 4 + 4 <= self.map.len(),
            "index word {idx} beyond the map"
        );
        // SAFETY: the map is page-aligned and at least `idx * 4 + 4` bytes
        // long (checked above), so the pointer is in bounds and 4-aligned.
        // It lives as long as `self`. Every access to mapped words goes
        // through atomics, so concurrent readers and the writer never race.
        unsafe { &*(self.map.as_mut_ptr().add(idx * 4).cast::<AtomicU32>()) }
    }

    fn get(&self, entry: usize, w: usize) -> u32 {
        u32::from_be(self.word(entry, w).load(Ordering::Relaxed))
    }

    fn set(&self, entry: usize, w: usize, v: u32) {
        self.word(entry, w).store(v.to_be(), Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.entries.load() as usize
    }

    fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Binary search: the number of leading entries satisfying `pred`
    /// (which must be true for a prefix and false after).
    fn partition_point(&self, n: usize, pred: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.map
            .flush()
            .map_err(StorageError::io("msync", &self.path))?;
        self.file
            .sync_all()
            .map_err(StorageError::io("fsync", &self.path))
    }
}

/// A segment's offset index.
#[derive(Debug)]
pub struct OffsetIndex {
    base_offset: i64,
    f: IndexFile,
}

impl OffsetIndex {
    /// Opens the index at `path` sized to `len_bytes` with its first
    /// `entries` entries in use.
    pub fn open(
        path: &Path,
        base_offset: i64,
        len_bytes: usize,
        entries: usize,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            base_offset,
            f: IndexFile::open(path, OFFSET_ENTRY_BYTES, len_bytes, entries)?,
        })
    }

    /// Entries in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.f.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No room for another entry: the segment must roll (spec: STO-41).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.f.is_full()
    }

    /// Entry `i` as `(absolute offset, position)`.
    #[must_use]
    pub fn entry(&self, i: usize) -> (i64, u32) {
        (
            self.base_offset + i64::from(self.f.get(i, 0)),
            self.f.get(i, 1),
        )
    }

    /// Adds an entry; a full index adds nothing (the segment rolls before
    /// the next append, spec: STO-41). The caller (the single writer) keeps
    /// offsets and positions strictly increasing.
    pub fn append(&self, offset: i64, position: u32) {
        let n = self.len();
        if n >= self.f.capacity {
            return;
        }
        debug_assert!(
            n == 0 || self.entry(n - 1).0 < offset,
            "STO-32: index offsets increase"
        );
        self.f.set(n, 0, (offset - self.base_offset) as u32);
        self.f.set(n, 1, position);
        self.f.entries.publish(n as u64 + 1);
    }

    /// The last entry with an offset ≤ `offset`, or `(base, 0)` when there
    /// is none: the scan for `offset` may start at that position.
    #[must_use]
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let n = self.len();
        let k = self.f.partition_point(n, |i| self.entry(i).0 <= offset);
        if k == 0 {
            (self.base_offset, 0)
        } else {
            self.entry(k - 1)
        }
    }

    /// The last entry with a position ≤ `position` and an offset below
    /// `end_offset`, or `(base, 0)`.
    #[must_use]
    pub fn floor_by_position(&self, position: u64, end_offset: i64) -> (i64, u32) {
        let n = self.len();
        let k = self.f.partition_point(n, |i| {
            let (o, p) = self.entry(i);
            u64::from(p) <= position && o < end_offset
        });
        if k == 0 {
            (self.base_offset, 0)
        } else {
            self.entry(k - 1)
        }
    }

    /// Drops every entry with an offset ≥ `offset`.
    pub fn truncate_to(&self, offset: i64) {
        let keep = self
            .f
            .partition_point(self.len(), |i| self.entry(i).0 < offset);
        self.f.entries.publish(keep as u64);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.f.entries.publish(0);
    }

    /// Checks the entries against the segment: offsets and positions
    /// strictly increasing, no entry at position 0 (the first entry of a
    /// segment is never indexed), offsets below `next_offset_bound` and
    /// positions below `log_len` (spec: STO-61).
    pub fn sanity_check(&self, log_len: u64, next_offset_bound: Option<i64>) -> Result<(), String> {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let (o, p) = self.entry(i);
            if p == 0 || u64::from(p) >= log_len {
                return Err(format!("entry {i} has position {p} outside (0, {log_len})"));
            }
            if let Some(bound) = next_offset_bound
                && o >= bound
            {
                return Err(format!("entry {i} has offset {o} at or beyond {bound}"));
            }
            if let Some((po, pp)) = prev
                && (o <= po || p <= pp)
            {
                return Err(format!("entry {i} ({o}, {p}) does not follow ({po}, {pp})"));
            }
            prev = Some((o, p));
        }
        Ok(())
    }

    /// Writes the mapped entries to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.f.flush()
    }

    /// The index file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.f.path
    }
}

/// A segment's time index.
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    f: IndexFile,
}

impl TimeIndex {
    /// Opens the time index at `path` sized to `len_bytes` with its first
    /// `entries` entries in use.
    pub fn open(
        path: &Path,
        base_offset: i64,
        len_bytes: usize,
        entries: usize,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            base_offset,
            f: IndexFile::open(path, TIME_ENTRY_BYTES, len_bytes, entries)?,
        })
    }

    /// Entries in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.f.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No room for another entry: the segment must roll (spec: STO-41).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.f.is_full()
    }

    /// Entry `i` as `(timestamp, absolute offset)`.
    #[must_use]
    pub fn entry(&self, i: usize) -> (i64, i64) {
        let ts = (u64::from(self.f.get(i, 0)) << 32 | u64::from(self.f.get(i, 1))) as i64;
        (ts, self.base_offset + i64::from(self.f.get(i, 2)))
    }

    /// The newest entry.
    #[must_use]
    pub fn last(&self) -> Option<(i64, i64)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds `(timestamp, offset)` if the timestamp is larger than the last
    /// entry's (spec: STO-33). The caller checks [`TimeIndex::is_full`].
    pub fn maybe_append(&self, timestamp: i64, offset: i64) {
        if timestamp < 0 || self.last().is_some_and(|(t, _)| t >= timestamp) || self.is_full() {
            return;
        }
        let n = self.len();
        let ts = timestamp as u64;
        self.f.set(n, 0, (ts >> 32) as u32);
        self.f.set(n, 1, ts as u32);
        self.f.set(n, 2, (offset - self.base_offset) as u32);
        self.f.entries.publish(n as u64 + 1);
    }

    /// The last entry with a timestamp < `timestamp`: every entry before
    /// its offset is older than `timestamp`, so a search may start there.
    #[must_use]
    pub fn floor_below(&self, timestamp: i64) -> Option<(i64, i64)> {
        let k = self
            .f
            .partition_point(self.len(), |i| self.entry(i).0 < timestamp);
        k.checked_sub(1).map(|i| self.entry(i))
    }

    /// Drops every entry with an offset ≥ `offset`.
    pub fn truncate_to(&self, offset: i64) {
        let keep = self
            .f
            .partition_point(self.len(), |i| self.entry(i).1 < offset);
        self.f.entries.publish(keep as u64);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.f.entries.publish(0);
    }

    /// Checks the entries: timestamps strictly and offsets weakly
    /// increasing, offsets below `next_offset_bound` (spec: STO-61).
    pub fn sanity_check(&self, next_offset_bound: Option<i64>) -> Result<(), String> {
        let mut prev: Option<(i64, i64)> = None;
        for i in 0..self.len() {
            let (t, o) = self.entry(i);
            if t < 0 {
                return Err(format!("time entry {i} has negative timestamp {t}"));
            }
            if let Some(bound) = next_offset_bound
                && o >= bound
            {
                return Err(format!(
                    "time entry {i} has offset {o} at or beyond {bound}"
                ));
            }
            if let Some((pt, po)) = prev
                && (t <= pt || o < po)
            {
                return Err(format!(
                    "time entry {i} ({t}, {o}) does not follow ({pt}, {po})"
                ));
            }
            prev = Some((t, o));
        }
        Ok(())
    }

    /// Writes the mapped entries to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.f.flush()
    }

    /// The time index file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.f.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_a_floor_search() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000100.index");
        let idx = OffsetIndex::open(&p, 100, 80, 0).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            80,
            "STO-32: preallocated"
        );
        assert_eq!(idx.lookup(150), (100, 0));
        for (o, pos) in [(110, 4000), (120, 8100), (135, 12500)] {
            idx.append(o, pos);
        }
        assert_eq!(idx.lookup(109), (100, 0));
        assert_eq!(idx.lookup(110), (110, 4000));
        assert_eq!(idx.lookup(134), (120, 8100));
        assert_eq!(idx.lookup(1000), (135, 12500));
        assert_eq!(idx.floor_by_position(12000, 1000), (120, 8100));
        assert_eq!(idx.floor_by_position(13000, 135), (120, 8100));
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(
            &raw[..8],
            &[0, 0, 0, 10, 0, 0, 0x0f, 0xa0],
            "STO-32: big-endian entries"
        );
        idx.truncate_to(120);
        assert_eq!(idx.len(), 1);
        assert!(idx.sanity_check(20000, Some(200)).is_ok());
        assert!(idx.sanity_check(3000, Some(200)).is_err());
    }

    #[test]
    fn time_index_keeps_increasing_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000000.timeindex");
        let idx = TimeIndex::open(&p, 0, 40, 0).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            36,
            "rounded down to whole entries"
        );
        idx.maybe_append(1_000, 0);
        idx.maybe_append(900, 5);
        idx.maybe_append(2_000, 7);
        idx.maybe_append(3_000, 9);
        idx.maybe_append(4_000, 11);
        assert_eq!(
            idx.len(),
            3,
            "older timestamps and a full index add nothing"
        );
        assert!(idx.is_full());
        assert_eq!(idx.floor_below(2_000), Some((1_000, 0)));
        assert_eq!(idx.floor_below(2_001), Some((2_000, 7)));
        assert_eq!(idx.floor_below(5), None);
        assert!(idx.sanity_check(Some(10)).is_ok());
        assert!(idx.sanity_check(Some(9)).is_err());
    }
}
