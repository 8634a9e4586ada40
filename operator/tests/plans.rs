//! Roll order, partition moves for scaling, and KafkaTopic validation (pure steps).

use std::collections::{BTreeMap, BTreeSet};

use strom_client::{ClusterView, PartitionView, TopicView};
use strom_operator::cluster::plan::{
    balance_plan, cluster_ready, drain_plan, next_roll, PodState, PoolReadiness, Quorum, RollStep,
};
use strom_operator::crd::KafkaTopic;
use strom_operator::topic;

fn pod(name: &str, node_id: i32, controller: bool, outdated: bool) -> PodState {
    PodState {
        name: name.into(),
        pool: if controller { "c" } else { "b" }.into(),
        node_id,
        controller,
        ready: true,
        outdated,
        terminating: false,
        restart_requested: false,
    }
}

/// Three voters, all caught up, with `active` the active controller.
fn quorum(active: i32) -> Quorum {
    Quorum {
        active: Some(active),
        caught_up: BTreeSet::from([0, 1, 2]),
        voters: 3,
    }
}

/// Controllers 0-2 (1 active) and brokers 1000-1001, all outdated.
fn dedicated_pods() -> Vec<PodState> {
    vec![
        pod("c-0", 0, true, true),
        pod("c-1", 1, true, true),
        pod("c-2", 2, true, true),
        pod("b-0", 1000, false, true),
        pod("b-1", 1001, false, true),
    ]
}

fn restart(step: RollStep) -> String {
    match step {
        RollStep::Restart {
            pod, evict: true, ..
        } => pod,
        other => panic!("expected a restart, got {other:?}"),
    }
}

#[test]
fn roll_goes_controllers_first_active_controller_last_then_brokers() {
    let mut pods = dedicated_pods();
    let mut order = Vec::new();
    for _ in 0..pods.len() {
        let next = restart(next_roll(&pods, &quorum(1), Some(0)));
        order.push(next.clone());
        pods.iter_mut().find(|p| p.name == next).unwrap().outdated = false;
    }
    assert_eq!(order, ["c-0", "c-2", "c-1", "b-0", "b-1"]);
    assert_eq!(next_roll(&pods, &quorum(1), Some(0)), RollStep::Done);
}

#[test]
fn roll_waits_for_ready_pods_and_full_replication() {
    let mut pods = dedicated_pods();
    assert!(
        matches!(next_roll(&pods, &quorum(1), Some(2)), RollStep::Wait(r) if r.contains("2 partitions are under-replicated"))
    );
    assert!(matches!(
        next_roll(&pods, &quorum(1), None),
        RollStep::Wait(_)
    ));
    pods[3].outdated = false;
    pods[3].ready = false;
    assert!(
        matches!(next_roll(&pods, &quorum(1), Some(0)), RollStep::Wait(r) if r.contains("b-0 is not Ready"))
    );
    pods[3].ready = true;
    pods[4].terminating = true;
    assert!(
        matches!(next_roll(&pods, &quorum(1), Some(0)), RollStep::Wait(r) if r.contains("b-1 is terminating"))
    );
}

#[test]
fn an_outdated_pod_that_is_not_ready_goes_first() {
    let mut pods = dedicated_pods();
    pods[4].ready = false;
    // Even with partitions under-replicated: the pod serves nobody, so it is deleted rather
    // than evicted (the disruption budget already counts it as down).
    assert!(matches!(
        next_roll(&pods, &quorum(1), Some(3)),
        RollStep::Restart { pod, evict: false, .. } if pod == "b-1"
    ));
    // With a second pod down (every node goes unready when the quorum is lost) nothing goes.
    pods[0].ready = false;
    assert!(
        matches!(next_roll(&pods, &quorum(1), Some(3)), RollStep::Wait(r) if r.contains("is not Ready"))
    );
}

#[test]
fn a_controller_waits_for_a_known_leader_and_a_caught_up_majority() {
    let pods = dedicated_pods();
    let unknown = Quorum {
        active: None,
        ..quorum(1)
    };
    assert!(
        matches!(next_roll(&pods, &unknown, Some(0)), RollStep::Wait(r) if r.contains("no controller reports an active controller"))
    );
    // Controller 2 trails: restarting 0 would leave only the leader caught up.
    let lagging = Quorum {
        caught_up: BTreeSet::from([0, 1]),
        ..quorum(1)
    };
    assert!(
        matches!(next_roll(&pods, &lagging, Some(0)), RollStep::Wait(r) if r.contains("would leave 1 of 3 voters caught up"))
    );
    // One or two voters cannot keep a quorum through a restart: nothing to wait for.
    let two = Quorum {
        caught_up: BTreeSet::from([1]),
        voters: 2,
        ..quorum(1)
    };
    let pair: Vec<PodState> = pods.iter().filter(|p| p.node_id <= 1).cloned().collect();
    assert_eq!(restart(next_roll(&pair, &two, Some(0))), "c-0");
    // Brokers roll without asking the quorum.
    let brokers: Vec<PodState> = pods.into_iter().filter(|p| !p.controller).collect();
    assert_eq!(restart(next_roll(&brokers, &unknown, Some(0))), "b-0");
}

#[test]
fn the_manual_restart_annotation_restarts_one_pod_in_order() {
    let mut pods = dedicated_pods();
    for p in &mut pods {
        p.outdated = false;
    }
    assert_eq!(next_roll(&pods, &quorum(1), Some(0)), RollStep::Done);
    pods[4].restart_requested = true;
    assert!(matches!(
        next_roll(&pods, &quorum(1), Some(0)),
        RollStep::Restart { pod, reason, evict: true } if pod == "b-1" && reason.contains("annotation")
    ));
}

fn view(partitions: &[(&str, &[i32])]) -> ClusterView {
    let mut topics: BTreeMap<String, TopicView> = BTreeMap::new();
    for (topic, replicas) in partitions {
        let t = topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicView {
                id: "id".into(),
                partitions: vec![],
            });
        t.partitions.push(PartitionView {
            index: t.partitions.len() as i32,
            leader: replicas[0],
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
        });
    }
    ClusterView {
        brokers: BTreeMap::new(),
        controller: 0,
        topics,
    }
}

fn apply_moves(view: &mut ClusterView, moves: &[strom_client::Reassignment]) {
    for m in moves {
        let p = &mut view.topics.get_mut(&m.topic).unwrap().partitions[m.partition as usize];
        p.replicas = m.replicas.clone();
    }
}

#[test]
fn draining_moves_every_replica_off_the_leaving_broker_in_place() {
    let mut v = view(&[
        ("a", &[3, 0, 1]),
        ("a", &[0, 3, 2]),
        ("a", &[1, 2, 0]),
        ("b", &[2, 3]),
    ]);
    let leaving = BTreeSet::from([3]);
    let staying = BTreeSet::from([0, 1, 2]);
    let moves = drain_plan(&v, &leaving, &staying).unwrap();
    assert_eq!(
        moves.len(),
        3,
        "only partitions on broker 3 move: {moves:?}"
    );
    assert_eq!(
        moves[0].replicas,
        vec![2, 0, 1],
        "the preferred leader is replaced in place"
    );
    apply_moves(&mut v, &moves);
    assert_eq!(v.replicas_on(3), 0);
    for (_, p) in v.partitions() {
        let unique: BTreeSet<_> = p.replicas.iter().collect();
        assert_eq!(
            unique.len(),
            p.replicas.len(),
            "no broker twice: {:?}",
            p.replicas
        );
    }
}

#[test]
fn draining_below_the_replication_factor_is_refused() {
    let v = view(&[("a", &[0, 1, 2])]);
    let err = drain_plan(&v, &BTreeSet::from([2]), &BTreeSet::from([0, 1])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a-0 has 3 replicas but only 2 brokers would stay"
    );
}

#[test]
fn balancing_fills_a_new_broker_until_counts_differ_by_at_most_one() {
    let layout: Vec<(&str, &[i32])> = vec![
        ("a", &[0, 1, 2]),
        ("a", &[1, 2, 0]),
        ("a", &[2, 0, 1]),
        ("b", &[0, 1, 2]),
        ("b", &[1, 2, 0]),
        ("b", &[2, 0, 1]),
    ];
    let mut v = view(&layout);
    let brokers = BTreeSet::from([0, 1, 2, 3]);
    let moves = balance_plan(&v, &brokers);
    assert!(!moves.is_empty());
    apply_moves(&mut v, &moves);
    let counts: Vec<usize> = brokers.iter().map(|b| v.replicas_on(*b)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 18);
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    for (_, p) in v.partitions() {
        assert_eq!(
            p.replicas.iter().collect::<BTreeSet<_>>().len(),
            3,
            "{:?}",
            p.replicas
        );
    }
    assert!(
        balance_plan(&v, &brokers).is_empty(),
        "a balanced cluster needs no moves"
    );
}

fn topic_fixture() -> KafkaTopic {
    let path = format!("{}/tests/fixtures/topic.yaml", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn existing(partitions: usize, factor: usize) -> TopicView {
    TopicView {
        id: "id".into(),
        partitions: (0..partitions as i32)
            .map(|i| PartitionView {
                index: i,
                leader: 0,
                replicas: (0..factor as i32).collect(),
                isr: (0..factor as i32).collect(),
            })
            .collect(),
    }
}

#[test]
fn topic_config_removed_from_the_spec_is_reset() {
    let valid = topic::validate(&topic_fixture(), Some(&existing(6, 3))).unwrap();
    assert_eq!(valid.name, "orders");
    assert_eq!(valid.removed_config, vec!["cleanup.policy".to_string()]);
    assert_eq!(valid.config["retention.ms"], "86400000");
}

#[test]
fn topic_partitions_never_shrink_and_the_name_and_factor_are_fixed() {
    let t = topic_fixture();
    let err = topic::validate(&t, Some(&existing(8, 3))).unwrap_err().0;
    assert!(
        err.contains("partitions cannot decrease: the topic has 8"),
        "{err}"
    );
    let err = topic::validate(&t, Some(&existing(6, 2))).unwrap_err().0;
    assert!(err.contains("replicationFactor cannot change"), "{err}");
    let mut renamed = t.clone();
    renamed.spec.topic_name = Some("orders-v2".into());
    let err = topic::validate(&renamed, None).unwrap_err().0;
    assert!(err.contains("topicName cannot change"), "{err}");
    let mut bad = t;
    bad.status = None;
    bad.spec.topic_name = Some("no spaces allowed".into());
    assert!(topic::validate(&bad, None).is_err());
}

#[test]
fn a_topic_this_resource_did_not_create_is_adopted_only_when_asked() {
    let mut t = topic_fixture();
    t.status.as_mut().unwrap().topic_id = None;
    let err = topic::validate(&t, Some(&existing(6, 3))).unwrap_err().0;
    assert!(
        err.contains(
            "already exists in Kafka and this KafkaTopic did not create it; set adopt: true"
        ),
        "{err}"
    );
    t.status.as_mut().unwrap().topic_id = Some("older".into());
    let err = topic::validate(&t, Some(&existing(6, 3))).unwrap_err().0;
    assert!(err.contains("has id id, not older"), "{err}");
    t.spec.adopt = true;
    assert!(topic::validate(&t, Some(&existing(6, 3))).is_ok());
}

fn pool_readiness(name: &str, desired: i32, replicas: i32, ready: i32) -> PoolReadiness {
    PoolReadiness {
        name: name.into(),
        desired,
        replicas,
        ready,
        settled: true,
    }
}

#[test]
fn ready_needs_every_pool_settled_full_and_ready_and_full_replication() {
    let pools = vec![
        pool_readiness("controllers", 3, 3, 3),
        pool_readiness("brokers", 3, 3, 3),
    ];
    assert_eq!(cluster_ready(&pools, &[], &[], Some(0)), Ok(()));
    let why = |pools: &[PoolReadiness], removing: &[String], progress: &[String], ur| {
        cluster_ready(pools, removing, progress, ur).unwrap_err()
    };
    assert_eq!(
        why(&pools, &[], &["rolling restart waits".into()], Some(0)),
        "rolling restart waits"
    );
    assert_eq!(
        why(&pools, &["old".into()], &[], Some(0)),
        "pool old is being removed"
    );
    let mut unsettled = pools.clone();
    unsettled[1].settled = false;
    assert!(
        why(&unsettled, &[], &[], Some(0)).contains("pool brokers has not taken its latest spec")
    );
    let growing = vec![pools[0].clone(), pool_readiness("brokers", 4, 3, 3)];
    assert_eq!(
        why(&growing, &[], &[], Some(0)),
        "pool brokers runs 3 of 4 pods"
    );
    let starting = vec![pools[0].clone(), pool_readiness("brokers", 3, 3, 2)];
    assert_eq!(
        why(&starting, &[], &[], Some(0)),
        "pool brokers has 2 of 3 pods Ready"
    );
    assert_eq!(
        why(&pools, &[], &[], Some(4)),
        "4 partitions are under-replicated"
    );
    assert!(why(&pools, &[], &[], None).contains("cannot be reached"));
}
