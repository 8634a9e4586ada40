//! The certificates of a secured cluster (pure): a certificate authority per trust domain,
//! certificates it issues, and when one must be issued again.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// Seconds in a day.
const DAY: i64 = 86_400;
/// Lifetime of a certificate authority.
pub const CA_VALIDITY_DAYS: i64 = 5 * 365;
/// A certificate authority is replaced when it has less than this left.
pub const CA_RENEWAL_DAYS: i64 = 180;
/// Lifetime of a node's or user's certificate.
pub const CERT_VALIDITY_DAYS: i64 = 365;
/// A certificate is issued again when it has less than this left.
pub const CERT_RENEWAL_DAYS: i64 = 30;
/// How long a new certificate authority is trusted before it signs: every pod's Secret volume
/// and every client has the week to take it up, so no certificate it signs meets a peer that
/// does not trust it yet.
pub const CA_HANDOVER_DAYS: i64 = 7;
/// Organization of the operator's own identities (nodes, the operator), so that no user
/// certificate (a common name alone) can carry the same principal.
pub const ORGANIZATION: &str = "strom.dev";

/// What issuing a certificate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or a stored key.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A stored certificate is not PEM X.509.
    #[error("stored certificate: {0}")]
    Parse(String),
}

/// A certificate authority: its certificate and private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The authority's own certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// Certificate then key in one PEM text, as a PEM key store file holds them.
    pub fn key_store(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// Who a certificate names: `CN=<common_name>`, with `O=strom.dev` for the operator's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Common name.
    pub common_name: String,
    /// Adds `O=strom.dev`.
    pub internal: bool,
}

impl Subject {
    /// The principal Kafka derives from this subject with the default mapping rules.
    pub fn principal(&self) -> String {
        if self.internal {
            format!("User:CN={},O={ORGANIZATION}", self.common_name)
        } else {
            format!("User:CN={}", self.common_name)
        }
    }

    fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        // Encoded most general first; RFC 2253 writes it back as `CN=...,O=...`.
        if self.internal {
            dn.push(DnType::OrganizationName, ORGANIZATION);
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::Parse(e.to_string()))
}

impl Authority {
    /// A new self-signed authority named `common_name`, valid from `now` (Unix seconds).
    pub fn generate(common_name: &str, now: i64) -> Result<Authority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = Subject {
            common_name: common_name.to_owned(),
            internal: true,
        }
        .distinguished_name();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(now - DAY)?;
        params.not_after = at(now + CA_VALIDITY_DAYS * DAY)?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for `subject` with `dns_names`, for servers and clients alike.
    pub fn issue(
        &self,
        subject: &Subject,
        dns_names: &[String],
        now: i64,
    ) -> Result<Issued, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, KeyPair::from_pem(&self.key_pem)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params.distinguished_name = subject.distinguished_name();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(now - DAY)?;
        params.not_after = at(now + CERT_VALIDITY_DAYS * DAY)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks an authority given by a user: its certificate is a CA's, its key is the
    /// certificate's (PKCS#8), and a certificate it issues names it as issuer and verifies
    /// against it (rcgen rebuilds the issuer name, and cannot for every name).
    pub fn check(&self, now: i64) -> Result<(), PkiError> {
        let unusable = |why: &str| Err(PkiError::Parse(why.to_owned()));
        if self.key_pem.contains("BEGIN RSA PRIVATE KEY")
            || self.key_pem.contains("BEGIN EC PRIVATE KEY")
        {
            return unusable(
                "the key is not PKCS#8; store it as PKCS#8 (cert-manager: privateKey.encoding: PKCS8)",
            );
        }
        let der = first_certificate(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        if !cert.is_ca() {
            return unusable("the certificate is not a CA's (no basicConstraints CA:true)");
        }
        let key = KeyPair::from_pem(&self.key_pem)?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return unusable("the private key does not belong to the certificate");
        }
        let probe = self.issue(
            &Subject {
                common_name: "probe".into(),
                internal: false,
            },
            &[],
            now,
        )?;
        let probe_der = first_certificate(&probe.cert_pem)?;
        let (_, issued) = x509_parser::parse_x509_certificate(&probe_der)
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        if issued.issuer().as_raw() != cert.subject().as_raw()
            || issued.verify_signature(Some(cert.public_key())).is_err()
        {
            return unusable(
                "certificates it issues do not verify against it (its subject name repeats an attribute type, or has several in one part)",
            );
        }
        Ok(())
    }

    /// Whether the authority itself is close enough to its end to be replaced.
    pub fn expiring(&self, now: i64) -> Result<bool, PkiError> {
        let der = first_certificate(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        Ok(cert.validity().not_after.timestamp() - now < CA_RENEWAL_DAYS * DAY)
    }
}

/// A certificate authority as stored: the one that signs, the one that will sign after the
/// handover, and the certificates peers trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaState {
    /// Signs certificates now.
    pub current: Authority,
    /// Trusted already, signs once the handover is over.
    pub next: Option<Authority>,
    /// PEM certificates to trust: the current and next authorities and earlier ones that have
    /// not expired.
    pub bundle: String,
}

/// What [`advance`] did to a certificate authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStep {
    /// Nothing.
    Kept,
    /// A first authority.
    Created,
    /// A successor, trusted from now on, that signs after the handover.
    NextPublished,
    /// The successor signs from now on; certificates it did not sign are issued again.
    Switched,
}

/// The next state of a certificate authority named `common_name`: created when absent; a
/// successor published in the bundle when it nears its end, and signing
/// [`CA_HANDOVER_DAYS`] later. Expired certificates leave the bundle.
pub fn advance(
    stored: Option<CaState>,
    common_name: &str,
    now: i64,
) -> Result<(CaState, CaStep), PkiError> {
    let Some(mut state) = stored else {
        let current = Authority::generate(common_name, now)?;
        let bundle = current.cert_pem.clone();
        let state = CaState {
            current,
            next: None,
            bundle,
        };
        return Ok((state, CaStep::Created));
    };
    let mut step = CaStep::Kept;
    match state.next.take() {
        Some(next) if now >= next.issued_at()? + CA_HANDOVER_DAYS * DAY => {
            state.current = next;
            step = CaStep::Switched;
        }
        Some(next) => state.next = Some(next),
        None if state.current.expiring(now)? => {
            state.next = Some(Authority::generate(common_name, now)?);
            step = CaStep::NextPublished;
        }
        None => {}
    }
    let mut bundle = vec![state.current.cert_pem.clone()];
    bundle.extend(state.next.iter().map(|n| n.cert_pem.clone()));
    for cert in certificates(&state.bundle) {
        if !bundle.contains(&cert) && not_after(&cert).is_ok_and(|end| end > now) {
            bundle.push(cert);
        }
    }
    state.bundle = bundle.concat();
    Ok((state, step))
}

impl Authority {
    /// When the authority was made: its validity starts a day earlier, against clock skew.
    fn issued_at(&self) -> Result<i64, PkiError> {
        let der = first_certificate(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        Ok(cert.validity().not_before.timestamp() + DAY)
    }
}

/// The certificates of a PEM bundle, each as its own PEM text.
fn certificates(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .filter(|part| part.ends_with(END))
        .map(|part| format!("{}\n", part.trim_start()))
        .collect()
}

fn not_after(pem: &str) -> Result<i64, PkiError> {
    let der = first_certificate(pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The first certificate of a PEM text (a chain starts with its own certificate), as PEM.
pub fn first_certificate_pem(pem_text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem_text.find(BEGIN)?;
    let end = start + pem_text[start..].find(END)? + END.len();
    Some(format!("{}\n", &pem_text[start..end]))
}

fn first_certificate(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    for pem in Pem::iter_from_buffer(pem_text.as_bytes()) {
        let pem = pem.map_err(|e| PkiError::Parse(e.to_string()))?;
        if pem.label == "CERTIFICATE" {
            return Ok(pem.contents);
        }
    }
    Err(PkiError::Parse("no CERTIFICATE block".into()))
}

/// Why a stored certificate must be issued again, or `None` when it can stay: it is signed
/// by `authority`, names `subject` and exactly `dns_names`, and has more than the renewal
/// window left.
pub fn reissue_reason(
    stored_pem: &str,
    authority: &Authority,
    subject: &Subject,
    dns_names: &[String],
    now: i64,
) -> Option<String> {
    let der = match first_certificate(stored_pem) {
        Ok(der) => der,
        Err(e) => return Some(e.to_string()),
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Some("the stored certificate does not parse".into());
    };
    let Ok(ca_der) = first_certificate(&authority.cert_pem) else {
        return Some("the authority's certificate does not parse".into());
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(&ca_der) else {
        return Some("the authority's certificate does not parse".into());
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("it is not signed by the current authority".into());
    }
    let left = cert.validity().not_after.timestamp() - now;
    if left < CERT_RENEWAL_DAYS * DAY {
        return Some(format!("it expires in {} days", left.max(0) / DAY));
    }
    let expected_subject = match subject.internal {
        true => format!("CN={}, O={ORGANIZATION}", subject.common_name),
        false => format!("CN={}", subject.common_name),
    };
    // x509-parser writes the subject most general first, joined by ", ".
    let mut written: Vec<String> = cert
        .subject()
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .filter_map(|attr| {
            let value = attr.as_str().ok()?;
            let name = match attr.attr_type().to_id_string().as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.10" => "O",
                _ => return None,
            };
            Some(format!("{name}={value}"))
        })
        .collect();
    written.reverse();
    if written.join(", ") != expected_subject {
        return Some("its subject changed".into());
    }
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                GeneralName::IPAddress(bytes) => ip_text(bytes),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    let mut wanted = dns_names.to_vec();
    wanted.sort();
    if names != wanted {
        return Some("its names changed".into());
    }
    None
}

/// An IP address SAN as text, as rcgen takes it.
fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn node() -> Subject {
        Subject {
            common_name: "demo-broker".into(),
            internal: true,
        }
    }

    #[test]
    fn an_issued_certificate_stays_until_its_renewal_window() {
        let ca = Authority::generate("demo-cluster-ca", NOW).unwrap();
        let names = vec!["demo-a-0.demo-nodes.ns.svc".to_owned()];
        let issued = ca.issue(&node(), &names, NOW).unwrap();
        assert_eq!(
            reissue_reason(&issued.key_store(), &ca, &node(), &names, NOW),
            None
        );
        let later = NOW + (CERT_VALIDITY_DAYS - CERT_RENEWAL_DAYS + 1) * DAY;
        let reason = reissue_reason(&issued.cert_pem, &ca, &node(), &names, later).unwrap();
        assert!(reason.contains("expires in 29 days"), "{reason}");
    }

    #[test]
    fn a_users_authority_must_be_a_ca_with_its_own_key() {
        let ca = Authority::generate("my-ca", NOW).unwrap();
        ca.check(NOW).unwrap();
        let other = Authority::generate("other-ca", NOW).unwrap();
        let mismatched = Authority {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        let refused = mismatched.check(NOW).unwrap_err().to_string();
        assert!(refused.contains("does not belong"), "{refused}");
        let leaf = ca.issue(&node(), &[], NOW).unwrap();
        let not_a_ca = Authority {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        };
        let refused = not_a_ca.check(NOW).unwrap_err().to_string();
        assert!(refused.contains("not a CA"), "{refused}");
        let pkcs1 = Authority {
            cert_pem: ca.cert_pem.clone(),
            key_pem: "-----BEGIN RSA PRIVATE KEY-----\n...".into(),
        };
        let refused = pkcs1.check(NOW).unwrap_err().to_string();
        assert!(refused.contains("PKCS#8"), "{refused}");
        let chain = format!("{}{}", ca.cert_pem, other.cert_pem);
        assert_eq!(
            first_certificate_pem(&chain).as_deref(),
            Some(ca.cert_pem.as_str())
        );
    }

    #[test]
    fn another_authority_other_names_or_subject_reissue() {
        let ca = Authority::generate("demo-cluster-ca", NOW).unwrap();
        let other = Authority::generate("demo-cluster-ca", NOW).unwrap();
        let names = vec!["a.example".to_owned(), "10.0.0.7".to_owned()];
        let issued = ca.issue(&node(), &names, NOW).unwrap();
        let reason = reissue_reason(&issued.cert_pem, &other, &node(), &names, NOW).unwrap();
        assert!(reason.contains("not signed"), "{reason}");
        let fewer = vec!["a.example".to_owned()];
        assert_eq!(
            reissue_reason(&issued.cert_pem, &ca, &node(), &fewer, NOW).as_deref(),
            Some("its names changed")
        );
        let user = Subject {
            common_name: "demo-broker".into(),
            internal: false,
        };
        assert_eq!(
            reissue_reason(&issued.cert_pem, &ca, &user, &names, NOW).as_deref(),
            Some("its subject changed")
        );
        assert!(reissue_reason("garbage", &ca, &node(), &names, NOW).is_some());
    }

    #[test]
    fn an_authority_is_replaced_near_its_end() {
        let ca = Authority::generate("demo-clients-ca", NOW).unwrap();
        assert!(!ca.expiring(NOW).unwrap());
        let late = NOW + (CA_VALIDITY_DAYS - CA_RENEWAL_DAYS + 1) * DAY;
        assert!(ca.expiring(late).unwrap());
    }

    #[test]
    fn a_successor_is_trusted_for_the_handover_before_it_signs() {
        let (first, step) = advance(None, "demo-cluster-ca", NOW).unwrap();
        assert_eq!(step, CaStep::Created);
        assert_eq!(
            advance(Some(first.clone()), "demo-cluster-ca", NOW)
                .unwrap()
                .1,
            CaStep::Kept
        );

        let renewal = NOW + (CA_VALIDITY_DAYS - CA_RENEWAL_DAYS + 1) * DAY;
        let (published, step) = advance(Some(first.clone()), "demo-cluster-ca", renewal).unwrap();
        assert_eq!(step, CaStep::NextPublished);
        assert_eq!(
            published.current, first.current,
            "the old authority still signs"
        );
        let next = published.next.clone().unwrap();
        assert_eq!(certificates(&published.bundle).len(), 2);
        assert!(published.bundle.contains(&next.cert_pem));

        let early = renewal + (CA_HANDOVER_DAYS - 1) * DAY;
        let (waiting, step) = advance(Some(published.clone()), "demo-cluster-ca", early).unwrap();
        assert_eq!(step, CaStep::Kept);
        assert_eq!(waiting, published);

        let later = renewal + CA_HANDOVER_DAYS * DAY;
        let (switched, step) = advance(Some(published), "demo-cluster-ca", later).unwrap();
        assert_eq!(step, CaStep::Switched);
        assert_eq!(switched.current, next);
        assert_eq!(switched.next, None);
        assert!(switched.bundle.starts_with(&next.cert_pem));
        assert!(
            switched.bundle.contains(&first.current.cert_pem),
            "the old one until it expires"
        );

        let expired = NOW + (CA_VALIDITY_DAYS + 1) * DAY;
        let (pruned, _) = advance(Some(switched), "demo-cluster-ca", expired).unwrap();
        assert!(!pruned.bundle.contains(&first.current.cert_pem));
    }

    #[test]
    fn principals_follow_the_default_mapping() {
        assert_eq!(node().principal(), "User:CN=demo-broker,O=strom.dev");
        let user = Subject {
            common_name: "alice".into(),
            internal: false,
        };
        assert_eq!(user.principal(), "User:CN=alice");
    }
}
