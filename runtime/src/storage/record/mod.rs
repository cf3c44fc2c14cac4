//! Record formats as they sit in segment files and travel in Produce and
//! Fetch: the legacy message format v0/v1 (magic 0 and 1, CRC32) and v2
//! record batches (magic 2, CRC32C).
//!
//! Every log entry, whatever its magic, starts with the same 12-byte log
//! overhead: an `i64` offset and an `i32` size of the rest of the entry
//! (spec: STO-10). The magic byte sits at the same position, byte 16, in all
//! three formats, which is what lets one scanner walk a mixed log.
//!
//! The module is split by concern:
//!
//! | module | does |
//! |---|---|
//! | this one | entry framing: [`parse_entry`], [`scan_entries`], [`RecordError`] |
//! | [`varint`] | zig-zag varints of v2 records |
//! | [`compression`] | codecs, their framings and the decompression cap |
//! | [`legacy`] | v0/v1 messages and compressed wrappers |
//! | [`v2`] | v2 batch headers and the allocation-free record walk |
//! | [`mod@validate`] | the produce-path validator ([`Validator`]) |
//! | [`assign`] | leader offset assignment ([`assign_offsets`]) |
//! | [`decode`] | owned records for clients and tools ([`RecordIter`]) |
//! | [`builder`] | building entries of every format and codec ([`BatchBuilder`]) |
//! | [`convert`] | v2 ⇄ v0/v1 conversion for Fetch |
//!
//! Rules are specified in section 2 of `spec/storage.md` (STO-10 … STO-29).

use thiserror::Error;

pub mod assign;
pub mod builder;
pub mod compression;
pub mod convert;
pub mod decode;
pub mod legacy;
pub mod v2;
pub mod validate;
pub mod varint;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use assign::{AssignedOffsets, assign_offsets, assign_offsets_with};
pub use builder::BatchBuilder;
pub use compression::{Codec, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use convert::{down_convert, up_convert};
pub use decode::{Header, Record, RecordIter, decode_records};
pub use validate::{ProducerInfo, ValidationSummary, Validator, validate};

/// How a record's timestamp was set: attribute bit 3 of every format
/// (spec: STO-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// The producer's timestamp.
    #[default]
    CreateTime,
    /// The broker's clock at append (`message.timestamp.type=LogAppendTime`).
    LogAppendTime,
}

impl TimestampType {
    /// Attribute bit 3.
    pub const ATTRIBUTE_BIT: u8 = 0x08;

    /// The timestamp type encoded in an attributes byte.
    #[must_use]
    pub fn from_attributes(attributes: u8) -> Self {
        if attributes & Self::ATTRIBUTE_BIT != 0 {
            Self::LogAppendTime
        } else {
            Self::CreateTime
        }
    }
}

/// The timestamp of a record that has none (v0 messages, or producers that
/// send none).
pub const NO_TIMESTAMP: i64 = -1;

/// Bytes before an entry's payload: offset (8) + size (4).
pub const LOG_OVERHEAD: usize = 12;
/// Position of the magic byte within an entry, in every format.
pub const MAGIC_OFFSET: usize = 16;
/// The smallest legal v0 message payload: crc, magic, attributes, key length,
/// value length.
pub const V0_MIN_PAYLOAD: usize = 4 + 1 + 1 + 4 + 4;
/// The smallest legal v1 message payload: v0 plus the 8-byte timestamp.
pub const V1_MIN_PAYLOAD: usize = V0_MIN_PAYLOAD + 8;
/// The v2 batch header after the log overhead, up to and including the
/// record count (spec: STO-12).
pub const V2_HEADER_AFTER_OVERHEAD: usize = 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
/// The full v2 batch header length, log overhead included (61 bytes).
pub const V2_HEADER_LEN: usize = LOG_OVERHEAD + V2_HEADER_AFTER_OVERHEAD;

/// Why bytes are not a valid log entry. Every malformed input maps to one of
/// these; parsing never panics.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Fewer bytes than the entry header or its declared size needs.
    #[error("truncated entry: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the entry needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The size field is negative, or below the smallest entry of its format.
    #[error("invalid entry size {0}")]
    InvalidSize(i32),
    /// A magic byte other than 0, 1 or 2.
    #[error("unknown magic byte {0}")]
    UnknownMagic(u8),
    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The checksum in the entry.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A structural field is out of range (negative count, bad varint,
    /// lengths that overrun the entry, …).
    #[error("corrupt entry: {0}")]
    Corrupt(&'static str),
    /// The framing is intact but a record breaks a produce rule (record
    /// count against offset deltas, offset deltas not 0..n-1, nested
    /// compression, …). The broker answers `INVALID_RECORD`.
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// Attribute codec bits name no codec this format has (5–7, or zstd
    /// in a v0/v1 message). The broker answers `UNSUPPORTED_COMPRESSION_TYPE`.
    #[error("codec {codec} is not supported in magic {magic} entries")]
    UnsupportedCodec {
        /// The entry's magic.
        magic: u8,
        /// The codec bits.
        codec: u8,
    },
    /// A compressed payload could not be decompressed.
    #[error("{codec} payload does not decompress: {reason}")]
    Decompress {
        /// The codec of the payload.
        codec: Codec,
        /// What the decoder reported.
        reason: String,
    },
    /// Decompressing would exceed the cap (spec: STO-19).
    #[error("decompressed payload exceeds {limit} bytes")]
    DecompressedTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A request to build or convert entries that the target format cannot
    /// express (headers in a legacy message, a bad magic, offsets going
    /// backwards, …).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl RecordError {
    /// Whether this error means the bytes were damaged (checksum, framing,
    /// undecodable compression): the broker answers `CORRUPT_MESSAGE`.
    /// Other variants are well-formed entries that break a rule.
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            RecordError::Truncated { .. }
                | RecordError::InvalidSize(_)
                | RecordError::UnknownMagic(_)
                | RecordError::CrcMismatch { .. }
                | RecordError::Corrupt(_)
                | RecordError::Decompress { .. }
        )
    }
}

/// What a valid log entry says about itself, read from its header without
/// decoding its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// First offset in the entry. For a legacy compressed wrapper this is
    /// the wrapper's offset (its last inner offset): the inner count is not
    /// known without decompressing.
    pub base_offset: i64,
    /// Last offset in the entry.
    pub last_offset: i64,
    /// Total bytes of the entry, log overhead included.
    pub size: usize,
    /// 0, 1 or 2.
    pub magic: u8,
    /// Largest timestamp in the entry (-1 for v0, which has none).
    pub max_timestamp: i64,
    /// The leader epoch stamped on a v2 batch; -1 for legacy messages.
    pub partition_leader_epoch: i32,
}

impl EntryInfo {
    /// The offset after this entry.
    #[must_use]
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

/// Checks the framing of the entry at the start of `buf` — size field,
/// magic, enough bytes — without touching the checksum. Returns the entry's
/// total size and magic (spec: STO-10).
pub fn frame_entry(buf: &[u8]) -> Result<(usize, u8), RecordError> {
    if buf.len() < MAGIC_OFFSET + 1 {
        return Err(RecordError::Truncated {
            needed: MAGIC_OFFSET + 1,
            available: buf.len(),
        });
    }
    let size_field = be_i32(buf, 8);
    let magic = buf[MAGIC_OFFSET];
    let min_payload = match magic {
        0 => V0_MIN_PAYLOAD,
        1 => V1_MIN_PAYLOAD,
        2 => V2_HEADER_AFTER_OVERHEAD,
        m => return Err(RecordError::UnknownMagic(m)),
    };
    if size_field < 0 || (size_field as usize) < min_payload {
        return Err(RecordError::InvalidSize(size_field));
    }
    let size = LOG_OVERHEAD + size_field as usize;
    if buf.len() < size {
        return Err(RecordError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    Ok((size, magic))
}

/// Reads and checks the entry at the start of `buf`: its framing, magic and
/// checksum (spec: STO-10, STO-11, STO-12). Records inside are not decoded.
///
/// A buffer of zeros (preallocated or zero-filled space) is reported as
/// [`RecordError::InvalidSize`] or a checksum error, never as a valid entry.
pub fn parse_entry(buf: &[u8]) -> Result<EntryInfo, RecordError> {
    let (size, magic) = frame_entry(buf)?;
    let offset = be_i64(buf, 0);
    let entry = &buf[..size];
    if magic == 2 {
        let stored = be_u32(entry, 17);
        let computed = crc32c::crc32c(&entry[21..]);
        if stored != computed {
            return Err(RecordError::CrcMismatch { stored, computed });
        }
        let last_delta = be_i32(entry, 23);
        let count = be_i32(entry, 57);
        if last_delta < 0 || count < 0 {
            return Err(RecordError::Corrupt(
                "negative last offset delta or record count",
            ));
        }
        let last_offset = offset
            .checked_add(i64::from(last_delta))
            .ok_or(RecordError::Corrupt("last offset overflows"))?;
        Ok(EntryInfo {
            base_offset: offset,
            last_offset,
            size,
            magic,
            max_timestamp: be_i64(entry, 35),
            partition_leader_epoch: be_i32(entry, 12),
        })
    } else {
        let stored = be_u32(entry, 12);
        let computed = crc32fast::hash(&entry[MAGIC_OFFSET..]);
        if stored != computed {
            return Err(RecordError::CrcMismatch { stored, computed });
        }
        let max_timestamp = if magic == 1 { be_i64(entry, 18) } else { -1 };
        Ok(EntryInfo {
            base_offset: offset,
            last_offset: offset,
            size,
            magic,
            max_timestamp,
            partition_leader_epoch: -1,
        })
    }
}

/// Walks the valid entries at the start of `buf`, stopping at the first
/// truncated or corrupt one. Returns the entries and the error that stopped
/// the walk, if any (`None` when `buf` ended exactly on an entry boundary).
pub fn scan_entries(buf: &[u8]) -> (Vec<EntryInfo>, Option<RecordError>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match parse_entry(&buf[pos..]) {
            Ok(info) => {
                pos += info.size;
                out.push(info);
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}
