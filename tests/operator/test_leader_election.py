"""Leader election between two strom-operator replicas on one Lease: the standby does nothing
while the leader lives, takes over when the leader is killed, and gets the Lease at once when
a leader shuts down cleanly."""

import json
import signal
import uuid

from conftest import LEASE, Operator, condition, wait_condition
from kube import apply, get, kubectl
from kafka_checks import wait_until


def holder():
    lease = get("lease", LEASE, "default")
    return (lease or {}).get("spec", {}).get("holderIdentity")


def reconciles(op):
    """How many KafkaTopic reconciles `op` has run."""
    for line in op.metrics().splitlines():
        if line.startswith('strom_operator_reconciliations_total{controller="kafkatopic"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_one_replica_leads_and_a_standby_takes_over(namespace, operator, tmp_path):
    standby = Operator(tmp_path / "standby.log", "standby", 18081).start()
    try:
        assert holder() == operator.identity
        assert not standby.leading()
        # A topic of a cluster that does not exist: only the leader reports it.
        name = f"orphan-{uuid.uuid4().hex[:6]}"
        apply({"apiVersion": "strom.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": name},
               "spec": {"clusterRef": {"name": "nowhere"}, "partitions": 1, "replicationFactor": 1}}, namespace)
        wait_condition("kafkatopic", name, namespace, "Ready", "False", timeout=60, reason="ClusterNotFound")
        assert reconciles(standby) == 0, "the standby reconciled"

        operator.stop(signal.SIGKILL)
        wait_until(lambda: holder() == "standby", 30, "the standby to take the Lease")
        wait_until(standby.leading, 10, "the standby to lead")
        kubectl("-n", namespace, "patch", "kafkatopic", name, "--type=merge",
                "-p", json.dumps({"spec": {"partitions": 2}}))
        obj = wait_condition("kafkatopic", name, namespace, "Ready", "False", timeout=60, reason="ClusterNotFound")
        assert condition(obj, "Ready")["observedGeneration"] == 2
        assert reconciles(standby) > 0

        # The suite's operator comes back as the standby; a clean stop of the leader hands
        # the Lease over without waiting for it to expire.
        operator.start()
        assert holder() == "standby" and not operator.leading()
        standby.stop()
        wait_until(lambda: holder() == operator.identity, 10, "the Lease handed back on a clean stop")
        wait_until(operator.leading, 10, "the suite's operator to lead again")
        lease = get("lease", LEASE, "default")
        assert lease["spec"]["leaseTransitions"] >= 2
        kubectl("-n", namespace, "delete", "kafkatopic", name, "--timeout=60s")
    finally:
        standby.stop(signal.SIGKILL)
        if operator.proc is None:
            operator.start()
