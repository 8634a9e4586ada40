"""max.connections.per.ip and max.connections: the connection over a limit is closed at once,
without an answer, and counted under its reason; the connections admitted before it are still
served. Loopback gives every address in 127.0.0.0/8, so three source addresses stand for three
clients."""

import pytest

from health import answers_api_versions, closed_by_broker, closed_without_answer, connect, metric, wait_until

PER_IP = 3
TOTAL = 6
RSS_BUDGET_MB = 64


def admitted(broker, source, correlation=7):
    s = connect(broker.port, source)
    assert answers_api_versions(s, correlation), f"a connection from {source} was not served"
    return s


def refused(broker, source):
    s = connect(broker.port, source)
    try:
        try:
            s.sendall(b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x07\xff\xff")  # ApiVersions v0
        except (BrokenPipeError, ConnectionResetError):
            return True
        return closed_without_answer(s)
    finally:
        s.close()


def test_connection_limits(start_broker):
    broker, health = start_broker({"max.connections.per.ip": str(PER_IP), "max.connections": str(TOTAL)})
    wait_until(lambda: metric(broker, "strom_connections_active") == 0, 20, "no open connections")
    socks = []
    try:
        socks += [admitted(broker, "127.0.0.1") for _ in range(PER_IP)]
        assert refused(broker, "127.0.0.1")
        assert closed_by_broker(broker, "max_connections_per_ip") == 1
        assert closed_by_broker(broker, "max_connections") == 0

        # Another address still gets in, up to max.connections in all.
        socks += [admitted(broker, "127.0.0.2") for _ in range(TOTAL - PER_IP)]
        assert refused(broker, "127.0.0.3")
        # The total is checked first: 127.0.0.1 is over both, and counted once, as max_connections.
        assert refused(broker, "127.0.0.1")
        assert closed_by_broker(broker, "max_connections") == 2
        assert closed_by_broker(broker, "max_connections_per_ip") == 1
        assert metric(broker, "strom_connections_active") == TOTAL

        # Every connection admitted before the refusals is still served.
        for n, s in enumerate(socks):
            assert answers_api_versions(s, 100 + n)

        # A closed connection frees its place.
        socks.pop(0).close()
        wait_until(lambda: metric(broker, "strom_connections_active") == TOTAL - 1, 20, "the place to be freed")
        socks.append(admitted(broker, "127.0.0.1"))
        assert closed_by_broker(broker, "max_connections") == 2
        assert closed_by_broker(broker, "max_connections_per_ip") == 1
        assert closed_by_broker(broker, "idle") == 0
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: metric(broker, "strom_connections_active") == 0, 20, "no open connections")
    # The client of the health check opens at most 2 connections at a time, under both limits.
    health.check("4 max.connections.per.ip=3, max.connections=6")


@pytest.mark.parametrize("setting, reason", [("max.connections.per.ip", "max_connections_per_ip"),
                                             ("max.connections", "max_connections")])
def test_limit_of_one_refuses_the_second(start_broker, setting, reason):
    """With a limit of 1 the second connection is refused however many times it retries, and
    each refusal is counted; the first connection keeps being served."""
    # No client round trip to warm up: a real client needs two connections at once.
    broker, health = start_broker({setting: "1"}, warm_up=False)
    before = closed_by_broker(broker, reason)
    first = admitted(broker, "127.0.0.1")
    try:
        for n in range(20):
            assert refused(broker, "127.0.0.1")
            assert answers_api_versions(first, 200 + n)
        assert closed_by_broker(broker, reason) - before == 20
    finally:
        first.close()
    wait_until(lambda: metric(broker, "strom_connections_active") == 0, 20, "no open connections")
    # A real client needs two connections at once (bootstrap and broker, or the consumer's
    # coordinator): the client round trip is the previous test's, under limits of 3 and 6.
    health.check_memory(f"4 {setting}=1")
