//! AlterConfigs (key 33, v0–v2) and IncrementalAlterConfigs (key 44,
//! v0–v1): change a topic's config overrides while it runs (spec: PRO-27).
//!
//! AlterConfigs replaces the whole set of a topic's overrides with the
//! request's; IncrementalAlterConfigs sets, deletes, appends to or
//! subtracts from single keys and keeps the rest. Broker configs are read
//! from `server.properties` only and cannot be changed here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{AlterConfigsResponse, IncrementalAlterConfigsResponse};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::sb;
use crate::broker::Broker;
use crate::cluster::TopicError;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// How long a change may take to reach this broker's own metadata.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Topic keys whose value is a comma-separated list (APPEND / SUBTRACT).
const LIST_KEYS: &[&str] = &["cleanup.policy"];

/// One operation of an IncrementalAlterConfigs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// One resource of either request.
struct Resource {
    resource_type: i8,
    name: String,
    /// AlterConfigs: the complete new set. IncrementalAlterConfigs: the
    /// operations in request order. `Err` when an operation code is unknown.
    change: Result<Change, String>,
}

enum Change {
    Replace(BTreeMap<String, String>),
    Incremental(Vec<(String, Op)>),
}

/// Applies incremental operations to the current overrides.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, Op)],
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut next = current.clone();
    let mut seen = BTreeSet::new();
    for (key, op) in ops {
        if !seen.insert(key.as_str()) {
            return Err(TopicError::InvalidConfig(format!(
                "Error due to duplicate config keys: {key}"
            )));
        }
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match op {
            Op::Set(v) => {
                next.insert(key.clone(), v.clone());
            }
            Op::Delete => {
                next.remove(key);
            }
            Op::Append(_) | Op::Subtract(_) if !LIST_KEYS.contains(&key.as_str()) => {
                return Err(TopicError::InvalidConfig(format!(
                    "Config value append or subtract is not allowed for config key: {key}"
                )));
            }
            Op::Append(v) => {
                let mut items = next.get(key).map(|c| list(c)).unwrap_or_default();
                for item in list(v) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                next.insert(key.clone(), items.join(","));
            }
            Op::Subtract(v) => {
                let gone = list(v);
                let items: Vec<String> = next
                    .get(key)
                    .map(|c| list(c))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| !gone.contains(i))
                    .collect();
                if items.is_empty() {
                    next.remove(key);
                } else {
                    next.insert(key.clone(), items.join(","));
                }
            }
        }
    }
    Ok(next)
}

async fn apply(
    broker: &Broker,
    res: Resource,
    seen: &mut BTreeSet<(i8, String)>,
    validate_only: bool,
) -> Outcome {
    let (code, message) = if !seen.insert((res.resource_type, res.name.clone())) {
        (
            ErrorCode::InvalidRequest,
            Some(format!("Duplicate resource {} in request", res.name)),
        )
    } else {
        match (res.resource_type, res.change) {
            (_, Err(msg)) => (ErrorCode::InvalidRequest, Some(msg)),
            (RESOURCE_TOPIC, Ok(change)) => {
                let current = broker.metadata.image().topics.get(&res.name).cloned();
                let outcome = match (current, change) {
                    (None, _) => Err(TopicError::Unknown(res.name.clone())),
                    (Some(_), Change::Replace(all)) => Ok(all),
                    (Some(meta), Change::Incremental(ops)) => apply_ops(&meta.configs, &ops),
                };
                let outcome = match outcome {
                    Ok(configs) => {
                        broker
                            .set_topic_configs_async(
                                &res.name,
                                configs,
                                validate_only,
                                APPLY_TIMEOUT,
                            )
                            .await
                    }
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => (ErrorCode::None, None),
                    Err(TopicError::Unknown(t)) => (
                        ErrorCode::UnknownTopicOrPartition,
                        Some(format!("Topic {t} does not exist")),
                    ),
                    Err(e) => (ErrorCode::from(&e), Some(e.to_string())),
                }
            }
            (RESOURCE_BROKER, Ok(_)) => (
                ErrorCode::InvalidRequest,
                Some(
                    "broker configs are read from server.properties at start and cannot be \
                     changed while the broker runs"
                        .to_owned(),
                ),
            ),
            (other, Ok(_)) => (
                ErrorCode::InvalidRequest,
                Some(format!("Unsupported resource type {other}")),
            ),
        }
    };
    Outcome {
        code,
        message,
        resource_type: res.resource_type,
        name: res.name,
    }
}

/// Reads the requests' common tail (`validate_only`) and applies every
/// resource in order.
async fn apply_all(
    broker: &Broker,
    resources: Vec<Resource>,
    mut r: Reader,
) -> Result<Vec<Outcome>, HandlerError> {
    let validate_only = r.bool("validate_only")?;
    r.tagged_fields()?;
    r.finish()?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(resources.len());
    for res in resources {
        out.push(apply(broker, res, &mut seen, validate_only).await);
    }
    Ok(out)
}

/// The answer for one resource.
struct Outcome {
    code: ErrorCode,
    message: Option<String>,
    resource_type: i8,
    name: String,
}

/// Answers an AlterConfigs request.
pub async fn handle_alter(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let n = r.array("resources")?;
    let mut resources = Vec::with_capacity(n);
    for _ in 0..n {
        let resource_type = r.i8("resource_type")?;
        let name = r.str("resource_name")?.to_owned();
        let k = r.array("configs")?;
        let mut all = BTreeMap::new();
        let mut duplicate = None;
        for _ in 0..k {
            let key = r.str("config name")?.to_owned();
            let value = r.nullable_str("config value")?.map(str::to_owned);
            r.tagged_fields()?;
            // A null value keeps the key unset (its default applies).
            if let Some(v) = value
                && all.insert(key.clone(), v).is_some()
            {
                duplicate = Some(key);
            }
        }
        r.tagged_fields()?;
        let change = match duplicate {
            Some(key) => Err(format!("Error due to duplicate config keys: {key}")),
            None => Ok(Change::Replace(all)),
        };
        resources.push(Resource {
            resource_type,
            name,
            change,
        });
    }
    let mut responses = Vec::with_capacity(resources.len());
    for o in apply_all(broker, resources, r).await? {
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(o.code.code())
                .with_error_message(o.message.map(sb))
                .with_resource_type(o.resource_type)
                .with_resource_name(sb(o.name)),
        );
    }
    let resp = AlterConfigsResponse::default().with_responses(responses);
    encode_body(&resp, header.api_version).map(Some)
}

/// Answers an IncrementalAlterConfigs request.
pub async fn handle_incremental(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let n = r.array("resources")?;
    let mut resources = Vec::with_capacity(n);
    for _ in 0..n {
        let resource_type = r.i8("resource_type")?;
        let name = r.str("resource_name")?.to_owned();
        let k = r.array("configs")?;
        let mut ops = Vec::with_capacity(k);
        let mut bad = None;
        for _ in 0..k {
            let key = r.str("config name")?.to_owned();
            let code = r.i8("config_operation")?;
            let value = r.nullable_str("config value")?.map(str::to_owned);
            r.tagged_fields()?;
            let op = match (code, value) {
                (0, Some(v)) => Op::Set(v),
                (1, _) => Op::Delete,
                (2, Some(v)) => Op::Append(v),
                (3, Some(v)) => Op::Subtract(v),
                (0 | 2 | 3, None) => {
                    bad.get_or_insert(format!("Null value not supported for : {key}"));
                    continue;
                }
                (other, _) => {
                    bad.get_or_insert(format!("Unknown config operation {other} for {key}"));
                    continue;
                }
            };
            ops.push((key, op));
        }
        r.tagged_fields()?;
        resources.push(Resource {
            resource_type,
            name,
            change: bad.map_or(Ok(Change::Incremental(ops)), Err),
        });
    }
    let mut responses = Vec::with_capacity(resources.len());
    for o in apply_all(broker, resources, r).await? {
        responses.push(
            IncrementalResourceResponse::default()
                .with_error_code(o.code.code())
                .with_error_message(o.message.map(sb))
                .with_resource_type(o.resource_type)
                .with_resource_name(sb(o.name)),
        );
    }
    let resp = IncrementalAlterConfigsResponse::default().with_responses(responses);
    encode_body(&resp, header.api_version).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn incremental_operations_change_only_the_keys_they_name() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "100000")]);
        let next = apply_ops(
            &current,
            &[
                ("retention.ms".into(), Op::Set("2000".into())),
                ("segment.bytes".into(), Op::Delete),
                ("cleanup.policy".into(), Op::Append("compact".into())),
            ],
        )
        .unwrap();
        assert_eq!(
            next,
            map(&[("cleanup.policy", "compact"), ("retention.ms", "2000")])
        );
        let next = apply_ops(
            &next,
            &[("cleanup.policy".into(), Op::Append("delete,compact".into()))],
        )
        .unwrap();
        assert_eq!(next["cleanup.policy"], "compact,delete");
        let next = apply_ops(
            &next,
            &[("cleanup.policy".into(), Op::Subtract("compact".into()))],
        )
        .unwrap();
        assert_eq!(next["cleanup.policy"], "delete");
    }

    #[test]
    fn append_to_a_plain_key_and_duplicates_are_refused() {
        let e = apply_ops(
            &BTreeMap::new(),
            &[("retention.ms".into(), Op::Append("5".into()))],
        )
        .unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        let e = apply_ops(
            &BTreeMap::new(),
            &[
                ("retention.ms".into(), Op::Set("5".into())),
                ("retention.ms".into(), Op::Delete),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }
}
