//! Principals: `User:<name>` as Kafka writes them, the RFC 2253 subject of a client
//! certificate, and `ssl.principal.mapping.rules`.

use std::fmt;

use regex::Regex;
use x509_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Kafka's principal type; always `User` here.
    pub kind: String,
    /// The name: a SASL user name, a mapped certificate subject, or `ANONYMOUS`.
    pub name: String,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    /// Kafka's principal for unauthenticated connections.
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    /// Parses `Type:name` (ACL entries and `super.users` write principals this way).
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Principal {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Why a principal could not be taken from a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The certificate does not parse.
    #[error("cannot read the client certificate: {0}")]
    Certificate(String),
    /// No rule of `ssl.principal.mapping.rules` matched the subject.
    #[error("no rule of ssl.principal.mapping.rules matches {0}")]
    NoMatchingRule(String),
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC 2253):
/// the most specific RDN first, `CN=admin,O=Example`.
pub fn subject_dn(der: &[u8]) -> Result<String, PrincipalError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PrincipalError::Certificate(e.to_string()))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    // As Java: a keyword with its string value, else the OID with `#` and the
                    // hex of the value's DER encoding.
                    match (short_name(&oid), attr.as_str()) {
                        (Some(name), Ok(value)) => format!("{name}={}", escape(value)),
                        _ => {
                            let der = attr.attr_value().to_der_vec().unwrap_or_default();
                            format!("{oid}=#{}", hex(&der))
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The attribute keywords RFC 2253 names; others are written as dotted OIDs.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || edge_space
            || (i == 0 && c == '#')
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One rule of `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
enum Rule {
    /// The DN as it is.
    Default,
    /// `RULE:pattern/replacement/[LU]`: the first rule whose pattern matches the whole DN
    /// gives the name.
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Kafka's `ssl.principal.mapping.rules`: certificate subject to principal name.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses the property's value; the error says what is wrong with which rule.
    pub fn parse(rules: &str) -> Result<Self, String> {
        let mut parsed = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                parsed.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("rule `{rest}` has no `/` after its pattern"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("rule `{rest}` has no `/` after its replacement"))?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("pattern `{pattern}`: {e}"))?;
                parsed.push(Rule::Replace {
                    pattern,
                    replacement: java_replacement(&replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "`{rest}` is neither DEFAULT nor RULE:pattern/replacement/"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("expected `,` before `{rest}`")),
            }
        }
        if parsed.is_empty() {
            parsed.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The principal name for a certificate subject.
    pub fn map(&self, dn: &str) -> Result<String, PrincipalError> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let name = pattern.replace(dn, replacement.as_str()).into_owned();
                        return Ok(match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        });
                    }
                }
            }
        }
        Err(PrincipalError::NoMatchingRule(dn.to_string()))
    }
}

/// The text up to the next unescaped `/` (with `\/` unescaped), and what follows it.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if text[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &text[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

/// Java's `$1` group references as the regex crate writes them (`${1}`), so that `$1x` keeps
/// meaning group 1 followed by `x`.
fn java_replacement(replacement: &str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut group = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                group.push(*d);
                chars.next();
            }
            out.push_str(&format!("${{{group}}}"));
        } else if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_the_dn() {
        let m = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(m.map("CN=admin,O=Example").unwrap(), "CN=admin,O=Example");
    }

    #[test]
    fn rules_as_kafka_documents_them() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?).*$/$1@$2/L, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.map("CN=kafka-1,OU=ServiceUsers,O=Org").unwrap(),
            "kafka-1"
        );
        assert_eq!(
            m.map("CN=Duke,OU=JavaSoft,O=Sun Microsystems").unwrap(),
            "duke@javasoft"
        );
        assert_eq!(m.map("cn=bob").unwrap(), "BOB");
        assert_eq!(m.map("O=nothing").unwrap(), "O=nothing");
    }

    #[test]
    fn no_matching_rule_is_an_error() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/").unwrap();
        assert_eq!(m.map("CN=a").unwrap(), "a");
        assert!(m.map("O=x").is_err());
    }

    #[test]
    fn escaped_slashes_and_bad_rules() {
        let m = PrincipalMapper::parse(r"RULE:^CN=(.*)\/x$/$1\/y/").unwrap();
        assert_eq!(m.map("CN=a/x").unwrap(), "a/y");
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
        assert!(PrincipalMapper::parse("RULE:(/$1/").is_err());
    }

    #[test]
    fn principals_parse_and_print() {
        let p = Principal::parse("User:CN=admin,O=x").unwrap();
        assert_eq!(p.name, "CN=admin,O=x");
        assert_eq!(p.to_string(), "User:CN=admin,O=x");
        assert!(Principal::parse("admin").is_none());
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" a "), "\\ a\\ ");
        assert_eq!(escape("#a"), "\\#a");
    }
}
