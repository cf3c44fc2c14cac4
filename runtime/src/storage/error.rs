//! The storage engine's error type.

use std::path::PathBuf;

use gregor_core::log::LogError;

use super::checkpoint::CheckpointError;
use super::config::ConfigError;
use super::record::RecordError;

/// Why a storage operation failed. Every variant that concerns a file or a
/// directory names it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system refused an operation.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An appended entry failed validation.
    #[error("invalid entry at byte {position} of the appended data: {source}")]
    InvalidEntry {
        /// Byte position of the entry within the appended buffer.
        position: usize,
        /// What is wrong with it.
        source: RecordError,
    },
    /// An append did not start at the log end offset (spec: STO-1, STO-40).
    #[error("append at offset {got} but the log ends at {expected}")]
    NonContiguous {
        /// The log end offset.
        expected: i64,
        /// The first offset of the rejected entry.
        got: i64,
    },
    /// An append held no entry.
    #[error("empty append")]
    EmptyAppend,
    /// One appended buffer is larger than a segment may ever be.
    #[error("append of {size} bytes exceeds log.segment.bytes ({max})")]
    TooLarge {
        /// Bytes in the append.
        size: usize,
        /// The segment size limit.
        max: u64,
    },
    /// The log metadata refused the change (epoch regression, …).
    #[error(transparent)]
    Meta(#[from] LogError),
    /// A read or lookup asked for an offset the log does not hold.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// A checkpoint file is unreadable or malformed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another process holds the log directory's `.lock` (spec: STO-73).
    #[error("log directory {0} is locked by another broker")]
    DirLocked(PathBuf),
    /// `meta.properties` belongs to another broker (spec: STO-74).
    #[error("{path} has broker.id={found}, but this broker is {expected}")]
    BrokerIdMismatch {
        /// The `meta.properties` file.
        path: PathBuf,
        /// The id written in it.
        found: i32,
        /// This broker's id.
        expected: i32,
    },
    /// `meta.properties` is unreadable.
    #[error("malformed {path}: {reason}")]
    MetaProperties {
        /// The `meta.properties` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A partition directory name is not `<topic>-<partition>`.
    #[error("{0} is not a partition directory name (<topic>-<partition>)")]
    BadPartitionDir(PathBuf),
    /// A partition that already exists was created again.
    #[error("partition {0} already exists")]
    PartitionExists(String),
    /// A partition that does not exist was addressed.
    #[error("unknown partition {0}")]
    UnknownPartition(String),
    /// A segment's index disagrees with its log (reported by
    /// [`crate::storage::log::Log::verify_indexes`]).
    #[error("index of segment {base_offset} in {dir}: {reason}")]
    IndexMismatch {
        /// The partition directory.
        dir: PathBuf,
        /// The segment's base offset.
        base_offset: i64,
        /// What disagrees.
        reason: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}
