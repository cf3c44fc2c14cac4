//! The ZooKeeper layout of a Gregor cluster: znode paths and their JSON
//! payloads (spec: CLU-1, CLU-2).
//!
//! The layout and the field names follow Kafka's ZooKeeper mode, so an
//! operator who knows `zkCli.sh` finds the familiar nodes:
//!
//! | path | kind | payload |
//! |---|---|---|
//! | `/cluster/id` | persistent | [`ClusterIdZnode`] |
//! | `/brokers/ids/<id>` | ephemeral, one per live broker | [`BrokerZnode`]; its `czxid` is the broker epoch (REP-23) |
//! | `/brokers/topics/<t>` | persistent | [`TopicZnode`]: the replica assignment |
//! | `/brokers/topics/<t>/partitions/<p>/state` | persistent | [`PartitionStateZnode`]; its data version is the partition epoch (REP-19) |
//! | `/controller` | ephemeral | [`ControllerZnode`] |
//! | `/controller_epoch` | persistent | the controller epoch as decimal text |
//! | `/config/topics/<t>` | persistent | [`TopicConfigZnode`] |
//! | `/admin/delete_topics/<t>` | persistent, empty | a deletion the controller carries out |
//! | `/admin/reassign_partitions` | persistent | [`ReassignmentZnode`] |
//! | `/admin/controlled_shutdown/<id>` | ephemeral, empty | broker `id` asks to hand its leaderships away |
//! | `/latest_producer_id_block` | persistent | [`ProducerIdBlockZnode`] |
//!
//! Every write of shared state is version-conditional, so a fenced writer's
//! write fails with `BadVersion`.

use std::collections::{BTreeMap, BTreeSet};

use gregor_core::controller::PartitionState;
use gregor_core::ids::{BrokerId, LeaderEpoch, PartitionEpoch};
use serde::{Deserialize, Serialize};

/// `/cluster/id`.
pub const CLUSTER_ID: &str = "/cluster/id";
/// Parent of the broker registrations.
pub const BROKER_IDS: &str = "/brokers/ids";
/// Parent of the topic assignments.
pub const BROKER_TOPICS: &str = "/brokers/topics";
/// The controller's ephemeral node.
pub const CONTROLLER: &str = "/controller";
/// The controller epoch, bumped by every newly elected controller.
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
/// Parent of topic config overrides.
pub const CONFIG_TOPICS: &str = "/config/topics";
/// Parent of pending topic deletions.
pub const ADMIN_DELETE_TOPICS: &str = "/admin/delete_topics";
/// Pending partition reassignments.
pub const ADMIN_REASSIGN: &str = "/admin/reassign_partitions";
/// Pending preferred-leader elections (ElectLeaders).
pub const ADMIN_PREFERRED_ELECTION: &str = "/admin/preferred_replica_election";
/// Parent of controlled-shutdown requests.
pub const ADMIN_CONTROLLED_SHUTDOWN: &str = "/admin/controlled_shutdown";
/// The last producer-id block handed out.
pub const PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";

/// Persistent nodes every broker creates (if missing) at start, parents
/// first.
pub const PERSISTENT_PATHS: &[&str] = &[
    "/cluster",
    "/brokers",
    BROKER_IDS,
    BROKER_TOPICS,
    "/config",
    CONFIG_TOPICS,
    "/admin",
    ADMIN_DELETE_TOPICS,
    ADMIN_CONTROLLED_SHUTDOWN,
];

/// `/brokers/ids/<id>`.
pub fn broker_path(id: BrokerId) -> String {
    format!("{BROKER_IDS}/{}", id.0)
}

/// `/brokers/topics/<topic>`.
pub fn topic_path(topic: &str) -> String {
    format!("{BROKER_TOPICS}/{topic}")
}

/// `/brokers/topics/<topic>/partitions`.
pub fn partitions_path(topic: &str) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions")
}

/// `/brokers/topics/<topic>/partitions/<p>`.
pub fn partition_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions/{partition}")
}

/// `/brokers/topics/<topic>/partitions/<p>/state`.
pub fn partition_state_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS}/{topic}/partitions/{partition}/state")
}

/// `/config/topics/<topic>`.
pub fn topic_config_path(topic: &str) -> String {
    format!("{CONFIG_TOPICS}/{topic}")
}

/// `/admin/delete_topics/<topic>`.
pub fn delete_topic_path(topic: &str) -> String {
    format!("{ADMIN_DELETE_TOPICS}/{topic}")
}

/// `/admin/controlled_shutdown/<id>`.
pub fn controlled_shutdown_path(id: BrokerId) -> String {
    format!("{ADMIN_CONTROLLED_SHUTDOWN}/{}", id.0)
}

/// Why a znode payload could not be read.
#[derive(Debug, thiserror::Error)]
#[error("znode {path}: {reason}")]
pub struct ZnodeError {
    /// The node.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Decodes a JSON payload, naming the node on failure.
pub fn decode<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> Result<T, ZnodeError> {
    serde_json::from_slice(data).map_err(|e| ZnodeError {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Encodes a JSON payload.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `/cluster/id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdZnode {
    /// Format version (`"1"`, a string as in Kafka).
    pub version: String,
    /// The cluster id reported in Metadata responses.
    pub id: String,
}

/// A broker's registration, `/brokers/ids/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerZnode {
    /// Format version (5).
    pub version: i32,
    /// Host of the first endpoint (legacy field).
    pub host: String,
    /// Port of the first endpoint (legacy field).
    pub port: i32,
    /// Always -1: no JMX.
    #[serde(default = "minus_one")]
    pub jmx_port: i32,
    /// Registration time, milliseconds since the epoch, as text.
    pub timestamp: String,
    /// Every advertised listener as `NAME://host:port`.
    pub endpoints: Vec<String>,
    /// Listener name → security protocol (always `PLAINTEXT` here).
    #[serde(default)]
    pub listener_security_protocol_map: BTreeMap<String, String>,
    /// `broker.rack`, if set.
    #[serde(default)]
    pub rack: Option<String>,
    /// True when the broker started without a clean-shutdown marker and
    /// may have lost unflushed records (spec: REP-22). Not a Kafka field;
    /// Kafka's readers ignore it.
    #[serde(default)]
    pub unclean_start: bool,
}

fn minus_one() -> i32 {
    -1
}

impl BrokerZnode {
    /// The advertised endpoint of listener `name`, as (host, port).
    pub fn endpoint(&self, name: &str) -> Option<(String, u16)> {
        self.endpoints.iter().find_map(|e| {
            let (n, rest) = e.split_once("://")?;
            if n != name {
                return None;
            }
            let (host, port) = rest.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
    }
}

/// A topic's replica assignment, `/brokers/topics/<t>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicZnode {
    /// Format version (3).
    pub version: i32,
    /// Partition index (as text, as in Kafka) → replicas in preference
    /// order.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Replicas being added by a reassignment, per partition.
    #[serde(default)]
    pub adding_replicas: BTreeMap<String, Vec<i32>>,
    /// Replicas being removed by a reassignment, per partition.
    #[serde(default)]
    pub removing_replicas: BTreeMap<String, Vec<i32>>,
    /// Topic id, base64 (URL-safe, unpadded) of 16 bytes, as Kafka writes it.
    #[serde(default)]
    pub topic_id: Option<String>,
}

impl TopicZnode {
    /// The assignment by partition number; entries whose key is not a
    /// number are skipped.
    pub fn assignment(&self) -> BTreeMap<i32, Vec<BrokerId>> {
        self.partitions
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.iter().map(|b| BrokerId(*b)).collect())))
            .collect()
    }
}

/// A partition's leader and ISR, `/brokers/topics/<t>/partitions/<p>/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStateZnode {
    /// The epoch of the controller that wrote it last.
    pub controller_epoch: i32,
    /// The leader's broker id, -1 when offline.
    pub leader: i32,
    /// Format version (1).
    pub version: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

impl PartitionStateZnode {
    /// The core's record of this partition: `replicas` come from the
    /// topic's assignment, `data_version` is the znode's data version and
    /// serves as the partition epoch (spec: REP-19).
    pub fn to_core(&self, replicas: Vec<BrokerId>, data_version: i32) -> PartitionState {
        PartitionState {
            replicas,
            leader: (self.leader >= 0).then_some(BrokerId(self.leader)),
            leader_epoch: LeaderEpoch(self.leader_epoch),
            partition_epoch: PartitionEpoch(data_version),
            isr: self
                .isr
                .iter()
                .map(|b| BrokerId(*b))
                .collect::<BTreeSet<_>>(),
        }
    }

    /// The znode payload for a core record, written by a controller of
    /// `controller_epoch`.
    pub fn from_core(state: &PartitionState, controller_epoch: i32) -> Self {
        Self {
            controller_epoch,
            leader: state.leader.map_or(-1, |b| b.0),
            version: 1,
            leader_epoch: state.leader_epoch.0,
            isr: state.isr.iter().map(|b| b.0).collect(),
        }
    }
}

/// `/controller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerZnode {
    /// Format version (1).
    pub version: i32,
    /// The controller's broker id.
    pub brokerid: i32,
    /// Election time, milliseconds since the epoch, as text.
    pub timestamp: String,
}

/// `/config/topics/<t>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigZnode {
    /// Format version (1).
    pub version: i32,
    /// Topic-level overrides.
    pub config: BTreeMap<String, String>,
}

/// `/admin/reassign_partitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentZnode {
    /// Format version (1).
    pub version: i32,
    /// The requested moves.
    pub partitions: Vec<ReassignmentEntry>,
}

/// One requested move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentEntry {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The target replicas, preferred leader first.
    pub replicas: Vec<i32>,
}

/// `/admin/preferred_replica_election`, Kafka's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredElectionZnode {
    /// Format version (1).
    pub version: i32,
    /// The partitions whose preferred replica should lead.
    pub partitions: Vec<ElectionEntry>,
}

/// One partition of a preferred-leader election request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElectionEntry {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// `/latest_producer_id_block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlockZnode {
    /// Format version (1).
    pub version: i32,
    /// The broker the block went to.
    pub broker: i32,
    /// First id of the block, as text.
    pub block_start: String,
    /// Last id of the block, as text.
    pub block_end: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_written_nodes_parse() {
        let b: BrokerZnode = decode(
            "/brokers/ids/1",
            br#"{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://h1:9092"],"jmx_port":-1,"port":9092,"host":"h1","version":5,"timestamp":"1700000000000"}"#,
        )
        .unwrap();
        assert_eq!(b.endpoint("PLAINTEXT"), Some(("h1".into(), 9092)));
        assert!(!b.unclean_start);
        let t: TopicZnode = decode(
            "/brokers/topics/t",
            br#"{"version":3,"partitions":{"0":[1,2,3],"1":[2,3,1]},"adding_replicas":{},"removing_replicas":{},"topic_id":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
        )
        .unwrap();
        assert_eq!(
            t.assignment()[&1],
            vec![BrokerId(2), BrokerId(3), BrokerId(1)]
        );
        let s: PartitionStateZnode = decode(
            "/brokers/topics/t/partitions/0/state",
            br#"{"controller_epoch":3,"leader":2,"version":1,"leader_epoch":7,"isr":[2,3]}"#,
        )
        .unwrap();
        let core = s.to_core(vec![BrokerId(1), BrokerId(2), BrokerId(3)], 11);
        assert_eq!(core.leader, Some(BrokerId(2)));
        assert_eq!(core.partition_epoch, PartitionEpoch(11));
        assert_eq!(PartitionStateZnode::from_core(&core, 3), s);
    }

    #[test]
    fn a_damaged_node_is_named() {
        let e = decode::<TopicZnode>("/brokers/topics/x", b"{not json").unwrap_err();
        assert!(e.to_string().contains("/brokers/topics/x"));
    }
}
