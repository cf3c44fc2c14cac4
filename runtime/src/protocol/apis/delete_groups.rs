//! DeleteGroups (key 42), v0–v2: removes empty groups and their committed
//! offsets (tombstones in `__consumer_offsets`); groups with members answer
//! NON_EMPTY_GROUP, unknown ones GROUP_ID_NOT_FOUND (spec: GRP-45, GRP-107).

use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{ErrorCode, Request, Response};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsResponse, GroupId};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::sb;
use crate::broker::Broker;

/// Answers a DeleteGroups request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("groups_names")?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(r.str("group")?.to_owned());
    }
    r.tagged_fields()?;
    r.finish()?;
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let error = if broker.groups.exists(&name) {
            match call(broker, &name, Request::Delete).await? {
                Response::Delete(out) => out.error,
                _ => return Err(unexpected("DeleteGroups")),
            }
        } else {
            ErrorCode::GroupIdNotFound
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(GroupId(sb(name)))
                .with_error_code(error.code()),
        );
    }
    let resp = DeleteGroupsResponse::default().with_results(results);
    encode_body(&resp, v).map(Some)
}
