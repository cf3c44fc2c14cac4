//! DescribeGroups (key 15), v0–v5: state, protocol and members of each
//! named group; an unknown group is described as Dead (spec: GRP-107).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gregor_core::group::{Request, Response};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsResponse, GroupId};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::sb;
use crate::broker::Broker;

/// Answers a DescribeGroups request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("groups")?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(r.str("group")?.to_owned());
    }
    if v >= 3 {
        r.bool("include_authorized_operations")?;
    }
    r.tagged_fields()?;
    r.finish()?;
    let mut groups = Vec::with_capacity(names.len());
    for name in names {
        let described = DescribedGroup::default().with_group_id(GroupId(sb(name.clone())));
        if !broker.groups.exists(&name) {
            groups.push(described.with_group_state(sb("Dead")));
            continue;
        }
        let Response::Describe(out) = call(broker, &name, Request::Describe).await? else {
            return Err(unexpected("DescribeGroups"));
        };
        groups.push(
            described
                .with_error_code(out.error.code())
                .with_group_state(sb(out.state))
                .with_protocol_type(sb(out.protocol_type))
                .with_protocol_data(sb(out.protocol))
                .with_members(
                    out.members
                        .into_iter()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id.0))
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(Bytes::from(m.metadata))
                                .with_member_assignment(Bytes::from(m.assignment));
                            if v >= 4 {
                                member.with_group_instance_id(m.group_instance_id.map(sb))
                            } else {
                                member
                            }
                        })
                        .collect(),
                ),
        );
    }
    let resp = DescribeGroupsResponse::default().with_groups(groups);
    encode_body(&resp, v).map(Some)
}
