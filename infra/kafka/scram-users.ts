/**
 * SCRAM users of a Kafka cluster, made with Kafka's own kafka-configs (ConfigCommand, from the
 * kafka-tools jar: tools.pom.xml) over the admin's SASL_SSL connection — the Admin API's
 * AlterUserScramCredentials, which kafkajs lacks. Passwords reach it in files of mode 0600 that are
 * removed after (its command line, which `ps` shows, holds none).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrabantError } from '../../services/runtime/errors.ts';
import { redactText } from '../../services/runtime/redact.ts';
import { copyDependencies, type Progress } from '../maven.ts';
import { which } from '../processes.ts';
import { kafkaLibsDir, kafkaVersion } from './kafka.ts';
import { clientProperties, type KafkaSecuritySpec } from './kafka-security.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');

export function kafkaToolsDir(): string {
  return process.env.BRABANT_KAFKA_TOOLS ?? join(ROOT, '.cache', 'kafka', `tools-${kafkaVersion()}`, 'libs');
}

/** Fetches the kafka-tools jar once (Maven Central). */
export async function ensureKafkaTools(progress: Progress = () => {}): Promise<string> {
  const dir = kafkaToolsDir();
  await copyDependencies({
    what: `Apache Kafka ${kafkaVersion()} tools jar (kafka-configs, for SCRAM users)`,
    pom: join(HERE, 'tools.pom.xml'),
    dir,
    expect: /^kafka-tools-\d/,
    progress,
  });
  return dir;
}

export interface ScramUser {
  user: string;
  password: string;
}

/**
 * Creates each user, or sets its password when it exists (idempotent): one kafka-configs run
 * per user, as the admin.
 */
export async function setScramUsers(opts: {
  bootstrap: string[];
  ca: string;
  mechanism: KafkaSecuritySpec['mechanism'];
  admin: ScramUser;
  users: ScramUser[];
  progress?: Progress;
}): Promise<void> {
  const tools = await ensureKafkaTools(opts.progress);
  const java = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : which('java');
  if (java === undefined)
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      "java was not found: creating Kafka's SCRAM users runs Kafka's kafka-configs; install Java 17+ or set JAVA_HOME",
    );
  const dir = mkdtempSync(join(tmpdir(), 'brabant-kafka-users-'));
  try {
    const adminProps = join(dir, 'admin.properties');
    writeFileSync(
      adminProps,
      clientProperties(opts.ca, opts.mechanism, opts.admin.user, opts.admin.password),
      {
        mode: 0o600,
      },
    );
    for (const u of opts.users) {
      // kafka-configs splits the value at ',' and '=' (and takes no quoting in a file)
      if (/[,=\s\][]/.test(u.password))
        throw new BrabantError(
          'CONFIG_INVALID',
          `the password of Kafka user ${u.user} holds a ',', '=', bracket or space, which kafka-configs cannot carry: choose another (base64url, as brabant up makes them)`,
        );
      const configFile = join(dir, 'user.properties');
      writeFileSync(configFile, `${opts.mechanism}=iterations=8192,password=${u.password}\n`, {
        mode: 0o600,
      });
      await new Promise<void>((res, rej) =>
        execFile(
          java,
          [
            '-Xmx128m',
            '-XX:TieredStopAtLevel=1',
            '-XX:+UseSerialGC',
            `-Dlog4j2.configurationFile=${join(HERE, 'log4j2.properties')}`,
            '-Dlog4j2.level=warn',
            '-cp',
            `${kafkaLibsDir()}/*:${tools}/*`,
            'org.apache.kafka.tools.ConfigCommand',
            '--bootstrap-server',
            opts.bootstrap.join(','),
            '--command-config',
            adminProps,
            '--alter',
            '--entity-type',
            'users',
            '--entity-name',
            u.user,
            '--add-config-file',
            configFile,
          ],
          { timeout: 60_000 },
          (err, stdout, stderr) => {
            if (err === null) return res();
            const said = redactText(`${stderr}${stdout}`, [u.password, opts.admin.password])
              .split('\n')
              .filter((l) => !/ INFO |^\s*at /.test(l) && l.trim() !== '')
              .slice(-5)
              .join(' | ');
            rej(
              new BrabantError(
                'KAFKA_UNAVAILABLE',
                `creating Kafka user ${u.user} on ${opts.bootstrap.join(',')} failed: ${said || err.message}`,
                { retriable: false },
              ),
            );
          },
        ),
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
