"""ListOffsets (earliest, latest, max timestamp, by timestamp) and OffsetForLeaderEpoch after the
same produce to Apache Kafka and to Strom."""

import time
import uuid

from kafka.protocol.consumer import OffsetForLeaderEpochRequest as E

from compare import compare
from raw import Raw, create_ready_topic, list_offsets, produce_ok

# Record timestamps, relative to a base a minute ago, out of order: the maximum is not the last.
DELTAS = [0, 1000, 2000, 4000, 3000]
QUERIES = {"earliest": -2, "latest": -1, "max_timestamp": -3, "ts_before_all": -10_000, "ts_between": 1500,
           "ts_exact": 2000, "ts_max": 4000, "ts_after_all": 10_000}


def leader_epochs(r, topic, epochs):
    t = E.OffsetForLeaderTopic(topic=topic, partitions=[E.OffsetForLeaderTopic.OffsetForLeaderPartition(
        partition=0, current_leader_epoch=-1, leader_epoch=epoch) for epoch in epochs])
    resp = r.request(E, 4, replica_id=-1, topics=[t]).to_dict()
    resp["topics"][0]["topic"] = "<topic>"
    return resp


def test_list_offsets_and_leader_epochs(both):
    name = f"offsets-{uuid.uuid4().hex[:8]}"
    base = (int(time.time()) - 60) * 1000
    found = {}
    for side, bootstrap in both.items():
        with Raw(bootstrap) as r:
            create_ready_topic(r, name)
            stamps = [base + d for d in DELTAS]
            out = {"produce": produce_ok(r, name, [b"v0", b"v1", b"v2"], timestamps=stamps[:3]).to_dict(),
                   "produce_2": produce_ok(r, name, [b"v3", b"v4"], timestamps=stamps[3:]).to_dict()}
            for label, query in QUERIES.items():
                resp = list_offsets(r, name, query if query < 0 and query > -10 else base + query).to_dict()
                for p in resp["topics"][0]["partitions"]:
                    if p["timestamp"] >= base:
                        p["timestamp"] -= base
                resp["topics"][0]["name"] = "<topic>"
                out[f"list_offsets_{label}"] = resp
            out["offset_for_leader_epoch"] = leader_epochs(r, name, [0])
            out["offset_for_leader_epoch_future"] = leader_epochs(r, name, [7])
            out["offset_for_leader_epoch_unknown_topic"] = leader_epochs(r, "no-such-topic", [0])
            for label in ("produce", "produce_2"):
                out[label]["responses"][0]["name"] = "<topic>"
            found[side] = out
    compare("offsets", found["kafka"], found["strom"])
