package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
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
}
