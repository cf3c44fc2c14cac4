//! ApiVersions (key 18), v0–v3: the table of supported APIs
//! (spec: PRO-10, PRO-11).

use bytes::BytesMut;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, SUPPORTED_APIS, encode_body, frame};
use crate::broker::Broker;

fn table() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Answers an ApiVersions request.
pub fn handle(
    _broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    if header.api_version >= 3 {
        let name = r.str("client_software_name")?.to_owned();
        let version = r.str("client_software_version")?.to_owned();
        r.tagged_fields()?;
        tracing::debug!(client = %name, %version, "client software");
    }
    r.finish()?;
    // spec: PRO-11 — tagged fields stay at their defaults, so none are sent.
    let resp = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::None.code())
        .with_api_keys(table());
    encode_body(&resp, header.api_version).map(Some)
}

/// The reply to an ApiVersions request of a version we do not support:
/// error 35 with a v0-format body under a v0 response header, so that any
/// client can read it and retry with a version from the table (spec: PRO-11).
pub fn unsupported_version(correlation_id: i32) -> Result<BytesMut, HandlerError> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(table());
    let body = encode_body(&resp, 0)?;
    let mut out = BytesMut::with_capacity(body.len() + 8);
    let start = frame::begin_response(&mut out, correlation_id, 0);
    out.extend_from_slice(&body);
    frame::finish_response(&mut out, start);
    Ok(out)
}
