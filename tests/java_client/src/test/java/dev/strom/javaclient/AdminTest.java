package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The Admin client against the single node (node id 1). */
class AdminTest {
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
        String name = Strom.name("admin");
        Strom.createTopic(admin, name, partitions, (short) 1, Map.of());
        return name;
    }

    private static void produce(String topic, int partition, int count) {
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(), Map.of())) {
            for (int i = 0; i < count; i++) {
                p.send(new ProducerRecord<>(topic, partition, null, "v" + i));
            }
            p.flush();
        }
    }

    private static ListOffsetsResultInfo offset(TopicPartition tp, OffsetSpec spec) throws Exception {
        return admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get();
    }

    @Test
    void createListDescribeDeleteTopics() throws Exception {
        String name = Strom.name("admin");
        admin.createTopics(List.of(new NewTopic(name, 3, (short) 1).configs(Map.of("retention.ms", "3600000"))))
                .all().get();
        Strom.eventually(() -> admin.listTopics().names().get().contains(name), "listTopics to show " + name);
        assertFalse(admin.listTopics().names().get().contains("__consumer_offsets"));

        TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
        assertEquals(name, d.name());
        assertFalse(d.isInternal());
        assertEquals(List.of(0, 1, 2), d.partitions().stream().map(p -> p.partition()).toList());
        for (var p : d.partitions()) {
            assertEquals(1, p.leader().id());
            assertEquals(List.of(1), p.replicas().stream().map(Node::id).toList());
            assertEquals(List.of(1), p.isr().stream().map(Node::id).toList());
        }
        assertNotNull(d.topicId());
        assertEquals(d.topicId(), admin.listTopics().listings().get().stream()
                .filter(l -> l.name().equals(name)).findFirst().orElseThrow().topicId());

        Throwable exists = Strom.cause(() -> admin.createTopics(List.of(new NewTopic(name, 1, (short) 1))).all().get());
        assertInstanceOf(TopicExistsException.class, exists);

        String notCreated = Strom.name("admin");
        admin.createTopics(List.of(new NewTopic(notCreated, 2, (short) 1)), new CreateTopicsOptions().validateOnly(true))
                .all().get();
        assertFalse(admin.listTopics().names().get().contains(notCreated));

        admin.deleteTopics(List.of(name)).all().get();
        Strom.eventually(() -> !admin.listTopics().names().get().contains(name), "listTopics to drop " + name);
        Throwable gone = Strom.cause(() -> admin.describeTopics(List.of(name)).allTopicNames().get());
        assertInstanceOf(UnknownTopicOrPartitionException.class, gone);
    }

    /** Topics named by their ids: Metadata v12 and DeleteTopics v6 with topic ids. */
    @Test
    void describeAndDeleteTopicsById() throws Exception {
        String name = topic(3);
        Uuid id = admin.describeTopics(List.of(name)).allTopicNames().get().get(name).topicId();

        TopicDescription byId = admin.describeTopics(TopicCollection.ofTopicIds(List.of(id))).allTopicIds().get()
                .get(id);
        assertEquals(name, byId.name());
        assertEquals(id, byId.topicId());
        assertEquals(3, byId.partitions().size());

        Uuid unknown = Uuid.randomUuid();
        Throwable notFound = Strom.cause(() -> admin.describeTopics(TopicCollection.ofTopicIds(List.of(unknown)))
                .allTopicIds().get());
        assertInstanceOf(UnknownTopicIdException.class, notFound);

        admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id))).all().get();
        Strom.eventually(() -> !admin.listTopics().names().get().contains(name), "listTopics to drop " + name);
        Throwable deleted = Strom.cause(() -> admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id))).all()
                .get());
        assertInstanceOf(UnknownTopicIdException.class, deleted);
    }

    @Test
    void describeAndIncrementallyAlterTopicConfigs() throws Exception {
        String name = Strom.name("admin");
        Strom.createTopic(admin, name, 1, (short) 1, Map.of("retention.ms", "3600000", "cleanup.policy", "delete"));
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, name);

        Config before = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        ConfigEntry retention = before.get("retention.ms");
        assertEquals("3600000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
        ConfigEntry segment = before.get("segment.bytes");
        assertEquals("1073741824", segment.value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, segment.source());
        assertEquals("1048588", before.get("max.message.bytes").value());

        admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("segment.bytes", "2097152"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND))))
                .all().get();
        Strom.eventually(() -> "2097152".equals(admin.describeConfigs(List.of(resource)).all().get().get(resource)
                .get("segment.bytes").value()), "segment.bytes to read 2097152");
        Config after = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, after.get("segment.bytes").source());
        assertEquals("604800000", after.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, after.get("retention.ms").source());
        assertEquals("delete,compact", after.get("cleanup.policy").value());

        Throwable invalid = Strom.cause(() -> admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all().get());
        assertInstanceOf(InvalidConfigurationException.class, invalid);
        assertEquals("604800000", admin.describeConfigs(List.of(resource)).all().get().get(resource)
                .get("retention.ms").value());
    }

    @Test
    void createPartitionsOnlyGrows() throws Exception {
        String name = topic(2);
        admin.createPartitions(Map.of(name, NewPartitions.increaseTo(5))).all().get();
        Strom.eventually(() -> admin.describeTopics(List.of(name)).allTopicNames().get().get(name).partitions()
                .size() == 5, name + " to have 5 partitions");
        produce(name, 4, 1);
        assertEquals(1, offset(new TopicPartition(name, 4), OffsetSpec.latest()).offset());

        Throwable fewer = Strom.cause(() -> admin.createPartitions(Map.of(name, NewPartitions.increaseTo(3))).all()
                .get());
        assertInstanceOf(InvalidPartitionsException.class, fewer);
    }

    @Test
    void consumerGroupAdministration() throws Exception {
        String name = topic(2);
        TopicPartition p0 = new TopicPartition(name, 0);
        TopicPartition p1 = new TopicPartition(name, 1);
        produce(name, 0, 4);
        produce(name, 1, 4);
        String group = Strom.name("group");
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), group, Map.of())) {
            c.subscribe(List.of(name));
            Strom.poll(c, 8);
            c.commitSync(Map.of(p0, new OffsetAndMetadata(3, "three"), p1, new OffsetAndMetadata(4)));

            Collection<ConsumerGroupListing> listed = admin.listConsumerGroups().all().get();
            ConsumerGroupListing listing = listed.stream().filter(g -> g.groupId().equals(group)).findFirst()
                    .orElseThrow();
            assertEquals(GroupState.STABLE, listing.groupState().orElseThrow());
            assertEquals(GroupType.CLASSIC, listing.type().orElseThrow());
            assertFalse(listing.isSimpleConsumerGroup());

            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            assertEquals(GroupState.STABLE, d.groupState());
            assertFalse(d.isSimpleConsumerGroup());
            assertEquals("range", d.partitionAssignor());
            assertEquals(1, d.members().size());
            assertEquals(Set.of(p0, p1), d.members().iterator().next().assignment().topicPartitions());
            assertEquals(1, d.coordinator().id());

            Throwable notEmpty = Strom.cause(() -> admin.deleteConsumerGroups(List.of(group)).all().get());
            assertInstanceOf(GroupNotEmptyException.class, notEmpty);
            Throwable active = Strom.cause(() -> admin.alterConsumerGroupOffsets(group,
                    Map.of(p0, new OffsetAndMetadata(0))).all().get());
            assertInstanceOf(UnknownMemberIdException.class, active);
            Throwable subscribed = Strom.cause(() -> admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get());
            assertInstanceOf(GroupSubscribedToTopicException.class, subscribed);
        }
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get();
        assertEquals(3, committed.get(p0).offset());
        assertEquals("three", committed.get(p0).metadata());
        assertEquals(4, committed.get(p1).offset());
        assertEquals(GroupState.EMPTY, admin.describeConsumerGroups(List.of(group)).all().get().get(group)
                .groupState());

        admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1))).all().get();
        committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(Map.of(p0, 1L, p1, 4L), committed.entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset())));

        admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
        committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        assertEquals(Set.of(p0), committed.keySet());

        admin.deleteConsumerGroups(List.of(group)).all().get();
        assertTrue(admin.listConsumerGroups().all().get().stream().noneMatch(g -> g.groupId().equals(group)));
        assertTrue(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().isEmpty());
    }

    /** Kafka 4 answers DescribeGroups (v6) for a group that does not exist with GROUP_ID_NOT_FOUND. */
    @Test
    void describeUnknownConsumerGroupIsNotFound() throws Exception {
        String group = Strom.name("group");
        Throwable unknown = Strom.cause(() -> admin.describeConsumerGroups(List.of(group)).all().get());
        assertInstanceOf(GroupIdNotFoundException.class, unknown, String.valueOf(unknown));
    }

    /**
     * A preferred election for all partitions (partitions null) lists only the partitions it
     * tried to elect: on one node every leader is already the preferred one, so none.
     */
    @Test
    void electAllPreferredLeadersListsNoPartitionAlreadyLed() throws Exception {
        topic(3);
        Map<TopicPartition, Optional<Throwable>> result = admin.electLeaders(ElectionType.PREFERRED, null)
                .partitions().get();
        assertEquals(Map.of(), result);
    }

    @Test
    void describeClusterListsTheNode() throws Exception {
        DescribeClusterResult cluster = admin.describeCluster();
        Collection<Node> nodes = cluster.nodes().get();
        assertEquals(1, nodes.size());
        Node node = nodes.iterator().next();
        assertEquals(1, node.id());
        assertEquals("127.0.0.1:" + node.port(), Strom.single());
        assertEquals(1, cluster.controller().get().id());
        assertFalse(cluster.clusterId().get().isEmpty());
    }

    @Test
    void listOffsetsEarliestLatestByTimestampAndMaxTimestamp() throws Exception {
        String name = topic(1);
        TopicPartition tp = new TopicPartition(name, 0);
        long base = System.currentTimeMillis() - 600_000;
        long[] stamps = {base, base + 3000, base + 1000, base + 2000};
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(),
                Map.of(ProducerConfig.LINGER_MS_CONFIG, "100"))) {
            for (long stamp : stamps) {
                p.send(new ProducerRecord<>(name, 0, stamp, null, "v"));
            }
            p.flush();
        }
        assertEquals(0, offset(tp, OffsetSpec.earliest()).offset());
        assertEquals(4, offset(tp, OffsetSpec.latest()).offset());
        ListOffsetsResultInfo at = offset(tp, OffsetSpec.forTimestamp(base + 500));
        assertEquals(1, at.offset());
        assertEquals(base + 3000, at.timestamp());
        assertEquals(0, offset(tp, OffsetSpec.forTimestamp(base)).offset());
        assertEquals(-1, offset(tp, OffsetSpec.forTimestamp(base + 3001)).offset());
        ListOffsetsResultInfo max = offset(tp, OffsetSpec.maxTimestamp());
        assertEquals(1, max.offset());
        assertEquals(base + 3000, max.timestamp());
    }

    @Test
    void deleteRecordsMovesTheLogStartOffset() throws Exception {
        String name = topic(1);
        TopicPartition tp = new TopicPartition(name, 0);
        produce(name, 0, 10);
        long low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp).get()
                .lowWatermark();
        assertEquals(4, low);
        assertEquals(4, offset(tp, OffsetSpec.earliest()).offset());
        assertEquals(10, offset(tp, OffsetSpec.latest()).offset());
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), null, Map.of())) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = Strom.poll(c, 6);
            assertEquals(4, got.get(0).offset());
            assertEquals("v4", got.get(0).value());
        }
        Throwable beyond = Strom.cause(() -> admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(11)))
                .lowWatermarks().get(tp).get());
        assertInstanceOf(OffsetOutOfRangeException.class, beyond);
    }

    @Test
    void describeLogDirsShowsTheReplica() throws Exception {
        String name = topic(1);
        TopicPartition tp = new TopicPartition(name, 0);
        produce(name, 0, 10);
        Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(1)).allDescriptions().get().get(1);
        String logDir = System.getProperty("strom.single.logdir");
        assertEquals(Set.of(Path.of(logDir).toString()), dirs.keySet());
        LogDirDescription dir = dirs.get(logDir);
        assertEquals(null, dir.error());
        ReplicaInfo replica = dir.replicaInfos().get(tp);
        assertNotNull(replica, "no " + tp + " in " + dir.replicaInfos().keySet());
        assertTrue(replica.size() > 10 * 2, "size " + replica.size());
        assertEquals(0, replica.offsetLag());
        assertFalse(replica.isFuture());
        assertTrue(dir.totalBytes().orElseThrow() >= dir.usableBytes().orElseThrow());
    }

    @Test
    void describeMetadataQuorumOfOneVoter() throws Exception {
        QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
        assertEquals(1, quorum.leaderId());
        assertTrue(quorum.leaderEpoch() >= 1);
        assertEquals(List.of(1), quorum.voters().stream().map(QuorumInfo.ReplicaState::replicaId).toList());
        assertTrue(quorum.observers().isEmpty());
        assertTrue(quorum.highWatermark() > 0);
        assertEquals(quorum.highWatermark(), quorum.voters().get(0).logEndOffset());
    }

    @Test
    void describeProducersOfAnIdempotentProducer() throws Exception {
        String name = topic(1);
        TopicPartition tp = new TopicPartition(name, 0);
        long stamp = System.currentTimeMillis() - 1000;
        try (KafkaProducer<String, String> p = Strom.producer(Strom.single(),
                Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true"))) {
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(name, 0, stamp + i, null, "v" + i)).get();
            }
        }
        List<ProducerState> producers = admin.describeProducers(List.of(tp)).partitionResult(tp).get()
                .activeProducers();
        assertEquals(1, producers.size());
        ProducerState state = producers.get(0);
        assertTrue(state.producerId() >= 0);
        assertEquals(0, state.producerEpoch());
        assertEquals(4, state.lastSequence());
        assertEquals(stamp + 4, state.lastTimestamp());
        assertTrue(state.currentTransactionStartOffset().isEmpty());
    }
}
