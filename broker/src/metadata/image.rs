//! The metadata image (what every broker serves Metadata from) and the records that change it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::quotas::{ClientQuotasImage, QuotaChange};
pub use super::security::{ScramChange, SecurityImage, SecurityRecord};

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// A broker as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// `node.id`.
    pub id: i32,
    /// Advertised host of the client listener.
    pub host: String,
    /// Advertised port of the client listener.
    pub port: u16,
    /// Rack, if configured.
    pub rack: Option<String>,
    /// Changes every time the process starts, so a restart is told from a retry.
    #[serde(default)]
    pub incarnation: Uuid,
    /// A fenced broker leads nothing and is in no ISR it could shrink to; it is unfenced
    /// once it heartbeats with metadata caught up to its registration.
    #[serde(default)]
    pub fenced: bool,
    /// The metadata offset of the registration record, which the broker must have applied
    /// before it is unfenced.
    #[serde(default)]
    pub registered_at: u64,
    /// Every advertised listener (registrations written before there were several hold only
    /// `host` and `port`).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Fenced because it stopped heartbeating, rather than at its own shutdown or because its
    /// listeners refused connections: it may still hold client connections without answering.
    #[serde(default)]
    pub unresponsive: bool,
}

impl BrokerRegistration {
    /// The address clients of `listener` use: that listener's endpoint, else the primary one.
    pub fn endpoint(&self, listener: &str) -> (&str, u16) {
        self.endpoints
            .iter()
            .find(|e| e.name == listener)
            .map_or((self.host.as_str(), self.port), |e| {
                (e.host.as_str(), e.port)
            })
    }
}

/// One partition's replica assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Replica broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader (-1 when none).
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of leader or ISR, so stale AlterPartition requests are refused.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment (KIP-455); they are in `replicas` already.
    #[serde(default)]
    pub adding: Vec<i32>,
    /// Replicas a reassignment removes once every added replica is in the ISR.
    #[serde(default)]
    pub removing: Vec<i32>,
}

/// Which leader ElectLeaders picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionKind {
    /// The first replica, when it is live and in the ISR.
    Preferred,
    /// Any live replica, even out of the ISR, when the partition has no leader.
    Unclean,
}

impl PartitionImage {
    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// Ends a reassignment on `replicas`: the ISR keeps its members among them, and a leader
    /// outside them hands over to the first live one in the ISR.
    fn finish_reassignment(&mut self, replicas: Vec<i32>, live: &[i32]) {
        self.replicas = replicas;
        self.adding.clear();
        self.removing.clear();
        let kept: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| self.replicas.contains(r))
            .collect();
        if !kept.is_empty() {
            self.isr = kept;
        }
        self.partition_epoch += 1;
        if !self.replicas.contains(&self.leader) {
            let next = self
                .replicas
                .iter()
                .copied()
                .find(|r| self.isr.contains(r) && live.contains(r))
                .unwrap_or(-1);
            self.set_leader(next);
        }
    }

    fn set_leader(&mut self, leader: i32) {
        if self.leader != leader {
            self.leader = leader;
            self.leader_epoch += 1;
            self.partition_epoch += 1;
        }
    }
}

/// Refuses a reassignment (or its cancellation) that would leave none of the partition's
/// in-sync replicas among its replicas: the data would then live only on brokers that are no
/// longer replicas, and the next leader would be elected from replicas that never caught up.
fn keeps_an_in_sync_replica(
    p: &PartitionImage,
    replicas: &[i32],
    topic: &str,
    partition: i32,
) -> Result<(), String> {
    if p.isr.iter().any(|r| replicas.contains(r)) {
        return Ok(());
    }
    Err(format!(
        "INVALID_REPLICA_ASSIGNMENT: none of the in-sync replicas {:?} of {topic}-{partition} \
         would remain among the replicas {replicas:?}; wait for the replicas being added to \
         catch up",
        p.isr
    ))
}

/// A topic: id, partitions and config overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<PartitionImage>,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
    /// The metadata log offset of the last record that changed this topic (0 when unknown,
    /// in an image written before it was kept): a broker applies the topics changed since
    /// the image it applied last, not all of them.
    #[serde(default)]
    pub changed_at: u64,
}

/// The whole cluster metadata state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The cluster id, fixed by the first record.
    pub cluster_id: String,
    /// Registered brokers.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name; an image shares each topic it did not change with the images
    /// published before it, so publishing an image costs a pointer per topic.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// The first producer id not yet handed out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The metadata log offset of the last record applied to this image.
    #[serde(default)]
    pub applied_index: u64,
    /// The metadata log offset of the last topic deletion.
    #[serde(default)]
    pub topic_deleted_at: u64,
    /// Committed records that were invalid and skipped instead of applied.
    #[serde(default)]
    pub invalid_records_skipped: u64,
    /// SCRAM credentials and ACLs.
    #[serde(default)]
    pub security: SecurityImage,
    /// Client quotas.
    #[serde(default)]
    pub client_quotas: ClientQuotasImage,
}

/// A change to the metadata image; the Raft log is a sequence of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Fixes the cluster id; ignored once set.
    InitCluster { cluster_id: String },
    /// A broker (re-)registers with its listener.
    RegisterBroker(BrokerRegistration),
    /// A new topic with its replica assignment per partition.
    CreateTopic {
        name: String,
        id: Uuid,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    /// Removes a topic.
    DeleteTopic { name: String },
    /// Adds partitions to a topic.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
        /// The partition count the new partitions follow; the record is refused when the topic
        /// has another count by then (a concurrent request added partitions first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<usize>,
    },
    /// Reserves a block of producer ids; the block starts at the previous `next_producer_id`.
    AllocateProducerIds { count: i64 },
    /// Sets and removes topic config overrides.
    AlterTopicConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// The broker missed its heartbeats or is shutting down: it loses leadership and leaves
    /// every ISR it is not the last member of.
    FenceBroker {
        id: i32,
        /// It stopped heartbeating (see [`BrokerRegistration::unresponsive`]).
        #[serde(default)]
        unresponsive: bool,
    },
    /// The broker caught up after registering: it may lead again.
    UnfenceBroker { id: i32 },
    /// A partition leader changes its ISR (Kafka's AlterPartition); refused when the leader
    /// or the epochs it saw are stale.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// A partition leader changes the ISRs of many partitions in one record. Each change is
    /// checked as [`MetadataRecord::AlterPartition`] is; with `independent`, a refused change
    /// leaves the others to apply (as Kafka's AlterPartition answers each partition),
    /// otherwise (records written before the field) none applies when any one is refused.
    AlterPartitions {
        leader: i32,
        changes: Vec<IsrChange>,
        #[serde(default)]
        independent: bool,
    },
    /// Elects a leader for one partition (written before [`MetadataRecord::ElectLeaders`]).
    ElectLeader {
        topic: String,
        partition: i32,
        kind: ElectionKind,
    },
    /// Elects leaders for many partitions in one record (ElectLeaders, automatic
    /// preferred-leader balancing): each partition whose election is still possible when the
    /// record applies is elected, the others are left as they are.
    ElectLeaders {
        kind: ElectionKind,
        partitions: Vec<(String, i32)>,
    },
    /// Starts moving a partition to `target` replicas, or cancels a move (`None`).
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Changes SCRAM credentials or ACLs.
    Security(SecurityRecord),
    /// Sets and removes client quotas (AlterClientQuotas).
    ClientQuotas(Vec<QuotaChange>),
}

/// One partition's ISR change in [`MetadataRecord::AlterPartitions`], with the epochs the
/// leader saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// What applying a record produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// A value for the proposer (the start of an allocated producer id block, the number of
    /// partitions elected).
    pub value: Option<i64>,
    /// The changes of an [`MetadataRecord::AlterPartitions`] refused, by index.
    pub refused: Vec<u32>,
}

impl Applied {
    fn value(value: i64) -> Self {
        Applied {
            value: Some(value),
            refused: Vec::new(),
        }
    }
}

/// The most partitions one record may create (what one request may add), or change the ISR
/// of.
pub const MAX_PARTITIONS_PER_RECORD: usize = 10_000;

/// The largest block of producer ids one record may reserve.
const MAX_PRODUCER_ID_BLOCK: i64 = 1 << 20;

/// Checks replica lists: each non-empty, without duplicates or negative ids.
fn check_replicas(list: &[i32], what: &str) -> Result<(), String> {
    if list.is_empty() {
        return Err(format!("{what}: empty replica list"));
    }
    if list.iter().any(|r| *r < 0) {
        return Err(format!("{what}: negative broker id in {list:?}"));
    }
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != list.len() {
        return Err(format!("{what}: duplicate broker id in {list:?}"));
    }
    Ok(())
}

fn check_assignments(assignments: &[Vec<i32>], what: &str) -> Result<(), String> {
    if assignments.is_empty() || assignments.len() > MAX_PARTITIONS_PER_RECORD {
        return Err(format!(
            "{what}: {} partitions, not 1 to {MAX_PARTITIONS_PER_RECORD}",
            assignments.len()
        ));
    }
    for replicas in assignments {
        check_replicas(replicas, what)?;
    }
    Ok(())
}

impl MetadataRecord {
    /// Checks what a record says on its own, before it is committed and again before it is
    /// applied: a record that fails cannot be applied on any node.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            MetadataRecord::InitCluster { cluster_id } if cluster_id.is_empty() => {
                Err("InitCluster: empty cluster id".into())
            }
            MetadataRecord::Security(record) => record.validate(),
            MetadataRecord::ClientQuotas(changes) => super::quotas::validate_changes(changes),
            MetadataRecord::RegisterBroker(b) if b.id < 0 => {
                Err(format!("RegisterBroker: negative id {}", b.id))
            }
            MetadataRecord::CreateTopic {
                name, assignments, ..
            } => {
                if name.is_empty() {
                    return Err("CreateTopic: empty name".into());
                }
                check_assignments(assignments, "CreateTopic")
            }
            MetadataRecord::CreatePartitions { assignments, .. } => {
                check_assignments(assignments, "CreatePartitions")
            }
            MetadataRecord::AllocateProducerIds { count }
                if *count < 1 || *count > MAX_PRODUCER_ID_BLOCK =>
            {
                Err(format!("AllocateProducerIds: count {count}"))
            }
            MetadataRecord::AlterPartition { partition, isr, .. } => {
                if *partition < 0 {
                    return Err(format!("AlterPartition: partition {partition}"));
                }
                check_replicas(isr, "AlterPartition")
            }
            MetadataRecord::AlterPartitions { changes, .. } => {
                if changes.is_empty() || changes.len() > MAX_PARTITIONS_PER_RECORD {
                    return Err(format!(
                        "AlterPartitions: {} changes, not 1 to {MAX_PARTITIONS_PER_RECORD}",
                        changes.len()
                    ));
                }
                let mut seen = BTreeSet::new();
                for c in changes {
                    if c.partition < 0 || !seen.insert((c.topic.as_str(), c.partition)) {
                        return Err(format!(
                            "AlterPartitions: partition {}-{} negative or repeated",
                            c.topic, c.partition
                        ));
                    }
                    check_replicas(&c.isr, "AlterPartitions")?;
                }
                Ok(())
            }
            MetadataRecord::ElectLeader { partition, .. } if *partition < 0 => {
                Err(format!("ElectLeader: partition {partition}"))
            }
            MetadataRecord::ElectLeaders { partitions, .. } => {
                match partitions.iter().find(|(_, p)| *p < 0) {
                    Some((topic, p)) => Err(format!("ElectLeaders: partition {topic}-{p}")),
                    None => Ok(()),
                }
            }
            MetadataRecord::Reassign {
                partition, target, ..
            } => {
                if *partition < 0 {
                    return Err(format!("Reassign: partition {partition}"));
                }
                match target {
                    Some(target) => check_replicas(target, "Reassign"),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

impl MetadataImage {
    /// Applies one record, and marks what it changed with `applied_index` (see
    /// [`TopicImage::changed_at`]). Errors leave the image unchanged and are reported to the
    /// proposer; the same record gives the same result on every node.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<Applied, String> {
        let applied = self.apply_record(record)?;
        self.mark_changed(record);
        Ok(applied)
    }

    /// The topics (or the deletion) `record` changed get `applied_index`. Records about
    /// brokers mark the topics whose leaders or ISRs they moved as they move them (see
    /// [`Self::partitions_mut_where`]).
    fn mark_changed(&mut self, record: &MetadataRecord) {
        let at = self.applied_index;
        let topics = &mut self.topics;
        let mut mark = |name: &str| {
            if let Some(t) = topics.get_mut(name) {
                Arc::make_mut(t).changed_at = at;
            }
        };
        match record {
            MetadataRecord::CreateTopic { name, .. }
            | MetadataRecord::CreatePartitions { name, .. }
            | MetadataRecord::AlterTopicConfigs { name, .. } => mark(name),
            MetadataRecord::AlterPartition { topic, .. }
            | MetadataRecord::ElectLeader { topic, .. }
            | MetadataRecord::Reassign { topic, .. } => mark(topic),
            MetadataRecord::AlterPartitions { changes, .. } => {
                for c in changes {
                    mark(&c.topic);
                }
            }
            MetadataRecord::ElectLeaders { partitions, .. } => {
                for (topic, _) in partitions {
                    mark(topic);
                }
            }
            MetadataRecord::DeleteTopic { .. } => self.topic_deleted_at = at,
            MetadataRecord::RegisterBroker(_)
            | MetadataRecord::FenceBroker { .. }
            | MetadataRecord::UnfenceBroker { .. }
            | MetadataRecord::InitCluster { .. }
            | MetadataRecord::AllocateProducerIds { .. }
            | MetadataRecord::Security(_)
            | MetadataRecord::ClientQuotas(_) => {}
        }
    }

    /// Marks what an image written before changes were kept (a snapshot from an older
    /// version) may have changed as changed at its own offset, so a broker that applied an
    /// earlier image looks at all of it.
    pub fn stamp_unknown_changes(&mut self) {
        let at = self.applied_index;
        for t in self.topics.values_mut().filter(|t| t.changed_at == 0) {
            Arc::make_mut(t).changed_at = at;
        }
        if self.topic_deleted_at == 0 {
            self.topic_deleted_at = at;
        }
    }

    /// The topics changed after the image at metadata offset `since`; every topic when
    /// `since` is `None` (nothing applied yet).
    pub fn topics_changed_since(
        &self,
        since: Option<u64>,
    ) -> impl Iterator<Item = (&String, &TopicImage)> {
        self.topics
            .iter()
            .filter(move |(_, t)| since.is_none_or(|since| t.changed_at > since))
            .map(|(name, t)| (name, t.as_ref()))
    }

    /// Applies one record. Errors leave the image unchanged and are reported to the proposer;
    /// the same record gives the same result on every node. An invalid record is refused
    /// here too, so even one already in the log can never break a node.
    fn apply_record(&mut self, record: &MetadataRecord) -> Result<Applied, String> {
        record
            .validate()
            .map_err(|e| format!("INVALID_RECORD: {e}"))?;
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::Security(record) => record.apply(&mut self.security),
            MetadataRecord::ClientQuotas(changes) => self.client_quotas.apply(changes),
            MetadataRecord::RegisterBroker(registration) => {
                let previous = self.brokers.get(&registration.id);
                if previous.is_some_and(|b| b.incarnation == registration.incarnation) {
                    return Ok(Applied::default());
                }
                let mut registration = registration.clone();
                registration.fenced = true;
                registration.registered_at = self.applied_index;
                self.brokers.insert(registration.id, registration.clone());
                self.fence(registration.id);
            }
            MetadataRecord::FenceBroker { id, unresponsive } => {
                let broker = self
                    .brokers
                    .get_mut(id)
                    .ok_or_else(|| format!("broker {id} is not registered"))?;
                broker.fenced = true;
                broker.unresponsive = *unresponsive;
                self.fence(*id);
            }
            MetadataRecord::UnfenceBroker { id } => {
                let broker = self
                    .brokers
                    .get_mut(id)
                    .ok_or_else(|| format!("broker {id} is not registered"))?;
                broker.fenced = false;
                broker.unresponsive = false;
                let id = *id;
                for p in self.partitions_mut_where(|p| p.leader == -1 && p.isr.contains(&id)) {
                    p.set_leader(id);
                }
            }
            MetadataRecord::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let live = self.live_brokers();
                let change = IsrChange {
                    topic: topic.clone(),
                    partition: *partition,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    isr: isr.clone(),
                };
                self.check_isr_change(*leader, &change, &live)?;
                self.change_isr(&change, &live);
            }
            MetadataRecord::AlterPartitions {
                leader,
                changes,
                independent,
            } => {
                let live = self.live_brokers();
                let checks: Vec<Result<(), String>> = changes
                    .iter()
                    .map(|change| self.check_isr_change(*leader, change, &live))
                    .collect();
                let refused: Vec<u32> = (0..changes.len() as u32)
                    .filter(|i| checks[*i as usize].is_err())
                    .collect();
                if refused.len() == changes.len() || (!independent && !refused.is_empty()) {
                    let first = checks.into_iter().find_map(Result::err);
                    return Err(first.unwrap_or_default());
                }
                for (change, check) in changes.iter().zip(&checks) {
                    if check.is_ok() {
                        self.change_isr(change, &live);
                    }
                }
                return Ok(Applied {
                    value: None,
                    refused,
                });
            }
            MetadataRecord::ElectLeader {
                topic,
                partition,
                kind,
            } => {
                let live = self.live_brokers();
                self.elect(topic, *partition, *kind, &live)?;
            }
            MetadataRecord::ElectLeaders { kind, partitions } => {
                let live = self.live_brokers();
                let elected = partitions
                    .iter()
                    .filter(|(topic, partition)| {
                        self.elect(topic, *partition, *kind, &live).is_ok()
                    })
                    .count();
                return Ok(Applied::value(elected as i64));
            }
            MetadataRecord::Reassign {
                topic,
                partition,
                target,
            } => {
                let live = self.live_brokers();
                let registered: Vec<i32> = self.brokers.keys().copied().collect();
                let p = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| Arc::make_mut(t).partitions.get_mut(*partition as usize))
                    .ok_or_else(|| format!("partition {topic}-{partition} does not exist"))?;
                match target {
                    None => {
                        if p.adding.is_empty() && p.removing.is_empty() {
                            return Err("NO_REASSIGNMENT_IN_PROGRESS".into());
                        }
                        let original: Vec<i32> = p
                            .replicas
                            .iter()
                            .copied()
                            .filter(|r| !p.adding.contains(r))
                            .collect();
                        keeps_an_in_sync_replica(p, &original, topic, *partition)?;
                        p.finish_reassignment(original, &live);
                    }
                    Some(target) => {
                        if let Some(bad) = target.iter().find(|r| !registered.contains(r)) {
                            return Err(format!("broker {bad} is not registered"));
                        }
                        // Continue from the original replicas if a move is already running.
                        let original: Vec<i32> = p
                            .replicas
                            .iter()
                            .copied()
                            .filter(|r| !p.adding.contains(r))
                            .collect();
                        let adding: Vec<i32> = target
                            .iter()
                            .copied()
                            .filter(|r| !original.contains(r))
                            .collect();
                        let removing: Vec<i32> = original
                            .iter()
                            .copied()
                            .filter(|r| !target.contains(r))
                            .collect();
                        if adding.iter().all(|r| p.isr.contains(r)) {
                            keeps_an_in_sync_replica(p, target, topic, *partition)?;
                            p.finish_reassignment(target.clone(), &live);
                        } else {
                            let mut replicas = target.clone();
                            replicas.extend(removing.iter().copied());
                            keeps_an_in_sync_replica(p, &replicas, topic, *partition)?;
                            p.replicas = replicas;
                            p.isr.retain(|r| p.replicas.contains(r));
                            p.adding = adding;
                            p.removing = removing;
                            p.partition_epoch += 1;
                        }
                    }
                }
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                assignments,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("Topic '{name}' already exists."));
                }
                let partitions = self.new_partitions(assignments);
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        id: *id,
                        partitions,
                        configs: configs.clone(),
                        changed_at: self.applied_index,
                    }),
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return Err(format!("Topic '{name}' does not exist."));
                }
            }
            MetadataRecord::CreatePartitions {
                name,
                assignments,
                from,
            } => {
                let current = self
                    .topics
                    .get(name)
                    .ok_or_else(|| format!("Topic '{name}' does not exist."))?
                    .partitions
                    .len();
                if from.is_some_and(|from| from != current) {
                    return Err(format!(
                        "INVALID_PARTITIONS: topic '{name}' has {current} partitions now; \
                         another request added partitions first"
                    ));
                }
                let partitions = self.new_partitions(assignments);
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("Topic '{name}' does not exist."))?;
                Arc::make_mut(topic).partitions.extend(partitions);
            }
            MetadataRecord::AllocateProducerIds { count } => {
                let start = self.next_producer_id;
                self.next_producer_id = start
                    .checked_add(*count)
                    .ok_or("producer ids are exhausted")?;
                return Ok(Applied::value(start));
            }
            MetadataRecord::AlterTopicConfigs { name, set, delete } => {
                let topic = Arc::make_mut(
                    self.topics
                        .get_mut(name)
                        .ok_or_else(|| format!("Topic '{name}' does not exist."))?,
                );
                for key in delete {
                    topic.configs.remove(key);
                }
                topic
                    .configs
                    .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Ok(Applied::default())
    }

    /// The leader an election of `kind` gives the partition, and whether the ISR is reset to
    /// it (unclean); otherwise why there is none, as a Kafka error name.
    pub fn election(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionKind,
        live: &[i32],
    ) -> Result<(i32, bool), String> {
        let p = usize::try_from(partition)
            .ok()
            .and_then(|index| self.topics.get(topic)?.partitions.get(index))
            .ok_or_else(|| format!("partition {topic}-{partition} does not exist"))?;
        match kind {
            ElectionKind::Preferred => {
                let preferred = *p.replicas.first().ok_or("PREFERRED_LEADER_NOT_AVAILABLE")?;
                if p.leader == preferred {
                    return Err("ELECTION_NOT_NEEDED".into());
                }
                if !p.isr.contains(&preferred) || !live.contains(&preferred) {
                    return Err("PREFERRED_LEADER_NOT_AVAILABLE".into());
                }
                Ok((preferred, false))
            }
            ElectionKind::Unclean => {
                if p.leader >= 0 {
                    return Err("ELECTION_NOT_NEEDED".into());
                }
                let candidate = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| live.contains(r))
                    .ok_or("ELIGIBLE_LEADERS_NOT_AVAILABLE")?;
                Ok((candidate, true))
            }
        }
    }

    /// Applies [`Self::election`] to the partition.
    fn elect(
        &mut self,
        topic: &str,
        partition: i32,
        kind: ElectionKind,
        live: &[i32],
    ) -> Result<(), String> {
        let (leader, reset_isr) = self.election(topic, partition, kind, live)?;
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| Arc::make_mut(t).partitions.get_mut(partition as usize))
            .ok_or_else(|| format!("partition {topic}-{partition} does not exist"))?;
        if reset_isr {
            p.isr = vec![leader];
        }
        p.set_leader(leader);
        Ok(())
    }

    /// Registered brokers that are not fenced.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    /// Live brokers with their racks, in the order new replicas are placed on them: sorted by
    /// id, and alternating between racks (as Kafka's rack-aware assignment does) when brokers
    /// have racks.
    pub fn placement_order(&self) -> Vec<PlacementBroker> {
        let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
        for b in self.brokers.values().filter(|b| !b.fenced) {
            by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
        }
        let mut queues: Vec<(Option<&str>, std::vec::IntoIter<i32>)> = by_rack
            .into_iter()
            .map(|(rack, mut ids)| {
                ids.sort_unstable();
                (rack, ids.into_iter())
            })
            .collect();
        let mut order = Vec::new();
        loop {
            let before = order.len();
            for (rack, ids) in &mut queues {
                if let Some(id) = ids.next() {
                    order.push(PlacementBroker {
                        id,
                        rack: rack.map(str::to_owned),
                    });
                }
            }
            if order.len() == before {
                return order;
            }
        }
    }

    /// The partitions `wanted` picks, to be changed: each topic holding one is marked
    /// changed, and copied first when a published image still shares it.
    fn partitions_mut_where(
        &mut self,
        wanted: impl Fn(&PartitionImage) -> bool + Copy,
    ) -> impl Iterator<Item = &mut PartitionImage> {
        let at = self.applied_index;
        self.topics
            .values_mut()
            .filter(move |t| t.partitions.iter().any(wanted))
            .flat_map(move |t| {
                let t = Arc::make_mut(t);
                t.changed_at = at;
                t.partitions.iter_mut().filter(move |p| wanted(p))
            })
    }

    /// New partitions start with every live replica in the ISR, led by the first of them.
    fn new_partitions(&self, assignments: &[Vec<i32>]) -> Vec<PartitionImage> {
        let live = self.live_brokers();
        assignments
            .iter()
            .map(|replicas| {
                let isr: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| live.contains(r))
                    .collect();
                PartitionImage {
                    leader: isr.first().copied().unwrap_or(-1),
                    isr: if isr.is_empty() {
                        replicas.clone()
                    } else {
                        isr
                    },
                    replicas: replicas.clone(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }
            })
            .collect()
    }

    /// Whether `leader` may make `change` (Kafka's AlterPartition checks): it leads at the
    /// epochs it saw, and every replica it adds is assigned and live.
    fn check_isr_change(
        &self,
        leader: i32,
        change: &IsrChange,
        live: &[i32],
    ) -> Result<(), String> {
        let IsrChange {
            topic,
            partition,
            isr,
            ..
        } = change;
        let p = self
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(*partition as usize))
            .ok_or_else(|| format!("partition {topic}-{partition} does not exist"))?;
        if p.leader != leader || p.leader_epoch != change.leader_epoch {
            return Err(format!(
                "FENCED_LEADER_EPOCH: {topic}-{partition} is led by {} at epoch {}",
                p.leader, p.leader_epoch
            ));
        }
        if p.partition_epoch != change.partition_epoch {
            return Err(format!(
                "INVALID_UPDATE_VERSION: {topic}-{partition} is at partition epoch {}",
                p.partition_epoch
            ));
        }
        if !isr.contains(&leader) {
            return Err("INVALID_REQUEST: the ISR must contain the leader".into());
        }
        if let Some(bad) = isr
            .iter()
            .find(|r| !p.replicas.contains(r) || (!p.isr.contains(r) && !live.contains(r)))
        {
            return Err(format!(
                "INELIGIBLE_REPLICA: broker {bad} cannot join the ISR of {topic}-{partition}"
            ));
        }
        Ok(())
    }

    /// Applies a checked ISR change; a reassignment whose new replicas are all in the ISR
    /// now finishes.
    fn change_isr(&mut self, change: &IsrChange, live: &[i32]) {
        let Some(p) = self.topics.get_mut(&change.topic).and_then(|t| {
            Arc::make_mut(t)
                .partitions
                .get_mut(change.partition as usize)
        }) else {
            return;
        };
        p.isr = change.isr.clone();
        p.partition_epoch += 1;
        if !p.adding.is_empty() && p.adding.iter().all(|r| p.isr.contains(r)) {
            let target: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !p.removing.contains(r))
                .collect();
            p.finish_reassignment(target, live);
        }
    }

    /// Takes a broker out of leadership and out of every ISR where another member remains;
    /// partitions it led move to the next live ISR member, or go offline (leader -1).
    fn fence(&mut self, id: i32) {
        let live = self.live_brokers();
        let touched =
            |p: &PartitionImage| p.leader == id || (p.isr.contains(&id) && p.isr.len() > 1);
        for p in self.partitions_mut_where(touched) {
            let was_leader = p.leader == id;
            if p.isr.contains(&id) && p.isr.len() > 1 {
                p.isr.retain(|r| *r != id);
                p.partition_epoch += 1;
            }
            if was_leader {
                let next = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| *r != id && p.isr.contains(r) && live.contains(r))
                    .unwrap_or(-1);
                p.set_leader(next);
            }
        }
    }

    /// Finds a topic name by its id.
    pub fn topic_name_by_id(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }
}

/// A live broker as replica placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    /// `node.id`.
    pub id: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

/// Spreads `count` new partitions over `brokers` round-robin, starting after `first_index`
/// so that leaders (the first replica) rotate across brokers. A partition takes a broker of a
/// rack it has no replica in while such a rack is left, so its replicas span as many racks as
/// they can; brokers without a rack count as one more rack, as in Kafka's KRaft placement.
pub fn place_replicas(
    brokers: &[PlacementBroker],
    first_index: usize,
    count: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    let racks: BTreeSet<Option<&str>> = brokers.iter().map(|b| b.rack.as_deref()).collect();
    (0..count)
        .map(|p| {
            let mut chosen: Vec<i32> = Vec::with_capacity(replication_factor);
            let mut used: BTreeSet<Option<&str>> = BTreeSet::new();
            for spread_racks in [true, false] {
                for i in 0..brokers.len() {
                    if chosen.len() == replication_factor {
                        break;
                    }
                    let b = &brokers[(first_index + p + i) % brokers.len()];
                    if chosen.contains(&b.id) {
                        continue;
                    }
                    let rack = b.rack.as_deref();
                    if spread_racks && used.contains(&rack) && used.len() < racks.len() {
                        continue;
                    }
                    used.insert(rack);
                    chosen.push(b.id);
                }
            }
            chosen
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_records_are_refused_and_leave_the_image_alone() {
        let mut image = MetadataImage::default();
        let create = |assignments: Vec<Vec<i32>>| MetadataRecord::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            assignments,
            configs: BTreeMap::new(),
        };
        let bad = [
            create(vec![vec![]]),
            create(Vec::new()),
            create(vec![vec![1, 1]]),
            create(vec![vec![1]; MAX_PARTITIONS_PER_RECORD + 1]),
            MetadataRecord::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![-1]],
                from: None,
            },
            MetadataRecord::AllocateProducerIds { count: 0 },
            MetadataRecord::AllocateProducerIds { count: i64::MAX },
            MetadataRecord::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                isr: Vec::new(),
            },
            MetadataRecord::Reassign {
                topic: "t".into(),
                partition: 0,
                target: Some(Vec::new()),
            },
            MetadataRecord::ElectLeader {
                topic: "t".into(),
                partition: -1,
                kind: ElectionKind::Preferred,
            },
        ];
        for record in bad {
            let before = image.clone();
            let error = image.apply(&record).unwrap_err();
            assert!(error.starts_with("INVALID_RECORD"), "{record:?}: {error}");
            assert_eq!(image, before);
        }
        assert!(image.apply(&create(vec![vec![1, 2]])).is_ok());
    }

    #[test]
    fn records_build_the_image() {
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c1".into(),
            })
            .unwrap();
        image
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c2".into(),
            })
            .unwrap();
        assert_eq!(image.cluster_id, "c1");
        register_live(&mut image, 1);
        let block = MetadataRecord::AllocateProducerIds { count: 1000 };
        assert_eq!(image.apply(&block), Ok(Applied::value(0)));
        assert_eq!(image.apply(&block), Ok(Applied::value(1000)));
        let id = Uuid::new_v4();
        let create = MetadataRecord::CreateTopic {
            name: "t".into(),
            id,
            assignments: vec![vec![1], vec![1]],
            configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
        };
        image.apply(&create).unwrap();
        assert!(image.apply(&create).unwrap_err().contains("already exists"));
        let grow_from_two = MetadataRecord::CreatePartitions {
            name: "t".into(),
            assignments: vec![vec![1]],
            from: Some(2),
        };
        image.apply(&grow_from_two).unwrap();
        // The same request again (a retry, or a second request that raced the first) would
        // add a partition nobody asked for.
        let refused = image.apply(&grow_from_two).unwrap_err();
        assert!(refused.starts_with("INVALID_PARTITIONS"), "{refused}");
        image
            .apply(&MetadataRecord::AlterTopicConfigs {
                name: "t".into(),
                set: BTreeMap::from([("segment.bytes".into(), "1000".into())]),
                delete: vec!["retention.ms".into()],
            })
            .unwrap();
        let t = &image.topics["t"];
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[2].leader, 1);
        assert_eq!(t.configs.len(), 1);
        assert_eq!(image.topic_name_by_id(id), Some("t"));
        image
            .apply(&MetadataRecord::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(image.topics.is_empty());
    }

    fn register_live(image: &mut MetadataImage, id: i32) {
        let registration = BrokerRegistration {
            id,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            incarnation: Uuid::new_v4(),
            fenced: false,
            registered_at: 0,
            unresponsive: false,
            endpoints: Vec::new(),
        };
        image
            .apply(&MetadataRecord::RegisterBroker(registration))
            .unwrap();
        assert!(image.brokers[&id].fenced, "a registration starts fenced");
        image.apply(&MetadataRecord::UnfenceBroker { id }).unwrap();
    }

    /// An image with live brokers 1 to `brokers` and a topic "t" of `assignments`.
    fn live_brokers_with_topic_t(brokers: i32, assignments: Vec<Vec<i32>>) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=brokers {
            register_live(&mut image, id);
        }
        image
            .apply(&MetadataRecord::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                assignments,
                configs: BTreeMap::new(),
            })
            .unwrap();
        image
    }

    #[test]
    fn one_record_elects_many_partitions_and_skips_the_rest() {
        let mut image = live_brokers_with_topic_t(2, vec![vec![1, 2], vec![2, 1], vec![1, 2]]);
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 1,
                unresponsive: false,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1 })
            .unwrap();
        for partition in [0, 2] {
            let p = image.topics["t"].partitions[partition as usize].clone();
            image
                .apply(&MetadataRecord::AlterPartition {
                    topic: "t".into(),
                    partition,
                    leader: 2,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr: vec![2, 1],
                })
                .unwrap();
        }
        let leaders = |image: &MetadataImage| -> Vec<i32> {
            image.topics["t"]
                .partitions
                .iter()
                .map(|p| p.leader)
                .collect()
        };
        assert_eq!(leaders(&image), vec![2, 2, 2]);
        let live = image.live_brokers();
        assert_eq!(
            image.election("t", 1, ElectionKind::Preferred, &live),
            Err("ELECTION_NOT_NEEDED".into())
        );
        assert_eq!(
            image.election("t", 0, ElectionKind::Preferred, &live),
            Ok((1, false))
        );
        let record = MetadataRecord::ElectLeaders {
            kind: ElectionKind::Preferred,
            partitions: vec![
                ("t".into(), 0),
                ("t".into(), 1),
                ("t".into(), 2),
                ("gone".into(), 0),
            ],
        };
        assert_eq!(image.apply(&record), Ok(Applied::value(2)));
        assert_eq!(leaders(&image), vec![1, 2, 1]);
        let negative = MetadataRecord::ElectLeaders {
            kind: ElectionKind::Preferred,
            partitions: vec![("t".into(), -1)],
        };
        assert!(image
            .apply(&negative)
            .unwrap_err()
            .starts_with("INVALID_RECORD"));
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr() {
        let mut image = live_brokers_with_topic_t(3, vec![vec![1, 2, 3]]);
        let p = |image: &MetadataImage| image.topics["t"].partitions[0].clone();
        assert_eq!(
            (p(&image).leader, p(&image).isr.clone()),
            (1, vec![1, 2, 3])
        );

        image
            .apply(&MetadataRecord::FenceBroker {
                id: 1,
                unresponsive: false,
            })
            .unwrap();
        assert_eq!((p(&image).leader, p(&image).leader_epoch), (2, 1));
        assert_eq!(p(&image).isr, vec![2, 3]);

        // The leader shrinks the ISR to itself; a stale epoch is refused.
        let shrink = |leader_epoch, partition_epoch| MetadataRecord::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch,
            partition_epoch,
            isr: vec![2],
        };
        assert!(image.apply(&shrink(0, p(&image).partition_epoch)).is_err());
        assert!(image
            .apply(&shrink(1, p(&image).partition_epoch + 1))
            .is_err());
        image.apply(&shrink(1, p(&image).partition_epoch)).unwrap();
        assert_eq!(p(&image).isr, vec![2]);

        // The last ISR member keeps its place when fenced: the partition goes offline
        // rather than electing an out-of-sync replica, and comes back with it.
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 2,
                unresponsive: false,
            })
            .unwrap();
        assert_eq!((p(&image).leader, p(&image).isr.clone()), (-1, vec![2]));
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1 })
            .unwrap();
        assert_eq!(p(&image).leader, -1, "broker 1 is not in the ISR");
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 2 })
            .unwrap();
        assert_eq!((p(&image).leader, p(&image).leader_epoch), (2, 3));

        // A fenced broker cannot join the ISR.
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 3,
                unresponsive: false,
            })
            .unwrap();
        let expand = MetadataRecord::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: 3,
            partition_epoch: p(&image).partition_epoch,
            isr: vec![2, 3],
        };
        assert!(image
            .apply(&expand)
            .unwrap_err()
            .contains("INELIGIBLE_REPLICA"));
    }

    #[test]
    fn each_record_marks_the_topics_it_changed() {
        let mut image = MetadataImage::default();
        let mut index = 0;
        let mut apply = |image: &mut MetadataImage, record: MetadataRecord| {
            index += 1;
            image.applied_index = index;
            let _ = image.apply(&record);
            index
        };
        for id in 1..=2 {
            register_live(&mut image, id);
        }
        for name in ["a", "b", "c"] {
            apply(
                &mut image,
                MetadataRecord::CreateTopic {
                    name: name.into(),
                    id: Uuid::new_v4(),
                    assignments: vec![vec![1, 2]],
                    configs: BTreeMap::new(),
                },
            );
        }
        let changed = |image: &MetadataImage, since| {
            image
                .topics_changed_since(Some(since))
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(changed(&image, 0), ["a", "b", "c"]);
        assert_eq!(image.topics_changed_since(None).count(), 3);
        let before = apply(
            &mut image,
            MetadataRecord::AlterTopicConfigs {
                name: "b".into(),
                set: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                delete: Vec::new(),
            },
        );
        assert_eq!(changed(&image, before - 1), ["b"]);
        let before = apply(
            &mut image,
            MetadataRecord::AlterPartitions {
                leader: 1,
                changes: vec![IsrChange {
                    topic: "c".into(),
                    partition: 0,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: vec![1],
                }],
                independent: true,
            },
        );
        assert_eq!(changed(&image, before - 1), ["c"]);
        let refused = apply(
            &mut image,
            MetadataRecord::AlterPartitions {
                leader: 2,
                changes: vec![IsrChange {
                    topic: "a".into(),
                    partition: 0,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: vec![2],
                }],
                independent: true,
            },
        );
        assert!(
            changed(&image, refused - 1).is_empty(),
            "a refusal changes nothing"
        );
        let fenced = apply(
            &mut image,
            MetadataRecord::FenceBroker {
                id: 2,
                unresponsive: false,
            },
        );
        assert_eq!(
            changed(&image, fenced - 1),
            ["a", "b"],
            "c's ISR no longer held broker 2"
        );
        let deleted = apply(&mut image, MetadataRecord::DeleteTopic { name: "a".into() });
        assert_eq!(image.topic_deleted_at, deleted);
        assert!(changed(&image, deleted - 1).is_empty());
    }

    #[test]
    fn a_batch_of_isr_changes_applies_each_change_it_can() {
        let mut image = live_brokers_with_topic_t(3, vec![vec![1, 2, 3], vec![1, 2, 3]]);
        let shrink = |partition, partition_epoch| IsrChange {
            topic: "t".into(),
            partition,
            leader_epoch: 0,
            partition_epoch,
            isr: vec![1, 2],
        };
        let batch = |changes| MetadataRecord::AlterPartitions {
            leader: 1,
            changes,
            independent: true,
        };
        let isrs = |image: &MetadataImage| {
            image.topics["t"]
                .partitions
                .iter()
                .map(|p| (p.isr.clone(), p.partition_epoch))
                .collect::<Vec<_>>()
        };
        let before = isrs(&image);
        let stale = batch(vec![shrink(0, 7), shrink(1, 7)]);
        assert!(image
            .apply(&stale)
            .unwrap_err()
            .contains("INVALID_UPDATE_VERSION"));
        assert_eq!(
            isrs(&image),
            before,
            "a batch refused whole changes nothing"
        );
        let written_before_independent = MetadataRecord::AlterPartitions {
            leader: 1,
            changes: vec![shrink(0, 0), shrink(1, 7)],
            independent: false,
        };
        assert!(image.apply(&written_before_independent).is_err());
        assert_eq!(
            isrs(&image),
            before,
            "an older record applies whole or not at all"
        );
        let repeated = batch(vec![shrink(0, 0), shrink(0, 0)]);
        assert!(image
            .apply(&repeated)
            .unwrap_err()
            .starts_with("INVALID_RECORD"));
        assert!(image
            .apply(&batch(Vec::new()))
            .unwrap_err()
            .starts_with("INVALID_RECORD"));
        let applied = image
            .apply(&batch(vec![shrink(0, 0), shrink(1, 7)]))
            .unwrap();
        assert_eq!(applied.refused, [1], "the stale change is refused");
        assert_eq!(isrs(&image), vec![(vec![1, 2], 1), before[1].clone()]);
        image.apply(&batch(vec![shrink(1, 0)])).unwrap();
        assert_eq!(isrs(&image), vec![(vec![1, 2], 1), (vec![1, 2], 1)]);
    }

    #[test]
    fn a_reassignment_that_would_drop_every_in_sync_replica_is_refused() {
        let mut image = live_brokers_with_topic_t(4, vec![vec![1]]);
        let reassign = |target| MetadataRecord::Reassign {
            topic: "t".into(),
            partition: 0,
            target,
        };
        image.apply(&reassign(Some(vec![2, 3]))).unwrap();
        // 2 catches up, 3 not yet; then 1 is fenced: the only in-sync replica is one being added.
        let p = image.topics["t"].partitions[0].clone();
        image
            .apply(&MetadataRecord::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![1, 2],
            })
            .unwrap();
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 1,
                unresponsive: false,
            })
            .unwrap();
        let p = image.topics["t"].partitions[0].clone();
        assert_eq!((p.isr.clone(), p.adding.clone()), (vec![2], vec![2, 3]));

        // A new move continues from the original replicas ([1]); cancelling goes back to them.
        let settled = image.clone();
        for record in [
            reassign(Some(vec![4])),
            reassign(Some(vec![1])),
            reassign(None),
        ] {
            let error = image.apply(&record).unwrap_err();
            assert!(error.starts_with("INVALID_REPLICA_ASSIGNMENT"), "{error}");
            assert_eq!(image, settled, "a refused reassignment changes nothing");
        }
        image.apply(&reassign(Some(vec![2, 4]))).unwrap();
        let p = &image.topics["t"].partitions[0];
        assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "{p:?}");
    }

    #[test]
    fn reassignment_adds_then_removes_and_elections_follow_the_rules() {
        let mut image = live_brokers_with_topic_t(4, vec![vec![1, 2, 3]]);
        let p = |image: &MetadataImage| image.topics["t"].partitions[0].clone();
        image
            .apply(&MetadataRecord::Reassign {
                topic: "t".into(),
                partition: 0,
                target: Some(vec![4, 2, 3]),
            })
            .unwrap();
        let during = p(&image);
        assert_eq!(
            (
                during.replicas.clone(),
                during.adding.clone(),
                during.removing.clone()
            ),
            (vec![4, 2, 3, 1], vec![4], vec![1])
        );
        assert_eq!(
            during.leader, 1,
            "the old leader serves until the move completes"
        );
        // Broker 4 catches up: the ISR expansion completes the move and 1 hands over.
        image
            .apply(&MetadataRecord::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: during.leader_epoch,
                partition_epoch: during.partition_epoch,
                isr: vec![1, 2, 3, 4],
            })
            .unwrap();
        let after = p(&image);
        assert_eq!(after.replicas, vec![4, 2, 3]);
        assert!(!after.reassigning());
        assert_eq!(after.isr, vec![2, 3, 4]);
        assert_eq!(
            after.leader, 4,
            "the first live ISR member in replica order"
        );

        let elect = |kind| MetadataRecord::ElectLeader {
            topic: "t".into(),
            partition: 0,
            kind,
        };
        assert_eq!(
            image.apply(&elect(ElectionKind::Preferred)),
            Err("ELECTION_NOT_NEEDED".into())
        );
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 4,
                unresponsive: false,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 4 })
            .unwrap();
        assert_eq!(p(&image).leader, 2);
        assert_eq!(
            image.apply(&elect(ElectionKind::Preferred)),
            Err("PREFERRED_LEADER_NOT_AVAILABLE".into()),
            "4 is not back in the ISR"
        );
        let before = p(&image);
        image
            .apply(&MetadataRecord::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader: 2,
                leader_epoch: before.leader_epoch,
                partition_epoch: before.partition_epoch,
                isr: vec![2, 3, 4],
            })
            .unwrap();
        image.apply(&elect(ElectionKind::Preferred)).unwrap();
        assert_eq!(p(&image).leader, 4);
        assert_eq!(
            image.apply(&elect(ElectionKind::Unclean)),
            Err("ELECTION_NOT_NEEDED".into())
        );
        for id in [2, 3, 4] {
            image
                .apply(&MetadataRecord::FenceBroker {
                    id,
                    unresponsive: false,
                })
                .unwrap();
        }
        assert_eq!((p(&image).leader, p(&image).isr.clone()), (-1, vec![4]));
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 2 })
            .unwrap();
        assert_eq!(
            p(&image).leader,
            -1,
            "2 left the ISR; a clean election cannot pick it"
        );
        image.apply(&elect(ElectionKind::Unclean)).unwrap();
        assert_eq!((p(&image).leader, p(&image).isr.clone()), (2, vec![2]));
    }

    #[test]
    fn placement_rotates_leaders() {
        let p = place_replicas(&racked(&[(1, None), (2, None), (3, None)]), 0, 4, 2);
        assert_eq!(p, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        assert_eq!(
            place_replicas(&racked(&[(7, None)]), 5, 2, 1),
            vec![vec![7], vec![7]]
        );
    }

    fn racked(brokers: &[(i32, Option<&str>)]) -> Vec<PlacementBroker> {
        brokers
            .iter()
            .map(|(id, rack)| PlacementBroker {
                id: *id,
                rack: rack.map(str::to_owned),
            })
            .collect()
    }

    #[test]
    fn placement_alternates_racks_and_spreads_each_partition_over_them() {
        let mut image = MetadataImage::default();
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "a")] {
            register_live(&mut image, id);
            image.brokers.get_mut(&id).expect("registered").rack = Some(rack.into());
        }
        let order = image.placement_order();
        let ids: Vec<i32> = order.iter().map(|b| b.id).collect();
        assert_eq!(ids, [1, 3, 4, 2, 5]);
        for rf in 1..=3 {
            for (p, replicas) in place_replicas(&order, 0, 10, rf).iter().enumerate() {
                let racks: BTreeSet<&str> = replicas
                    .iter()
                    .map(|id| image.brokers[id].rack.as_deref().expect("racked"))
                    .collect();
                assert_eq!(racks.len(), rf, "partition {p}: {replicas:?}");
            }
        }
        // Five replicas over three racks: every broker once, every rack used.
        for replicas in place_replicas(&order, 3, 5, 5) {
            let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 5, "{replicas:?}");
        }
        let leaders: BTreeSet<i32> = place_replicas(&order, 0, 5, 3)
            .iter()
            .map(|r| r[0])
            .collect();
        assert_eq!(leaders.len(), 5, "leaders rotate over every broker");

        // Brokers without a rack are one more rack: a partition of two replicas never takes
        // both of them while a racked broker is free.
        let mixed = racked(&[(1, None), (2, None), (3, Some("a")), (4, Some("b"))]);
        for replicas in place_replicas(&mixed, 0, 8, 2) {
            let unracked = replicas.iter().filter(|id| **id <= 2).count();
            assert!(unracked <= 1, "{replicas:?}");
        }
    }
}
