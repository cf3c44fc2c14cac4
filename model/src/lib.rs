//! Stateright models over Gregor's real core state machines.
//!
//! The models wrap `gregor_core` types; they do not re-implement the
//! algorithms they check.
#![forbid(unsafe_code)]

pub use gregor_core as core_under_check;

pub mod group;
pub mod replication;
