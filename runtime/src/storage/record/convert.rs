//! Format conversion for Fetch (spec: STO-28, STO-29).
//!
//! Old clients (Fetch v0–v3) understand only legacy messages; librdkafka
//! misreads legacy messages inside flexible Fetch responses (v12+), so
//! those must only ever see v2 batches (see `compat.md`). Offsets are kept
//! exactly; a truncated entry at the end of the input (a Fetch read cut at
//! its byte limit) is dropped.

use std::collections::VecDeque;

use super::builder::BatchBuilder;
use super::compression::Codec;
use super::decode::{Record, decode_entry};
use super::legacy;
use super::v2::BatchHeader;
use super::{RecordError, TimestampType, frame_entry};

fn entry_codec(entry: &[u8], magic: u8) -> Result<Codec, RecordError> {
    if magic == 2 {
        BatchHeader::parse(entry)?.0.codec()
    } else {
        legacy::parse_message(entry)?.codec()
    }
}

fn rebuild(
    records: &VecDeque<Record>,
    magic: u8,
    codec: Codec,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let Some(first) = records.front() else {
        return Ok(());
    };
    let mut b = BatchBuilder::new(magic, codec, first.offset)?.timestamp_type(first.timestamp_type);
    for r in records {
        b.append_with_offset(
            r.offset,
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &[],
        )?;
    }
    b.build_into(out)
}

/// Converts the entries of `buf` to legacy messages of `target_magic` (0 or
/// 1), appending them to `out` (spec: STO-28).
///
/// Entries already at or below the target magic are copied unchanged. A
/// v2 batch becomes one legacy entry with the batch's codec — a compressed
/// batch becomes a compressed wrapper, so the bytes on the wire stay small
/// — except zstd, which legacy formats lack: those batches are converted
/// uncompressed. Headers are dropped, control batches are skipped, and v1
/// → v0 drops timestamps.
pub fn down_convert(
    buf: &[u8],
    target_magic: u8,
    out: &mut Vec<u8>,
    max_decompressed_bytes: usize,
) -> Result<(), RecordError> {
    if target_magic > 1 {
        return Err(RecordError::Unsupported(
            "down-conversion targets magic 0 or 1",
        ));
    }
    let mut scratch = Vec::new();
    let mut records = VecDeque::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let (size, magic) = match frame_entry(rest) {
            Ok(f) => f,
            Err(RecordError::Truncated { .. }) => break,
            Err(e) => return Err(e),
        };
        if magic <= target_magic {
            super::parse_entry(rest)?;
            out.extend_from_slice(&rest[..size]);
        } else {
            let mut codec = entry_codec(rest, magic)?;
            if !codec.supported_by(target_magic) {
                codec = Codec::None;
            }
            records.clear();
            decode_entry(
                rest,
                i64::MIN,
                &mut scratch,
                max_decompressed_bytes,
                &mut records,
            )?;
            rebuild(&records, target_magic, codec, out)?;
        }
        pos += size;
    }
    Ok(())
}

/// Converts the entries of `buf` to v2 batches, appending them to `out`
/// (spec: STO-29).
///
/// v2 batches are copied unchanged. A compressed legacy wrapper becomes one
/// v2 batch with the same codec; consecutive uncompressed legacy messages
/// of the same timestamp type are gathered into one uncompressed batch.
/// Converted batches carry no producer id and leader epoch -1; v0 records
/// get no timestamp (-1).
pub fn up_convert(
    buf: &[u8],
    out: &mut Vec<u8>,
    max_decompressed_bytes: usize,
) -> Result<(), RecordError> {
    let mut scratch = Vec::new();
    let mut records = VecDeque::new();
    let mut run: Option<BatchBuilder> = None;
    // A run shares one timestamp type and, under log-append time, one
    // timestamp: a v2 batch has a single append time.
    let mut run_key = (TimestampType::CreateTime, 0);
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let (size, magic) = match frame_entry(rest) {
            Ok(f) => f,
            Err(RecordError::Truncated { .. }) => break,
            Err(e) => return Err(e),
        };
        if magic == 2 {
            super::parse_entry(rest)?;
            if let Some(b) = run.take() {
                b.build_into(out)?;
            }
            out.extend_from_slice(&rest[..size]);
            pos += size;
            continue;
        }
        let m = legacy::parse_message(rest)?;
        let codec = m.codec()?;
        if codec == Codec::None {
            let t = m.timestamp_type();
            let key = (
                t,
                if t == TimestampType::LogAppendTime {
                    m.timestamp
                } else {
                    0
                },
            );
            if let Some(b) = run.take_if(|_| run_key != key) {
                b.build_into(out)?;
            }
            let b = match &mut run {
                Some(b) => b,
                None => {
                    run_key = key;
                    run.insert(BatchBuilder::new(2, Codec::None, m.offset)?.timestamp_type(t))
                }
            };
            b.append_with_offset(m.offset, m.timestamp, m.key, m.value, &[])?;
        } else {
            if let Some(b) = run.take() {
                b.build_into(out)?;
            }
            records.clear();
            decode_entry(
                rest,
                i64::MIN,
                &mut scratch,
                max_decompressed_bytes,
                &mut records,
            )?;
            rebuild(&records, 2, codec, out)?;
        }
        pos += size;
    }
    if let Some(b) = run.take() {
        b.build_into(out)?;
    }
    Ok(())
}
