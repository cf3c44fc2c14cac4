//! DescribeConfigs (key 32), v0–v4: topic and broker configs with their
//! sources and synonyms (spec: PRO-25).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::DescribeConfigsResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::{Reader, legacy};
use super::super::{HandlerError, encode_body};
use super::sb;
use crate::broker::Broker;
use crate::cluster::TopicMeta;
use crate::config::{self, Kind};

/// `ConfigResource.Type.TOPIC`.
pub const RESOURCE_TOPIC: i8 = 2;
/// `ConfigResource.Type.BROKER`.
pub const RESOURCE_BROKER: i8 = 4;

/// `ConfigSource` values on the wire.
pub mod source {
    /// A per-topic override.
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    /// Set in the broker's properties file or by `--override`.
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    /// Built-in default.
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// One config entry, before encoding.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Effective value (None: unset).
    pub value: Option<String>,
    /// Where the value comes from ([`source`]).
    pub source: i8,
    /// Where else the value could come from, most specific first.
    pub synonyms: Vec<(String, Option<String>, i8)>,
    /// `ConfigType` (v3+).
    pub config_type: i8,
}

fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Str | Kind::Enum(_) => 2,
        Kind::Int { .. } => 3,
        Kind::Long { .. } => 5,
        Kind::List | Kind::Listeners => 7,
    }
}

/// Every topic-level config of `meta` with its effective value and source.
pub fn topic_config_entries(broker: &Broker, meta: &TopicMeta) -> Vec<ConfigEntry> {
    let cfg = &broker.config;
    config::TOPIC_KEYS
        .iter()
        .map(|k| {
            let broker_value = cfg.topic_default(k);
            let broker_source = if k.broker_synonyms.iter().any(|s| cfg.is_set(s)) {
                source::STATIC_BROKER_CONFIG
            } else {
                source::DEFAULT_CONFIG
            };
            let mut synonyms = Vec::new();
            let (value, src) = match meta.configs.get(k.name) {
                Some(v) => {
                    synonyms.push((
                        k.name.to_owned(),
                        Some(v.clone()),
                        source::DYNAMIC_TOPIC_CONFIG,
                    ));
                    (Some(v.clone()), source::DYNAMIC_TOPIC_CONFIG)
                }
                None => (broker_value.clone(), broker_source),
            };
            for s in k.broker_synonyms {
                if cfg.is_set(s) {
                    let v = cfg.raw(s).map(str::to_owned);
                    synonyms.push(((*s).to_owned(), v, source::STATIC_BROKER_CONFIG));
                }
            }
            if broker_source == source::DEFAULT_CONFIG {
                synonyms.push((k.broker_synonyms[0].to_owned(), broker_value, broker_source));
            }
            ConfigEntry {
                name: k.name.to_owned(),
                value,
                source: src,
                synonyms,
                config_type: config_type(k.kind),
            }
        })
        .collect()
}

/// Every broker config with its effective value and source.
pub fn broker_config_entries(broker: &Broker) -> Vec<ConfigEntry> {
    let cfg = &broker.config;
    config::BROKER_KEYS
        .iter()
        .map(|k| {
            let value = cfg.raw(k.name).map(str::to_owned);
            let src = if cfg.is_set(k.name) {
                source::STATIC_BROKER_CONFIG
            } else {
                source::DEFAULT_CONFIG
            };
            ConfigEntry {
                name: k.name.to_owned(),
                synonyms: vec![(k.name.to_owned(), value.clone(), src)],
                value,
                source: src,
                config_type: config_type(k.kind),
            }
        })
        .collect()
}

struct ResourceResult {
    error: ErrorCode,
    message: Option<String>,
    resource_type: i8,
    resource_name: String,
    entries: Vec<ConfigEntry>,
}

/// Answers a DescribeConfigs request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let n = r.array("resources")?;
    let mut resources = Vec::with_capacity(n);
    for _ in 0..n {
        let resource_type = r.i8("resource_type")?;
        let resource_name = r.str("resource_name")?.to_owned();
        let keys = match r.array_len("configuration_keys")? {
            None => None,
            Some(k) => {
                let mut keys = Vec::with_capacity(k);
                for _ in 0..k {
                    keys.push(r.str("configuration key")?.to_owned());
                }
                Some(keys)
            }
        };
        r.tagged_fields()?;
        resources.push((resource_type, resource_name, keys));
    }
    let include_synonyms = if v >= 1 {
        r.bool("include_synonyms")?
    } else {
        false
    };
    if v >= 3 {
        r.bool("include_documentation")?;
    }
    r.tagged_fields()?;
    r.finish()?;

    // spec: CLU-25 — in ZooKeeper mode the image is the cache of
    // /config/topics.
    let image = broker.metadata.image();
    let results: Vec<ResourceResult> = resources
        .into_iter()
        .map(|(resource_type, resource_name, keys)| {
            let found = match resource_type {
                RESOURCE_TOPIC => match image.topics.get(&resource_name) {
                    Some(meta) => Ok(topic_config_entries(broker, meta)),
                    None => Err((
                        ErrorCode::UnknownTopicOrPartition,
                        format!("Topic {resource_name} does not exist"),
                    )),
                },
                RESOURCE_BROKER
                    if resource_name.is_empty()
                        || resource_name == broker.config.broker_id.to_string() =>
                {
                    Ok(broker_config_entries(broker))
                }
                RESOURCE_BROKER => Err((
                    ErrorCode::InvalidRequest,
                    format!("Unexpected broker id, expected {}", broker.config.broker_id),
                )),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                )),
            };
            let (error, message, mut entries) = match found {
                Ok(e) => (ErrorCode::None, None, e),
                Err((code, msg)) => (code, Some(msg), Vec::new()),
            };
            if let Some(keys) = keys {
                entries.retain(|e| keys.contains(&e.name));
            }
            if !include_synonyms {
                entries.iter_mut().for_each(|e| e.synonyms.clear());
            }
            ResourceResult {
                error,
                message,
                resource_type,
                resource_name,
                entries,
            }
        })
        .collect();

    if v == 0 {
        // Version 0 is gone from the kafka-protocol crate: encode by hand.
        let mut out = BytesMut::new();
        out.put_i32(0); // throttle_time_ms
        legacy::put_len(&mut out, results.len());
        for res in &results {
            out.put_i16(res.error.code());
            legacy::put_nullable_str(&mut out, res.message.as_deref());
            out.put_i8(res.resource_type);
            legacy::put_str(&mut out, &res.resource_name);
            legacy::put_len(&mut out, res.entries.len());
            for e in &res.entries {
                legacy::put_str(&mut out, &e.name);
                legacy::put_nullable_str(&mut out, e.value.as_deref());
                out.put_u8(0); // read_only
                out.put_u8(u8::from(e.source == source::DEFAULT_CONFIG)); // is_default
                out.put_u8(0); // is_sensitive
            }
        }
        return Ok(Some(out));
    }
    let resp = DescribeConfigsResponse::default().with_results(
        results
            .into_iter()
            .map(|res| {
                DescribeConfigsResult::default()
                    .with_error_code(res.error.code())
                    .with_error_message(res.message.map(sb))
                    .with_resource_type(res.resource_type)
                    .with_resource_name(sb(res.resource_name))
                    .with_configs(
                        res.entries
                            .into_iter()
                            .map(|e| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(sb(e.name))
                                    .with_value(e.value.map(sb))
                                    .with_config_source(e.source)
                                    .with_config_type(e.config_type)
                                    .with_documentation(None)
                                    .with_synonyms(
                                        e.synonyms
                                            .into_iter()
                                            .map(|(n, v, s)| {
                                                DescribeConfigsSynonym::default()
                                                    .with_name(sb(n))
                                                    .with_value(v.map(sb))
                                                    .with_source(s)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_body(&resp, v).map(Some)
}
