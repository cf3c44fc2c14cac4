//! Kafka error codes, and the one place Gregor's error types map to them
//! (spec: PRO-7).

use crate::cluster::TopicError;

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
    /// The topic name is illegal.
    InvalidTopicException = 17,
    /// Fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas = 19,
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
    /// The broker cannot persist the change.
    KafkaStorageError = 56,
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
        }
    }
}
