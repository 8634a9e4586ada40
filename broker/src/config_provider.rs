//! Kafka's configuration providers (KIP-297, KIP-887): a value may name part of itself as
//! `${provider:path:key}` (a key of a properties file) or `${provider:key}` (an environment
//! variable), for the providers `config.providers` declares. Kubernetes uses them to give one
//! pod template per-pod values, such as a broker's own external port.

use std::collections::BTreeMap;

use crate::config::{parse_properties, ConfigError};

/// Kafka's provider reading a key of a properties file.
const FILE_PROVIDER: &str = "org.apache.kafka.common.config.provider.FileConfigProvider";
/// Kafka's provider reading an environment variable.
const ENV_PROVIDER: &str = "org.apache.kafka.common.config.provider.EnvVarConfigProvider";

enum Provider {
    File,
    Env,
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Takes the `config.providers*` keys out of `raw` and replaces every variable of a declared
/// provider in the other values. A variable whose file, key or variable does not exist stops
/// start-up, naming the property.
pub fn resolve(
    raw: &mut BTreeMap<String, (String, String)>,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let declared = raw.remove("config.providers");
    let mut classes: BTreeMap<String, (String, String)> = BTreeMap::new();
    raw.retain(|key, value| match key.strip_prefix("config.providers.") {
        Some(rest) => {
            classes.insert(rest.to_owned(), value.clone());
            false
        }
        None => true,
    });
    let mut providers = BTreeMap::new();
    for name in declared
        .iter()
        .flat_map(|(names, _)| names.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let class_key = format!("{name}.class");
        let key = format!("config.providers.{class_key}");
        let (class, _) = classes
            .get(&class_key)
            .ok_or_else(|| invalid(&key, "", "a declared provider needs its class"))?;
        let provider = match class.as_str() {
            FILE_PROVIDER => Provider::File,
            ENV_PROVIDER => Provider::Env,
            other => {
                return Err(invalid(
                    &key,
                    other,
                    format!("the providers are {FILE_PROVIDER} and {ENV_PROVIDER}"),
                ))
            }
        };
        providers.insert(name.to_owned(), provider);
    }
    if providers.is_empty() {
        return Ok(());
    }
    let mut files: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (key, (value, _)) in raw.iter_mut() {
        *value = substitute(key, value, |provider, path, name| {
            match providers.get(provider)? {
                Provider::Env => Some(env.get(name).cloned().ok_or_else(|| {
                    invalid(
                        key,
                        value,
                        format!("environment variable {name} is not set"),
                    )
                })),
                Provider::File => Some(file_value(&mut files, key, value, path, name)),
            }
        })?;
    }
    Ok(())
}

fn file_value(
    files: &mut BTreeMap<String, BTreeMap<String, String>>,
    key: &str,
    value: &str,
    path: &str,
    name: &str,
) -> Result<String, ConfigError> {
    if !files.contains_key(path) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(key, value, format!("cannot read {path}: {e}")))?;
        files.insert(
            path.to_owned(),
            parse_properties(&text, path)?.into_iter().collect(),
        );
    }
    files[path]
        .get(name)
        .cloned()
        .ok_or_else(|| invalid(key, value, format!("{path} has no key {name}")))
}

/// `value` with each `${provider:[path:]key}` that `lookup` knows replaced; variables of
/// providers it does not know stay as they are, as in Kafka.
fn substitute(
    key: &str,
    value: &str,
    mut lookup: impl FnMut(&str, &str, &str) -> Option<Result<String, ConfigError>>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(invalid(key, value, "a `${` variable is not closed by `}`"));
        };
        let variable = &rest[start + 2..start + len];
        let parts: Vec<&str> = variable.splitn(3, ':').collect();
        let found = match parts[..] {
            [provider, name] => lookup(provider, "", name),
            [provider, path, name] => lookup(provider, path, name),
            _ => None,
        };
        match found {
            Some(resolved) => out.push_str(&resolved?),
            None => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.to_string(), "test".to_string())))
            .collect()
    }

    #[test]
    fn file_and_environment_variables_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ports = dir.path().join("ports.properties");
        std::fs::write(&ports, "demo-0.EXTERNAL=31234\n").unwrap();
        let mut values = raw(&[
            ("config.providers", "file,env"),
            ("config.providers.file.class", FILE_PROVIDER),
            ("config.providers.env.class", ENV_PROVIDER),
            (
                "advertised.listeners",
                &format!(
                    "EXTERNAL://${{env:HOST_IP}}:${{file:{}:demo-0.EXTERNAL}},OTHER://${{vault:x}}",
                    ports.display()
                ),
            ),
        ]);
        let env = BTreeMap::from([("HOST_IP".to_owned(), "10.0.0.7".to_owned())]);
        resolve(&mut values, &env).unwrap();
        assert_eq!(values.len(), 1, "the provider keys are consumed");
        assert_eq!(
            values["advertised.listeners"].0,
            "EXTERNAL://10.0.0.7:31234,OTHER://${vault:x}"
        );
    }

    #[test]
    fn a_missing_key_or_variable_stops_start_up() {
        let mut values = raw(&[
            ("config.providers", "env"),
            ("config.providers.env.class", ENV_PROVIDER),
            ("advertised.listeners", "EXTERNAL://${env:NOPE}:9094"),
        ]);
        let err = resolve(&mut values, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("NOPE is not set"), "{err}");
        let mut values = raw(&[
            ("config.providers", "file"),
            ("config.providers.file.class", "com.example.Vault"),
        ]);
        let err = resolve(&mut values, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("config.providers.file.class"),
            "{err}"
        );
    }

    #[test]
    fn without_declared_providers_values_stay() {
        let mut values = raw(&[("advertised.listeners", "X://${env:HOST_IP}:1")]);
        resolve(&mut values, &BTreeMap::new()).unwrap();
        assert_eq!(values["advertised.listeners"].0, "X://${env:HOST_IP}:1");
    }
}
