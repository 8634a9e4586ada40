//! InitProducerId for idempotent producers (transactions are not supported).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::Context;

/// Gives an idempotent producer a fresh producer id with epoch 0.
pub async fn init_producer_id(
    ctx: &Context,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match ctx.producer_ids.next().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "could not allocate a producer id");
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::CoordinatorLoadInProgress.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
