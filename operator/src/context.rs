//! What every reconcile shares: the API client, the event recorder, metrics, operator defaults,
//! and the per-object failure counts behind the error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::discovery::{self, ApiResource};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use serde::Serialize;

use crate::cluster::validate::OperatorDefaults;
use crate::metrics::Metrics;

/// The longest note an Event may carry.
const EVENT_NOTE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes, on a character boundary, marked with an ellipsis.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "strom-operator";

/// Errors a reconcile returns; they requeue with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Kafka admin call failed.
    #[error("Kafka admin: {0}")]
    Admin(#[from] strom_client::AdminError),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A certificate could not be issued or read.
    #[error("{0}")]
    Certificate(#[from] crate::cluster::pki::PkiError),
    /// TLS settings for the operator's own connection were refused.
    #[error("TLS: {0}")]
    Tls(#[from] strom_client::TlsError),
    /// Something the reconcile needs does not exist (yet).
    #[error("missing {0}")]
    Missing(String),
}

impl Error {
    /// The error in plain words: for a refused API call, the API server's message alone.
    pub fn plain(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => {
                format!("Kubernetes API: {}", status.message)
            }
            other => other.to_string(),
        }
    }

    /// A short label for the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Admin(_) => "kafka",
            Error::Finalizer(_) => "finalizer",
            Error::Certificate(_) | Error::Tls(_) => "certificate",
            Error::Missing(_) => "missing",
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Events about the custom resources.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Image and cluster domain defaults.
    pub defaults: OperatorDefaults,
    /// The PodDisruptionBudget API the cluster serves (`policy/v1` or `policy/v1beta1`).
    pub pdb: ApiResource,
    /// Timeout of Kafka admin calls.
    pub admin_timeout: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Builds the context, asking the API server which PodDisruptionBudget version it serves.
    pub async fn new(
        client: Client,
        metrics: Arc<Metrics>,
        defaults: OperatorDefaults,
    ) -> Result<Context, kube::Error> {
        let pdb = match discovery::pinned_kind(
            &client,
            &kube::api::GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
        )
        .await
        {
            Ok((resource, _)) => resource,
            Err(_) => {
                discovery::pinned_kind(
                    &client,
                    &kube::api::GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
                )
                .await?
                .0
            }
        };
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Ok(Context {
            client,
            recorder,
            metrics,
            defaults,
            pdb,
            admin_timeout: Duration::from_secs(10),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes an Event on `object`, about `related` when given; a failure to publish is
    /// logged, never fatal. The note is cut to the 1024 bytes an Event holds.
    pub async fn event(
        &self,
        object: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncated(note, EVENT_NOTE_BYTES)),
            action: "Reconcile".into(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// Counts a failure of `key` and returns when to retry: 5 s, doubling up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Action {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        let seconds = 5u64.saturating_mul(1 << (*n - 1).min(6)).min(300);
        Action::requeue(Duration::from_secs(seconds))
    }
}

/// Server-side applies `object` with the operator's field manager.
pub async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Server-side applies `status` as the status of `object`, with the operator's field manager.
pub async fn apply_status<K, S>(client: &Client, object: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(
        client.clone(),
        object.meta().namespace.as_deref().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        object.meta().name.as_deref().unwrap_or_default(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Runs `reconcile` behind the finalizer `name` (kube's helper adds it before the first apply
/// and removes it after cleanup), with the finalizer's errors turned into the reconcile's own.
pub async fn finalized<K, F, Fut>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    use kube::runtime::finalizer::{finalizer, Error as FinalizerError};
    finalizer(api, name, object, reconcile)
        .await
        .map_err(|e| match e {
            FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
}

/// Lower-case hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Key of an object in the failure counts.
pub fn object_key<K>(object: &K) -> String
where
    K: Resource,
    K::DynamicType: Default,
{
    format!(
        "{}/{}/{}",
        K::kind(&Default::default()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short".into(), 1024), "short");
        let long = "é".repeat(600);
        let cut = truncated(long, 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
