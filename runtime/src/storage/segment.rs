//! One segment of a partition log: `<base offset>.log` with its `.index`
//! and `.timeindex` (spec: STO-30 … STO-34).
//!
//! A [`Segment`] is shared between the partition's writer and its readers
//! behind an `Arc`. Its structure never changes after construction; the
//! writer changes the file contents, the index entries and a few atomics.
//! Resizing an index (sealing on roll, reactivating after a truncation)
//! builds a new `Segment` over the same open log file and swaps it into the
//! segment list under the list lock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::error::StorageError;
use super::index::{OFFSET_ENTRY_BYTES, OffsetIndex, TIME_ENTRY_BYTES, TimeIndex};
use super::publish::Watermark;
use super::record::{self, EntryInfo, LOG_OVERHEAD, MAGIC_OFFSET, RecordError};

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Bytes of an entry's header that [`peek_header`] needs to learn its
/// offsets, epoch and largest timestamp in every format.
pub const PEEK_BYTES: usize = 43;

/// Read buffer of the recovery scan; grows for larger entries.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// `<base offset, 20 digits><suffix>` (spec: STO-30).
#[must_use]
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset named by a segment file name with `suffix`, if it is one.
#[must_use]
pub fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Whether a legacy (v0/v1) entry is a compressed wrapper, whose offset is
/// its *last* inner offset. `entry` must hold at least 18 bytes.
#[must_use]
pub fn is_legacy_wrapper(entry: &[u8]) -> bool {
    entry[MAGIC_OFFSET] < 2 && entry.get(MAGIC_OFFSET + 1).is_some_and(|a| a & 0x07 != 0)
}

/// Reads what the log needs from an entry header without checking its
/// checksum: for entries that were validated when they were appended or
/// recovered. `buf` holds the entry's first bytes (up to [`PEEK_BYTES`]);
/// `None` if they cannot be a header.
#[must_use]
pub fn peek_header(buf: &[u8]) -> Option<EntryInfo> {
    if buf.len() < MAGIC_OFFSET + 2 {
        return None;
    }
    let be64 = |at: usize| {
        buf.get(at..at + 8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let be32 = |at: usize| {
        buf.get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap_or([0; 4])))
    };
    let base = be64(0)?;
    let size = be32(8)?;
    if size < 0 {
        return None;
    }
    let magic = buf[MAGIC_OFFSET];
    let (last, max_ts, epoch) = match magic {
        2 => (base + i64::from(be32(23)?), be64(35)?, be32(12)?),
        1 => (base, be64(18)?, -1),
        0 => (base, -1, -1),
        _ => return None,
    };
    Some(EntryInfo {
        base_offset: base,
        last_offset: last,
        size: LOG_OVERHEAD + size as usize,
        magic,
        max_timestamp: max_ts,
        partition_leader_epoch: epoch,
    })
}

/// A segment: its log file and indexes.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: Arc<File>,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Final byte length once the segment is sealed (the active segment's
    /// length is published with the log end, spec: STO-45).
    sealed_len: Watermark,
    /// Largest entry timestamp in the segment, -1 if none has one.
    max_timestamp: AtomicI64,
}

impl Segment {
    /// Opens (creating if needed) the segment files at `base_offset` in
    /// `dir`. `index_bytes` sizes both index files (`None`: keep the
    /// current sizes, i.e. use every whole entry they hold). `truncate_log`
    /// empties the `.log` file.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_bytes: Option<usize>,
        index_entries: Option<(usize, usize)>,
        truncate_log: bool,
    ) -> Result<Self, StorageError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate_log)
            .open(&log_path)
            .map_err(StorageError::io("open", &log_path))?;
        Self::with_file(
            dir,
            base_offset,
            Arc::new(file),
            log_path,
            index_bytes,
            index_entries,
        )
    }

    fn with_file(
        dir: &Path,
        base_offset: i64,
        file: Arc<File>,
        log_path: PathBuf,
        index_bytes: Option<usize>,
        index_entries: Option<(usize, usize)>,
    ) -> Result<Self, StorageError> {
        let ipath = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let tpath = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let cur = |p: &Path| std::fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0);
        let (icur, tcur) = (cur(&ipath), cur(&tpath));
        let (ie, te) =
            index_entries.unwrap_or((icur / OFFSET_ENTRY_BYTES, tcur / TIME_ENTRY_BYTES));
        let index = OffsetIndex::open(&ipath, base_offset, index_bytes.unwrap_or(icur), ie)?;
        let time_index = TimeIndex::open(&tpath, base_offset, index_bytes.unwrap_or(tcur), te)?;
        Ok(Self {
            base_offset,
            log_path,
            file,
            index,
            time_index,
            sealed_len: Watermark::new(0),
            max_timestamp: AtomicI64::new(-1),
        })
    }

    /// The same segment with its indexes resized to `index_bytes` (trimmed
    /// to their entries when `None`), sharing the open log file.
    pub fn resized(&self, index_bytes: Option<usize>) -> Result<Self, StorageError> {
        let entries = (self.index.len(), self.time_index.len());
        let (ib, tb) = match index_bytes {
            Some(b) => (b, b),
            None => (entries.0 * OFFSET_ENTRY_BYTES, entries.1 * TIME_ENTRY_BYTES),
        };
        let ipath = self.index.path().to_path_buf();
        let tpath = self.time_index.path().to_path_buf();
        let index = OffsetIndex::open(&ipath, self.base_offset, ib, entries.0)?;
        let time_index = TimeIndex::open(&tpath, self.base_offset, tb, entries.1)?;
        Ok(Self {
            base_offset: self.base_offset,
            log_path: self.log_path.clone(),
            file: Arc::clone(&self.file),
            index,
            time_index,
            sealed_len: Watermark::new(self.sealed_len.load()),
            max_timestamp: AtomicI64::new(self.max_timestamp()),
        })
    }

    /// The first offset this segment may hold.
    #[must_use]
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The open log file, shared with readers' file ranges.
    #[must_use]
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The `.log` path.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The offset index.
    #[must_use]
    pub fn index(&self) -> &OffsetIndex {
        &self.index
    }

    /// The time index.
    #[must_use]
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// The sealed length (meaningful once the segment is no longer active).
    #[must_use]
    pub fn sealed_len(&self) -> u64 {
        self.sealed_len.load()
    }

    /// Records the final length when the segment is sealed.
    pub fn seal(&self, len: u64) {
        self.sealed_len.publish(len);
    }

    /// Largest timestamp of any entry, -1 if none has one.
    #[must_use]
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// Raises the largest timestamp (writer only).
    pub fn observe_timestamp(&self, ts: i64) {
        self.max_timestamp.fetch_max(ts, Ordering::AcqRel);
    }

    /// Sets the largest timestamp (writer only, after a rebuild or cut).
    pub fn set_max_timestamp(&self, ts: i64) {
        self.max_timestamp.store(ts, Ordering::Release);
    }

    /// The file's modification time in ms since the epoch (retention
    /// fallback for segments without timestamps).
    pub fn modified_ms(&self) -> Result<i64, StorageError> {
        let m = self
            .file
            .metadata()
            .map_err(StorageError::io("stat", &self.log_path))?;
        let t = m
            .modified()
            .map_err(StorageError::io("stat", &self.log_path))?;
        Ok(t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0))
    }

    /// Current length of the file on disk.
    pub fn file_len(&self) -> Result<u64, StorageError> {
        Ok(self
            .file
            .metadata()
            .map_err(StorageError::io("stat", &self.log_path))?
            .len())
    }

    /// Reads the header of the entry at `pos`, which must lie below `len`.
    pub fn peek(&self, pos: u64, len: u64) -> Result<Option<EntryInfo>, StorageError> {
        let mut buf = [0u8; PEEK_BYTES];
        let want = (len.saturating_sub(pos) as usize).min(PEEK_BYTES);
        let n = read_at_most(&self.file, &mut buf[..want], pos)
            .map_err(StorageError::io("read", &self.log_path))?;
        Ok(peek_header(&buf[..n]).filter(|h| pos + h.size as u64 <= len))
    }

    /// Writes `bytes` at `pos` with one positional write (spec: STO-31).
    pub fn write_at(&self, bytes: &[u8], pos: u64) -> Result<(), StorageError> {
        self.file
            .write_all_at(bytes, pos)
            .map_err(StorageError::io("write", &self.log_path))
    }

    /// Cuts the file to `len` bytes.
    pub fn set_file_len(&self, len: u64) -> Result<(), StorageError> {
        self.file
            .set_len(len)
            .map_err(StorageError::io("truncate", &self.log_path))
    }

    /// Fsyncs the log file and indexes.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io("fsync", &self.log_path))?;
        self.index.flush()?;
        self.time_index.flush()
    }

    /// Removes the segment's files. Open handles (readers' file ranges)
    /// keep working on the unlinked file.
    pub fn delete_files(&self) -> Result<(), StorageError> {
        for p in [
            self.log_path.as_path(),
            self.index.path(),
            self.time_index.path(),
        ] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete", p)(e)),
            }
        }
        Ok(())
    }

    /// Walks the entries from `from` to the end of the file, checking each
    /// with `parse_entry` and calling `visit(position, info)`; `visit`
    /// returns `false` to reject an entry (e.g. an offset gap). Returns the
    /// position after the last accepted entry and, if the walk stopped
    /// early, why (spec: STO-55).
    pub fn scan(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, &EntryInfo, &[u8]) -> bool,
    ) -> Result<(u64, Option<String>), StorageError> {
        let file_len = self.file_len()?;
        let mut buf = vec![
            0u8;
            SCAN_CHUNK_BYTES
                .min(file_len.saturating_sub(from) as usize)
                .max(64)
        ];
        let mut buf_pos = from; // file position of buf[0]
        let mut filled = 0usize;
        let mut cur = 0usize; // index into buf of the next entry
        loop {
            let pos = buf_pos + cur as u64;
            if pos >= file_len {
                return Ok((pos, None));
            }
            match record::parse_entry(&buf[cur..filled]) {
                Ok(info) => {
                    if !visit(pos, &info, &buf[cur..cur + info.size]) {
                        return Ok((pos, Some(format!("entry at {pos} rejected"))));
                    }
                    cur += info.size;
                }
                Err(RecordError::Truncated { needed, .. }) if pos + needed as u64 <= file_len => {
                    // Refill: move the partial entry to the front, grow if needed.
                    buf.copy_within(cur..filled, 0);
                    filled -= cur;
                    buf_pos = pos;
                    cur = 0;
                    if buf.len() < needed {
                        buf.resize(needed, 0);
                    }
                    let want = (buf.len() - filled).min((file_len - buf_pos) as usize - filled);
                    let n = read_at_most(
                        &self.file,
                        &mut buf[filled..filled + want],
                        buf_pos + filled as u64,
                    )
                    .map_err(StorageError::io("read", &self.log_path))?;
                    if n == 0 {
                        return Ok((pos, Some("unexpected end of file".into())));
                    }
                    filled += n;
                }
                Err(e) => return Ok((pos, Some(format!("entry at byte {pos}: {e}")))),
            }
        }
    }
}

/// Reads up to `buf.len()` bytes at `pos`, stopping early only at EOF.
fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A byte range of a segment file holding whole entries, ready to be copied
/// or sent with `sendfile(2)` (spec: STO-46).
#[derive(Clone, Debug)]
pub struct FileRange {
    /// The segment's open file (kept alive even if the segment is deleted).
    pub file: Arc<File>,
    /// The segment's base offset.
    pub segment_base: i64,
    /// Byte position of the first entry.
    pub position: u64,
    /// Bytes in the range.
    pub len: u64,
    /// Base offset of the first entry.
    pub first_offset: i64,
}

impl FileRange {
    /// Appends the range's bytes to `out`.
    pub fn read_into(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.file.read_exact_at(&mut out[start..], self.position)
    }
}
