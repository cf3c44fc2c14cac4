//! The produce-path validator (spec: STO-21, STO-22).
//!
//! It checks every entry of a produce payload — framing, magic, checksum,
//! codec — and the framing of every record (spec: STO-90): uncompressed v2
//! records in place, compressed ones after decompressing into a buffer the
//! [`Validator`] keeps between calls. Nothing is allocated per record.

use super::assign::{AssignedOffsets, assign_offsets_impl};
use super::compression::{Codec, DEFAULT_MAX_DECOMPRESSED_BYTES, decompress};
use super::legacy::{self, for_each_inner};
use super::v2::{self, BatchHeader};
use super::{MAGIC_OFFSET, NO_TIMESTAMP, RecordError, TimestampType};

/// The idempotence fields of the v2 batches in a payload (spec: STO-22).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerInfo {
    /// The producer id (≥ 0).
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record of the first batch.
    pub base_sequence: i32,
    /// Sequence of the last record of the last batch (wrapping at
    /// `i32::MAX` as Kafka's sequences do).
    pub last_sequence: i32,
    /// Whether the batches are transactional.
    pub transactional: bool,
}

/// What a valid produce payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValidationSummary {
    /// Entries (v2 batches or legacy messages/wrappers) in the payload.
    pub entries: u32,
    /// Records across all entries (inner messages counted for wrappers).
    pub records: u64,
    /// Largest record timestamp ([`NO_TIMESTAMP`] if none has one).
    pub max_timestamp: i64,
    /// Smallest record timestamp other than [`NO_TIMESTAMP`]
    /// ([`NO_TIMESTAMP`] if none has one). With `max_timestamp` it lets the
    /// broker enforce `message.timestamp.difference.max.ms` on every record.
    pub min_timestamp: i64,
    /// Bit `m` is set when an entry of magic `m` is present.
    pub magic_mask: u8,
    /// Bit `c` is set when an entry uses the codec with id `c`.
    pub codec_mask: u8,
    /// Idempotence fields, when the v2 batches carry a producer id.
    pub producer: Option<ProducerInfo>,
    /// Whether some batch is a control batch (clients never produce one).
    pub has_control: bool,
    /// Whether some entry declares log-append time.
    pub log_append_time: bool,
}

impl ValidationSummary {
    /// Whether the payload contains entries of exactly one magic, and which.
    #[must_use]
    pub fn single_magic(&self) -> Option<u8> {
        match self.magic_mask {
            0b001 => Some(0),
            0b010 => Some(1),
            0b100 => Some(2),
            _ => None,
        }
    }

    /// Whether some entry is compressed with `codec`.
    #[must_use]
    pub fn uses(&self, codec: Codec) -> bool {
        self.codec_mask & (1 << codec.id()) != 0
    }
}

/// Decompression buffer capacity a [`Validator`] keeps between payloads:
/// enough for any ordinary batch (producers default to 16 KiB–1 MiB), so
/// one huge batch does not pin its memory for the connection's lifetime.
pub const SCRATCH_KEEP_BYTES: usize = 4 << 20;

/// Validates produce payloads, keeping its decompression buffer between
/// calls so that the steady state allocates nothing.
#[derive(Debug)]
pub struct Validator {
    /// Decompressed records of the entry being checked, reused.
    scratch: Vec<u8>,
    /// The largest record timestamp of each v2 batch of the last payload,
    /// as the record walk found it (one slot per batch, reused).
    batch_max_timestamps: Vec<i64>,
    /// Cap on one entry's decompressed size (spec: STO-19).
    max_decompressed_bytes: usize,
}

impl Default for Validator {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }
}

/// Validates `payload` with a fresh [`Validator`] and the default
/// decompression cap.
pub fn validate(payload: &[u8]) -> Result<ValidationSummary, RecordError> {
    Validator::default().validate(payload)
}

impl Validator {
    /// A validator refusing entries that decompress beyond
    /// `max_decompressed_bytes` (spec: STO-19).
    #[must_use]
    pub fn new(max_decompressed_bytes: usize) -> Self {
        Validator {
            scratch: Vec::new(),
            batch_max_timestamps: Vec::new(),
            max_decompressed_bytes,
        }
    }

    /// Checks every entry of a produce payload (spec: STO-21) and
    /// summarises it (spec: STO-22). An empty payload is an error.
    pub fn validate(&mut self, payload: &[u8]) -> Result<ValidationSummary, RecordError> {
        let result = self.validate_entries(payload);
        if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
            self.scratch.clear();
            self.scratch.shrink_to(SCRATCH_KEEP_BYTES);
        }
        result
    }

    /// Bytes the decompression buffer holds on to.
    #[cfg(test)]
    pub(crate) fn scratch_capacity(&self) -> usize {
        self.scratch.capacity()
    }

    fn validate_entries(&mut self, payload: &[u8]) -> Result<ValidationSummary, RecordError> {
        if payload.is_empty() {
            return Err(RecordError::InvalidRecord("empty produce payload"));
        }
        let mut s = ValidationSummary {
            entries: 0,
            records: 0,
            max_timestamp: NO_TIMESTAMP,
            min_timestamp: NO_TIMESTAMP,
            magic_mask: 0,
            codec_mask: 0,
            producer: None,
            has_control: false,
            log_append_time: false,
        };
        let mut pos = 0;
        let mut saw_plain_v2 = false;
        self.batch_max_timestamps.clear();
        while pos < payload.len() {
            let rest = &payload[pos..];
            let size = match rest.get(MAGIC_OFFSET) {
                Some(2) => self.validate_batch(rest, &mut s, &mut saw_plain_v2)?,
                _ => self.validate_message(rest, &mut s)?,
            };
            s.entries += 1;
            pos += size;
        }
        Ok(s)
    }

    fn validate_batch(
        &mut self,
        buf: &[u8],
        s: &mut ValidationSummary,
        saw_plain: &mut bool,
    ) -> Result<usize, RecordError> {
        let (h, size) = BatchHeader::parse(buf)?;
        let codec = h.codec()?;
        s.magic_mask |= 1 << 2;
        s.codec_mask |= 1 << codec.id();
        s.has_control |= h.is_control();
        s.log_append_time |= h.timestamp_type() == TimestampType::LogAppendTime;
        // spec: STO-21 — a produced batch holds records n = lastOffsetDelta + 1.
        if h.records_count < 1 {
            return Err(RecordError::InvalidRecord("batch holds no records"));
        }
        if i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1 {
            return Err(RecordError::InvalidRecord(
                "record count is not lastOffsetDelta + 1",
            ));
        }
        let entry = &buf[..size];
        let section = if codec == Codec::None {
            v2::records_section(entry)
        } else {
            decompress(
                codec,
                v2::records_section(entry),
                &mut self.scratch,
                self.max_decompressed_bytes,
            )?;
            &self.scratch[..]
        };
        // spec: STO-90 — one framing pass over the records, no record
        // views, keys and values skipped by their lengths.
        let framing = v2::check_records(section, h.records_count)?;
        let (min_delta, max_delta) = (framing.min_timestamp_delta, framing.max_timestamp_delta);
        let (min_ts, max_ts) = if h.timestamp_type() == TimestampType::LogAppendTime {
            (h.max_timestamp, h.max_timestamp)
        } else {
            (
                h.base_timestamp.saturating_add(min_delta),
                h.base_timestamp.saturating_add(max_delta),
            )
        };
        note_min(s, min_ts);
        s.max_timestamp = s.max_timestamp.max(max_ts);
        self.batch_max_timestamps.push(max_ts);
        s.records += h.records_count as u64;
        self.note_producer(&h, s, saw_plain)?;
        Ok(size)
    }

    /// The produce path in one call: [`Validator::validate`], then
    /// [`super::assign_offsets`] — except that a v2 batch whose
    /// `maxTimestamp` disagrees with its records (under create time) gets
    /// the walked value written back, so that time indexes built from
    /// headers find every record (spec: STO-23).
    pub fn validate_and_assign(
        &mut self,
        buf: &mut Vec<u8>,
        base_offset: i64,
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<(ValidationSummary, AssignedOffsets), RecordError> {
        let summary = self.validate(buf)?;
        let assigned = assign_offsets_impl(
            buf,
            base_offset,
            leader_epoch,
            log_append_time,
            &mut self.scratch,
            self.max_decompressed_bytes,
            Some(&self.batch_max_timestamps),
        )?;
        Ok((summary, assigned))
    }

    // spec: STO-22 — all batches of one payload come from one producer
    // session, with sequences following on.
    fn note_producer(
        &self,
        h: &BatchHeader,
        s: &mut ValidationSummary,
        saw_plain: &mut bool,
    ) -> Result<(), RecordError> {
        let last_sequence = |base: i32| {
            if base < 0 {
                base
            } else {
                ((i64::from(base) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1))
                    as i32
            }
        };
        if h.producer_id < 0 {
            if s.producer.is_some() {
                return Err(RecordError::InvalidRecord(
                    "batches with and without a producer id in one payload",
                ));
            }
            *saw_plain = true;
            return Ok(());
        }
        if *saw_plain {
            return Err(RecordError::InvalidRecord(
                "batches with and without a producer id in one payload",
            ));
        }
        match &mut s.producer {
            None => {
                s.producer = Some(ProducerInfo {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    base_sequence: h.base_sequence,
                    last_sequence: last_sequence(h.base_sequence),
                    transactional: h.is_transactional(),
                });
            }
            Some(p) => {
                if p.producer_id != h.producer_id
                    || p.producer_epoch != h.producer_epoch
                    || p.transactional != h.is_transactional()
                {
                    return Err(RecordError::InvalidRecord(
                        "batches of different producers in one payload",
                    ));
                }
                p.last_sequence = last_sequence(h.base_sequence);
            }
        }
        Ok(())
    }

    fn validate_message(
        &mut self,
        buf: &[u8],
        s: &mut ValidationSummary,
    ) -> Result<usize, RecordError> {
        let m = legacy::parse_message(buf)?;
        let codec = m.codec()?;
        s.magic_mask |= 1 << m.magic;
        s.codec_mask |= 1 << codec.id();
        let lat = m.timestamp_type() == TimestampType::LogAppendTime;
        s.log_append_time |= lat;
        if codec == Codec::None {
            s.records += 1;
            s.max_timestamp = s.max_timestamp.max(m.timestamp);
            note_min(s, m.timestamp);
            return Ok(m.size);
        }
        // spec: STO-20 — a wrapper's value is a compressed set of plain
        // messages of its own magic.
        let Some(value) = m.value else {
            return Err(RecordError::InvalidRecord(
                "compressed message without a value",
            ));
        };
        decompress(codec, value, &mut self.scratch, self.max_decompressed_bytes)?;
        let mut max_inner = NO_TIMESTAMP;
        let mut min_inner = NO_TIMESTAMP;
        let n = for_each_inner(&self.scratch, m.magic, |_, inner| {
            max_inner = max_inner.max(inner.timestamp);
            if inner.timestamp != NO_TIMESTAMP
                && (min_inner == NO_TIMESTAMP || inner.timestamp < min_inner)
            {
                min_inner = inner.timestamp;
            }
            Ok(())
        })?;
        s.records += n as u64;
        s.max_timestamp = s
            .max_timestamp
            .max(if lat { m.timestamp } else { max_inner });
        note_min(s, if lat { m.timestamp } else { min_inner });
        Ok(m.size)
    }
}

/// Lowers the summary's minimum timestamp to `ts`, unless `ts` is "none".
fn note_min(s: &mut ValidationSummary, ts: i64) {
    if ts != NO_TIMESTAMP && (s.min_timestamp == NO_TIMESTAMP || ts < s.min_timestamp) {
        s.min_timestamp = ts;
    }
}
