// Confluent Parallel Consumer's side of `sluice-lab bench pipeline`'s latency scenario: its own
// illustrative workload, run for real. Every record of a one-partition topic goes through a
// handler that sleeps a seeded 0-5 ms, with concurrency 100, in one processing order.
//
// Usage: java -cp <classes>:<classpath> ParallelConsumerScenario
//            BROKERS TOPIC GROUP RECORDS LOW ORDER CONCURRENCY MAX_LATENCY_US SEED
// ORDER is partition, key or unordered. The delay of the record at offset LOW + i is the i-th
// draw of the same seeded generator the Rust side uses (xorshift64* seeded by splitmix64), so
// both sides sleep the same delays. Prints one JSON object on stdout: elapsed_s (first handler
// call to the end of the last), startup_s (client creation to the first call), records,
// mean_latency_ms (measured around each sleep) and peak_rss_bytes.

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.CommitMode;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class ParallelConsumerScenario {
    public static void main(String[] args) throws Exception {
        if (args.length != 9) {
            System.err.println("usage: ParallelConsumerScenario BROKERS TOPIC GROUP RECORDS LOW ORDER CONCURRENCY MAX_LATENCY_US SEED");
            System.exit(2);
        }
        String brokers = args[0];
        String topic = args[1];
        String group = args[2];
        int records = Integer.parseInt(args[3]);
        long low = Long.parseLong(args[4]);
        ProcessingOrder order = ProcessingOrder.valueOf(args[5].toUpperCase());
        int concurrency = Integer.parseInt(args[6]);
        long maxLatencyUs = Long.parseLong(args[7]);
        long seed = Long.parseLong(args[8]);
        long[] delaysNanos = drawDelays(records, maxLatencyUs, seed);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // Parallel Consumer commits itself.
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");

        long created = System.nanoTime();
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
        ParallelConsumerOptions<byte[], byte[]> options = ParallelConsumerOptions.<byte[], byte[]>builder()
            .ordering(order)
            .maxConcurrency(concurrency)
            .consumer(consumer)
            .commitMode(CommitMode.PERIODIC_CONSUMER_ASYNCHRONOUS)
            .build();
        ParallelStreamProcessor<byte[], byte[]> processor = ParallelStreamProcessor.createEosStreamProcessor(options);
        AtomicLong first = new AtomicLong();
        AtomicLong last = new AtomicLong();
        AtomicLong sleptNanos = new AtomicLong();
        CountDownLatch done = new CountDownLatch(records);
        processor.subscribe(List.of(topic));
        processor.poll(context -> {
            long started = System.nanoTime();
            first.compareAndSet(0, started);
            int index = (int) (context.offset() - low);
            long delay = index >= 0 && index < delaysNanos.length ? delaysNanos[index] : 0;
            sleepFor(delay);
            long ended = System.nanoTime();
            sleptNanos.addAndGet(ended - started);
            last.accumulateAndGet(ended, Math::max);
            done.countDown();
        });
        if (!done.await(600, TimeUnit.SECONDS)) {
            System.err.println("not every record was handled within 600 s: " + done.getCount() + " left");
            System.exit(1);
        }
        double elapsed = (last.get() - first.get()) / 1e9;
        double startup = (first.get() - created) / 1e9;
        double meanLatencyMs = sleptNanos.get() / 1e6 / records;
        processor.closeDrainFirst();
        System.out.printf(
            "{\"records\":%d,\"elapsed_s\":%.6f,\"startup_s\":%.6f,\"mean_latency_ms\":%.6f,\"peak_rss_bytes\":%d}%n",
            records, elapsed, startup, meanLatencyMs, peakRss());
        System.exit(0);
    }

    /** Sleeps `nanos` as precisely as the JVM allows: parkNanos, then a spin for the rest. */
    private static void sleepFor(long nanos) {
        long deadline = System.nanoTime() + nanos;
        long left;
        while ((left = deadline - System.nanoTime()) > 0) {
            LockSupport.parkNanos(left);
        }
    }

    /** The Rust side's draws: xorshift64* seeded by splitmix64, uniform in 0..=max_us µs in ns steps. */
    private static long[] drawDelays(int records, long maxLatencyUs, long seed) {
        long z = seed + 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        long state = z ^ (z >>> 31);
        if (Long.compareUnsigned(state, 1) < 0) {
            state = 1;
        }
        long span = maxLatencyUs * 1000 + 1;
        long[] delays = new long[records];
        for (int i = 0; i < records; i++) {
            state ^= state >>> 12;
            state ^= state << 25;
            state ^= state >>> 27;
            long draw = state * 0x2545F4914F6CDD1DL;
            delays[i] = Long.remainderUnsigned(draw, span);
        }
        return delays;
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
