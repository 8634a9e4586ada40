"""kafka-metadata-quorum describe (DescribeQuorum): the leader, its epoch and high watermark, and
each voter's progress, as the tool prints them, on a single node and on three; brokers that
are not voters as observers."""

import re
import time

from broker import BROKER_BIN
from cluster import Cluster
from tools import Target, admin_tool, retry


def status(target):
    out = admin_tool("metadata-quorum", target, "describe", "--status").stdout
    return dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M))


def replication(target):
    """The --replication table (tab-separated, padded with blanks): one dict per row."""
    out = admin_tool("metadata-quorum", target, "describe", "--replication").stdout
    rows = [[c.strip() for c in line.split("\t")] for line in out.splitlines() if line.strip()]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_status_and_replication(target):
    voters = target.broker_ids
    described = status(target)
    assert int(described["LeaderId"]) in voters
    assert int(described["LeaderEpoch"]) >= 1
    assert int(described["HighWatermark"]) > 0
    assert [int(v) for v in re.findall(r'"id": (\d+)', described["CurrentVoters"])] == voters
    endpoints = re.findall(r'"endpoints": \["CONTROLLER://127\.0\.0\.1:\d+"\]', described["CurrentVoters"])
    assert len(endpoints) == len(voters), described["CurrentVoters"]
    assert described["CurrentObservers"] == "[]", "every broker here is also a voter"

    def caught_up():
        rows = replication(target)
        assert sorted(int(r["NodeId"]) for r in rows) == voters
        assert [r["Status"] for r in rows].count("Leader") == 1
        assert all(r["Status"] in ("Leader", "Follower") for r in rows)
        assert all(r["Lag"] == "0" for r in rows), rows
        ends = {int(r["LogEndOffset"]) for r in rows}
        assert len(ends) == 1 and ends.pop() > 0, rows
        now_ms = time.time() * 1000
        for r in rows:
            for column in ("LastFetchTimestamp", "LastCaughtUpTimestamp"):
                assert abs(int(r[column]) - now_ms) < 60_000, (column, rows)
        leader = next(r for r in rows if r["Status"] == "Leader")
        return int(leader["NodeId"])

    assert retry(caught_up, 30, "every voter to hold the leader's log end") == int(status(target)["LeaderId"])

    def no_lag():
        described = status(target)
        assert described["MaxFollowerLag"] == "0", described
        # The leader's clock now minus the caught-up time of the first voter with the least log
        # end: the age of that voter's last answer (every 100 ms) when it is a follower.
        assert 0 <= int(described["MaxFollowerLagTimeMs"]) < 5000, described

    retry(no_lag, 30, "no follower lag in --status")


def test_brokers_are_observers(tmp_path):
    """With a dedicated controller, the brokers are the quorum's observers: each with the
    metadata offset it applied at its last heartbeat, which is also its last fetch."""
    cluster = Cluster(BROKER_BIN, tmp_path, controllers=1, brokers=2).start()
    try:
        target = Target("dedicated", cluster.bootstrap, [n.id for n in cluster.brokers], 1)

        def observed():
            rows = replication(target)
            assert [(int(r["NodeId"]), r["Status"]) for r in rows] == [(1, "Leader"), (2, "Observer"),
                                                                      (3, "Observer")], rows
            leader_end = int(rows[0]["LogEndOffset"])
            now_ms = time.time() * 1000
            for r in rows[1:]:
                assert 0 < int(r["LogEndOffset"]) <= leader_end, rows
                assert abs(int(r["LastFetchTimestamp"]) - now_ms) < 60_000, rows

        retry(observed, 30, "both brokers to heartbeat to the controller")
        described = status(target)
        assert described["LeaderId"] == "1"
        assert [int(v) for v in re.findall(r'"id": (\d+)', described["CurrentObservers"])] == [2, 3]
    finally:
        cluster.shutdown()
