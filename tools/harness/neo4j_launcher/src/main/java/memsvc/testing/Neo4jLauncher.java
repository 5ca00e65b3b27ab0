package memsvc.testing;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.io.ByteUnit;

/**
 * Embedded Neo4j 5 with only a Bolt connector, for tests that need a real server
 * without Docker. Usage: PORT DATA_DIR PASSWORD
 *
 * Contract with tools/harness/neo4j_server.py: exactly one line starting with
 * "NEO4J_READY " on stdout once Bolt accepts TCP connections with the requested
 * password; SIGTERM runs a clean shutdown (store flushed, no recovery needed).
 */
public final class Neo4jLauncher {
    private static final String HOST = "127.0.0.1";

    private Neo4jLauncher() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: java -jar neo4j-launcher.jar PORT DATA_DIR PASSWORD");
            System.exit(2);
        }
        long t0 = System.nanoTime();
        int port = Integer.parseInt(args[0]);
        Path home = Path.of(args[1]).toAbsolutePath();
        String password = args[2];

        DatabaseManagementService dbms;
        try {
            dbms = start(home, port);
        } catch (Throwable e) {
            // Explicit exit: a half-started DBMS leaves non-daemon threads that would
            // keep the JVM alive after main() throws, hanging the harness until timeout.
            fail(e);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-shutdown"));

        long t1 = System.nanoTime();
        try {
            setPassword(dbms, password);
            long t2 = System.nanoTime();
            awaitBolt(port);
            // On stderr so the harness can show where a slow CI start spent its time.
            System.err.printf("neo4j-launcher: dbms %d ms, auth %d ms%n",
                    (t1 - t0) / 1_000_000, (t2 - t1) / 1_000_000);
        } catch (Throwable e) {
            fail(e); // the shutdown hook still closes the store cleanly
        }

        System.out.println("NEO4J_READY bolt://" + HOST + ":" + port);
        System.out.flush();
        stopped.await();
    }

    private static DatabaseManagementService start(Path home, int port) {
        return new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(HOST, port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(HOST, port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                // Neo4j otherwise idles 2 x 5 s in Bolt shutdown; stores are already flushed by then.
                .setConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ZERO)
                .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ZERO)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                // Default locks the user for 5 s after 3 bad logins; tests that probe
                // wrong credentials would then make unrelated tests fail at random.
                .setConfig(GraphDatabaseSettings.auth_max_failed_attempts, 0)
                // No phoning home: CI has no internet and tests must not depend on it.
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(64))
                // Tests create many short-lived stores; preallocated 256 MB tx logs would be waste.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .build();
    }

    /**
     * Embedded Neo4j has no "initial password" builder option (neo4j-admin's
     * set-initial-password only writes data/dbms/auth.ini for the server). Embedded
     * transactions bypass auth, so the system database can set it directly; this also
     * clears the "change required" flag the default neo4j/neo4j user starts with.
     */
    private static void setPassword(DatabaseManagementService dbms, String password) {
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (QueryExecutionException e) {
            // Restart on an existing store: the password is already the requested one.
            if (e.getMessage() == null || !e.getMessage().contains("cannot be the same")) {
                throw e;
            }
        }
    }

    /** The DBMS starts Bolt during build(), but check the socket so READY is never a lie. */
    private static void awaitBolt(int port) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (true) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(HOST, port), 1000);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw new IOException("Bolt did not accept connections on " + HOST + ":" + port, e);
                }
                Thread.sleep(100);
            }
        }
    }

    /** The harness shows only the output's tail, so the root cause goes last, on one line. */
    private static void fail(Throwable e) {
        e.printStackTrace();
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        System.err.println("neo4j-launcher: FAILED: " + e + (root != e ? " <- root cause: " + root : ""));
        System.exit(1);
    }
}
