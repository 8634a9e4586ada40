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


def free_port():
    """A loopback port that nothing listens on, outside the ephemeral range."""
    high = min(_ephemeral_start(), 65536)
    for _ in range(200):
        port = random.randrange(10000, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
