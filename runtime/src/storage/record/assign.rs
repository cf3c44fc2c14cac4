//! Offset assignment on the leader (spec: STO-23 … STO-25).
//!
//! For v2 batches only `baseOffset` and `partitionLeaderEpoch` change, both
//! outside the CRC: no record is touched. Log-append time also sets the
//! timestamp-type bit and `maxTimestamp`, which the CRC covers, so the CRC
//! is recomputed. Legacy messages each get their offset; compressed v1
//! wrappers get the offset of their last inner message, and wrappers whose
//! inner offsets cannot stay as they are (every v0 wrapper, v1 wrappers
//! whose inner offsets are not `0..n-1`) are rebuilt.

use super::compression::{Codec, DEFAULT_MAX_DECOMPRESSED_BYTES, compress, decompress};
use super::legacy::{self, for_each_inner, write_message};
use super::v2::{self, BatchHeader};
use super::{LOG_OVERHEAD, NO_TIMESTAMP, RecordError, TimestampType, frame_entry};

/// What [`assign_offsets`] gave a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssignedOffsets {
    /// Offset of the first record (the `base_offset` passed in).
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest timestamp, as a time index records it (the append time under
    /// log-append time; [`NO_TIMESTAMP`] for v0).
    pub max_timestamp: i64,
    /// Legacy wrappers that had to be decompressed and rebuilt.
    pub rebuilt_entries: u32,
}

/// Assigns offsets from `base_offset` to every record of a validated
/// produce payload, stamping v2 batches with `leader_epoch`, and applying
/// `log_append_time` when the topic uses log-append time.
///
/// `buf` may change length when a legacy wrapper is rebuilt. The payload
/// must have passed [`super::Validator::validate`]: framing is rechecked so
/// malformed bytes give an error rather than a panic, but v2 checksums are
/// not recomputed here (they were checked once, by the validator).
pub fn assign_offsets(
    buf: &mut Vec<u8>,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Result<AssignedOffsets, RecordError> {
    let mut scratch = Vec::new();
    assign_offsets_with(
        buf,
        base_offset,
        leader_epoch,
        log_append_time,
        &mut scratch,
        DEFAULT_MAX_DECOMPRESSED_BYTES,
    )
}

/// [`assign_offsets`] with a caller-kept decompression buffer and cap.
pub fn assign_offsets_with(
    buf: &mut Vec<u8>,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
) -> Result<AssignedOffsets, RecordError> {
    assign_offsets_impl(
        buf,
        base_offset,
        leader_epoch,
        log_append_time,
        scratch,
        max_decompressed_bytes,
        None,
    )
}

/// The assignment loop; `walked_max` holds, when the validator just ran,
/// the record-walk maximum timestamp of each v2 batch in order.
pub(crate) fn assign_offsets_impl(
    buf: &mut Vec<u8>,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
    walked_max: Option<&[i64]>,
) -> Result<AssignedOffsets, RecordError> {
    if buf.is_empty() {
        return Err(RecordError::InvalidRecord("empty produce payload"));
    }
    if base_offset < 0 {
        return Err(RecordError::Unsupported("negative base offset"));
    }
    let mut next = base_offset;
    let mut max_timestamp = NO_TIMESTAMP;
    let mut rebuilt_entries = 0;
    let mut pos = 0;
    let mut batch_index = 0;
    while pos < buf.len() {
        let (size, magic) = frame_entry(&buf[pos..])?;
        let entry = &mut buf[pos..pos + size];
        let (count, ts, entry_size) = if magic == 2 {
            let walked = walked_max.and_then(|w| w.get(batch_index).copied());
            batch_index += 1;
            let (count, ts) = assign_batch(entry, next, leader_epoch, log_append_time, walked)?;
            (count, ts, size)
        } else {
            let codec = Codec::from_id(entry[legacy::ATTRIBUTES_OFFSET] & 0x07, magic)?;
            if codec == Codec::None {
                let (count, ts) = assign_message(entry, next, log_append_time)?;
                (count, ts, size)
            } else {
                let w = assign_wrapper(
                    buf,
                    pos,
                    next,
                    log_append_time,
                    codec,
                    scratch,
                    max_decompressed_bytes,
                )?;
                rebuilt_entries += u32::from(w.rebuilt);
                (w.count, w.max_timestamp, w.size)
            }
        };
        max_timestamp = max_timestamp.max(ts);
        next = next
            .checked_add(count)
            .ok_or(RecordError::Unsupported("offsets overflow"))?;
        pos += entry_size;
    }
    Ok(AssignedOffsets {
        first_offset: base_offset,
        last_offset: next - 1,
        max_timestamp,
        rebuilt_entries,
    })
}

// spec: STO-23, STO-24 — returns (offsets used, max timestamp).
fn assign_batch(
    entry: &mut [u8],
    base: i64,
    epoch: i32,
    lat: Option<i64>,
    walked_max: Option<i64>,
) -> Result<(i64, i64), RecordError> {
    let h = BatchHeader::read_unchecked(entry);
    if h.last_offset_delta < 0 {
        return Err(RecordError::Corrupt("negative last offset delta"));
    }
    entry[0..8].copy_from_slice(&base.to_be_bytes());
    entry[v2::LEADER_EPOCH_OFFSET..v2::LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    let max_ts = match lat {
        Some(t) => {
            let attrs = h.attributes | i16::from(TimestampType::ATTRIBUTE_BIT);
            entry[v2::ATTRIBUTES_OFFSET..v2::ATTRIBUTES_OFFSET + 2]
                .copy_from_slice(&attrs.to_be_bytes());
            entry[v2::MAX_TIMESTAMP_OFFSET..v2::MAX_TIMESTAMP_OFFSET + 8]
                .copy_from_slice(&t.to_be_bytes());
            v2::rewrite_crc(entry);
            t
        }
        None => match walked_max {
            Some(w) if w != h.max_timestamp && h.timestamp_type() == TimestampType::CreateTime => {
                entry[v2::MAX_TIMESTAMP_OFFSET..v2::MAX_TIMESTAMP_OFFSET + 8]
                    .copy_from_slice(&w.to_be_bytes());
                v2::rewrite_crc(entry);
                w
            }
            _ => h.max_timestamp,
        },
    };
    Ok((i64::from(h.last_offset_delta) + 1, max_ts))
}

// spec: STO-25 — one plain legacy message.
fn assign_message(
    entry: &mut [u8],
    offset: i64,
    lat: Option<i64>,
) -> Result<(i64, i64), RecordError> {
    let m = legacy::parse_message(entry)?;
    let (magic, mut ts) = (m.magic, m.timestamp);
    entry[0..8].copy_from_slice(&offset.to_be_bytes());
    if magic == 1
        && let Some(t) = lat
    {
        entry[legacy::ATTRIBUTES_OFFSET] |= TimestampType::ATTRIBUTE_BIT;
        entry[legacy::TIMESTAMP_OFFSET..legacy::TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&t.to_be_bytes());
        legacy::rewrite_crc(entry);
        ts = t;
    }
    Ok((1, ts))
}

struct Wrapper {
    size: usize,
    count: i64,
    max_timestamp: i64,
    rebuilt: bool,
}

// spec: STO-25 — a compressed legacy wrapper.
fn assign_wrapper(
    buf: &mut Vec<u8>,
    pos: usize,
    base: i64,
    lat: Option<i64>,
    codec: Codec,
    scratch: &mut Vec<u8>,
    max_decompressed_bytes: usize,
) -> Result<Wrapper, RecordError> {
    let m = legacy::parse_message(&buf[pos..])?;
    let Some(value) = m.value else {
        return Err(RecordError::InvalidRecord(
            "compressed message without a value",
        ));
    };
    decompress(codec, value, scratch, max_decompressed_bytes)?;
    let (magic, size) = (m.magic, m.size);
    let mut in_place = true;
    let mut max_inner = NO_TIMESTAMP;
    let mut seen = 0i64;
    let n = for_each_inner(scratch, magic, |_, inner| {
        let want = if magic == 1 {
            seen
        } else {
            base.saturating_add(seen)
        };
        in_place &= inner.offset == want;
        max_inner = max_inner.max(inner.timestamp);
        seen += 1;
        Ok(())
    })? as i64;
    let last = base
        .checked_add(n - 1)
        .ok_or(RecordError::Unsupported("offsets overflow"))?;
    let lat = if magic == 1 { lat } else { None };
    let max_timestamp = lat.unwrap_or(max_inner);
    if in_place {
        let entry = &mut buf[pos..pos + size];
        entry[0..8].copy_from_slice(&last.to_be_bytes());
        if magic == 1 {
            // spec: STO-24 — a v1 wrapper's timestamp is the append time, or
            // under create time the largest inner timestamp (producers
            // often leave it 0).
            let ts_at = legacy::TIMESTAMP_OFFSET..legacy::TIMESTAMP_OFFSET + 8;
            let stored = i64::from_be_bytes(entry[ts_at.clone()].try_into().unwrap_or([0; 8]));
            let attrs = entry[legacy::ATTRIBUTES_OFFSET];
            let new_attrs = if lat.is_some() {
                attrs | TimestampType::ATTRIBUTE_BIT
            } else {
                attrs
            };
            if stored != max_timestamp || new_attrs != attrs {
                entry[legacy::ATTRIBUTES_OFFSET] = new_attrs;
                entry[ts_at].copy_from_slice(&max_timestamp.to_be_bytes());
                legacy::rewrite_crc(entry);
            }
        }
        return Ok(Wrapper {
            size,
            count: n,
            max_timestamp,
            rebuilt: false,
        });
    }
    // Rebuild: rewrite the inner offsets (outside their CRCs), recompress,
    // and write a new wrapper in place of the old one.
    // The walk above checked every inner entry's framing.
    let mut at = 0;
    let mut i = 0i64;
    while at < scratch.len() {
        let (inner_size, _) = frame_entry(&scratch[at..])?;
        let off = if magic == 1 { i } else { base + i };
        scratch[at..at + 8].copy_from_slice(&off.to_be_bytes());
        at += inner_size;
        i += 1;
    }
    let mut attributes = m.attributes;
    let mut wrapper_ts = if magic == 1 { max_inner } else { NO_TIMESTAMP };
    if let Some(t) = lat {
        attributes |= TimestampType::ATTRIBUTE_BIT;
        wrapper_ts = t;
    }
    let key = m.key.map(<[u8]>::to_vec);
    let mut packed = Vec::with_capacity(value.len() + 64);
    compress(codec, magic, scratch, &mut packed)?;
    let mut rebuilt =
        Vec::with_capacity(packed.len() + LOG_OVERHEAD + 34 + key.as_ref().map_or(0, Vec::len));
    write_message(
        &mut rebuilt,
        last,
        magic,
        attributes,
        wrapper_ts,
        key.as_deref(),
        Some(&packed),
    )?;
    let new_size = rebuilt.len();
    buf.splice(pos..pos + size, rebuilt);
    Ok(Wrapper {
        size: new_size,
        count: n,
        max_timestamp,
        rebuilt: true,
    })
}
