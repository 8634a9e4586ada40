"""Stopping the processes a test started."""

import signal
import subprocess


def stop(proc, sig=signal.SIGTERM, timeout=20):
    """Sends `sig` to a running `proc` and waits for it, killing it after `timeout` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
