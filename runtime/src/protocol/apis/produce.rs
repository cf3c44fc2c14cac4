//! Produce (key 0), v0–v9 (spec: PRO-70, PRO-71).
//!
//! v0–v2 carry the seed's v0/v1 messages and are coded by hand; v3+ carry
//! v2 record batches and answer through `kafka-protocol`. Only the leader
//! appends (REP-61). acks=1 is answered once the bytes are in the leader's
//! log; acks=all once the replica's high watermark passes them, or with
//! REQUEST_TIMED_OUT after `timeout_ms` (REP-62); acks=0 gets no response
//! at all. With a single replica the high watermark moves with every
//! append, so acks=all is answered at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::{Reader, legacy};
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::config::TimestampType;
use crate::partition::{AppendOptions, Appended, ProduceWait};
use crate::storage::record::Validator;
use gregor_core::replica::Acks;

/// (partition index, records) as sent.
type PartitionRecords = (i32, Option<Bytes>);

struct PartitionResult {
    index: i32,
    error: ErrorCode,
    message: Option<String>,
    appended: Option<Appended>,
    wait: Option<ProduceWait>,
}

/// A Produce request whose records are appended, waiting for its answer.
#[allow(missing_debug_implementations)]
pub struct Pending {
    v: i16,
    acks: i16,
    timeout_ms: i32,
    results: Vec<(String, Vec<PartitionResult>)>,
}

impl Pending {
    /// True when some partition waits for acks=all replication.
    pub fn waits(&self) -> bool {
        self.results
            .iter()
            .any(|(_, parts)| parts.iter().any(|p| p.wait.is_some()))
    }
}

/// Decodes a Produce request and appends its records (blocking: appends
/// write to the log). [`finish`] waits for acks=all and encodes the answer.
pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Pending, HandlerError> {
    let v = header.api_version;
    if v >= 3 {
        let _transactional_id = r.nullable_str("transactional_id")?;
    }
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout_ms")?;
    let n = r.array("topics")?;
    let mut request: Vec<(String, Vec<PartitionRecords>)> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic name")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let index = r.i32("partition index")?;
            let records = r.nullable_bytes("records")?;
            r.tagged_fields()?;
            parts.push((index, records));
        }
        r.tagged_fields()?;
        request.push((name, parts));
    }
    r.tagged_fields()?;
    r.finish()?;

    let cfg = &broker.config;
    let image = broker.metadata.image();
    let mut validator = Validator::default();
    let mut results: Vec<(String, Vec<PartitionResult>)> = Vec::with_capacity(request.len());
    for (name, parts) in request {
        let topic = image.topics.get(&name);
        let mut out = Vec::with_capacity(parts.len());
        for (index, records) in parts {
            let fail = |error: ErrorCode, message: Option<String>| PartitionResult {
                index,
                error,
                message,
                appended: None,
                wait: None,
            };
            // spec: PRO-83 — internal topics are written by the broker only.
            if name == crate::group::OFFSETS_TOPIC {
                out.push(fail(
                    ErrorCode::InvalidTopicException,
                    Some(format!("cannot append to internal topic {name}")),
                ));
                continue;
            }
            // spec: PRO-71 — checks in Kafka's order.
            let Some(meta) = topic.filter(|m| index >= 0 && index < m.partitions) else {
                out.push(fail(ErrorCode::UnknownTopicOrPartition, None));
                continue;
            };
            if !matches!(acks, -1..=1) {
                out.push(fail(ErrorCode::InvalidRequiredAcks, None));
                continue;
            }
            let min_isr: i32 = meta
                .configs
                .get("min.insync.replicas")
                .and_then(|v| v.parse().ok())
                .unwrap_or(cfg.min_insync_replicas);
            let Some(records) = records.filter(|r| !r.is_empty()) else {
                out.push(fail(
                    ErrorCode::InvalidRecord,
                    Some("empty record set".into()),
                ));
                continue;
            };
            let max_entry_bytes = meta
                .configs
                .get("max.message.bytes")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(cfg.message_max_bytes.max(0) as usize);
            let timestamp_type = match meta
                .configs
                .get("message.timestamp.type")
                .map(String::as_str)
            {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                Some(_) => TimestampType::CreateTime,
                None => cfg.message_timestamp_type,
            };
            let opts = AppendOptions {
                max_entry_bytes,
                timestamp_type,
                require_v2: v >= 3,
            };
            let tp = TopicPartition::new(name.clone(), index);
            // spec: REP-62 — acks=all waits for the core; the topic's
            // min.insync.replicas is checked before appending (a single
            // replica can never satisfy more than one, PRO-71).
            let mode = if acks == -1 { Acks::All } else { Acks::Leader };
            let min_isr = usize::try_from(min_isr).unwrap_or(1).max(1);
            match broker
                .partitions
                .produce(&tp, &records, opts, &mut validator, mode, min_isr)
            {
                Ok(produced) => out.push(PartitionResult {
                    index,
                    error: ErrorCode::None,
                    message: None,
                    appended: Some(produced.appended),
                    wait: produced.wait,
                }),
                Err(e) => {
                    let code = ErrorCode::from(&e);
                    tracing::debug!(partition = %tp, error = %e, "produce refused");
                    out.push(fail(code, Some(e.to_string())));
                }
            }
        }
        results.push((name, out));
    }
    Ok(Pending {
        v,
        acks,
        timeout_ms,
        results,
    })
}

/// Waits (at most `timeout_ms`) for the acks=all answers of a Produce
/// request and encodes its response (spec: REP-62).
pub async fn finish(mut pending: Pending) -> Result<Option<BytesMut>, HandlerError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(pending.timeout_ms.max(0) as u64);
    for (name, parts) in &mut pending.results {
        for p in parts.iter_mut() {
            let Some(wait) = p.wait.take() else { continue };
            let outcome = tokio::time::timeout_at(deadline, wait).await;
            let error = match outcome {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(e))) => ErrorCode::from(e),
                // The partition went away with the request waiting.
                Ok(Err(_)) => ErrorCode::NotLeaderOrFollower,
                Err(_) => ErrorCode::RequestTimedOut,
            };
            tracing::debug!(topic = %name, partition = p.index, ?error, "acks=all produce failed");
            p.error = error;
            p.message = None;
            p.appended = None;
        }
    }
    finish_now(pending)
}

/// Encodes the response of a Produce request with nothing (left) to wait
/// for.
pub fn finish_now(pending: Pending) -> Result<Option<BytesMut>, HandlerError> {
    let Pending {
        v, acks, results, ..
    } = pending;
    if acks == 0 {
        // spec: PRO-70 — acks=0 is never answered, even on error.
        return Ok(None);
    }
    if v < 3 {
        return Ok(Some(encode_legacy(v, &results)));
    }
    let resp = ProduceResponse::default().with_responses(
        results
            .into_iter()
            .map(|(name, parts)| {
                TopicProduceResponse::default()
                    .with_name(topic_name(name))
                    .with_partition_responses(
                        parts
                            .into_iter()
                            .map(|p| {
                                let a = p.appended;
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(p.error.code())
                                    .with_base_offset(a.map_or(-1, |a| a.base_offset))
                                    .with_log_append_time_ms(a.map_or(-1, |a| a.log_append_time))
                                    .with_log_start_offset(a.map_or(-1, |a| a.log_start_offset))
                                    .with_error_message(p.message.map(sb))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}

/// Produce responses v0–v2, which the `kafka-protocol` crate no longer has.
fn encode_legacy(v: i16, results: &[(String, Vec<PartitionResult>)]) -> BytesMut {
    let mut out = BytesMut::new();
    legacy::put_len(&mut out, results.len());
    for (name, parts) in results {
        legacy::put_str(&mut out, name);
        legacy::put_len(&mut out, parts.len());
        for p in parts {
            out.put_i32(p.index);
            out.put_i16(p.error.code());
            out.put_i64(p.appended.map_or(-1, |a| a.base_offset));
            if v >= 2 {
                out.put_i64(p.appended.map_or(-1, |a| a.log_append_time));
            }
        }
    }
    if v >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    out
}
