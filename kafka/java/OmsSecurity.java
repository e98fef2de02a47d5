// Applies the local Kafka cluster's security plan through Kafka's Admin API: SCRAM users and the
// ACLs derived from the OMS topology (oms_kafka::node::security writes the plan and runs this file
// with Java's source launcher, the Kafka jars on the classpath).
//
//   java -cp 'libs/*' OmsSecurity.java ADMIN_PROPERTIES PLAN
//
// ADMIN_PROPERTIES: a Kafka client properties file that reaches the cluster as a super user.
// PLAN, one entry per line:
//   user NAME PASSWORD                                 a SCRAM-SHA-512 credential (created or replaced)
//   acl PRINCIPAL OPERATION RESOURCE_TYPE PATTERN NAME  an ALLOW ACL for any host
// The plan is the whole truth for every principal it names: an ACL of such a principal that the
// plan does not list is deleted, so a topology change takes rights away as well as granting them.
// Prints one summary line, then every ACL of those principals as `acl` lines; exits 1 on failure.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class OmsSecurity {
    /** SCRAM iterations: Kafka's minimum for SHA-512 is 4096. */
    private static final int ITERATIONS = 8192;
    private static final long TIMEOUT_SECONDS = 60;

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: OmsSecurity ADMIN_PROPERTIES PLAN");
            System.exit(2);
        }
        try {
            run(Path.of(args[0]), Path.of(args[1]));
        } catch (Exception e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            System.err.println("applying the security plan failed: " + cause);
            System.exit(1);
        }
    }

    private static void run(Path adminProperties, Path planFile) throws Exception {
        Properties props = new Properties();
        try (var in = Files.newInputStream(adminProperties)) {
            props.load(in);
        }
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        Set<AclBinding> wanted = new LinkedHashSet<>();
        Set<String> principals = new TreeSet<>();
        int n = 0;
        for (String line : Files.readAllLines(planFile, StandardCharsets.UTF_8)) {
            n++;
            String[] w = line.trim().split("\\s+");
            if (w.length == 0 || w[0].isEmpty() || w[0].startsWith("#")) {
                continue;
            }
            if (w[0].equals("user") && w.length == 3) {
                users.add(new UserScramCredentialUpsertion(
                        w[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), w[2]));
                principals.add("User:" + w[1]);
            } else if (w[0].equals("acl") && w.length == 6) {
                wanted.add(new AclBinding(
                        new ResourcePattern(ResourceType.fromString(w[3]), w[5], PatternType.fromString(w[4])),
                        new AccessControlEntry(w[1], "*", AclOperation.fromString(w[2]), AclPermissionType.ALLOW)));
                principals.add(w[1]);
            } else {
                throw new IllegalArgumentException(planFile + " line " + n + ": expected `user NAME PASSWORD` or `acl PRINCIPAL OPERATION TYPE PATTERN NAME`");
            }
        }
        for (AclBinding b : wanted) {
            if (b.isUnknown()) {
                throw new IllegalArgumentException("unknown operation, resource type or pattern in " + b);
            }
        }
        try (Admin admin = Admin.create(props)) {
            if (!users.isEmpty()) {
                admin.alterUserScramCredentials(users).all().get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            }
            Collection<AclBinding> existing =
                    admin.describeAcls(AclBindingFilter.ANY).values().get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            List<AclBindingFilter> stale = new ArrayList<>();
            Set<AclBinding> missing = new LinkedHashSet<>(wanted);
            for (AclBinding b : existing) {
                if (!principals.contains(b.entry().principal())) {
                    continue;
                }
                if (wanted.contains(b)) {
                    missing.remove(b);
                } else {
                    stale.add(b.toFilter());
                }
            }
            if (!stale.isEmpty()) {
                admin.deleteAcls(stale).all().get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            }
            if (!missing.isEmpty()) {
                admin.createAcls(missing).all().get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            }
            System.out.println("users " + users.size() + ", acls " + wanted.size() + " (created "
                    + missing.size() + ", deleted " + stale.size() + ")");
            Set<String> now = new TreeSet<>();
            for (AclBinding b : admin.describeAcls(AclBindingFilter.ANY).values().get(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                if (principals.contains(b.entry().principal())) {
                    now.add("acl " + b.entry().principal() + " " + b.entry().operation() + " "
                            + b.pattern().resourceType() + " " + b.pattern().patternType() + " " + b.pattern().name());
                }
            }
            now.forEach(System.out::println);
        }
    }
}
