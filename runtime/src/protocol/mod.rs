//! The Kafka wire protocol: framing, request headers, the ApiVersions table
//! and one handler per API under [`apis`].
//!
//! Requests are decoded by Gregor's own bounds-checked [`wire::Reader`];
//! responses are built and encoded with the `kafka-protocol` crate's types.
//! Behaviour is specified in `spec/protocol.md` (`PRO-n`).

pub mod apis;
pub mod error;
pub mod frame;
pub mod header;
pub mod wire;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::broker::Broker;
use header::RequestHeader;
use wire::{DecodeError, Reader};

/// One API Gregor answers, with its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSpec {
    /// The API.
    pub key: ApiKey,
    /// Lowest version accepted.
    pub min: i16,
    /// Highest version accepted.
    pub max: i16,
    /// First version using the flexible (compact) encoding.
    pub flexible_from: i16,
}

const fn api(key: ApiKey, min: i16, max: i16, flexible_from: i16) -> ApiSpec {
    ApiSpec {
        key,
        min,
        max,
        flexible_from,
    }
}

/// The ApiVersions table: every API with a handler, in api-key order, with
/// the version ranges of a real Kafka release (spec: PRO-10, PRO-11).
pub const SUPPORTED_APIS: &[ApiSpec] = &[
    api(ApiKey::Produce, 0, 9, 9),
    api(ApiKey::Fetch, 0, 12, 12),
    api(ApiKey::ListOffsets, 0, 7, 6),
    api(ApiKey::Metadata, 0, 12, 9),
    // spec: GRP-106 — group APIs from version 0 (compat.md).
    api(ApiKey::OffsetCommit, 0, 8, 8),
    api(ApiKey::OffsetFetch, 0, 8, 6),
    api(ApiKey::FindCoordinator, 0, 4, 3),
    api(ApiKey::JoinGroup, 0, 7, 6),
    api(ApiKey::Heartbeat, 0, 4, 4),
    api(ApiKey::LeaveGroup, 0, 4, 4),
    api(ApiKey::SyncGroup, 0, 5, 4),
    api(ApiKey::DescribeGroups, 0, 5, 5),
    api(ApiKey::ListGroups, 0, 4, 3),
    api(ApiKey::ApiVersions, 0, 3, 3),
    api(ApiKey::CreateTopics, 0, 5, 5),
    api(ApiKey::DeleteTopics, 0, 4, 4),
    api(ApiKey::DeleteRecords, 0, 2, 2),
    api(ApiKey::InitProducerId, 0, 4, 2),
    api(ApiKey::OffsetForLeaderEpoch, 0, 4, 4),
    api(ApiKey::DescribeConfigs, 0, 4, 4),
    api(ApiKey::AlterConfigs, 0, 2, 2),
    api(ApiKey::DescribeLogDirs, 0, 4, 2),
    api(ApiKey::CreatePartitions, 0, 3, 2),
    api(ApiKey::DeleteGroups, 0, 2, 2),
    api(ApiKey::ElectLeaders, 0, 2, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2, 0),
];

/// Looks up the entry for a raw api key.
pub fn supported(api_key: i16) -> Option<&'static ApiSpec> {
    SUPPORTED_APIS.iter().find(|s| s.key as i16 == api_key)
}

/// One piece of a response sent in parts.
#[derive(Debug)]
pub enum Part {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A byte range of a segment file, sent with `sendfile(2)` (zero copy).
    File(crate::storage::segment::FileRange),
}

impl Part {
    /// Bytes this part puts on the wire.
    pub fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File(r) => r.len as usize,
        }
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the connection does with one request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this complete response frame.
    Respond(BytesMut),
    /// Send this complete response frame, made of parts (size prefix and
    /// header included in the first).
    RespondParts(Vec<Part>),
    /// Send nothing (Produce with acks=0).
    Silent,
    /// Close the connection: the request was malformed or unsupported.
    Close(String),
    /// The answer is not known yet (an acks=all Produce whose records are
    /// appended and wait for replication): the connection goes on with the
    /// next requests and sends this answer, in order, once it resolves
    /// (spec: PRO-91).
    Deferred(tokio::task::JoinHandle<Outcome>),
}

/// Turns a Produce request whose records are appended into its outcome:
/// at once when nothing waits, else deferred (spec: PRO-91).
fn produce_outcome(
    header: &RequestHeader,
    key: ApiKey,
    pending: apis::produce::Pending,
) -> Outcome {
    let header = header.clone();
    let respond = move |r: Result<Option<BytesMut>, HandlerError>| match r {
        Ok(Some(body)) => Outcome::Respond(response_frame(&header, key, &body)),
        Ok(None) => Outcome::Silent,
        Err(e) => Outcome::Close(format!(
            "{:?} v{} (correlation id {}): {e}",
            key, header.api_version, header.correlation_id
        )),
    };
    if pending.waits() {
        Outcome::Deferred(tokio::spawn(async move {
            respond(apis::produce::finish(pending).await)
        }))
    } else {
        respond(apis::produce::finish_now(pending))
    }
}

/// Why a handler could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The body did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The response did not encode (a bug: our own values were out of range).
    #[error("response encoding failed: {0}")]
    Encode(String),
}

/// Encodes a response body at `version`.
pub fn encode_body<R: Encodable>(resp: &R, version: i16) -> Result<BytesMut, HandlerError> {
    let mut out = BytesMut::new();
    resp.encode(&mut out, version)
        .map_err(|e| HandlerError::Encode(e.to_string()))?;
    Ok(out)
}

/// Produce requests up to this size (the frame after its size prefix) are
/// appended on the connection's task rather than handed to the blocking
/// pool: a 16 KiB batch takes ~20 µs to validate and write into the page
/// cache, less than the two thread hand-offs cost (spec: PRO-90).
pub const INLINE_PRODUCE_MAX_BYTES: usize = 128 * 1024;

/// Decodes, dispatches and answers one request frame (the bytes after the
/// size prefix). Never panics on malformed input: decoding errors close the
/// connection (spec: PRO-4).
pub async fn handle_frame(broker: &Arc<Broker>, frame: Bytes) -> Outcome {
    let frame_len = frame.len();
    let Some((api_key, api_version, correlation_id)) = header::peek_fixed(&frame) else {
        return Outcome::Close("request shorter than its header".into());
    };
    let Some(spec) = supported(api_key) else {
        // spec: PRO-12 — Kafka closes the connection on an unknown api key.
        return Outcome::Close(format!("unsupported api key {api_key}"));
    };
    if api_version < spec.min || api_version > spec.max {
        if spec.key == ApiKey::ApiVersions {
            // spec: PRO-11 — error 35 with a v0 body, connection kept open.
            return match apis::api_versions::unsupported_version(correlation_id) {
                Ok(frame) => Outcome::Respond(frame),
                Err(e) => Outcome::Close(e.to_string()),
            };
        }
        return Outcome::Close(format!(
            "unsupported version {api_version} of api {api_key}"
        ));
    }
    let header_version = spec.key.request_header_version(api_version);
    let (header, body) = match header::decode(frame, header_version) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(format!("bad request header: {e}")),
    };
    let reader = Reader::new(body, api_version >= spec.flexible_from);
    let result = match spec.key {
        // spec: PRO-90 — small requests append on the connection's task;
        // large ones, and any when appends may fsync, on the blocking pool.
        ApiKey::Produce
            if frame_len <= INLINE_PRODUCE_MAX_BYTES
                && broker.config.log_flush_interval_messages == i64::MAX =>
        {
            match apis::produce::handle(broker, &header, reader) {
                Ok(pending) => return produce_outcome(&header, spec.key, pending),
                Err(e) => Err(e),
            }
        }
        ApiKey::Produce => {
            let (b, h) = (broker.clone(), header.clone());
            match tokio::task::spawn_blocking(move || apis::produce::handle(&b, &h, reader)).await {
                Ok(Ok(pending)) => return produce_outcome(&header, spec.key, pending),
                Ok(Err(e)) => Err(e),
                Err(e) => return Outcome::Close(format!("produce task failed: {e}")),
            }
        }
        ApiKey::Fetch => {
            return match apis::fetch::handle(broker, &header, reader).await {
                Ok(body) => Outcome::RespondParts(parts_frame(&header, spec.key, body)),
                Err(e) => Outcome::Close(format!(
                    "Fetch v{} (correlation id {}): {e}",
                    header.api_version, header.correlation_id
                )),
            };
        }
        ApiKey::ListOffsets => apis::list_offsets::handle(broker, &header, reader),
        ApiKey::OffsetForLeaderEpoch => {
            apis::offset_for_leader_epoch::handle(broker, &header, reader)
        }
        ApiKey::InitProducerId => apis::init_producer_id::handle(broker, &header, reader).await,
        ApiKey::ApiVersions => apis::api_versions::handle(broker, &header, reader),
        ApiKey::Metadata => apis::metadata::handle(broker, &header, reader).await,
        ApiKey::CreateTopics => apis::create_topics::handle(broker, &header, reader).await,
        ApiKey::DeleteTopics => apis::delete_topics::handle(broker, &header, reader).await,
        ApiKey::DeleteRecords => apis::delete_records::handle(broker, &header, reader),
        ApiKey::CreatePartitions => apis::create_partitions::handle(broker, &header, reader).await,
        ApiKey::DescribeConfigs => apis::describe_configs::handle(broker, &header, reader),
        ApiKey::ElectLeaders => apis::elect_leaders::handle(broker, &header, reader).await,
        ApiKey::AlterPartitionReassignments => {
            apis::partition_reassignments::handle_alter(broker, &header, reader).await
        }
        ApiKey::ListPartitionReassignments => {
            apis::partition_reassignments::handle_list(broker, &header, reader).await
        }
        ApiKey::DescribeLogDirs => apis::describe_log_dirs::handle(broker, &header, reader),
        ApiKey::DescribeCluster => apis::describe_cluster::handle(broker, &header, reader),
        ApiKey::AlterConfigs => apis::alter_configs::handle_alter(broker, &header, reader).await,
        ApiKey::IncrementalAlterConfigs => {
            apis::alter_configs::handle_incremental(broker, &header, reader).await
        }
        ApiKey::FindCoordinator => apis::find_coordinator::handle(broker, &header, reader).await,
        ApiKey::JoinGroup => apis::join_group::handle(broker, &header, reader).await,
        ApiKey::SyncGroup => apis::sync_group::handle(broker, &header, reader).await,
        ApiKey::Heartbeat => apis::heartbeat::handle(broker, &header, reader).await,
        ApiKey::LeaveGroup => apis::leave_group::handle(broker, &header, reader).await,
        ApiKey::OffsetCommit => apis::offset_commit::handle(broker, &header, reader).await,
        ApiKey::OffsetFetch => apis::offset_fetch::handle(broker, &header, reader).await,
        ApiKey::DescribeGroups => apis::describe_groups::handle(broker, &header, reader).await,
        ApiKey::ListGroups => apis::list_groups::handle(broker, &header, reader),
        ApiKey::DeleteGroups => apis::delete_groups::handle(broker, &header, reader).await,
        ApiKey::OffsetDelete => apis::offset_delete::handle(broker, &header, reader).await,
        other => return Outcome::Close(format!("no handler for {other:?}")),
    };
    match result {
        Ok(Some(body)) => Outcome::Respond(response_frame(&header, spec.key, &body)),
        Ok(None) => Outcome::Silent,
        Err(e) => Outcome::Close(format!(
            "{:?} v{} (correlation id {}): {e}",
            spec.key, header.api_version, header.correlation_id
        )),
    }
}

/// Puts the size prefix and response header in front of a body made of parts.
pub fn parts_frame(header: &RequestHeader, key: ApiKey, mut body: Vec<Part>) -> Vec<Part> {
    let header_version = key.response_header_version(header.api_version);
    let mut head = BytesMut::with_capacity(9);
    let start = frame::begin_response(&mut head, header.correlation_id, header_version);
    let total: usize = head.len() - frame::LENGTH_BYTES + body.iter().map(Part::len).sum::<usize>();
    head[start..start + frame::LENGTH_BYTES].copy_from_slice(&(total as i32).to_be_bytes());
    body.insert(0, Part::Bytes(head.freeze()));
    body
}

/// Wraps an encoded body in a size prefix and the response header the API
/// and version call for (spec: PRO-3).
pub fn response_frame(header: &RequestHeader, key: ApiKey, body: &[u8]) -> BytesMut {
    let header_version = key.response_header_version(header.api_version);
    let mut out = BytesMut::with_capacity(body.len() + 9);
    let start = frame::begin_response(&mut out, header.correlation_id, header_version);
    out.extend_from_slice(body);
    frame::finish_response(&mut out, start);
    out
}
