//! v2 record batches, magic 2 (spec: STO-12, STO-13, STO-15).
//!
//! ```text
//! baseOffset            i64  ┐ log overhead (STO-10)
//! batchLength           i32  ┘
//! partitionLeaderEpoch  i32     bytes 12..16, outside the CRC
//! magic                 i8      byte 16
//! crc                   u32     CRC32C of attributes .. end
//! attributes            i16     codec 0-2, timestamp type 3, transactional 4, control 5
//! lastOffsetDelta       i32
//! baseTimestamp         i64
//! maxTimestamp          i64
//! producerId            i64
//! producerEpoch         i16
//! baseSequence          i32
//! recordsCount          i32
//! records               (compressed as a whole when the codec is set)
//! ```
//!
//! A record: `length` varint (bytes after it), `attributes` i8 (unused),
//! `timestampDelta` varlong, `offsetDelta` varint, key (varint length,
//! -1 null) and bytes, value likewise, header count varint, then headers of
//! a varint-length UTF-8 key (never null) and a varint-length value (-1 null).

use super::compression::Codec;
use super::varint::{read_varint, read_varlong};
use super::{RecordError, TimestampType, V2_HEADER_LEN, be_i32, be_i64, be_u32, parse_entry};

/// Position of `partitionLeaderEpoch`.
pub const LEADER_EPOCH_OFFSET: usize = 12;
/// Position of the CRC.
pub const CRC_OFFSET: usize = 17;
/// Position of `attributes`; the CRC covers from here to the end.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Position of `lastOffsetDelta`.
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Position of `baseTimestamp`.
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
/// Position of `maxTimestamp`.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Position of `producerId`.
pub const PRODUCER_ID_OFFSET: usize = 43;
/// Position of `producerEpoch`.
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
/// Position of `baseSequence`.
pub const BASE_SEQUENCE_OFFSET: usize = 53;
/// Position of `recordsCount`.
pub const RECORDS_COUNT_OFFSET: usize = 57;

/// Attribute bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attribute bit 5: the batch holds control records (transaction markers).
pub const CONTROL_BIT: i16 = 0x20;
/// The smallest possible record body (after its length varint):
/// attributes, timestamp delta, offset delta, key length, value length and
/// header count, one byte each.
pub const MIN_RECORD_BODY: usize = 6;

/// The fixed header of a v2 batch (spec: STO-12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// The stored CRC32C.
    pub crc: u32,
    /// The attributes (spec: STO-13).
    pub attributes: i16,
    /// Last offset minus base offset.
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to.
    pub base_timestamp: i64,
    /// Largest record timestamp, or the append time under log-append time.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header of the v2 batch at the start of `buf` after checking
    /// its framing and CRC with [`parse_entry`]. Returns the header and the
    /// batch's total size.
    pub fn parse(buf: &[u8]) -> Result<(BatchHeader, usize), RecordError> {
        let info = parse_entry(buf)?;
        if info.magic != 2 {
            return Err(RecordError::Corrupt(
                "expected a v2 batch, found a legacy message",
            ));
        }
        Ok((Self::read_unchecked(buf), info.size))
    }

    /// Reads the header fields without any check; `buf` must hold at least
    /// [`V2_HEADER_LEN`] bytes.
    pub(crate) fn read_unchecked(buf: &[u8]) -> BatchHeader {
        BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_OFFSET),
            crc: be_u32(buf, CRC_OFFSET),
            attributes: i16::from_be_bytes([buf[ATTRIBUTES_OFFSET], buf[ATTRIBUTES_OFFSET + 1]]),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: i16::from_be_bytes([
                buf[PRODUCER_EPOCH_OFFSET],
                buf[PRODUCER_EPOCH_OFFSET + 1],
            ]),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        }
    }

    /// The codec of the records section (spec: STO-16).
    pub fn codec(&self) -> Result<Codec, RecordError> {
        Codec::from_id((self.attributes & 0x07) as u8, 2)
    }

    /// The timestamp type (attribute bit 3).
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        TimestampType::from_attributes(self.attributes as u8)
    }

    /// Attribute bit 4.
    #[must_use]
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attribute bit 5.
    #[must_use]
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The last offset of the batch.
    #[must_use]
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
}

/// One record of a v2 batch, borrowed from the (decompressed) records
/// section (spec: STO-15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record attributes (no bits are defined).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// The key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// The value, `None` when null.
    pub value: Option<&'a [u8]>,
    /// Number of headers.
    pub header_count: i32,
    /// The encoded headers; iterate them with [`HeaderIter`].
    pub headers: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The headers as `(key, value)` pairs.
    #[must_use]
    pub fn header_iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            buf: self.headers,
            pos: 0,
            remaining: self.header_count,
        }
    }
}

fn read_len_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, RecordError> {
    let len = read_varint(buf, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let Some(bytes) = usize::try_from(len)
        .ok()
        .and_then(|l| buf.get(*pos..pos.checked_add(l)?))
    else {
        return Err(RecordError::Corrupt(
            "record field length overruns the record",
        ));
    };
    *pos += bytes.len();
    Ok(Some(bytes))
}

/// Parses one record body (the bytes after its length varint), which must
/// be consumed exactly (spec: STO-15).
fn parse_record(body: &[u8]) -> Result<RecordView<'_>, RecordError> {
    let Some(&attributes) = body.first() else {
        return Err(RecordError::Corrupt("empty record"));
    };
    let mut pos = 1;
    let timestamp_delta = read_varlong(body, &mut pos)?;
    let offset_delta = read_varint(body, &mut pos)?;
    let key = read_len_bytes(body, &mut pos)?;
    let value = read_len_bytes(body, &mut pos)?;
    let header_count = read_varint(body, &mut pos)?;
    if header_count < 0 {
        return Err(RecordError::Corrupt("negative header count"));
    }
    let headers_at = pos;
    for _ in 0..header_count {
        match read_len_bytes(body, &mut pos)? {
            None => return Err(RecordError::InvalidRecord("null header key")),
            Some(k) if std::str::from_utf8(k).is_err() => {
                return Err(RecordError::InvalidRecord("header key is not UTF-8"));
            }
            Some(_) => {}
        }
        read_len_bytes(body, &mut pos)?;
    }
    if pos != body.len() {
        return Err(RecordError::Corrupt(
            "record length disagrees with its fields",
        ));
    }
    Ok(RecordView {
        attributes: attributes as i8,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count,
        headers: &body[headers_at..],
    })
}

/// Walks the records of an uncompressed (or decompressed) records section
/// without allocating: each item is a view into `buf`.
///
/// The walk yields exactly `count` records and then checks that they used
/// the section exactly; a record whose length varint disagrees with its
/// fields, or bytes left over, are errors (spec: STO-15, STO-21).
#[derive(Clone, Debug)]
pub struct RecordWalker<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: i32,
    failed: bool,
}

impl<'a> RecordWalker<'a> {
    /// A walk over `count` records in `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8], count: i32) -> Self {
        RecordWalker {
            buf,
            pos: 0,
            remaining: count.max(0),
            failed: false,
        }
    }

    fn step(&mut self) -> Result<RecordView<'a>, RecordError> {
        let len = read_varint(self.buf, &mut self.pos)?;
        let Some(body) = usize::try_from(len)
            .ok()
            .filter(|&l| l >= MIN_RECORD_BODY)
            .and_then(|l| self.buf.get(self.pos..self.pos.checked_add(l)?))
        else {
            return Err(RecordError::Corrupt("record length out of range"));
        };
        self.pos += body.len();
        parse_record(body)
    }
}

impl<'a> Iterator for RecordWalker<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.pos != self.buf.len() {
                self.failed = true;
                return Some(Err(RecordError::Corrupt(
                    "bytes after the last record of a batch",
                )));
            }
            return None;
        }
        self.remaining -= 1;
        let r = self.step();
        self.failed = r.is_err();
        Some(r)
    }
}

/// What the produce-path framing pass ([`check_records`]) learns from the
/// records of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordsFraming {
    /// Smallest `timestampDelta` of the records.
    pub min_timestamp_delta: i64,
    /// Largest `timestampDelta` of the records.
    pub max_timestamp_delta: i64,
}

/// Skips a varint-length byte field (-1 = null) inside one record body.
#[inline]
fn skip_len_bytes(body: &[u8], pos: &mut usize) -> Result<(), RecordError> {
    let len = read_varint(body, pos)?;
    if len == -1 {
        return Ok(());
    }
    match usize::try_from(len)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|&end| end <= body.len())
    {
        Some(end) => {
            *pos = end;
            Ok(())
        }
        None => Err(RecordError::Corrupt(
            "record field length overruns the record",
        )),
    }
}

/// The produce-path check of an uncompressed (or decompressed) records
/// section holding `count` records (spec: STO-90).
///
/// One pass over the framing, nothing allocated and no record built: each
/// record's length varint must cover exactly its fields (attributes,
/// timestamp delta, offset delta, key, value, headers), key and value
/// bytes are skipped by their lengths, offset deltas must be `0..count-1`,
/// header keys must be non-null UTF-8, and the records must use the section
/// exactly. It accepts and rejects exactly what a [`RecordWalker`] with the
/// offset-delta check accepts and rejects, with the same errors.
pub fn check_records(section: &[u8], count: i32) -> Result<RecordsFraming, RecordError> {
    let mut min_ts = i64::MAX;
    let mut max_ts = i64::MIN;
    let mut pos = 0usize;
    for i in 0..count.max(0) {
        let len = read_varint(section, &mut pos)?;
        let Some(body) = usize::try_from(len)
            .ok()
            .filter(|&l| l >= MIN_RECORD_BODY)
            .and_then(|l| section.get(pos..pos.checked_add(l)?))
        else {
            return Err(RecordError::Corrupt("record length out of range"));
        };
        pos += body.len();
        // Byte 0 is the record's attributes, which define no bits.
        let mut at = 1;
        let ts = read_varlong(body, &mut at)?;
        let offset_delta = read_varint(body, &mut at)?;
        skip_len_bytes(body, &mut at)?;
        skip_len_bytes(body, &mut at)?;
        let header_count = read_varint(body, &mut at)?;
        if header_count < 0 {
            return Err(RecordError::Corrupt("negative header count"));
        }
        for _ in 0..header_count {
            match read_len_bytes(body, &mut at)? {
                None => return Err(RecordError::InvalidRecord("null header key")),
                Some(k) if std::str::from_utf8(k).is_err() => {
                    return Err(RecordError::InvalidRecord("header key is not UTF-8"));
                }
                Some(_) => {}
            }
            skip_len_bytes(body, &mut at)?;
        }
        if at != body.len() {
            return Err(RecordError::Corrupt(
                "record length disagrees with its fields",
            ));
        }
        if offset_delta != i {
            return Err(RecordError::InvalidRecord(
                "record offset deltas are not 0..n-1",
            ));
        }
        min_ts = min_ts.min(ts);
        max_ts = max_ts.max(ts);
    }
    if pos != section.len() {
        return Err(RecordError::Corrupt(
            "bytes after the last record of a batch",
        ));
    }
    Ok(RecordsFraming {
        min_timestamp_delta: min_ts,
        max_timestamp_delta: max_ts,
    })
}

/// The headers of one record, as `(key, value)`; keys were checked to be
/// UTF-8 when the record was parsed.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: i32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        // The record parser validated these bytes; a failure here would be a
        // bug, so the iteration just ends.
        let key = read_len_bytes(self.buf, &mut self.pos).ok().flatten()?;
        let value = read_len_bytes(self.buf, &mut self.pos).ok()?;
        Some((std::str::from_utf8(key).ok()?, value))
    }
}

/// Recomputes the CRC32C of the batch `entry` (exactly one entry) after
/// its attributes, timestamps or records changed (spec: STO-12).
pub fn rewrite_crc(entry: &mut [u8]) {
    let crc = crc32c::crc32c(&entry[ATTRIBUTES_OFFSET..]);
    entry[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The records section of the batch `entry`: everything after the header.
#[must_use]
pub fn records_section(entry: &[u8]) -> &[u8] {
    &entry[V2_HEADER_LEN..]
}
