//! OffsetDelete (key 47), v0: forget a group's committed offsets of some
//! partitions, as `kafka-consumer-groups.sh --delete-offsets` and the
//! admin clients do (spec: GRP-47, GRP-109).
//!
//! The group's coordinator decides: a group without members may lose any
//! offset; a consumer group with members only those of topics none of its
//! members subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise). Unknown
//! groups answer GROUP_ID_NOT_FOUND, and a broker that does not coordinate
//! the group NOT_COORDINATOR.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{ErrorCode, OffsetDeleteRequest, Request, Response};
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::OffsetDeleteResponse;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::topic_name;
use crate::broker::Broker;

/// Answers an OffsetDelete request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let group = r.str("group_id")?.to_owned();
    let n = r.array("topics")?;
    let mut partitions = Vec::new();
    for _ in 0..n {
        let topic = r.str("name")?.to_owned();
        let np = r.array("partitions")?;
        for _ in 0..np {
            partitions.push(TopicPartition::new(
                topic.clone(),
                r.i32("partition_index")?,
            ));
            r.tagged_fields()?;
        }
        r.tagged_fields()?;
    }
    r.tagged_fields()?;
    r.finish()?;

    let (error, outcome) = if group.is_empty() {
        (ErrorCode::InvalidGroupId, Vec::new())
    } else if !broker.groups.exists(&group) {
        (ErrorCode::GroupIdNotFound, Vec::new())
    } else {
        let request = Request::OffsetDelete(OffsetDeleteRequest { partitions });
        match call(broker, &group, request).await? {
            Response::OffsetDelete(out) => (out.error, out.partitions),
            _ => return Err(unexpected("OffsetDelete")),
        }
    };
    let mut by_topic: BTreeMap<String, Vec<OffsetDeleteResponsePartition>> = BTreeMap::new();
    for (tp, e) in outcome {
        by_topic.entry(tp.topic).or_default().push(
            OffsetDeleteResponsePartition::default()
                .with_partition_index(tp.partition)
                .with_error_code(e.code()),
        );
    }
    let resp = OffsetDeleteResponse::default()
        .with_error_code(error.code())
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(parts)
                })
                .collect(),
        );
    encode_body(&resp, v).map(Some)
}
