//! Gregor's decision-making core: pure state machines with no I/O.
//!
//! Nothing in this crate touches files, sockets, threads, clocks or
//! randomness. Time enters as a [`ids::Millis`] argument, choices enter as
//! inputs, and every output is a value the caller acts on. The broker
//! (`gregor_runtime`) and the model checker (`gregor_model`) drive the very
//! same types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assignor;
pub mod consumer_protocol;
pub mod controller;
pub mod group;
pub mod ids;
pub mod log;
pub mod partitioner;
pub mod replica;
