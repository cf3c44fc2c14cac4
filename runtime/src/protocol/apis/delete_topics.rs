//! DeleteTopics (key 20), v0–v4 (spec: PRO-23).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::DeleteTopicsResponse;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::{Reader, legacy};
use super::super::{HandlerError, encode_body};
use super::topic_name;
use crate::broker::Broker;

/// Answers a DeleteTopics request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("topic_names")?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(r.str("topic name")?.to_owned());
    }
    let timeout_ms = r.i32("timeout_ms")?;
    r.tagged_fields()?;
    r.finish()?;

    let timeout = std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    let mut results: Vec<(String, ErrorCode)> = Vec::with_capacity(names.len());
    for name in names {
        // spec: CLU-23 — in ZooKeeper mode, wait until the controller is done.
        let code = match broker.delete_topic_async(&name, timeout).await {
            Ok(_) => ErrorCode::None,
            Err(e) => ErrorCode::from(&e),
        };
        results.push((name, code));
    }

    if v == 0 {
        // Version 0 is gone from the kafka-protocol crate: encode by hand.
        let mut out = BytesMut::new();
        legacy::put_len(&mut out, results.len());
        for (name, code) in &results {
            legacy::put_str(&mut out, name);
            out.put_i16(code.code());
        }
        return Ok(Some(out));
    }
    let resp = DeleteTopicsResponse::default().with_responses(
        results
            .into_iter()
            .map(|(name, code)| {
                DeletableTopicResult::default()
                    .with_name(Some(topic_name(name)))
                    .with_error_code(code.code())
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}
