"""Flame graphs of a single Strom node's produce and fetch paths.

Starts one node, loads a 1-partition topic with rdkafka_performance (1 KiB messages, acks=1, as
scripts/bench.py does), and samples the broker with `perf record` (cpu-clock, DWARF call
graphs) while it produces, then while a consumer reads everything back. Writes produce.svg and
fetch.svg (inferno) and the folded stacks beside them, and prints each path's hottest functions
by their own samples and by the samples under them.
"""

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CONSUMED, PRODUCED, Strom, create_topic, perf_args, run_perf, summary, wait_brokers, wait_port  # noqa: E402

# Sampling rate (Hz) and the stack bytes perf copies per sample for DWARF unwinding.
FREQUENCY, STACK_BYTES = 499, 32768
# Functions printed per path.
TOP = 15


def record(pid, data, load):
    """Samples process `pid` into `data` while `load()` runs; returns what `load()` returned."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY),
                             "--call-graph", f"dwarf,{STACK_BYTES}", "-p", str(pid), "-o", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(1)
    try:
        return load()
    finally:
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate(timeout=120)
        if perf.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"perf record failed: {err.decode()[-2000:]}")


def fold(data, folded, svg, inferno, title):
    """perf script | inferno-collapse-perf > folded; inferno-flamegraph folded > svg."""
    script = subprocess.Popen(["perf", "script", "-i", str(data)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    with open(folded, "w") as out:
        subprocess.run([str(inferno / "inferno-collapse-perf")], stdin=script.stdout, stdout=out, check=True)
    script.wait()
    with open(svg, "w") as out:
        subprocess.run([str(inferno / "inferno-flamegraph"), "--title", title, str(folded)],
                       stdout=out, check=True)


def hottest(folded):
    """(total weight, [(function, own weight)], [(function, weight under it)]) of folded stacks;
    with perf's cpu-clock event a stack's weight is its sampled CPU time in nanoseconds. The
    second list names only Strom's own functions and system calls: the runtime's frames are
    under everything."""
    own, under = collections.Counter(), collections.Counter()
    total = 0
    for line in Path(folded).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            if frame.startswith(("strom_broker::", "__x64_sys_")) and "{{closure}}" not in frame:
                under[frame] += count
    return total, own.most_common(TOP), under.most_common(TOP)


def short(function, width=110):
    return function if len(function) <= width else function[:width - 3] + "..."


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--perf", required=True, help="rdkafka_performance binary")
    parser.add_argument("--strom", required=True, help="strom-broker binary (a release build)")
    parser.add_argument("--inferno", required=True, type=Path,
                        help="directory holding inferno-collapse-perf and inferno-flamegraph")
    parser.add_argument("--out", required=True, type=Path, help="directory for the SVGs and folded stacks")
    parser.add_argument("--count", type=int, default=1_000_000, help="1 KiB messages produced, then consumed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="strom-flamegraph-") as tmp:
        workdir = Path(tmp)
        broker = Strom(args.strom, workdir)
        log = open(workdir / "broker.log", "w")
        proc = subprocess.Popen(broker.commands[0], cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        try:
            wait_port(broker.port, proc, timeout=60)
            wait_brokers(broker.bootstrap, 1, broker.client)
            create_topic(broker, "flame", 1)
            common = [*perf_args(broker, "flame", 1024), "-p", "0"]
            produce = ["-P", *common, "-c", str(args.count), "-a", "1", "-X", "linger.ms=5",
                       "-X", "batch.size=1000000"]
            # An unmeasured first write: the segment files exist before the profile starts.
            run_perf(args.perf, ["-P", *common, "-c", "1000", "-a", "1"])
            produced = record(proc.pid, workdir / "produce.data",
                              lambda: summary(PRODUCED, run_perf(args.perf, produce)))
            consumed = record(proc.pid, workdir / "fetch.data", lambda: summary(CONSUMED, run_perf(
                args.perf, ["-C", *common, "-c", str(args.count + 1000), "-o", "beginning", "-e"])))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path, (messages, size, ms) in (("produce", produced), ("fetch", consumed)):
            svg = args.out / f"{path}.svg"
            folded = args.out / f"{path}.folded"
            fold(workdir / f"{path}.data", folded, svg, args.inferno,
                 f"strom-broker, {path} path: {messages:,} x 1 KiB in {ms} ms")
            total, own, under = hottest(folded)
            print(f"\n{path}: {messages:,} messages, {size / ms / 1000:.0f} MB/s while sampled, "
                  f"{total / 1e9:.2f} s of the broker's CPU time sampled at {FREQUENCY} Hz ({svg})")
            print("  by their own CPU time:")
            for function, count in own:
                print(f"  {count / total:6.1%}  {short(function)}")
            print("  Strom's functions and system calls by the CPU time under them:")
            for function, count in under:
                print(f"  {count / total:6.1%}  {short(function)}")


if __name__ == "__main__":
    main()
