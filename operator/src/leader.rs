//! Leader election with a `coordination.k8s.io/v1` Lease, so that several operator replicas can
//! run and exactly one reconciles. A replica waits until the Lease is free or expired, takes it,
//! and renews it; when it cannot renew within the lease duration it has lost the lease.
//! Expiry is judged by this replica's own clock since it last saw the Lease change (as
//! client-go does), so clock skew between replicas does not matter.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::time::Instant;

/// Where the Lease lives and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the lease.
    pub duration: Duration,
}

impl LeaseSettings {
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// A holder that could not renew for this long stops, before a standby may take over.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// The outcome of one renewal.
enum Renewal {
    Renewed,
    Lost,
    /// Someone wrote the Lease since it was read; the next round reads it again.
    Conflict,
}

/// What a replica saw of the Lease, to judge its expiry by the local clock.
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Instant,
}

impl Observed {
    /// Notes the Lease's holder and renew time; returns whether it has not changed for a lease
    /// duration.
    fn expired(&mut self, spec: &LeaseSpec, duration: Duration) -> bool {
        let record = Some((spec.holder_identity.clone(), spec.renew_time.clone()));
        if record != self.record {
            self.record = record;
            self.at = Instant::now();
        }
        self.at.elapsed() >= duration
    }
}

fn held_by(identity: &str, settings: &LeaseSettings, transitions: i32) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(settings.duration.as_secs().max(1) as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Waits until this replica holds the Lease (creating it if needed).
pub async fn acquire(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let mut observed = Observed {
        record: None,
        at: Instant::now(),
    };
    loop {
        match api.get_opt(&settings.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(settings.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(held_by(&settings.identity, settings, 0)),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let free = holder.is_empty()
                    || holder == settings.identity
                    || observed.expired(&spec, settings.duration);
                if free {
                    let transitions = spec.lease_transitions.unwrap_or(0)
                        + i32::from(holder != settings.identity);
                    lease.spec = Some(held_by(&settings.identity, settings, transitions));
                    // The resourceVersion makes this a compare-and-swap: of two replicas
                    // taking an expired lease, one wins.
                    match api
                        .replace(&settings.name, &PostParams::default(), &lease)
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    tracing::debug!(%holder, "the lease is held; waiting");
                }
            }
        }
        tokio::time::sleep(settings.renew_every()).await;
    }
}

/// Renews the Lease, from the moment it was acquired, until it is lost: taken by another
/// replica, or not renewed within the renew deadline. Returns why. Each renewal is bounded in
/// time, so a hanging API server cannot hold this replica past the deadline.
pub async fn hold(api: &Api<Lease>, settings: &LeaseSettings) -> String {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(settings.renew_every()).await;
        match tokio::time::timeout(settings.renew_every(), renew(api, settings)).await {
            Ok(Ok(Renewal::Renewed)) => renewed = Instant::now(),
            Ok(Ok(Renewal::Lost)) => return "another replica holds the lease".into(),
            Ok(Ok(Renewal::Conflict)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the lease"),
            Err(_) => tracing::warn!("renewing the lease timed out"),
        }
        if renewed.elapsed() >= settings.renew_deadline() {
            return format!(
                "the lease was not renewed for {:?}",
                settings.renew_deadline()
            );
        }
    }
}

async fn renew(api: &Api<Lease>, settings: &LeaseSettings) -> Result<Renewal, kube::Error> {
    let mut lease = api.get(&settings.name).await?;
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(Renewal::Lost);
    }
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Renewal::Renewed),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Renewal::Conflict),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown, so that a standby replica takes over at once.
pub async fn release(api: &Api<Lease>, settings: &LeaseSettings) {
    let Ok(mut lease) = api.get(&settings.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    if let Err(e) = api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "could not release the lease");
    }
}
