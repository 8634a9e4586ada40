package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** KafkaConsumer (the classic group protocol) against the single node. */
class ConsumerTest {
    private static Admin admin;

    @BeforeAll
    static void connect() {
        admin = Strom.admin(Strom.single());
    }

    @AfterAll
    static void close() {
        admin.close();
    }

    private static String topic(int partitions) throws Exception {
        String name = Strom.name("consumer");
        Strom.createTopic(admin, name, partitions, (short) 1, Map.of());
        return name;
    }

    private static Set<TopicPartition> partitions(String topic, int count) {
        return IntStream.range(0, count).mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toSet());
    }

    /** Records what the group hands a consumer and takes from it. */
    static final class Listener implements ConsumerRebalanceListener {
        final List<Set<TopicPartition>> assigned = new ArrayList<>();
        final Set<TopicPartition> revoked = new HashSet<>();
        final Set<TopicPartition> lost = new HashSet<>();

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            assigned.add(new HashSet<>(partitions));
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            revoked.addAll(partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            lost.addAll(partitions);
        }
    }

    /** Polls every consumer in turn until `done` holds, checking `invariant` after each poll. */
    private static void pollUntil(List<KafkaConsumer<String, String>> consumers, BooleanSupplier done,
                                  Runnable invariant, String what) {
        long deadline = System.nanoTime() + Strom.WAIT.toNanos();
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + Strom.WAIT + " waiting for " + what);
            }
            for (KafkaConsumer<String, String> c : consumers) {
                c.poll(Duration.ofMillis(100));
                invariant.run();
            }
        }
    }

    @Test
    void cooperativeStickySplitsPartitionsWithoutDoubleOwnership() throws Exception {
        String topic = topic(6);
        String group = Strom.name("group");
        Map<String, Object> config = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                CooperativeStickyAssignor.class.getName());
        Set<TopicPartition> all = partitions(topic, 6);
        Listener la = new Listener();
        Listener lb = new Listener();
        try (KafkaConsumer<String, String> a = Strom.consumer(Strom.single(), group, config);
             KafkaConsumer<String, String> b = Strom.consumer(Strom.single(), group, config)) {
            a.subscribe(List.of(topic), la);
            pollUntil(List.of(a), () -> a.assignment().equals(all), () -> { }, "the first consumer to own all 6");
            assertEquals(List.of(all), la.assigned);

            b.subscribe(List.of(topic), lb);
            Runnable disjoint = () -> {
                Set<TopicPartition> both = new HashSet<>(a.assignment());
                both.retainAll(b.assignment());
                assertTrue(both.isEmpty(), "owned by both consumers: " + both);
            };
            pollUntil(List.of(a, b), () -> a.assignment().size() == 3 && b.assignment().size() == 3, disjoint,
                    "the partitions to be split 3 and 3");
            Set<TopicPartition> union = new HashSet<>(a.assignment());
            union.addAll(b.assignment());
            assertEquals(all, union);
            // Cooperative: the first consumer gave up exactly the three that moved, kept the rest
            // throughout, and lost nothing.
            assertEquals(b.assignment(), la.revoked);
            assertTrue(la.lost.isEmpty() && lb.lost.isEmpty());
            var description = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            assertEquals("cooperative-sticky", description.partitionAssignor());
            assertEquals(2, description.members().size());
        }
    }

    /**
     * A static member (group.instance.id) that closes without leaving and comes back within the
     * session timeout gets its partitions back in the same generation: the group does not
     * rebalance, so the other member keeps its partitions and sees no callback. That holds for
     * a follower (member-a) and for the group's leader (member-b, which joined first).
     */
    @Test
    void staticMembersRestartWithoutRebalance() throws Exception {
        String topic = topic(4);
        String group = Strom.name("group");
        Map<String, Object> common = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                RangeAssignor.class.getName(), ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "45000");
        Map<String, Object> asB = new HashMap<>(common);
        asB.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "member-b");
        Map<String, Object> asA = new HashMap<>(common);
        asA.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "member-a");
        Listener lb = new Listener();
        try (KafkaConsumer<String, String> b = Strom.consumer(Strom.single(), group, asB)) {
            b.subscribe(List.of(topic), lb);
            pollUntil(List.of(b), () -> b.assignment().size() == 4, () -> { }, "member-b to own all 4");

            Set<TopicPartition> first;
            int generation;
            try (KafkaConsumer<String, String> a = Strom.consumer(Strom.single(), group, asA)) {
                a.subscribe(List.of(topic));
                pollUntil(List.of(a, b), () -> a.assignment().size() == 2 && b.assignment().size() == 2, () -> { },
                        "the partitions to be split 2 and 2");
                first = new HashSet<>(a.assignment());
                generation = a.groupMetadata().generationId();
                assertEquals(generation, b.groupMetadata().generationId());
            }
            Set<TopicPartition> ofB = new HashSet<>(b.assignment());
            int callbacks = lb.assigned.size();

            try (KafkaConsumer<String, String> again = Strom.consumer(Strom.single(), group, asA)) {
                again.subscribe(List.of(topic));
                pollUntil(List.of(again, b), () -> !again.assignment().isEmpty(), () -> { },
                        "member-a to be assigned again");
                assertEquals(first, again.assignment());
                assertEquals(generation, again.groupMetadata().generationId());
                b.poll(Duration.ofMillis(100));
                assertEquals(ofB, b.assignment());
                assertEquals(generation, b.groupMetadata().generationId());
                assertEquals(callbacks, lb.assigned.size(), "member-b saw a rebalance: " + lb.assigned);
                var members = admin.describeConsumerGroups(List.of(group)).all().get().get(group).members();
                assertEquals(Set.of("member-a", "member-b"),
                        members.stream().map(m -> m.groupInstanceId().orElse("")).collect(Collectors.toSet()));

                b.close();
                try (KafkaConsumer<String, String> leader = Strom.consumer(Strom.single(), group, asB)) {
                    leader.subscribe(List.of(topic));
                    pollUntil(List.of(leader, again), () -> !leader.assignment().isEmpty(), () -> { },
                            "member-b to be assigned again");
                    assertEquals(ofB, leader.assignment());
                    assertEquals(generation, leader.groupMetadata().generationId());
                    again.poll(Duration.ofMillis(100));
                    assertEquals(first, again.assignment());
                    assertEquals(generation, again.groupMetadata().generationId());
                }
            }
        }
    }

    @Test
    void offsetsForTimesFindsTheFirstRecordAtOrAfter() throws Exception {
        String topic = topic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        long base = System.currentTimeMillis() - 600_000;
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(topic, 0, base + i * 10_000L, null, "v" + i)).get();
            }
        }
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null, Map.of())) {
            Map<TopicPartition, OffsetAndTimestamp> exact = c.offsetsForTimes(Map.of(tp, base + 20_000));
            assertEquals(new OffsetAndTimestamp(2, base + 20_000, Optional.of(0)), exact.get(tp));
            Map<TopicPartition, OffsetAndTimestamp> between = c.offsetsForTimes(Map.of(tp, base + 25_000));
            assertEquals(new OffsetAndTimestamp(3, base + 30_000, Optional.of(0)), between.get(tp));
            Map<TopicPartition, OffsetAndTimestamp> early = c.offsetsForTimes(Map.of(tp, 0L));
            assertEquals(new OffsetAndTimestamp(0, base, Optional.of(0)), early.get(tp));
            Map<TopicPartition, OffsetAndTimestamp> late = c.offsetsForTimes(Map.of(tp, base + 40_001));
            assertTrue(late.containsKey(tp));
            assertNull(late.get(tp));
        }
    }

    @Test
    void seekMovesThePosition() throws Exception {
        String topic = topic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            for (int i = 0; i < 10; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, "v" + i));
            }
            p.flush();
        }
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null, Map.of())) {
            c.assign(List.of(tp));
            c.seek(tp, 7);
            List<ConsumerRecord<String, String>> tail = Strom.poll(c, 3);
            assertEquals(List.of(7L, 8L, 9L), tail.stream().map(ConsumerRecord::offset).toList());
            assertEquals(List.of("v7", "v8", "v9"), tail.stream().map(ConsumerRecord::value).toList());
            assertEquals(10, c.position(tp));

            c.seekToBeginning(List.of(tp));
            assertEquals(0, c.position(tp));
            assertEquals("v0", Strom.poll(c, 1).get(0).value());

            c.seekToEnd(List.of(tp));
            assertEquals(10, c.position(tp));
            c.seek(tp, 4);
            assertEquals("v4", Strom.poll(c, 1).get(0).value());
            assertEquals(Map.of(tp, 0L), c.beginningOffsets(List.of(tp)));
            assertEquals(Map.of(tp, 10L), c.endOffsets(List.of(tp)));
        }
    }

    @Test
    void pausedPartitionsAreNotFetchedUntilResumed() throws Exception {
        String topic = topic(2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, "p0-" + i));
                p.send(new ProducerRecord<>(topic, 1, null, "p1-" + i));
            }
            p.flush();
        }
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null, Map.of())) {
            c.assign(List.of(p0, p1));
            c.seekToBeginning(List.of(p0, p1));
            c.pause(List.of(p0));
            assertEquals(Set.of(p0), c.paused());
            List<ConsumerRecord<String, String>> got = Strom.poll(c, 5);
            assertTrue(got.stream().allMatch(r -> r.partition() == 1), "fetched from a paused partition: " + got);
            assertEquals(0, c.position(p0));
            ConsumerRecords<String, String> more = c.poll(Duration.ofMillis(300));
            assertTrue(more.records(p0).isEmpty());

            c.resume(List.of(p0));
            assertTrue(c.paused().isEmpty());
            List<ConsumerRecord<String, String>> resumed = Strom.poll(c, 5);
            assertEquals(List.of("p0-0", "p0-1", "p0-2", "p0-3", "p0-4"),
                    resumed.stream().map(ConsumerRecord::value).toList());
            assertEquals(5, c.position(p0));
        }
    }
}
