//! Status conditions with Kubernetes semantics: `lastTransitionTime` moves only when the status
//! flips, and every condition carries the generation it describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition to report, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Condition type (Ready, Progressing, Degraded).
    pub kind: &'static str,
    /// True or False.
    pub status: bool,
    /// One CamelCase word.
    pub reason: String,
    /// A plain sentence for the user.
    pub message: String,
}

impl Report {
    /// A condition of `kind` with `status`, `reason` and `message`.
    pub fn new(
        kind: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Report {
        Report {
            kind,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Turns reports into conditions, keeping the transition time of those whose status did not
/// change since `previous`.
pub fn conditions(
    reports: Vec<Report>,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    reports
        .into_iter()
        .map(|r| {
            let status = if r.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == r.kind && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(Timestamp::now()));
            Condition {
                type_: r.kind.into(),
                status: status.into(),
                reason: r.reason,
                message: r.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}
