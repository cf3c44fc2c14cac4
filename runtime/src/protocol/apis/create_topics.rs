//! CreateTopics (key 19), v0–v5 (spec: PRO-22).
//!
//! Validation is Kafka's: topic name rules, partitions > 0, replication
//! factor ≤ live brokers, known topic configs, no duplicate names in one
//! request. `validate_only` (v1+) checks without creating.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::CreateTopicsResponse;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::{Reader, legacy};
use super::super::{HandlerError, encode_body};
use super::describe_configs::topic_config_entries;
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::cluster::NewTopic;

struct Outcome {
    name: String,
    error: ErrorCode,
    message: Option<String>,
    created: Option<crate::cluster::TopicMeta>,
}

/// Answers a CreateTopics request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("topics")?;
    let mut requested = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("name")?.to_owned();
        let partitions = r.i32("num_partitions")?;
        let replication_factor = r.i16("replication_factor")?;
        let mut assignments = BTreeMap::new();
        let mut duplicate_partition = false;
        for _ in 0..r.array("assignments")? {
            let p = r.i32("partition_index")?;
            let count = r.array("broker_ids")?;
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(r.i32("broker_id")?);
            }
            r.tagged_fields()?;
            duplicate_partition |= assignments.insert(p, ids).is_some();
        }
        let mut configs = BTreeMap::new();
        for _ in 0..r.array("configs")? {
            let k = r.str("config name")?.to_owned();
            let val = r.nullable_str("config value")?.map(str::to_owned);
            r.tagged_fields()?;
            if let Some(val) = val {
                configs.insert(k, val);
            }
        }
        r.tagged_fields()?;
        requested.push((
            NewTopic {
                name,
                partitions,
                replication_factor,
                assignments,
                configs,
            },
            duplicate_partition,
        ));
    }
    let timeout_ms = r.i32("timeout_ms")?;
    let validate_only = if v >= 1 {
        r.bool("validate_only")?
    } else {
        false
    };
    r.tagged_fields()?;
    r.finish()?;

    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<String> = requested
        .iter()
        .filter(|(t, _)| !seen.insert(t.name.clone()))
        .map(|(t, _)| t.name.clone())
        .collect();
    let mut outcomes = Vec::with_capacity(requested.len());
    let mut answered = BTreeSet::new();
    for (t, duplicate_partition) in requested {
        if duplicates.contains(&t.name) {
            // Kafka answers a duplicated name once, with INVALID_REQUEST.
            if answered.insert(t.name.clone()) {
                outcomes.push(Outcome {
                    message: Some(format!(
                        "Create topics request from client contains duplicate topic name {}",
                        t.name
                    )),
                    name: t.name,
                    error: ErrorCode::InvalidRequest,
                    created: None,
                });
            }
            continue;
        }
        if duplicate_partition {
            outcomes.push(Outcome {
                message: Some("Duplicate partition index in replica assignment".into()),
                name: t.name,
                error: ErrorCode::InvalidReplicaAssignment,
                created: None,
            });
            continue;
        }
        let name = t.name.clone();
        // spec: CLU-22 — in ZooKeeper mode, wait for the leaders.
        let timeout = std::time::Duration::from_millis(timeout_ms.max(0) as u64);
        match broker.create_topic_async(t, validate_only, timeout).await {
            Ok(meta) => outcomes.push(Outcome {
                name,
                error: ErrorCode::None,
                message: None,
                created: Some(meta),
            }),
            Err(e) => outcomes.push(Outcome {
                name,
                error: ErrorCode::from(&e),
                message: Some(e.to_string()),
                created: None,
            }),
        }
    }

    if v < 2 {
        // Versions 0–1 are gone from the kafka-protocol crate: encode by hand.
        let mut out = BytesMut::new();
        legacy::put_len(&mut out, outcomes.len());
        for o in &outcomes {
            legacy::put_str(&mut out, &o.name);
            out.put_i16(o.error.code());
            if v >= 1 {
                legacy::put_nullable_str(&mut out, o.message.as_deref());
            }
        }
        return Ok(Some(out));
    }
    let topics = outcomes
        .into_iter()
        .map(|o| {
            let mut res = CreatableTopicResult::default()
                .with_name(topic_name(o.name))
                .with_error_code(o.error.code())
                .with_error_message(o.message.map(sb));
            match &o.created {
                Some(meta) => {
                    res.num_partitions = meta.partitions;
                    res.replication_factor = meta.replication_factor;
                    res.topic_id = uuid::Uuid::from_bytes(meta.id);
                    res.configs = Some(
                        topic_config_entries(broker, meta)
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(c.name))
                                    .with_value(c.value.map(sb))
                                    .with_config_source(c.source)
                            })
                            .collect(),
                    );
                }
                None => {
                    res.num_partitions = -1;
                    res.replication_factor = -1;
                }
            }
            res
        })
        .collect();
    let resp = CreateTopicsResponse::default().with_topics(topics);
    encode_body(&resp, v).map(Some)
}
