//! The identity of a log directory, in Kafka's `meta.properties`: the cluster and node it
//! belongs to and its own directory id. It is written at first start; a node refuses a
//! directory stamped for another node or cluster, so a changed `node.id` or a wiped metadata
//! log can never make a broker treat someone else's partitions as its own and delete them.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::write_file_atomic;
use crate::config::parse_properties;

/// The file name Kafka uses.
pub const META_PROPERTIES: &str = "meta.properties";

/// Why a directory cannot be used by this node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Stamped for another node id.
    #[error("{dir} belongs to node.id {found}, but this node is node.id {configured}; refusing to start on another node's data")]
    OtherNode {
        dir: PathBuf,
        found: i32,
        configured: i32,
    },
    /// Stamped for another cluster.
    #[error("{dir} belongs to cluster {found}, but the metadata quorum is cluster {current}; refusing to start on another cluster's data (was the metadata log wiped?)")]
    OtherCluster {
        dir: PathBuf,
        found: String,
        current: String,
    },
    /// The file exists but does not say what it must.
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What a directory's `meta.properties` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// The cluster id.
    pub cluster_id: String,
    /// The node the directory belongs to.
    pub node_id: i32,
    /// This directory's id (KIP-858), a base64 UUID as Kafka writes it.
    pub directory_id: String,
}

fn read(dir: &Path) -> Result<Option<MetaProperties>, IdentityError> {
    let path = dir.join(META_PROPERTIES);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let malformed = |reason: &str| IdentityError::Malformed {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let fields: BTreeMap<String, String> = parse_properties(&text, &path.display().to_string())
        .map_err(|e| malformed(&e.to_string()))?
        .into_iter()
        .collect();
    let field = |key: &str| {
        fields
            .get(key)
            .cloned()
            .ok_or_else(|| malformed(&format!("no {key}")))
    };
    if field("version")? != "1" {
        return Err(malformed("only version 1 is understood"));
    }
    Ok(Some(MetaProperties {
        cluster_id: field("cluster.id")?,
        node_id: field("node.id")?
            .parse()
            .map_err(|_| malformed("node.id is not a number"))?,
        directory_id: field("directory.id")?,
    }))
}

/// Refuses a directory stamped for another node; run before the node touches it.
pub fn check_node(dir: &Path, node_id: i32) -> Result<(), IdentityError> {
    match read(dir)? {
        Some(meta) if meta.node_id != node_id => Err(IdentityError::OtherNode {
            dir: dir.to_path_buf(),
            found: meta.node_id,
            configured: node_id,
        }),
        _ => Ok(()),
    }
}

/// Once the cluster id is known: refuses a directory of another cluster, and stamps one
/// that has no identity yet. Returns the directory's identity.
pub fn check_or_stamp(
    dir: &Path,
    node_id: i32,
    cluster_id: &str,
) -> Result<MetaProperties, IdentityError> {
    check_node(dir, node_id)?;
    if let Some(meta) = read(dir)? {
        if meta.cluster_id != cluster_id {
            return Err(IdentityError::OtherCluster {
                dir: dir.to_path_buf(),
                found: meta.cluster_id,
                current: cluster_id.to_string(),
            });
        }
        return Ok(meta);
    }
    let meta = MetaProperties {
        cluster_id: cluster_id.to_string(),
        node_id,
        directory_id: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes()),
    };
    let text = format!(
        "#\n# Written by strom-broker at first start; a node refuses a directory of another node or cluster.\ncluster.id={}\ndirectory.id={}\nnode.id={}\nversion=1\n",
        meta.cluster_id, meta.directory_id, meta.node_id
    );
    let path = dir.join(META_PROPERTIES);
    write_file_atomic(&path, text.as_bytes())
        .map_err(|source| IdentityError::Io { path, source })?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_stamped_once_and_refused_to_others() {
        let dir = tempfile::tempdir().unwrap();
        check_node(dir.path(), 1).unwrap();
        let meta = check_or_stamp(dir.path(), 1, "cluster-a").unwrap();
        assert_eq!(meta.directory_id.len(), 22);
        assert_eq!(check_or_stamp(dir.path(), 1, "cluster-a").unwrap(), meta);
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES)).unwrap();
        assert!(text.contains("cluster.id=cluster-a\n") && text.contains("node.id=1\n"));
        assert!(text.contains("version=1\n"));
        let e = check_node(dir.path(), 2).unwrap_err().to_string();
        assert!(e.contains("node.id 1") && e.contains("node.id 2"), "{e}");
        let e = check_or_stamp(dir.path(), 1, "cluster-b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster-a") && e.contains("cluster-b"), "{e}");
        std::fs::write(dir.path().join(META_PROPERTIES), "node.id=x\n").unwrap();
        assert!(matches!(
            check_node(dir.path(), 1),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
