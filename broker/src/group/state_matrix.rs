//! The classic group protocol's answers pinned cell by cell: every request (JoinGroup v4+,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit) from every kind of caller in every group
//! state, against what Kafka's group coordinator answers (`GroupMetadataManager`,
//! `ClassicGroup.validateMember` and `validateOffsetCommit`). OffsetFetch is not here: for
//! classic groups Kafka checks no member or generation on it.
//!
//! Cells: an error code, `0` for success, `now` for a JoinGroup answered at once with the
//! current generation, `park` for a request that waits (a JoinGroup for the join phase, a
//! follower's SyncGroup for the leader).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::classic::Joined;
use super::tests::{committed, coordinator, join_fully, static_join, sync_request};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// No group at all.
    Missing,
    /// Known only by committed offsets (a "simple" group).
    Simple,
    Empty,
    Preparing,
    Completing,
    Stable,
}

const STATES: [State; 6] = [
    State::Missing,
    State::Simple,
    State::Empty,
    State::Preparing,
    State::Completing,
    State::Stable,
];

#[derive(Debug, Clone, Copy)]
enum Caller {
    /// The dynamic member (the leader), current generation.
    DynamicCurrent,
    /// The dynamic member with the previous generation.
    DynamicStale,
    /// A member id the group does not know.
    DynamicUnknown,
    /// Member id "", a current generation.
    DynamicEmpty,
    /// The static member ("inst") with its current member id.
    StaticCurrent,
    /// Instance "inst" with another member id: a replaced, fenced member.
    StaticFenced,
    /// An instance id the group does not know.
    StaticUnknown,
    /// Member id "" with instance "inst", generation -1 (an admin removal, a restart).
    StaticNoId,
    /// Member id "", generation -1, no instance: admin tools.
    Admin,
    /// The dynamic member's id with generation -1.
    AdminWithMember,
}

const CALLERS: [Caller; 10] = [
    Caller::DynamicCurrent,
    Caller::DynamicStale,
    Caller::DynamicUnknown,
    Caller::DynamicEmpty,
    Caller::StaticCurrent,
    Caller::StaticFenced,
    Caller::StaticUnknown,
    Caller::StaticNoId,
    Caller::Admin,
    Caller::AdminWithMember,
];

/// The expected answers, one row per (state, caller): JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup, OffsetCommit.
#[rustfmt::skip]
const EXPECTED: [[[&str; 5]; 10]; 6] = [
    // Missing          join    sync  heartbeat leave commit
    [
        /* D-cur    */ ["25",   "25", "25", "25", "22"],
        /* D-stale  */ ["25",   "25", "25", "25", "22"],
        /* D-unk    */ ["25",   "25", "25", "25", "22"],
        /* D-empty  */ ["79",   "25", "25", "25", "22"],
        /* S-cur    */ ["25",   "25", "25", "25", "22"],
        /* S-fenced */ ["25",   "25", "25", "25", "22"],
        /* S-unk    */ ["25",   "25", "25", "25", "22"],
        /* S-no-id  */ ["park", "25", "25", "25", "0"],
        /* admin    */ ["79",   "25", "25", "25", "0"],
        /* admin+m  */ ["25",   "25", "25", "25", "0"],
    ],
    // Simple (offsets only)
    [
        /* D-cur    */ ["25",   "25", "25", "25", "25"],
        /* D-stale  */ ["25",   "25", "25", "25", "25"],
        /* D-unk    */ ["25",   "25", "25", "25", "25"],
        /* D-empty  */ ["79",   "25", "25", "25", "25"],
        /* S-cur    */ ["25",   "25", "25", "25", "25"],
        /* S-fenced */ ["25",   "25", "25", "25", "25"],
        /* S-unk    */ ["25",   "25", "25", "25", "25"],
        /* S-no-id  */ ["park", "25", "25", "25", "0"],
        /* admin    */ ["79",   "25", "25", "25", "0"],
        /* admin+m  */ ["25",   "25", "25", "25", "0"],
    ],
    // Empty (members left)
    [
        /* D-cur    */ ["25",   "25", "25", "25", "25"],
        /* D-stale  */ ["25",   "25", "25", "25", "25"],
        /* D-unk    */ ["25",   "25", "25", "25", "25"],
        /* D-empty  */ ["79",   "25", "25", "25", "25"],
        /* S-cur    */ ["25",   "25", "25", "25", "25"],
        /* S-fenced */ ["25",   "25", "25", "25", "25"],
        /* S-unk    */ ["25",   "25", "25", "25", "25"],
        /* S-no-id  */ ["park", "25", "25", "25", "0"],
        /* admin    */ ["79",   "25", "25", "25", "0"],
        /* admin+m  */ ["25",   "25", "25", "25", "0"],
    ],
    // PreparingRebalance
    [
        /* D-cur    */ ["park", "27", "27", "0",  "0"],
        /* D-stale  */ ["park", "22", "22", "0",  "22"],
        /* D-unk    */ ["25",   "25", "25", "25", "25"],
        /* D-empty  */ ["79",   "25", "25", "25", "25"],
        /* S-cur    */ ["park", "27", "27", "0",  "0"],
        /* S-fenced */ ["82",   "82", "82", "82", "82"],
        /* S-unk    */ ["25",   "25", "25", "25", "25"],
        /* S-no-id  */ ["park", "82", "82", "0",  "82"],
        /* admin    */ ["79",   "25", "25", "25", "25"],
        /* admin+m  */ ["park", "22", "22", "0",  "22"],
    ],
    // CompletingRebalance
    [
        /* D-cur    */ ["now",  "0",    "0",  "0",  "27"],
        /* D-stale  */ ["now",  "22",   "22", "0",  "22"],
        /* D-unk    */ ["25",   "25",   "25", "25", "25"],
        /* D-empty  */ ["79",   "25",   "25", "25", "25"],
        /* S-cur    */ ["now",  "park", "0",  "0",  "27"],
        /* S-fenced */ ["82",   "82",   "82", "82", "82"],
        /* S-unk    */ ["25",   "25",   "25", "25", "25"],
        /* S-no-id  */ ["park", "82",   "82", "0",  "82"],
        /* admin    */ ["79",   "25",   "25", "25", "25"],
        /* admin+m  */ ["now",  "22",   "22", "0",  "22"],
    ],
    // Stable
    [
        /* D-cur    */ ["park", "0",  "0",  "0",  "0"],
        /* D-stale  */ ["park", "22", "22", "0",  "22"],
        /* D-unk    */ ["25",   "25", "25", "25", "25"],
        /* D-empty  */ ["79",   "25", "25", "25", "25"],
        /* S-cur    */ ["now",  "0",  "0",  "0",  "0"],
        /* S-fenced */ ["82",   "82", "82", "82", "82"],
        /* S-unk    */ ["25",   "25", "25", "25", "25"],
        /* S-no-id  */ ["now",  "82", "82", "0",  "82"],
        /* admin    */ ["79",   "25", "25", "25", "25"],
        /* admin+m  */ ["park", "22", "22", "0",  "22"],
    ],
];

const REQUESTS: [&str; 5] = [
    "JoinGroup",
    "SyncGroup",
    "Heartbeat",
    "LeaveGroup",
    "OffsetCommit",
];

/// A group in `state`: the dynamic member leads, the static member "inst" follows.
struct Fixture {
    c: Arc<GroupCoordinator>,
    dynamic: String,
    static_id: String,
    generation: i32,
}

async fn fixture(state: State) -> Fixture {
    let c = coordinator();
    let mut f = Fixture {
        c: c.clone(),
        dynamic: "gone-dynamic".into(),
        static_id: "gone-static".into(),
        generation: 1,
    };
    match state {
        State::Missing => return f,
        State::Simple => {
            c.record_offsets("g", &[(("t".into(), 0), Some(committed(5)))]);
            return f;
        }
        _ => {}
    }
    // Stable at generation 2 with both members.
    let d = join_fully(&c, &["range"]).await;
    c.sync(sync_request(&d.member_id, 1)).await;
    let c2 = c.clone();
    let s = tokio::spawn(async move { c2.join(static_join("inst", "")).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let d2 = c
        .join(super::tests::join_request(&d.member_id, &["range"]))
        .await;
    let s = s.await.unwrap();
    assert_eq!(
        (d2.generation_id, s.generation_id, d2.leader.as_str()),
        (2, 2, d.member_id.as_str())
    );
    let (_, synced) = tokio::join!(
        c.sync(sync_request(&d.member_id, 2)),
        c.sync(SyncRequest {
            group_instance_id: Some("inst".into()),
            ..sync_request(&s.member_id, 2)
        })
    );
    assert_eq!(synced.error, None);
    f.dynamic = d.member_id.clone();
    f.static_id = s.member_id.clone();
    f.generation = 2;
    match state {
        State::Stable => {}
        State::Preparing => {
            // The leader rejoins; the static member has not yet.
            let c2 = c.clone();
            let id = d.member_id.clone();
            tokio::spawn(async move { c2.join(super::tests::join_request(&id, &["range"])).await });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        State::Completing => {
            let c2 = c.clone();
            let id = d.member_id.clone();
            let leader =
                tokio::spawn(
                    async move { c2.join(super::tests::join_request(&id, &["range"])).await },
                );
            tokio::time::sleep(Duration::from_millis(10)).await;
            let follower = c.join(static_join("inst", &s.member_id)).await;
            assert_eq!(leader.await.unwrap().generation_id, 3);
            f.generation = follower.generation_id;
        }
        State::Empty => {
            c.leave(
                "g",
                &[
                    (d.member_id.clone(), None),
                    (s.member_id.clone(), Some("inst".into())),
                ],
            )
            .unwrap();
            f.generation = 3;
        }
        State::Missing | State::Simple => unreachable!("returned above"),
    }
    let expected = match state {
        State::Empty => GroupState::Empty,
        State::Preparing => GroupState::PreparingRebalance,
        State::Completing => GroupState::CompletingRebalance,
        _ => GroupState::Stable,
    };
    assert_eq!(
        c.describe("g").unwrap().state,
        expected,
        "fixture {state:?}"
    );
    f
}

impl Fixture {
    /// (member id, instance id, generation) of a caller.
    fn caller(&self, caller: Caller) -> (String, Option<String>, i32) {
        let inst = Some("inst".to_string());
        match caller {
            Caller::DynamicCurrent => (self.dynamic.clone(), None, self.generation),
            Caller::DynamicStale => (self.dynamic.clone(), None, self.generation - 1),
            Caller::DynamicUnknown => ("nobody".into(), None, self.generation),
            Caller::DynamicEmpty => (String::new(), None, self.generation),
            Caller::StaticCurrent => (self.static_id.clone(), inst, self.generation),
            Caller::StaticFenced => ("inst-replaced".into(), inst, self.generation),
            Caller::StaticUnknown => ("stranger".into(), Some("other".into()), self.generation),
            Caller::StaticNoId => (String::new(), inst, -1),
            Caller::Admin => (String::new(), None, -1),
            Caller::AdminWithMember => (self.dynamic.clone(), None, -1),
        }
    }
}

fn code(error: Option<ResponseError>) -> String {
    error.map_or("0".to_string(), |e| e.code().to_string())
}

async fn answer(state: State, caller: Caller, request: usize) -> String {
    let f = fixture(state).await;
    let (member_id, instance, generation) = f.caller(caller);
    match REQUESTS[request] {
        "JoinGroup" => {
            let join = JoinRequest {
                group_instance_id: instance,
                ..super::tests::join_request(&member_id, &["range"])
            };
            match f.c.join_now(&join) {
                Joined::Now(r) if r.error.is_none() => "now".into(),
                Joined::Now(r) => code(r.error),
                Joined::Later(_) => "park".into(),
            }
        }
        "SyncGroup" => {
            let sync = SyncRequest {
                group_instance_id: instance,
                assignments: vec![(f.dynamic.clone(), Bytes::from_static(b"x"))],
                ..sync_request(&member_id, generation)
            };
            match f.c.sync_now(sync) {
                Ok(r) => code(r.error),
                Err(_) => "park".into(),
            }
        }
        "Heartbeat" => code(f.c.heartbeat("g", &member_id, instance.as_deref(), generation)),
        "LeaveGroup" => match f.c.leave("g", &[(member_id, instance)]) {
            Ok(errors) => code(errors[0]),
            Err(e) => format!("top-level {}", e.code()),
        },
        "OffsetCommit" => code(
            f.c.check_commit(
                "g",
                Committer {
                    member_id: &member_id,
                    group_instance_id: instance.as_deref(),
                    generation,
                },
            )
            .err(),
        ),
        other => unreachable!("{other}"),
    }
}

#[tokio::test]
async fn every_request_from_every_caller_in_every_state_answers_as_kafka() {
    let mut mismatches = Vec::new();
    for (s, state) in STATES.iter().enumerate() {
        for (c, caller) in CALLERS.iter().enumerate() {
            for (r, request) in REQUESTS.iter().enumerate() {
                let got = answer(*state, *caller, r).await;
                let want = EXPECTED[s][c][r];
                if got != want {
                    mismatches.push(format!(
                        "{state:?} {caller:?} {request}: got {got}, Kafka {want}"
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
