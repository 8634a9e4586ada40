"""Fixtures for the operator suite: a real Kubernetes API server from KUBECONFIG, the CRDs,
strom-operator running as a local process, and a namespace per test module.

Kafka clients and the operator resolve the cluster's Service and pod names, so the suite runs
where those resolve: in the local cluster's network namespace (`ip netns exec strom-k8s`).
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from kafka_checks import FAST, wait_until  # noqa: E402
from kube import get, kubectl  # noqa: E402
from process import stop  # noqa: E402

OPERATOR_BIN = Path(os.environ.get("OPERATOR_BIN", ROOT / "target" / "debug" / "strom-operator"))
IMAGE = os.environ.get("STROM_IMAGE", "localhost/strom:dev")

# Fast failover, and topics replicated three times by default.
CLUSTER_CONFIG = {**FAST, "default.replication.factor": "3", "min.insync.replicas": "2"}


def condition(obj, kind):
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c
    return None


def wait_condition(kind, name, namespace, cond, status, timeout, reason=None):
    """Waits until the resource reports `cond` = `status` for its current generation."""

    def check():
        obj = get(kind, name, namespace)
        c = condition(obj, cond)
        if c is None or c["status"] != status:
            return None
        if c.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        if reason is not None and c["reason"] != reason:
            return None
        return obj

    try:
        return wait_until(check, timeout, f"{kind}/{name} {cond}={status}", interval=1)
    except AssertionError:
        obj = get(kind, name, namespace)
        print(json.dumps((obj or {}).get("status"), indent=2))
        raise


def cluster_manifest(name, brokers=3, config=None, controllers=3):
    """`controllers` controllers and `brokers` brokers on persistent claims from the default class."""
    return {
        "apiVersion": "strom.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "pools": [
                {"name": "controllers", "roles": ["controller"], "replicas": controllers, "storage": {"size": "1Gi"}},
                {
                    "name": "brokers",
                    "roles": ["broker"],
                    "replicas": brokers,
                    "storage": {"size": "1Gi", "deleteClaim": True},
                },
            ],
            "config": {**CLUSTER_CONFIG, **(config or {})},
        },
    }


LEASE = "strom-operator-suite"
LEASE_SECONDS = 6


class Operator:
    """A strom-operator process with leader election on (a short Lease in `default`) and its
    own metrics port and log."""

    def __init__(self, log, identity, port):
        self.log = log
        self.identity = identity
        self.port = port
        self.proc = None

    def start(self):
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [
                    str(OPERATOR_BIN), "--metrics-listener", f"127.0.0.1:{self.port}", "--default-image", IMAGE,
                    "--leader-election-namespace", "default", "--leader-election-lease", LEASE,
                    "--leader-election-identity", self.identity,
                    "--leader-election-lease-seconds", str(LEASE_SECONDS),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, 30, f"operator {self.identity}'s /readyz")
        return self

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def leading(self):
        return "strom_operator_leader 1" in self.metrics().splitlines()

    def stop(self, sig=signal.SIGTERM):
        stop(self.proc, sig)
        self.proc = None


@pytest.fixture(scope="session")
def operator(tmp_path_factory):
    """Applies the CRDs and runs strom-operator against the cluster until the session ends."""
    # The 1.20 test cluster predates CEL: its kubectl refuses the CRDs' x-kubernetes-validations
    # as unknown and its API server drops them. tests/crds runs the rules on a current server.
    kubectl("apply", "--validate=false", "-f", str(ROOT / "crds"))
    for crd in ("kafkaclusters", "kafkanodepools", "kafkatopics", "kafkausers"):
        kubectl("wait", "--for=condition=Established", f"crd/{crd}.strom.dev", "--timeout=60s")
    # A Lease left by an earlier run would make the first start wait for its expiry.
    kubectl("-n", "default", "delete", "lease", LEASE, "--ignore-not-found")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(log, "suite", 18080).start()
    wait_until(op.leading, 30, "the operator to lead")
    yield op
    op.stop()
    print(f"operator log: {log}\n" + "".join(open(log).readlines()[-30:]))




@pytest.fixture(scope="module")
def namespace(operator):
    """A fresh namespace, deleted with everything in it after the module."""
    name = f"op-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    # KafkaTopics and KafkaUsers carry a finalizer the running operator removes; delete them first.
    kubectl("-n", name, "delete", "kafkatopics,kafkausers", "--all", "--timeout=60s", check=False)
    kubectl("delete", "namespace", name, "--timeout=180s", check=False, timeout=200)
