package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** KafkaProducer against the single node. */
class ProducerTest {
    private static Admin admin;

    @BeforeAll
    static void connect() {
        admin = Strom.admin(Strom.single());
    }

    @AfterAll
    static void close() {
        admin.close();
    }

    private static String topic(int partitions, Map<String, String> configs) throws Exception {
        String name = Strom.name("producer");
        Strom.createTopic(admin, name, partitions, (short) 1, configs);
        return name;
    }

    private static List<ConsumerRecord<String, String>> readAll(String topic, int partition, int count) {
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null, Map.of())) {
            c.assign(List.of(new TopicPartition(topic, partition)));
            c.seekToBeginning(c.assignment());
            return Strom.poll(c, count);
        }
    }

    @Test
    void idempotentProducerWritesEachRecordOnceInOrder() throws Exception {
        String topic = topic(1, Map.of());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(),
                Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true", ProducerConfig.ACKS_CONFIG, "all",
                        ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5",
                        ProducerConfig.LINGER_MS_CONFIG, "0", ProducerConfig.BATCH_SIZE_CONFIG, "200"))) {
            for (int i = 0; i < 200; i++) {
                sent.add(p.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)));
            }
            p.flush();
            for (int i = 0; i < sent.size(); i++) {
                assertEquals(i, sent.get(i).get().offset());
            }
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 0, 200);
        for (int i = 0; i < 200; i++) {
            assertEquals(i, got.get(i).offset());
            assertEquals("v" + i, got.get(i).value());
        }
        assertEquals(200L, admin.listOffsets(Map.of(new TopicPartition(topic, 0),
                OffsetSpec.latest())).all().get().get(new TopicPartition(topic, 0))
                .offset());
    }

    /** 200 records of 1000 repeated bytes: read back intact, and stored compressed (the log holds
     * far fewer bytes than the records). */
    private static void compressed(String codec) throws Exception {
        String topic = topic(1, Map.of());
        byte[][] values = new byte[200][];
        try (KafkaProducer<byte[], byte[]> p = Strom.bytesProducer(Strom.single(),
                Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, "50",
                        ProducerConfig.BATCH_SIZE_CONFIG, "1000000"))) {
            for (int i = 0; i < values.length; i++) {
                byte[] v = new byte[1000];
                Arrays.fill(v, (byte) ('a' + i % 26));
                values[i] = v;
                p.send(new ProducerRecord<>(topic, 0, ("k" + i).getBytes(StandardCharsets.UTF_8), v));
            }
            p.flush();
        }
        try (KafkaConsumer<byte[], byte[]> c = Strom.bytesConsumer(Strom.single())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<byte[], byte[]>> got = Strom.poll(c, values.length);
            for (int i = 0; i < values.length; i++) {
                assertEquals(i, got.get(i).offset());
                assertArrayEquals(("k" + i).getBytes(StandardCharsets.UTF_8), got.get(i).key());
                assertArrayEquals(values[i], got.get(i).value(), "value of record " + i);
            }
        }
        LogDirDescription dir = admin.describeLogDirs(List.of(1)).allDescriptions().get().get(1).values().iterator()
                .next();
        ReplicaInfo replica = dir.replicaInfos().get(new TopicPartition(topic, 0));
        assertTrue(replica.size() > 0 && replica.size() < 200 * 1000 / 4,
                codec + ": 200000 bytes of values stored in " + replica.size() + " bytes");
    }

    @Test
    void gzip() throws Exception {
        compressed("gzip");
    }

    @Test
    void snappy() throws Exception {
        compressed("snappy");
    }

    @Test
    void lz4() throws Exception {
        compressed("lz4");
    }

    @Test
    void zstd() throws Exception {
        compressed("zstd");
    }

    @Test
    void headersRoundTrip() throws Exception {
        String topic = topic(1, Map.of());
        List<Header> headers = List.of(
                new RecordHeader("trace", "abc".getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("trace", "def".getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("empty", new byte[0]),
                new RecordHeader("null", (byte[]) null),
                new RecordHeader("binary", new byte[] {0, (byte) 0xff, 7}));
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            p.send(new ProducerRecord<>(topic, 0, null, "with", "headers", headers)).get();
            p.send(new ProducerRecord<>(topic, 0, "without", "headers")).get();
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 0, 2);
        Header[] read = got.get(0).headers().toArray();
        assertEquals(5, read.length);
        for (int i = 0; i < read.length; i++) {
            assertEquals(headers.get(i).key(), read[i].key());
            assertArrayEquals(headers.get(i).value(), read[i].value(), "header " + i);
        }
        assertNull(got.get(0).headers().lastHeader("null").value());
        assertArrayEquals("def".getBytes(StandardCharsets.UTF_8), got.get(0).headers().lastHeader("trace").value());
        assertEquals(0, got.get(1).headers().toArray().length);
    }

    @Test
    void explicitTimestamps() throws Exception {
        String createTime = topic(1, Map.of());
        String logAppendTime = topic(1, Map.of("message.timestamp.type", "LogAppendTime"));
        long stamp = System.currentTimeMillis() - 60_000;
        long before = System.currentTimeMillis();
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            RecordMetadata kept = p.send(new ProducerRecord<>(createTime, 0, stamp, "k", "v")).get();
            assertEquals(stamp, kept.timestamp());
            RecordMetadata replaced = p.send(new ProducerRecord<>(logAppendTime, 0, stamp, "k", "v")).get();
            assertTrue(replaced.timestamp() >= before, "LogAppendTime " + replaced.timestamp() + " < " + before);
            ConsumerRecord<String, String> a = readAll(createTime, 0, 1).get(0);
            assertEquals(stamp, a.timestamp());
            assertEquals(TimestampType.CREATE_TIME, a.timestampType());
            ConsumerRecord<String, String> b = readAll(logAppendTime, 0, 1).get(0);
            assertEquals(replaced.timestamp(), b.timestamp());
            assertEquals(TimestampType.LOG_APPEND_TIME, b.timestampType());
        }
    }

    /**
     * A batch of one record with no key or headers and a value of V bytes (V from 8192 to
     * 1048575, so its length takes 3 varint bytes) is V + 72 bytes: 61 bytes of batch header and
     * V + 11 of record. The topic's max.message.bytes limits the batch: a batch of exactly that
     * size is accepted, one byte more fails with RECORD_TOO_LARGE (RecordTooLargeException).
     */
    @Test
    void maxMessageBytesIsTheLargestBatchAccepted() throws Exception {
        int max = 20_000;
        String topic = topic(1, Map.of("max.message.bytes", Integer.toString(max)));
        try (KafkaProducer<byte[], byte[]> p = Strom.bytesProducer(Strom.single(),
                Map.of(ProducerConfig.LINGER_MS_CONFIG, "0", ProducerConfig.RETRIES_CONFIG, "0",
                        ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false"))) {
            RecordMetadata fits = p.send(new ProducerRecord<>(topic, 0, null, new byte[max - 72])).get(30,
                    TimeUnit.SECONDS);
            assertEquals(0, fits.offset());
            assertEquals(max - 72, fits.serializedValueSize());
            Throwable tooLarge = Strom.cause(
                    () -> p.send(new ProducerRecord<>(topic, 0, null, new byte[max - 71])).get(30, TimeUnit.SECONDS));
            assertInstanceOf(RecordTooLargeException.class, tooLarge, String.valueOf(tooLarge));
        }
        List<ConsumerRecord<String, String>> got = readAll(topic, 0, 1);
        assertEquals(max - 72, got.get(0).serializedValueSize());
        assertEquals(1L, admin.listOffsets(Map.of(new TopicPartition(topic, 0),
                OffsetSpec.latest())).all().get().get(new TopicPartition(topic, 0))
                .offset());
    }
}
