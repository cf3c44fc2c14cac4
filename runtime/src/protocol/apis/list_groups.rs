//! ListGroups (key 16), v0–v4: every group this broker coordinates, with
//! its state from v4 and an optional state filter (spec: GRP-107).

use bytes::BytesMut;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsResponse};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::sb;
use crate::broker::Broker;

/// Answers a ListGroups request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let mut states = Vec::new();
    if v >= 4 {
        let n = r.array("states_filter")?;
        for _ in 0..n {
            states.push(r.str("state")?.to_lowercase());
        }
    }
    r.tagged_fields()?;
    r.finish()?;
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(sb(g.group_id)))
                .with_protocol_type(sb(g.protocol_type));
            if v >= 4 {
                listed.with_group_state(sb(g.state))
            } else {
                listed
            }
        })
        .collect();
    let resp = ListGroupsResponse::default().with_groups(groups);
    encode_body(&resp, v).map(Some)
}
