package dev.strom.tests.streams;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Collectors;

import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Reads text lines keyed by their source and writes two results:
 * <ul>
 *   <li>the running count of every word (the lines are split into words, regrouped by word through
 *       a repartition topic, and counted in a key-value store with a changelog) to COUNTS, keyed by
 *       word;</li>
 *   <li>the number of words each source wrote per 10-second tumbling window of the records'
 *       timestamps (a window store with a changelog) to WINDOWED, keyed by "source@windowStartMs".</li>
 * </ul>
 * Values are decimal strings. Caching is off, so every update of a count or a sum is written.
 *
 * <p>Arguments: BOOTSTRAP APPLICATION_ID PROCESSING_GUARANTEE INPUT COUNTS WINDOWED STATE_DIR. It
 * prints its topology and its state changes ("STATE RUNNING") on stdout and runs until SIGTERM,
 * which closes the streams and exits 0; it exits 1 if the streams fail.
 */
public final class WordCountApp {
    static final Duration WINDOW = Duration.ofSeconds(10);
    static final Duration GRACE = Duration.ofMinutes(5);

    private WordCountApp() {
    }

    static List<String> words(String line) {
        return Arrays.stream(line.toLowerCase().split("\\W+")).filter(w -> !w.isEmpty()).collect(Collectors.toList());
    }

    static Topology topology(String input, String counts, String windowed) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> lines = builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));

        lines.flatMapValues(WordCountApp::words)
            .groupBy((source, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
            .count(Materialized.as("word-counts"))
            .toStream()
            .mapValues(String::valueOf)
            .to(counts, Produced.with(Serdes.String(), Serdes.String()));

        lines.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
            .windowedBy(TimeWindows.ofSizeAndGrace(WINDOW, GRACE))
            .aggregate(() -> 0L, (source, line, sum) -> sum + words(line).size(),
                Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("words-per-window")
                    .withKeySerde(Serdes.String())
                    .withValueSerde(Serdes.Long()))
            .toStream((window, sum) -> window.key() + "@" + window.window().start())
            .mapValues(String::valueOf)
            .to(windowed, Produced.with(Serdes.String(), Serdes.String()));

        return builder.build();
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 7) {
            System.err.println("usage: WordCountApp BOOTSTRAP APPLICATION_ID PROCESSING_GUARANTEE INPUT COUNTS WINDOWED STATE_DIR");
            System.exit(2);
        }
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[2]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 3);
        props.put(StreamsConfig.topicPrefix(TopicConfig.MIN_IN_SYNC_REPLICAS_CONFIG), "2");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);

        Topology topology = topology(args[3], args[4], args[5]);
        System.out.println(topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stopped = new CountDownLatch(1);
        boolean[] failed = {false};
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) {
                failed[0] = true;
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("stream thread failed:");
            e.printStackTrace();
            failed[0] = true;
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        // On SIGTERM: close the streams (commit, flush, leave the group) and exit 0 if that finished
        // in time, rather than the JVM's 143 for a signal.
        Thread closer = new Thread(() -> {
            boolean closed = streams.close(Duration.ofSeconds(30));
            stopped.countDown();
            Runtime.getRuntime().halt(closed && !failed[0] ? 0 : 1);
        });
        Runtime.getRuntime().addShutdownHook(closer);
        streams.start();
        stopped.await();
        if (failed[0]) {
            Runtime.getRuntime().removeShutdownHook(closer);
            streams.close(Duration.ofSeconds(10));
            System.exit(1);
        }
    }
}
