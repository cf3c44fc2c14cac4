//! The Gregor broker: storage engine, Kafka wire protocol and cluster
//! coordination around the pure state machines of `gregor_core`.

pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod controller;
pub mod group;
pub mod partition;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod storage;
