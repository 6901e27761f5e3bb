/**
 * The secured local stack's certificates and passwords (`<stack folder>/secrets`, mode 0700),
 * made once by `brabant up` and kept with the stack's data (a `--reuse` keeps them): a CA of the
 * stack's own (EC P-256, openssl), server certificates for Kafka (its PKCS12 keystore) and for
 * PostgreSQL, the registry and the routers (CN localhost, SAN localhost and 127.0.0.1), a client
 * certificate for the registry's mutual TLS, and a random password per principal, each in the
 * file the topology's security section names (services/runtime/topology-security.ts secretFile).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrabantError } from '../../services/runtime/errors.ts';
import { readSecretFile } from '../../services/runtime/security.ts';
import {
  kafkaUser,
  routerSecretFile,
  secretFile,
  type TopologySecurity,
} from '../../services/runtime/topology-security.ts';
import { which } from '../processes.ts';

export const SECRETS_DIR = 'secrets';
/** The Kafka broker's certificate subject: its principal, a super user (the controller listener). */
export const KAFKA_BROKER_SUBJECT = 'CN=brabant-kafka';
/** The role the registry keeps its schemas as, on the registry's own database. */
export const REGISTRY_DB_ROLE = 'apicurio';

/** Where every file of the stack's security is. */
export interface StackSecrets {
  dir: string;
  ca: string;
  /** PostgreSQL's, the registry's and the routers' certificate and key. */
  serverCert: string;
  serverKey: string;
  kafkaKeystore: string;
  kafkaKeystorePasswordFile: string;
  /** The CA as a PKCS12 truststore (the registry checks client certificates against it). */
  truststore: string;
  truststorePasswordFile: string;
  clientCert: string;
  clientKey: string;
  /** What the topology's security section says (paths of the same files). */
  topology: TopologySecurity;
}

export function stackSecrets(workDir: string): StackSecrets {
  const dir = join(workDir, SECRETS_DIR);
  const f = (name: string) => join(dir, name);
  return {
    dir,
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    kafkaKeystore: f('kafka.p12'),
    kafkaKeystorePasswordFile: f('kafka-keystore.password'),
    truststore: f('ca-truststore.p12'),
    truststorePasswordFile: f('truststore.password'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    topology: {
      ca: f('ca.pem'),
      secrets: dir,
      kafkaSasl: 'scram-sha-512',
      kafkaAdmin: 'admin',
      registryCertificate: f('client.pem'),
      registryKey: f('client.key'),
      captureRole: 'brabant_capture',
      applyRole: 'brabant_apply',
      routerRole: 'brabant_router',
      routerCertificate: f('server.pem'),
      routerKey: f('server.key'),
    },
  };
}

/** The password files of a stack: every principal of its regions and nodes (and the registry's). */
export function passwordFiles(s: StackSecrets, regions: { name: string; nodes: string[] }[]): string[] {
  const t = s.topology;
  const out = [s.kafkaKeystorePasswordFile, s.truststorePasswordFile];
  for (const r of regions) {
    out.push(secretFile(t, { kafka: t.kafkaAdmin, region: r.name }));
    for (const n of r.nodes) {
      out.push(
        secretFile(t, { kafka: kafkaUser('capture', n) }),
        secretFile(t, { kafka: kafkaUser('apply', n) }),
        secretFile(t, { postgres: 'postgres', node: n }),
        secretFile(t, { postgres: t.captureRole, node: n }),
        secretFile(t, { postgres: t.applyRole, node: n }),
      );
    }
  }
  out.push(routerSecretFile(t));
  out.push(registryDbPasswordFile(s, 'postgres'), registryDbPasswordFile(s, REGISTRY_DB_ROLE));
  return out;
}

export function registryDbPasswordFile(s: StackSecrets, role: string): string {
  return secretFile(s.topology, { postgres: role, node: 'registry-db' });
}

/** The admin's password of a node (and of every node: the local stack gives them one). */
export function adminPasswordFile(s: StackSecrets, node: string): string {
  return secretFile(s.topology, { postgres: 'postgres', node });
}

/**
 * Makes what is missing (nothing is ever replaced: a reused stack keeps its CA and passwords).
 * The regions share one admin password for Kafka when they share a cluster (`sharedKafka`).
 */
export function ensureStackSecrets(
  workDir: string,
  regions: { name: string; nodes: string[] }[],
  sharedKafka: boolean,
  progress: (m: string) => void = () => {},
): StackSecrets {
  const s = stackSecrets(workDir);
  mkdirSync(s.dir, { recursive: true, mode: 0o700 });
  chmodSync(s.dir, 0o700);
  const newPassword = () => randomBytes(24).toString('base64url');
  const write = (file: string, text: string) => {
    writeFileSync(file, text, { mode: 0o600 });
    chmodSync(file, 0o600);
  };
  const files = passwordFiles(s, regions);
  // the shared cluster's admin: one password for every region's entry
  const kafkaAdmin = regions.map((r) =>
    secretFile(s.topology, { kafka: s.topology.kafkaAdmin, region: r.name }),
  );
  const sharedAdmin = sharedKafka ? (kafkaAdmin.find((f) => existsSync(f)) ?? undefined) : undefined;
  const shared = sharedAdmin !== undefined ? readSecretFile(sharedAdmin, 'the Kafka admin') : newPassword();
  // one admin password for every node of the local stack (the stack's own PostgreSQL superuser)
  const admins = regions.flatMap((r) => r.nodes.map((n) => adminPasswordFile(s, n)));
  const firstAdmin = admins.find((f) => existsSync(f));
  const admin = firstAdmin !== undefined ? readSecretFile(firstAdmin, 'the PostgreSQL admin') : newPassword();
  let made = 0;
  for (const file of files) {
    if (existsSync(file)) continue;
    write(
      file,
      `${sharedKafka && kafkaAdmin.includes(file) ? shared : admins.includes(file) ? admin : newPassword()}\n`,
    );
    made++;
  }
  if (!existsSync(s.ca)) {
    progress(`making the stack's CA and certificates in ${s.dir} (openssl)`);
    makeCertificates(s);
  }
  if (made > 0) progress(`${made} password(s) made in ${s.dir}`);
  return s;
}

function requireTools(): void {
  for (const tool of ['openssl', 'keytool'])
    if (which(tool) === undefined)
      throw new BrabantError(
        'PREREQUISITE_MISSING',
        `${tool} was not found: the secured local stack makes its certificates with openssl and keytool; install openssl and a Java 17 JDK (bash infra/setup.sh), or start the stack with --insecure`,
      );
}

/** The CA, the server and client certificates, Kafka's keystore and the registry's truststore. */
function makeCertificates(s: StackSecrets): void {
  requireTools();
  const run = (cmd: string, args: string[]) => {
    try {
      execFileSync(cmd, args, { cwd: s.dir, stdio: 'pipe' });
    } catch (err) {
      throw new BrabantError(
        'COMPONENT_START_FAILED',
        `${cmd} ${args[0]} failed making the stack's certificates: ${(err as { stderr?: Buffer }).stderr?.toString() ?? err}`,
      );
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const days = ['-days', '397'];
  run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    ...days,
    '-subj',
    '/CN=Brabant local stack CA',
  ]);
  writeFileSync(
    join(s.dir, 'server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  writeFileSync(
    join(s.dir, 'client.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  const sign = (name: string, subject: string, ext: string) => {
    run('openssl', ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/${subject}`]);
    run('openssl', [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      ...days,
      '-extfile',
      ext,
    ]);
  };
  sign('server', 'CN=localhost', 'server.ext');
  sign('kafka', KAFKA_BROKER_SUBJECT, 'server.ext');
  sign('client', 'CN=brabant-services', 'client.ext');
  const ksPass = readSecretFile(s.kafkaKeystorePasswordFile, 'the keystore password');
  // passwords reach openssl and keytool through their environment, never their command line
  const env = {
    ...process.env,
    BRABANT_KS: ksPass,
    BRABANT_TS: readSecretFile(s.truststorePasswordFile, 'the truststore password'),
  };
  const runEnv = (cmd: string, args: string[]) => {
    try {
      execFileSync(cmd, args, { cwd: s.dir, stdio: 'pipe', env });
    } catch (err) {
      throw new BrabantError(
        'COMPONENT_START_FAILED',
        `${cmd} failed making a keystore: ${(err as { stderr?: Buffer }).stderr?.toString() ?? err}`,
      );
    }
  };
  runEnv('openssl', [
    'pkcs12',
    '-export',
    '-in',
    'kafka.pem',
    '-inkey',
    'kafka.key',
    '-certfile',
    'ca.pem',
    '-name',
    'kafka',
    '-out',
    'kafka.p12',
    '-passout',
    'env:BRABANT_KS',
  ]);
  runEnv('keytool', [
    '-importcert',
    '-noprompt',
    '-storetype',
    'PKCS12',
    '-keystore',
    'ca-truststore.p12',
    '-alias',
    'brabant-ca',
    '-file',
    'ca.pem',
    '-storepass:env',
    'BRABANT_TS',
  ]);
  for (const f of ['ca.key', 'server.key', 'kafka.key', 'client.key', 'kafka.p12', 'ca-truststore.p12'])
    chmodSync(join(s.dir, f), 0o600);
}
