package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterPartitionReassignmentsOptions;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.InvalidReplicaAssignmentException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.NoReassignmentInProgressException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The Admin client against the 3-node cluster (nodes 1, 2 and 3, each broker and controller). */
class ClusterAdminTest {
    private static Admin admin;

    @BeforeAll
    static void connect() {
        admin = Strom.admin(Strom.cluster());
    }

    @AfterAll
    static void close() {
        admin.close();
    }

    private static TopicPartitionInfo partition(TopicPartition tp) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(tp.topic())).allTopicNames().get().get(tp.topic());
        return d.partitions().get(tp.partition());
    }

    private static List<Integer> ids(List<Node> nodes) {
        return nodes.stream().map(Node::id).toList();
    }

    private static String topic(Map<Integer, List<Integer>> assignment) throws Exception {
        String name = Strom.name("cluster");
        Strom.createTopic(admin, new NewTopic(name, assignment));
        for (var e : assignment.entrySet()) {
            TopicPartition tp = new TopicPartition(name, e.getKey());
            Strom.eventually(() -> partition(tp).isr().size() == e.getValue().size(), tp + " to have a full ISR");
        }
        return name;
    }

    private static void waitReassigned(TopicPartition tp, List<Integer> replicas) throws Exception {
        Strom.eventually(() -> admin.listPartitionReassignments(Set.of(tp)).reassignments().get().isEmpty()
                && ids(partition(tp).replicas()).equals(replicas)
                && Set.copyOf(ids(partition(tp).isr())).equals(Set.copyOf(replicas)),
                tp + " reassigned to " + replicas);
    }

    @Test
    void describeClusterListsThreeNodes() throws Exception {
        var cluster = admin.describeCluster();
        assertEquals(Set.of(1, 2, 3), cluster.nodes().get().stream().map(Node::id).collect(Collectors.toSet()));
        assertTrue(Set.of(1, 2, 3).contains(cluster.controller().get().id()));
        assertFalse(cluster.clusterId().get().isEmpty());
    }

    @Test
    void describeMetadataQuorumOfThreeVoters() throws Exception {
        QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
        assertTrue(Set.of(1, 2, 3).contains(quorum.leaderId()), "leader " + quorum.leaderId());
        assertEquals(Set.of(1, 2, 3), quorum.voters().stream().map(QuorumInfo.ReplicaState::replicaId)
                .collect(Collectors.toSet()));
        assertTrue(quorum.observers().isEmpty());
        QuorumInfo.ReplicaState leader = quorum.voters().stream().filter(v -> v.replicaId() == quorum.leaderId())
                .findFirst().orElseThrow();
        assertTrue(leader.logEndOffset() >= quorum.highWatermark() && quorum.highWatermark() > 0,
                "leader's log end " + leader.logEndOffset() + ", high watermark " + quorum.highWatermark());
    }

    /**
     * Reordering the replicas of a partition (a reassignment to the same set) makes another
     * replica the preferred leader without moving leadership; a preferred election then moves
     * it, and another is not needed.
     */
    @Test
    void electPreferredLeader() throws Exception {
        String name = topic(Map.of(0, List.of(1, 2, 3)));
        TopicPartition tp = new TopicPartition(name, 0);
        assertEquals(1, partition(tp).leader().id());

        Throwable notNeeded = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get().get(tp)
                .orElseThrow();
        assertInstanceOf(ElectionNotNeededException.class, notNeeded);

        admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(2, 1, 3)))))
                .all().get();
        waitReassigned(tp, List.of(2, 1, 3));
        assertEquals(1, partition(tp).leader().id());

        Map<TopicPartition, Optional<Throwable>> elected = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp))
                .partitions().get();
        assertEquals(Map.of(tp, Optional.empty()), elected);
        Strom.eventually(() -> partition(tp).leader().id() == 2, "node 2 to lead " + tp);

        Throwable again = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get().get(tp)
                .orElseThrow();
        assertInstanceOf(ElectionNotNeededException.class, again);
    }

    @Test
    void reassignPartitionMovesItsData() throws Exception {
        String name = topic(Map.of(0, List.of(1, 2), 1, List.of(2, 3)));
        TopicPartition tp = new TopicPartition(name, 0);
        try (KafkaProducer<String, String> p = Strom.producer(Strom.cluster(), Map.of(ProducerConfig.ACKS_CONFIG,
                "all"))) {
            for (int i = 0; i < 20; i++) {
                p.send(new ProducerRecord<>(name, 0, null, "v" + i));
            }
            p.flush();
        }

        admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(2, 3)))))
                .all().get();
        waitReassigned(tp, List.of(2, 3));
        assertTrue(Set.of(2, 3).contains(partition(tp).leader().id()));
        assertEquals(20, admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset());
        Strom.eventually(() -> {
            var dirs = admin.describeLogDirs(List.of(1, 3)).allDescriptions().get();
            boolean leftNode1 = dirs.get(1).values().stream().noneMatch(d -> d.replicaInfos().containsKey(tp));
            boolean onNode3 = dirs.get(3).values().stream().anyMatch(d -> d.replicaInfos().containsKey(tp)
                    && d.replicaInfos().get(tp).size() > 0);
            return leftNode1 && onNode3;
        }, tp + " to leave node 1's log dirs and fill node 3's");
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.cluster(), null, Map.of())) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = Strom.poll(c, 20);
            assertEquals("v0", got.get(0).value());
            assertEquals("v19", got.get(19).value());
        }

        Throwable nothingToCancel = Strom.cause(() -> admin.alterPartitionReassignments(
                Map.of(tp, Optional.empty())).all().get());
        assertInstanceOf(NoReassignmentInProgressException.class, nothingToCancel);

        Throwable unknownBroker = Strom.cause(() -> admin.alterPartitionReassignments(
                Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(2, 99))))).all().get());
        assertInstanceOf(InvalidReplicaAssignmentException.class, unknownBroker);

        TopicPartition other = new TopicPartition(name, 1);
        Throwable growing = Strom.cause(() -> admin.alterPartitionReassignments(
                Map.of(other, Optional.of(new NewPartitionReassignment(List.of(2, 3, 1)))),
                new AlterPartitionReassignmentsOptions().allowReplicationFactorChange(false)).all().get());
        assertInstanceOf(InvalidReplicationFactorException.class, growing);
        assertEquals(List.of(2, 3), ids(partition(other).replicas()));
    }
}
