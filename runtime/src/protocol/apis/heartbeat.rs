//! Heartbeat (key 12), v0–v4: keeps a member's session alive and tells it
//! when to rejoin (spec: GRP-14, GRP-25).

use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{HeartbeatRequest, Request, Response};
use gregor_core::ids::{Generation, MemberId};
use kafka_protocol::messages::HeartbeatResponse;

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use crate::broker::Broker;

/// Answers a Heartbeat request.
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
    r.tagged_fields()?;
    r.finish()?;
    let request = Request::Heartbeat(HeartbeatRequest {
        member_id,
        generation,
        group_instance_id,
    });
    let Response::Heartbeat(error) = call(broker, &group_id, request).await? else {
        return Err(unexpected("Heartbeat"));
    };
    let resp = HeartbeatResponse::default().with_error_code(error.code());
    encode_body(&resp, v).map(Some)
}
