"""strom-operator against a real API server: created objects and status, invalid specs,
KafkaTopic over the Kafka protocol, a rolling restart on a spec change, and scaling brokers
3 -> 4 -> 3 with data flowing, checked with real Kafka clients."""

import json
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import ROOT, cluster_manifest, condition, wait_condition
from kube import apply, get, items, kubectl
from kafka_checks import Writer, assert_no_loss, wait_until
from ports import free_port

CLUSTER = "demo"
ZONE_LABEL = "topology.kubernetes.io/zone"
ZONE = "zone-test"


@pytest.fixture(scope="module")
def cluster(namespace):
    """A Ready, rack-aware KafkaCluster: three controllers, three brokers, racks from the
    nodes' zone label (set here; cloud providers set it on real nodes)."""
    nodes = kubectl("get", "nodes", "-o", "name").split()
    for node in nodes:
        kubectl("label", node, f"{ZONE_LABEL}={ZONE}", "--overwrite")
    manifest = cluster_manifest(CLUSTER)
    manifest["spec"]["rack"] = {"topologyKey": ZONE_LABEL}
    apply(manifest, namespace)
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=240)
    yield f"{CLUSTER}-bootstrap.{namespace}.svc.cluster.local:9092"
    for node in nodes:
        kubectl("label", node, f"{ZONE_LABEL}-", check=False)


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_partitions(bootstrap, topic):
    # Listing every topic: asking Metadata for this one name would auto-create it.
    md = admin(bootstrap).list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p.id: list(p.replicas) for p in t.partitions.values()}


def topic_config(bootstrap, topic, key):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(bootstrap)  # the client must outlive its futures
    configs = client.describe_configs([resource])[resource].result(timeout=10)
    return configs[key].value


def replicas_on(bootstrap, broker):
    md = admin(bootstrap).list_topics(timeout=10)
    return sum(broker in p.replicas for t in md.topics.values() for p in t.partitions.values())


def topic_manifest(name, partitions, config=None, topic_name=None):
    spec = {"clusterRef": {"name": CLUSTER}, "partitions": partitions, "replicationFactor": 3}
    if config:
        spec["config"] = config
    if topic_name:
        spec["topicName"] = topic_name
    return {"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": name}, "spec": spec}


def test_an_invalid_spec_is_a_condition_and_changes_nothing(namespace):
    bad = cluster_manifest("broken", config={"node.id": "7"})
    bad["spec"]["pools"][0]["storage"] = {"type": "ephemeral"}
    apply(bad, namespace)
    obj = wait_condition("kafkacluster", "broken", namespace, "Degraded", "True", timeout=60, reason="InvalidSpec")
    message = condition(obj, "Degraded")["message"]
    assert 'config key "node.id" is set by the operator' in message
    assert "controllers need persistent storage" in message
    assert condition(obj, "Ready")["status"] == "False"
    assert items("statefulsets", namespace, "app.kubernetes.io/instance=broken") == []
    assert items("configmaps", namespace, "app.kubernetes.io/instance=broken") == []
    events = items("events", namespace)
    assert any(e.get("reason") == "InvalidSpec" for e in events), "an InvalidSpec event is recorded"
    kubectl("-n", namespace, "delete", "kafkacluster", "broken")


def test_a_kubernetes_error_is_a_condition_and_an_event(namespace):
    refused = cluster_manifest("refused", brokers=1, controllers=1)
    refused["spec"]["pools"][1]["template"] = {"annotations": {"not a valid key!": "x"}}
    apply(refused, namespace)
    obj = wait_condition("kafkacluster", "refused", namespace, "Degraded", "True", timeout=90, reason="ReconcileFailed")
    message = condition(obj, "Degraded")["message"]
    assert "reconcile failed and is retried" in message and "not a valid key!" in message, message
    events = items("events", namespace)
    assert any(e.get("reason") == "ReconcileFailed" for e in events), "a ReconcileFailed event is recorded"
    # A topic of that cluster cannot reach any broker: that is on the KafkaTopic too.
    topic = topic_manifest("unreachable", 1)
    topic["spec"]["clusterRef"]["name"] = "refused"
    apply(topic, namespace)
    obj = wait_condition("kafkatopic", "unreachable", namespace, "Ready", "False", timeout=90, reason="ReconcileFailed")
    assert "cannot reach" in condition(obj, "Ready")["message"], condition(obj, "Ready")["message"]
    kubectl("-n", namespace, "delete", "kafkatopic", "unreachable", "--timeout=60s")
    kubectl("-n", namespace, "delete", "kafkacluster", "refused")


def test_cluster_objects_and_status(namespace, cluster, operator):
    obj = get("kafkacluster", CLUSTER, namespace)
    status = obj["status"]
    voters = ",".join(
        f"{i}@{CLUSTER}-controllers-{i}.{CLUSTER}-nodes.{namespace}.svc.cluster.local:9093" for i in range(3)
    )
    assert status["quorumVoters"] == voters
    assert status["readyBrokers"] == 3 and status["desiredBrokers"] == 3
    assert status["controllerLeader"] in (0, 1, 2)
    assert status["bootstrap"] == cluster
    assert {p["name"]: p["readyReplicas"] for p in status["pools"]} == {"controllers": 3, "brokers": 3}
    assert {p["name"]: p["nodeIds"] for p in status["pools"]} == {"controllers": [0, 1, 2], "brokers": [1000, 1001, 1002]}
    for c in ("Ready", "Progressing", "Degraded"):
        assert condition(obj, c)["observedGeneration"] == obj["metadata"]["generation"]

    uid = obj["metadata"]["uid"]
    for kind, name in [
        ("statefulset", f"{CLUSTER}-controllers"),
        ("statefulset", f"{CLUSTER}-brokers"),
        ("service", f"{CLUSTER}-nodes"),
        ("service", f"{CLUSTER}-bootstrap"),
        ("configmap", f"{CLUSTER}-config"),
        ("poddisruptionbudget", CLUSTER),
    ]:
        o = get(kind, name, namespace)
        assert o is not None, f"{kind}/{name} exists"
        owners = o["metadata"].get("ownerReferences", [])
        assert [r["uid"] for r in owners] == [uid], f"{kind}/{name} is owned by the cluster"
        managers = {m["manager"] for m in o["metadata"].get("managedFields", []) if m["operation"] == "Apply"}
        assert managers == {"strom-operator"}, f"{kind}/{name} is server-side applied: {managers}"

    config = get("configmap", f"{CLUSTER}-config", namespace)["data"]
    assert f"controller.quorum.voters={voters}" in config["brokers.properties"].splitlines()
    assert "process.roles=controller" in config["controllers.properties"].splitlines()
    brokers = get("statefulset", f"{CLUSTER}-brokers", namespace)
    assert brokers["spec"]["updateStrategy"]["type"] == "OnDelete"
    assert get("service", f"{CLUSTER}-nodes", namespace)["spec"]["clusterIP"] == "None"
    claims = items("pvc", namespace, f"app.kubernetes.io/instance={CLUSTER}")
    assert sorted(c["metadata"]["name"] for c in claims) == [
        f"data-{CLUSTER}-brokers-{i}" for i in range(3)
    ] + [f"data-{CLUSTER}-controllers-{i}" for i in range(3)]
    assert all(c["status"]["phase"] == "Bound" for c in claims)

    client = admin(cluster)  # the client must outlive its futures
    described = client.describe_cluster(request_timeout=10).result(timeout=20)
    assert {n.id: n.rack for n in described.nodes} == {i: ZONE for i in (1000, 1001, 1002)}
    node_names = {p["spec"]["nodeName"] for p in items("pods", namespace, "strom.dev/pool=brokers")}
    assert config["racks.properties"].splitlines() == [f"{n}={ZONE}" for n in sorted(node_names)]

    md = admin(cluster).list_topics(timeout=10)
    assert sorted(md.brokers) == [1000, 1001, 1002]
    offsets = md.topics["__consumer_offsets"]
    assert all(len(p.replicas) == 3 for p in offsets.partitions.values()), "offsets are replicated 3 times"

    metrics = operator.metrics()
    assert 'strom_operator_reconciliations_total{controller="kafkacluster"}' in metrics
    assert 'strom_operator_managed_resources{kind="KafkaCluster"}' in metrics


def test_topic_is_created_grown_guarded_and_deleted(namespace, cluster):
    name = f"orders-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(name, 3, {"retention.ms": "3600000"}), namespace)
    obj = wait_condition("kafkatopic", name, namespace, "Ready", "True", timeout=60)
    assert obj["status"]["topicName"] == name
    assert len(obj["status"]["topicId"]) == 36
    partitions = topic_partitions(cluster, name)
    assert sorted(partitions) == [0, 1, 2]
    assert all(len(r) == 3 for r in partitions.values())
    assert topic_config(cluster, name, "retention.ms") == "3600000"

    apply(topic_manifest(name, 5, {"retention.ms": "7200000"}), namespace)
    wait_condition("kafkatopic", name, namespace, "Ready", "True", timeout=60)
    assert sorted(topic_partitions(cluster, name)) == [0, 1, 2, 3, 4]
    assert topic_config(cluster, name, "retention.ms") == "7200000"

    apply(topic_manifest(name, 2, {"retention.ms": "7200000"}), namespace)
    obj = wait_condition("kafkatopic", name, namespace, "Ready", "False", timeout=60, reason="InvalidSpec")
    assert "partitions cannot decrease: the topic has 5" in condition(obj, "Ready")["message"]
    assert len(topic_partitions(cluster, name)) == 5, "nothing was removed"

    apply(topic_manifest(name, 5), namespace)
    wait_condition("kafkatopic", name, namespace, "Ready", "True", timeout=60)
    assert topic_config(cluster, name, "retention.ms") != "7200000", "a removed key goes back to its default"

    kubectl("-n", namespace, "delete", "kafkatopic", name, "--timeout=60s")
    wait_until(lambda: topic_partitions(cluster, name) is None, 30, f"topic {name} deleted in Kafka")


def test_kafka_errors_ownership_and_the_keep_policy(namespace, cluster):
    too_wide = f"wide-{uuid.uuid4().hex[:6]}"
    manifest = topic_manifest(too_wide, 1)
    manifest["spec"]["replicationFactor"] = 7
    apply(manifest, namespace)
    obj = wait_condition("kafkatopic", too_wide, namespace, "Ready", "False", timeout=60, reason="KafkaError")
    assert "InvalidReplicationFactor" in condition(obj, "Ready")["message"], condition(obj, "Ready")["message"]
    kubectl("-n", namespace, "delete", "kafkatopic", too_wide, "--timeout=60s")

    # A topic made outside the operator is not taken over, nor deleted with the resource.
    outside = f"outside-{uuid.uuid4().hex[:6]}"
    client = admin(cluster)
    client.create_topics([NewTopic(outside, 2, 3)])[outside].result(timeout=30)
    apply(topic_manifest(outside, 2), namespace)
    obj = wait_condition("kafkatopic", outside, namespace, "Ready", "False", timeout=60, reason="InvalidSpec")
    assert "did not create it; set adopt: true" in condition(obj, "Ready")["message"]
    kubectl("-n", namespace, "delete", "kafkatopic", outside, "--timeout=60s")
    assert topic_partitions(cluster, outside) is not None, "a topic the resource never managed stays"

    # Adopted, then kept in Kafka when the resource goes.
    adopted = topic_manifest(outside, 3)
    adopted["spec"].update({"adopt": True, "deletionPolicy": "keep"})
    apply(adopted, namespace)
    wait_condition("kafkatopic", outside, namespace, "Ready", "True", timeout=60)
    assert sorted(topic_partitions(cluster, outside)) == [0, 1, 2]
    kubectl("-n", namespace, "delete", "kafkatopic", outside, "--timeout=60s")
    time.sleep(3)
    assert sorted(topic_partitions(cluster, outside)) == [0, 1, 2], "deletionPolicy: keep leaves the topic"


def pods(namespace):
    return {
        p["metadata"]["name"]: p
        for p in items("pods", namespace, f"app.kubernetes.io/instance={CLUSTER}")
    }


def is_ready(pod):
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


class PodWatch:
    """Samples the cluster's pods twice a second; records the most pods ever down at once, the
    order in which pods were recreated, and the active controller the KafkaCluster's status
    named when each pod was first seen going down."""

    def __init__(self, namespace, expected):
        self.namespace = namespace
        self.expected = set(expected)
        self.max_down = 0
        self.samples = 0
        self.recreated = []
        self.leader_when_down = {}
        self._uids = {n: p["metadata"]["uid"] for n, p in pods(namespace).items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            cluster = get("kafkacluster", CLUSTER, self.namespace) or {}
            leader = cluster.get("status", {}).get("controllerLeader")
            current = pods(self.namespace)
            down = 0
            for name in self.expected:
                p = current.get(name)
                if p is None or p["metadata"].get("deletionTimestamp") or not is_ready(p):
                    down += 1
                    self.leader_when_down.setdefault(name, leader)
                if p is not None and p["metadata"]["uid"] != self._uids.get(name) and name not in self.recreated:
                    self.recreated.append(name)
            self.max_down = max(self.max_down, down)
            self.samples += 1
            time.sleep(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_config_change_rolls_one_pod_at_a_time_without_loss(namespace, cluster, operator):
    """Controllers first with the active one last, then brokers; the operator is killed
    mid-roll and, started again, resumes where the roll stood."""
    topic = f"roll-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(topic, 3), namespace)
    wait_condition("kafkatopic", topic, namespace, "Ready", "True", timeout=60)
    controllers = [f"{CLUSTER}-controllers-{i}" for i in range(3)]
    brokers = [f"{CLUSTER}-brokers-{i}" for i in range(3)]
    writer = Writer(cluster, topic, 3, rate=200).start()
    wait_until(lambda: writer.acknowledged() > 100, 60, "first acknowledgements")
    with PodWatch(namespace, controllers + brokers) as watch:
        kubectl(
            "-n", namespace, "patch", "kafkacluster", CLUSTER, "--type=merge",
            "-p", json.dumps({"spec": {"config": {"log.retention.ms": "86400000"}}}),
        )
        wait_until(lambda: len(watch.recreated) >= 2, 300, "the roll under way")
        operator.stop(signal.SIGKILL)
        time.sleep(3)
        operator.start()
        # The condition settles only after every pod runs the new revision.
        time.sleep(2)
        wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=600)
    writer.stop()
    order = watch.recreated
    assert sorted(order[:3]) == controllers and order[3:] == brokers, \
        f"controllers, then brokers in order: {order}"
    # Leadership may move while a controller restarts (to one already rolled, say), so the
    # check is that no controller went down while it was active and others had yet to roll.
    for name in order[:2]:
        assert int(name.rsplit("-", 1)[1]) != watch.leader_when_down.get(name), \
            f"{name} went down while active: {order}, active when each went down: {watch.leader_when_down}"
    assert watch.max_down <= 1, f"{watch.max_down} pods were down at once"
    assert not writer.errors, writer.errors[:5]
    seen = assert_no_loss(writer, cluster)
    print(f"roll: {watch.samples} samples, {writer.acknowledged()} records acknowledged, "
          f"{sum(len(v) for v in seen.values())} read back")
    events = items("events", namespace)
    # Repeats of an event are counted in one series.
    restarts = sum(e.get("count") or 1 for e in events if e.get("reason") == "RollingRestart")
    assert restarts >= 4, f"{restarts} RollingRestart events"


def test_brokers_scale_up_then_down_without_loss(namespace, cluster, operator):
    topic = f"scale-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(topic, 6), namespace)
    wait_condition("kafkatopic", topic, namespace, "Ready", "True", timeout=60)
    writer = Writer(cluster, topic, 6, rate=200).start()
    wait_until(lambda: writer.acknowledged() > 100, 60, "first acknowledgements")

    def set_brokers(n):
        patch = [{"op": "replace", "path": "/spec/pools/1/replicas", "value": n}]
        kubectl("-n", namespace, "patch", "kafkacluster", CLUSTER, "--type=json", "-p", json.dumps(patch))

    set_brokers(4)
    time.sleep(2)
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    held = replicas_on(cluster, 1003)
    assert held > 0, "partitions were rebalanced onto the new broker"
    assert get("kafkacluster", CLUSTER, namespace)["status"]["readyBrokers"] == 4

    leaving = f"{CLUSTER}-brokers-3"
    violations = []
    stop = threading.Event()

    def watch_shrink():
        # Once the StatefulSet shrinks, the leaving broker must already be empty.
        while not stop.is_set():
            sts = get("statefulset", f"{CLUSTER}-brokers", namespace)
            if sts["spec"]["replicas"] == 3:
                n = replicas_on(cluster, 1003)
                if n:
                    violations.append(n)
                return
            time.sleep(0.3)

    watcher = threading.Thread(target=watch_shrink, daemon=True)
    watcher.start()
    drains = operator.log.read_text().count("before pool brokers shrinks to 3")
    set_brokers(3)
    # Killed mid-drain, the operator started again finishes the drain before the shrink.
    wait_until(lambda: operator.log.read_text().count("before pool brokers shrinks to 3") > drains, 120,
               "the drain under way")
    operator.stop(signal.SIGKILL)
    time.sleep(3)
    operator.start()
    time.sleep(2)
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    wait_until(lambda: leaving not in pods(namespace), 120, f"pod {leaving} gone")
    stop.set()
    watcher.join(timeout=10)
    assert not violations, f"the StatefulSet shrank while broker 1003 held {violations[0]} replicas"
    assert replicas_on(cluster, 1003) == 0
    wait_until(
        lambda: f"data-{leaving}" not in [c["metadata"]["name"] for c in items("pvc", namespace)],
        60,
        "the leaving broker's claim deleted (deleteClaim: true)",
    )
    writer.stop()
    assert not writer.errors, writer.errors[:5]
    seen = assert_no_loss(writer, cluster)
    print(f"scale: broker 1003 held {held} replicas; {writer.acknowledged()} acknowledged, "
          f"{sum(len(v) for v in seen.values())} read back")


def patch_cluster(namespace, patch):
    kubectl("-n", namespace, "patch", "kafkacluster", CLUSTER, "--type=json", "-p", json.dumps(patch))


def test_a_pool_reorder_is_refused_and_changes_nothing(namespace, cluster):
    generations = {
        s["metadata"]["name"]: s["metadata"]["generation"]
        for s in items("statefulsets", namespace, f"app.kubernetes.io/instance={CLUSTER}")
    }
    pools = get("kafkacluster", CLUSTER, namespace)["spec"]["pools"]
    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools", "value": [pools[1], pools[0]]}])
    obj = wait_condition("kafkacluster", CLUSTER, namespace, "Degraded", "True", timeout=60, reason="InvalidSpec")
    message = condition(obj, "Degraded")["message"]
    assert 'pool "brokers": its node ids start at 1000 since it was created' in message, message
    assert "set nodeIdStart: 1000" in message, message
    assert {p["name"]: p["nodeIdStart"] for p in obj["status"]["pools"]} == {"controllers": 0, "brokers": 1000}
    assert {
        s["metadata"]["name"]: s["metadata"]["generation"]
        for s in items("statefulsets", namespace, f"app.kubernetes.io/instance={CLUSTER}")
    } == generations, "a refused spec changes no StatefulSet"
    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools", "value": pools}])
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=120)


def test_the_manual_restart_annotation_restarts_that_pod(namespace, cluster, operator):
    name = f"{CLUSTER}-brokers-1"
    uid = pods(namespace)[name]["metadata"]["uid"]
    kubectl("-n", namespace, "annotate", "pod", name, "strom.dev/manual-rolling-update=true")

    def restarted():
        p = pods(namespace).get(name)
        return p is not None and p["metadata"]["uid"] != uid and is_ready(p)

    wait_until(restarted, 180, f"pod {name} restarted and Ready")
    assert "strom.dev/manual-rolling-update" not in pods(namespace)[name]["metadata"].get("annotations", {})
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=120)
    # Events of one pod and reason form a series that keeps its first message, so the log tells why.
    assert f"restarting pod {name}: its manual restart annotation asks for it" in operator.log.read_text()


def claim_size(claim):
    return claim["spec"]["resources"]["requests"]["storage"]


def test_storage_grows_in_place_and_never_shrinks(namespace, cluster):
    brokers = [f"{CLUSTER}-brokers-{i}" for i in range(3)]
    uids = {n: pods(namespace)[n]["metadata"]["uid"] for n in brokers}
    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools/1/storage/size", "value": "2Gi"}])

    def grown():
        claims = {c["metadata"]["name"]: claim_size(c) for c in items("pvc", namespace)}
        sts = get("statefulset", f"{CLUSTER}-brokers", namespace)
        template = sts and claim_size(sts["spec"]["volumeClaimTemplates"][0])
        return template == "2Gi" and all(claims.get(f"data-{n}") == "2Gi" for n in brokers)

    wait_until(grown, 180, "every broker claim and the claim template at 2Gi")
    time.sleep(2)
    obj = wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    assert {n: pods(namespace)[n]["metadata"]["uid"] for n in brokers} == uids, "no broker pod restarted"
    assert {p["name"]: p.get("storageSize") for p in obj["status"]["pools"]}["brokers"] == "2Gi"
    assert any(e.get("reason") == "StorageResized" for e in items("events", namespace))

    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools/1/storage/size", "value": "1Gi"}])
    obj = wait_condition("kafkacluster", CLUSTER, namespace, "Degraded", "True", timeout=60, reason="InvalidSpec")
    assert "storage size 1Gi is smaller than the claims' 2Gi" in condition(obj, "Degraded")["message"]
    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools/1/storage/size", "value": "2Gi"}])
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=120)


def test_a_removed_broker_pool_is_drained_then_deleted(namespace, cluster):
    extra = {"name": "extra", "roles": ["broker"], "replicas": 1, "nodeIdStart": 2000,
             "storage": {"size": "1Gi", "deleteClaim": True}}
    patch_cluster(namespace, [{"op": "add", "path": "/spec/pools/-", "value": extra}])
    time.sleep(2)
    wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    topic = f"pool-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(topic, 8), namespace)
    wait_condition("kafkatopic", topic, namespace, "Ready", "True", timeout=60)
    wait_until(lambda: replicas_on(cluster, 2000) > 0, 120, "replicas on broker 2000")
    held = replicas_on(cluster, 2000)
    writer = Writer(cluster, topic, 8, rate=200).start()
    wait_until(lambda: writer.acknowledged() > 100, 60, "first acknowledgements")

    pools = get("kafkacluster", CLUSTER, namespace)["spec"]["pools"]
    patch_cluster(namespace, [{"op": "replace", "path": "/spec/pools", "value": pools[:2]}])
    wait_until(lambda: get("statefulset", f"{CLUSTER}-extra", namespace) is None, 300,
               "the removed pool's StatefulSet deleted")
    wait_until(lambda: f"{CLUSTER}-extra-0" not in pods(namespace), 120, "the removed pool's pod gone")
    time.sleep(2)
    obj = wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    assert [p["name"] for p in obj["status"]["pools"]] == ["controllers", "brokers"]
    assert replicas_on(cluster, 2000) == 0
    writer.stop()
    assert not writer.errors, writer.errors[:5]
    assert_no_loss(writer, cluster)
    assert any(e.get("reason") == "PoolRemoved" for e in items("events", namespace))
    print(f"pool removal: broker 2000 held {held} replicas; {writer.acknowledged()} acknowledged")


def test_a_node_pool_scales_through_its_scale_subresource_and_leaves_when_deleted(namespace, cluster):
    pool = {"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaNodePool",
            "metadata": {"name": "pooled", "labels": {"strom.dev/cluster": CLUSTER}},
            "spec": {"roles": ["broker"], "replicas": 1, "nodeIdStart": 3000,
                     "storage": {"size": "1Gi", "deleteClaim": True}}}
    apply(pool, namespace)
    wait_condition("kafkanodepool", "pooled", namespace, "Ready", "True", timeout=300)
    wait_until(lambda: 3000 in broker_ids(cluster), 60, "broker 3000 registered")

    kubectl("-n", namespace, "scale", "kafkanodepool", "pooled", "--replicas=2")
    obj = wait_until(lambda: ready_pool(namespace, 2), 300, "the node pool at 2 Ready nodes", interval=1)
    assert obj["status"]["nodeIds"] == [3000, 3001]
    scale = json.loads(kubectl("get", "--raw",
                               f"/apis/strom.dev/v1alpha1/namespaces/{namespace}/kafkanodepools/pooled/scale"))
    assert scale["spec"]["replicas"] == 2 and scale["status"]["replicas"] == 2, scale
    selected = items("pods", namespace, scale["status"]["selector"])
    assert sorted(p["metadata"]["name"] for p in selected) == [f"{CLUSTER}-pooled-0", f"{CLUSTER}-pooled-1"]
    status = get("kafkacluster", CLUSTER, namespace)["status"]
    assert [p["name"] for p in status["pools"]] == ["controllers", "brokers", "pooled"]
    wait_until(lambda: {3000, 3001} <= broker_ids(cluster), 60, "brokers 3000 and 3001 registered")

    kubectl("-n", namespace, "delete", "kafkanodepool", "pooled")
    wait_until(lambda: get("statefulset", f"{CLUSTER}-pooled", namespace) is None, 300,
               "the deleted pool's StatefulSet deleted", interval=1)
    wait_until(lambda: not items("pods", namespace, "strom.dev/pool=pooled"), 120, "the deleted pool's pods gone",
               interval=1)
    time.sleep(2)
    obj = wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    assert [p["name"] for p in obj["status"]["pools"]] == ["controllers", "brokers"]


def broker_ids(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=10).brokers)


def ready_pool(namespace, replicas):
    obj = get("kafkanodepool", "pooled", namespace)
    status = (obj or {}).get("status", {})
    ready = condition(obj, "Ready")
    if status.get("replicas") == replicas and status.get("readyReplicas") == replicas and ready and ready["status"] == "True":
        return obj
    return None


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def dashboard_metrics():
    """Every metric name the dashboards' panel queries use, with the dashboard it is in."""
    used = {}
    for path in sorted((ROOT / "charts" / "strom" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["targets"], f"{path.name}: panel {panel['title']!r} has no query"
            for target in panel["targets"]:
                for name in re.findall(r"\b((?:strom|process)_[a-z0-9_]+)\b", target["expr"]):
                    used.setdefault(name, path.name)
    return used


def test_every_dashboard_metric_exists_in_a_live_scrape_and_promtool_accepts_it(namespace, cluster, operator):
    # Traffic, a consumer group's commits and a fetch error, so that every series exists.
    topic = f"dash-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(topic, 3), namespace)
    wait_condition("kafkatopic", topic, namespace, "Ready", "True", timeout=60)
    producer = Producer({"bootstrap.servers": cluster, "acks": "all"})
    for i in range(300):
        producer.produce(topic, value=str(i).encode(), partition=i % 3)
    assert producer.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": cluster, "group.id": "dashboards", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 60
    while read < 300 and time.monotonic() < deadline:
        read += sum(1 for m in consumer.consume(500, timeout=1) if m.error() is None)
    assert read == 300
    consumer.commit(asynchronous=False)
    consumer.close()
    stray = Consumer({"bootstrap.servers": cluster, "group.id": "out-of-range", "auto.offset.reset": "error"})
    stray.assign([TopicPartition(topic, 0, 10**9)])
    stray.consume(1, timeout=5)
    stray.close()

    texts = {}
    for name in pods(namespace):
        host = f"{name}.{CLUSTER}-nodes.{namespace}.svc.cluster.local"
        texts[name] = scrape(f"http://{host}:9644/metrics")
    texts["operator"] = operator.metrics()
    for source, text in texts.items():
        check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert check.returncode == 0, f"promtool on {source}: {check.stdout.decode()}{check.stderr.decode()}"
    names = set()
    for text in texts.values():
        names |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    missing = {
        m: board
        for m, board in dashboard_metrics().items()
        if m not in names and f"{m}_bucket" not in names
    }
    assert not missing, f"dashboard queries use metrics no live scrape has: {missing}"


def prometheus_query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def panel_queries():
    """(dashboard, panel title, expr) of every panel target, with the dashboard variables
    filled in as Grafana would for one cluster."""
    for path in sorted((ROOT / "charts" / "strom" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield path.name, panel["title"], target["expr"]


def test_a_real_prometheus_scrapes_the_cluster_and_every_panel_and_alert_rule_works(
    namespace, cluster, operator, tmp_path
):
    port = free_port()
    # The labels the chart's PodMonitor and ServiceMonitor give these targets.
    labels = {"namespace": namespace, "cluster": CLUSTER}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "charts" / "strom" / "alerts" / "strom.rules.yaml")],
        "scrape_configs": [
            {
                "job_name": "strom",
                "static_configs": [
                    {"targets": [f"{name}.{CLUSTER}-nodes.{namespace}.svc.cluster.local:9644"],
                     "labels": {**labels, "pod": name, "container": "strom"}}
                    for name in pods(namespace)
                ],
            },
            {"job_name": "operator",
             "static_configs": [{"targets": [f"127.0.0.1:{operator.port}"], "labels": {**labels, "container": "operator"}}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    topic = f"prom-{uuid.uuid4().hex[:6]}"
    apply(topic_manifest(topic, 3), namespace)
    wait_condition("kafkatopic", topic, namespace, "Ready", "True", timeout=60)
    writer = Writer(cluster, topic, 3, rate=200).start()
    stop = threading.Event()

    def consume():
        consumer = Consumer({"bootstrap.servers": cluster, "group.id": "prometheus", "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        while not stop.is_set():
            consumer.consume(500, timeout=0.5)
        consumer.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    log = open(tmp_path / "prometheus.log", "w")
    server = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def answering():
            assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                return prometheus_query(port, "up")
            except OSError:
                return None

        wait_until(answering, 60, "Prometheus answering")
        wait_until(lambda: len(prometheus_query(port, "up == 1")) == len(pods(namespace)) + 1, 60,
                   "every target scraped")
        queries = [
            (board, title, expr.replace("$namespace", namespace).replace("$cluster", CLUSTER)
             .replace("$__rate_interval", "15s"))
            for board, title, expr in panel_queries()
        ]
        empty = queries
        deadline = time.monotonic() + 90
        while empty and time.monotonic() < deadline:
            time.sleep(2)
            empty = [q for q in empty if not prometheus_query(port, q[2])]
        assert not empty, "panels without data: " + "; ".join(f"{b} / {t}: {e}" for b, t, e in empty)
        print(f"prometheus: {len(queries)} panel queries over {len(pods(namespace))} pods and the operator, all with data")

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        rules = [rule for g in groups for rule in g["rules"]]
        assert len(rules) == 5 and all(rule["health"] == "ok" for rule in rules), rules
        assert not [rule["name"] for rule in rules if rule["state"] == "firing"], "a healthy cluster fires no alert"
    finally:
        stop.set()
        reader.join(timeout=10)
        writer.stop()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
