//! Committed offsets and group lifecycle: OffsetCommit, OffsetFetch,
//! expiry, OffsetDelete, DescribeGroups and DeleteGroups (spec: GRP-26,
//! GRP-40–GRP-47).

use std::collections::BTreeSet;

use super::{
    DeleteGroupResponse, DescribeGroupResponse, DescribedMember, ErrorCode, FetchedOffset, Group,
    GroupRecord, GroupState, LeaderEpoch, Member, Millis, Offset, OffsetAndMetadata,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, PendingPersist, RequestId, Response, TopicPartition,
};
use crate::consumer_protocol::Subscription;

/// The protocol type of groups of Kafka consumers.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl Group {
    // ----- offsets -----------------------------------------------------

    /// spec: GRP-40, GRP-41, GRP-42
    pub(super) fn commit(&mut self, now: Millis, request: RequestId, r: OffsetCommitRequest) {
        let simple =
            r.generation.0 < 0 && r.member_id.0.is_empty() && r.group_instance_id.is_none();
        let error = if self.state == GroupState::Dead {
            ErrorCode::CoordinatorNotAvailable
        } else if simple {
            // spec: GRP-44 — simple commits only while the group has no
            // members.
            if self.state == GroupState::Empty {
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            }
        } else {
            let mut e =
                self.check_member(&r.member_id, r.group_instance_id.as_deref(), r.generation);
            if e == ErrorCode::IllegalGeneration
                && self.config.accept_stale_generation_commits
                && r.generation < self.generation
            {
                // The broken rule the model must catch (spec: GRP-40).
                e = ErrorCode::None;
            }
            if e.is_ok() && self.state == GroupState::CompletingRebalance {
                ErrorCode::RebalanceInProgress
            } else {
                e
            }
        };
        if !error.is_ok() {
            let partitions = r
                .partitions
                .into_iter()
                .map(|p| (p.partition, error))
                .collect();
            return self.respond(
                request,
                Response::OffsetCommit(OffsetCommitResponse { partitions }),
            );
        }
        if let Some(m) = self.members.get_mut(&r.member_id) {
            m.session_deadline = now.plus(i64::from(m.session_timeout_ms));
        }
        let expire = r.retention_ms.filter(|&ms| ms >= 0).map(|ms| now.plus(ms));
        let mut outcome = Vec::with_capacity(r.partitions.len());
        let mut values = Vec::with_capacity(r.partitions.len());
        for p in r.partitions {
            let too_large = p
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes);
            if too_large {
                outcome.push((p.partition, ErrorCode::OffsetMetadataTooLarge));
                continue;
            }
            outcome.push((p.partition.clone(), ErrorCode::None));
            values.push((
                p.partition,
                OffsetAndMetadata {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata: p.metadata,
                    commit_timestamp: now,
                    expire_timestamp: expire,
                },
            ));
        }
        if values.is_empty() {
            return self.respond(
                request,
                Response::OffsetCommit(OffsetCommitResponse {
                    partitions: outcome,
                }),
            );
        }
        let records = values
            .iter()
            .map(|(partition, value)| GroupRecord::Offset {
                partition: partition.clone(),
                value: value.clone(),
            })
            .collect();
        self.persist(
            records,
            PendingPersist::Commit {
                request,
                outcome,
                values,
            },
        );
    }

    pub(super) fn fetch_offsets(&self, r: &OffsetFetchRequest) -> OffsetFetchResponse {
        let fetched = |partition: &TopicPartition| {
            let value = if self.state == GroupState::Dead {
                None
            } else {
                self.offsets.get(partition)
            };
            match value {
                Some(v) => FetchedOffset {
                    partition: partition.clone(),
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                },
                None => FetchedOffset {
                    partition: partition.clone(),
                    offset: Offset::UNDEFINED,
                    leader_epoch: LeaderEpoch::UNDEFINED,
                    metadata: None,
                },
            }
        };
        let partitions = match &r.partitions {
            Some(list) => list.iter().map(fetched).collect(),
            None if self.state == GroupState::Dead => Vec::new(),
            None => self.offsets.keys().map(fetched).collect(),
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            partitions,
        }
    }

    /// When `value` expires, if it can (spec: GRP-43): at its explicit
    /// expiry; otherwise `offsets.retention.minutes` after the group became
    /// Empty (consumer groups) or after the commit (groups that never had
    /// members). Offsets of groups with members never expire.
    pub(super) fn offset_expiry(&self, value: &OffsetAndMetadata) -> Option<Millis> {
        if let Some(t) = value.expire_timestamp {
            return Some(t);
        }
        if self.state != GroupState::Empty {
            return None;
        }
        let base = if self.protocol_type.is_some() {
            self.state_since
        } else {
            value.commit_timestamp
        };
        Some(base.plus(self.config.offsets_retention_ms))
    }

    pub(super) fn expire_offsets(&mut self, now: Millis) {
        let expired: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|&(_, v)| self.offset_expiry(v).is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(expired.len() + 1);
        for partition in expired {
            self.offsets.remove(&partition);
            records.push(GroupRecord::OffsetTombstone { partition });
        }
        if self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
        {
            // Nothing left: the group itself goes (spec: GRP-43).
            records.push(GroupRecord::GroupTombstone);
            self.transition(now, GroupState::Dead);
        }
        self.persist(records, PendingPersist::Background);
    }

    // ----- DescribeGroups / DeleteGroups ---------------------------------

    pub(super) fn describe(&self) -> DescribeGroupResponse {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        DescribeGroupResponse {
            error: ErrorCode::None,
            state: self.state.kafka_name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .into_iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol).to_vec()
                    } else {
                        Vec::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }
    }

    /// spec: GRP-47 — OffsetDelete. A group without members may lose any
    /// committed offset; a consumer group with members only those of
    /// topics no member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC), and a
    /// member whose subscription cannot be read counts as subscribed to
    /// everything; another kind of group with members refuses
    /// (NON_EMPTY_GROUP). Partitions without a committed offset succeed
    /// with nothing written. The tombstones are persisted before the
    /// answer and the cache forgets the offsets then.
    pub(super) fn delete_offsets(&mut self, request: RequestId, r: OffsetDeleteRequest) {
        let refuse = |error| {
            Response::OffsetDelete(OffsetDeleteResponse {
                error,
                partitions: Vec::new(),
            })
        };
        let consumer = self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
        match self.state {
            GroupState::Dead => return self.respond(request, refuse(ErrorCode::GroupIdNotFound)),
            GroupState::Empty => {}
            _ if consumer => {}
            _ => return self.respond(request, refuse(ErrorCode::NonEmptyGroup)),
        }
        // None: some member's subscription is unreadable.
        let subscribed: Option<BTreeSet<String>> = if self.state == GroupState::Empty {
            Some(BTreeSet::new())
        } else {
            self.members
                .values()
                .try_fold(BTreeSet::new(), |mut acc, m| {
                    for p in &m.protocols {
                        acc.extend(Subscription::decode(&p.metadata).ok()?.topics);
                    }
                    Some(acc)
                })
        };
        let outcome: Vec<(TopicPartition, ErrorCode)> = r
            .partitions
            .into_iter()
            .map(|p| {
                let busy = subscribed.as_ref().is_none_or(|s| s.contains(&p.topic));
                let e = if busy {
                    ErrorCode::GroupSubscribedToTopic
                } else {
                    ErrorCode::None
                };
                (p, e)
            })
            .collect();
        let mut deleted: Vec<TopicPartition> = Vec::new();
        for (p, e) in &outcome {
            if e.is_ok() && self.offsets.contains_key(p) && !deleted.contains(p) {
                deleted.push(p.clone());
            }
        }
        if deleted.is_empty() {
            return self.respond(
                request,
                Response::OffsetDelete(OffsetDeleteResponse {
                    error: ErrorCode::None,
                    partitions: outcome,
                }),
            );
        }
        let records = deleted
            .iter()
            .map(|p| GroupRecord::OffsetTombstone {
                partition: p.clone(),
            })
            .collect();
        self.persist(
            records,
            PendingPersist::OffsetDelete {
                request,
                outcome,
                deleted,
            },
        );
    }

    /// spec: GRP-45
    pub(super) fn delete(&mut self, now: Millis, request: RequestId) {
        let error = match self.state {
            GroupState::Dead => ErrorCode::GroupIdNotFound,
            GroupState::Empty => ErrorCode::None,
            _ => ErrorCode::NonEmptyGroup,
        };
        if !error.is_ok() {
            return self.respond(request, Response::Delete(DeleteGroupResponse { error }));
        }
        let mut records: Vec<GroupRecord> = self
            .offsets
            .keys()
            .map(|p| GroupRecord::OffsetTombstone {
                partition: p.clone(),
            })
            .collect();
        records.push(GroupRecord::GroupTombstone);
        self.offsets.clear();
        self.pending_members.clear();
        self.transition(now, GroupState::Dead);
        self.persist(records, PendingPersist::Delete { request });
    }
}
