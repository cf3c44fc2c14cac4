//! OffsetFetch (key 9), v0–v8: committed offsets of the named partitions,
//! or of every partition (v2+, null topics); v8 batches groups
//! (spec: GRP-46).

use std::sync::Arc;

use bytes::BytesMut;
use gregor_core::group::{
    ErrorCode, FetchedOffset, OffsetFetchRequest, OffsetFetchResponse as Fetched, Request, Response,
};
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchResponse};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::group_common::{call, unexpected};
use super::{sb, topic_name};
use crate::broker::Broker;

/// Reads a (nullable from v2) array of topics with partition indexes.
fn read_topics(r: &mut Reader, v: i16) -> Result<Option<Vec<TopicPartition>>, HandlerError> {
    let n = if v >= 2 {
        r.array_len("topics")?
    } else {
        Some(r.array("topics")?)
    };
    let Some(n) = n else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let topic = r.str("topic")?.to_owned();
        let np = r.array("partition_indexes")?;
        for _ in 0..np {
            out.push(TopicPartition::new(
                topic.clone(),
                r.i32("partition_index")?,
            ));
        }
        r.tagged_fields()?;
    }
    Ok(Some(out))
}

/// Fetches one group's offsets.
async fn fetch(
    broker: &Arc<Broker>,
    group_id: &str,
    partitions: Option<Vec<TopicPartition>>,
) -> Result<Fetched, HandlerError> {
    let request = Request::OffsetFetch(OffsetFetchRequest { partitions });
    match call(broker, group_id, request).await? {
        Response::OffsetFetch(out) => Ok(out),
        _ => Err(unexpected("OffsetFetch")),
    }
}

/// Groups consecutive partitions of one topic.
fn by_topic(parts: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for p in parts {
        match out.last_mut() {
            Some((t, v)) if *t == p.partition.topic => v.push(p),
            _ => out.push((p.partition.topic.clone(), vec![p])),
        }
    }
    out
}

/// Answers an OffsetFetch request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    if v >= 8 {
        let n = r.array("groups")?;
        let mut requests = Vec::with_capacity(n);
        for _ in 0..n {
            let group_id = r.str("group_id")?.to_owned();
            let topics = read_topics(&mut r, v)?;
            r.tagged_fields()?;
            requests.push((group_id, topics));
        }
        r.bool("require_stable")?;
        r.tagged_fields()?;
        r.finish()?;
        let mut groups = Vec::with_capacity(requests.len());
        for (group_id, topics) in requests {
            let out = fetch(broker, &group_id, topics).await?;
            let topics = by_topic(out.partitions)
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(name))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p.partition.partition)
                                        .with_committed_offset(p.offset.get())
                                        .with_committed_leader_epoch(p.leader_epoch.get())
                                        .with_metadata(p.metadata.map(sb))
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(sb(group_id)))
                    .with_topics(topics)
                    .with_error_code(out.error.code()),
            );
        }
        let resp = OffsetFetchResponse::default().with_groups(groups);
        return encode_body(&resp, v).map(Some);
    }
    let group_id = r.str("group_id")?.to_owned();
    let topics = read_topics(&mut r, v)?;
    if v >= 7 {
        r.bool("require_stable")?;
    }
    r.tagged_fields()?;
    r.finish()?;
    let out = fetch(broker, &group_id, topics).await?;
    // Before v2 there is no group-level error: it goes on every partition.
    let partition_error = if v < 2 { out.error } else { ErrorCode::None };
    let topics = by_topic(out.partitions)
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(name))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            let part = OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition.partition)
                                .with_committed_offset(p.offset.get())
                                .with_metadata(Some(sb(p.metadata.unwrap_or_default())))
                                .with_error_code(partition_error.code());
                            if v >= 5 {
                                part.with_committed_leader_epoch(p.leader_epoch.get())
                            } else {
                                part
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    let mut resp = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        resp = resp.with_error_code(out.error.code());
    }
    // spec: GRP-109 — version 0 of the response is laid out exactly as version 1.
    encode_body(&resp, v.max(1)).map(Some)
}
