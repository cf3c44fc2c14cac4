//! DescribeLogDirs (key 35), v0–v4: every log directory of this broker
//! with the size on disk of each partition log it holds, as
//! `kafka-log-dirs.sh`, `AdminClient.describeLogDirs` and cluster UIs ask
//! for (spec: PRO-31).
//!
//! A null topic list asks for every partition; otherwise only the named
//! partitions this broker holds are listed (others are left out, as in
//! Kafka). v4 adds each directory's file system size and free space.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use kafka_protocol::messages::DescribeLogDirsResponse;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;

/// Answers a DescribeLogDirs request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    // None: every partition.
    let wanted: Option<BTreeSet<(String, i32)>> = match r.array_len("topics")? {
        None => None,
        Some(n) => {
            let mut set = BTreeSet::new();
            for _ in 0..n {
                let topic = r.str("topic")?.to_owned();
                let np = r.array("partitions")?;
                for _ in 0..np {
                    set.insert((topic.clone(), r.i32("partition")?));
                }
                r.tagged_fields()?;
            }
            Some(set)
        }
    };
    r.tagged_fields()?;
    r.finish()?;

    let results = broker
        .partitions
        .log_dirs()
        .into_iter()
        .map(|(dir, lags)| {
            let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for ((tp, size, _), lag) in dir.partitions.iter().zip(lags) {
                if wanted
                    .as_ref()
                    .is_some_and(|w| !w.contains(&(tp.topic.clone(), tp.partition)))
                {
                    continue;
                }
                topics.entry(tp.topic.clone()).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_partition_size(i64::try_from(*size).unwrap_or(i64::MAX))
                        .with_offset_lag(lag)
                        .with_is_future_key(false),
                );
            }
            let bytes = |b: Option<u64>| b.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
            DescribeLogDirsResult::default()
                .with_log_dir(sb(dir.path.display().to_string()))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            DescribeLogDirsTopic::default()
                                .with_name(topic_name(name))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
                .with_total_bytes(bytes(dir.total_bytes))
                .with_usable_bytes(bytes(dir.usable_bytes))
        })
        .collect();
    let resp = DescribeLogDirsResponse::default().with_results(results);
    // Version 0 is gone from the kafka-protocol crate; its response is the
    // same as version 1's.
    encode_body(&resp, v.max(1)).map(Some)
}
