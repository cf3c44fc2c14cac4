//! Fetch (key 1), v0–v12, with long polling (spec: PRO-72 … PRO-75, PRO-77).
//!
//! A fetch that finds fewer than `min_bytes` waits until an append wakes it
//! or `max_wait_ms` passes — it sleeps on a notification, never polls.
//! v0–v3 get v0/v1 messages (v2 batches are converted down); v12 (flexible) never returns v0/v1 messages: legacy
//! entries are converted up (librdkafka ≥ 2.5 misreads them there).
//!
//! Responses are encoded here for every version so that record bytes that
//! need no conversion go out as file ranges with `sendfile(2)`, never
//! copied through user space (spec: PRO-77).
//!
//! Only the leader serves fetches (REP-63). Consumers (`replica_id` -1)
//! read below the high watermark; a follower (`replica_id` ≥ 0) reads up to
//! the log end and its fetch offset reports its progress to the core,
//! which may advance the high watermark and answer acks=all requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gregor_core::ids::TopicPartition;

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, Part};
use crate::broker::Broker;
use crate::storage::error::StorageError;
use crate::storage::record::{self, DEFAULT_MAX_DECOMPRESSED_BYTES};
use crate::storage::segment::FileRange;

/// Longest wait honoured, whatever the client asks: bounds how long a
/// connection's pipeline can be held by one fetch.
pub const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct PartitionReq {
    partition: i32,
    current_leader_epoch: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
}

struct PartitionOut {
    partition: i32,
    error: ErrorCode,
    high_watermark: i64,
    log_start_offset: i64,
    records: Records,
}

/// A partition's records in a response: converted bytes, or a file range
/// to send as it is.
enum Records {
    Bytes(Bytes),
    File(FileRange),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::Bytes(b) => b.len(),
            Records::File(r) => r.len as usize,
        }
    }
}

/// Answers a Fetch request, waiting for data as the request allows.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Vec<Part>, HandlerError> {
    let v = header.api_version;
    let replica_id = r.i32("replica_id")?;
    let max_wait_ms = r.i32("max_wait_ms")?;
    let min_bytes = r.i32("min_bytes")?;
    let max_bytes = if v >= 3 {
        r.i32("max_bytes")?
    } else {
        i32::MAX
    };
    // spec: PRO-73 — the broker's fetch.max.bytes caps every response.
    let max_bytes = max_bytes.min(broker.config.fetch_max_bytes);
    if v >= 4 {
        r.i8("isolation_level")?;
    }
    if v >= 7 {
        r.i32("session_id")?;
        r.i32("session_epoch")?;
    }
    let n = r.array("topics")?;
    let mut topics: Vec<(String, Vec<PartitionReq>)> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let partition = r.i32("partition")?;
            let current_leader_epoch = if v >= 9 {
                r.i32("current_leader_epoch")?
            } else {
                -1
            };
            let fetch_offset = r.i64("fetch_offset")?;
            if v >= 12 {
                r.i32("last_fetched_epoch")?;
            }
            if v >= 5 {
                r.i64("log_start_offset")?;
            }
            let partition_max_bytes = r.i32("partition_max_bytes")?;
            r.tagged_fields()?;
            parts.push(PartitionReq {
                partition,
                current_leader_epoch,
                fetch_offset,
                partition_max_bytes,
            });
        }
        r.tagged_fields()?;
        topics.push((name, parts));
    }
    if v >= 7 {
        for _ in 0..r.array("forgotten_topics_data")? {
            r.str("topic")?;
            for _ in 0..r.array("partitions")? {
                r.i32("partition")?;
            }
            r.tagged_fields()?;
        }
    }
    if v >= 11 {
        r.str("rack_id")?;
    }
    r.tagged_fields()?;
    r.finish()?;

    // spec: PRO-72 — register for wake-ups before each read so that no
    // append is missed; only appends to the partitions fetched wake us.
    let fetched: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|(t, ps)| {
            ps.iter()
                .map(move |p| TopicPartition::new(t.clone(), p.partition))
        })
        .collect();
    let appended = Arc::new(tokio::sync::Notify::new());
    let wait = Duration::from_millis(max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        broker.partitions.wake_on_append(&fetched, &appended);
        let (result, bytes, any_error) = read_all(broker, v, replica_id, &topics, max_bytes);
        if any_error || bytes >= i64::from(min_bytes) || tokio::time::Instant::now() >= deadline {
            break result;
        }
        tokio::select! {
            () = appended.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                break read_all(broker, v, replica_id, &topics, max_bytes).0;
            }
        }
    };
    Ok(encode(v, result))
}

type FetchResult = Vec<(String, Vec<PartitionOut>)>;

/// Reads every requested partition once. Returns the per-partition data,
/// the bytes gathered and whether any partition has an error.
fn read_all(
    broker: &Broker,
    v: i16,
    replica_id: i32,
    topics: &[(String, Vec<PartitionReq>)],
    max_bytes: i32,
) -> (FetchResult, i64, bool) {
    let mut remaining = i64::from(max_bytes.max(0));
    let mut total = 0i64;
    let mut any_error = false;
    let mut out = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut outs = Vec::with_capacity(parts.len());
        for p in parts {
            let tp = TopicPartition::new(name.clone(), p.partition);
            let hosted = (p.partition >= 0)
                .then(|| broker.partitions.hosted(&tp))
                .flatten();
            let Some(hosted) = hosted else {
                any_error = true;
                outs.push(PartitionOut {
                    partition: p.partition,
                    error: ErrorCode::UnknownTopicOrPartition,
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Records::Bytes(Bytes::new()),
                });
                continue;
            };
            let reader = &hosted.reader;
            // spec: REP-63 — a follower reads to the log end and reports its
            // progress; a consumer reads below the high watermark of a
            // leader in the epoch it names.
            let served = if replica_id >= 0 {
                broker
                    .partitions
                    .follower_fetch(
                        &tp,
                        gregor_core::ids::BrokerId(replica_id),
                        p.current_leader_epoch,
                        p.fetch_offset,
                    )
                    .map(|hw| (hw, None))
            } else {
                hosted
                    .fence(p.current_leader_epoch)
                    .map(|()| (hosted.high_watermark(), Some(hosted.high_watermark())))
            };
            let (high_watermark, visible_end) = match served {
                Ok(s) => s,
                Err(e) => {
                    any_error = true;
                    // spec: REP-68 — a follower below the log start learns
                    // where the log starts now.
                    let log_start_offset = match e {
                        gregor_core::replica::FetchError::OffsetOutOfRange { .. } => {
                            reader.log_start()
                        }
                        _ => -1,
                    };
                    outs.push(PartitionOut {
                        partition: p.partition,
                        error: ErrorCode::from(e),
                        high_watermark: -1,
                        log_start_offset,
                        records: Records::Bytes(Bytes::new()),
                    });
                    continue;
                }
            };
            let log_start_offset = reader.log_start();
            let mut error = ErrorCode::None;
            let mut records = Records::Bytes(Bytes::new());
            let above_hw = visible_end
                .is_some_and(|hw| p.fetch_offset >= hw && p.fetch_offset <= reader.log_end());
            // KIP-74: both limits apply, but the first partition with data
            // returns at least one whole batch (the storage read always
            // yields one), so a consumer always makes progress.
            let limit = (p.partition_max_bytes.max(0) as i64).min(remaining.max(0));
            if !above_hw && (total == 0 || limit > 0) {
                let read = reader
                    .read(p.fetch_offset, limit as usize)
                    .and_then(|range| match (range, visible_end) {
                        (Some(range), Some(hw)) if reader.log_end() > hw => trim_below(range, hw),
                        (range, _) => Ok(range),
                    });
                match read {
                    Ok(Some(range)) if !needs_conversion(v, &range) => {
                        records = Records::File(range);
                    }
                    Ok(Some(range)) => {
                        let mut buf = Vec::with_capacity(range.len as usize);
                        match range.read_into(&mut buf) {
                            Ok(()) => match convert_for_version(v, buf) {
                                Ok(bytes) => records = Records::Bytes(bytes),
                                Err(e) => {
                                    tracing::error!(partition = %tp, error = %e, "fetch conversion failed");
                                    error = ErrorCode::UnknownServerError;
                                }
                            },
                            Err(e) => {
                                tracing::error!(partition = %tp, error = %e, "fetch read failed");
                                error = ErrorCode::KafkaStorageError;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(StorageError::OffsetOutOfRange { .. }) => {
                        error = ErrorCode::OffsetOutOfRange;
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "fetch read failed");
                        error = ErrorCode::KafkaStorageError;
                    }
                }
            }
            any_error |= error != ErrorCode::None;
            total += records.len() as i64;
            remaining -= records.len() as i64;
            outs.push(PartitionOut {
                partition: p.partition,
                error,
                high_watermark,
                log_start_offset,
                records,
            });
        }
        out.push((name.clone(), outs));
    }
    (out, total, any_error)
}

/// Cuts a file range before the first entry holding an offset at or above
/// the high watermark: consumers never see uncommitted records (spec:
/// REP-63). Reads only entry headers, and only when the log extends past
/// the high watermark.
fn trim_below(range: FileRange, hw: i64) -> Result<Option<FileRange>, StorageError> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 27];
    let mut pos = 0u64;
    while pos + 17 <= range.len {
        let n = (range.len - pos).min(27) as usize;
        range
            .file
            .read_exact_at(&mut head[..n], range.position + pos)
            .map_err(StorageError::io("read", std::path::Path::new("segment")))?;
        let base = i64::from_be_bytes(head[0..8].try_into().unwrap_or([0; 8]));
        let last = if head[16] >= 2 && n >= 27 {
            base + i64::from(i32::from_be_bytes([head[23], head[24], head[25], head[26]]))
        } else {
            base
        };
        if last >= hw {
            break;
        }
        let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        pos += 12 + size.max(0) as u64;
    }
    let len = pos.min(range.len);
    Ok((len > 0).then_some(FileRange { len, ..range }))
}

/// The magic bytes a Fetch version may carry (spec: PRO-74).
fn allowed_magics(v: i16) -> std::ops::RangeInclusive<u8> {
    match v {
        0 | 1 => 0..=0,
        2 | 3 => 0..=1,
        12.. => 2..=2,
        _ => 0..=2,
    }
}

/// Whether a file range holds an entry this version may not carry; reads
/// only the 17-byte entry headers.
fn needs_conversion(v: i16, range: &FileRange) -> bool {
    use std::os::unix::fs::FileExt;
    let allowed = allowed_magics(v);
    if allowed == (0..=2) {
        return false;
    }
    let mut head = [0u8; 17];
    let mut pos = 0u64;
    while pos + 17 <= range.len {
        if range
            .file
            .read_exact_at(&mut head, range.position + pos)
            .is_err()
        {
            // Let the copying path report the read error.
            return true;
        }
        if !allowed.contains(&head[16]) {
            return true;
        }
        let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        pos += 12 + size.max(0) as u64;
    }
    false
}

/// Whether any entry in `buf` has a magic byte outside `range`.
fn has_magic_outside(buf: &[u8], range: std::ops::RangeInclusive<u8>) -> bool {
    let mut pos = 0;
    while pos + 17 <= buf.len() {
        if !range.contains(&buf[pos + 16]) {
            return true;
        }
        let size = i32::from_be_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
        pos += 12 + size.max(0) as usize;
    }
    false
}

/// Converts log bytes to the record format a Fetch version may carry
/// (spec: PRO-74): v0–1 get magic 0, v2–3 magic ≤ 1, v12 only magic 2.
fn convert_for_version(v: i16, buf: Vec<u8>) -> Result<Bytes, record::RecordError> {
    let mut out = Vec::new();
    match v {
        0 | 1 if has_magic_outside(&buf, 0..=0) => {
            record::down_convert(&buf, 0, &mut out, DEFAULT_MAX_DECOMPRESSED_BYTES)?
        }
        2 | 3 if has_magic_outside(&buf, 0..=1) => {
            record::down_convert(&buf, 1, &mut out, DEFAULT_MAX_DECOMPRESSED_BYTES)?
        }
        12.. if has_magic_outside(&buf, 2..=2) => {
            record::up_convert(&buf, &mut out, DEFAULT_MAX_DECOMPRESSED_BYTES)?
        }
        _ => return Ok(Bytes::from(buf)),
    }
    Ok(Bytes::from(out))
}

/// Encodes a Fetch response body of version `v` (v0–v12), leaving record
/// file ranges as their own parts.
fn encode(v: i16, result: FetchResult) -> Vec<Part> {
    let flexible = v >= 12;
    let mut parts = Vec::new();
    let mut out = BytesMut::new();
    let put_len = |out: &mut BytesMut, n: usize| {
        if flexible {
            put_uvarint(out, n as u32 + 1);
        } else {
            out.put_i32(n as i32);
        }
    };
    if v >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    if v >= 7 {
        out.put_i16(ErrorCode::None.code());
        out.put_i32(0); // session_id: no fetch sessions
    }
    put_len(&mut out, result.len());
    for (name, partitions) in result {
        let name = &name.as_bytes()[..name.len().min(i16::MAX as usize)];
        if flexible {
            put_uvarint(&mut out, name.len() as u32 + 1);
        } else {
            out.put_i16(name.len() as i16);
        }
        out.put_slice(name);
        put_len(&mut out, partitions.len());
        for p in partitions {
            out.put_i32(p.partition);
            out.put_i16(p.error.code());
            out.put_i64(p.high_watermark);
            if v >= 4 {
                out.put_i64(p.high_watermark); // last_stable_offset
            }
            if v >= 5 {
                out.put_i64(p.log_start_offset);
            }
            if v >= 4 {
                // aborted_transactions: null (no transactions)
                if flexible {
                    put_uvarint(&mut out, 0);
                } else {
                    out.put_i32(-1);
                }
            }
            if v >= 11 {
                out.put_i32(-1); // preferred_read_replica
            }
            let len = p.records.len();
            if flexible {
                put_uvarint(&mut out, len as u32 + 1);
            } else {
                out.put_i32(len as i32);
            }
            match p.records {
                Records::Bytes(b) => out.put_slice(&b),
                Records::File(range) => {
                    parts.push(Part::Bytes(std::mem::take(&mut out).freeze()));
                    parts.push(Part::File(range));
                }
            }
            if flexible {
                out.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            out.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        out.put_u8(0); // response tagged fields
    }
    parts.push(Part::Bytes(out.freeze()));
    parts
}

fn put_uvarint(out: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        out.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}
