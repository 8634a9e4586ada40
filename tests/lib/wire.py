"""Raw Kafka frames for tests that must control the exact bytes on the socket: request
headers (v1, non-flexible), a few request bodies, and record batches read from a segment."""

import socket
import struct
from pathlib import Path


def string(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def nullable_string(s):
    return struct.pack(">h", -1) if s is None else string(s)


def array(items):
    items = list(items)
    return struct.pack(">i", len(items)) + b"".join(items)


def read_exactly(sock, n):
    """`n` bytes from `sock`; ConnectionError if the broker closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def request_frame(api_key, version, correlation, client_id, body):
    """One length-prefixed request with a v1 header."""
    frame = struct.pack(">hhi", api_key, version, correlation) + string(client_id) + body
    return struct.pack(">i", len(frame)) + frame


class Connection:
    """One client connection that sends a request and reads its response frame; over TLS
    when given an `ssl_context` (the broker's name checked as 127.0.0.1)."""

    def __init__(self, port, client_id="strom-wire-test", timeout=10, ssl_context=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ssl_context is not None:
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname="127.0.0.1")
            except BaseException:
                self.sock.close()
                raise
        self.client_id = client_id
        self.correlation = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n):
        return read_exactly(self.sock, n)

    def send(self, api_key, version, body):
        """Sends one request with a v1 header without waiting for its answer."""
        self.correlation += 1
        self.sock.sendall(request_frame(api_key, version, self.correlation, self.client_id, body))
        return self.correlation

    def receive(self, correlation):
        """The body after the correlation id of the next response, which must answer `correlation`."""
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        assert struct.unpack(">i", response[:4])[0] == correlation
        return response[4:]

    def request(self, api_key, version, body):
        """Sends one request and returns its response body after the correlation id."""
        return self.receive(self.send(api_key, version, body))


def metadata_v4(topics, auto_create=True):
    return array(string(t) for t in topics) + struct.pack(">?", auto_create)


def produce_v3(topic, partition, batch, acks=-1, timeout_ms=10000):
    partitions = array([struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch])
    return nullable_string(None) + struct.pack(">hi", acks, timeout_ms) + array([string(topic) + partitions])


def produce_v3_errors(body):
    """[(partition, error code, base offset)] of a Produce v3 response."""
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from(fmt, body, at)
        at += struct.calcsize(fmt)
        return values

    results = []
    (topics,) = take(">i")
    for _ in range(topics):
        (name_len,) = take(">h")
        at += name_len
        (partitions,) = take(">i")
        for _ in range(partitions):
            index, error, base, _append_time = take(">ihqq")
            results.append((index, error, base))
    return results


class Reader:
    """Reads the fields of a non-flexible response body in order."""

    def __init__(self, body):
        self.body = body
        self.at = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.body, self.at)
        self.at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        value = self.body[self.at:self.at + n].decode()
        self.at += n
        return value

    def bytes(self):
        n = self.take(">i")
        value = self.body[self.at:self.at + max(n, 0)]
        self.at += max(n, 0)
        return value


API_VERSIONS = 18


def api_versions_v0_error(body):
    """The error code of an ApiVersions v0 response (its request body is empty)."""
    return struct.unpack_from(">h", body, 0)[0]


SASL_HANDSHAKE = 17


def sasl_handshake_answer(body):
    """(error code, [enabled mechanisms]) of a SaslHandshake v0/v1 response; its request body
    is the mechanism, string(name)."""
    r = Reader(body)
    error = r.take(">h")
    return error, [r.string() for _ in range(r.take(">i"))]


def fetch_v4(topic, partition, offset, replica_id=-1, max_wait_ms=0, max_bytes=1 << 20):
    """Fetch v4 for one partition, as a consumer (replica_id -1) or as follower `replica_id`."""
    partitions = array([struct.pack(">iqi", partition, offset, max_bytes)])
    return struct.pack(">iiiib", replica_id, max_wait_ms, 0, max_bytes, 0) + array([string(topic) + partitions])


def fetch_v4_answer(body):
    """{(topic, partition): (error code, high watermark, record bytes)} of a Fetch v4 response."""
    r = Reader(body)
    r.take(">i")
    answer = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, error, high_watermark, _last_stable = r.take(">ihqq")
            aborted = r.take(">i")  # aborted transactions (producer id, first offset), -1 for null
            r.at += 16 * max(aborted, 0)
            answer[(topic, partition)] = (error, high_watermark, r.bytes())
    return answer


def fetch_v7(partitions, session_id=0, session_epoch=-1, forgotten=(), max_wait_ms=0, max_bytes=1 << 20):
    """Fetch v7 (KIP-227 sessions) as a consumer: `partitions` are (topic, partition, offset),
    `forgotten` (topic, partition) pairs to drop from the session."""
    by_topic = {}
    for topic, partition, offset in partitions:
        by_topic.setdefault(topic, []).append(struct.pack(">iqqi", partition, offset, -1, max_bytes))
    forgotten_by_topic = {}
    for topic, partition in forgotten:
        forgotten_by_topic.setdefault(topic, []).append(struct.pack(">i", partition))
    return (struct.pack(">iiiibii", -1, max_wait_ms, 0, max_bytes, 0, session_id, session_epoch)
            + array(string(t) + array(ps) for t, ps in by_topic.items())
            + array(string(t) + array(ps) for t, ps in forgotten_by_topic.items()))


def fetch_v7_answer(body):
    """(error code, session id, {(topic, partition): (error code, high watermark, record bytes)})
    of a Fetch v7 response."""
    r = Reader(body)
    _throttle, error, session_id = r.take(">ihi")
    answer = {}
    for _ in range(r.take(">i")):
        topic = r.string()
        for _ in range(r.take(">i")):
            partition, code, high_watermark, _last_stable, _log_start = r.take(">ihqqq")
            aborted = r.take(">i")
            r.at += 16 * max(aborted, 0)
            answer[(topic, partition)] = (code, high_watermark, r.bytes())
    return error, session_id, answer


def join_group_v5(group, member_id, instance_id=None, protocols=(("range", b""),),
                  session_ms=10000, rebalance_ms=30000):
    body = string(group) + struct.pack(">ii", session_ms, rebalance_ms) + string(member_id)
    body += nullable_string(instance_id) + string("consumer")
    body += array(string(name) + struct.pack(">i", len(meta)) + meta for name, meta in protocols)
    return body


def join_group_v5_answer(body):
    """(error, generation, member id, leader, [member ids]) of a JoinGroup v5 response."""
    r = Reader(body)
    r.take(">i")
    error, generation = r.take(">hi")
    r.string()
    leader = r.string()
    member_id = r.string()
    members = []
    for _ in range(r.take(">i")):
        members.append(r.string())
        r.string()
        r.bytes()
    return error, generation, member_id, leader, members


def sync_group_v3(group, generation, member_id, instance_id=None, assignments=()):
    body = string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)
    body += array(string(m) + struct.pack(">i", len(a)) + a for m, a in assignments)
    return body


def heartbeat_v3(group, generation, member_id, instance_id=None):
    return string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)


def offset_commit_v7(group, generation, member_id, topic, partition, offset, instance_id=None):
    body = string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)
    partitions = array([struct.pack(">iqi", partition, offset, -1) + nullable_string(None)])
    return body + array([string(topic) + partitions])


def offset_commit_v7_errors(body):
    r = Reader(body)
    r.take(">i")
    errors = []
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            errors.append(r.take(">ih")[1])
    return errors


def first_error_code(body, skip_throttle=True):
    """The error code that follows the throttle time (Heartbeat v1+, SyncGroup v1+)."""
    return struct.unpack_from(">h", body, 4 if skip_throttle else 0)[0]


def record_batch(values, compression=0):
    """A v2 record batch of `values` (bytes), built by kafka-python's batch builder."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def stored_batches(partition_dir):
    """(base offset, records count, codec id) of every batch in a partition's segments."""
    batches = []
    for segment in sorted(Path(partition_dir).glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, at)
            if length <= 0:
                break
            (attributes,) = struct.unpack_from(">h", data, at + 21)
            (count,) = struct.unpack_from(">i", data, at + 57)
            batches.append((base, count, attributes & 0x7))
            at += 12 + length
    return batches


# Varints, and the requests and answers the hostile-client suite (tests/hostile) needs.


def uvarint(n):
    """Kafka's unsigned varint (compact lengths, tagged field counts)."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(n):
    """Kafka's zig-zag varint (record fields)."""
    return uvarint((n << 1) ^ (n >> 63))


def compact_string(s):
    data = s.encode()
    return uvarint(len(data) + 1) + data


def create_topics_v4(topics, timeout_ms=10000, validate_only=False, configs=()):
    """CreateTopics v4 for [(name, partitions, replication factor)], no assignments, each
    topic with the [(key, value)] `configs`."""
    configs = array(string(k) + nullable_string(v) for k, v in configs)
    body = array(string(name) + struct.pack(">ih", partitions, rf) + array([]) + configs
                 for name, partitions, rf in topics)
    return body + struct.pack(">i?", timeout_ms, validate_only)


def create_partitions_v1(topics, timeout_ms=10000, validate_only=False):
    """CreatePartitions v1 for [(name, new total count)], broker-chosen assignments."""
    body = array(string(name) + struct.pack(">ii", count, -1) for name, count in topics)
    return body + struct.pack(">i?", timeout_ms, validate_only)


def topic_results(body):
    """[(name, error code, message)] of a CreateTopics v2-v4 or CreatePartitions v0-v1 response."""
    r = Reader(body)
    r.take(">i")
    results = []
    for _ in range(r.take(">i")):
        name = r.string()
        error = r.take(">h")
        results.append((name, error, r.string()))
    return results


def metadata_v4_broker_ids(body):
    """The node ids of the brokers a Metadata v4 response lists."""
    r = Reader(body)
    r.take(">i")
    ids = []
    for _ in range(r.take(">i")):
        ids.append(r.take(">i"))
        r.string()
        r.take(">i")
        r.string()
    return ids


def metadata_v4_topics(body):
    """{topic: (error code, partition count)} of a Metadata v4 response."""
    r = Reader(body)
    r.take(">i")
    for _ in range(r.take(">i")):
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    r.string()
    r.take(">i")
    topics = {}
    for _ in range(r.take(">i")):
        error = r.take(">h")
        name = r.string()
        r.take(">?")
        count = r.take(">i")
        for _ in range(count):
            r.take(">hii")
            for _ in range(2):  # replicas, then ISR: int32 arrays
                length = r.take(">i")  # read before `r.at +=`, which loads r.at first
                r.at += 4 * length
        topics[name] = (error, count)
    return topics


def list_offsets_v1(topic, partitions, timestamp=-1):
    """ListOffsets v1 (as a consumer) for the latest (-1) or earliest (-2) offset."""
    return struct.pack(">i", -1) + array([string(topic) + array(
        struct.pack(">iq", p, timestamp) for p in partitions)])


def list_offsets_v1_answer(body):
    """{partition: (error code, offset)} of a ListOffsets v1 response for one topic."""
    r = Reader(body)
    answer = {}
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            partition, error, _timestamp, offset = r.take(">ihqq")
            answer[partition] = (error, offset)
    return answer


def record(value, offset_delta=0, key=None, timestamp_delta=0):
    """One v2 record, uncompressed."""
    body = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(len(value)) + value + uvarint(0)
    return varint(len(body)) + body


def raw_batch(records, count, last_offset_delta=None, attributes=0, timestamp=None,
              producer_id=-1, producer_epoch=-1, base_sequence=-1):
    """A v2 record batch around already encoded (and possibly compressed) `records`, with a
    header that says whatever it is told and a correct CRC-32C, so the broker's checks past
    the CRC are what judge it."""
    import time

    from kafka.record.util import calc_crc32c

    if last_offset_delta is None:
        last_offset_delta = count - 1
    if timestamp is None:
        timestamp = int(time.time() * 1000)
    covered = struct.pack(">hiqqqhii", attributes, last_offset_delta, timestamp, timestamp,
                          producer_id, producer_epoch, base_sequence, count) + records
    # batchLength counts from partitionLeaderEpoch: epoch (4), magic (1), crc (4), the rest.
    return struct.pack(">qiibI", 0, 9 + len(covered), -1, 2, calc_crc32c(covered)) + covered


CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def compressed_bomb(codec, size, chunk=1 << 20):
    """The compressed records of one record whose value is `size` zero bytes, streamed through
    the compressor so the expanded record never exists in memory. gzip, lz4 and zstd."""
    if codec == "gzip":
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        compress, finish = c.compress, c.flush
    elif codec == "zstd":
        import zstandard

        # A 128 MB window, the most the decoder takes by default (windowLogMax 27).
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
        c = zstandard.ZstdCompressor(compression_params=params).compressobj()
        compress, finish = c.compress, c.flush
    elif codec == "lz4":
        import lz4.frame

        c = lz4.frame.LZ4FrameCompressor()
        start = c.begin()

        def compress(data, first=[start]):
            out = first[0] + c.compress(data)
            first[0] = b""
            return out

        finish = c.flush
    else:
        raise ValueError(codec)
    body_head = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(size)
    body_len = len(body_head) + size + 1
    out = [compress(varint(body_len) + body_head)]
    zeros = bytes(chunk)
    left = size
    while left:
        n = min(left, chunk)
        out.append(compress(zeros if n == chunk else bytes(n)))
        left -= n
    out.append(compress(uvarint(0)))
    out.append(finish())
    return b"".join(out)
