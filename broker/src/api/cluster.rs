//! DescribeCluster.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{client_facing_controller, str_bytes, Access, Context, RequestInfo};

/// Lists the cluster id, the active controller and the registered brokers (Describe on the
/// cluster).
pub fn describe_cluster(
    ctx: &Context,
    info: &RequestInfo,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = ctx.controller.image();
    let access = Access::new(ctx, info, &image);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&image.cluster_id))
        .with_controller_id(BrokerId(client_facing_controller(ctx, &image)))
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_authorized_operations(
            access.cluster_operations(request.include_cluster_authorized_operations),
        );
    if request.endpoint_type != 1 {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("only broker endpoints (type 1) are served")));
    }
    response.with_brokers(
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| {
                let (host, port) = b.endpoint(&info.listener.name);
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port as i32)
                    .with_rack(b.rack.as_deref().map(str_bytes))
            })
            .collect(),
    )
}
