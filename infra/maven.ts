/**
 * The one Maven runner: Kafka's broker jars, the schema registry build and the benchmark's Kafka
 * Connect and Debezium jars are all fetched from Maven Central through it, so they report progress,
 * keep Maven's output and fail with the same one-line reason. Maven is only ever a fetcher here: a
 * pom beside each component names what to fetch, and a marker file says a fetch completed (a failed
 * or interrupted one leaves no marker, so the next run tries again).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrabantError } from '../services/runtime/errors.ts';
import { which } from './processes.ts';

export type Progress = (message: string) => void;

/** Fails with PREREQUISITE_MISSING, saying what Maven was wanted for, when `mvn` is not on PATH. */
export function requireMaven(purpose: string): void {
  if (which('mvn') === undefined) {
    throw new BrabantError(
      'PREREQUISITE_MISSING',
      `mvn (Apache Maven) was not found; it fetches ${purpose} from Maven Central: run \`bash infra/setup.sh\` (or \`apt-get install maven\`)`,
    );
  }
}

/** The line of Maven's output that says why it failed (artifact not found, no network, …). */
export function mavenFailureReason(output: string): string {
  const specific = [
    /(Could not (?:transfer|find) artifact [^\n]*)/,
    /(Cannot access [^\n]* in offline mode[^\n]*)/,
    /(Non-resolvable [^\n]*)/,
    /(Unknown host [^\n]*)/,
    /(Connect to [^\n]* failed[^\n]*)/,
    /(Could not resolve [^\n]*)/,
  ];
  for (const re of specific) {
    const m = re.exec(output);
    if (m !== null) return m[1]!.replace(/\s*-> \[Help \d+\]$/, '').trim();
  }
  const error = output
    .split('\n')
    .filter((l) => /^\[ERROR\]/.test(l))
    .map((l) => l.replace(/^\[ERROR\]\s*/, '').trim())
    .find((l) => l !== '');
  return error?.replace(/\s*-> \[Help \d+\]$/, '') ?? 'no error line in its output';
}

export interface MavenRun {
  /** Arguments after `mvn -B`. */
  args: string[];
  /** What is fetched, for progress and errors, e.g. "Apache Kafka 4.4.0 jars". */
  what: string;
  /** Maven's whole output is written here (kept on failure for the operator). */
  logFile: string;
  progress?: Progress;
}

/**
 * Runs `mvn -B …`, reporting downloads as progress every few seconds. On failure it throws
 * DOWNLOAD_FAILED with the reason line and where the whole output is.
 */
export function runMaven(run: MavenRun): Promise<void> {
  const progress = run.progress ?? (() => {});
  const args = ['-B', ...run.args];
  return new Promise((resolvePromise, reject) => {
    const child = execFile('mvn', args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const output = `mvn ${args.join(' ')}\n${stdout}\n${stderr}`;
      writeFileSync(run.logFile, output);
      if (err === null) {
        resolvePromise();
        return;
      }
      const why = mavenFailureReason(output);
      reject(
        new BrabantError(
          'DOWNLOAD_FAILED',
          `Maven could not fetch ${run.what} from Maven Central: ${why.slice(0, 240)} ` +
            `(Maven's output: ${run.logFile}; nothing was kept, run again once Maven Central is reachable)`,
        ),
      );
    });
    let downloaded = 0;
    let last = 0;
    child.stdout?.on('data', (chunk: Buffer) => {
      downloaded += (chunk.toString().match(/Downloaded from/g) ?? []).length;
      if (Date.now() - last > 3000 && downloaded > 0) {
        last = Date.now();
        progress(`  … ${run.what}: ${downloaded} files downloaded`);
      }
    });
  });
}

export const COMPLETE_MARKER = '.complete';

/**
 * Copies a pom's runtime dependencies into `dir` (`mvn dependency:copy-dependencies`) unless an
 * earlier run completed it; returns the number of jars. A jar matching `expect` must be among them,
 * or the fetch counts as failed.
 */
export async function copyDependencies(opts: {
  what: string;
  pom: string;
  dir: string;
  /** Extra `-D…` arguments, e.g. a version override. */
  args?: string[];
  expect: RegExp;
  progress?: Progress;
}): Promise<number> {
  const marker = join(opts.dir, COMPLETE_MARKER);
  if (existsSync(marker)) return readdirSync(opts.dir).filter((f) => f.endsWith('.jar')).length;
  requireMaven(opts.what);
  // A half-finished earlier fetch may hold jars of another version: start from an empty folder.
  rmSync(opts.dir, { recursive: true, force: true });
  mkdirSync(opts.dir, { recursive: true });
  opts.progress?.(`downloading ${opts.what} from Maven Central into ${opts.dir} (first time only)`);
  await runMaven({
    what: opts.what,
    args: [
      '-f',
      opts.pom,
      'dependency:copy-dependencies',
      '-DincludeScope=runtime',
      ...(opts.args ?? []),
      // Absolute: Maven resolves a relative output folder against the pom's folder.
      `-DoutputDirectory=${opts.dir}`,
    ],
    logFile: join(opts.dir, 'maven.log'),
    ...(opts.progress ? { progress: opts.progress } : {}),
  });
  const jars = readdirSync(opts.dir).filter((f) => f.endsWith('.jar'));
  if (!jars.some((j) => opts.expect.test(j))) {
    throw new BrabantError(
      'DOWNLOAD_FAILED',
      `Maven finished but ${opts.dir} holds no jar matching ${opts.expect}; remove the folder and run again`,
    );
  }
  writeFileSync(marker, `${jars.length} jars\n`);
  opts.progress?.(`${opts.what} ready (${jars.length} jars)`);
  return jars.length;
}
