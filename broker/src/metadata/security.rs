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
    /// SCRAM credential changes (AlterUserScramCredentials, or a start-up seed).
    Scram(Vec<ScramChange>),
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
            SecurityRecord::Scram(changes) => changes.len(),
            SecurityRecord::CreateAcls(acls) => acls.len(),
            SecurityRecord::DeleteAcls(ids) => ids.len(),
        };
        if count > MAX_PER_RECORD {
            return Err(format!("{count} changes in one security record"));
        }
        match self {
            SecurityRecord::Scram(changes) => changes.iter().try_for_each(|c| {
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
            }),
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
