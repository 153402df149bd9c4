// The Java side of `sluice-lab bench peers`: Apache Kafka's own KafkaConsumer (kafka-clients
// 4.x) in a tuned poll loop, reading every record of a topic with a fresh group, doing nothing
// with them, and committing (auto commit while reading, a synchronous commit at the end).
//
// Usage: java -cp <classes>:<kafka classpath> ConsumeLoop BROKERS TOPIC GROUP EXPECTED
// Prints one JSON object on stdout: records, seconds (first record to last), startup_seconds
// (client creation to first record), committed (records the final commit covers) and
// peak_rss_bytes (VmHWM of this JVM).

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class ConsumeLoop {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ConsumeLoop BROKERS TOPIC GROUP EXPECTED");
            System.exit(2);
        }
        String brokers = args[0];
        String topic = args[1];
        String group = args[2];
        long expected = Long.parseLong(args[3]);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // Tuned for throughput: large polls, fetches that fill, a socket buffer that keeps up.
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5000");
        props.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(4 << 20));
        props.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, String.valueOf(64 << 20));
        props.put(ConsumerConfig.RECEIVE_BUFFER_CONFIG, String.valueOf(4 << 20));
        props.put(ConsumerConfig.CHECK_CRCS_CONFIG, "false");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        props.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "10000");

        long created = System.nanoTime();
        long first = 0;
        long last = 0;
        long records = 0;
        long sink = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            long idleSince = System.nanoTime();
            while (records < expected) {
                ConsumerRecords<byte[], byte[]> polled = consumer.poll(Duration.ofMillis(100));
                if (polled.isEmpty()) {
                    if (System.nanoTime() - idleSince > 30_000_000_000L) {
                        System.err.println("no record for 30 s after " + records + " records");
                        System.exit(1);
                    }
                    continue;
                }
                idleSince = System.nanoTime();
                if (first == 0) {
                    first = idleSince;
                }
                for (var record : polled) {
                    // No-op handling that the JIT cannot remove.
                    sink += record.offset();
                }
                records += polled.count();
                last = System.nanoTime();
            }
            consumer.commitSync();
            Set<TopicPartition> assigned = consumer.assignment();
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
            long committedRecords = committed.values().stream()
                .filter(offset -> offset != null)
                .collect(Collectors.summingLong(OffsetAndMetadata::offset));
            double seconds = (last - first) / 1e9;
            double startup = (first - created) / 1e9;
            System.out.printf(
                "{\"records\":%d,\"seconds\":%.6f,\"startup_seconds\":%.6f,\"committed\":%d,\"peak_rss_bytes\":%d,\"sink\":%d}%n",
                records, seconds, startup, committedRecords, peakRss(), sink % 2);
        }
    }

    /** VmHWM of this process, in bytes. */
    private static long peakRss() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        return 0;
    }
}
