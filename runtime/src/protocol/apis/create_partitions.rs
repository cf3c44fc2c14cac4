//! CreatePartitions (key 37), v0–v3: grow a topic's partition count
//! (spec: PRO-24).

use std::collections::BTreeSet;

use bytes::BytesMut;
use kafka_protocol::messages::CreatePartitionsResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;

/// Answers a CreatePartitions request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let n = r.array("topics")?;
    let mut requested = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("name")?.to_owned();
        let count = r.i32("count")?;
        let mut assignment_ok = true;
        if let Some(a) = r.array_len("assignments")? {
            let live = broker.metadata.live_brokers();
            for _ in 0..a {
                let k = r.array("broker_ids")?;
                for _ in 0..k {
                    assignment_ok &= live.contains(&r.i32("broker_id")?);
                }
                r.tagged_fields()?;
            }
        }
        r.tagged_fields()?;
        requested.push((name, count, assignment_ok));
    }
    let timeout_ms = r.i32("timeout_ms")?;
    let validate_only = r.bool("validate_only")?;
    r.tagged_fields()?;
    r.finish()?;

    let timeout = std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    let mut seen = BTreeSet::new();
    let mut results = Vec::with_capacity(requested.len());
    for (name, count, assignment_ok) in requested {
        results.push({
            let (code, msg) = if !seen.insert(name.clone()) {
                (
                    ErrorCode::InvalidRequest,
                    Some("Duplicate topic in request.".to_owned()),
                )
            } else if !assignment_ok {
                (
                    ErrorCode::InvalidReplicaAssignment,
                    Some("Unknown broker id in replica assignment".to_owned()),
                )
            } else {
                match broker
                    .create_partitions_async(&name, count, validate_only, timeout)
                    .await
                {
                    Ok(_) => (ErrorCode::None, None),
                    Err(e) => (ErrorCode::from(&e), Some(e.to_string())),
                }
            };
            CreatePartitionsTopicResult::default()
                .with_name(topic_name(name))
                .with_error_code(code.code())
                .with_error_message(msg.map(sb))
        });
    }
    let resp = CreatePartitionsResponse::default().with_results(results);
    encode_body(&resp, header.api_version).map(Some)
}
