//! OffsetCommit (key 8), v0–v8: fenced by generation and member, simple
//! commits (generation -1, no member) accepted, answered only once the
//! offsets are appended to `__consumer_offsets` (spec: GRP-40..GRP-42,
//! GRP-103).

use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{CommitPartition, OffsetCommitRequest, Request, Response};
use gregor_core::ids::{Generation, LeaderEpoch, MemberId, Offset, TopicPartition};
use kafka_protocol::messages::OffsetCommitResponse;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::topic_name;
use crate::broker::Broker;

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// UNKNOWN_SERVER_ERROR, should the group answer fewer partitions than asked.
const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Answers an OffsetCommit request after the commit is persisted.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let group_id = r.str("group_id")?.to_owned();
    let (generation, member_id) = if v >= 1 {
        (
            Generation::new(r.i32("generation_id")?),
            MemberId(r.str("member_id")?.to_owned()),
        )
    } else {
        // spec: GRP-44 — v0 commits are simple commits.
        (Generation::new(-1), MemberId(String::new()))
    };
    let group_instance_id = if v >= 7 {
        r.nullable_str("group_instance_id")?.map(str::to_owned)
    } else {
        None
    };
    let retention_ms = if (2..=4).contains(&v) {
        Some(r.i64("retention_time_ms")?).filter(|&ms| ms >= 0)
    } else {
        None
    };
    let nt = r.array("topics")?;
    let mut partitions = Vec::with_capacity(nt);
    for _ in 0..nt {
        let topic = r.str("topic")?.to_owned();
        let np = r.array("partitions")?;
        for _ in 0..np {
            let index = r.i32("partition_index")?;
            let offset = r.i64("committed_offset")?;
            let leader_epoch = if v >= 6 {
                r.i32("committed_leader_epoch")?
            } else {
                -1
            };
            if v == 1 {
                r.i64("commit_timestamp")?;
            }
            let metadata = r.nullable_str("committed_metadata")?.map(str::to_owned);
            r.tagged_fields()?;
            partitions.push(CommitPartition {
                partition: TopicPartition::new(topic.clone(), index),
                offset: Offset::new(offset),
                leader_epoch: LeaderEpoch::new(leader_epoch),
                metadata,
            });
        }
        r.tagged_fields()?;
    }
    r.tagged_fields()?;
    r.finish()?;

    // spec: GRP-110 — partitions this broker does not have are refused
    // with UNKNOWN_TOPIC_OR_PARTITION; the rest go to the group.
    let image = broker.metadata.image();
    let known = |tp: &TopicPartition| {
        image
            .topics
            .get(&tp.topic)
            .is_some_and(|m| tp.partition >= 0 && tp.partition < m.partitions)
    };
    let order: Vec<(TopicPartition, bool)> = partitions
        .iter()
        .map(|p| (p.partition.clone(), known(&p.partition)))
        .collect();
    let partitions: Vec<CommitPartition> = partitions
        .into_iter()
        .filter(|p| known(&p.partition))
        .collect();
    let mut answers = if partitions.is_empty() {
        Vec::new()
    } else {
        let request = Request::OffsetCommit(OffsetCommitRequest {
            member_id,
            generation,
            group_instance_id,
            retention_ms,
            partitions,
        });
        let Response::OffsetCommit(out) = call(broker, &group_id, request).await? else {
            return Err(unexpected("OffsetCommit"));
        };
        out.partitions
    }
    .into_iter();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (tp, is_known) in order {
        let code = if is_known {
            answers
                .next()
                .map_or(UNKNOWN_SERVER_ERROR, |(_, error)| error.code())
        } else {
            UNKNOWN_TOPIC_OR_PARTITION
        };
        let part = OffsetCommitResponsePartition::default()
            .with_partition_index(tp.partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == tp.topic => t.partitions.push(part),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(tp.topic))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let resp = OffsetCommitResponse::default().with_topics(topics);
    // spec: GRP-109 — versions 0 and 1 of the response are laid out exactly as version 2.
    encode_body(&resp, v.max(2)).map(Some)
}
