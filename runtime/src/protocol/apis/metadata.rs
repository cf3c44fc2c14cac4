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
use crate::cluster::zk::{ClusterView, TopicView, ZkCluster};
use crate::cluster::{INTERNAL_TOPICS, NewTopic, TopicError, TopicMeta};

/// Which topics a Metadata request asks about.
enum Wanted {
    /// Every topic (v0 empty array, v1+ null array).
    All,
    /// These topics, by name or (v10+) by id.
    Some(Vec<(Option<String>, [u8; 16])>),
}

/// Answers a Metadata request.
pub async fn handle(
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

    if let Some(zk) = broker.metadata.zk() {
        return zk_response(broker, zk, wanted, allow_auto_create, v).await;
    }
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

    let cluster = embedded_cluster(broker, image.cluster_id.clone());
    let resp = MetadataResponse::default()
        .with_brokers(metadata_brokers(&cluster))
        .with_cluster_id(Some(sb(cluster.cluster_id)))
        .with_controller_id(BrokerId(cluster.controller_id))
        .with_topics(topics);
    encode_body(&resp, v).map(Some)
}

/// The brokers, cluster id and controller a client is told about
/// (Metadata, DescribeCluster).
#[derive(Debug, Clone)]
pub(crate) struct ClusterSummary {
    pub cluster_id: String,
    /// The controller's id, -1 when none is known.
    pub controller_id: i32,
    /// (id, host, port, rack) of every live broker at the listener the
    /// request came in on.
    pub brokers: Vec<(i32, String, i32, Option<String>)>,
}

/// This broker alone, at the listener the request came in on (spec: CLU-31).
fn embedded_cluster(broker: &Broker, cluster_id: String) -> ClusterSummary {
    let adv = match crate::server::current_listener().filter(|l| !l.is_empty()) {
        Some(l) => broker.advertised_on(&l),
        None => broker.advertised(),
    };
    let me = broker.config.broker_id;
    ClusterSummary {
        cluster_id,
        controller_id: me,
        brokers: vec![(me, adv.host, adv.port, broker.config.rack.clone())],
    }
}

/// Every registered broker at the listener the request came in on, from
/// the ZooKeeper cache (spec: CLU-31, CLU-32).
fn zk_cluster(broker: &Broker, view: &ClusterView) -> ClusterSummary {
    let listener = crate::server::current_listener()
        .filter(|l| !l.is_empty())
        .map_or_else(
            || broker.config.listeners[0].name.clone(),
            |l| l.to_string(),
        );
    let brokers = view
        .brokers
        .iter()
        .filter_map(|(id, b)| {
            let (host, port) = b.registration.endpoint(&listener)?;
            Some((
                id.0,
                host.to_string(),
                i32::from(port),
                b.registration.rack.clone(),
            ))
        })
        .collect();
    ClusterSummary {
        cluster_id: view.cluster_id.clone(),
        controller_id: view.controller.map_or(-1, |c| c.0),
        brokers,
    }
}

/// The cluster as this broker knows it now, in either mode.
pub(crate) fn cluster_summary(broker: &Broker) -> ClusterSummary {
    match broker.metadata.zk() {
        Some(zk) => zk_cluster(broker, &zk.view()),
        None => embedded_cluster(broker, broker.metadata.image().cluster_id.clone()),
    }
}

fn metadata_brokers(c: &ClusterSummary) -> Vec<MetadataResponseBroker> {
    c.brokers
        .iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(sb(host.clone()))
                .with_port(*port)
                .with_rack(rack.clone().map(sb))
        })
        .collect()
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

/// Metadata in ZooKeeper mode, from the cache (spec: CLU-32, CLU-33):
/// every registered broker at the listener the request arrived on, the
/// controller, and each partition's leader, epoch, replicas, ISR and
/// offline replicas.
async fn zk_response(
    broker: &Broker,
    zk: &ZkCluster,
    wanted: Wanted,
    allow_auto_create: bool,
    v: i16,
) -> Result<Option<BytesMut>, HandlerError> {
    let cfg = &broker.config;
    let mut view = zk.view();
    let mut topics = Vec::new();
    match wanted {
        Wanted::All => {
            for (name, t) in &view.topics {
                topics.push(zk_topic_entry(&view, name, t));
            }
        }
        Wanted::Some(list) => {
            for (name, id) in list {
                let Some(name) = name else {
                    match view.topics.iter().find(|(_, t)| t.id == id) {
                        Some((n, t)) => topics.push(zk_topic_entry(&view, n, t)),
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
                if let Some(t) = view.topics.get(&name) {
                    topics.push(zk_topic_entry(&view, &name, t));
                    continue;
                }
                let auto = cfg.auto_create_topics_enable
                    && allow_auto_create
                    && !INTERNAL_TOPICS.contains(&name.as_str());
                if !auto {
                    let code = match crate::cluster::validate_topic_name(&name) {
                        Ok(()) => ErrorCode::UnknownTopicOrPartition,
                        Err(e) => ErrorCode::from(&e),
                    };
                    topics.push(error_entry(&name, code));
                    continue;
                }
                // spec: CLU-34 — auto-creation answers LEADER_NOT_AVAILABLE
                // until the controller has elected the leaders, as Kafka.
                let req = NewTopic {
                    name: name.clone(),
                    partitions: -1,
                    replication_factor: -1,
                    assignments: BTreeMap::new(),
                    configs: BTreeMap::new(),
                };
                let res = broker
                    .create_topic_async(req, false, std::time::Duration::ZERO)
                    .await;
                view = zk.view();
                match res {
                    Ok(_) | Err(TopicError::AlreadyExists(_)) | Err(TopicError::TimedOut(_)) => {
                        match view.topics.get(&name) {
                            Some(t) if t.states.len() == t.assignment.len() => {
                                topics.push(zk_topic_entry(&view, &name, t))
                            }
                            _ => topics.push(error_entry(&name, ErrorCode::LeaderNotAvailable)),
                        }
                    }
                    Err(e) => topics.push(error_entry(&name, ErrorCode::from(&e))),
                }
            }
        }
    }
    // spec: CLU-31 — endpoints of the listener the request came in on.
    let cluster = zk_cluster(broker, &view);
    let resp = MetadataResponse::default()
        .with_brokers(metadata_brokers(&cluster))
        .with_cluster_id(Some(sb(cluster.cluster_id)))
        .with_controller_id(BrokerId(cluster.controller_id))
        .with_topics(topics);
    encode_body(&resp, v).map(Some)
}

/// One topic from the ZooKeeper cache (spec: CLU-33).
fn zk_topic_entry(view: &ClusterView, name: &str, t: &TopicView) -> MetadataResponseTopic {
    let partitions = t
        .assignment
        .iter()
        .map(|(p, replicas)| {
            let state = t.states.get(p).map(|(s, _)| s);
            let leader = state.and_then(|s| s.leader);
            let live_leader = leader.filter(|l| view.brokers.contains_key(l));
            let code = if live_leader.is_some() {
                ErrorCode::None
            } else {
                ErrorCode::LeaderNotAvailable
            };
            MetadataResponsePartition::default()
                .with_error_code(code.code())
                .with_partition_index(*p)
                .with_leader_id(BrokerId(live_leader.map_or(-1, |l| l.0)))
                .with_leader_epoch(state.map_or(-1, |s| s.leader_epoch.0))
                .with_replica_nodes(replicas.iter().map(|b| BrokerId(b.0)).collect())
                .with_isr_nodes(
                    state
                        .map(|s| s.isr.iter().map(|b| BrokerId(b.0)).collect())
                        .unwrap_or_default(),
                )
                .with_offline_replicas(
                    replicas
                        .iter()
                        .filter(|b| !view.brokers.contains_key(b))
                        .map(|b| BrokerId(b.0))
                        .collect(),
                )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(ErrorCode::None.code())
        .with_name(Some(topic_name(name)))
        .with_topic_id(uuid::Uuid::from_bytes(t.id))
        .with_is_internal(INTERNAL_TOPICS.contains(&name))
        .with_partitions(partitions)
}
