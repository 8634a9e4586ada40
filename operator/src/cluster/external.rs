//! External listeners: a NodePort or LoadBalancer Service per broker and one to bootstrap
//! from, and the address each broker advertises, read back from its Service.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use super::build::{self, INSTANCE_LABEL, LISTENER_LABEL};
use super::validate::ValidCluster;
use crate::context::{apply, Context, Error};
use crate::crd::{ListenerStatus, ListenerType};

/// What the external Services give the brokers.
#[derive(Default)]
pub struct External {
    /// `external.properties` lines: `<pod>.<listener>.host|port` to advertise.
    pub properties: BTreeMap<String, String>,
    /// Load balancers without an address yet; brokers wait for them.
    pub waiting: Vec<String>,
    /// Addresses for the status.
    pub status: Vec<ListenerStatus>,
    /// Host names and IPs every broker's certificate must also carry: a client bootstrapping
    /// through any node's port may reach any broker.
    pub names: BTreeSet<String>,
}

fn node_port(service: &Service) -> Option<i32> {
    service.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

fn ingress(service: &Service) -> Option<String> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .clone();
    ingress.hostname.or(ingress.ip)
}

/// Applies the Services of every external listener for the broker pods in `pods` and deletes
/// those of pods that no longer exist; returns what the brokers advertise.
pub async fn services(
    ctx: &Context,
    valid: &ValidCluster,
    owner: &OwnerReference,
    pods: &BTreeSet<String>,
) -> Result<External, Error> {
    let mut external = External::default();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let selector = format!("{INSTANCE_LABEL}={}", valid.name);
    let wanted = if valid.external_listeners().next().is_some() {
        listener_services(ctx, valid, owner, pods, &mut external).await?
    } else {
        BTreeSet::new()
    };
    // Services of brokers that left, or of listeners that are gone or internal now.
    let listed = api
        .list(&ListParams::default().labels(&format!("{selector},{LISTENER_LABEL}")))
        .await?;
    for service in listed {
        let name = service.name_any();
        if !wanted.contains(&name) {
            api.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(cluster = %valid.name, service = %name, "deleted an external Service no longer needed");
        }
    }
    Ok(external)
}

/// Applies the Services of every external listener; returns their names.
async fn listener_services(
    ctx: &Context,
    valid: &ValidCluster,
    owner: &OwnerReference,
    pods: &BTreeSet<String>,
    external: &mut External,
) -> Result<BTreeSet<String>, Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let selector = format!("{INSTANCE_LABEL}={}", valid.name);
    let host_ips: BTreeMap<String, String> = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter_map(|p| Some((p.name_any(), p.status?.host_ip?)))
        .collect();
    let mut wanted = BTreeSet::new();
    for listener in valid.external_listeners() {
        let mut status = ListenerStatus {
            name: listener.name.clone(),
            ..Default::default()
        };
        let bootstrap = build::external_service(valid, owner, listener, None);
        let bootstrap_name = valid.external_bootstrap_service(&listener.name);
        let bootstrap = apply(&api, &bootstrap_name, &bootstrap).await?;
        wanted.insert(bootstrap_name);
        for pod in pods {
            let name = valid.external_service(pod, &listener.name);
            let service = build::external_service(valid, owner, listener, Some(pod));
            let service = apply(&api, &name, &service).await?;
            wanted.insert(name.clone());
            let (host_key, port_key) = build::external_keys(pod, &listener.name);
            match listener.kind {
                ListenerType::Loadbalancer => match ingress(&service) {
                    Some(host) => {
                        external.names.insert(host.clone());
                        status
                            .brokers
                            .insert(pod.clone(), format!("{host}:{}", listener.port));
                        external.properties.insert(host_key, host);
                    }
                    None => external.waiting.push(name),
                },
                _ => {
                    let Some(port) = node_port(&service) else {
                        external.waiting.push(name);
                        continue;
                    };
                    external.properties.insert(port_key, port.to_string());
                    if let Some(ip) = host_ips.get(pod) {
                        external.names.insert(ip.clone());
                        status.brokers.insert(pod.clone(), format!("{ip}:{port}"));
                    }
                }
            }
        }
        status.bootstrap = match listener.kind {
            ListenerType::Loadbalancer => {
                ingress(&bootstrap).map(|host| format!("{host}:{}", listener.port))
            }
            _ => node_port(&bootstrap)
                .zip(host_ips.values().next())
                .map(|(port, ip)| format!("{ip}:{port}")),
        };
        external.status.push(status);
    }
    Ok(wanted)
}
