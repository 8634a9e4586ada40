//! Client quotas in the metadata image (KIP-546): rates per user, client id, both, or IP,
//! replicated through the metadata log like topic configs, so every broker enforces the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Kafka's entity type of a user principal.
pub const USER: &str = "user";
/// Kafka's entity type of a client id.
pub const CLIENT_ID: &str = "client-id";
/// Kafka's entity type of a client address.
pub const IP: &str = "ip";

/// Bytes a second a user or client may produce.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes a second a user or client may fetch.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percent of one request handler thread a user or client may keep busy.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Partitions a second a user or client may create or delete (KIP-599).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
/// Connections a second one address may open (KIP-612).
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The most quota changes one record may carry.
const MAX_CHANGES_PER_RECORD: usize = 10_000;

/// The longest entity name kept (Kafka's client ids and user names fit in a request string).
const MAX_ENTITY_NAME: usize = 32 * 1024;

/// How a quota's value must look: Kafka's config type of the key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaValueKind {
    /// A whole number (LONG or INT in Kafka's config definitions).
    Integral(f64),
    /// Any positive number.
    Double,
}

/// The keys an entity of these types may carry, with their value kinds; `None` when the
/// combination of types is not one Kafka allows.
pub fn keys_for(entity: &QuotaEntity) -> Option<&'static [(&'static str, QuotaValueKind)]> {
    const USER_CLIENT: &[(&str, QuotaValueKind)] = &[
        (
            PRODUCER_BYTE_RATE,
            QuotaValueKind::Integral(i64::MAX as f64),
        ),
        (
            CONSUMER_BYTE_RATE,
            QuotaValueKind::Integral(i64::MAX as f64),
        ),
        (REQUEST_PERCENTAGE, QuotaValueKind::Double),
        (CONTROLLER_MUTATION_RATE, QuotaValueKind::Double),
    ];
    const ADDRESS: &[(&str, QuotaValueKind)] = &[(
        CONNECTION_CREATION_RATE,
        QuotaValueKind::Integral(i32::MAX as f64),
    )];
    let has = |t: &str| entity.0.contains_key(t);
    match (has(IP), has(USER) || has(CLIENT_ID)) {
        (true, false) => Some(ADDRESS),
        (false, true) => Some(USER_CLIENT),
        _ => None,
    }
}

/// Why a quota value is refused, in Kafka's words; `None` when it is valid for `key`.
pub fn invalid_value(entity: &QuotaEntity, key: &str, value: f64) -> Option<String> {
    let kind = keys_for(entity)
        .and_then(|keys| keys.iter().find(|(k, _)| *k == key))
        .map(|(_, kind)| *kind);
    let Some(kind) = kind else {
        return Some(format!("Invalid configuration key {key}"));
    };
    if value.is_nan() || value <= 0.0 {
        return Some(format!("Quota {key} must be greater than 0"));
    }
    match kind {
        QuotaValueKind::Double if value.is_finite() => None,
        QuotaValueKind::Double => Some(format!("Quota {key} must be finite")),
        QuotaValueKind::Integral(max) if value > max => {
            Some(format!("Proposed value for {key} is too large"))
        }
        QuotaValueKind::Integral(_) if (value % 1.0).abs() > 1e-6 => {
            Some(format!("{key} cannot be a fractional value."))
        }
        QuotaValueKind::Integral(_) => None,
    }
}

/// Who a quota applies to: entity type to name, `None` naming the type's default entity
/// (Kafka's `<default>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity(pub BTreeMap<String, Option<String>>);

impl QuotaEntity {
    fn of(parts: &[(&str, Option<&str>)]) -> Self {
        QuotaEntity(
            parts
                .iter()
                .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
                .collect(),
        )
    }

    /// Why the entity cannot carry quotas, in Kafka's words; `None` when it can.
    pub fn invalid(&self) -> Option<String> {
        if self.0.is_empty() {
            return Some("Invalid empty client quota entity".into());
        }
        for (entity_type, name) in &self.0 {
            if ![USER, CLIENT_ID, IP].contains(&entity_type.as_str()) {
                return Some(format!("Unhandled client quota entity type: {entity_type}"));
            }
            match name {
                Some(name) if name.is_empty() => {
                    return Some(format!("Empty {entity_type} not supported"))
                }
                Some(name) if name.len() > MAX_ENTITY_NAME => {
                    return Some(format!("{entity_type} name of {} bytes", name.len()))
                }
                _ => {}
            }
        }
        if keys_for(self).is_none() {
            return Some(
                "Invalid quota entity combination, IP entity should not be combined with User \
                 or ClientId"
                    .into(),
            );
        }
        match self.0.get(IP) {
            Some(Some(ip)) if ip.parse::<std::net::IpAddr>().is_err() => {
                Some(format!("{ip} is not a valid IP or resolvable host."))
            }
            _ => None,
        }
    }
}

/// A quota value; compared by its bits so records stay `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One change of one quota: set (`Some`) or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaChange {
    /// Whom it applies to.
    pub entity: QuotaEntity,
    /// The quota's name, such as `producer_byte_rate`.
    pub key: String,
    /// The new value, or `None` to remove it.
    pub value: Option<QuotaValue>,
}

/// Every quota set, by entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotasImage {
    /// Quotas by entity, then key; an entity without quotas is not kept.
    #[serde(with = "entity_pairs")]
    pub entities: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
}

/// Whose sensor a request is measured by: Kafka's quota metric tags (user, client id), an
/// empty string for a part the matching quota does not name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaTags {
    /// The user part.
    pub user: String,
    /// The client id part.
    pub client_id: String,
}

/// Checks a quota record before it is committed and before it is applied.
pub fn validate_changes(changes: &[QuotaChange]) -> Result<(), String> {
    if changes.is_empty() || changes.len() > MAX_CHANGES_PER_RECORD {
        return Err(format!("{} quota changes in one record", changes.len()));
    }
    changes.iter().try_for_each(|c| {
        if let Some(reason) = c.entity.invalid() {
            return Err(reason);
        }
        match c.value {
            Some(QuotaValue(value)) => invalid_value(&c.entity, &c.key, value).map_or(Ok(()), Err),
            None => Ok(()),
        }
    })
}

impl ClientQuotasImage {
    /// Applies validated changes.
    pub fn apply(&mut self, changes: &[QuotaChange]) {
        for c in changes {
            match c.value {
                Some(value) => {
                    self.entities
                        .entry(c.entity.clone())
                        .or_default()
                        .insert(c.key.clone(), value);
                }
                None => {
                    if let Some(quotas) = self.entities.get_mut(&c.entity) {
                        quotas.remove(&c.key);
                        if quotas.is_empty() {
                            self.entities.remove(&c.entity);
                        }
                    }
                }
            }
        }
    }

    /// The `key` quota that applies to a user's client, in Kafka's order of precedence
    /// (user and client id, user, client id; a named entity before its default), with the
    /// tags of the sensor it is measured by: a quota on a user alone is shared by all its
    /// clients. `None` when no quota applies.
    pub fn lookup(&self, key: &str, user: &str, client_id: &str) -> Option<(f64, QuotaTags)> {
        if self.entities.is_empty() {
            return None;
        }
        let (u, c) = (Some(user), Some(client_id));
        // Each candidate with whether its sensor is per user and per client id.
        let candidates = [
            (QuotaEntity::of(&[(USER, u), (CLIENT_ID, c)]), true, true),
            (QuotaEntity::of(&[(USER, u), (CLIENT_ID, None)]), true, true),
            (QuotaEntity::of(&[(USER, u)]), true, false),
            (QuotaEntity::of(&[(USER, None), (CLIENT_ID, c)]), true, true),
            (
                QuotaEntity::of(&[(USER, None), (CLIENT_ID, None)]),
                true,
                true,
            ),
            (QuotaEntity::of(&[(USER, None)]), true, false),
            (QuotaEntity::of(&[(CLIENT_ID, c)]), false, true),
            (QuotaEntity::of(&[(CLIENT_ID, None)]), false, true),
        ];
        let (value, per_user, per_client) = candidates.iter().find_map(|(entity, pu, pc)| {
            let value = self.entities.get(entity)?.get(key)?;
            Some((value.0, *pu, *pc))
        })?;
        let tags = QuotaTags {
            user: if per_user { user.into() } else { String::new() },
            client_id: if per_client {
                client_id.into()
            } else {
                String::new()
            },
        };
        // As Kafka: a client with no id and no user part has no sensor to throttle.
        if tags.user.is_empty() && tags.client_id.is_empty() {
            return None;
        }
        Some((value, tags))
    }
}

impl ClientQuotasImage {
    /// The `connection_creation_rate` of an address: its own, else the default address
    /// quota (each address is measured on its own either way).
    pub fn lookup_address(&self, ip: &str) -> Option<f64> {
        if self.entities.is_empty() {
            return None;
        }
        [Some(ip), None].into_iter().find_map(|name| {
            let entity = QuotaEntity::of(&[(IP, name)]);
            self.entities
                .get(&entity)?
                .get(CONNECTION_CREATION_RATE)
                .map(|v| v.0)
        })
    }
}

/// JSON keys must be strings, so the entity map is kept as a list of pairs.
mod entity_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{QuotaEntity, QuotaValue};

    type Entities = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

    pub fn serialize<S: Serializer>(entities: &Entities, s: S) -> Result<S::Ok, S::Error> {
        entities.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Entities, D::Error> {
        Ok(
            Vec::<(QuotaEntity, BTreeMap<String, QuotaValue>)>::deserialize(d)?
                .into_iter()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(parts: &[(&str, Option<&str>)], key: &str, value: f64) -> QuotaChange {
        QuotaChange {
            entity: QuotaEntity::of(parts),
            key: key.into(),
            value: Some(QuotaValue(value)),
        }
    }

    #[test]
    fn the_most_specific_quota_applies_with_kafkas_sensor_tags() {
        let mut image = ClientQuotasImage::default();
        let changes = [
            set(&[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 100.0),
            set(&[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 200.0),
            set(
                &[(USER, Some("alice")), (CLIENT_ID, Some("etl"))],
                PRODUCER_BYTE_RATE,
                300.0,
            ),
        ];
        validate_changes(&changes).unwrap();
        image.apply(&changes);
        let tags = |u: &str, c: &str| QuotaTags {
            user: u.into(),
            client_id: c.into(),
        };
        assert_eq!(
            image.lookup(PRODUCER_BYTE_RATE, "alice", "etl"),
            Some((300.0, tags("alice", "etl")))
        );
        // A quota on the user alone is shared by all of the user's clients.
        assert_eq!(
            image.lookup(PRODUCER_BYTE_RATE, "alice", "other"),
            Some((200.0, tags("alice", "")))
        );
        // The default client quota gives each client id a sensor of its own.
        assert_eq!(
            image.lookup(PRODUCER_BYTE_RATE, "bob", "app"),
            Some((100.0, tags("", "app")))
        );
        assert_eq!(image.lookup(PRODUCER_BYTE_RATE, "bob", ""), None);
        assert_eq!(image.lookup(CONSUMER_BYTE_RATE, "alice", "etl"), None);
        image.apply(&[QuotaChange {
            value: None,
            ..changes[2].clone()
        }]);
        assert_eq!(
            image.lookup(PRODUCER_BYTE_RATE, "alice", "etl"),
            Some((200.0, tags("alice", "")))
        );
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(
            serde_json::from_str::<ClientQuotasImage>(&json).unwrap(),
            image
        );
    }

    #[test]
    fn invalid_entities_and_values_are_refused_in_kafkas_words() {
        let refused = |c: QuotaChange| validate_changes(&[c]).unwrap_err();
        assert_eq!(
            refused(set(&[], PRODUCER_BYTE_RATE, 1.0)),
            "Invalid empty client quota entity"
        );
        assert!(refused(set(
            &[(USER, Some("a")), (IP, None)],
            PRODUCER_BYTE_RATE,
            1.0
        ))
        .starts_with("Invalid quota entity combination"));
        assert_eq!(
            refused(set(&[(USER, Some("a"))], "bogus", 1.0)),
            "Invalid configuration key bogus"
        );
        assert_eq!(
            refused(set(&[(USER, Some("a"))], PRODUCER_BYTE_RATE, 1.5)),
            "producer_byte_rate cannot be a fractional value."
        );
        assert_eq!(
            refused(set(&[(USER, Some("a"))], REQUEST_PERCENTAGE, 0.0)),
            "Quota request_percentage must be greater than 0"
        );
        assert_eq!(
            refused(set(&[(USER, Some(""))], REQUEST_PERCENTAGE, 1.0)),
            "Empty user not supported"
        );
        assert!(
            refused(set(&[(IP, Some("nope"))], CONNECTION_CREATION_RATE, 1.0))
                .contains("not a valid IP")
        );
        validate_changes(&[set(&[(USER, Some("a"))], REQUEST_PERCENTAGE, 12.5)]).unwrap();
        validate_changes(&[set(&[(IP, None)], CONNECTION_CREATION_RATE, 10.0)]).unwrap();
    }
}
