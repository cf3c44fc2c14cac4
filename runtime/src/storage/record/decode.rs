//! Decoding entries into owned records, for the native client, the
//! `gregor consume` tool and tests (spec: STO-26). Not a broker hot path:
//! each record owns its key, value and headers.

use std::collections::VecDeque;

use super::compression::{Codec, DEFAULT_MAX_DECOMPRESSED_BYTES, decompress};
use super::legacy::{self, for_each_inner};
use super::v2::{self, BatchHeader, RecordWalker};
use super::{RecordError, TimestampType, frame_entry};

/// A record header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header key (UTF-8, never null).
    pub key: String,
    /// The header value, `None` when null.
    pub value: Option<Vec<u8>>,
}

/// One decoded record, whatever format it was stored in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp in milliseconds; [`super::NO_TIMESTAMP`] for v0 messages.
    pub timestamp: i64,
    /// Whether the timestamp is the producer's or the broker's.
    pub timestamp_type: TimestampType,
    /// The key, `None` when null.
    pub key: Option<Vec<u8>>,
    /// The value, `None` when null.
    pub value: Option<Vec<u8>>,
    /// Headers in order (always empty for v0/v1).
    pub headers: Vec<Header>,
}

/// Iterates the records in a byte range of log entries (a Fetch response's
/// record set, a segment slice, a produce payload), in offset order.
///
/// Records below `start_offset` are skipped; so are control batches
/// (transaction markers), which hold no user data. A truncated entry at
/// the end of the range — Fetch responses routinely end in one — ends the
/// iteration quietly; any other malformed entry yields one error and ends
/// it.
#[derive(Debug)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    start_offset: i64,
    scratch: Vec<u8>,
    pending: VecDeque<Record>,
    max_decompressed_bytes: usize,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// An iterator over the records of `buf` at or above `start_offset`.
    #[must_use]
    pub fn new(buf: &'a [u8], start_offset: i64) -> Self {
        RecordIter {
            buf,
            pos: 0,
            start_offset,
            scratch: Vec::new(),
            pending: VecDeque::new(),
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            done: false,
        }
    }

    /// Sets the decompression cap (spec: STO-19).
    #[must_use]
    pub fn with_max_decompressed_bytes(mut self, max: usize) -> Self {
        self.max_decompressed_bytes = max;
        self
    }

    /// Bytes of `buf` consumed so far: the start of the first entry not yet
    /// decoded.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(Ok(r));
            }
            if self.done || self.pos >= self.buf.len() {
                return None;
            }
            let rest = &self.buf[self.pos..];
            if let Err(RecordError::Truncated { .. }) = frame_entry(rest) {
                self.done = true;
                return None;
            }
            match decode_entry(
                rest,
                self.start_offset,
                &mut self.scratch,
                self.max_decompressed_bytes,
                &mut self.pending,
            ) {
                Ok(size) => self.pos += size,
                Err(e) => {
                    self.done = true;
                    self.pending.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Decodes every record of `buf` at or above `start_offset` (see
/// [`RecordIter`]).
pub fn decode_records(buf: &[u8], start_offset: i64) -> Result<Vec<Record>, RecordError> {
    RecordIter::new(buf, start_offset).collect()
}

fn owned(b: Option<&[u8]>) -> Option<Vec<u8>> {
    b.map(<[u8]>::to_vec)
}

/// Decodes the entry at the start of `buf` into `out`, returning its size.
pub(crate) fn decode_entry(
    buf: &[u8],
    start_offset: i64,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
    out: &mut VecDeque<Record>,
) -> Result<usize, RecordError> {
    if buf.get(super::MAGIC_OFFSET) == Some(&2) {
        decode_batch(buf, start_offset, scratch, max_decompressed_bytes, out)
    } else {
        decode_legacy(buf, start_offset, scratch, max_decompressed_bytes, out)
    }
}

// spec: STO-26
fn decode_batch(
    buf: &[u8],
    start_offset: i64,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
    out: &mut VecDeque<Record>,
) -> Result<usize, RecordError> {
    let (h, size) = BatchHeader::parse(buf)?;
    let codec = h.codec()?;
    if h.is_control() || h.last_offset() < start_offset {
        return Ok(size);
    }
    let section = v2::records_section(&buf[..size]);
    let section = if codec == Codec::None {
        section
    } else {
        decompress(codec, section, scratch, max_decompressed_bytes)?;
        &scratch[..]
    };
    let timestamp_type = h.timestamp_type();
    for r in RecordWalker::new(section, h.records_count) {
        let r = r?;
        let offset = h.base_offset.saturating_add(i64::from(r.offset_delta));
        if offset < start_offset {
            continue;
        }
        let timestamp = match timestamp_type {
            TimestampType::LogAppendTime => h.max_timestamp,
            TimestampType::CreateTime => h.base_timestamp.saturating_add(r.timestamp_delta),
        };
        out.push_back(Record {
            offset,
            timestamp,
            timestamp_type,
            key: owned(r.key),
            value: owned(r.value),
            headers: r
                .header_iter()
                .map(|(k, v)| Header {
                    key: k.to_owned(),
                    value: owned(v),
                })
                .collect(),
        });
    }
    Ok(size)
}

// spec: STO-20, STO-26
fn decode_legacy(
    buf: &[u8],
    start_offset: i64,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
    out: &mut VecDeque<Record>,
) -> Result<usize, RecordError> {
    let m = legacy::parse_message(buf)?;
    let codec = m.codec()?;
    let timestamp_type = m.timestamp_type();
    if codec == Codec::None {
        if m.offset >= start_offset {
            out.push_back(Record {
                offset: m.offset,
                timestamp: m.timestamp,
                timestamp_type,
                key: owned(m.key),
                value: owned(m.value),
                headers: Vec::new(),
            });
        }
        return Ok(m.size);
    }
    if m.offset < start_offset {
        return Ok(m.size); // the wrapper's offset is its last record's
    }
    let Some(value) = m.value else {
        return Err(RecordError::InvalidRecord(
            "compressed message without a value",
        ));
    };
    decompress(codec, value, scratch, max_decompressed_bytes)?;
    let first = out.len();
    let mut last_inner = 0;
    for_each_inner(scratch, m.magic, |_, inner| {
        last_inner = inner.offset;
        let timestamp = if timestamp_type == TimestampType::LogAppendTime {
            m.timestamp
        } else {
            inner.timestamp
        };
        out.push_back(Record {
            offset: inner.offset,
            timestamp,
            timestamp_type,
            key: owned(inner.key),
            value: owned(inner.value),
            headers: Vec::new(),
        });
        Ok(())
    })?;
    if m.magic == 1 {
        // v1 inner offsets are relative to the wrapper: the last inner
        // message carries the wrapper's (absolute) offset.
        let base = m.offset.saturating_sub(last_inner);
        for r in out.iter_mut().skip(first) {
            r.offset = base.saturating_add(r.offset);
        }
    }
    // Records queued before this entry are at or above the start already.
    out.retain(|r| r.offset >= start_offset);
    Ok(m.size)
}
