//! Broker configuration: Kafka's `server.properties` format and keys.
//!
//! The file is read with the rules of Java's `Properties.load` (comments,
//! `key=value` / `key: value` / `key value`, line continuations and
//! escapes), then `--override key=value` pairs are applied on top. Every key
//! is checked against [`BROKER_KEYS`]: an unknown key or a value of the wrong
//! shape stops startup with an error naming the key (spec: PRO-40, PRO-41).
//! Defaults are Kafka's except where the embedded single-node default says
//! otherwise (listener `127.0.0.1:9092`, data under `./data`, broker id 0).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The properties file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of the properties file is malformed (bad escape).
    #[error("config line {line}: {reason}")]
    Syntax {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not a configuration key Gregor knows.
    #[error("unknown config key `{key}`")]
    UnknownKey {
        /// The offending key.
        key: String,
    },
    /// The value does not have the shape or range the key requires.
    #[error("invalid value `{value}` for config key `{key}`: {reason}")]
    InvalidValue {
        /// The key whose value is wrong.
        key: String,
        /// The value as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An `--override` argument is not of the form `key=value`.
    #[error("override `{0}` is not of the form key=value")]
    BadOverride(String),
}

/// The type and allowed range of one configuration key.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A 32-bit integer within `[min, max]`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A 64-bit integer no smaller than `min`.
    Long {
        /// Smallest allowed value.
        min: i64,
    },
    /// `true` or `false` (case-insensitive).
    Bool,
    /// Any string.
    Str,
    /// A comma-separated list of strings.
    List,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A comma-separated list of `NAME://host:port` listeners.
    Listeners,
}

/// The definition of one configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    /// The key as written in `server.properties`.
    pub name: &'static str,
    /// The value used when the key is not set (`None`: no value).
    pub default: Option<&'static str>,
    /// The type and range checked when the key is set.
    pub kind: Kind,
}

const I32: Kind = Kind::Int {
    min: i32::MIN as i64,
    max: i32::MAX as i64,
};
const fn int(min: i64) -> Kind {
    Kind::Int {
        min,
        max: i32::MAX as i64,
    }
}
const fn long(min: i64) -> Kind {
    Kind::Long { min }
}
const fn key(name: &'static str, default: Option<&'static str>, kind: Kind) -> KeyDef {
    KeyDef {
        name,
        default,
        kind,
    }
}

const LONG_MAX: &str = "9223372036854775807";
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const CLEANUP_POLICIES: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];

/// Every broker key Gregor accepts, with Kafka's defaults (spec: PRO-40).
pub const BROKER_KEYS: &[KeyDef] = &[
    key("broker.id", Some("0"), int(-1)),
    key("broker.rack", None, Kind::Str),
    key(
        "listeners",
        Some("PLAINTEXT://127.0.0.1:9092"),
        Kind::Listeners,
    ),
    key("advertised.listeners", None, Kind::Listeners),
    key(
        "listener.security.protocol.map",
        Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
        Kind::List,
    ),
    key("inter.broker.listener.name", None, Kind::Str),
    key("port", None, int(0)),
    key("host.name", None, Kind::Str),
    key("advertised.host.name", None, Kind::Str),
    key("advertised.port", None, int(0)),
    key("log.dirs", None, Kind::List),
    key("log.dir", Some("./data"), Kind::Str),
    key("num.partitions", Some("1"), int(1)),
    key("default.replication.factor", Some("1"), int(1)),
    key("log.retention.hours", Some("168"), I32),
    key("log.retention.minutes", None, I32),
    key("log.retention.ms", None, long(-1)),
    key("log.retention.bytes", Some("-1"), long(-1)),
    key("log.retention.check.interval.ms", Some("300000"), long(1)),
    key("log.segment.bytes", Some("1073741824"), int(14)),
    key("log.roll.hours", Some("168"), int(1)),
    key("log.roll.ms", None, long(1)),
    key("log.index.size.max.bytes", Some("10485760"), int(12)),
    key("log.index.interval.bytes", Some("4096"), int(0)),
    key("index.interval.bytes", None, int(0)),
    key("log.flush.interval.messages", Some(LONG_MAX), long(1)),
    key("log.flush.interval.ms", None, long(0)),
    key("log.flush.scheduler.interval.ms", Some(LONG_MAX), long(0)),
    key(
        "log.flush.offset.checkpoint.interval.ms",
        Some("60000"),
        int(0),
    ),
    key(
        "log.cleanup.policy",
        Some("delete"),
        Kind::Enum(CLEANUP_POLICIES),
    ),
    key("log.cleaner.enable", Some("true"), Kind::Bool),
    key("log.preallocate", Some("false"), Kind::Bool),
    key(
        "log.message.timestamp.type",
        None,
        Kind::Enum(TIMESTAMP_TYPES),
    ),
    key(
        "message.timestamp.type",
        Some("CreateTime"),
        Kind::Enum(TIMESTAMP_TYPES),
    ),
    key("num.recovery.threads.per.data.dir", Some("1"), int(1)),
    key("message.max.bytes", Some("1048588"), int(0)),
    key("replica.fetch.max.bytes", Some("1048576"), int(0)),
    key("fetch.max.bytes", Some("57671680"), int(1024)),
    key("replica.fetch.wait.max.ms", Some("500"), I32),
    key("replica.fetch.min.bytes", Some("1"), I32),
    key("replica.lag.time.max.ms", Some("30000"), long(0)),
    key("replica.socket.timeout.ms", Some("30000"), I32),
    key("num.replica.fetchers", Some("1"), I32),
    key("socket.send.buffer.bytes", Some("102400"), I32),
    key("socket.receive.buffer.bytes", Some("102400"), I32),
    key("socket.request.max.bytes", Some("104857600"), int(1)),
    key("num.network.threads", Some("3"), int(1)),
    key("num.io.threads", Some("8"), int(1)),
    key("queued.max.requests", Some("500"), int(1)),
    key("max.connections", Some("2147483647"), int(0)),
    key("connections.max.idle.ms", Some("600000"), long(-1)),
    key("zookeeper.connect", None, Kind::Str),
    key("zookeeper.session.timeout.ms", Some("18000"), int(1)),
    key("zookeeper.connection.timeout.ms", None, int(1)),
    key("min.insync.replicas", Some("1"), int(1)),
    key("unclean.leader.election.enable", Some("false"), Kind::Bool),
    key("auto.create.topics.enable", Some("true"), Kind::Bool),
    key("delete.topic.enable", Some("true"), Kind::Bool),
    key("auto.leader.rebalance.enable", Some("true"), Kind::Bool),
    key("controlled.shutdown.enable", Some("true"), Kind::Bool),
    key("controlled.shutdown.max.retries", Some("3"), int(0)),
    key(
        "controlled.shutdown.retry.backoff.ms",
        Some("5000"),
        long(0),
    ),
    key(
        "leader.imbalance.check.interval.seconds",
        Some("300"),
        long(1),
    ),
    key(
        "leader.imbalance.per.broker.percentage",
        Some("10"),
        Kind::Int { min: 0, max: 100 },
    ),
    key("offsets.topic.num.partitions", Some("50"), int(1)),
    key("offsets.topic.replication.factor", Some("3"), int(1)),
    key("offsets.retention.minutes", Some("10080"), int(1)),
    key(
        "transaction.state.log.replication.factor",
        Some("3"),
        int(1),
    ),
    key("transaction.state.log.min.isr", Some("2"), int(1)),
    key("transaction.state.log.num.partitions", Some("50"), int(1)),
    key("transactional.id.expiration.ms", Some("604800000"), int(1)),
    key("producer.id.expiration.ms", Some("86400000"), int(1)),
    key("group.initial.rebalance.delay.ms", Some("3000"), int(0)),
    key("group.min.session.timeout.ms", Some("6000"), I32),
    key("group.max.session.timeout.ms", Some("1800000"), I32),
];

/// Looks a broker key up in [`BROKER_KEYS`].
pub fn broker_key(name: &str) -> Option<&'static KeyDef> {
    BROKER_KEYS.iter().find(|k| k.name == name)
}

/// One topic-level config key, with the broker keys that supply its default.
#[derive(Debug, Clone, Copy)]
pub struct TopicKeyDef {
    /// The topic-level key (as in CreateTopics / DescribeConfigs).
    pub name: &'static str,
    /// The broker keys whose values give this key's default, most specific
    /// first (e.g. `log.retention.ms`, `.minutes`, `.hours`).
    pub broker_synonyms: &'static [&'static str],
    /// Type and range.
    pub kind: Kind,
}

const fn tkey(
    name: &'static str,
    broker_synonyms: &'static [&'static str],
    kind: Kind,
) -> TopicKeyDef {
    TopicKeyDef {
        name,
        broker_synonyms,
        kind,
    }
}

/// Topic-level keys accepted by CreateTopics and reported by DescribeConfigs
/// (spec: PRO-42).
pub const TOPIC_KEYS: &[TopicKeyDef] = &[
    tkey(
        "cleanup.policy",
        &["log.cleanup.policy"],
        Kind::Enum(CLEANUP_POLICIES),
    ),
    tkey(
        "retention.ms",
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        long(-1),
    ),
    tkey("retention.bytes", &["log.retention.bytes"], long(-1)),
    tkey("segment.bytes", &["log.segment.bytes"], int(14)),
    tkey("segment.ms", &["log.roll.ms", "log.roll.hours"], long(1)),
    tkey(
        "segment.index.bytes",
        &["log.index.size.max.bytes"],
        int(12),
    ),
    tkey(
        "index.interval.bytes",
        &["log.index.interval.bytes", "index.interval.bytes"],
        int(0),
    ),
    tkey("flush.messages", &["log.flush.interval.messages"], long(1)),
    tkey(
        "flush.ms",
        &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        long(0),
    ),
    tkey("max.message.bytes", &["message.max.bytes"], int(0)),
    tkey(
        "message.timestamp.type",
        &["log.message.timestamp.type", "message.timestamp.type"],
        Kind::Enum(TIMESTAMP_TYPES),
    ),
    tkey("min.insync.replicas", &["min.insync.replicas"], int(1)),
    tkey(
        "unclean.leader.election.enable",
        &["unclean.leader.election.enable"],
        Kind::Bool,
    ),
    tkey("preallocate", &["log.preallocate"], Kind::Bool),
];

/// Looks a topic-level key up in [`TOPIC_KEYS`].
pub fn topic_key(name: &str) -> Option<&'static TopicKeyDef> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Checks `value` against `kind`; the error names `key` (spec: PRO-41).
pub fn validate(key: &str, kind: Kind, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    match kind {
        Kind::Int { min, max } => {
            let v: i64 = value
                .parse()
                .map_err(|_| invalid("not an integer".into()))?;
            if v < min || v > max {
                return Err(invalid(format!("must be in [{min}, {max}]")));
            }
        }
        Kind::Long { min } => {
            let v: i64 = value
                .parse()
                .map_err(|_| invalid("not an integer".into()))?;
            if v < min {
                return Err(invalid(format!("must be at least {min}")));
            }
        }
        Kind::Bool => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(invalid("must be true or false".into()));
            }
        }
        Kind::Str | Kind::List => {}
        Kind::Enum(allowed) => {
            if !allowed.contains(&value) {
                return Err(invalid(format!("must be one of {}", allowed.join(" | "))));
            }
        }
        Kind::Listeners => {
            parse_listeners(value).map_err(invalid)?;
        }
    }
    Ok(())
}

/// One `NAME://host:port` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Host as written (empty means all interfaces).
    pub host: String,
    /// TCP port (0: pick a free one).
    pub port: u16,
}

impl Listener {
    /// The address to bind: an empty host binds every interface.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            self.host.as_str()
        };
        let text = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        };
        use std::net::ToSocketAddrs;
        text.to_socket_addrs()
            .map_err(|e| format!("cannot resolve {text}: {e}"))?
            .next()
            .ok_or_else(|| format!("{text} resolves to no address"))
    }
}

/// Parses `PLAINTEXT://host:port,NAME://host:port`.
pub fn parse_listeners(value: &str) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| format!("listener `{item}` is not NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("listener `{item}` has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("listener `{item}` has a bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            return Err(format!("listener `{item}` has no name"));
        }
        if out.iter().any(|l: &Listener| l.name == name) {
            return Err(format!("listener name `{name}` appears twice"));
        }
        out.push(Listener {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
        });
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}

/// Parses the text of a `.properties` file into key/value pairs, in order.
///
/// Follows `java.util.Properties.load`: `#` and `!` start comments, the key
/// ends at the first unescaped `=`, `:` or whitespace, a trailing odd
/// backslash continues the line, and `\t \n \r \f`, `\u` with four hex
/// digits, and `\<any>` are unescaped (spec: PRO-43).
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((idx, raw)) = lines.next() {
        let first = raw.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let line_no = idx + 1;
        let (k, v) = split_key_value(&logical);
        let key = unescape(k).map_err(|reason| ConfigError::Syntax {
            line: line_no,
            reason,
        })?;
        let value = unescape(v).map_err(|reason| ConfigError::Syntax {
            line: line_no,
            reason,
        })?;
        out.push((key, value));
    }
    Ok(out)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    !s.bytes()
        .rev()
        .take_while(|&b| b == b'\\')
        .count()
        .is_multiple_of(2)
}

/// Splits a logical line into its raw (still escaped) key and value.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut key_end = bytes.len();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => {
                key_end = i;
                break;
            }
            _ => i += 1,
        }
    }
    let key_end = key_end.min(bytes.len());
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (&line[..key_end], rest)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("malformed \\u escape `\\u{hex}`"))?;
                out.push(char::from_u32(code).ok_or("\\u escape is not a character")?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// How a record's timestamp is chosen (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamp.
    CreateTime,
    /// Stamp the broker's clock at append.
    LogAppendTime,
}

/// The validated broker configuration.
///
/// `values` holds every explicitly set key; typed fields hold the resolved
/// values the broker uses (with Kafka's precedence between aliases, e.g.
/// `log.retention.ms` over `.minutes` over `.hours`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Explicitly set keys, after validation.
    pub values: BTreeMap<String, String>,
    /// `broker.id`.
    pub broker_id: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Listeners to bind (`listeners`, or legacy `host.name`/`port`).
    pub listeners: Vec<Listener>,
    /// Listeners announced to clients in Metadata (`advertised.listeners`,
    /// else `listeners`).
    pub advertised_listeners: Vec<Listener>,
    /// Data directories (`log.dirs`, else `log.dir`).
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Resolved retention time in ms (-1: unlimited).
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (-1: unlimited).
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: i64,
    /// `log.segment.bytes`.
    pub log_segment_bytes: i32,
    /// Resolved `log.roll.ms` (from `log.roll.hours` when unset).
    pub log_roll_ms: i64,
    /// `log.index.size.max.bytes`.
    pub log_index_size_max_bytes: i32,
    /// `log.index.interval.bytes` (alias `index.interval.bytes`).
    pub log_index_interval_bytes: i32,
    /// `log.flush.interval.messages`.
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms` (falls back to the scheduler interval).
    pub log_flush_interval_ms: i64,
    /// `message.timestamp.type` (alias `log.message.timestamp.type`).
    pub message_timestamp_type: TimestampType,
    /// `message.max.bytes`: the largest record batch accepted.
    pub message_max_bytes: i32,
    /// `fetch.max.bytes`: caps the records of one Fetch response, whatever
    /// the client asks.
    pub fetch_max_bytes: i32,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: i32,
    /// `queued.max.requests`: bounds each connection's in-flight pipeline.
    pub queued_max_requests: i32,
    /// `max.connections`.
    pub max_connections: i32,
    /// `connections.max.idle.ms`: a connection silent this long is closed
    /// (-1: never).
    pub connections_max_idle_ms: i64,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// `zookeeper.connect` (None: embedded single-node mode).
    pub zookeeper_connect: Option<String>,
    /// `zookeeper.connect` split into servers and chroot (spec: CLU-3).
    pub zookeeper: Option<ZkConnect>,
    /// `zookeeper.session.timeout.ms`.
    pub zookeeper_session_timeout_ms: i64,
    /// `zookeeper.connection.timeout.ms` (defaults to the session timeout,
    /// as in Kafka).
    pub zookeeper_connection_timeout_ms: i64,
    /// `inter.broker.listener.name`: the listener other brokers connect to
    /// (defaults to the first listener).
    pub inter_broker_listener_name: String,
    /// `controlled.shutdown.enable`.
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.max.retries`.
    pub controlled_shutdown_max_retries: i32,
    /// `controlled.shutdown.retry.backoff.ms`.
    pub controlled_shutdown_retry_backoff_ms: i64,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: i64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
}

/// A parsed `zookeeper.connect`: `host:port[,host:port...][/chroot]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConnect {
    /// The servers, `host:port` each, comma-separated.
    pub servers: String,
    /// The chroot path (`None`: the root).
    pub chroot: Option<String>,
}

/// Parses `zookeeper.connect` (spec: CLU-3): at least one `host:port`,
/// an optional chroot that starts with `/`, has no empty component and
/// does not end with `/`.
pub fn parse_zk_connect(value: &str) -> Result<ZkConnect, String> {
    let (servers, chroot) = match value.find('/') {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    if servers.trim().is_empty() {
        return Err("no ZooKeeper server given".into());
    }
    for s in servers.split(',') {
        let s = s.trim();
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("`{s}` is not host:port"));
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{s}` is not host:port"));
        }
    }
    let chroot = match chroot {
        None | Some("/") => None,
        Some(c) => {
            if c.ends_with('/') || c[1..].split('/').any(str::is_empty) {
                return Err(format!("chroot `{c}` is not a valid ZooKeeper path"));
            }
            Some(c.to_owned())
        }
    };
    Ok(ZkConnect {
        servers: servers
            .split(',')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(","),
        chroot,
    })
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::from_pairs(Vec::<(String, String)>::new()).expect("the built-in defaults are valid")
    }
}

impl BrokerConfig {
    /// Reads a properties file and applies `overrides` (`key=value`) on top.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut pairs = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.to_owned(),
                    source,
                })?;
                parse_properties(&text)?
            }
            None => Vec::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            pairs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Self::from_pairs(pairs)
    }

    /// Builds a configuration from key/value pairs; later pairs win.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut values = BTreeMap::new();
        for (k, v) in pairs {
            let k: String = k.into();
            let v: String = v.into();
            let v = v.trim().to_owned();
            // spec: PRO-41 — unknown and invalid keys stop startup.
            let def = broker_key(&k).ok_or_else(|| ConfigError::UnknownKey { key: k.clone() })?;
            validate(&k, def.kind, &v)?;
            values.insert(k, v);
        }
        Self::resolve(values)
    }

    /// The effective value of a key: set, else its default.
    pub fn raw(&self, key: &str) -> Option<&str> {
        raw_in(&self.values, key)
    }

    /// Whether `key` was set explicitly.
    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The broker-level default of a topic-level key, as a string.
    pub fn topic_default(&self, topic_key: &TopicKeyDef) -> Option<String> {
        match topic_key.name {
            "retention.ms" => Some(self.log_retention_ms.to_string()),
            "segment.ms" => Some(self.log_roll_ms.to_string()),
            "flush.ms" => Some(self.log_flush_interval_ms.to_string()),
            "index.interval.bytes" => Some(self.log_index_interval_bytes.to_string()),
            "message.timestamp.type" => Some(
                match self.message_timestamp_type {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                }
                .to_owned(),
            ),
            _ => self.raw(topic_key.broker_synonyms[0]).map(str::to_owned),
        }
    }

    fn resolve(values: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let raw = |k: &str| raw_in(&values, k);
        let int = |k: &str| -> i64 { raw(k).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let boolean = |k: &str| raw(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let invalid = |k: &str, reason: &str| ConfigError::InvalidValue {
            key: k.to_owned(),
            value: raw(k).unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
        };

        let listeners = if values.contains_key("listeners")
            || !(values.contains_key("port") || values.contains_key("host.name"))
        {
            parse_listeners(raw("listeners").unwrap_or_default())
                .map_err(|r| invalid("listeners", &r))?
        } else {
            // The seed's legacy keys: host.name + port.
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: raw("host.name").unwrap_or("").to_owned(),
                port: raw("port").and_then(|p| p.parse().ok()).unwrap_or(9092),
            }]
        };
        let advertised_listeners = match raw("advertised.listeners") {
            Some(v) => parse_listeners(v).map_err(|r| invalid("advertised.listeners", &r))?,
            None if values.contains_key("advertised.host.name")
                || values.contains_key("advertised.port") =>
            {
                vec![Listener {
                    name: "PLAINTEXT".into(),
                    host: raw("advertised.host.name")
                        .unwrap_or(&listeners[0].host)
                        .to_owned(),
                    port: raw("advertised.port")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(listeners[0].port),
                }]
            }
            None => listeners.clone(),
        };
        if let Some(bad) = advertised_listeners
            .iter()
            .find(|a| !listeners.iter().any(|l| l.name == a.name))
        {
            return Err(invalid(
                "advertised.listeners",
                &format!("listener `{}` is not in listeners", bad.name),
            ));
        }

        let log_dirs: Vec<PathBuf> = match raw("log.dirs") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => vec![PathBuf::from(raw("log.dir").unwrap_or("./data"))],
        };
        if log_dirs.is_empty() {
            return Err(invalid("log.dirs", "no directory given"));
        }

        // Kafka's precedence: ms over minutes over hours.
        let log_retention_ms = if values.contains_key("log.retention.ms") {
            int("log.retention.ms")
        } else if values.contains_key("log.retention.minutes") {
            int("log.retention.minutes").saturating_mul(60_000)
        } else {
            int("log.retention.hours").saturating_mul(3_600_000)
        };
        let log_retention_ms = if log_retention_ms < 0 {
            -1
        } else {
            log_retention_ms
        };
        let log_roll_ms = if values.contains_key("log.roll.ms") {
            int("log.roll.ms")
        } else {
            int("log.roll.hours").saturating_mul(3_600_000)
        };
        let log_index_interval_bytes = if values.contains_key("log.index.interval.bytes") {
            int("log.index.interval.bytes")
        } else if values.contains_key("index.interval.bytes") {
            int("index.interval.bytes")
        } else {
            int("log.index.interval.bytes")
        };
        let log_flush_interval_ms = if values.contains_key("log.flush.interval.ms") {
            int("log.flush.interval.ms")
        } else {
            int("log.flush.scheduler.interval.ms")
        };
        let ts = if values.contains_key("log.message.timestamp.type") {
            raw("log.message.timestamp.type")
        } else {
            raw("message.timestamp.type")
        };
        let message_timestamp_type = if ts == Some("LogAppendTime") {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };

        let default_replication_factor = i16::try_from(int("default.replication.factor"))
            .map_err(|_| invalid("default.replication.factor", "too large"))?;
        let offsets_topic_replication_factor =
            i16::try_from(int("offsets.topic.replication.factor"))
                .map_err(|_| invalid("offsets.topic.replication.factor", "too large"))?;
        // spec: CLU-3
        let zookeeper = match raw("zookeeper.connect") {
            Some(v) => Some(parse_zk_connect(v).map_err(|r| invalid("zookeeper.connect", &r))?),
            None => None,
        };
        let zookeeper_session_timeout_ms = int("zookeeper.session.timeout.ms");
        let zookeeper_connection_timeout_ms =
            if values.contains_key("zookeeper.connection.timeout.ms") {
                int("zookeeper.connection.timeout.ms")
            } else {
                zookeeper_session_timeout_ms
            };
        let inter_broker_listener_name = match raw("inter.broker.listener.name") {
            Some(name) => {
                if !advertised_listeners.iter().any(|l| l.name == name) {
                    return Err(invalid(
                        "inter.broker.listener.name",
                        "not the name of a listener in advertised.listeners",
                    ));
                }
                name.to_owned()
            }
            None => advertised_listeners[0].name.clone(),
        };

        Ok(Self {
            broker_id: int("broker.id") as i32,
            rack: raw("broker.rack").map(str::to_owned),
            listeners,
            advertised_listeners,
            log_dirs,
            num_partitions: int("num.partitions") as i32,
            default_replication_factor,
            log_retention_ms,
            log_retention_bytes: int("log.retention.bytes"),
            log_retention_check_interval_ms: int("log.retention.check.interval.ms"),
            log_segment_bytes: int("log.segment.bytes") as i32,
            log_roll_ms,
            log_index_size_max_bytes: int("log.index.size.max.bytes") as i32,
            log_index_interval_bytes: log_index_interval_bytes as i32,
            log_flush_interval_messages: int("log.flush.interval.messages"),
            log_flush_interval_ms,
            message_timestamp_type,
            message_max_bytes: int("message.max.bytes") as i32,
            socket_request_max_bytes: int("socket.request.max.bytes") as i32,
            fetch_max_bytes: int("fetch.max.bytes") as i32,
            queued_max_requests: int("queued.max.requests") as i32,
            max_connections: int("max.connections") as i32,
            connections_max_idle_ms: int("connections.max.idle.ms"),
            auto_create_topics_enable: boolean("auto.create.topics.enable"),
            delete_topic_enable: boolean("delete.topic.enable"),
            min_insync_replicas: int("min.insync.replicas") as i32,
            offsets_topic_num_partitions: int("offsets.topic.num.partitions") as i32,
            group_initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms") as i32,
            zookeeper_connect: raw("zookeeper.connect").map(str::to_owned),
            zookeeper,
            zookeeper_session_timeout_ms,
            zookeeper_connection_timeout_ms,
            inter_broker_listener_name,
            controlled_shutdown_enable: boolean("controlled.shutdown.enable"),
            controlled_shutdown_max_retries: int("controlled.shutdown.max.retries") as i32,
            controlled_shutdown_retry_backoff_ms: int("controlled.shutdown.retry.backoff.ms"),
            auto_leader_rebalance_enable: boolean("auto.leader.rebalance.enable"),
            leader_imbalance_check_interval_seconds: int("leader.imbalance.check.interval.seconds"),
            leader_imbalance_per_broker_percentage: int("leader.imbalance.per.broker.percentage")
                as i32,
            offsets_topic_replication_factor,
            values,
        })
    }
}

fn raw_in<'a>(values: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    values
        .get(key)
        .map(String::as_str)
        .or_else(|| broker_key(key).and_then(|d| d.default))
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-40
    #[test]
    fn embedded_defaults() {
        let c = BrokerConfig::default();
        assert_eq!(c.broker_id, 0);
        assert_eq!(
            c.listeners[0].bind_addr().unwrap(),
            "127.0.0.1:9092".parse().unwrap()
        );
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(c.log_flush_interval_messages, i64::MAX);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.message_timestamp_type, TimestampType::CreateTime);
    }

    // spec: PRO-43
    #[test]
    fn properties_syntax() {
        let text = "# comment\n  ! also comment\n\nbroker.id=3\nlog.dirs : /a,\\\n    /b\n\
                    num.partitions 4\nhost.name=h\\u0065llo\\=x\n   \nkey\\ with\\ space=v\n";
        let p = parse_properties(text).unwrap();
        assert_eq!(
            p,
            vec![
                ("broker.id".into(), "3".into()),
                ("log.dirs".into(), "/a,/b".into()),
                ("num.partitions".into(), "4".into()),
                ("host.name".into(), "hello=x".into()),
                ("key with space".into(), "v".into()),
            ]
        );
        assert!(matches!(
            parse_properties("a=\\u12").unwrap_err(),
            ConfigError::Syntax { line: 1, .. }
        ));
    }

    // spec: PRO-41
    #[test]
    fn unknown_and_invalid_keys_name_the_key() {
        let e = BrokerConfig::from_pairs([("log.segmnt.bytes", "10")]).unwrap_err();
        assert_eq!(e.to_string(), "unknown config key `log.segmnt.bytes`");
        let e = BrokerConfig::from_pairs([("num.partitions", "zero")]).unwrap_err();
        assert!(e.to_string().contains("`num.partitions`"), "{e}");
        let e = BrokerConfig::from_pairs([("num.partitions", "0")]).unwrap_err();
        assert!(e.to_string().contains("`num.partitions`"), "{e}");
        let e = BrokerConfig::from_pairs([("auto.create.topics.enable", "yes")]).unwrap_err();
        assert!(e.to_string().contains("auto.create.topics.enable"));
        let e = BrokerConfig::from_pairs([("listeners", "127.0.0.1:9092")]).unwrap_err();
        assert!(e.to_string().contains("`listeners`"));
        let e = BrokerConfig::from_pairs([("message.timestamp.type", "Now")]).unwrap_err();
        assert!(e.to_string().contains("message.timestamp.type"));
        let e = BrokerConfig::load(None, &["novalue".into()]).unwrap_err();
        assert!(matches!(e, ConfigError::BadOverride(_)));
    }

    #[test]
    fn precedence_and_aliases() {
        let c = BrokerConfig::from_pairs([
            ("log.retention.hours", "1"),
            ("log.retention.minutes", "2"),
        ])
        .unwrap();
        assert_eq!(c.log_retention_ms, 120_000);
        let c =
            BrokerConfig::from_pairs([("log.retention.minutes", "2"), ("log.retention.ms", "5")])
                .unwrap();
        assert_eq!(c.log_retention_ms, 5);
        let c = BrokerConfig::from_pairs([("log.roll.hours", "2")]).unwrap();
        assert_eq!(c.log_roll_ms, 7_200_000);
        let c = BrokerConfig::from_pairs([("index.interval.bytes", "100")]).unwrap();
        assert_eq!(c.log_index_interval_bytes, 100);
        let c = BrokerConfig::from_pairs([("message.timestamp.type", "LogAppendTime")]).unwrap();
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        let c = BrokerConfig::from_pairs([("host.name", "0.0.0.0"), ("port", "19092")]).unwrap();
        assert_eq!(c.listeners[0].port, 19092);
        let c = BrokerConfig::from_pairs([("log.dirs", "/x, /y")]).unwrap();
        assert_eq!(c.log_dirs, vec![PathBuf::from("/x"), PathBuf::from("/y")]);
    }

    #[test]
    fn overrides_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "num.partitions=3\nbroker.id=7\n").unwrap();
        let c = BrokerConfig::load(Some(&path), &["num.partitions=5".into()]).unwrap();
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.broker_id, 7);
        assert!(c.is_set("broker.id"));
        assert_eq!(c.raw("log.retention.hours"), Some("168"));
    }

    #[test]
    fn advertised_listener_must_exist() {
        let e = BrokerConfig::from_pairs([("advertised.listeners", "OTHER://h:1")]).unwrap_err();
        assert!(e.to_string().contains("advertised.listeners"));
    }

    #[test]
    fn every_default_is_valid() {
        for k in BROKER_KEYS {
            if let Some(d) = k.default {
                validate(k.name, k.kind, d).unwrap();
            }
        }
    }

    // spec: CLU-3
    #[test]
    fn zookeeper_connect_is_parsed_and_bad_values_are_named() {
        let c =
            BrokerConfig::from_pairs([("zookeeper.connect", "h1:2181, h2:2182/kafka/a")]).unwrap();
        let zk = c.zookeeper.unwrap();
        assert_eq!(zk.servers, "h1:2181,h2:2182");
        assert_eq!(zk.chroot.as_deref(), Some("/kafka/a"));
        assert_eq!(c.zookeeper_connection_timeout_ms, 18_000);
        for bad in ["", "/chroot", "h1", "h1:x", "h1:2181/a/", "h1:2181/a//b"] {
            let e = BrokerConfig::from_pairs([("zookeeper.connect", bad)]).unwrap_err();
            assert!(e.to_string().contains("zookeeper.connect"), "{bad}: {e}");
        }
        assert!(BrokerConfig::default().zookeeper.is_none());
    }

    #[test]
    fn cluster_keys_resolve_and_are_checked() {
        let c = BrokerConfig::from_pairs([
            (
                "listeners",
                "CLIENT://127.0.0.1:9092,BROKER://127.0.0.1:9093",
            ),
            ("inter.broker.listener.name", "BROKER"),
            ("leader.imbalance.per.broker.percentage", "20"),
            ("controlled.shutdown.enable", "false"),
        ])
        .unwrap();
        assert_eq!(c.inter_broker_listener_name, "BROKER");
        assert_eq!(c.leader_imbalance_per_broker_percentage, 20);
        assert!(!c.controlled_shutdown_enable);
        assert_eq!(c.controlled_shutdown_max_retries, 3);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(
            BrokerConfig::default().inter_broker_listener_name,
            "PLAINTEXT"
        );
        let e = BrokerConfig::from_pairs([("inter.broker.listener.name", "NOPE")]).unwrap_err();
        assert!(e.to_string().contains("inter.broker.listener.name"));
        let e = BrokerConfig::from_pairs([("leader.imbalance.per.broker.percentage", "101")])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("leader.imbalance.per.broker.percentage")
        );
    }
}
