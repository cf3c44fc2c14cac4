//! The Gregor broker: storage engine, Kafka wire protocol and cluster
//! coordination around the pure state machines of `gregor_core`.

pub mod config;
pub mod storage;
pub mod cluster;
pub mod codec;
