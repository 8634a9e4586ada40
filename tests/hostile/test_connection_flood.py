"""1,500 idle connections and 200 half-sent 50 MB frames (the size prefix, a few hundred bytes,
then nothing) against one broker. While they are open the broker must stay healthy, its
memory following the bytes it received rather than the sizes announced; with
request.read.timeout.ms and connections.max.idle.ms lowered, it closes each of them and
counts it under the right reason."""

import resource
import struct

import pytest

from health import (answers_api_versions, closed_by_broker, connect, malformed, metric, still_open,
                    wait_all_closed, wait_until)

IDLE = 1500
HALF_SENT = 200
FRAME_SIZE = 50 * 1024 * 1024
# The start of a Produce v3 request that announces 50 MB: header, no transactional id,
# acks -1, and 512 bytes of the topics that never finish.
HALF_FRAME = (struct.pack(">i", FRAME_SIZE) + struct.pack(">hhih", 0, 3, 1, 7) + b"hostile"
              + struct.pack(">hhi", -1, -1, 10000) + struct.pack(">i", 1) + b"\x00" * 512)
# Measured (Linux x86_64): ~10 MB after start, ~20 KB per open connection (its task and
# 8 KiB read / 16 KiB write buffers), so ~45 MB with all 1,700 open. 128 MB over the baseline
# leaves room for twice that plus the client round trip, yet fails a broker that buffered the
# announced size of even three of the half-sent frames (3 x 50 MB).
RSS_BUDGET_MB = 128
STEP = 100


@pytest.fixture(autouse=True)
def enough_descriptors():
    want = IDLE + HALF_SENT + 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want, "raise ulimit -n"


def accepted(broker):
    """Connections the broker has accepted: open ones plus those it closed itself."""
    return (metric(broker, "strom_connections_active") + closed_by_broker(broker, "idle")
            + closed_by_broker(broker, "request_read_timeout"))


def open_flood(broker, socks):
    """Opens the idle connections, then the half-sent frames, appending every socket to
    `socks` (empty; the caller closes them). Each step of 100 waits until the broker has accepted
    it, so its listen backlog (128) never overflows into SYN retransmits."""
    start = accepted(broker)
    for n in range(IDLE + HALF_SENT):
        s = connect(broker.port)
        socks.append(s)
        if n >= IDLE:
            s.sendall(HALF_FRAME)
        if len(socks) % STEP == 0 or len(socks) == IDLE + HALF_SENT:
            wait_until(lambda: accepted(broker) >= start + len(socks), 20, f"the broker to accept {len(socks)}")


def quiet(broker):
    """Waits until the health check's own client connections are gone."""
    wait_until(lambda: metric(broker, "strom_connections_active") == 0, 20, "no open connections")


def close_all(socks):
    for s in socks:
        s.close()
    socks.clear()


def flood_stays_healthy(start_broker, overrides, label):
    broker, health = start_broker(overrides, budget_mb=RSS_BUDGET_MB)
    quiet(broker)
    socks = []
    try:
        open_flood(broker, socks)
        assert metric(broker, "strom_connections_active") >= IDLE + HALF_SENT
        case = f"3 flood open, {label}"
        health.check_memory(case)
        # A new connection is served while the flood is open: ApiVersions on a raw socket (10 s
        # at most; it takes milliseconds when served), then the real client round trip.
        with connect(broker.port) as s:
            s.settimeout(10)
            assert answers_api_versions(s), "a new connection's ApiVersions got no answer"
        health.check_client(case)
        # Nothing was closed: the flood is still open, and none of it counted as malformed.
        assert all(still_open(s) for s in socks)
        assert closed_by_broker(broker, "idle") == 0
        assert closed_by_broker(broker, "request_read_timeout") == 0
        assert malformed(broker) == 0
    finally:
        close_all(socks)
    quiet(broker)
    health.check(f"3 flood closed by the client, {label}")


def test_flood_with_default_settings(start_broker):
    flood_stays_healthy(start_broker, {}, "default settings")


def test_flood_without_request_pool(start_broker):
    """The same flood with queued.max.request.bytes=-1 (no pool, as Kafka's default): the
    connections and the half-sent frames themselves cost only what they sent."""
    flood_stays_healthy(start_broker, {"queued.max.request.bytes": "-1"}, "queued.max.request.bytes=-1")


def test_flood_is_closed_and_counted(start_broker):
    broker, health = start_broker({"request.read.timeout.ms": "3000", "connections.max.idle.ms": "2000"},
                                  budget_mb=RSS_BUDGET_MB)
    quiet(broker)
    idle_before = closed_by_broker(broker, "idle")
    socks = []
    try:
        open_flood(broker, socks)
        assert wait_all_closed(socks, timeout=60) == len(socks)
        # Each half-sent frame was cut by the read timeout, each idle connection by the idle one.
        assert closed_by_broker(broker, "request_read_timeout") == HALF_SENT
        assert closed_by_broker(broker, "idle") - idle_before == IDLE
        assert malformed(broker) == 0
        quiet(broker)
    finally:
        close_all(socks)
    health.check("3 flood closed by the broker's timeouts")
