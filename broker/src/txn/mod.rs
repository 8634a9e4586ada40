//! The transaction coordinator for the transactional ids whose `__transaction_state`
//! partition this broker leads: each id's producer id and epoch, its transaction's state and
//! partitions (KIP-98), kept durably in that topic (see `store`). The state machine here is
//! pure; the API layer persists each step and writes the markers.

pub mod markers;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::coordinator::Ownership;

/// The internal topic's name.
pub const TXN_TOPIC: &str = "__transaction_state";

/// A transaction's state, named as Kafka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions were added; neither committed nor aborted yet.
    Ongoing,
    /// Committing: the markers are being written.
    PrepareCommit,
    /// Aborting: the markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether markers are being written (`Some(true)` for a commit).
    pub fn preparing(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit => Some(true),
            TxnState::PrepareAbort => Some(false),
            _ => None,
        }
    }
}

/// What the coordinator keeps per transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    /// The producer id given to the transactional id.
    pub producer_id: i64,
    /// Its current epoch; older epochs are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// The transaction's state.
    pub state: TxnState,
    /// The partitions written in the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (-1 when none is open).
    pub started_ms: i64,
    /// When the state last changed.
    pub updated_ms: i64,
}

impl TxnMetadata {
    /// A new transactional id's state.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            started_ms: -1,
            updated_ms: now,
        }
    }

    /// The same producer fenced at the next epoch, its transaction aborting.
    fn fenced_and_aborting(&self, now: i64) -> Self {
        TxnMetadata {
            producer_epoch: self.producer_epoch.saturating_add(1).min(i16::MAX - 1),
            state: TxnState::PrepareAbort,
            updated_ms: now,
            ..self.clone()
        }
    }

    /// Whether the open transaction has run past its timeout.
    pub fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.started_ms >= 0
            && now.saturating_sub(self.started_ms) > self.timeout_ms as i64
    }

    /// The state once every marker is written.
    pub fn completed(&self, now: i64) -> Self {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        TxnMetadata {
            state,
            partitions: BTreeSet::new(),
            started_ms: -1,
            updated_ms: now,
            ..self.clone()
        }
    }
}

/// What InitProducerId must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Persist this state (the epoch bumped) and give it to the producer.
    Ready(TxnMetadata),
    /// Persist this aborting state, write the abort markers, then go on.
    AbortFirst(TxnMetadata),
    /// Give the id a new producer id at epoch 0 (first use, or the epoch is exhausted).
    NewProducerId,
}

/// InitProducerId for a transactional id: a new producer id, or the next epoch of the current
/// one, which fences every older producer of the id. `expected` is the producer id and epoch
/// a producer that already had one sends (KIP-360).
pub fn init_step(
    current: Option<&TxnMetadata>,
    expected: Option<(i64, i16)>,
    timeout_ms: i32,
    now: i64,
) -> Result<InitStep, ResponseError> {
    let Some(m) = current else {
        return Ok(InitStep::NewProducerId);
    };
    if let Some((id, epoch)) = expected {
        if id != m.producer_id || epoch != m.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Ongoing => Ok(InitStep::AbortFirst(m.fenced_and_aborting(now))),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            if m.producer_epoch >= i16::MAX - 1 {
                return Ok(InitStep::NewProducerId);
            }
            Ok(InitStep::Ready(TxnMetadata {
                producer_epoch: m.producer_epoch + 1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                started_ms: -1,
                updated_ms: now,
                ..m.clone()
            }))
        }
    }
}

/// Checks that a request comes from the id's current producer. `fenced` is the error an
/// older epoch gets (PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for older request versions).
pub fn check_producer(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    fenced: ResponseError,
) -> Result<&TxnMetadata, ResponseError> {
    match current {
        Some(m) if m.producer_id == producer_id => {
            if m.producer_epoch == producer_epoch {
                Ok(m)
            } else {
                Err(fenced)
            }
        }
        _ => Err(ResponseError::InvalidProducerIdMapping),
    }
}

/// AddPartitionsToTxn and AddOffsetsToTxn: the state with `partitions` in the transaction
/// (starting one if none is open), or `None` when they are in it already.
pub fn add_partitions(
    m: &TxnMetadata,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMetadata>, ResponseError> {
    if m.state.preparing().is_some() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if m.state != TxnState::Ongoing {
        next.partitions.clear();
        next.started_ms = now;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.state = TxnState::Ongoing;
    next.updated_ms = now;
    Ok(Some(next))
}

/// What EndTxn must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Persist this preparing state, then write the markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that already completed.
    AlreadyDone,
}

/// EndTxn: commit or abort the open transaction.
pub fn end_step(m: &TxnMetadata, commit: bool, now: i64) -> Result<EndStep, ResponseError> {
    match (m.state, commit) {
        (TxnState::Ongoing, _) => Ok(EndStep::Prepare(TxnMetadata {
            state: if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            },
            updated_ms: now,
            ..m.clone()
        })),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndStep::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// The state that aborts a timed-out transaction, fencing its producer as Kafka does.
pub fn abort_timed_out(m: &TxnMetadata, now: i64) -> Option<TxnMetadata> {
    m.timed_out(now).then(|| m.fenced_and_aborting(now))
}

/// One transactional id's state behind its own lock, held across the persisting of a step.
pub type TxnSlot = Arc<tokio::sync::Mutex<Option<TxnMetadata>>>;

/// The coordinator for the transactional ids whose `__transaction_state` partition this
/// broker leads.
#[derive(Default)]
pub struct TxnCoordinator {
    slots: Mutex<HashMap<String, TxnSlot>>,
    ownership: Mutex<Ownership>,
}

impl TxnCoordinator {
    /// A coordinator that owns no partition yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, TxnSlot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ownership(&self) -> MutexGuard<'_, Ownership> {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The coordinator epoch (the leader epoch its partition was loaded at) of an id this
    /// broker coordinates, or NOT_COORDINATOR.
    fn epoch_of(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        let ownership = self.ownership();
        ownership
            .partition_of(transactional_id)
            .and_then(|p| ownership.epoch_of(p))
            .ok_or(ResponseError::NotCoordinator)
    }

    /// The id's slot, made empty if it has none (InitProducerId), with the coordinator epoch
    /// every write of its state must be made at.
    pub fn slot(&self, transactional_id: &str) -> Result<(TxnSlot, i32), ResponseError> {
        let epoch = self.epoch_of(transactional_id)?;
        let slot = self
            .slots()
            .entry(transactional_id.to_string())
            .or_default()
            .clone();
        Ok((slot, epoch))
    }

    /// The id's slot if the id is known, with the coordinator epoch.
    pub fn existing(
        &self,
        transactional_id: &str,
    ) -> Result<Option<(TxnSlot, i32)>, ResponseError> {
        let epoch = self.epoch_of(transactional_id)?;
        Ok(self
            .slots()
            .get(transactional_id)
            .map(|slot| (slot.clone(), epoch)))
    }

    /// Whether this broker coordinates the id now, at `epoch`.
    pub fn owns_at(&self, transactional_id: &str, epoch: i32) -> bool {
        let ownership = self.ownership();
        ownership
            .partition_of(transactional_id)
            .and_then(|p| ownership.epoch_of(p))
            == Some(epoch)
    }

    /// Loaded partitions and the leader epoch each was loaded at.
    pub fn owned_partitions(&self) -> HashMap<i32, i32> {
        self.ownership().partitions().clone()
    }

    /// Takes over one partition's transactional ids, as read from its log.
    pub fn load_partition(
        &self,
        partition: i32,
        leader_epoch: i32,
        partition_count: usize,
        txns: HashMap<String, TxnMetadata>,
    ) {
        self.unload_partition(partition);
        let mut slots = self.slots();
        for (id, metadata) in txns {
            slots.insert(id, Arc::new(tokio::sync::Mutex::new(Some(metadata))));
        }
        drop(slots);
        self.ownership()
            .load(partition, leader_epoch, partition_count);
    }

    /// Forgets one partition's transactional ids (leadership moved away).
    pub fn unload_partition(&self, partition: i32) {
        let Some(mine) = self.ownership().unload(partition) else {
            return;
        };
        self.slots().retain(|id, _| !mine(id));
    }

    /// The ids this broker coordinates with their slots and coordinator epochs.
    pub fn ids(&self) -> Vec<(String, TxnSlot, i32)> {
        let slots: Vec<(String, TxnSlot)> = self
            .slots()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        slots
            .into_iter()
            .filter_map(|(id, slot)| {
                let epoch = self.epoch_of(&id).ok()?;
                Some((id, slot, epoch))
            })
            .collect()
    }

    /// How many ids have a transaction open or ending (ids busy in a step are counted as open).
    pub fn open_count(&self) -> usize {
        self.ids()
            .iter()
            .filter(|(_, slot, _)| {
                slot.try_lock().map_or(true, |m| {
                    m.as_ref().is_some_and(|m| {
                        m.state == TxnState::Ongoing || m.state.preparing().is_some()
                    })
                })
            })
            .count()
    }

    /// Drops an id whose state was deleted, if its slot is still `slot`.
    pub fn forget(&self, transactional_id: &str, slot: &TxnSlot) {
        let mut slots = self.slots();
        if slots
            .get(transactional_id)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            slots.remove(transactional_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMetadata {
        let m = TxnMetadata::new(7, 1_000, 0);
        add_partitions(&m, &[("t".into(), 0)], 10).unwrap().unwrap()
    }

    #[test]
    fn init_gives_a_new_id_then_bumps_and_fences() {
        assert_eq!(init_step(None, None, 1_000, 0), Ok(InitStep::NewProducerId));
        let m = TxnMetadata::new(7, 1_000, 0);
        let InitStep::Ready(next) = init_step(Some(&m), None, 2_000, 5).unwrap() else {
            panic!("expected Ready");
        };
        assert_eq!(
            (next.producer_id, next.producer_epoch, next.timeout_ms),
            (7, 1, 2_000)
        );
        assert_eq!(
            init_step(Some(&next), Some((7, 0)), 1_000, 6),
            Err(ResponseError::ProducerFenced)
        );
        assert!(matches!(
            init_step(Some(&next), Some((7, 1)), 1_000, 6),
            Ok(InitStep::Ready(_))
        ));
    }

    #[test]
    fn init_aborts_an_open_transaction_with_a_bumped_epoch() {
        let InitStep::AbortFirst(aborting) = init_step(Some(&ongoing()), None, 1_000, 20).unwrap()
        else {
            panic!("expected AbortFirst");
        };
        assert_eq!(aborting.state, TxnState::PrepareAbort);
        assert_eq!(aborting.producer_epoch, 1);
        assert_eq!(
            init_step(Some(&aborting), None, 1_000, 21),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = aborting.completed(22);
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert!(done.partitions.is_empty());
    }

    #[test]
    fn partitions_join_the_open_transaction_once() {
        let m = ongoing();
        assert_eq!(m.started_ms, 10);
        assert_eq!(add_partitions(&m, &[("t".into(), 0)], 11), Ok(None));
        let more = add_partitions(&m, &[("u".into(), 1)], 12).unwrap().unwrap();
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.started_ms, 10);
    }

    #[test]
    fn end_prepares_and_retries_are_answered() {
        let m = ongoing();
        let EndStep::Prepare(p) = end_step(&m, true, 30).unwrap() else {
            panic!("expected Prepare");
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(
            end_step(&p, true, 31),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            add_partitions(&p, &[("t".into(), 0)], 31),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = p.completed(32);
        assert_eq!(end_step(&done, true, 33), Ok(EndStep::AlreadyDone));
        assert_eq!(
            end_step(&done, false, 33),
            Err(ResponseError::InvalidTxnState)
        );
        let empty = TxnMetadata::new(1, 1_000, 0);
        assert_eq!(
            end_step(&empty, false, 1),
            Err(ResponseError::InvalidTxnState)
        );
    }

    #[test]
    fn only_the_current_producer_may_act() {
        let m = ongoing();
        let fenced = ResponseError::ProducerFenced;
        assert!(check_producer(Some(&m), 7, 0, fenced).is_ok());
        assert_eq!(check_producer(Some(&m), 7, 1, fenced), Err(fenced));
        assert_eq!(
            check_producer(Some(&m), 8, 0, fenced),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            check_producer(None, 7, 0, fenced),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn timed_out_transactions_are_aborted_and_fenced() {
        let m = ongoing();
        assert_eq!(abort_timed_out(&m, 1_000), None);
        let aborting = abort_timed_out(&m, 1_011).unwrap();
        assert_eq!(
            (aborting.state, aborting.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
    }
}
