//! DescribeCluster (key 60), v0–v2: the cluster id, the controller and
//! every live broker at the listener the request came in on — what
//! admin clients (`AdminClient.describeCluster`, confluent-kafka's
//! `describe_cluster`) and cluster UIs ask for (spec: PRO-29).
//!
//! The answer is the one Metadata gives (CLU-31, CLU-32). Asking for the
//! controller endpoints (v1+ `endpoint_type` 2, a KRaft notion) is refused
//! with UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker does; no broker is
//! fenced (v2); authorized operations are not computed (no ACLs).

use bytes::BytesMut;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::DescribeClusterResponse;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;

use super::super::error::ErrorCode;
use super::super::header::RequestHeader;
use super::super::wire::Reader;
use super::super::{HandlerError, encode_body};
use super::metadata::cluster_summary;
use super::sb;
use crate::broker::Broker;

/// `endpoint_type` of the brokers' endpoints.
const ENDPOINT_BROKERS: i8 = 1;
/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Answers a DescribeCluster request.
pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    mut r: Reader,
) -> Result<Option<BytesMut>, HandlerError> {
    let v = header.api_version;
    r.bool("include_cluster_authorized_operations")?;
    let endpoint_type = if v >= 1 {
        r.i8("endpoint_type")?
    } else {
        ENDPOINT_BROKERS
    };
    if v >= 2 {
        r.bool("include_fenced_brokers")?;
    }
    r.tagged_fields()?;
    r.finish()?;

    let mut resp = DescribeClusterResponse::default()
        .with_endpoint_type(endpoint_type)
        .with_cluster_authorized_operations(OPERATIONS_OMITTED);
    if endpoint_type != ENDPOINT_BROKERS {
        resp = resp
            .with_error_code(ErrorCode::UnsupportedEndpointType.code())
            .with_error_message(Some(sb(format!(
                "endpoint type {endpoint_type} is not served by a broker"
            ))))
            .with_controller_id(BrokerId(-1));
        return encode_body(&resp, v).map(Some);
    }
    let cluster = cluster_summary(broker);
    let brokers = cluster
        .brokers
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(sb(host))
                .with_port(port)
                .with_rack(rack.map(sb))
        })
        .collect();
    let resp = resp
        .with_cluster_id(sb(cluster.cluster_id))
        .with_controller_id(BrokerId(cluster.controller_id))
        .with_brokers(brokers);
    encode_body(&resp, v).map(Some)
}
