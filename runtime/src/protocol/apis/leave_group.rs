//! LeaveGroup (key 13), v0–v4: one member before v3, a batch of members
//! (possibly static, by instance id) from v3 (spec: GRP-26).

use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{ErrorCode, LeaveGroupRequest, LeavingMember, Request, Response};
use gregor_core::ids::MemberId;
use kafka_protocol::messages::LeaveGroupResponse;
use kafka_protocol::messages::leave_group_response::MemberResponse;

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::sb;
use crate::broker::Broker;

/// Answers a LeaveGroup request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let group_id = r.str("group_id")?.to_owned();
    let members = if v >= 3 {
        let n = r.array("members")?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let member_id = MemberId(r.str("member_id")?.to_owned());
            let group_instance_id = r.nullable_str("group_instance_id")?.map(str::to_owned);
            r.tagged_fields()?;
            members.push(LeavingMember {
                member_id,
                group_instance_id,
            });
        }
        members
    } else {
        vec![LeavingMember {
            member_id: MemberId(r.str("member_id")?.to_owned()),
            group_instance_id: None,
        }]
    };
    r.tagged_fields()?;
    r.finish()?;
    let Response::Leave(out) = call(
        broker,
        &group_id,
        Request::Leave(LeaveGroupRequest { members }),
    )
    .await?
    else {
        return Err(unexpected("LeaveGroup"));
    };
    let resp = if v >= 3 {
        LeaveGroupResponse::default()
            .with_error_code(out.error.code())
            .with_members(
                out.members
                    .into_iter()
                    .map(|m| {
                        MemberResponse::default()
                            .with_member_id(sb(m.member_id.0))
                            .with_group_instance_id(m.group_instance_id.map(sb))
                            .with_error_code(m.error.code())
                    })
                    .collect(),
            )
    } else {
        // Before v3 the one member's outcome is the answer.
        let error = if out.error.is_ok() {
            out.members.first().map_or(ErrorCode::None, |m| m.error)
        } else {
            out.error
        };
        LeaveGroupResponse::default().with_error_code(error.code())
    };
    encode_body(&resp, v).map(Some)
}
