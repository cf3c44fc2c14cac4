//! Consumer groups from the native client: the admin calls behind
//! `gregor groups …` and [`GroupMember`], a small consumer-group member
//! (FindCoordinator → JoinGroup → SyncGroup → Heartbeat / OffsetCommit →
//! LeaveGroup) behind `gregor consume --group` (spec: GRP-120 … GRP-126).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gregor_core::assignor::{Assignor, MemberSubscription};
use gregor_core::consumer_protocol::{Assignment, Subscription};
use gregor_core::ids::{MemberId, TopicPartition};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError, kafka_error, name};

const FIND_COORDINATOR_V: i16 = 3;
const JOIN_GROUP_V: i16 = 5;
const SYNC_GROUP_V: i16 = 3;
const HEARTBEAT_V: i16 = 3;
const LEAVE_GROUP_V: i16 = 3;
const OFFSET_COMMIT_V: i16 = 7;
const OFFSET_FETCH_V: i16 = 7;
const DESCRIBE_GROUPS_V: i16 = 5;
const LIST_GROUPS_V: i16 = 4;
const DELETE_GROUPS_V: i16 = 2;

/// Kafka error codes the member reacts to.
pub mod codes {
    /// The group is rebalancing: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The generation is stale: rejoin.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The coordinator forgot the member: rejoin with an empty id.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// First JoinGroup of a new member: rejoin with the returned id.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

/// The consumer protocol type.
const CONSUMER: &str = "consumer";

fn gid(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Does this error code ask the member to join again?
#[must_use]
pub fn needs_rejoin(code: i16) -> bool {
    matches!(
        code,
        codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION | codes::UNKNOWN_MEMBER_ID
    )
}

/// One partition's committed offset as OffsetFetch reports it (-1: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The partition.
    pub tp: TopicPartition,
    /// The committed offset, -1 when nothing is committed.
    pub offset: i64,
}

impl Client {
    /// FindCoordinator for a group: the coordinator's `host:port`.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        let req = FindCoordinatorRequest::default()
            .with_key(sb(group))
            .with_key_type(0);
        let resp = self.call(FIND_COORDINATOR_V, &req).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                format!("find coordinator of {group}"),
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        Ok(format!("{}:{}", resp.host, resp.port))
    }

    /// ListGroups (v4, which carries each group's state): every group the
    /// broker knows.
    pub async fn list_groups(&mut self) -> Result<Vec<ListedGroup>, ClientError> {
        let resp = self
            .call(LIST_GROUPS_V, &ListGroupsRequest::default())
            .await?;
        if resp.error_code != 0 {
            return Err(kafka_error("list groups", resp.error_code, None));
        }
        Ok(resp.groups)
    }

    /// DescribeGroups for one group (an unknown group is described as Dead).
    pub async fn describe_group(&mut self, group: &str) -> Result<DescribedGroup, ClientError> {
        let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
        let resp = self.call(DESCRIBE_GROUPS_V, &req).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups response".into()))?;
        if g.error_code != 0 {
            return Err(kafka_error(
                format!("describe group {group}"),
                g.error_code,
                g.error_message.as_ref(),
            ));
        }
        Ok(g)
    }

    /// DeleteGroups for one group.
    pub async fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
        let resp = self.call(DELETE_GROUPS_V, &req).await?;
        match resp.results.first() {
            Some(r) if r.error_code == 0 => Ok(()),
            Some(r) => Err(kafka_error(
                format!("delete group {group}"),
                r.error_code,
                None,
            )),
            None => Err(ClientError::Protocol("empty DeleteGroups response".into())),
        }
    }

    /// OffsetDelete: forgets the group's committed offsets of `topic`'s
    /// `partitions`; returns each partition's error code (0: deleted or
    /// nothing to delete).
    pub async fn delete_offsets(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i16)>, ClientError> {
        use kafka_protocol::messages::OffsetDeleteRequest;
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        let req = OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteRequestPartition::default().with_partition_index(*p)
                            })
                            .collect(),
                    ),
            ]);
        let resp = self.call(0, &req).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                format!("delete offsets of {group}"),
                resp.error_code,
                None,
            ));
        }
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect())
    }

    /// OffsetFetch: the group's committed offsets, for `topic`'s
    /// `partitions` or for everything committed when `topic` is `None`.
    pub async fn committed_offsets(
        &mut self,
        group: &str,
        topic: Option<(&str, &[i32])>,
    ) -> Result<Vec<Committed>, ClientError> {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(topic.map(|(t, ps)| {
                vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(name(t))
                        .with_partition_indexes(ps.to_vec()),
                ]
            }));
        let resp = self.call(OFFSET_FETCH_V, &req).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                format!("fetch offsets of {group}"),
                resp.error_code,
                None,
            ));
        }
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(kafka_error(
                        format!(
                            "fetch offset of {group} for {}-{}",
                            t.name.0, p.partition_index
                        ),
                        p.error_code,
                        None,
                    ));
                }
                out.push(Committed {
                    tp: TopicPartition::new(t.name.0.to_string(), p.partition_index),
                    offset: p.committed_offset,
                });
            }
        }
        Ok(out)
    }

    /// OffsetCommit for one topic's partitions; returns the first non-zero
    /// partition error code (0 when every offset was stored).
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<i16, ClientError> {
        let req = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(sb(member_id))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|&(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    ),
            ]);
        let resp = self.call(OFFSET_COMMIT_V, &req).await?;
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|&c| c != 0)
            .unwrap_or(0))
    }
}

/// Settings of a [`GroupMember`].
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The group id.
    pub group: String,
    /// The subscribed topics.
    pub topics: Vec<String>,
    /// The assignor this member runs when it leads.
    pub assignor: Assignor,
    /// Session timeout sent in JoinGroup.
    pub session_timeout_ms: i32,
    /// Rebalance timeout sent in JoinGroup.
    pub rebalance_timeout_ms: i32,
}

impl MemberConfig {
    /// Kafka's consumer defaults (45 s session, 5 min rebalance) shortened
    /// for the command line: 10 s session, 30 s rebalance.
    #[must_use]
    pub fn new(group: &str, topics: Vec<String>, assignor: Assignor) -> Self {
        Self {
            group: group.to_owned(),
            topics,
            assignor,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
        }
    }
}

/// A consumer-group member over its own connection to the group's
/// coordinator.
#[derive(Debug)]
pub struct GroupMember {
    coordinator: Client,
    config: MemberConfig,
    member_id: String,
    generation: i32,
    assignment: Vec<TopicPartition>,
    last_heartbeat: Instant,
}

impl GroupMember {
    /// Finds the coordinator through `bootstrap` and joins the group; on
    /// return the member holds an assignment of the current generation.
    pub async fn join(bootstrap: &str, config: MemberConfig) -> Result<Self, ClientError> {
        let mut boot = Client::connect_any(bootstrap).await?;
        let addr = boot.find_coordinator(&config.group).await?;
        let coordinator = Client::connect(&addr).await?;
        let mut m = Self {
            coordinator,
            config,
            member_id: String::new(),
            generation: -1,
            assignment: Vec::new(),
            last_heartbeat: Instant::now(),
        };
        m.rejoin().await?;
        Ok(m)
    }

    /// The partitions assigned in the current generation.
    #[must_use]
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assignment
    }

    /// The member id the coordinator gave this member.
    #[must_use]
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation.
    #[must_use]
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// JoinGroup then SyncGroup until a generation's assignment arrives.
    pub async fn rejoin(&mut self) -> Result<(), ClientError> {
        loop {
            // spec: GRP-121 — the subscription carries what the member
            // owned, so the sticky assignor can keep it.
            let sub = Subscription {
                version: 2,
                topics: self.config.topics.clone(),
                owned_partitions: self.assignment.clone(),
                generation: self.generation,
                ..Subscription::default()
            };
            let metadata = sub
                .encode()
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let req = JoinGroupRequest::default()
                .with_group_id(gid(&self.config.group))
                .with_session_timeout_ms(self.config.session_timeout_ms)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout_ms)
                .with_member_id(sb(&self.member_id))
                .with_protocol_type(sb(CONSUMER))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(sb(self.config.assignor.name()))
                        .with_metadata(Bytes::from(metadata)),
                ]);
            let resp = self.coordinator.call(JOIN_GROUP_V, &req).await?;
            match resp.error_code {
                0 => {}
                // spec: GRP-120 — a new member is handed its id first.
                codes::MEMBER_ID_REQUIRED => {
                    self.member_id = resp.member_id.to_string();
                    continue;
                }
                codes::UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION => continue,
                code => {
                    return Err(kafka_error(
                        format!("join group {}", self.config.group),
                        code,
                        None,
                    ));
                }
            }
            self.member_id = resp.member_id.to_string();
            self.generation = resp.generation_id;
            let assignments = if resp.leader == resp.member_id {
                let protocol = resp
                    .protocol_name
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.lead(&protocol, &resp.members).await?
            } else {
                Vec::new()
            };
            let req = SyncGroupRequest::default()
                .with_group_id(gid(&self.config.group))
                .with_generation_id(self.generation)
                .with_member_id(sb(&self.member_id))
                .with_protocol_type(Some(sb(CONSUMER)))
                .with_protocol_name(resp.protocol_name.clone())
                .with_assignments(assignments);
            let sync = self.coordinator.call(SYNC_GROUP_V, &req).await?;
            match sync.error_code {
                0 => {}
                code if needs_rejoin(code) => {
                    if code == codes::UNKNOWN_MEMBER_ID {
                        self.member_id.clear();
                    }
                    continue;
                }
                code => {
                    return Err(kafka_error(
                        format!("sync group {}", self.config.group),
                        code,
                        None,
                    ));
                }
            }
            self.assignment = if sync.assignment.is_empty() {
                Vec::new()
            } else {
                Assignment::decode(&sync.assignment)
                    .map_err(|e| ClientError::Protocol(format!("assignment: {e}")))?
                    .partitions
            };
            self.last_heartbeat = Instant::now();
            tracing::info!(
                group = %self.config.group,
                member = %self.member_id,
                generation = self.generation,
                partitions = ?self.assignment,
                "joined group"
            );
            return Ok(());
        }
    }

    /// spec: GRP-122 — as leader: decode every member's subscription, run
    /// the group's assignor over the topics' partition counts and encode
    /// one assignment per member.
    async fn lead(
        &mut self,
        protocol: &str,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, ClientError> {
        let assignor = Assignor::from_name(protocol).ok_or_else(|| {
            ClientError::Protocol(format!("the group chose unknown assignor {protocol:?}"))
        })?;
        let mut subs = Vec::with_capacity(members.len());
        for m in members {
            let s = Subscription::decode(&m.metadata).map_err(|e| {
                ClientError::Protocol(format!("subscription of {}: {e}", m.member_id))
            })?;
            subs.push(MemberSubscription {
                member_id: MemberId(m.member_id.to_string()),
                group_instance_id: m.group_instance_id.as_ref().map(ToString::to_string),
                topics: s.topics,
                owned: s.owned_partitions,
                generation: s.generation,
            });
        }
        let mut wanted: Vec<String> = subs.iter().flat_map(|s| s.topics.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let mut counts = BTreeMap::new();
        if !wanted.is_empty() {
            let md = self.coordinator.metadata(Some(&wanted)).await?;
            for t in md.topics {
                if t.error_code == 0
                    && let Some(n) = t.name
                {
                    counts.insert(n.0.to_string(), t.partitions.len() as i32);
                }
            }
        }
        let plan = assignor.assign(&subs, &counts);
        let mut out = Vec::with_capacity(plan.len());
        for (member, partitions) in plan {
            let bytes = Assignment {
                version: 0,
                partitions,
                user_data: None,
            }
            .encode()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(sb(&member.0))
                    .with_assignment(Bytes::from(bytes)),
            );
        }
        Ok(out)
    }

    /// Sends a heartbeat when a third of the session timeout has passed
    /// since the last one; returns `true` when the group asks the member to
    /// rejoin (spec: GRP-123).
    pub async fn maybe_heartbeat(&mut self) -> Result<bool, ClientError> {
        let interval = Duration::from_millis((self.config.session_timeout_ms / 3).max(1) as u64);
        if self.last_heartbeat.elapsed() < interval {
            return Ok(false);
        }
        let req = HeartbeatRequest::default()
            .with_group_id(gid(&self.config.group))
            .with_generation_id(self.generation)
            .with_member_id(sb(&self.member_id));
        let resp = self.coordinator.call(HEARTBEAT_V, &req).await?;
        self.last_heartbeat = Instant::now();
        match resp.error_code {
            0 => Ok(false),
            code if needs_rejoin(code) => {
                if code == codes::UNKNOWN_MEMBER_ID {
                    self.member_id.clear();
                }
                Ok(true)
            }
            code => Err(kafka_error(
                format!("heartbeat to {}", self.config.group),
                code,
                None,
            )),
        }
    }

    /// Commits positions of `topic` in the current generation; returns
    /// `true` when the commit was fenced and the member must rejoin
    /// (spec: GRP-124).
    pub async fn commit(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<bool, ClientError> {
        if offsets.is_empty() {
            return Ok(false);
        }
        let code = self
            .coordinator
            .commit_offsets(
                &self.config.group,
                self.generation,
                &self.member_id,
                topic,
                offsets,
            )
            .await?;
        match code {
            0 => Ok(false),
            code if needs_rejoin(code) => Ok(true),
            code => Err(kafka_error(
                format!("commit offsets of {}", self.config.group),
                code,
                None,
            )),
        }
    }

    /// The group's committed offsets for `topic`'s `partitions`.
    pub async fn committed(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<Committed>, ClientError> {
        let group = self.config.group.clone();
        self.coordinator
            .committed_offsets(&group, Some((topic, partitions)))
            .await
    }

    /// LeaveGroup, so that the others rebalance at once instead of after
    /// the session timeout (spec: GRP-125).
    pub async fn leave(mut self) -> Result<(), ClientError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let req = LeaveGroupRequest::default()
            .with_group_id(gid(&self.config.group))
            .with_members(vec![
                MemberIdentity::default().with_member_id(sb(&self.member_id)),
            ]);
        let resp = self.coordinator.call(LEAVE_GROUP_V, &req).await?;
        if resp.error_code != 0 && resp.error_code != codes::UNKNOWN_MEMBER_ID {
            return Err(kafka_error(
                format!("leave group {}", self.config.group),
                resp.error_code,
                None,
            ));
        }
        Ok(())
    }
}
