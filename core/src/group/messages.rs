//! The coordinator's vocabulary: decoded requests, responses, Kafka error
//! codes, effects and the records it persists to `__consumer_offsets`.
//!
//! Requests are version-normalised by the protocol layer: fields a version
//! lacks are filled with Kafka's defaults (a v0 JoinGroup's rebalance timeout
//! is its session timeout, a LeaveGroup before v3 names one member, …). Only
//! the JoinGroup version is kept, because it changes semantics
//! (MEMBER_ID_REQUIRED from v4, spec: GRP-11).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{Generation, LeaderEpoch, MemberId, Millis, Offset, TopicPartition};

/// The caller's token for one request; delayed responses name it so the
/// caller can route them to the right connection and correlation id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one persist effect, so that its completion can be reported back
/// with [`super::Group::persist_completed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

/// The Kafka error codes the group coordinator answers with (spec: GRP-60).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Error)]
pub enum ErrorCode {
    /// No error (0).
    #[error("no error")]
    None,
    /// UNKNOWN_SERVER_ERROR (-1): a persist failed for a reason the client
    /// cannot fix by retrying elsewhere.
    #[error("unknown server error")]
    UnknownServerError,
    /// OFFSET_METADATA_TOO_LARGE (12): commit metadata above
    /// `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// COORDINATOR_LOAD_IN_PROGRESS (14): the group is still being loaded.
    #[error("coordinator load in progress")]
    CoordinatorLoadInProgress,
    /// COORDINATOR_NOT_AVAILABLE (15): the group was removed or its log is
    /// unavailable; find the coordinator again.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16): this broker no longer leads the group's
    /// `__consumer_offsets` partition.
    #[error("not coordinator")]
    NotCoordinator,
    /// ILLEGAL_GENERATION (22): the request names an older (or newer)
    /// generation than the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL (23): protocol type or protocols do not
    /// match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// INVALID_GROUP_ID (24): the group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// UNKNOWN_MEMBER_ID (25): the member id is not a member of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// INVALID_SESSION_TIMEOUT (26): outside
    /// `[group.min.session.timeout.ms, group.max.session.timeout.ms]`.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// REBALANCE_IN_PROGRESS (27): the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// INVALID_COMMIT_OFFSET_SIZE (28): the offset commit was too large to
    /// persist.
    #[error("invalid commit offset size")]
    InvalidCommitOffsetSize,
    /// NON_EMPTY_GROUP (68): DeleteGroups on a group with members.
    #[error("non-empty group")]
    NonEmptyGroup,
    /// GROUP_ID_NOT_FOUND (69): DeleteGroups on a group that does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// MEMBER_ID_REQUIRED (79): rejoin with the member id in the response.
    #[error("member id required")]
    MemberIdRequired,
    /// GROUP_MAX_SIZE_REACHED (81): `group.max.size` members already.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// FENCED_INSTANCE_ID (82): another member id now holds this
    /// `group.instance.id`.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// GROUP_SUBSCRIBED_TO_TOPIC (86): OffsetDelete of a partition whose
    /// topic a member of the group is subscribed to.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
}

impl ErrorCode {
    /// The code as it goes on the wire.
    #[must_use]
    pub const fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::UnknownServerError => -1,
            ErrorCode::OffsetMetadataTooLarge => 12,
            ErrorCode::CoordinatorLoadInProgress => 14,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::NotCoordinator => 16,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::InvalidGroupId => 24,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::InvalidCommitOffsetSize => 28,
            ErrorCode::NonEmptyGroup => 68,
            ErrorCode::GroupIdNotFound => 69,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::GroupMaxSizeReached => 81,
            ErrorCode::FencedInstanceId => 82,
            ErrorCode::GroupSubscribedToTopic => 86,
        }
    }

    /// Whether this is [`ErrorCode::None`].
    #[must_use]
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }
}

/// Why the runtime could not persist a batch of group records (spec: GRP-61).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum PersistFailure {
    /// This broker stopped leading the `__consumer_offsets` partition.
    #[error("no longer the leader of the offsets partition")]
    NotLeader,
    /// The partition is offline, has too few in-sync replicas, or the write
    /// timed out.
    #[error("offsets partition unavailable")]
    Unavailable,
    /// The records exceed the partition's maximum batch size.
    #[error("records too large")]
    TooLarge,
}

/// One protocol a joining member supports, with its metadata (for the
/// `consumer` protocol type, an encoded subscription).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Protocol {
    /// The protocol name (an assignor name such as `range`).
    pub name: String,
    /// Opaque protocol metadata.
    pub metadata: Vec<u8>,
}

/// A JoinGroup request, v0–v7.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinGroupRequest {
    /// The request version; from v4 a first join without a member id gets
    /// MEMBER_ID_REQUIRED (spec: GRP-11).
    pub version: i16,
    /// The member id, empty on a first join.
    pub member_id: MemberId,
    /// `group.instance.id` for static members (v5+).
    pub group_instance_id: Option<String>,
    /// The client's `client.id`, the prefix of generated member ids.
    pub client_id: String,
    /// The client's address, shown by DescribeGroups.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance (v0: the
    /// session timeout).
    pub rebalance_timeout_ms: i32,
    /// The protocol type, `consumer` for consumers.
    pub protocol_type: String,
    /// The protocols the member supports, most preferred first.
    pub protocols: Vec<Protocol>,
}

/// One member as listed to the leader in a JoinGroup response.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: MemberId,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Vec<u8>,
}

/// A JoinGroup response.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinGroupResponse {
    /// The error, or [`ErrorCode::None`].
    pub error: ErrorCode,
    /// The generation the member joined (-1 on error).
    pub generation: Generation,
    /// The group's protocol type (v7+ sends it).
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: MemberId,
    /// The member's id (also set with MEMBER_ID_REQUIRED).
    pub member_id: MemberId,
    /// All members with their metadata — to the leader only.
    pub members: Vec<JoinedMember>,
}

/// A SyncGroup request, v0–v5.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncGroupRequest {
    /// The member id.
    pub member_id: MemberId,
    /// The generation the member joined.
    pub generation: Generation,
    /// `group.instance.id` for static members (v3+).
    pub group_instance_id: Option<String>,
    /// The protocol type the member believes the group has (v5+).
    pub protocol_type: Option<String>,
    /// The protocol the member believes was selected (v5+).
    pub protocol_name: Option<String>,
    /// The leader's plan: one assignment per member; empty for followers.
    pub assignments: Vec<(MemberId, Vec<u8>)>,
}

/// A SyncGroup response.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncGroupResponse {
    /// The error, or [`ErrorCode::None`].
    pub error: ErrorCode,
    /// The group's protocol type (v5+).
    pub protocol_type: Option<String>,
    /// The selected protocol (v5+).
    pub protocol_name: Option<String>,
    /// The member's assignment (empty on error).
    pub assignment: Vec<u8>,
}

/// A Heartbeat request, v0–v4.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeartbeatRequest {
    /// The member id.
    pub member_id: MemberId,
    /// The member's generation.
    pub generation: Generation,
    /// `group.instance.id` for static members (v3+).
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ batches them; earlier versions carry
/// one member id and no instance id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeavingMember {
    /// The member id; may be empty when the instance id is given.
    pub member_id: MemberId,
    /// `group.instance.id` for static members.
    pub group_instance_id: Option<String>,
}

/// A LeaveGroup request, v0–v5.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaveGroupRequest {
    /// The members leaving.
    pub members: Vec<LeavingMember>,
}

/// The outcome for one leaving member.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeftMember {
    /// The member id as given.
    pub member_id: MemberId,
    /// The instance id as given.
    pub group_instance_id: Option<String>,
    /// The error, or [`ErrorCode::None`].
    pub error: ErrorCode,
}

/// A LeaveGroup response. Before v3 the caller answers with the first
/// member's error as the top-level error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaveGroupResponse {
    /// A group-level error, or [`ErrorCode::None`].
    pub error: ErrorCode,
    /// Per-member outcomes, in request order.
    pub members: Vec<LeftMember>,
}

/// One partition's offset in an OffsetCommit request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommitPartition {
    /// The partition.
    pub partition: TopicPartition,
    /// The next offset to consume.
    pub offset: Offset,
    /// The leader epoch of the last consumed record (v6+, -1 if unknown).
    pub leader_epoch: LeaderEpoch,
    /// Client metadata, if any.
    pub metadata: Option<String>,
}

/// An OffsetCommit request, v0–v8.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetCommitRequest {
    /// The member id; empty for a simple commit.
    pub member_id: MemberId,
    /// The generation; -1 for a simple commit.
    pub generation: Generation,
    /// `group.instance.id` for static members (v7+).
    pub group_instance_id: Option<String>,
    /// v2–v4 retention override in ms; `None` (or -1 on the wire) uses
    /// `offsets.retention.minutes`.
    pub retention_ms: Option<i64>,
    /// The offsets to commit.
    pub partitions: Vec<CommitPartition>,
}

/// An OffsetCommit response: one error per partition, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetCommitResponse {
    /// Per-partition outcomes.
    pub partitions: Vec<(TopicPartition, ErrorCode)>,
}

/// An OffsetFetch request, v0–v8 (one group).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetFetchRequest {
    /// The partitions to fetch; `None` fetches every committed offset (v2+).
    pub partitions: Option<Vec<TopicPartition>>,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FetchedOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset, or -1 if none.
    pub offset: Offset,
    /// The leader epoch committed with it, or -1.
    pub leader_epoch: LeaderEpoch,
    /// The commit's metadata (empty if none).
    pub metadata: Option<String>,
}

/// An OffsetFetch response.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetFetchResponse {
    /// A group-level error, or [`ErrorCode::None`].
    pub error: ErrorCode,
    /// The offsets, in request order (or partition order for "all").
    pub partitions: Vec<FetchedOffset>,
}

/// One member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DescribedMember {
    /// The member id.
    pub member_id: MemberId,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its client host.
    pub client_host: String,
    /// Its metadata for the selected protocol (empty before selection).
    pub metadata: Vec<u8>,
    /// Its current assignment (empty outside Stable).
    pub assignment: Vec<u8>,
}

/// A DescribeGroups answer for this group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DescribeGroupResponse {
    /// The error, or [`ErrorCode::None`].
    pub error: ErrorCode,
    /// The state's Kafka name (`Stable`, `Empty`, …).
    pub state: &'static str,
    /// The protocol type, empty if none.
    pub protocol_type: String,
    /// The selected protocol, empty if none (only shown in Stable).
    pub protocol: String,
    /// The members (only listed in Stable, as Kafka does).
    pub members: Vec<DescribedMember>,
}

/// A DeleteGroups answer for this group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeleteGroupResponse {
    /// The error, or [`ErrorCode::None`].
    pub error: ErrorCode,
}

/// OffsetDelete: forget the committed offsets of these partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetDeleteRequest {
    /// The partitions.
    pub partitions: Vec<TopicPartition>,
}

/// The answer to an [`OffsetDeleteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetDeleteResponse {
    /// Group-level error (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, …).
    pub error: ErrorCode,
    /// Per-partition outcome, in request order.
    pub partitions: Vec<(TopicPartition, ErrorCode)>,
}

/// A decoded request addressed to one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// JoinGroup.
    Join(JoinGroupRequest),
    /// SyncGroup.
    Sync(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchRequest),
    /// DescribeGroups (this group).
    Describe,
    /// DeleteGroups (this group).
    Delete,
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
}

/// The response to a [`Request`], variant for variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// JoinGroup.
    Join(JoinGroupResponse),
    /// SyncGroup.
    Sync(SyncGroupResponse),
    /// Heartbeat.
    Heartbeat(ErrorCode),
    /// LeaveGroup.
    Leave(LeaveGroupResponse),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitResponse),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchResponse),
    /// DescribeGroups.
    Describe(DescribeGroupResponse),
    /// DeleteGroups.
    Delete(DeleteGroupResponse),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteResponse),
}

/// Something the caller must do, drained with
/// [`super::Group::drain_effects`] in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Send `response` for `request`.
    Respond {
        /// The request being answered.
        request: RequestId,
        /// The answer.
        response: Response,
    },
    /// Append `records` to the group's `__consumer_offsets` partition, in
    /// order, then report the outcome with
    /// [`super::Group::persist_completed`] (spec: GRP-50).
    Persist {
        /// Names this batch.
        id: PersistId,
        /// The records, in append order.
        records: Vec<GroupRecord>,
    },
}

/// A committed offset as stored (spec: GRP-51).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OffsetAndMetadata {
    /// The next offset to consume.
    pub offset: Offset,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: LeaderEpoch,
    /// Client metadata.
    pub metadata: Option<String>,
    /// When the coordinator accepted the commit.
    pub commit_timestamp: Millis,
    /// An explicit expiry (OffsetCommit v2–v4 retention), overriding
    /// `offsets.retention.minutes`.
    pub expire_timestamp: Option<Millis>,
}

/// One member as stored in the group's metadata record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredMember {
    /// The member id.
    pub member_id: MemberId,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its client host.
    pub client_host: String,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its metadata for the selected protocol.
    pub subscription: Vec<u8>,
    /// Its assignment.
    pub assignment: Vec<u8>,
}

/// A snapshot of the group's membership, written after every completed
/// rebalance (spec: GRP-52).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredGroup {
    /// The protocol type, if any member ever joined.
    pub protocol_type: Option<String>,
    /// The generation.
    pub generation: Generation,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader.
    pub leader: Option<MemberId>,
    /// When the group entered its current state.
    pub state_timestamp: Millis,
    /// The members, leader order first.
    pub members: Vec<StoredMember>,
}

/// A record in the group's `__consumer_offsets` partition. The runtime keys
/// and serialises them; replaying them in log order through
/// [`super::Group::load`] rebuilds the group (spec: GRP-53).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupRecord {
    /// The group's membership snapshot; the latest one wins.
    Metadata(StoredGroup),
    /// A committed offset; the latest one per partition wins.
    Offset {
        /// The partition.
        partition: TopicPartition,
        /// The commit.
        value: OffsetAndMetadata,
    },
    /// The committed offset of `partition` was deleted (expiry).
    OffsetTombstone {
        /// The partition.
        partition: TopicPartition,
    },
    /// The group was deleted; everything before it is void.
    GroupTombstone,
}
