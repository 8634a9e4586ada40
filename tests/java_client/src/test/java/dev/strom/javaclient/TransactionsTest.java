package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.FenceProducersResult;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TransactionalIdNotFoundException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** A transactional KafkaProducer, read_committed consumers and the transaction admin APIs, on the single node. */
class TransactionsTest {
    private static Admin admin;

    @BeforeAll
    static void connect() {
        admin = Strom.admin(Strom.single());
    }

    @AfterAll
    static void close() {
        admin.close();
    }

    private static KafkaProducer<String, String> transactional(String id) {
        KafkaProducer<String, String> p = Strom.producer(Strom.single(),
                Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id, ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "45000"));
        p.initTransactions();
        return p;
    }

    private static List<String> values(String topic, String isolation, int count) {
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<String> got = Strom.poll(c, count).stream().map(ConsumerRecord::value).toList();
            assertTrue(c.poll(Duration.ofMillis(300)).isEmpty(), "more than " + count + " records");
            return got;
        }
    }

    private static long end(TopicPartition tp, IsolationLevel isolation) throws Exception {
        return admin.listOffsets(Map.of(tp, OffsetSpec.latest()), new ListOffsetsOptions(isolation)).all().get()
                .get(tp).offset();
    }

    @Test
    void readCommittedSeesOnlyCommittedRecords() throws Exception {
        String topic = Strom.name("txn");
        Strom.createTopic(admin, topic, 1, (short) 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> p = transactional(Strom.name("txn-id"))) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "committed-1"));
            p.send(new ProducerRecord<>(topic, 0, null, "committed-2"));
            p.commitTransaction();

            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "aborted-1"));
            p.flush();
            p.abortTransaction();

            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "committed-3"));
            p.commitTransaction();
        }
        // Offsets: two records, a commit marker, one record, an abort marker, one record, a commit marker.
        Strom.eventually(() -> end(tp, IsolationLevel.READ_COMMITTED) == 7, "the last stable offset to reach 7");
        assertEquals(7, end(tp, IsolationLevel.READ_UNCOMMITTED));
        assertEquals(List.of("committed-1", "committed-2", "committed-3"), values(topic, "read_committed", 3));
        assertEquals(List.of("committed-1", "committed-2", "aborted-1", "committed-3"),
                values(topic, "read_uncommitted", 4));
    }

    @Test
    void openTransactionIsDescribedListedAndHidden() throws Exception {
        String topic = Strom.name("txn");
        Strom.createTopic(admin, topic, 1, (short) 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        String id = Strom.name("txn-id");
        try (KafkaProducer<String, String> p = transactional(id)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "open")).get();

            TransactionDescription open = admin.describeTransactions(List.of(id)).description(id).get();
            assertEquals(TransactionState.ONGOING, open.state());
            assertEquals(Set.of(tp), open.topicPartitions());
            assertEquals(45000, open.transactionTimeoutMs());
            assertTrue(open.transactionStartTimeMs().isPresent());
            long producerId = open.producerId();

            Map<String, TransactionListing> ongoing = admin.listTransactions(
                    new ListTransactionsOptions().filterStates(Set.of(TransactionState.ONGOING))).all().get().stream()
                    .collect(Collectors.toMap(TransactionListing::transactionalId, l -> l));
            assertTrue(ongoing.containsKey(id), "listTransactions(ONGOING) lacks " + id + ": " + ongoing.keySet());
            assertEquals(producerId, ongoing.get(id).producerId());
            assertEquals(TransactionState.ONGOING, ongoing.get(id).state());

            var producers = admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers();
            assertEquals(1, producers.size());
            assertEquals(producerId, producers.get(0).producerId());
            assertEquals(0, producers.get(0).lastSequence());
            assertEquals(0L, producers.get(0).currentTransactionStartOffset().getAsLong());

            assertEquals(0, end(tp, IsolationLevel.READ_COMMITTED));
            assertEquals(1, end(tp, IsolationLevel.READ_UNCOMMITTED));

            p.commitTransaction();
            Strom.eventually(() -> admin.describeTransactions(List.of(id)).description(id).get().state()
                    == TransactionState.COMPLETE_COMMIT, "the transaction to be COMPLETE_COMMIT");
            var after = admin.describeTransactions(List.of(id)).description(id).get();
            assertEquals(producerId, after.producerId());
            assertTrue(after.topicPartitions().isEmpty());
            Map<String, TransactionListing> stillOngoing = admin.listTransactions(
                    new ListTransactionsOptions().filterStates(Set.of(TransactionState.ONGOING))).all().get().stream()
                    .collect(Collectors.toMap(TransactionListing::transactionalId, l -> l));
            assertFalse(stillOngoing.containsKey(id));
            Strom.eventually(() -> end(tp, IsolationLevel.READ_COMMITTED) == 2, "the last stable offset to reach 2");
            assertTrue(admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers().get(0)
                    .currentTransactionStartOffset().isEmpty());
        }
    }

    /** Consume-transform-produce: offsets sent with an aborted transaction are dropped, with a committed one they are the group's. */
    @Test
    void offsetsSentToTransactionCommitWithIt() throws Exception {
        String input = Strom.name("txn-in");
        String output = Strom.name("txn-out");
        Strom.createTopic(admin, input, 1, (short) 1, Map.of());
        Strom.createTopic(admin, output, 1, (short) 1, Map.of());
        TopicPartition in = new TopicPartition(input, 0);
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(input, 0, null, "in-" + i));
            }
            p.flush();
        }
        String group = Strom.name("group");
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), group,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"));
             KafkaProducer<String, String> p = transactional(Strom.name("txn-id"))) {
            c.subscribe(List.of(input));
            List<ConsumerRecord<String, String>> records = Strom.poll(c, 5);
            Map<TopicPartition, OffsetAndMetadata> next = Map.of(in, new OffsetAndMetadata(5));

            p.beginTransaction();
            records.forEach(r -> p.send(new ProducerRecord<>(output, 0, null, r.value().replace("in", "dropped"))));
            p.sendOffsetsToTransaction(next, c.groupMetadata());
            p.abortTransaction();
            assertTrue(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().isEmpty());

            p.beginTransaction();
            records.forEach(r -> p.send(new ProducerRecord<>(output, 0, null, r.value().replace("in", "out"))));
            p.sendOffsetsToTransaction(next, c.groupMetadata());
            p.commitTransaction();
            Strom.eventually(() -> {
                OffsetAndMetadata committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                        .get().get(in);
                return committed != null && committed.offset() == 5;
            }, "the group's offset to be 5");
            assertEquals(5, c.committed(Set.of(in)).get(in).offset());
        }
        assertEquals(List.of("out-0", "out-1", "out-2", "out-3", "out-4"), values(output, "read_committed", 5));
    }

    /** Admin.fenceProducers bumps the transactional id's epoch: the open transaction is aborted and the old producer is fenced. */
    @Test
    void fenceProducersAbortsAndFencesTheOldProducer() throws Exception {
        String topic = Strom.name("txn");
        Strom.createTopic(admin, topic, 1, (short) 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        String id = Strom.name("txn-id");
        try (KafkaProducer<String, String> p = transactional(id)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "zombie")).get();
            TransactionDescription open = admin.describeTransactions(List.of(id)).description(id).get();

            FenceProducersResult fenced = admin.fenceProducers(List.of(id));
            fenced.all().get();
            assertEquals(open.producerId(), (long) fenced.producerId(id).get());
            assertTrue(fenced.epochId(id).get() > open.producerEpoch(),
                    "epoch " + fenced.epochId(id).get() + " after " + open.producerEpoch());

            assertThrows(ProducerFencedException.class, p::commitTransaction);
            // The coordinator aborted the open transaction, then gave the id its new epoch with
            // no transaction: the state is Empty, as after initTransactions.
            TransactionDescription after = admin.describeTransactions(List.of(id)).description(id).get();
            assertEquals(TransactionState.EMPTY, after.state());
            assertEquals(open.producerId(), after.producerId());
            assertEquals((int) fenced.epochId(id).get(), after.producerEpoch());
            assertTrue(after.topicPartitions().isEmpty());
        }
        Strom.eventually(() -> end(tp, IsolationLevel.READ_COMMITTED) == 2, "the abort marker to be written");
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            assertTrue(c.poll(Duration.ofMillis(500)).isEmpty());
            assertEquals(2, c.position(tp));
        }
    }

    @Test
    void describeUnknownTransactionalId() throws Exception {
        String id = Strom.name("txn-id");
        Throwable unknown = Strom.cause(() -> admin.describeTransactions(List.of(id)).description(id).get());
        assertInstanceOf(TransactionalIdNotFoundException.class, unknown);
    }
}
