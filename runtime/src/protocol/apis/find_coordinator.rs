//! FindCoordinator (key 10), v0–v4: this broker coordinates every group
//! in the single-node mode; v4 answers a batch of keys (spec: GRP-101).

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorResponse};

use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::sb;
use crate::broker::Broker;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// INVALID_REQUEST.
const INVALID_REQUEST: i16 = 42;

/// Answers a FindCoordinator request.
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let (key_type, keys) = if v >= 4 {
        let key_type = r.i8("key_type")?;
        let n = r.array("coordinator_keys")?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push(r.str("coordinator_key")?.to_owned());
        }
        (key_type, keys)
    } else {
        let key = r.str("key")?.to_owned();
        let key_type = if v >= 1 {
            r.i8("key_type")?
        } else {
            KEY_TYPE_GROUP
        };
        (key_type, vec![key])
    };
    r.tagged_fields()?;
    r.finish()?;

    // spec: GRP-101 — the offsets topic exists before anyone is told where
    // to send group requests.
    let error = match key_type {
        // Creating the topic writes one log per partition: blocking pool.
        KEY_TYPE_GROUP => match ensure_offsets_topic(broker).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "no group coordinator");
                COORDINATOR_NOT_AVAILABLE
            }
        },
        // Transactions are not coordinated by this broker yet.
        KEY_TYPE_TRANSACTION => COORDINATOR_NOT_AVAILABLE,
        _ => INVALID_REQUEST,
    };
    // One answer per key: in ZooKeeper mode groups hash to different
    // partitions, hence possibly to different coordinators.
    let answers: Vec<(i16, (i32, String, i32))> = keys
        .iter()
        .map(|key| match (error, broker.metadata.zk()) {
            (0, Some(zk)) => zk_coordinator(broker, zk, key),
            (0, None) => {
                let me = match crate::server::current_listener().filter(|l| !l.is_empty()) {
                    Some(l) => broker.advertised_on(&l),
                    None => broker.advertised(),
                };
                (0, (broker.config.broker_id, me.host, me.port))
            }
            (e, _) => (e, (-1, String::new(), -1)),
        })
        .collect();
    let message_of = |error: i16| {
        (error != 0).then(|| {
            sb(if error == INVALID_REQUEST {
                "unknown key type"
            } else {
                "the coordinator is not available"
            })
        })
    };
    let resp = if v >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            keys.into_iter()
                .zip(answers)
                .map(|(key, (error, (node, host, port)))| {
                    Coordinator::default()
                        .with_key(sb(key))
                        .with_node_id(BrokerId(node))
                        .with_host(sb(host))
                        .with_port(port)
                        .with_error_code(error)
                        .with_error_message(message_of(error))
                })
                .collect(),
        )
    } else {
        let (error, (node, host, port)) = answers
            .into_iter()
            .next()
            .unwrap_or((INVALID_REQUEST, (-1, String::new(), -1)));
        let message = message_of(error);
        let resp = FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(node))
            .with_host(sb(host))
            .with_port(port);
        if v >= 1 {
            resp.with_error_message(message)
        } else {
            resp
        }
    };
    encode_body(&resp, v).map(Some)
}

/// Creates `__consumer_offsets` if needed, off the async workers.
async fn ensure_offsets_topic(broker: &Arc<Broker>) -> Result<(), String> {
    let b = broker.clone();
    match tokio::task::spawn_blocking(move || b.groups.ensure_offsets_topic(&b)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The coordinator in ZooKeeper mode: the live leader of the group's
/// `__consumer_offsets` partition, at the listener the request came in
/// on; COORDINATOR_NOT_AVAILABLE while it has none (spec: CLU-29).
fn zk_coordinator(
    broker: &Broker,
    zk: &crate::cluster::zk::ZkCluster,
    key: &str,
) -> (i16, (i32, String, i32)) {
    let none = (COORDINATOR_NOT_AVAILABLE, (-1, String::new(), -1));
    let view = zk.view();
    let tp = gregor_core::ids::TopicPartition::new(
        crate::group::OFFSETS_TOPIC,
        broker.groups.partition_for(key),
    );
    let Some(leader) = view.partition(&tp).and_then(|s| s.leader) else {
        return none;
    };
    let listener = crate::server::current_listener()
        .filter(|l| !l.is_empty())
        .map_or_else(
            || broker.config.listeners[0].name.clone(),
            |l| l.to_string(),
        );
    match view.endpoint(leader, &listener) {
        Some(e) => (0, (leader.0, e.host, i32::from(e.port))),
        None => none,
    }
}
