//! InitProducerId (key 22), v0–v4: producer ids for idempotent producers
//! (spec: PRO-82). Transactions are not offered: a transactional id is
//! refused.

use bytes::BytesMut;
use kafka_protocol::messages::{InitProducerIdResponse, ProducerId};

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use crate::broker::Broker;

/// Answers an InitProducerId request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    let transactional_id = r.nullable_str("transactional_id")?.map(str::to_owned);
    let _timeout_ms = r.i32("transaction_timeout_ms")?;
    let (current_id, current_epoch) = if v >= 3 {
        (r.i64("producer_id")?, r.i16("producer_epoch")?)
    } else {
        (-1, -1)
    };
    r.tagged_fields()?;
    r.finish()?;

    let resp = InitProducerIdResponse::default();
    let resp = if transactional_id.is_some() {
        tracing::info!(
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        resp.with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if current_id >= 0 && (0..i16::MAX - 1).contains(&current_epoch) {
        // KIP-360: an idempotent producer bumps its own epoch to reset
        // sequences after an error; the partitions accept sequence 0 again.
        resp.with_producer_id(ProducerId(current_id))
            .with_producer_epoch(current_epoch + 1)
    } else {
        match broker.allocate_producer_id().await {
            Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot allocate a producer id");
                resp.with_error_code(ErrorCode::KafkaStorageError.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    };
    encode_body(&resp, v).map(Some)
}
