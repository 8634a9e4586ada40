package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.junit.jupiter.api.Test;

/**
 * group.protocol=consumer (KIP-848): Strom does not implement the ConsumerGroupHeartbeat API yet,
 * so the client refuses to join. This test changes when issue 18 lands: the consumer should then
 * be assigned its partitions.
 */
class ConsumerGroupProtocolTest {
    @Test
    void newConsumerProtocolIsRefusedAsUnsupported() throws Exception {
        String topic = Strom.name("kip848");
        try (var admin = Strom.admin(Strom.single())) {
            Strom.createTopic(admin, topic, 1, (short) 1, Map.of());
        }
        try (KafkaConsumer<String, String> c = Strom.consumer(Strom.single(), Strom.name("group"),
                Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"))) {
            c.subscribe(List.of(topic));
            UnsupportedVersionException e = assertThrows(UnsupportedVersionException.class, () -> {
                long deadline = System.nanoTime() + Strom.WAIT.toNanos();
                while (System.nanoTime() < deadline) {
                    c.poll(Duration.ofMillis(200));
                }
            });
            assertEquals("The cluster does not support the new CONSUMER group protocol. Set group.protocol=classic "
                    + "on the consumer configs to revert to the CLASSIC protocol until the cluster is upgraded.",
                    e.getMessage());
        }
    }
}
