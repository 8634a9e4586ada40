"""End to end, the way a user meets Strom: `helm install` the chart (Helm v4 SDK), apply a
KafkaCluster (with a SCRAM listener and ACLs), a KafkaTopic and a KafkaUser, produce and consume
through the bootstrap Service from client pods (one logging in with the user's Secret), grow the topic, delete a broker pod, scale the brokers 3 -> 4 -> 3, uninstall. Works against
any cluster in KUBECONFIG whose nodes have the images (see e2e/run)."""

import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from kafka_checks import wait_until  # noqa: E402
from kube import apply, get, items, kubectl  # noqa: E402
IMAGE = os.environ.get("STROM_IMAGE", "localhost/strom:dev")
OPERATOR_IMAGE = os.environ.get("STROM_OPERATOR_IMAGE", "localhost/strom-operator:dev")
CLIENT_IMAGE = os.environ.get("STROM_CLIENT_IMAGE", "localhost/strom-kcat:dev")
OPERATOR_NS = "strom-system"
CLUSTER = "e2e"
TOPIC = "events"
RECORDS = 2000


def ready(kind, name, namespace, timeout=400):
    def check():
        obj = get(kind, name, namespace)
        for c in (obj or {}).get("status", {}).get("conditions", []):
            if c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == obj["metadata"]["generation"]:
                return obj
        return None

    try:
        return wait_until(check, timeout, f"{kind}/{name} Ready", interval=2)
    except AssertionError:
        print(json.dumps((get(kind, name, namespace) or {}).get("status"), indent=2))
        print(kubectl("-n", namespace, "get", "pods", "-o", "wide", check=False))
        raise


def client(namespace, script, env=()):
    """Runs a shell script in a one-off client pod (kcat on Debian) and returns its output;
    `$B` is the bootstrap address, `env` more environment entries. The output is read from the
    finished pod's log: attaching to a running pod can miss its first lines."""
    name = f"kcat-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "kcat",
                    "image": CLIENT_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "env": [{"name": "B", "value": f"{CLUSTER}-bootstrap:9092"}, *env],
                }
            ],
        },
    }
    apply(pod, namespace)
    try:
        phase = wait_until(
            lambda: (get("pod", name, namespace) or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")
            and get("pod", name, namespace)["status"]["phase"],
            240, f"client pod {name} to finish", interval=2,
        )
        logs = kubectl("-n", namespace, "logs", name)
        assert phase == "Succeeded", f"client pod failed: {logs}"
        return logs
    finally:
        kubectl("-n", namespace, "delete", "pod", name, "--wait=false", check=False)


def consume_all(namespace):
    out = client(namespace, f"kcat -b $B -C -t {TOPIC} -o beginning -e -q -f '%s\\n'")
    return [int(line) for line in out.split() if line.strip()]


def set_brokers(namespace, n):
    patch = [{"op": "replace", "path": "/spec/pools/1/replicas", "value": n}]
    kubectl("-n", namespace, "patch", "kafkacluster", CLUSTER, "--type=json", "-p", json.dumps(patch))


def chart_for_this_cluster(tmp_path):
    """The chart, or for an API server older than 1.25 a copy whose CRDs lack their CEL rules:
    such a server ignores them on create, but Helm's server-side apply is refused for the
    undeclared field. tests/crds runs the rules on a 1.37 API server."""
    chart = ROOT / "charts" / "strom"
    minor = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["minor"]
    if int(minor.rstrip("+")) >= 25:
        return chart
    copy = tmp_path / "strom"
    shutil.copytree(chart, copy)

    def strip(node):
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    for path in (copy / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        strip(crd)
        path.write_text(yaml.safe_dump(crd))
    print(f"API server 1.{minor}: the chart's CRDs are installed without their CEL rules")
    return copy


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The chart installed with the Helm v4 SDK; uninstalled (and checked gone) afterwards."""
    repository, tag = OPERATOR_IMAGE.rsplit(":", 1)
    config = helm.Config(namespace=OPERATOR_NS)
    config.install(
        str(chart_for_this_cluster(tmp_path_factory.mktemp("chart"))),
        "strom",
        {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            "brokerImage": IMAGE,
            "logFormat": "text",
        },
        namespace=OPERATOR_NS,
        create_namespace=True,
        wait="watcher",
        timeout=240,
    )
    yield config
    config.uninstall("strom", wait="watcher", timeout=120)
    wait_until(lambda: get("deployment", "strom", OPERATOR_NS) is None, 120, "the operator Deployment gone", interval=2)
    kubectl("delete", "namespace", OPERATOR_NS, "--timeout=120s", check=False)


def lease_holder():
    """The operator replica that holds the chart's leader-election Lease."""
    lease = get("lease", "strom", OPERATOR_NS)
    return (lease or {}).get("spec", {}).get("holderIdentity")


@pytest.fixture(scope="module")
def namespace(release):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("-n", name, "delete", "kafkatopics,kafkausers", "--all", "--timeout=60s", check=False)
    kubectl("delete", "namespace", name, "--timeout=240s", check=False)


def test_install_apply_produce_fail_scale(release, namespace):
    status = release.status("strom")
    assert status["status"] == "deployed", status
    deployment = get("deployment", "strom", OPERATOR_NS)
    assert deployment["status"].get("readyReplicas") == 2, "two operator replicas run from the chart"
    operator_pods = [p["metadata"]["name"] for p in items("pods", OPERATOR_NS, "app.kubernetes.io/name=strom-operator")]
    leader = wait_until(lambda: lease_holder(), 60, "an operator replica to take the Lease", interval=2)
    assert leader in operator_pods, (leader, operator_pods)

    cluster = yaml.safe_load((ROOT / "examples" / "dedicated.yaml").read_text())
    cluster["metadata"]["name"] = CLUSTER
    pools = cluster["spec"]["pools"]
    pools[0]["replicas"] = 1
    for pool in pools:
        pool.pop("resources", None)
        pool["storage"] = {"size": "1Gi", "deleteClaim": True}
    cluster["spec"]["image"] = IMAGE
    cluster["spec"]["config"]["broker.session.timeout.ms"] = "3000"
    cluster["spec"]["config"]["broker.heartbeat.interval.ms"] = "500"
    # A SCRAM listener beside the plaintext one, and ACLs; anonymous plaintext clients stay
    # allowed everything as super users.
    cluster["spec"]["listeners"].append({"name": "SCRAM", "port": 9094, "authentication": "scram-sha-512"})
    cluster["spec"]["authorization"] = {"type": "simple", "superUsers": ["User:ANONYMOUS"]}
    apply(cluster, namespace)
    apply(
        {"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": TOPIC},
         "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 3, "replicationFactor": 3}},
        namespace,
    )
    ready("kafkacluster", CLUSTER, namespace)
    ready("kafkatopic", TOPIC, namespace, timeout=120)

    # A KafkaUser's Secret gives a client pod its SCRAM login: it may write its topic only.
    apply(
        {"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": "audit"},
         "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 3}},
        namespace,
    )
    apply(
        {"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "writer"},
         "spec": {"clusterRef": {"name": CLUSTER}, "authentication": {"type": "scram-sha-512"},
                  "authorization": {"acls": [{"resource": {"type": "topic", "name": "audit"},
                                              "operations": ["Write", "Describe"]}]}}},
        namespace,
    )
    ready("kafkatopic", "audit", namespace, timeout=120)
    ready("kafkauser", "writer", namespace, timeout=120)
    login = (
        f"-b {CLUSTER}-bootstrap:9094 -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=SCRAM-SHA-512"
        " -X sasl.username=writer -X sasl.password=\"$P\" -X message.timeout.ms=15000"
    )
    password = {"name": "P", "valueFrom": {"secretKeyRef": {"name": "writer", "key": "password"}}}
    out = client(
        namespace,
        f"echo allowed | kcat {login} -P -t audit -X acks=all && echo WROTE-AUDIT;"
        f" echo refused | kcat {login} -P -t {TOPIC} 2>&1; true",
        env=[password],
    )
    assert "WROTE-AUDIT" in out, out
    # The refused record never lands: the topic holds exactly the writer's numbers below.
    assert "authoriz" in out.lower(), out
    audit = client(namespace, "kcat -b $B -C -t audit -o beginning -e -q -f '%s\\n'")
    assert audit.split() == ["allowed"], audit

    client(namespace, f"seq 0 {RECORDS - 1} | kcat -b $B -P -t {TOPIC} -X acks=all")
    assert sorted(consume_all(namespace)) == list(range(RECORDS))

    kubectl("-n", namespace, "patch", "kafkatopic", TOPIC, "--type=merge", "-p", '{"spec":{"partitions":6}}')
    ready("kafkatopic", TOPIC, namespace, timeout=120)
    metadata = client(namespace, f"kcat -b $B -L -t {TOPIC}")
    assert f'topic "{TOPIC}" with 6 partitions' in metadata, metadata

    kubectl("-n", namespace, "delete", "pod", f"{CLUSTER}-brokers-0", "--wait=true")
    wait_until(
        lambda: (get("pod", f"{CLUSTER}-brokers-0", namespace) or {}).get("status", {}).get("phase") == "Running",
        180, "the broker pod back", interval=2,
    )
    ready("kafkacluster", CLUSTER, namespace)
    assert sorted(consume_all(namespace)) == list(range(RECORDS)), "nothing acknowledged was lost"

    # The leading operator replica goes; the standby takes the Lease and does the scaling.
    kubectl("-n", OPERATOR_NS, "delete", "pod", leader, "--wait=false")
    wait_until(lambda: lease_holder() not in (None, leader), 120, "the standby operator to lead", interval=2)
    set_brokers(namespace, 4)
    time.sleep(3)
    ready("kafkacluster", CLUSTER, namespace)
    assert get("kafkacluster", CLUSTER, namespace)["status"]["readyBrokers"] == 4
    set_brokers(namespace, 3)
    time.sleep(3)
    ready("kafkacluster", CLUSTER, namespace)
    wait_until(lambda: get("pod", f"{CLUSTER}-brokers-3", namespace) is None, 180, "the fourth broker gone", interval=2)
    assert sorted(consume_all(namespace)) == list(range(RECORDS)), "nothing lost across 3 -> 4 -> 3"
