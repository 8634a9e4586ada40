//! InitProducerId: a fresh producer id for an idempotent producer, or a transactional id's
//! producer id at its next epoch (see `transactions`).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{transactions, Context};

/// Gives an idempotent producer a fresh producer id with epoch 0, and a transactional one its
/// id's producer id at a new epoch.
pub async fn init_producer_id(
    ctx: &Arc<Context>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let outcome = if request.transactional_id.is_some() {
        transactions::init_producer_id(ctx, &request, version).await
    } else {
        ctx.producer_ids
            .next()
            .await
            .map(|id| (id, 0))
            .map_err(|e| {
                warn!(error = %e, "could not allocate a producer id");
                ResponseError::CoordinatorLoadInProgress
            })
    };
    match outcome {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
