//! Decisions about a running cluster (pure): which pod to restart next in a roll, and which
//! partitions to move when brokers leave or join.

use std::collections::{BTreeMap, BTreeSet};

use strom_client::{ClusterView, Reassignment};

/// What the operator knows about one pod of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its node id.
    pub node_id: i32,
    /// It votes in the quorum.
    pub controller: bool,
    /// Its readiness condition is True.
    pub ready: bool,
    /// It runs an older revision of its StatefulSet.
    pub outdated: bool,
    /// It is being deleted.
    pub terminating: bool,
    /// It carries the manual restart annotation.
    pub restart_requested: bool,
}

impl PodState {
    fn due(&self) -> bool {
        self.outdated || self.restart_requested
    }
}

/// What the controllers report, for rolling them without losing the quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quorum {
    /// The active controller, when a controller reports one.
    pub active: Option<i32>,
    /// Voters whose applied metadata is within `MAX_CONTROLLER_LAG` records of the active one.
    pub caught_up: BTreeSet<i32>,
    /// Voters in the quorum.
    pub voters: usize,
}

/// Metadata records a voter may trail the active controller by and still count as caught up.
pub const MAX_CONTROLLER_LAG: i64 = 10;

/// The next step of a rolling restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod is up to date.
    Done,
    /// Not safe to restart anything yet, for the given reason.
    Wait(String),
    /// Remove this pod so that its StatefulSet recreates it on the new revision.
    Restart {
        /// Pod name.
        pod: String,
        /// Why it goes now.
        reason: String,
        /// Through the Eviction API, so the PodDisruptionBudget has its say; a pod that is not
        /// Ready serves nobody and is deleted directly.
        evict: bool,
    },
}

/// Picks the next pod to restart: one at a time, controllers before brokers, the active
/// controller last among the controllers, and only when every other pod is Ready and no
/// partition is under-replicated (`under_replicated` is `None` when the brokers cannot be
/// asked). A controller goes only while the active controller is known and (with three voters
/// or more) a majority of voters other than it is caught up. An outdated pod that is the only
/// one not Ready serves nobody and goes first. Pods with the manual restart annotation count as
/// outdated.
pub fn next_roll(pods: &[PodState], quorum: &Quorum, under_replicated: Option<usize>) -> RollStep {
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return RollStep::Wait(format!("pod {} is terminating", p.name));
    }
    let mut due: Vec<&PodState> = pods.iter().filter(|p| p.due()).collect();
    if due.is_empty() {
        return RollStep::Done;
    }
    let not_ready = pods.iter().filter(|p| !p.ready).count();
    // The one pod that is down and due serves nobody; with several down (a lost quorum makes
    // every node unready) restarting them would turn an outage into a full restart.
    if let Some(p) = due.iter().find(|p| !p.ready && not_ready == 1) {
        return RollStep::Restart {
            pod: p.name.clone(),
            reason: "it is due for a restart and not Ready".into(),
            evict: false,
        };
    }
    if let Some(p) = pods.iter().find(|p| !p.ready) {
        return RollStep::Wait(format!("pod {} is not Ready", p.name));
    }
    match under_replicated {
        None => return RollStep::Wait("the brokers cannot be asked about replication".into()),
        Some(n) if n > 0 => {
            return RollStep::Wait(format!("{n} partitions are under-replicated"));
        }
        Some(_) => {}
    }
    let order = |p: &PodState| match (p.controller, Some(p.node_id) == quorum.active) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    };
    due.sort_by_key(|p| (order(p), p.node_id));
    let p = due[0];
    if p.controller {
        if quorum.active.is_none() {
            return RollStep::Wait("no controller reports an active controller".into());
        }
        let others = quorum
            .caught_up
            .iter()
            .filter(|id| **id != p.node_id)
            .count();
        // One or two voters lose the quorum during any controller restart; there is nothing
        // to wait for.
        if quorum.voters > 2 && others <= quorum.voters / 2 {
            return RollStep::Wait(format!(
                "restarting controller {} would leave {others} of {} voters caught up, not a majority",
                p.node_id, quorum.voters
            ));
        }
    }
    let reason = if p.outdated {
        format!("{} pods are outdated", due.len())
    } else {
        "its manual restart annotation asks for it".to_owned()
    };
    RollStep::Restart {
        pod: p.name.clone(),
        reason,
        evict: true,
    }
}

/// What the Ready condition needs to know about one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReadiness {
    /// Pool name.
    pub name: String,
    /// Pods the spec asks for.
    pub desired: i32,
    /// Pods its StatefulSet runs.
    pub replicas: i32,
    /// Pods that are Ready.
    pub ready: i32,
    /// The StatefulSet controller has seen the StatefulSet's latest spec.
    pub settled: bool,
}

/// Whether the cluster is Ready: nothing in progress, no pool being removed, every pool at its
/// size with every pod Ready and its StatefulSet's latest spec seen, and every partition fully
/// replicated (`under_replicated` is `None` when the brokers cannot be asked). `Err` says why
/// not.
pub fn cluster_ready(
    pools: &[PoolReadiness],
    removing: &[String],
    progress: &[String],
    under_replicated: Option<usize>,
) -> Result<(), String> {
    if !progress.is_empty() {
        return Err(progress.join("; "));
    }
    if let Some(pool) = removing.first() {
        return Err(format!("pool {pool} is being removed"));
    }
    for p in pools {
        if !p.settled {
            return Err(format!(
                "the StatefulSet of pool {} has not taken its latest spec yet",
                p.name
            ));
        }
        if p.replicas != p.desired {
            return Err(format!(
                "pool {} runs {} of {} pods",
                p.name, p.replicas, p.desired
            ));
        }
        if p.ready != p.desired {
            return Err(format!(
                "pool {} has {} of {} pods Ready",
                p.name, p.ready, p.desired
            ));
        }
    }
    match under_replicated {
        None => Err("the brokers cannot be reached over the bootstrap Service".into()),
        Some(0) => Ok(()),
        Some(n) => Err(format!("{n} partitions are under-replicated")),
    }
}

/// A partition move that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic}-{partition} has {replicas} replicas but only {brokers} brokers would stay")]
pub struct CannotDrain {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Its replication factor.
    pub replicas: usize,
    /// Brokers that stay.
    pub brokers: usize,
}

fn load(view: &ClusterView, brokers: &BTreeSet<i32>) -> BTreeMap<i32, usize> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for (_, p) in view.partitions() {
        for r in &p.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// Moves every replica on a `leaving` broker to the least loaded `staying` broker that does
/// not hold the partition yet, keeping each replica's position (so the preferred leader
/// moves in place).
pub fn drain_plan(
    view: &ClusterView,
    leaving: &BTreeSet<i32>,
    staying: &BTreeSet<i32>,
) -> Result<Vec<Reassignment>, CannotDrain> {
    let mut load = load(view, staying);
    let mut moves = Vec::new();
    for (topic, p) in view.partitions() {
        if !p.replicas.iter().any(|r| leaving.contains(r)) {
            continue;
        }
        let mut replicas = p.replicas.clone();
        for i in 0..replicas.len() {
            if !leaving.contains(&replicas[i]) {
                continue;
            }
            let target = load
                .iter()
                .filter(|(b, _)| !replicas.contains(b))
                .min_by_key(|(b, n)| (**n, **b))
                .map(|(b, _)| *b)
                .ok_or_else(|| CannotDrain {
                    topic: topic.to_owned(),
                    partition: p.index,
                    replicas: p.replicas.len(),
                    brokers: staying.len(),
                })?;
            replicas[i] = target;
            *load.entry(target).or_default() += 1;
        }
        moves.push(Reassignment {
            topic: topic.to_owned(),
            partition: p.index,
            replicas,
        });
    }
    Ok(moves)
}

/// Evens out replica counts across `brokers` (most loaded to least loaded, one replica at a
/// time) until no two brokers differ by more than one. Used after brokers join.
pub fn balance_plan(view: &ClusterView, brokers: &BTreeSet<i32>) -> Vec<Reassignment> {
    let mut load = load(view, brokers);
    let mut planned: BTreeMap<(String, i32), Vec<i32>> = view
        .partitions()
        .map(|(t, p)| ((t.to_owned(), p.index), p.replicas.clone()))
        .collect();
    let total: usize = load.values().sum();
    for _ in 0..=total {
        let Some((&most, &high)) = load.iter().max_by_key(|(b, n)| (**n, -**b)) else {
            break;
        };
        let Some((&least, &low)) = load.iter().min_by_key(|(b, n)| (**n, **b)) else {
            break;
        };
        if high <= low + 1 {
            break;
        }
        let candidate = planned
            .iter_mut()
            .find(|(_, r)| r.contains(&most) && !r.contains(&least));
        let Some((_, replicas)) = candidate else {
            break;
        };
        for r in replicas.iter_mut() {
            if *r == most {
                *r = least;
            }
        }
        *load.get_mut(&most).expect("loaded broker") -= 1;
        *load.get_mut(&least).expect("loaded broker") += 1;
    }
    view.partitions()
        .filter_map(|(t, p)| {
            let replicas = &planned[&(t.to_owned(), p.index)];
            (replicas != &p.replicas).then(|| Reassignment {
                topic: t.to_owned(),
                partition: p.index,
                replicas: replicas.clone(),
            })
        })
        .collect()
}
