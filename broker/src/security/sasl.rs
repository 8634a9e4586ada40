//! The server side of SASL: the PLAIN and SCRAM mechanisms, and Kafka's JAAS lines that
//! carry PLAIN users (`user_<name>="<password>"`) and a broker's own credentials.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::scram::{Mechanism, ScramCredential, ScramServer, Step};

/// The options of one JAAS line: `<LoginModule> required key="value" ...;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JaasConfig {
    /// The login module's class name.
    pub module: String,
    /// Its options, in the order given.
    pub options: BTreeMap<String, String>,
}

impl JaasConfig {
    /// Parses a JAAS line as Kafka's `sasl.jaas.config` holds it.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim().trim_end_matches(';').trim();
        let (module, rest) = line
            .split_once(char::is_whitespace)
            .ok_or("expected `<LoginModule> required key=\"value\" ...;`")?;
        let rest = rest.trim_start();
        let rest = ["required", "requisite", "sufficient", "optional"]
            .iter()
            .find_map(|flag| rest.strip_prefix(flag))
            .ok_or("expected a control flag (`required`) after the login module")?;
        let mut options = BTreeMap::new();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once('=')
                .ok_or_else(|| format!("expected key=\"value\" at `{rest}`"))?;
            let after = after.trim_start();
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted
                        .find('"')
                        .ok_or_else(|| format!("unterminated quote after `{}`", key.trim()))?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
            };
            options.insert(key.trim().to_string(), value.to_string());
            rest = after.trim_start();
        }
        Ok(JaasConfig {
            module: module.to_string(),
            options,
        })
    }

    /// The PLAIN users a broker accepts: `user_<name>="<password>"`.
    pub fn plain_users(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v.clone())))
            .collect()
    }
}

/// One authentication in progress on a connection.
#[derive(Debug)]
pub enum Authenticator {
    /// PLAIN: one message, `authzid NUL user NUL password`.
    Plain,
    /// SCRAM: client-first, then client-final (boxed: most connections never run it).
    Scram(Box<ScramServer>),
}

impl Authenticator {
    /// The authenticator for a mechanism name, if it is one Strom implements.
    pub fn new(mechanism: &str) -> Option<Self> {
        match mechanism {
            "PLAIN" => Some(Authenticator::Plain),
            other => Mechanism::from_name(other)
                .map(|m| Authenticator::Scram(Box::new(ScramServer::new(m)))),
        }
    }

    /// Takes one client token. `plain_users` are the listener's PLAIN users; `scram` looks up
    /// a stored credential. An error is the message of Kafka's SASL_AUTHENTICATION_FAILED.
    pub fn step(
        &mut self,
        token: &[u8],
        plain_users: &BTreeMap<String, String>,
        scram: impl FnOnce(&str, Mechanism) -> Option<ScramCredential>,
    ) -> Result<Step, String> {
        match self {
            Authenticator::Plain => plain(token, plain_users),
            Authenticator::Scram(server) => {
                let mechanism = server.mechanism();
                server.step(token, |user| scram(user, mechanism))
            }
        }
    }
}

fn plain(token: &[u8], users: &BTreeMap<String, String>) -> Result<Step, String> {
    let failed = || "Authentication failed: Invalid username or password".to_string();
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid SASL/PLAIN response: expected 3 tokens".into());
    };
    let user = std::str::from_utf8(user).map_err(|_| failed())?;
    if user.is_empty() {
        return Err("Authentication failed: username not specified".into());
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err("Authentication failed: Client requested an authorization id that is different from username".into());
    }
    let expected = users.get(user).ok_or_else(failed)?;
    if !bool::from(expected.as_bytes().ct_eq(password)) {
        return Err(failed());
    }
    Ok(Step::Complete {
        user: user.to_string(),
        reply: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_as_kafka_writes_them() {
        let jaas = JaasConfig::parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a b;c";"#,
        )
        .unwrap();
        assert_eq!(
            jaas.module,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        assert_eq!(jaas.options["username"], "admin");
        let users = jaas.plain_users();
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], "a b;c");
        assert!(JaasConfig::parse("Module").is_err());
        assert!(JaasConfig::parse("Module required a=\"unterminated").is_err());
        assert!(JaasConfig::parse("Module maybe a=\"b\";").is_err());
    }

    #[test]
    fn plain_checks_user_and_password() {
        let users = BTreeMap::from([("alice".to_string(), "secret".to_string())]);
        let none = |_: &str, _| None;
        let mut a = Authenticator::new("PLAIN").unwrap();
        assert!(matches!(
            a.step(b"\0alice\0secret", &users, none),
            Ok(Step::Complete { user, .. }) if user == "alice"
        ));
        assert!(a.step(b"alice\0alice\0secret", &users, none).is_ok());
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0secret",
            b"bob\0alice\0secret",
            b"\0alice",
            b"\0\0x",
            b"a\0b\0c\0d",
        ] {
            assert!(a.step(bad, &users, none).is_err(), "{bad:?}");
        }
        assert!(Authenticator::new("GSSAPI").is_none());
    }
}
