//! Building entries of every format and codec (spec: STO-27), for the
//! native client, format conversion and tests.

use super::compression::{Codec, compress};
use super::legacy::write_message;
use super::v2::{self, CONTROL_BIT, TRANSACTIONAL_BIT};
use super::varint::{varint_len, varlong_len, write_varint, write_varlong};
use super::{LOG_OVERHEAD, NO_TIMESTAMP, RecordError, TimestampType, V2_HEADER_LEN};

/// A header as the builder takes it: key and value (`None` = null).
pub type HeaderRef<'a> = (&'a str, Option<&'a [u8]>);

/// Accumulates records and builds one entry from them: a v2 batch, a
/// compressed legacy wrapper, or (uncompressed legacy) a run of plain
/// messages, one per record.
///
/// ```
/// use gregor_runtime::storage::record::{BatchBuilder, Codec, decode_records};
///
/// let mut b = BatchBuilder::new(2, Codec::Lz4, 0).unwrap();
/// b.append(1_700_000_000_000, Some(b"k"), Some(b"v"), &[("trace", Some(b"1"))]).unwrap();
/// let bytes = b.build().unwrap();
/// let records = decode_records(&bytes, 0).unwrap();
/// assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]));
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    magic: u8,
    codec: Codec,
    timestamp_type: TimestampType,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    /// Offset the next [`BatchBuilder::append`] gets.
    next_offset: i64,
    /// Offset of the first record, once there is one.
    first_offset: Option<i64>,
    /// Offset of the last record appended.
    last_offset: i64,
    first_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    /// v2: the encoded records. Legacy: the messages (inner messages when
    /// compressed), uncompressed.
    body: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for an entry of `magic` (0, 1 or 2) compressed with
    /// `codec`, whose first record gets `base_offset`. zstd needs magic 2.
    pub fn new(magic: u8, codec: Codec, base_offset: i64) -> Result<Self, RecordError> {
        if magic > 2 {
            return Err(RecordError::UnknownMagic(magic));
        }
        if base_offset < 0 {
            return Err(RecordError::Unsupported("negative offset"));
        }
        if !codec.supported_by(magic) {
            return Err(RecordError::UnsupportedCodec {
                magic,
                codec: codec.id(),
            });
        }
        Ok(BatchBuilder {
            magic,
            codec,
            timestamp_type: TimestampType::CreateTime,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            next_offset: base_offset,
            first_offset: None,
            last_offset: base_offset.saturating_sub(1),
            first_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
            count: 0,
            body: Vec::new(),
        })
    }

    /// Sets the timestamp type (ignored for v0, which has no timestamps).
    #[must_use]
    pub fn timestamp_type(mut self, t: TimestampType) -> Self {
        self.timestamp_type = t;
        self
    }

    /// Sets the idempotence fields of a v2 batch.
    #[must_use]
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the partition leader epoch of a v2 batch.
    #[must_use]
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Marks a v2 batch transactional (attribute bit 4).
    #[must_use]
    pub fn transactional(mut self, on: bool) -> Self {
        self.transactional = on;
        self
    }

    /// Marks a v2 batch as holding control records (attribute bit 5).
    #[must_use]
    pub fn control(mut self, on: bool) -> Self {
        self.control = on;
        self
    }

    /// Records appended so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether nothing was appended.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The magic this builder writes.
    #[must_use]
    pub fn magic(&self) -> u8 {
        self.magic
    }

    /// Appends a record at the next offset, returning that offset. Headers
    /// need magic 2.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> Result<i64, RecordError> {
        let offset = self.next_offset;
        self.append_with_offset(offset, timestamp, key, value, headers)?;
        Ok(offset)
    }

    /// Appends a record at `offset`, which must be above the previous
    /// record's (gaps are allowed, as compaction leaves them).
    pub fn append_with_offset(
        &mut self,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> Result<(), RecordError> {
        if self.magic < 2 && !headers.is_empty() {
            return Err(RecordError::Unsupported("record headers need magic 2"));
        }
        if offset < 0 || (self.first_offset.is_some() && offset <= self.last_offset) {
            return Err(RecordError::Unsupported("record offsets must increase"));
        }
        let first = *self.first_offset.get_or_insert(offset);
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        if self.count == i32::MAX {
            return Err(RecordError::Unsupported("too many records in one batch"));
        }
        let timestamp = if self.magic == 0 {
            NO_TIMESTAMP
        } else {
            timestamp
        };
        match self.magic {
            2 => {
                let delta = i32::try_from(offset - first)
                    .map_err(|_| RecordError::Unsupported("offset delta beyond i32"))?;
                let ts_delta = timestamp.wrapping_sub(self.first_timestamp);
                write_record(&mut self.body, delta, ts_delta, key, value, headers)?;
            }
            magic if self.codec == Codec::None => {
                let attrs = if magic == 1 && self.timestamp_type == TimestampType::LogAppendTime {
                    TimestampType::ATTRIBUTE_BIT
                } else {
                    0
                };
                write_message(&mut self.body, offset, magic, attrs, timestamp, key, value)?;
            }
            magic => {
                // spec: STO-20 — v1 inner offsets relative, v0 absolute.
                let inner = if magic == 1 { offset - first } else { offset };
                write_message(&mut self.body, inner, magic, 0, timestamp, key, value)?;
            }
        }
        self.count += 1;
        self.last_offset = offset;
        self.next_offset = offset.saturating_add(1);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Builds the entry (or, for uncompressed legacy, the run of messages).
    pub fn build(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(self.body.len() + V2_HEADER_LEN + 64);
        self.build_into(&mut out)?;
        Ok(out)
    }

    /// Appends the built entry to `out`.
    pub fn build_into(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        if self.count == 0 {
            return Err(RecordError::Unsupported(
                "an entry needs at least one record",
            ));
        }
        let first = self.first_offset.unwrap_or(self.next_offset);
        match self.magic {
            2 => self.build_v2(first, out),
            _ if self.codec == Codec::None => {
                out.extend_from_slice(&self.body);
                Ok(())
            }
            magic => {
                let mut packed = Vec::with_capacity(self.body.len() / 2 + 64);
                compress(self.codec, magic, &self.body, &mut packed)?;
                let mut attrs = self.codec.id();
                if magic == 1 && self.timestamp_type == TimestampType::LogAppendTime {
                    attrs |= TimestampType::ATTRIBUTE_BIT;
                }
                write_message(
                    out,
                    self.last_offset,
                    magic,
                    attrs,
                    self.max_timestamp,
                    None,
                    Some(&packed),
                )
            }
        }
    }

    // spec: STO-12, STO-13, STO-27
    fn build_v2(&self, first: i64, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let start = out.len();
        out.resize(start + V2_HEADER_LEN, 0);
        compress(self.codec, 2, &self.body, out)?;
        let total = out.len() - start;
        let batch_length = i32::try_from(total - LOG_OVERHEAD)
            .map_err(|_| RecordError::Unsupported("batch larger than 2 GiB"))?;
        let mut attrs = i16::from(self.codec.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attrs |= i16::from(TimestampType::ATTRIBUTE_BIT);
        }
        if self.transactional {
            attrs |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attrs |= CONTROL_BIT;
        }
        let last_delta = i32::try_from(self.last_offset - first)
            .map_err(|_| RecordError::Unsupported("offset delta beyond i32"))?;
        let h = &mut out[start..start + V2_HEADER_LEN];
        h[0..8].copy_from_slice(&first.to_be_bytes());
        h[8..12].copy_from_slice(&batch_length.to_be_bytes());
        h[v2::LEADER_EPOCH_OFFSET..v2::LEADER_EPOCH_OFFSET + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        h[super::MAGIC_OFFSET] = 2;
        h[v2::ATTRIBUTES_OFFSET..v2::ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        h[v2::LAST_OFFSET_DELTA_OFFSET..v2::LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&last_delta.to_be_bytes());
        h[v2::BASE_TIMESTAMP_OFFSET..v2::BASE_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&self.first_timestamp.to_be_bytes());
        h[v2::MAX_TIMESTAMP_OFFSET..v2::MAX_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[v2::PRODUCER_ID_OFFSET..v2::PRODUCER_ID_OFFSET + 8]
            .copy_from_slice(&self.producer_id.to_be_bytes());
        h[v2::PRODUCER_EPOCH_OFFSET..v2::PRODUCER_EPOCH_OFFSET + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[v2::BASE_SEQUENCE_OFFSET..v2::BASE_SEQUENCE_OFFSET + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        h[v2::RECORDS_COUNT_OFFSET..v2::RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&self.count.to_be_bytes());
        v2::rewrite_crc(&mut out[start..]);
        Ok(())
    }
}

fn len_bytes_size(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(b.len() as i32) + b.len(),
    }
}

fn write_len_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varint(out, -1),
        Some(b) => {
            write_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

/// Appends one v2 record (spec: STO-15).
pub fn write_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderRef<'_>],
) -> Result<(), RecordError> {
    let too_big = || RecordError::Unsupported("record field larger than 2 GiB");
    for b in [key, value].into_iter().flatten().chain(
        headers
            .iter()
            .flat_map(|(k, v)| [Some(k.as_bytes()), *v])
            .flatten(),
    ) {
        i32::try_from(b.len()).map_err(|_| too_big())?;
    }
    let header_count = i32::try_from(headers.len()).map_err(|_| too_big())?;
    let body = 1
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + len_bytes_size(key)
        + len_bytes_size(value)
        + varint_len(header_count)
        + headers
            .iter()
            .map(|(k, v)| len_bytes_size(Some(k.as_bytes())) + len_bytes_size(*v))
            .sum::<usize>();
    let body_len = i32::try_from(body).map_err(|_| too_big())?;
    out.reserve(body + 5);
    write_varint(out, body_len);
    let at = out.len();
    out.push(0);
    write_varlong(out, timestamp_delta);
    write_varint(out, offset_delta);
    write_len_bytes(out, key);
    write_len_bytes(out, value);
    write_varint(out, header_count);
    for (k, v) in headers {
        write_len_bytes(out, Some(k.as_bytes()));
        write_len_bytes(out, *v);
    }
    debug_assert_eq!(
        out.len() - at,
        body,
        "record size computed ahead must match what was written"
    );
    Ok(())
}
