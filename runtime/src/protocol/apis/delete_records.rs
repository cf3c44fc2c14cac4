//! DeleteRecords (key 21), v0–v2: move a partition's log start forward, so
//! that the records below it are no longer served and their segments are
//! deleted (spec: PRO-28, REP-71).
//!
//! Each partition is answered by its leader: the log start moves to the
//! requested offset (-1: the high watermark), never past the high
//! watermark (OFFSET_OUT_OF_RANGE), and the answer's low watermark is the
//! leader's log start afterwards. Followers follow on their next fetch
//! (REP-72). A topic whose `cleanup.policy` lacks `delete` is refused with
//! POLICY_VIOLATION, as in Kafka.

use bytes::BytesMut;
use gregor_core::ids::TopicPartition;
use kafka_protocol::messages::DeleteRecordsResponse;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::topic_name;
use crate::broker::Broker;
use crate::partition::DeleteRecordsFailure;

/// Answers a DeleteRecords request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("topics")?;
    let mut request = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("topic")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let partition = r.i32("partition")?;
            let offset = r.i64("offset")?;
            r.tagged_fields()?;
            parts.push((partition, offset));
        }
        r.tagged_fields()?;
        request.push((name, parts));
    }
    r.i32("timeout_ms")?;
    r.tagged_fields()?;
    r.finish()?;

    let topics = request
        .into_iter()
        .map(|(name, parts)| {
            let results = parts
                .into_iter()
                .map(|(partition, offset)| {
                    let tp = TopicPartition::new(name.clone(), partition);
                    let (code, low) = if partition < 0 {
                        (ErrorCode::UnknownTopicOrPartition, -1)
                    } else {
                        match broker.partitions.delete_records(&tp, offset) {
                            Ok(start) => (ErrorCode::None, start),
                            Err(e) => {
                                if let DeleteRecordsFailure::Storage(err) = &e {
                                    tracing::error!(partition = %tp, error = %err, "DeleteRecords failed in storage");
                                }
                                (ErrorCode::from(&e), -1)
                            }
                        }
                    };
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition)
                        .with_low_watermark(low)
                        .with_error_code(code.code())
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic_name(name))
                .with_partitions(results)
        })
        .collect();
    let resp = DeleteRecordsResponse::default().with_topics(topics);
    encode_body(&resp, v).map(Some)
}
