//! ApiVersions, generated from the handler table.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::ResponseError;

use super::SUPPORTED_APIS;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
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
}
