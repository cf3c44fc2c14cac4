//! Plumbing shared by the group APIs: handing a request to the
//! coordinator and waiting for its (possibly delayed) answer.

use std::sync::Arc;

use gregor_core::group::{Request, Response};

use super::super::HandlerError;
use crate::broker::Broker;

/// Submits `request` to `group_id`'s coordinator state and waits for the
/// answer (spec: GRP-103). The submission may append to
/// `__consumer_offsets`, so it runs on the blocking pool; the wait does
/// not. A request the coordinator cannot take (no offsets topic) or drops
/// closes the connection: clients reconnect and look the coordinator up
/// again.
pub(crate) async fn call(
    broker: &Arc<Broker>,
    group_id: &str,
    request: Request,
) -> Result<Response, HandlerError> {
    let (b, g) = (broker.clone(), group_id.to_owned());
    let rx = tokio::task::spawn_blocking(move || b.groups.submit(&b, &g, request))
        .await
        .map_err(|e| HandlerError::Encode(format!("group coordinator task: {e}")))?
        .map_err(|e| HandlerError::Encode(format!("group coordinator: {e}")))?;
    rx.await
        .map_err(|_| HandlerError::Encode("group coordinator dropped the request".into()))
}

/// The error for an answer of the wrong kind (a coordinator bug).
pub(crate) fn unexpected(api: &str) -> HandlerError {
    HandlerError::Encode(format!(
        "group coordinator answered {api} with another kind"
    ))
}
