//! The security part of the metadata image: SCRAM credentials and ACLs, replicated through
//! the metadata log like topics are, so every broker authenticates and authorizes alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::acl::AclBinding;
use crate::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

/// The most ACLs or credential changes one record may carry (one request's worth).
const MAX_PER_RECORD: usize = 10_000;

/// The longest user name a SCRAM credential may have.
const MAX_USER_NAME: usize = 1024;

/// Credentials and ACLs as of the last applied record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityImage {
    /// SCRAM credentials by user, then mechanism.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    /// ACLs by id.
    #[serde(default)]
    pub acls: BTreeMap<Uuid, AclBinding>,
    /// Whether start-up credentials (`--add-scram`) were applied; they are applied once per
    /// cluster, so a user deleted later stays deleted.
    #[serde(default)]
    pub seeded: bool,
}

/// One change to a user's SCRAM credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScramChange {
    /// Sets (or replaces) the credential for a mechanism.
    Upsert {
        /// The user name.
        user: String,
        /// The hash.
        mechanism: Mechanism,
        /// Salted and iterated: the password is never stored.
        credential: ScramCredential,
    },
    /// Removes the credential for a mechanism.
    Delete {
        /// The user name.
        user: String,
        /// The hash.
        mechanism: Mechanism,
    },
}

impl ScramChange {
    fn user(&self) -> &str {
        match self {
            ScramChange::Upsert { user, .. } | ScramChange::Delete { user, .. } => user,
        }
    }
}

/// A change to the security image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityRecord {
    /// SCRAM credential changes (AlterUserScramCredentials).
    Scram(Vec<ScramChange>),
    /// Start-up credentials (`--add-scram`): applied only by the first such record, and never
    /// over a credential the user already has.
    Seed(Vec<ScramChange>),
    /// New ACLs with their ids (CreateAcls).
    CreateAcls(Vec<(Uuid, AclBinding)>),
    /// ACLs removed by id (DeleteAcls).
    DeleteAcls(Vec<Uuid>),
}

impl SecurityRecord {
    /// Checks the record's shape before it is applied; a committed record that fails is
    /// skipped, never half-applied.
    pub fn validate(&self) -> Result<(), String> {
        let count = match self {
            SecurityRecord::Scram(changes) | SecurityRecord::Seed(changes) => changes.len(),
            SecurityRecord::CreateAcls(acls) => acls.len(),
            SecurityRecord::DeleteAcls(ids) => ids.len(),
        };
        if count > MAX_PER_RECORD {
            return Err(format!("{count} changes in one security record"));
        }
        match self {
            SecurityRecord::Scram(changes) | SecurityRecord::Seed(changes) => {
                changes.iter().try_for_each(|c| {
                    if c.user().is_empty() || c.user().len() > MAX_USER_NAME {
                        return Err(format!("SCRAM user name of {} bytes", c.user().len()));
                    }
                    match c {
                        ScramChange::Upsert {
                            mechanism,
                            credential,
                            ..
                        } => {
                            let len = mechanism.output_len();
                            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations)
                                || credential.stored_key.len() != len
                                || credential.server_key.len() != len
                                || credential.salt.is_empty()
                            {
                                return Err(format!("malformed SCRAM credential for {}", c.user()));
                            }
                            Ok(())
                        }
                        ScramChange::Delete { .. } => Ok(()),
                    }
                })
            }
            SecurityRecord::CreateAcls(acls) => acls
                .iter()
                .find_map(|(_, acl)| acl.invalid())
                .map_or(Ok(()), Err),
            SecurityRecord::DeleteAcls(_) => Ok(()),
        }
    }

    /// Applies a validated record.
    pub fn apply(&self, image: &mut SecurityImage) {
        match self {
            SecurityRecord::Seed(_) if image.seeded => {}
            SecurityRecord::Seed(changes) => {
                image.seeded = true;
                for change in changes {
                    if let ScramChange::Upsert {
                        user,
                        mechanism,
                        credential,
                    } = change
                    {
                        image
                            .scram
                            .entry(user.clone())
                            .or_default()
                            .entry(*mechanism)
                            .or_insert_with(|| credential.clone());
                    }
                }
            }
            SecurityRecord::Scram(changes) => {
                for change in changes {
                    match change {
                        ScramChange::Upsert {
                            user,
                            mechanism,
                            credential,
                        } => {
                            image
                                .scram
                                .entry(user.clone())
                                .or_default()
                                .insert(*mechanism, credential.clone());
                        }
                        ScramChange::Delete { user, mechanism } => {
                            if let Some(by_mechanism) = image.scram.get_mut(user) {
                                by_mechanism.remove(mechanism);
                                if by_mechanism.is_empty() {
                                    image.scram.remove(user);
                                }
                            }
                        }
                    }
                }
            }
            SecurityRecord::CreateAcls(acls) => {
                for (id, acl) in acls {
                    image.acls.insert(*id, acl.clone());
                }
            }
            SecurityRecord::DeleteAcls(ids) => {
                for id in ids {
                    image.acls.remove(id);
                }
            }
        }
    }
}

impl SecurityImage {
    /// A user's credential for a mechanism.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.scram.get(user)?.get(&mechanism).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(user: &str, password: &str) -> ScramChange {
        ScramChange::Upsert {
            user: user.into(),
            mechanism: Mechanism::Sha256,
            credential: ScramCredential::from_password(Mechanism::Sha256, password, 4096).unwrap(),
        }
    }

    #[test]
    fn seeds_apply_once_and_never_over_a_credential() {
        let mut image = SecurityImage::default();
        let admin = upsert("admin", "first");
        SecurityRecord::Scram(vec![upsert("bob", "bob")]).apply(&mut image);
        let seed = SecurityRecord::Seed(vec![admin.clone(), upsert("bob", "seeded")]);
        seed.validate().unwrap();
        seed.apply(&mut image);
        let ScramChange::Upsert { credential, .. } = &admin else {
            unreachable!()
        };
        assert_eq!(
            image.scram_credential("admin", Mechanism::Sha256),
            Some(credential.clone())
        );
        let bob = image.scram_credential("bob", Mechanism::Sha256).unwrap();
        // The admin deletes the seeded user; the seed of a later start does not bring it back.
        SecurityRecord::Scram(vec![ScramChange::Delete {
            user: "admin".into(),
            mechanism: Mechanism::Sha256,
        }])
        .apply(&mut image);
        seed.apply(&mut image);
        assert_eq!(image.scram_credential("admin", Mechanism::Sha256), None);
        assert_eq!(image.scram_credential("bob", Mechanism::Sha256), Some(bob));
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut bad = ScramCredential::from_password(Mechanism::Sha512, "p", 4096).unwrap();
        bad.iterations = 100;
        let record = SecurityRecord::Seed(vec![ScramChange::Upsert {
            user: "a".into(),
            mechanism: Mechanism::Sha512,
            credential: bad,
        }]);
        assert!(record.validate().is_err());
        assert!(SecurityRecord::Scram(vec![ScramChange::Delete {
            user: String::new(),
            mechanism: Mechanism::Sha256
        }])
        .validate()
        .is_err());
    }
}
