//! Kafka error codes, and the one place Gregor's error types map to them
//! (spec: PRO-7).

use crate::cluster::TopicError;
use crate::partition::AppendError;
use crate::storage::record::RecordError;

/// The Kafka error codes Gregor returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum ErrorCode {
    /// The server hit an unexpected error.
    UnknownServerError = -1,
    /// No error.
    None = 0,
    /// The requested offset is outside the log.
    OffsetOutOfRange = 1,
    /// A message failed its CRC or is otherwise corrupt.
    CorruptMessage = 2,
    /// The topic or partition does not exist on this broker.
    UnknownTopicOrPartition = 3,
    /// The partition has no leader right now.
    LeaderNotAvailable = 5,
    /// This broker is not the partition's leader.
    NotLeaderOrFollower = 6,
    /// The request timed out.
    RequestTimedOut = 7,
    /// The record batch is larger than the limit.
    MessageTooLarge = 10,
    /// The client may not use this transactional id (transactions are off).
    TransactionalIdAuthorizationFailed = 53,
    /// The topic name is illegal.
    InvalidTopicException = 17,
    /// The produce request's records exceed the request limits.
    RecordListTooLarge = 18,
    /// Fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas = 19,
    /// The records were written but the ISR shrank below
    /// `min.insync.replicas` before they were committed.
    NotEnoughReplicasAfterAppend = 20,
    /// acks is not 0, 1 or -1.
    InvalidRequiredAcks = 21,
    /// The version of the API is not supported.
    UnsupportedVersion = 35,
    /// The topic already exists.
    TopicAlreadyExists = 36,
    /// The partition count is invalid.
    InvalidPartitions = 37,
    /// The replication factor is invalid.
    InvalidReplicationFactor = 38,
    /// The replica assignment is invalid.
    InvalidReplicaAssignment = 39,
    /// A config is invalid.
    InvalidConfig = 40,
    /// The request is malformed or inconsistent.
    InvalidRequest = 42,
    /// The records break the record format's rules.
    UnsupportedForMessageFormat = 43,
    /// The preferred replica is not registered or not in the ISR.
    PreferredLeaderNotAvailable = 80,
    /// No replica may lead (ElectLeaders of the unclean kind).
    EligibleLeadersNotAvailable = 83,
    /// The preferred replica already leads.
    ElectionNotNeeded = 84,
    /// A reassignment was cancelled where none is in progress.
    NoReassignmentInProgress = 85,
    /// DescribeCluster asked a broker for the controllers' endpoints.
    UnsupportedEndpointType = 119,
    /// The request breaks a topic's policy (DeleteRecords on a topic whose
    /// `cleanup.policy` lacks `delete`).
    PolicyViolation = 44,
    /// The sequence number does not follow the last one written.
    OutOfOrderSequenceNumber = 45,
    /// The batch was already written (a retry).
    DuplicateSequenceNumber = 46,
    /// The producer epoch is older than the current one.
    InvalidProducerEpoch = 47,
    /// The broker cannot persist the change.
    KafkaStorageError = 56,
    /// The partition has no state for this producer id.
    UnknownProducerId = 59,
    /// The codec is not valid for the record format.
    UnsupportedCompressionType = 76,
    /// The request names an older leader epoch than the replica's.
    FencedLeaderEpoch = 74,
    /// The request names a newer leader epoch than the replica knows.
    UnknownLeaderEpoch = 75,
    /// A record breaks a produce rule.
    InvalidRecord = 87,
    /// Topic deletion is disabled.
    TopicDeletionDisabled = 73,
    /// No topic has this id.
    UnknownTopicId = 100,
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }
}

impl From<&TopicError> for ErrorCode {
    fn from(e: &TopicError) -> Self {
        match e {
            TopicError::InvalidName(_) => Self::InvalidTopicException,
            TopicError::AlreadyExists(_) => Self::TopicAlreadyExists,
            TopicError::Unknown(_) => Self::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(_) => Self::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => Self::InvalidReplicationFactor,
            TopicError::InvalidReplicaAssignment(_) => Self::InvalidReplicaAssignment,
            TopicError::InvalidConfig(_) => Self::InvalidConfig,
            TopicError::DeletionDisabled => Self::TopicDeletionDisabled,
            TopicError::Storage(_) => Self::KafkaStorageError,
            TopicError::TimedOut(_) => Self::RequestTimedOut,
        }
    }
}

impl From<&AppendError> for ErrorCode {
    fn from(e: &AppendError) -> Self {
        match e {
            AppendError::UnknownPartition(_) => Self::UnknownTopicOrPartition,
            AppendError::TooLarge { .. } => Self::MessageTooLarge,
            AppendError::Record(r) if r.is_corruption() => Self::CorruptMessage,
            AppendError::Record(RecordError::UnsupportedCodec { .. }) => {
                Self::UnsupportedCompressionType
            }
            AppendError::Record(RecordError::DecompressedTooLarge { .. }) => {
                Self::RecordListTooLarge
            }
            AppendError::Record(_) => Self::InvalidRecord,
            AppendError::WrongFormat(_) => Self::UnsupportedForMessageFormat,
            AppendError::ProducerFenced { .. } => Self::InvalidProducerEpoch,
            AppendError::OutOfOrder { .. } => Self::OutOfOrderSequenceNumber,
            AppendError::UnknownProducer(_) => Self::UnknownProducerId,
            AppendError::Storage(_) => Self::KafkaStorageError,
            AppendError::ShuttingDown => Self::NotLeaderOrFollower,
            AppendError::NotLeader(_) => Self::NotLeaderOrFollower,
            AppendError::NotEnoughReplicas { .. } => Self::NotEnoughReplicas,
        }
    }
}

impl From<&crate::partition::DeleteRecordsFailure> for ErrorCode {
    /// spec: PRO-28
    fn from(e: &crate::partition::DeleteRecordsFailure) -> Self {
        use crate::partition::DeleteRecordsFailure as F;
        match e {
            F::UnknownPartition(_) => Self::UnknownTopicOrPartition,
            F::NotLeader(_) => Self::NotLeaderOrFollower,
            F::OffsetOutOfRange { .. } => Self::OffsetOutOfRange,
            F::PolicyViolation(_) => Self::PolicyViolation,
            F::Storage(_) => Self::KafkaStorageError,
        }
    }
}

impl From<gregor_core::replica::FetchError> for ErrorCode {
    /// spec: REP-63 — why a fetch or epoch query is refused.
    fn from(e: gregor_core::replica::FetchError) -> Self {
        use gregor_core::replica::FetchError;
        match e {
            FetchError::NotLeader | FetchError::UnknownReplica(_) => Self::NotLeaderOrFollower,
            FetchError::FencedLeaderEpoch { .. } => Self::FencedLeaderEpoch,
            FetchError::UnknownLeaderEpoch { .. } => Self::UnknownLeaderEpoch,
            FetchError::OffsetOutOfRange { .. } => Self::OffsetOutOfRange,
        }
    }
}

impl From<gregor_core::replica::ProduceError> for ErrorCode {
    /// spec: REP-62 — how a produce request the core failed is answered.
    fn from(e: gregor_core::replica::ProduceError) -> Self {
        use gregor_core::replica::ProduceError;
        match e {
            ProduceError::NotLeader => Self::NotLeaderOrFollower,
            ProduceError::NotEnoughReplicas { .. } => Self::NotEnoughReplicas,
            ProduceError::NotEnoughReplicasAfterAppend { .. } => Self::NotEnoughReplicasAfterAppend,
            ProduceError::Empty => Self::InvalidRecord,
        }
    }
}
