//! The seam between the data plane (partitions, replication) and the
//! coordination backend (embedded metadata file or ZooKeeper).
//!
//! The coordination side decides; the data plane carries the decisions out:
//!
//! - the backend tells [`crate::partition::Partitions`] the controller's
//!   record of every partition this broker hosts (leader, leader epoch,
//!   partition epoch, ISR, replicas), whenever it changes, and the broker
//!   epoch of this broker's registration;
//! - the data plane asks the backend, through [`ClusterLink`], where other
//!   brokers listen, which broker epoch they registered with, and to apply
//!   the ISR changes its leaders propose. The answer to a proposal comes
//!   back to the data plane as a call (see `Partitions::isr_response`).
//!
//! In embedded mode every partition has one replica, this broker leads it
//! and no proposal is ever made; [`SoloLink`] is that backend.

use gregor_core::ids::{BrokerId, TopicPartition};
use gregor_core::replica::IsrProposal;

/// Where a broker accepts connections from other brokers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// What the data plane needs from the coordination backend.
pub trait ClusterLink: Send + Sync + std::fmt::Debug + 'static {
    /// This broker's id.
    fn local_broker(&self) -> BrokerId;

    /// The inter-broker endpoint of a live broker, `None` when the broker
    /// is not registered.
    fn endpoint(&self, broker: BrokerId) -> Option<Endpoint>;

    /// The broker epoch a live broker registered with (spec: REP-23);
    /// `None` when it is not registered.
    fn broker_epoch(&self, broker: BrokerId) -> Option<i64>;

    /// Asks the controller (or the store it guards) to apply an ISR change
    /// a leader of `partition` proposes (spec: REP-7, REP-19). The backend
    /// answers later through `Partitions::isr_response`; it must answer
    /// every proposal, with a rejection when the write is refused.
    fn propose_isr(&self, partition: TopicPartition, proposal: IsrProposal);
}

/// The backend of the embedded single-node mode: one broker, one replica
/// per partition, nothing to propose.
#[derive(Debug, Clone)]
pub struct SoloLink {
    broker: BrokerId,
}

impl SoloLink {
    /// The link of single broker `broker`.
    pub fn new(broker: BrokerId) -> Self {
        Self { broker }
    }
}

impl ClusterLink for SoloLink {
    fn local_broker(&self) -> BrokerId {
        self.broker
    }

    fn endpoint(&self, _broker: BrokerId) -> Option<Endpoint> {
        None
    }

    fn broker_epoch(&self, broker: BrokerId) -> Option<i64> {
        (broker == self.broker).then_some(0)
    }

    fn propose_isr(&self, partition: TopicPartition, proposal: IsrProposal) {
        // A single replica is always the whole ISR; a proposal would mean
        // the replica set changed under the embedded backend.
        tracing::warn!(%partition, ?proposal, "ISR proposal in single-node mode ignored");
    }
}
