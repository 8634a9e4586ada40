"""Ports for test servers, below the kernel's ephemeral range: a broker restarted on its port
would otherwise find it taken by some client connection's local port."""

import random
import socket


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports already handed out by this process: a cluster's nodes pick theirs before any of them
# binds, so two picks must never return the same port.
_handed_out = set()


def free_port():
    """A loopback port that nothing listens on, outside the ephemeral range, and never the same
    twice in one test run."""
    high = min(_ephemeral_start(), 65536)
    for _ in range(200):
        port = random.randrange(10000, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
