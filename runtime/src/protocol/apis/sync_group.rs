//! SyncGroup (key 14), v0–v5: the leader hands in the plan, every member
//! gets its assignment once the plan is persisted (spec: GRP-20..GRP-24,
//! GRP-103).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gregor_core::group::{Request, Response, SyncGroupRequest};
use gregor_core::ids::{Generation, MemberId};
use kafka_protocol::messages::SyncGroupResponse;

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::sb;
use crate::broker::Broker;

/// Answers a SyncGroup request, once the group lets it.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let group_id = r.str("group_id")?.to_owned();
    let generation = Generation::new(r.i32("generation_id")?);
    let member_id = MemberId(r.str("member_id")?.to_owned());
    let group_instance_id = if v >= 3 {
        r.nullable_str("group_instance_id")?.map(str::to_owned)
    } else {
        None
    };
    let (protocol_type, protocol_name) = if v >= 5 {
        (
            r.nullable_str("protocol_type")?.map(str::to_owned),
            r.nullable_str("protocol_name")?.map(str::to_owned),
        )
    } else {
        (None, None)
    };
    let n = r.array("assignments")?;
    let mut assignments = Vec::with_capacity(n);
    for _ in 0..n {
        let member = MemberId(r.str("assignment member_id")?.to_owned());
        let bytes = r.nullable_bytes("assignment")?.unwrap_or_default();
        r.tagged_fields()?;
        assignments.push((member, bytes.to_vec()));
    }
    r.tagged_fields()?;
    r.finish()?;

    let request = Request::Sync(SyncGroupRequest {
        member_id,
        generation,
        group_instance_id,
        protocol_type,
        protocol_name,
        assignments,
    });
    let Response::Sync(out) = call(broker, &group_id, request).await? else {
        return Err(unexpected("SyncGroup"));
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(out.error.code())
        .with_assignment(Bytes::from(out.assignment));
    if v >= 5 {
        resp = resp
            .with_protocol_type(out.protocol_type.map(sb))
            .with_protocol_name(out.protocol_name.map(sb));
    }
    encode_body(&resp, v).map(Some)
}
