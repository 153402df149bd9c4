// The Java side of `sluice-lab bench produce`: Apache Kafka's own KafkaProducer (kafka-clients
// 4.x) sending records as fast as it accepts them, with the settings Sluicegate's producer
// uses by default (acks=all, idempotence, linger 5 ms, no compression) and a batch size as
// large as librdkafka's, then a flush.
//
// Usage: java -cp <classes>:<kafka classpath> ProduceLoop BROKERS TOPIC RECORDS RECORD_BYTES
// Records carry an 8-byte big-endian key (their sequence number) and a fixed value. First one
// warm-up record is sent and awaited (connection, metadata, producer id; not timed). Prints one
// JSON object on stdout with the fields of the Rust sides' round report.

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class ProduceLoop {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ProduceLoop BROKERS TOPIC RECORDS RECORD_BYTES");
            System.exit(2);
        }
        String brokers = args[0];
        String topic = args[1];
        long records = Long.parseLong(args[2]);
        int recordBytes = Integer.parseInt(args[3]);

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "sluicegate-bench-java");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, String.valueOf(1_000_000));
        props.put(ProducerConfig.BUFFER_MEMORY_CONFIG, String.valueOf(64L << 20));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

        byte[] value = new byte[recordBytes];
        Arrays.fill(value, (byte) 'x');
        AtomicLong delivered = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        AtomicLong lastDelivery = new AtomicLong();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            long warmupStarted = System.nanoTime();
            producer.send(new ProducerRecord<>(topic, key(0), value)).get();
            double warmup = (System.nanoTime() - warmupStarted) / 1e9;

            long started = System.nanoTime();
            for (long sequence = 1; sequence <= records; sequence++) {
                producer.send(new ProducerRecord<>(topic, key(sequence), value), (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                    } else {
                        delivered.incrementAndGet();
                    }
                    lastDelivery.accumulateAndGet(System.nanoTime(), Math::max);
                });
            }
            long sent = System.nanoTime();
            producer.flush();
            long flushed = System.nanoTime();
            double seconds = (lastDelivery.get() - started) / 1e9;
            double rps = seconds > 0 ? delivered.get() / seconds : 0;
            System.out.printf(
                "{\"side\":\"java\",\"delivered\":%d,\"failed\":%d,\"rps\":%.3f,\"mb_per_s\":%.3f,\"seconds\":%.6f,"
                    + "\"send_seconds\":%.6f,\"flush_seconds\":%.6f,\"warmup_seconds\":%.6f,\"peak_rss_bytes\":%d}%n",
                delivered.get(), failed.get(), rps, rps * recordBytes / 1e6, seconds,
                (sent - started) / 1e9, (flushed - started) / 1e9, warmup, peakRss());
        }
    }

    private static byte[] key(long sequence) {
        return ByteBuffer.allocate(8).putLong(sequence).array();
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
