//! ListOffsets (key 2), v0–v7: earliest, latest, by timestamp through the
//! time index, and (v7) the offset of the largest timestamp (spec: PRO-76).

use bytes::{BufMut, BytesMut};
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::ListOffsetsResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::{Reader, legacy};
use super::super::{HandlerError, encode_body};
use super::topic_name;
use crate::broker::Broker;
use crate::storage::log::LogReader;

/// `ListOffsetsRequest.LATEST_TIMESTAMP`.
pub const LATEST: i64 = -1;
/// `ListOffsetsRequest.EARLIEST_TIMESTAMP`.
pub const EARLIEST: i64 = -2;
/// `ListOffsetsRequest.MAX_TIMESTAMP` (v7+).
pub const MAX_TIMESTAMP: i64 = -3;

/// (partition, error, timestamp, offset) for one requested partition.
type PartitionAnswer = (i32, ErrorCode, i64, i64, i32);

/// Bytes read at a time when scanning for the largest timestamp.
const SCAN_READ_BYTES: usize = 1 << 20;

/// Answers a ListOffsets request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let replica_id = r.i32("replica_id")?;
    if v >= 2 {
        r.i8("isolation_level")?;
    }
    let n = r.array("topics")?;
    let mut request = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let partition = r.i32("partition")?;
            let current_leader_epoch = if v >= 4 {
                r.i32("current_leader_epoch")?
            } else {
                -1
            };
            let timestamp = r.i64("timestamp")?;
            if v == 0 {
                r.i32("max_num_offsets")?;
            }
            r.tagged_fields()?;
            parts.push((partition, current_leader_epoch, timestamp));
        }
        r.tagged_fields()?;
        request.push((name, parts));
    }
    r.tagged_fields()?;
    r.finish()?;

    let results: Vec<(String, Vec<PartitionAnswer>)> = request
        .into_iter()
        .map(|(name, parts)| {
            let outs = parts
                .into_iter()
                .map(|(partition, current_leader_epoch, ts)| {
                    let hosted = (partition >= 0)
                        .then(|| {
                            broker
                                .partitions
                                .hosted(&TopicPartition::new(name.clone(), partition))
                        })
                        .flatten();
                    let Some(hosted) = hosted else {
                        return (partition, ErrorCode::UnknownTopicOrPartition, -1, -1, -1);
                    };
                    // spec: REP-63 — the leader answers, in the epoch the
                    // client names; "latest" is the high watermark for
                    // consumers (read_uncommitted too, as in Kafka).
                    if let Err(e) = hosted.fence(current_leader_epoch) {
                        return (partition, ErrorCode::from(e), -1, -1, -1);
                    }
                    let epoch = hosted.leader_epoch();
                    let latest = if replica_id >= 0 {
                        hosted.reader.log_end()
                    } else {
                        hosted.high_watermark()
                    };
                    match lookup(&hosted.reader, ts, v, latest) {
                        Ok((t, o)) => (partition, ErrorCode::None, t, o, epoch),
                        Err(code) => (partition, code, -1, -1, -1),
                    }
                })
                .collect();
            (name, outs)
        })
        .collect();

    if v == 0 {
        // Version 0 (a list of offsets) is gone from the kafka-protocol crate.
        let mut out = BytesMut::new();
        legacy::put_len(&mut out, results.len());
        for (name, parts) in &results {
            legacy::put_str(&mut out, name);
            legacy::put_len(&mut out, parts.len());
            for &(partition, code, _, offset, _) in parts {
                out.put_i32(partition);
                out.put_i16(code.code());
                if offset >= 0 {
                    legacy::put_len(&mut out, 1);
                    out.put_i64(offset);
                } else {
                    legacy::put_len(&mut out, 0);
                }
            }
        }
        return Ok(Some(out));
    }
    let resp = ListOffsetsResponse::default().with_topics(
        results
            .into_iter()
            .map(|(name, parts): (String, Vec<PartitionAnswer>)| {
                ListOffsetsTopicResponse::default()
                    .with_name(topic_name(name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(partition, code, timestamp, offset, epoch)| {
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(partition)
                                    .with_error_code(code.code())
                                    .with_timestamp(timestamp)
                                    .with_offset(offset)
                                    .with_leader_epoch(if v >= 4 && offset >= 0 {
                                        epoch
                                    } else {
                                        -1
                                    })
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}

/// The (timestamp, offset) answer for one partition.
fn lookup(reader: &LogReader, ts: i64, v: i16, latest: i64) -> Result<(i64, i64), ErrorCode> {
    match ts {
        LATEST => Ok((-1, latest)),
        EARLIEST => Ok((-1, reader.log_start())),
        MAX_TIMESTAMP if v >= 7 => max_timestamp(reader),
        t if t < 0 => Err(ErrorCode::InvalidRequest),
        t => match reader.offset_for_timestamp(t) {
            Ok(Some(hit)) => Ok((hit.timestamp, hit.offset)),
            // No record at or after t: Kafka answers -1/-1 (v1+).
            Ok(None) => Ok((-1, -1)),
            Err(e) => {
                tracing::error!(error = %e, "offset for timestamp failed");
                Err(ErrorCode::KafkaStorageError)
            }
        },
    }
}

/// Scans entry headers for the largest timestamp; returns it with the
/// first offset of the entry holding it (spec: PRO-76).
fn max_timestamp(reader: &LogReader) -> Result<(i64, i64), ErrorCode> {
    let mut best = (-1i64, -1i64);
    let mut offset = reader.log_start();
    let end = reader.log_end();
    let mut buf = Vec::new();
    while offset < end {
        let range = match reader.read(offset, SCAN_READ_BYTES) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(_) => return Err(ErrorCode::KafkaStorageError),
        };
        buf.clear();
        range
            .read_into(&mut buf)
            .map_err(|_| ErrorCode::KafkaStorageError)?;
        let mut pos = 0;
        let mut next = offset;
        while pos < buf.len() {
            let Ok(info) = crate::storage::record::parse_entry(&buf[pos..]) else {
                break;
            };
            if info.max_timestamp > best.0 {
                best = (info.max_timestamp, info.base_offset.max(reader.log_start()));
            }
            next = next.max(info.last_offset + 1);
            pos += info.size;
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(best)
}
