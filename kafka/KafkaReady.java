// Waits until a Kafka cluster answers a metadata request with all of its brokers registered.
//
// Usage: java -cp <kafka classpath> KafkaReady.java <bootstrap servers> <brokers> <timeout ms>
// Exits 0 once DescribeCluster lists <brokers> brokers, 1 on timeout (with the last error).
// scripts/kafka runs it (compiled once into its cache) after starting the broker JVMs.

import java.time.Duration;
import java.time.Instant;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;

public final class KafkaReady {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: KafkaReady <bootstrap servers> <brokers> <timeout ms>");
            System.exit(2);
        }
        String bootstrap = args[0];
        int brokers = Integer.parseInt(args[1]);
        Instant deadline = Instant.now().plus(Duration.ofMillis(Long.parseLong(args[2])));
        Properties properties = new Properties();
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        properties.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        properties.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "2000");
        properties.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "50");
        properties.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "no answer yet";
        try (Admin admin = Admin.create(properties)) {
            while (Instant.now().isBefore(deadline)) {
                try {
                    int seen = admin.describeCluster(new DescribeClusterOptions().timeoutMs(2000))
                        .nodes().get(3, TimeUnit.SECONDS).size();
                    if (seen >= brokers) {
                        return;
                    }
                    last = seen + " of " + brokers + " brokers registered";
                } catch (Exception e) {
                    last = String.valueOf(e.getCause() != null ? e.getCause() : e);
                }
                Thread.sleep(100);
            }
        }
        System.err.println("Kafka at " + bootstrap + " was not ready in time: " + last);
        System.exit(1);
    }
}
