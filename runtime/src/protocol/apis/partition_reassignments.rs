//! AlterPartitionReassignments (key 45, v0) and ListPartitionReassignments
//! (key 46, v0): move partition replicas between brokers through the Kafka
//! API, as `kafka-reassign-partitions.sh` and the admin clients do
//! (spec: PRO-32).
//!
//! In ZooKeeper mode a request becomes entries of
//! `/admin/reassign_partitions`, which the controller carries out
//! (CLU-76 … CLU-79), exactly as `gregor topics reassign` writes them; the
//! answer comes once the request is recorded, as in Kafka, not when the
//! move is done. A null replica list cancels a move: the partition is sent
//! back to its original replicas. A single embedded broker has nowhere to
//! move a partition to.

use bytes::BytesMut;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, ListPartitionReassignmentsResponse,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::cluster::znodes::ReassignmentEntry;
use crate::controller::admin;

/// One partition of an AlterPartitionReassignments request: its index and
/// target replicas (`None`: cancel).
type Wanted = (i32, Option<Vec<i32>>);

/// The answer for one partition.
type Answer = (i32, ErrorCode, Option<String>);

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// Answers an AlterPartitionReassignments request.
pub async fn handle_alter(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    r.i32("timeout_ms")?;
    if v >= 1 {
        r.bool("allow_replication_factor_change")?;
    }
    let n = r.array("topics")?;
    let mut request: Vec<(String, Vec<Wanted>)> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("name")?.to_owned();
        let np = r.array("partitions")?;
        let mut parts = Vec::with_capacity(np);
        for _ in 0..np {
            let partition = r.i32("partition_index")?;
            let replicas = match r.array_len("replicas")? {
                None => None,
                Some(k) => Some((0..k).map(|_| r.i32("replica")).collect::<Result<_, _>>()?),
            };
            r.tagged_fields()?;
            parts.push((partition, replicas));
        }
        r.tagged_fields()?;
        request.push((name, parts));
    }
    r.tagged_fields()?;
    r.finish()?;

    let answers = match broker.metadata.zk() {
        None => alter_embedded(broker, &request),
        Some(zk) => match zk.connected_client().await {
            Ok(client) => alter_zk(&client, &zk.view(), request).await,
            Err(e) => {
                let why = format!("ZooKeeper unavailable: {e}");
                request
                    .into_iter()
                    .map(|(t, ps)| {
                        let answers = ps
                            .into_iter()
                            .map(|(p, _)| (p, ErrorCode::RequestTimedOut, Some(why.clone())))
                            .collect();
                        (t, answers)
                    })
                    .collect()
            }
        },
    };
    let resp = AlterPartitionReassignmentsResponse::default().with_responses(
        answers
            .into_iter()
            .map(|(name, parts)| {
                ReassignableTopicResponse::default()
                    .with_name(topic_name(name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, code, msg)| {
                                ReassignablePartitionResponse::default()
                                    .with_partition_index(p)
                                    .with_error_code(code.code())
                                    .with_error_message(msg.map(sb))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}

/// One broker holds every replica: only "stay where you are" is possible.
fn alter_embedded(
    broker: &Broker,
    request: &[(String, Vec<Wanted>)],
) -> Vec<(String, Vec<Answer>)> {
    let me = broker.config.broker_id;
    let image = broker.metadata.image();
    request
        .iter()
        .map(|(name, parts)| {
            let known = image.topics.get(name).map_or(0, |t| t.partitions);
            let answers = parts
                .iter()
                .map(|(p, replicas)| match replicas {
                    _ if !(0..known).contains(p) => (*p, ErrorCode::UnknownTopicOrPartition, None),
                    None => (*p, ErrorCode::NoReassignmentInProgress, None),
                    Some(r) if r.as_slice() == [me] => (*p, ErrorCode::None, None),
                    Some(r) => (
                        *p,
                        ErrorCode::InvalidReplicaAssignment,
                        Some(format!(
                            "replicas {r:?}: this single broker ({me}) is the only one"
                        )),
                    ),
                })
                .collect();
            (name.clone(), answers)
        })
        .collect()
}

/// Validates each partition against the cluster view and records the
/// valid ones in `/admin/reassign_partitions` (CLU-90's checks).
async fn alter_zk(
    client: &zookeeper_client::Client,
    view: &crate::cluster::zk::ClusterView,
    request: Vec<(String, Vec<Wanted>)>,
) -> Vec<(String, Vec<Answer>)> {
    let ongoing = admin::ongoing_reassignments(client).await;
    let mut entries: Vec<ReassignmentEntry> = Vec::new();
    let mut answers: Vec<(String, Vec<Answer>)> = Vec::new();
    for (name, parts) in request {
        let mut out = Vec::with_capacity(parts.len());
        for (p, replicas) in parts {
            let exists = view
                .topics
                .get(&name)
                .is_some_and(|t| t.assignment.contains_key(&p));
            let answer = if !exists {
                Err((ErrorCode::UnknownTopicOrPartition, None))
            } else if entries.iter().any(|e| e.topic == name && e.partition == p) {
                Err((
                    ErrorCode::InvalidRequest,
                    Some("the partition is named twice".to_owned()),
                ))
            } else {
                match replicas {
                    None => match &ongoing {
                        Err(e) => Err((ErrorCode::UnknownServerError, Some(e.to_string()))),
                        Ok(list) => match list.iter().find(|o| o.topic == name && o.partition == p)
                        {
                            // spec: PRO-32 — back to the original replicas.
                            Some(o) => Ok(o
                                .replicas
                                .iter()
                                .copied()
                                .filter(|b| !o.adding.contains(b))
                                .collect::<Vec<i32>>()),
                            None => Err((ErrorCode::NoReassignmentInProgress, None)),
                        },
                    },
                    Some(target) => check_target(view, &target).map(|()| target),
                }
            };
            match answer {
                Ok(target) => {
                    entries.push(ReassignmentEntry {
                        topic: name.clone(),
                        partition: p,
                        replicas: target,
                    });
                    out.push((p, ErrorCode::None, None));
                }
                Err((code, msg)) => out.push((p, code, msg)),
            }
        }
        answers.push((name, out));
    }
    if !entries.is_empty()
        && let Err(e) = admin::request_reassignment(client, &entries).await
    {
        let why = e.to_string();
        for (name, out) in &mut answers {
            for (p, code, msg) in out.iter_mut() {
                if *code == ErrorCode::None
                    && entries
                        .iter()
                        .any(|e| &e.topic == name && e.partition == *p)
                {
                    *code = ErrorCode::UnknownServerError;
                    *msg = Some(why.clone());
                }
            }
        }
    }
    answers
}

/// A target must name registered brokers, each once.
fn check_target(
    view: &crate::cluster::zk::ClusterView,
    target: &[i32],
) -> Result<(), (ErrorCode, Option<String>)> {
    let bad = |m: String| Err((ErrorCode::InvalidReplicaAssignment, Some(m)));
    if target.is_empty() {
        return bad("empty replica list".into());
    }
    let mut sorted = target.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != target.len() {
        return bad(format!("replicas {target:?} name a broker twice"));
    }
    let missing: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !view.brokers.contains_key(&gregor_core::ids::BrokerId(*b)))
        .collect();
    if !missing.is_empty() {
        return bad(format!("brokers {missing:?} are not registered"));
    }
    Ok(())
}

/// Answers a ListPartitionReassignments request.
pub async fn handle_list(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    r.i32("timeout_ms")?;
    // None: every partition.
    let wanted: Option<Vec<(String, Vec<i32>)>> = match r.array_len("topics")? {
        None => None,
        Some(n) => {
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.str("name")?.to_owned();
                let np = r.array("partition_indexes")?;
                let parts = (0..np)
                    .map(|_| r.i32("partition_index"))
                    .collect::<Result<_, _>>()?;
                r.tagged_fields()?;
                topics.push((name, parts));
            }
            Some(topics)
        }
    };
    r.tagged_fields()?;
    r.finish()?;

    let mut resp = ListPartitionReassignmentsResponse::default();
    let ongoing = match broker.metadata.zk() {
        None => Ok(Vec::new()),
        Some(zk) => match zk.connected_client().await {
            Ok(client) => admin::ongoing_reassignments(&client)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("ZooKeeper unavailable: {e}")),
        },
    };
    match ongoing {
        Err(why) => {
            resp = resp
                .with_error_code(ErrorCode::UnknownServerError.code())
                .with_error_message(Some(sb(why)));
        }
        Ok(list) => {
            let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
            for o in list {
                let asked = wanted.as_ref().is_none_or(|w| {
                    w.iter()
                        .any(|(t, ps)| *t == o.topic && ps.contains(&o.partition))
                });
                if !asked {
                    continue;
                }
                let part = OngoingPartitionReassignment::default()
                    .with_partition_index(o.partition)
                    .with_replicas(ids(&o.replicas))
                    .with_adding_replicas(ids(&o.adding))
                    .with_removing_replicas(ids(&o.removing));
                match topics.last_mut() {
                    Some(t) if t.name.0.as_str() == o.topic => t.partitions.push(part),
                    _ => topics.push(
                        OngoingTopicReassignment::default()
                            .with_name(topic_name(o.topic))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            resp = resp.with_topics(topics);
        }
    }
    encode_body(&resp, v).map(Some)
}
