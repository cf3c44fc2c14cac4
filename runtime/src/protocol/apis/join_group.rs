//! JoinGroup (key 11), v0–v7: held until the rebalance completes, then
//! answered with the generation, the leader and (to the leader) every
//! member's metadata (spec: GRP-103, GRP-10..GRP-17).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gregor_core::group::{JoinGroupRequest, Protocol, Request, Response};
use gregor_core::ids::MemberId;
use kafka_protocol::messages::JoinGroupResponse;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::sb;
use crate::broker::Broker;

/// Answers a JoinGroup request, once the group lets it.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let group_id = r.str("group_id")?.to_owned();
    let session_timeout_ms = r.i32("session_timeout_ms")?;
    let rebalance_timeout_ms = if v >= 1 {
        r.i32("rebalance_timeout_ms")?
    } else {
        session_timeout_ms
    };
    let member_id = MemberId(r.str("member_id")?.to_owned());
    let group_instance_id = if v >= 5 {
        r.nullable_str("group_instance_id")?.map(str::to_owned)
    } else {
        None
    };
    let protocol_type = r.str("protocol_type")?.to_owned();
    let n = r.array("protocols")?;
    let mut protocols = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("protocol name")?.to_owned();
        let metadata = r.nullable_bytes("protocol metadata")?.unwrap_or_default();
        r.tagged_fields()?;
        protocols.push(Protocol {
            name,
            metadata: metadata.to_vec(),
        });
    }
    r.tagged_fields()?;
    r.finish()?;

    let request = Request::Join(JoinGroupRequest {
        version: v,
        member_id,
        group_instance_id,
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: String::new(),
        session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type,
        protocols,
    });
    let Response::Join(out) = call(broker, &group_id, request).await? else {
        return Err(unexpected("JoinGroup"));
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(out.error.code())
        .with_generation_id(out.generation.get())
        .with_leader(sb(out.leader.0))
        .with_member_id(sb(out.member_id.0))
        .with_members(
            out.members
                .into_iter()
                .map(|m| {
                    let member = JoinGroupResponseMember::default()
                        .with_member_id(sb(m.member_id.0))
                        .with_metadata(Bytes::from(m.metadata));
                    if v >= 5 {
                        member.with_group_instance_id(m.group_instance_id.map(sb))
                    } else {
                        member
                    }
                })
                .collect(),
        );
    if v >= 7 {
        resp = resp
            .with_protocol_type(out.protocol_type.map(sb))
            .with_protocol_name(out.protocol_name.map(sb));
    } else {
        resp = resp.with_protocol_name(Some(sb(out.protocol_name.unwrap_or_default())));
    }
    encode_body(&resp, v).map(Some)
}
