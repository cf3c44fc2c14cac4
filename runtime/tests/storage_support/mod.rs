//! Builders of log entries for the storage tests: v2 record batches
//! (CRC32C) and v1 messages (CRC32), with offsets already assigned, plus
//! small helpers shared by the `storage_*` test files.
#![allow(dead_code)]

use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::log::{Log, OpenOptions};
use gregor_runtime::storage::record::parse_entry;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A v2 batch of `count` records with `value_len`-byte values, offsets
/// `base..base+count`, stamped with `epoch`; record `i` has timestamp
/// `ts + i`.
pub fn v2_batch(base: i64, count: usize, value_len: usize, epoch: i32, ts: i64) -> Vec<u8> {
    let mut records = Vec::with_capacity(count * (value_len + 8));
    let mut rec = Vec::with_capacity(value_len + 16);
    for i in 0..count {
        rec.clear();
        rec.push(0); // attributes
        put_varint(&mut rec, i as i64); // timestamp delta
        put_varint(&mut rec, i as i64); // offset delta
        put_varint(&mut rec, -1); // no key
        put_varint(&mut rec, value_len as i64);
        rec.extend((0..value_len).map(|k| (base as usize + i + k) as u8));
        put_varint(&mut rec, 0); // no headers
        put_varint(&mut records, rec.len() as i64);
        records.extend_from_slice(&rec);
    }
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // length, patched below
    b.extend_from_slice(&epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(count as i32 - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(ts + count as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&(count as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A v1 message (uncompressed) at `offset` with timestamp `ts`.
pub fn v1_message(offset: i64, value_len: usize, ts: i64) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&0i32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.push(1);
    m.push(0);
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(&(-1i32).to_be_bytes());
    m.extend_from_slice(&(value_len as i32).to_be_bytes());
    m.extend((0..value_len).map(|k| (offset as usize + k) as u8));
    let len = (m.len() - 12) as i32;
    m[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&m[16..]);
    m[12..16].copy_from_slice(&crc.to_be_bytes());
    m
}

/// A temporary directory, on tmpfs when the machine has one: the property
/// tests open and close thousands of logs, and every open and close
/// fsyncs.
pub fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temporary directory")
}

/// A configuration with tiny segments and indexes so tests roll often.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_size_max_bytes: 96,
        index_interval_bytes: 128,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Opens (or creates) a log as the log manager would.
pub fn open_log(dir: &std::path::Path, config: LogConfig, clean: bool, now_ms: i64) -> Log {
    Log::open(
        dir,
        config,
        OpenOptions {
            recovery_point: None,
            log_start: None,
            clean_shutdown: clean,
            now_ms,
        },
    )
    .expect("open log")
}

/// Reads every entry from `from` to the log end, through `read` with the
/// given `max_bytes`; checks each returned entry with `parse_entry`.
/// Returns `(base offset, entry bytes)` pairs.
pub fn read_all(log: &Log, from: i64, max_bytes: usize) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    let mut buf = Vec::new();
    while next < log.log_end() {
        let range = log
            .read(next, max_bytes)
            .expect("read")
            .expect("data below the end");
        buf.clear();
        range.read_into(&mut buf).expect("read range");
        let mut pos = 0;
        assert!(!buf.is_empty());
        while pos < buf.len() {
            let info = parse_entry(&buf[pos..]).expect("read returns only valid entries");
            out.push((info.base_offset, buf[pos..pos + info.size].to_vec()));
            next = info.last_offset + 1;
            pos += info.size;
        }
    }
    out
}
