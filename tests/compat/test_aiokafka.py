"""aiokafka (asyncio): producer, consumer and offsets for times."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BASE_TS = int(time.time() * 1000) - 60_000


async def round_trip(bootstrap, topic):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    await producer.start()
    sent = []
    for i in range(150):
        md = await producer.send_and_wait(topic, key=f"k{i % 10}".encode(), value=f"v{i}".encode(),
                                          headers=[("h", b"1")], timestamp_ms=BASE_TS + i)
        sent.append(md)
    await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(tps)
    got = []
    for _ in range(40):
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            got.extend(records)
        if len(got) >= 150:
            break
    times = await consumer.offsets_for_times({tps[0]: BASE_TS})
    end = await consumer.end_offsets(tps)
    await consumer.stop()
    return sent, got, times, end


def test_round_trip(broker, topic):
    sent, got, times, end = asyncio.run(round_trip(broker.bootstrap, topic))
    assert len(got) == 150
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(150))
    assert all(m.headers == (("h", b"1"),) for m in got)
    assert sum(end.values()) == 150
    [first] = times.values()
    assert first.offset == 0
    per_key = {}
    for md, i in zip(sent, range(150)):
        per_key.setdefault(i % 10, set()).add(md.partition)
    assert all(len(p) == 1 for p in per_key.values())
