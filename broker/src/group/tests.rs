//! Scenarios of the group coordinator, and the helpers the state matrix shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::store::{CommittedOffset, LoadedPartition, OffsetMap};
use super::*;

pub(super) fn config() -> GroupConfig {
    GroupConfig {
        max_size: usize::MAX,
        initial_rebalance_delay: Duration::from_millis(0),
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 60_000,
    }
}

pub(super) fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 2_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from_static(b"meta")))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

pub(super) fn static_join(instance: &str, member_id: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_string()),
        ..join_request(member_id, &["range"])
    }
}

pub(super) fn sync_request(member_id: &str, generation: i32) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        generation,
        ..Default::default()
    }
}

pub(super) fn committed(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp: 1,
    }
}

/// A coordinator owning the single partition every group hashes to.
pub(super) fn coordinator_with(config: GroupConfig) -> Arc<GroupCoordinator> {
    let c = GroupCoordinator::new(config, Box::new(|_, _| {}));
    c.load_partition(0, 0, 1, LoadedPartition::default());
    c
}

pub(super) fn coordinator() -> Arc<GroupCoordinator> {
    coordinator_with(config())
}

/// A dynamic member's first join: MEMBER_ID_REQUIRED, then the join with that id.
pub(super) async fn join_fully(c: &Arc<GroupCoordinator>, protocols: &[&str]) -> JoinResult {
    let first = c.join(join_request("", protocols)).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    c.join(join_request(&first.member_id, protocols)).await
}

#[test]
fn offsets_committed_in_a_transaction_count_only_once_it_commits() {
    let c = coordinator();
    let entry = |offset| vec![(("t".to_string(), 0), Some(committed(offset)))];
    c.append_txn_offsets(7, "g", entry(5), || Ok::<_, ()>(()))
        .unwrap();
    assert!(c.committed("g").is_empty());
    assert!(c.has_pending_offset("g", "t", 0));
    c.end_txn(7, 0, true);
    assert_eq!(c.committed("g")[&("t".to_string(), 0)].offset, 5);
    assert!(!c.has_pending_offset("g", "t", 0));
    c.append_txn_offsets(8, "g", entry(9), || Ok::<_, ()>(()))
        .unwrap();
    // A failed append stages nothing.
    assert!(c
        .append_txn_offsets(9, "g", entry(1), || Err::<(), _>("no"))
        .is_err());
    c.end_txn(8, 0, false);
    assert_eq!(c.committed("g")[&("t".to_string(), 0)].offset, 5);
    assert!(!c.has_pending_offset("g", "t", 0));
}

#[tokio::test]
async fn only_loaded_partitions_are_coordinated() {
    let c = GroupCoordinator::new(config(), Box::new(|_, _| {}));
    let result = c.join(join_request("", &["range"])).await;
    assert_eq!(result.error, Some(ResponseError::NotCoordinator));
    let offsets = OffsetMap::from([(
        "g".to_string(),
        BTreeMap::from([(("t".to_string(), 0), committed(7))]),
    )]);
    c.load_partition(
        0,
        3,
        1,
        LoadedPartition {
            offsets,
            ..Default::default()
        },
    );
    assert!(c.owns("g"));
    assert_eq!(c.committed("g")[&("t".to_string(), 0)].offset, 7);
    assert_eq!(c.owned_partitions(), HashMap::from([(0, 3)]));
    c.unload_partition(0);
    assert!(!c.owns("g"));
    assert!(c.committed("g").is_empty());
    assert_eq!(
        c.heartbeat("g", "m", None, 1),
        Some(ResponseError::NotCoordinator)
    );
}

#[tokio::test]
async fn single_member_goes_stable() {
    let c = coordinator();
    let joined = join_fully(&c, &["range"]).await;
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.members.len(), 1);
    let synced = c
        .sync(SyncRequest {
            assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"a"))],
            ..sync_request(&joined.member_id, 1)
        })
        .await;
    assert_eq!(
        (synced.error, synced.assignment),
        (None, Bytes::from_static(b"a"))
    );
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    assert_eq!(c.heartbeat("g", &joined.member_id, None, 1), None);
    assert_eq!(
        c.heartbeat("g", &joined.member_id, None, 0),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat("g", "nobody", None, 1),
        Some(ResponseError::UnknownMemberId)
    );
    c.leave("g", &[(joined.member_id.clone(), None)]).unwrap();
    let described = c.describe("g").unwrap();
    assert_eq!(described.state, GroupState::Empty);
    assert_eq!(
        described.protocol_type, "consumer",
        "kept from the last members"
    );
}

#[tokio::test]
async fn second_member_triggers_a_rebalance_with_a_common_protocol() {
    let c = coordinator();
    let a = join_fully(&c, &["cooperative-sticky", "range"]).await;
    c.sync(sync_request(&a.member_id, 1)).await;
    let c2 = c.clone();
    let b_task = tokio::spawn(async move { join_fully(&c2, &["range"]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        c.heartbeat("g", &a.member_id, None, 1),
        Some(ResponseError::RebalanceInProgress)
    );
    let a2 = c
        .join(join_request(&a.member_id, &["cooperative-sticky", "range"]))
        .await;
    let b = b_task.await.unwrap();
    assert_eq!((a2.generation_id, b.generation_id), (2, 2));
    assert_eq!(a2.protocol_name.as_deref(), Some("range"));
    assert_eq!(a2.leader, a.member_id);
    assert_eq!(a2.members.len(), 2);
    assert!(b.members.is_empty());
}

#[tokio::test]
async fn offsets_of_empty_groups_expire() {
    let old = committed(3);
    let fresh = CommittedOffset {
        commit_timestamp: 9_000,
        ..committed(3)
    };
    let old = CommittedOffset {
        commit_timestamp: 1_000,
        ..old
    };
    let c = coordinator();
    c.record_offsets(
        "idle",
        &[
            (("t".into(), 0), Some(old.clone())),
            (("t".into(), 1), Some(fresh)),
        ],
    );
    let joined = join_fully(&c, &["range"]).await;
    c.record_offsets("g", &[(("t".into(), 0), Some(old))]);
    assert_eq!(
        c.expired_offsets(10_000, 5_000),
        vec![("idle".to_string(), vec![("t".to_string(), 0)])]
    );
    c.leave("g", &[(joined.member_id, None)]).unwrap();
    assert_eq!(c.expired_offsets(10_000, 5_000).len(), 2);
}

/// A stable group of static members "a" (the leader) and "b", generation 2, with
/// assignments "pa" and "pb". Returns their member ids.
async fn stable_static_pair(c: &Arc<GroupCoordinator>) -> (String, String) {
    let a = c.join(static_join("a", "")).await;
    c.sync(SyncRequest {
        assignments: vec![(a.member_id.clone(), Bytes::from_static(b"pa"))],
        ..sync_request(&a.member_id, 1)
    })
    .await;
    let c2 = c.clone();
    let b = tokio::spawn(async move { c2.join(static_join("b", "")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a2 = c.join(static_join("a", &a.member_id)).await;
    let b = b.await.unwrap();
    assert_eq!(
        (a2.generation_id, a2.leader.clone()),
        (2, a.member_id.clone())
    );
    let (sa, sb) = tokio::join!(
        c.sync(SyncRequest {
            assignments: vec![
                (a.member_id.clone(), Bytes::from_static(b"pa")),
                (b.member_id.clone(), Bytes::from_static(b"pb")),
            ],
            ..sync_request(&a.member_id, 2)
        }),
        c.sync(sync_request(&b.member_id, 2))
    );
    assert_eq!(
        (sa.assignment, sb.assignment),
        (Bytes::from_static(b"pa"), Bytes::from_static(b"pb"))
    );
    (a.member_id, b.member_id)
}

#[tokio::test]
async fn a_restarted_static_leader_causes_no_rebalance() {
    let c = coordinator();
    let (a, b) = stable_static_pair(&c).await;
    // The leader restarts with the same instance id: new member id, same generation.
    let restarted = c.join(static_join("a", "")).await;
    assert_eq!(restarted.error, None);
    assert_eq!(restarted.generation_id, 2);
    assert_ne!(restarted.member_id, a);
    assert_eq!(restarted.leader, restarted.member_id);
    assert!(restarted.skip_assignment);
    assert_eq!(restarted.members.len(), 2);
    assert_eq!(
        c.heartbeat("g", &b, Some("b"), 2),
        None,
        "the follower sees no rebalance"
    );
    let synced = c.sync(sync_request(&restarted.member_id, 2)).await;
    assert_eq!(synced.assignment, Bytes::from_static(b"pa"));
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
}

#[tokio::test]
async fn before_kip_814_a_restarted_static_leader_is_told_its_old_id_leads() {
    let c = coordinator();
    let (a, _) = stable_static_pair(&c).await;
    let restarted = c
        .join(JoinRequest {
            supports_skip_assignment: false,
            ..static_join("a", "")
        })
        .await;
    assert_eq!(restarted.error, None);
    assert_eq!(restarted.leader, a, "so it does not assign");
    assert!(restarted.members.is_empty() && !restarted.skip_assignment);
}

#[tokio::test]
async fn a_second_consumer_with_the_same_instance_id_fences_the_first() {
    let c = coordinator();
    let (a, b) = stable_static_pair(&c).await;
    let newer = c.join(static_join("b", "")).await;
    assert_eq!((newer.error, newer.generation_id), (None, 2));
    assert_ne!(newer.member_id, b);
    let fenced = Some(ResponseError::FencedInstanceId);
    assert_eq!(c.heartbeat("g", &b, Some("b"), 2), fenced);
    let sync = c
        .sync(SyncRequest {
            group_instance_id: Some("b".into()),
            ..sync_request(&b, 2)
        })
        .await;
    assert_eq!(sync.error, fenced);
    let commit = Committer {
        member_id: &b,
        group_instance_id: Some("b"),
        generation: 2,
    };
    assert_eq!(c.check_commit("g", commit).err(), fenced);
    assert_eq!(c.join(static_join("b", &b)).await.error, fenced);
    assert_eq!(
        c.leave("g", &[(b.clone(), Some("b".into()))]),
        Ok(vec![fenced])
    );
    // Without its instance id the old member is simply unknown.
    assert_eq!(
        c.heartbeat("g", &b, None, 2),
        Some(ResponseError::UnknownMemberId)
    );
    // The newer one owns the old place and its assignment; nobody else rebalanced.
    assert_eq!(c.heartbeat("g", &newer.member_id, Some("b"), 2), None);
    assert_eq!(c.heartbeat("g", &a, Some("a"), 2), None);
    let synced = c
        .sync(SyncRequest {
            group_instance_id: Some("b".into()),
            ..sync_request(&newer.member_id, 2)
        })
        .await;
    assert_eq!(synced.assignment, Bytes::from_static(b"pb"));
}

#[tokio::test]
async fn a_replaced_static_member_waiting_in_sync_is_fenced() {
    let c = coordinator();
    let (a, b) = stable_static_pair(&c).await;
    // A rebalance: both rejoin, then b waits for the leader's assignment.
    let c2 = c.clone();
    let a_rejoin = tokio::spawn(async move { c2.join(static_join("a", &a)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b_rejoin = c.join(static_join("b", &b)).await;
    assert_eq!(a_rejoin.await.unwrap().generation_id, 3);
    let c3 = c.clone();
    let b_id = b.clone();
    let waiting = tokio::spawn(async move {
        c3.sync(SyncRequest {
            group_instance_id: Some("b".into()),
            ..sync_request(&b_id, b_rejoin.generation_id)
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c4 = c.clone();
    tokio::spawn(async move { c4.join(static_join("b", "")).await });
    let fenced = waiting.await.unwrap();
    assert_eq!(fenced.error, Some(ResponseError::FencedInstanceId));
}

#[tokio::test]
async fn transactional_commits_check_the_member_and_generation_when_given() {
    let c = coordinator();
    fn commit(member_id: &str, generation: i32) -> Committer<'_> {
        Committer {
            member_id,
            group_instance_id: None,
            generation,
        }
    }
    // A group without members: any producer may commit offsets in a transaction.
    assert_eq!(c.check_txn_commit("g", commit("", -1)), Ok(()));
    let a = join_fully(&c, &["range"]).await;
    c.sync(sync_request(&a.member_id, 1)).await;
    let member = a.member_id.as_str();
    assert_eq!(c.check_txn_commit("g", commit(member, 1)), Ok(()));
    // Without member and generation (producers before KIP-447), still accepted.
    assert_eq!(c.check_txn_commit("g", commit("", -1)), Ok(()));
    assert_eq!(
        c.check_txn_commit("g", commit(member, 0)),
        Err(ResponseError::IllegalGeneration),
        "a zombie from an older generation"
    );
    assert_eq!(
        c.check_txn_commit("g", commit("someone-else", 1)),
        Err(ResponseError::UnknownMemberId)
    );
}

#[tokio::test]
async fn commits_follow_kafkas_generation_and_state_rules() {
    let c = coordinator();
    let a = join_fully(&c, &["range"]).await;
    fn commit(member_id: &str, generation: i32) -> Committer<'_> {
        Committer {
            member_id,
            group_instance_id: None,
            generation,
        }
    }
    assert_eq!(
        c.check_commit("g", commit(&a.member_id, 1)),
        Err(ResponseError::RebalanceInProgress),
        "CompletingRebalance"
    );
    c.sync(sync_request(&a.member_id, 1)).await;
    assert_eq!(c.check_commit("g", commit(&a.member_id, 1)), Ok(()));
    // A second member starts a rebalance: the current member still commits.
    let c2 = c.clone();
    let b = tokio::spawn(async move { join_fully(&c2, &["range"]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::PreparingRebalance
    );
    assert_eq!(c.check_commit("g", commit(&a.member_id, 1)), Ok(()));
    assert_eq!(
        c.check_commit("g", commit(&a.member_id, 0)),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        c.check_commit("g", commit("", -1)),
        Err(ResponseError::UnknownMemberId),
        "an admin commit to a live group"
    );
    c.join(join_request(&a.member_id, &["range"])).await;
    let b = b.await.unwrap();
    c.leave("g", &[(a.member_id.clone(), None), (b.member_id, None)])
        .unwrap();
    assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
    assert_eq!(c.check_commit("g", commit("", -1)), Ok(()));
    assert_eq!(c.check_commit("new-group", commit("", -1)), Ok(()));
    assert_eq!(
        c.check_commit("new-group", commit("m", 1)),
        Err(ResponseError::IllegalGeneration)
    );
}

#[tokio::test]
async fn a_full_group_refuses_new_members() {
    let c = coordinator_with(GroupConfig {
        max_size: 1,
        ..config()
    });
    join_fully(&c, &["range"]).await;
    let second = c.join(join_request("", &["range"])).await;
    assert_eq!(second.error, Some(ResponseError::GroupMaxSizeReached));
}

#[tokio::test]
async fn member_ids_never_used_expire_and_leave_no_group_behind() {
    let c = coordinator();
    let mut request = join_request("", &["range"]);
    request.session_timeout_ms = 10;
    assert_eq!(
        c.join(request).await.error,
        Some(ResponseError::MemberIdRequired)
    );
    assert_eq!(c.list().len(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.expire_sessions();
    c.expire_sessions();
    assert!(c.list().is_empty());
}

#[tokio::test]
async fn bad_joins_get_kafkas_errors() {
    let c = coordinator();
    let mut r = join_request("", &["range"]);
    r.session_timeout_ms = 1;
    assert_eq!(
        c.join(r).await.error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    let mut r = join_request("", &["range"]);
    r.group_id = String::new();
    assert_eq!(c.join(r).await.error, Some(ResponseError::InvalidGroupId));
    assert_eq!(
        c.join(join_request("made-up", &["range"])).await.error,
        Some(ResponseError::UnknownMemberId)
    );
    let mut r = join_request("", &[]);
    r.protocol_type = "consumer".into();
    assert_eq!(
        c.join(r).await.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(c.delete("nope"), Err(ResponseError::GroupIdNotFound));
}

#[tokio::test]
async fn offset_delete_follows_the_groups_subscription() {
    let c = coordinator();
    assert_eq!(
        c.offset_delete_check("g"),
        Err(ResponseError::GroupIdNotFound)
    );
    c.record_offsets("g", &[(("t".into(), 0), Some(committed(1)))]);
    assert_eq!(c.offset_delete_check("g"), Ok(Some(Default::default())));
    let mut connect = join_request("", &["default"]);
    connect.protocol_type = "connect".into();
    connect.require_known_member_id = false;
    c.join(connect).await;
    assert_eq!(
        c.offset_delete_check("g"),
        Err(ResponseError::NonEmptyGroup)
    );
}
