//! The operator's Prometheus metrics and its HTTP listener: `/metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;

/// The controllers the operator runs, as metric labels.
pub const CONTROLLERS: [&str; 2] = ["kafkacluster", "kafkatopic"];
/// The kinds of reconcile error, as metric labels (see `context::Error::kind`).
pub const ERROR_KINDS: [&str; 3] = ["kubernetes", "kafka", "finalizer"];

/// Reconcile counters and timings per controller (`kafkacluster`, `kafkatopic`).
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    managed: IntGaugeVec,
    leader: IntGauge,
    ready: AtomicBool,
}

impl Metrics {
    /// Registers every metric, process metrics included.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "strom_operator_reconciliations_total",
                "Reconciles run, per controller.",
            ),
            &["controller"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "strom_operator_reconcile_errors_total",
                "Reconciles that failed, per controller and error kind.",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "strom_operator_reconcile_duration_seconds",
                "Time one reconcile took, per controller.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )?;
        let managed = IntGaugeVec::new(
            Opts::new(
                "strom_operator_managed_resources",
                "Custom resources the operator manages, per kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let leader = IntGauge::new(
            "strom_operator_leader",
            "1 while this replica holds the leader Lease (or runs without leader election).",
        )?;
        registry.register(Box::new(managed.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Every series starts at zero, so that rate() and the dashboards see it before the
        // first reconcile or error.
        for controller in CONTROLLERS {
            reconciliations.with_label_values(&[controller]);
            duration.with_label_values(&[controller]);
            for error in ERROR_KINDS {
                errors.with_label_values(&[controller, error]);
            }
        }
        Ok(Metrics {
            registry,
            reconciliations,
            errors,
            duration,
            managed,
            leader,
            ready: AtomicBool::new(false),
        })
    }

    /// Counts a reconcile of `controller` and times it until the guard drops.
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer<'_> {
        self.reconciliations.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self,
            controller: controller.to_owned(),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, controller: &str, error: &str) {
        self.errors.with_label_values(&[controller, error]).inc();
    }

    /// Sets how many resources of `kind` the operator sees.
    pub fn set_managed(&self, kind: &str, count: usize) {
        self.managed
            .with_label_values(&[kind])
            .set(count.try_into().unwrap_or(i64::MAX));
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Marks the operator ready: it runs its controllers or waits as a standby.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding to a Vec cannot fail on I/O, and every family registered is well formed.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: String,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[&self.controller])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn scrape(
    State(metrics): State<Arc<Metrics>>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process stops.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(metrics);
    axum::serve(listener, app).await
}
