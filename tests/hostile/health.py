"""The check that follows every hostile case: the broker process is alive, its resident memory
(now and at its peak since the case began) is under a bound, and a real client (confluent-kafka)
still produces and consumes a few records on a fresh topic. Plus the broker's metrics and the
raw-socket helpers the cases share."""

import selectors
import socket
import struct
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from broker import metric
from wire import read_exactly

# (case, baseline MiB, peak MiB, bound MiB) of every check, for the run's summary.
MEASURED = []


def _status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def rss_mb(pid):
    return _status(pid, "VmRSS")


def peak_mb(pid):
    """The high-water mark of the resident set since start or the last reset_peak."""
    return _status(pid, "VmHWM")


def reset_peak(pid):
    """Sets VmHWM back to the current RSS (Linux 4.0+: "5" to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class Health:
    """Measures the broker's baseline RSS after a first round trip of a real client (so the
    client's own connections and a topic are in it; `warm_up=False` skips it for a broker
    that admits one connection), then bounds it at baseline + budget_mb."""

    def __init__(self, broker, budget_mb, warm_up=True):
        self.broker = broker
        self.budget_mb = budget_mb
        if warm_up:
            self.round_trip()
        self.baseline_mb = rss_mb(broker.proc.pid)
        self.bound_mb = self.baseline_mb + budget_mb
        self.begin()

    def begin(self):
        """Starts a case: its peak is measured from here."""
        reset_peak(self.broker.proc.pid)

    def check(self, case):
        """The health check after a case: alive, memory under the bound, a client round trip."""
        self.check_memory(case)
        self.check_client(case)

    def check_client(self, case):
        """The client round trip, then alive and under the bound again; a new case begins."""
        self.round_trip()
        self.check_memory(case, record=False)
        self.begin()

    def check_memory(self, case, record=True):
        """Alive, and RSS (now and at its peak since the case began) under the bound."""
        proc = self.broker.proc
        assert proc is not None and proc.poll() is None, f"{case}: the broker is not running"
        now, peak = rss_mb(proc.pid), peak_mb(proc.pid)
        if record:
            MEASURED.append((case, self.baseline_mb, peak, self.bound_mb))
        assert now < self.bound_mb, f"{case}: RSS {now:.1f} MiB is over the bound {self.bound_mb:.1f} MiB"
        assert peak < self.bound_mb, f"{case}: peak RSS {peak:.1f} MiB is over the bound {self.bound_mb:.1f} MiB"

    def round_trip(self, records=5, timeout=20):
        """A confluent-kafka producer and consumer move `records` records through a fresh
        (auto-created) topic. The producer is closed before the consumer starts, so a
        per-IP connection limit of 3 is enough."""
        topic = f"health-{uuid.uuid4().hex[:10]}"
        deadline = time.monotonic() + timeout
        delivered = []
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "message.timeout.ms": timeout * 1000})
        try:
            for i in range(records):
                producer.produce(topic, value=b"health %d" % i, on_delivery=lambda e, m: delivered.append(e))
            producer.flush(timeout)
        finally:
            producer.close()
        assert delivered == [None] * records, f"deliveries: {delivered}"
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "health",
                             "enable.auto.commit": False})
        values = []
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            while len(values) < records and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    values.append(message.value())
        finally:
            consumer.close()
        assert values == [b"health %d" % i for i in range(records)]


def malformed(broker):
    return metric(broker, "strom_malformed_requests_total")


def closed_by_broker(broker, reason):
    return metric(broker, "strom_connections_closed_total", reason=reason)


def api_versions_v0(correlation=7):
    body = struct.pack(">hhih", 18, 0, correlation, -1)
    return struct.pack(">i", len(body)) + body


def answers_api_versions(sock, correlation=7):
    """Sends ApiVersions v0 on `sock` and checks the answer (error 0 and some APIs)."""
    sock.sendall(api_versions_v0(correlation))
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    body = read_exactly(sock, size)
    got, error, count = struct.unpack_from(">ihi", body)
    return (got, error) == (correlation, 0) and count > 5


def closed_without_answer(sock, timeout=10):
    """True once the broker closed `sock` (EOF or reset) without sending anything; False if
    it answered; fails if it neither answers nor closes within `timeout` s."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except socket.timeout:
        raise AssertionError(f"the broker neither answered nor closed within {timeout}s")
    return data == b""


def still_open(sock):
    """True if the broker has neither closed `sock` nor sent anything on it."""
    sock.setblocking(False)
    try:
        data = sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False  # EOF, or bytes nobody asked for


def wait_all_closed(socks, timeout):
    """Waits until the broker has closed every socket in `socks` (EOF or reset); returns how
    many it closed, which is len(socks) unless `timeout` s passed first."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + timeout
    try:
        while closed < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data == b"":
                    sel.unregister(key.fileobj)
                    closed += 1
    finally:
        sel.close()
    return closed


def connect(port, source="127.0.0.1", timeout=10):
    s = socket.socket()
    try:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
    except BaseException:
        s.close()
        raise
    return s


def wait_until(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

