//! Client-driven changes in ZooKeeper mode: topic creation, deletion,
//! partition growth and producer-id blocks (spec: CLU-20 … CLU-29).

use std::collections::BTreeMap;
use std::time::Duration;

use gregor_core::controller::assign_replicas;
use gregor_core::ids::BrokerId;
use zookeeper_client::Error as ZkError;

use super::super::znodes::{self, ProducerIdBlockZnode, TopicConfigZnode, TopicZnode};
use super::super::{
    MAX_PARTITIONS_PER_TOPIC, NewTopic, TopicError, TopicMeta, collision_key, fresh_id,
    validate_topic_configs, validate_topic_name,
};
use super::{ClusterView, ZkCluster, persistent};

/// Producer ids handed out per block (spec: CLU-28).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A topic id as Kafka writes it in `/brokers/topics/<t>`: URL-safe base64
/// of the 16 bytes, unpadded (22 characters).
pub fn topic_id_text(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in id {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// Reads a topic id written by [`topic_id_text`] (or Kafka); `None` when
/// it is not 16 bytes of URL-safe base64.
pub fn topic_id_bytes(text: &str) -> Option<[u8; 16]> {
    let mut out = Vec::with_capacity(16);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out.try_into().ok()
}

fn storage(e: impl std::fmt::Display) -> TopicError {
    TopicError::Storage(e.to_string())
}

impl ZkCluster {
    fn placement_brokers(view: &ClusterView) -> Vec<(BrokerId, Option<String>)> {
        let brokers: Vec<(BrokerId, Option<String>)> = view
            .brokers
            .iter()
            .map(|(id, b)| (*id, b.registration.rack.clone()))
            .collect();
        // Kafka refuses a mixed rack setup unless told to ignore racks;
        // placing without racks keeps topics creatable.
        if brokers.iter().any(|b| b.1.is_some()) && brokers.iter().any(|b| b.1.is_none()) {
            return brokers.into_iter().map(|(id, _)| (id, None)).collect();
        }
        brokers
    }

    /// Validates and (unless `validate_only`) creates a topic: the
    /// assignment over the live brokers (rack-aware) and its config are
    /// written in one transaction, then the call waits up to `timeout` for
    /// the controller to write every partition's state (spec: CLU-20,
    /// CLU-21, CLU-22).
    pub async fn create_topic(
        &self,
        req: NewTopic,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        validate_topic_name(&req.name)?;
        let view = self.view();
        if view.topics.contains_key(&req.name) {
            return Err(TopicError::AlreadyExists(req.name));
        }
        let key = collision_key(&req.name);
        if let Some(other) = view.topics.keys().find(|t| collision_key(t) == key) {
            return Err(TopicError::InvalidName(format!(
                "Topic '{}' collides with existing topic: {other}",
                req.name
            )));
        }
        let live = Self::placement_brokers(&view);
        let assignment: Vec<Vec<BrokerId>> = if req.assignments.is_empty() {
            let partitions = if req.partitions == -1 {
                self.config.num_partitions
            } else {
                req.partitions
            };
            let rf = if req.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                req.replication_factor
            };
            if partitions <= 0 {
                return Err(TopicError::InvalidPartitions(
                    "Number of partitions must be larger than 0.".into(),
                ));
            }
            if partitions > MAX_PARTITIONS_PER_TOPIC {
                return Err(TopicError::InvalidPartitions(format!(
                    "Number of partitions {partitions} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
                )));
            }
            if rf <= 0 {
                return Err(TopicError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0.".into(),
                ));
            }
            // spec: CLU-21
            if rf as usize > live.len() {
                return Err(TopicError::InvalidReplicationFactor(format!(
                    "Replication factor: {rf} larger than available brokers: {}.",
                    live.len()
                )));
            }
            let start = (crate::partition::now_ms() as usize) % live.len().max(1);
            assign_replicas(&live, partitions, rf as usize, start)
                .map_err(|e| TopicError::InvalidReplicationFactor(e.to_string()))?
        } else {
            crate::cluster::check_manual_assignment(&req, |b| {
                view.brokers.contains_key(&BrokerId(b))
            })?;
            req.assignments
                .values()
                .map(|bs| bs.iter().map(|b| BrokerId(*b)).collect())
                .collect()
        };
        validate_topic_configs(&req.configs)?;
        let id = fresh_id(&req.name);
        let meta = TopicMeta {
            id,
            partitions: assignment.len() as i32,
            replication_factor: assignment.first().map_or(0, Vec::len) as i16,
            configs: req.configs.clone(),
        };
        if validate_only {
            return Ok(meta);
        }
        let topic = TopicZnode {
            version: 3,
            partitions: assignment
                .iter()
                .enumerate()
                .map(|(p, rs)| (p.to_string(), rs.iter().map(|b| b.0).collect()))
                .collect(),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
            topic_id: Some(topic_id_text(&id)),
        };
        let config = TopicConfigZnode {
            version: 1,
            config: req.configs,
        };
        let client = self.connected_client().await.map_err(storage)?;
        let (tpath, cpath) = (
            znodes::topic_path(&req.name),
            znodes::topic_config_path(&req.name),
        );
        // Config first, then the assignment the controller reacts to; one
        // transaction, so a half-created topic is never seen.
        let mut txn = client.new_multi_writer();
        let opts = persistent();
        txn.add_create(&cpath, &znodes::encode(&config), &opts)
            .map_err(storage)?;
        txn.add_create(&tpath, &znodes::encode(&topic), &opts)
            .map_err(storage)?;
        match txn.commit().await {
            Ok(_) => {}
            Err(zookeeper_client::MultiWriteError::OperationFailed {
                source: ZkError::NodeExists,
                ..
            }) => return Err(TopicError::AlreadyExists(req.name)),
            Err(e) => return Err(storage(e)),
        }
        tracing::info!(topic = %req.name, partitions = meta.partitions, "topic created in ZooKeeper");
        let name = req.name.clone();
        let n = meta.partitions;
        // spec: CLU-22 — answer once clients can produce.
        let ready = self
            .wait_for(timeout, |v| {
                v.topics.get(&name).is_some_and(|t| {
                    (0..n).all(|p| t.states.get(&p).is_some_and(|(s, _)| s.leader.is_some()))
                })
            })
            .await;
        if !ready {
            tracing::warn!(topic = %name, "controller has not elected every leader yet");
            return Err(TopicError::TimedOut(format!(
                "topic {name} was created, but not every partition has a leader yet"
            )));
        }
        Ok(meta)
    }

    /// Marks a topic for deletion and waits up to `timeout` until the
    /// controller has removed it (spec: CLU-23).
    pub async fn delete_topic(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        if !self.config.delete_topic_enable {
            return Err(TopicError::DeletionDisabled);
        }
        let image = self.image();
        let Some(meta) = image.topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_owned()));
        };
        let client = self.connected_client().await.map_err(storage)?;
        let path = znodes::delete_topic_path(name);
        match client.create(&path, b"", &persistent()).await {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(storage(e)),
        }
        let gone = self
            .wait_for(timeout, |v| !v.topics.contains_key(name))
            .await;
        if !gone {
            return Err(TopicError::TimedOut(format!(
                "topic {name} is marked for deletion, but the controller has not removed it yet"
            )));
        }
        Ok(meta)
    }

    /// Replaces a topic's config overrides in `/config/topics/<t>` and
    /// waits until this broker's cache shows them (spec: PRO-27, CLU-25).
    /// Every broker follows the change through its watch.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<(), TopicError> {
        validate_topic_configs(&configs)?;
        let client = self.connected_client().await.map_err(storage)?;
        match client.check_stat(&znodes::topic_path(name)).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(TopicError::Unknown(name.to_owned())),
            Err(e) => return Err(storage(e)),
        }
        if validate_only {
            return Ok(());
        }
        let path = znodes::topic_config_path(name);
        let data = znodes::encode(&TopicConfigZnode {
            version: 1,
            config: configs.clone(),
        });
        match client.set_data(&path, &data, None).await {
            Ok(_) => {}
            Err(ZkError::NoNode) => match client.create(&path, &data, &persistent()).await {
                Ok(_) => {}
                Err(e) => return Err(storage(e)),
            },
            Err(e) => return Err(storage(e)),
        }
        tracing::info!(topic = %name, configs = ?configs, "topic configs changed");
        let seen = self
            .wait_for(timeout, |v| {
                v.topics.get(name).is_some_and(|t| t.configs == configs)
            })
            .await;
        if !seen {
            return Err(TopicError::TimedOut(format!(
                "the configs of {name} are written but not yet seen by this broker"
            )));
        }
        Ok(())
    }

    /// Grows a topic to `count` partitions, placing the new ones over the
    /// live brokers, then waits for their states (spec: CLU-24).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<TopicMeta, TopicError> {
        let client = self.connected_client().await.map_err(storage)?;
        let path = znodes::topic_path(name);
        let (data, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => return Err(TopicError::Unknown(name.to_owned())),
            Err(e) => return Err(storage(e)),
        };
        let mut topic: TopicZnode = znodes::decode(&path, &data).map_err(storage)?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic already has {count} partitions."
            )));
        }
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {count} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC}."
            )));
        }
        let view = self.view();
        let rf = topic.partitions.values().next().map_or(1, Vec::len);
        let live = Self::placement_brokers(&view);
        if rf > live.len() {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "Replication factor: {rf} larger than available brokers: {}.",
                live.len()
            )));
        }
        let start = (current as usize) % live.len().max(1);
        let added = assign_replicas(&live, count - current, rf, start)
            .map_err(|e| TopicError::InvalidReplicationFactor(e.to_string()))?;
        let meta = TopicMeta {
            id: topic
                .topic_id
                .as_deref()
                .and_then(topic_id_bytes)
                .unwrap_or([0; 16]),
            partitions: count,
            replication_factor: rf as i16,
            configs: view
                .topics
                .get(name)
                .map(|t| t.configs.clone())
                .unwrap_or_default(),
        };
        if validate_only {
            return Ok(meta);
        }
        for (i, rs) in added.iter().enumerate() {
            topic.partitions.insert(
                (current + i as i32).to_string(),
                rs.iter().map(|b| b.0).collect(),
            );
        }
        match client
            .set_data(&path, &znodes::encode(&topic), Some(stat.version))
            .await
        {
            Ok(_) => {}
            Err(ZkError::BadVersion) => {
                return Err(TopicError::InvalidPartitions(
                    "The topic changed concurrently; retry.".into(),
                ));
            }
            Err(e) => return Err(storage(e)),
        }
        let ready = self
            .wait_for(timeout, |v| {
                v.topics.get(name).is_some_and(|t| {
                    (0..count).all(|p| t.states.get(&p).is_some_and(|(s, _)| s.leader.is_some()))
                })
            })
            .await;
        if !ready {
            return Err(TopicError::TimedOut(format!(
                "partitions of {name} were added, but not every one has a leader yet"
            )));
        }
        Ok(meta)
    }

    /// Claims the next block of producer ids with a conditional write of
    /// `/latest_producer_id_block` (spec: CLU-28).
    pub async fn claim_producer_id_block(&self) -> Result<(i64, i64), TopicError> {
        let client = self.connected_client().await.map_err(storage)?;
        let path = znodes::PRODUCER_ID_BLOCK;
        loop {
            let (start, version) = match client.get_data(path).await {
                Ok((data, stat)) if !data.is_empty() => {
                    let b: ProducerIdBlockZnode = znodes::decode(path, &data).map_err(storage)?;
                    let end: i64 = b.block_end.parse().map_err(|_| {
                        storage(format!("{path}: block_end {} is not a number", b.block_end))
                    })?;
                    (end + 1, Some(stat.version))
                }
                Ok((_, stat)) => (0, Some(stat.version)),
                Err(ZkError::NoNode) => (0, None),
                Err(e) => return Err(storage(e)),
            };
            let end = start + PRODUCER_ID_BLOCK_SIZE - 1;
            let block = ProducerIdBlockZnode {
                version: 1,
                broker: self.id.0,
                block_start: start.to_string(),
                block_end: end.to_string(),
            };
            let data = znodes::encode(&block);
            let written = match version {
                Some(v) => client.set_data(path, &data, Some(v)).await.map(|_| ()),
                None => client.create(path, &data, &persistent()).await.map(|_| ()),
            };
            match written {
                Ok(()) => return Ok((start, end)),
                Err(ZkError::BadVersion | ZkError::NodeExists) => continue,
                Err(e) => return Err(storage(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: CLU-2
    #[test]
    fn topic_ids_round_trip_in_kafkas_text_form() {
        let id = [0u8; 16];
        assert_eq!(topic_id_text(&id), "AAAAAAAAAAAAAAAAAAAAAA");
        let id: [u8; 16] = std::array::from_fn(|i| (i * 17 + 3) as u8);
        let text = topic_id_text(&id);
        assert_eq!(text.len(), 22);
        assert_eq!(topic_id_bytes(&text), Some(id));
        assert_eq!(topic_id_bytes("short"), None);
        assert_eq!(topic_id_bytes("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }
}
