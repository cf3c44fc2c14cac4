//! Metadata (key 3), v0–v12: brokers, controller, topics and partitions,
//! with auto-creation of unknown topics (spec: PRO-20, PRO-21).

use std::collections::BTreeMap;

use bytes::BytesMut;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::cluster::{INTERNAL_TOPICS, NewTopic, TopicError, TopicMeta};

/// Which topics a Metadata request asks about.
enum Wanted {
    /// Every topic (v0 empty array, v1+ null array).
    All,
    /// These topics, by name or (v10+) by id.
    Some(Vec<(Option<String>, [u8; 16])>),
}

/// Answers a Metadata request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let wanted = match r.array_len("topics")? {
        None if v >= 1 => Wanted::All,
        None => {
            return Err(super::super::wire::DecodeError::BadLength {
                what: "topics",
                len: -1,
            }
            .into());
        }
        Some(0) if v == 0 => Wanted::All,
        Some(n) => {
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let id = if v >= 10 {
                    r.uuid("topic_id")?
                } else {
                    [0; 16]
                };
                let name = if v >= 10 {
                    r.nullable_str("name")?.map(str::to_owned)
                } else {
                    Some(r.str("name")?.to_owned())
                };
                r.tagged_fields()?;
                topics.push((name, id));
            }
            Wanted::Some(topics)
        }
    };
    let allow_auto_create = if v >= 4 {
        r.bool("allow_auto_topic_creation")?
    } else {
        true
    };
    if (8..=10).contains(&v) {
        r.bool("include_cluster_authorized_operations")?;
    }
    if v >= 8 {
        r.bool("include_topic_authorized_operations")?;
    }
    r.tagged_fields()?;
    r.finish()?;

    let cfg = &broker.config;
    let me = cfg.broker_id;
    let image = broker.metadata.image();
    let mut topics = Vec::new();
    match wanted {
        Wanted::All => {
            for (name, meta) in &image.topics {
                topics.push(topic_entry(me, name, meta, ErrorCode::None));
            }
        }
        Wanted::Some(list) => {
            let mut created: BTreeMap<String, TopicMeta> = BTreeMap::new();
            for (name, id) in list {
                let Some(name) = name else {
                    // spec: PRO-20 — lookup by topic id (v10+).
                    match image.topics.iter().find(|(_, m)| m.id == id) {
                        Some((n, m)) => topics.push(topic_entry(me, n, m, ErrorCode::None)),
                        None => {
                            let mut t = MetadataResponseTopic::default()
                                .with_error_code(ErrorCode::UnknownTopicId as i16)
                                .with_topic_id(uuid::Uuid::from_bytes(id));
                            t.name = None;
                            topics.push(t);
                        }
                    }
                    continue;
                };
                if let Some(meta) = image.topics.get(&name).or_else(|| created.get(&name)) {
                    topics.push(topic_entry(me, &name, meta, ErrorCode::None));
                    continue;
                }
                // spec: PRO-21 — auto-create with num.partitions and the
                // default replication factor when the broker and request allow it.
                let auto = cfg.auto_create_topics_enable
                    && allow_auto_create
                    && !INTERNAL_TOPICS.contains(&name.as_str());
                let result = if auto {
                    broker
                        .create_topic(
                            NewTopic {
                                name: name.clone(),
                                partitions: -1,
                                replication_factor: -1,
                                assignments: BTreeMap::new(),
                                configs: BTreeMap::new(),
                            },
                            false,
                        )
                        .map(Some)
                } else {
                    crate::cluster::validate_topic_name(&name).map(|()| None)
                };
                match result {
                    Ok(Some(meta)) => {
                        topics.push(topic_entry(me, &name, &meta, ErrorCode::None));
                        created.insert(name, meta);
                    }
                    Ok(None) => topics.push(error_entry(&name, ErrorCode::UnknownTopicOrPartition)),
                    // Created concurrently by another request: report it.
                    Err(TopicError::AlreadyExists(_)) => {
                        let image = broker.metadata.image();
                        match image.topics.get(&name) {
                            Some(meta) => {
                                topics.push(topic_entry(me, &name, meta, ErrorCode::None))
                            }
                            None => topics.push(error_entry(&name, ErrorCode::LeaderNotAvailable)),
                        }
                    }
                    Err(e) => topics.push(error_entry(&name, ErrorCode::from(&e))),
                }
            }
        }
    }

    let adv = broker.advertised();
    let resp = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(me))
                .with_host(sb(adv.host))
                .with_port(adv.port)
                .with_rack(cfg.rack.clone().map(sb)),
        ])
        .with_cluster_id(Some(sb(image.cluster_id.clone())))
        .with_controller_id(BrokerId(me))
        .with_topics(topics);
    encode_body(&resp, v).map(Some)
}

fn error_entry(name: &str, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(topic_name(name)))
}

/// One topic with every partition led by this broker (embedded mode).
fn topic_entry(me: i32, name: &str, meta: &TopicMeta, code: ErrorCode) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(me))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(me)])
                .with_isr_nodes(vec![BrokerId(me)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(topic_name(name)))
        .with_topic_id(uuid::Uuid::from_bytes(meta.id))
        .with_is_internal(INTERNAL_TOPICS.contains(&name))
        .with_partitions(partitions)
}
