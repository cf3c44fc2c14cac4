//! Plumbing shared by the group APIs: handing a request to the
//! coordinator and waiting for its (possibly delayed) answer.

use gregor_core::group::{Request, Response};

use super::super::HandlerError;
use crate::broker::Broker;

/// Submits `request` to `group_id`'s coordinator state and waits for the
/// answer (spec: GRP-103). A request the coordinator cannot take (no offsets
/// topic) or drops closes the connection: clients reconnect and look the
/// coordinator up again.
pub(crate) async fn call(
    broker: &Broker,
    group_id: &str,
    request: Request,
) -> Result<Response, HandlerError> {
    broker
        .groups
        .call(broker, group_id, request)
        .await
        .map_err(|e| HandlerError::Encode(format!("group coordinator: {e}")))
}

/// The error for an answer of the wrong kind (a coordinator bug).
pub(crate) fn unexpected(api: &str) -> HandlerError {
    HandlerError::Encode(format!(
        "group coordinator answered {api} with another kind"
    ))
}
