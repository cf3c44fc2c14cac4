//! OffsetForLeaderEpoch (key 23), v0–v4 (spec: REP-67).
//!
//! A follower asks its leader where an epoch of its log ends before it
//! fetches (KIP-101, KIP-279); clients ask too after a leader change
//! (KIP-320). The leader answers from its epoch cache through the core:
//! the largest epoch ≤ the one asked for and its end offset, or
//! UNDEFINED (-1, -1) when it knows no such epoch. The request is fenced
//! like a fetch by `current_leader_epoch` (v2+).

use bytes::BytesMut;
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::OffsetForLeaderEpochResponse;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::topic_name;
use crate::broker::Broker;

/// Answers an OffsetForLeaderEpoch request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    if v >= 3 {
        r.i32("replica_id")?;
    }
    let n = r.array("topics")?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let partition = r.i32("partition")?;
            let current_leader_epoch = if v >= 2 {
                r.i32("current_leader_epoch")?
            } else {
                -1
            };
            let leader_epoch = r.i32("leader_epoch")?;
            r.tagged_fields()?;
            let tp = TopicPartition::new(name.clone(), partition);
            let known = partition >= 0 && broker.partitions.hosted(&tp).is_some();
            let answer = if known {
                broker
                    .partitions
                    .offsets_for_leader_epoch(&tp, current_leader_epoch, leader_epoch)
                    .map_err(ErrorCode::from)
            } else {
                Err(ErrorCode::UnknownTopicOrPartition)
            };
            // spec: REP-67 — no epoch at or below the one asked: UNDEFINED.
            let (error, epoch, end) = match answer {
                Ok(Some((e, o))) => (ErrorCode::None, e.get(), o.get()),
                Ok(None) => (ErrorCode::None, -1, -1),
                Err(code) => (code, -1, -1),
            };
            parts.push(
                EpochEndOffset::default()
                    .with_error_code(error.code())
                    .with_partition(partition)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        r.tagged_fields()?;
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_name(name))
                .with_partitions(parts),
        );
    }
    r.tagged_fields()?;
    r.finish()?;
    let resp = OffsetForLeaderEpochResponse::default().with_topics(topics);
    encode_body(&resp, v).map(Some)
}
