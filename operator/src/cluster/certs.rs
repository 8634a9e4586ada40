//! The certificate Secrets of a secured cluster: the cluster CA (nodes, the operator) and the
//! clients CA (KafkaUsers), each in a private Secret with its key and a public one with its
//! certificate, and every node's key store. Nodes read renewed files without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::{Api, ResourceExt};
use serde_json::json;
use strom_client::{Admin, TlsClient};

use super::build::{cluster_labels, CLIENTS_CA_KEY, CLUSTER_CA_KEY, OPERATOR_COMMON_NAME};
use super::pki::{self, Authority, CaState, CaStep, Subject, CA_HANDOVER_DAYS};
use super::validate::{
    bootstrap_host, ca_cert_secret_name, ca_secret_name, ValidCluster, REPLICATION_PORT,
};
use crate::context::{apply, Context, Error};
use crate::crd::KafkaCluster;

/// Key of a CA's certificate (or bundle) in its Secrets.
const CA_CERT: &str = "ca.crt";
/// Key of a CA's private key.
const CA_KEY: &str = "ca.key";
/// Keys of a CA of the user's own, in its `kubernetes.io/tls` Secret.
const OWN_CA_CERT: &str = "tls.crt";
const OWN_CA_KEY: &str = "tls.key";
/// Keys of the successor of a CA that nears its end, during the handover.
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";

/// The current time in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A CA in use: the authority that issues, and the bundle peers trust (the authority, its
/// successor during a handover, and the one it replaced until that one expires).
pub struct TrustedCa {
    /// Issues certificates.
    pub authority: Authority,
    /// PEM certificates to trust.
    pub bundle: String,
}

/// Both CAs of a secured cluster.
pub struct ClusterCas {
    /// Signs the nodes' and the operator's certificates.
    pub cluster: TrustedCa,
    /// Signs the KafkaUsers' certificates.
    pub clients: TrustedCa,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn secret(
    cluster: &ValidCluster,
    name: &str,
    owner: &OwnerReference,
    data: BTreeMap<String, String>,
) -> Secret {
    let data: BTreeMap<String, ByteString> = data
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": cluster.namespace,
            "labels": cluster_labels(cluster),
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "data": data,
    }))
    .expect("a Secret")
}

/// Loads the CA named `ca` (`cluster` or `clients`) and moves it on: created when absent, a
/// successor published when it nears its end, which signs after the handover.
async fn trusted_ca(
    ctx: &Context,
    kafka: &KafkaCluster,
    cluster: &ValidCluster,
    owner: &OwnerReference,
    ca: &str,
) -> Result<TrustedCa, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    if let Some(own) = own_ca_secret(kafka, ca) {
        let trusted = own_ca(&secrets, own).await?;
        // Clients find the CA to trust in the same Secret as with the operator's own CA.
        let name = cluster.ca_cert_secret(ca);
        let published = secrets
            .get_opt(&name)
            .await?
            .and_then(|s| text(&s, CA_CERT));
        if published.as_deref() != Some(trusted.bundle.as_str()) {
            let public = BTreeMap::from([(CA_CERT.to_owned(), trusted.bundle.clone())]);
            apply(&secrets, &name, &secret(cluster, &name, owner, public)).await?;
        }
        return Ok(trusted);
    }
    let (stored, published) = match stored_ca(&secrets, &cluster.name, ca).await? {
        Some((state, published)) => (Some(state), published),
        None => (None, false),
    };
    let common_name = format!("{}-{ca}-ca", cluster.name);
    let (state, step) = pki::advance(stored.clone(), &common_name, now())?;
    let trusted = TrustedCa {
        authority: state.current.clone(),
        bundle: state.bundle.clone(),
    };
    // Most reconciles change nothing: the Secrets are written only when the CA moved on.
    if published && stored.as_ref() == Some(&state) {
        return Ok(trusted);
    }
    let message = match step {
        CaStep::Kept => None,
        CaStep::Created => Some(format!("created the {ca} CA")),
        CaStep::NextPublished => Some(format!(
            "the {ca} CA nears its expiry: its successor is in {} from now on and signs in {CA_HANDOVER_DAYS} days; clients should trust it",
            cluster.ca_cert_secret(ca)
        )),
        CaStep::Switched => Some(format!(
            "the successor of the {ca} CA signs from now on; certificates are issued again"
        )),
    };
    if let Some(message) = message {
        tracing::info!(cluster = %cluster.name, "{message}");
        let reference = kube::Resource::object_ref(kafka, &());
        ctx.event(&reference, None, false, "CertificateAuthority", message)
            .await;
    }
    let mut private = BTreeMap::from([
        (CA_CERT.to_owned(), state.current.cert_pem.clone()),
        (CA_KEY.to_owned(), state.current.key_pem.clone()),
    ]);
    if let Some(next) = &state.next {
        private.insert(NEXT_CERT.to_owned(), next.cert_pem.clone());
        private.insert(NEXT_KEY.to_owned(), next.key_pem.clone());
    }
    let name = cluster.ca_secret(ca);
    apply(&secrets, &name, &secret(cluster, &name, owner, private)).await?;
    let name = cluster.ca_cert_secret(ca);
    let public = BTreeMap::from([(CA_CERT.to_owned(), state.bundle)]);
    apply(&secrets, &name, &secret(cluster, &name, owner, public)).await?;
    Ok(trusted)
}

/// The Secret of the user's own CA named `ca` (`cluster` or `clients`), when the spec names one.
fn own_ca_secret<'a>(kafka: &'a KafkaCluster, ca: &str) -> Option<&'a str> {
    let own = match ca {
        "cluster" => kafka.spec.cluster_ca.as_ref(),
        _ => kafka.spec.clients_ca.as_ref(),
    };
    own.map(|o| o.secret_name.as_str())
}

/// The user's own CA from its Secret, checked: it signs, and peers trust it alone.
async fn own_ca(secrets: &Api<Secret>, name: &str) -> Result<TrustedCa, Error> {
    let stored = secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Missing(format!("Secret {name} with the CA named in the spec")))?;
    let field = |key: &str| {
        text(&stored, key)
            .ok_or_else(|| Error::Missing(format!("key {key} in the CA Secret {name}")))
    };
    // tls.crt may carry the CA's own issuers after it: trusting those would let anything they
    // sign in.
    let chain = field(OWN_CA_CERT)?;
    let authority = Authority {
        cert_pem: pki::first_certificate_pem(&chain).ok_or_else(|| {
            Error::Missing(format!("a certificate in {OWN_CA_CERT} of Secret {name}"))
        })?,
        key_pem: field(OWN_CA_KEY)?,
    };
    authority
        .check(now())
        .map_err(|e| Error::Missing(format!("a usable CA in Secret {name}: {e}")))?;
    Ok(TrustedCa {
        bundle: authority.cert_pem.clone(),
        authority,
    })
}

/// The CA named `ca` of `kafka` as the spec names it or its Secrets hold it, when they do.
async fn current_ca(
    secrets: &Api<Secret>,
    kafka: &KafkaCluster,
    ca: &str,
) -> Result<Option<TrustedCa>, Error> {
    if let Some(own) = own_ca_secret(kafka, ca) {
        return own_ca(secrets, own).await.map(Some);
    }
    Ok(stored_ca(secrets, &kafka.name_any(), ca)
        .await?
        .map(|(state, _)| TrustedCa {
            authority: state.current,
            bundle: state.bundle,
        }))
}

/// The CA named `ca` of cluster `name` as its Secrets hold it, when they do, and whether its
/// public Secret exists (its bundle is the authority alone when it does not).
async fn stored_ca(
    secrets: &Api<Secret>,
    name: &str,
    ca: &str,
) -> Result<Option<(CaState, bool)>, Error> {
    let Some(private) = secrets.get_opt(&ca_secret_name(name, ca)).await? else {
        return Ok(None);
    };
    let authority = |cert: &str, key: &str| {
        Some(Authority {
            cert_pem: text(&private, cert)?,
            key_pem: text(&private, key)?,
        })
    };
    let Some(current) = authority(CA_CERT, CA_KEY) else {
        return Ok(None);
    };
    let public = secrets
        .get_opt(&ca_cert_secret_name(name, ca))
        .await?
        .and_then(|s| text(&s, CA_CERT));
    let published = public.is_some();
    let bundle = public.unwrap_or_else(|| current.cert_pem.clone());
    let state = CaState {
        next: authority(NEXT_CERT, NEXT_KEY),
        current,
        bundle,
    };
    Ok(Some((state, published)))
}

/// The cluster's two CAs, created or renewed as needed.
pub async fn cluster_cas(
    ctx: &Context,
    kafka: &KafkaCluster,
    cluster: &ValidCluster,
    owner: &OwnerReference,
) -> Result<ClusterCas, Error> {
    Ok(ClusterCas {
        cluster: trusted_ca(ctx, kafka, cluster, owner, "cluster").await?,
        clients: trusted_ca(ctx, kafka, cluster, owner, "clients").await?,
    })
}

/// The operator's TLS identity towards a cluster: a certificate from its cluster CA.
pub fn operator_tls(ca: &TrustedCa) -> Result<TlsClient, Error> {
    let subject = Subject {
        common_name: OPERATOR_COMMON_NAME.to_owned(),
        internal: true,
    };
    let issued = ca.authority.issue(&subject, &[], now())?;
    Ok(TlsClient::from_pem(
        &ca.bundle,
        Some((&issued.cert_pem, &issued.key_pem)),
    )?)
}

/// Writes the key store of every pod in `pods` (`(statefulset, ordinal)`), reusing each
/// stored one that is still good, and the CA bundles the nodes trust. A pod's certificate
/// names its DNS names and every `external` address.
pub async fn node_certificates(
    ctx: &Context,
    kafka: &KafkaCluster,
    cluster: &ValidCluster,
    owner: &OwnerReference,
    cas: &ClusterCas,
    pods: &BTreeSet<(String, i32)>,
    external: &BTreeSet<String>,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let name = cluster.node_certs_secret();
    let stored = secrets.get_opt(&name).await?;
    let subject = cluster.node_subject();
    let now = now();
    let mut data = BTreeMap::from([
        (CLUSTER_CA_KEY.to_owned(), cas.cluster.bundle.clone()),
        (CLIENTS_CA_KEY.to_owned(), cas.clients.bundle.clone()),
    ]);
    let mut reissued = Vec::new();
    for (statefulset, ordinal) in pods {
        let pod = format!("{statefulset}-{ordinal}");
        let key = format!("{pod}.pem");
        let mut names = cluster.pod_dns_names(statefulset, *ordinal);
        names.extend(external.iter().cloned());
        let old = stored.as_ref().and_then(|s| text(s, &key));
        let why = old
            .as_ref()
            .map(|pem| pki::reissue_reason(pem, &cas.cluster.authority, &subject, &names, now));
        let store = match (old, why) {
            (Some(pem), Some(None)) => pem,
            (_, why) => {
                if let Some(Some(reason)) = why {
                    reissued.push(format!("{pod} ({reason})"));
                }
                cas.cluster
                    .authority
                    .issue(&subject, &names, now)?
                    .key_store()
            }
        };
        data.insert(key, store);
    }
    if !reissued.is_empty() {
        let message = format!(
            "issued node certificates again: {}; nodes load them without a restart",
            reissued.join(", ")
        );
        tracing::info!(cluster = %cluster.name, "{message}");
        ctx.event(
            &kube::Resource::object_ref(kafka, &()),
            None,
            false,
            "CertificateRenewed",
            message,
        )
        .await;
    }
    let unchanged = stored
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .is_some_and(|old| {
            old.len() == data.len()
                && data
                    .iter()
                    .all(|(k, v)| old.get(k).is_some_and(|o| o.0 == v.as_bytes()))
        });
    if !unchanged {
        apply(&secrets, &name, &secret(cluster, &name, owner, data)).await?;
    }
    Ok(())
}

/// The clients CA of `cluster`, when the cluster is secured and the CA exists.
pub async fn clients_ca(ctx: &Context, cluster: &KafkaCluster) -> Result<Option<TrustedCa>, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    current_ca(&secrets, cluster, "clients").await
}

/// An admin connection to `cluster` as the operator: over mutual TLS on the replication
/// listener when the cluster is secured, else on its bootstrap listener.
pub async fn admin(ctx: &Context, cluster: &KafkaCluster) -> Result<Admin, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let name = cluster.name_any();
    let status = cluster.status.clone().unwrap_or_default();
    let host = bootstrap_host(&name, &namespace, &ctx.defaults.cluster_domain);
    if status.internal_tls != Some(true) {
        let bootstrap = status.bootstrap.unwrap_or_else(|| format!("{host}:9092"));
        return Ok(Admin::connect(&[bootstrap], ctx.admin_timeout, None).await?);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let ca = current_ca(&secrets, cluster, "cluster")
        .await?
        .ok_or_else(|| {
            Error::Missing(format!(
                "Secret {} with the cluster CA",
                ca_secret_name(&name, "cluster")
            ))
        })?;
    let tls = operator_tls(&ca)?;
    let address = format!("{host}:{REPLICATION_PORT}");
    Ok(Admin::connect(&[address], ctx.admin_timeout, Some(&tls)).await?)
}
