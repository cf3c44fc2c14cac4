//! ElectLeaders (key 43), v0–v2: elect each partition's preferred replica
//! now, as `kafka-leader-election.sh --election-type PREFERRED` and the
//! admin clients' `elect_leaders` ask (spec: PRO-33).
//!
//! In ZooKeeper mode the partitions whose preferred replica is live, in
//! the ISR and not leading are written to `/admin/preferred_replica_election`;
//! the controller moves their leadership (CLU-82) and the answer waits
//! until this broker's view shows the preferred replicas leading, up to
//! the request's timeout. Unclean elections on request are not offered:
//! the controller elects out of the ISR only when
//! `unclean.leader.election.enable` says so.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ElectLeadersResponse;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::cluster::zk::{ClusterView, ZkCluster};
use crate::cluster::znodes::ElectionEntry;
use crate::controller::admin;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
/// How long an election may take when the request gives no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How often a pending election is looked at (and re-requested).
const POLL: Duration = Duration::from_millis(100);
const REREQUEST: Duration = Duration::from_secs(2);

/// The answer for one partition.
type Answer = (ErrorCode, Option<String>);

/// Answers an ElectLeaders request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let election_type = if v >= 1 {
        r.i8("election_type")?
    } else {
        PREFERRED
    };
    // None: every partition.
    let wanted: Option<Vec<(String, i32)>> = match r.array_len("topic_partitions")? {
        None => None,
        Some(n) => {
            let mut list = Vec::new();
            for _ in 0..n {
                let topic = r.str("topic")?.to_owned();
                let np = r.array("partitions")?;
                for _ in 0..np {
                    list.push((topic.clone(), r.i32("partition")?));
                }
                r.tagged_fields()?;
            }
            Some(list)
        }
    };
    let timeout_ms = r.i32("timeout_ms")?;
    r.tagged_fields()?;
    r.finish()?;

    let all = wanted.is_none();
    let answers = match broker.metadata.zk() {
        None => embedded(broker, wanted),
        Some(zk) => {
            let wait = u64::try_from(timeout_ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map_or(DEFAULT_WAIT, Duration::from_millis);
            with_zookeeper(zk, election_type, wanted, wait).await
        }
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, p), (code, msg)) in answers {
        // Asked about every partition: those that needed nothing are left
        // out, as in Kafka.
        if all && code == ErrorCode::ElectionNotNeeded {
            continue;
        }
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(p)
                .with_error_code(code.code())
                .with_error_message(msg.map(sb)),
        );
    }
    let resp = ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(t, parts)| {
                ReplicaElectionResult::default()
                    .with_topic(topic_name(t))
                    .with_partition_result(parts)
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}

/// One broker leads everything it holds: nothing to elect.
fn embedded(broker: &Broker, wanted: Option<Vec<(String, i32)>>) -> Vec<((String, i32), Answer)> {
    let image = broker.metadata.image();
    let list = wanted.unwrap_or_else(|| {
        image
            .topics
            .iter()
            .flat_map(|(t, m)| (0..m.partitions).map(move |p| (t.clone(), p)))
            .collect()
    });
    list.into_iter()
        .map(|(t, p)| {
            let known = image
                .topics
                .get(&t)
                .is_some_and(|m| (0..m.partitions).contains(&p));
            let code = if known {
                ErrorCode::ElectionNotNeeded
            } else {
                ErrorCode::UnknownTopicOrPartition
            };
            ((t, p), (code, None))
        })
        .collect()
}

/// Where a partition stands for a preferred election.
enum Standing {
    Unknown,
    Leads,
    Unavailable(String),
    Eligible,
}

fn standing(view: &ClusterView, topic: &str, p: i32) -> Standing {
    let Some(t) = view.topics.get(topic) else {
        return Standing::Unknown;
    };
    let (Some(replicas), Some((state, _))) = (t.assignment.get(&p), t.states.get(&p)) else {
        return Standing::Unknown;
    };
    let Some(&preferred) = replicas.first() else {
        return Standing::Unknown;
    };
    if state.leader == Some(preferred) {
        Standing::Leads
    } else if !view.brokers.contains_key(&preferred) {
        Standing::Unavailable(format!(
            "preferred replica {} is not registered",
            preferred.0
        ))
    } else if !state.isr.contains(&preferred) {
        Standing::Unavailable(format!(
            "preferred replica {} is not in the ISR",
            preferred.0
        ))
    } else {
        Standing::Eligible
    }
}

async fn with_zookeeper(
    zk: &ZkCluster,
    election_type: i8,
    wanted: Option<Vec<(String, i32)>>,
    wait: Duration,
) -> Vec<((String, i32), Answer)> {
    let view = zk.view();
    let list = wanted.unwrap_or_else(|| {
        view.topics
            .iter()
            .flat_map(|(t, tv)| tv.assignment.keys().map(move |p| (t.clone(), *p)))
            .collect()
    });
    let mut answers: Vec<((String, i32), Option<Answer>)> = Vec::with_capacity(list.len());
    for (t, p) in list {
        let answer = match (election_type, standing(&view, &t, p)) {
            (_, Standing::Unknown) => Some((ErrorCode::UnknownTopicOrPartition, None)),
            (UNCLEAN, _) => {
                let leader = view
                    .topics
                    .get(&t)
                    .and_then(|tv| tv.states.get(&p))
                    .and_then(|(s, _)| s.leader);
                Some(match leader {
                    Some(_) => (ErrorCode::ElectionNotNeeded, None),
                    None => (
                        ErrorCode::EligibleLeadersNotAvailable,
                        Some(
                            "unclean election on request is not offered; the controller \
                             elects out of the ISR when unclean.leader.election.enable=true"
                                .into(),
                        ),
                    ),
                })
            }
            (PREFERRED, Standing::Leads) => Some((ErrorCode::ElectionNotNeeded, None)),
            (PREFERRED, Standing::Unavailable(why)) => {
                Some((ErrorCode::PreferredLeaderNotAvailable, Some(why)))
            }
            (PREFERRED, Standing::Eligible) => None,
            (other, _) => Some((
                ErrorCode::InvalidRequest,
                Some(format!("unknown election type {other}")),
            )),
        };
        answers.push(((t, p), answer));
    }
    let pending: Vec<ElectionEntry> = answers
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|((t, p), _)| ElectionEntry {
            topic: t.clone(),
            partition: *p,
        })
        .collect();
    if !pending.is_empty() {
        let outcome = elect(zk, &pending, wait).await;
        for ((t, p), a) in &mut answers {
            if a.is_none() {
                *a = Some(outcome(t, *p));
            }
        }
    }
    answers
        .into_iter()
        .map(|(tp, a)| (tp, a.unwrap_or((ErrorCode::UnknownServerError, None))))
        .collect()
}

/// Asks the controller for the elections and waits for them; returns how
/// each partition ended.
async fn elect(
    zk: &ZkCluster,
    pending: &[ElectionEntry],
    wait: Duration,
) -> impl Fn(&str, i32) -> Answer {
    let deadline = tokio::time::Instant::now() + wait;
    let mut failure: Option<String> = None;
    let mut next_request = tokio::time::Instant::now();
    loop {
        let view = zk.view();
        let open: Vec<ElectionEntry> = pending
            .iter()
            .filter(|e| matches!(standing(&view, &e.topic, e.partition), Standing::Eligible))
            .cloned()
            .collect();
        if open.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        if tokio::time::Instant::now() >= next_request {
            // Asked again now and then: a new controller, or a request
            // node removed by a pass that raced with this one.
            next_request = tokio::time::Instant::now() + REREQUEST;
            let res = match zk.connected_client().await {
                Ok(client) => admin::request_preferred_election(&client, &open)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("ZooKeeper unavailable: {e}")),
            };
            if let Err(e) = res {
                failure = Some(e);
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let view = zk.view();
    move |t: &str, p: i32| match standing(&view, t, p) {
        Standing::Leads => (ErrorCode::None, None),
        Standing::Unknown => (ErrorCode::UnknownTopicOrPartition, None),
        Standing::Unavailable(why) => (ErrorCode::PreferredLeaderNotAvailable, Some(why)),
        Standing::Eligible => match &failure {
            Some(e) => (ErrorCode::UnknownServerError, Some(e.clone())),
            None => (
                ErrorCode::RequestTimedOut,
                Some("the controller has not elected the preferred replica yet".into()),
            ),
        },
    }
}
