//! ApiVersions, generated from the handler table.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::SUPPORTED_APIS;

/// The lowest version advertised for an API. Produce is advertised from v0 although v3 is
/// the oldest served (a v0-v2 request closes its connection): older librdkafka (Debian's
/// 2.0.2, for one) keeps gzip, snappy and lz4 only when the broker's range includes Produce
/// v0, and otherwise sends those batches uncompressed. Kafka 4.0 advertises v0 for the same reason
/// (KAFKA-18659); clients use the highest common version, so none sends v0-v2.
fn advertised_min(key: ApiKey, min: i16) -> i16 {
    if key == ApiKey::Produce {
        0
    } else {
        min
    }
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(advertised_min(*key, *min))
                .with_max_version(*max)
        })
        .collect()
}

/// The supported APIs. No features are advertised: a strict client (librdkafka 2.0)
/// refuses tagged fields it does not expect.
pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// What Kafka sends for an ApiVersions version it does not know: UNSUPPORTED_VERSION and
/// the supported APIs, encoded as v0 so any client can read it and retry.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    handle().with_error_code(ResponseError::UnsupportedVersion.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_every_routed_api_and_no_features() {
        let r = handle();
        assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len());
        assert!(r.supported_features.is_empty() && r.finalized_features.is_empty());
        assert_eq!(unsupported_version_response().error_code, 35);
    }

    #[test]
    fn produce_is_advertised_from_v0_for_old_librdkafka_compression() {
        let produce = handle()
            .api_keys
            .into_iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        assert_eq!(crate::api::supported_range(ApiKey::Produce), Some((3, 11)));
    }
}
