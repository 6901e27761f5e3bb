/**
 * `brabant` CLI. Thin: parses arguments, loads config once, and calls the command modules.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../runtime/config.ts';
import { describeError } from '../runtime/errors.ts';
import { controlConfig } from './config.ts';
import { configurationDoc } from './config-docs.ts';
import { down, up } from './stack-commands.ts';

const USAGE = `usage: brabant <command> [options]

commands:
  up     start the local two-region stack (Kafka, PostgreSQL nodes vl-1 and wa-1, schema registry)
           --base-port N    first loopback port (default BRABANT_BASE_PORT or 19090)
           --kafka MODE     shared (one cluster) or per-region (one cluster per region); default shared
           --reuse          start again from the data an earlier run left in the stack folder
           --detach         leave the stack running in the background and return
  down   stop the local stack started from this folder
           --purge          also delete its data and logs
  config-docs  print docs/configuration.md (every option of every service)
  help   show this text

environment: BRABANT_HOME (stack folder, default .brabant), BRABANT_BASE_PORT, BRABANT_KAFKA_BROKERS,
BRABANT_PG_URLS, BRABANT_REGISTRY_URL (use external components instead of starting them)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      'base-port': { type: 'string' },
      kafka: { type: 'string' },
      reuse: { type: 'boolean', default: false },
      detach: { type: 'boolean', default: false },
      purge: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const env = { ...process.env };
  if (values['base-port'] !== undefined) env.BRABANT_BASE_PORT = values['base-port'];
  const config = loadConfig(controlConfig, env);
  switch (command) {
    case 'up': {
      const kafka = values.kafka ?? 'shared';
      if (kafka !== 'shared' && kafka !== 'per-region') {
        throw new Error(`--kafka must be shared or per-region, not '${kafka}'`);
      }
      return up({ config, kafka, reuse: values.reuse, detach: values.detach });
    }
    case 'down':
      return down({ config, purge: values.purge });
    case 'config-docs':
      process.stdout.write(configurationDoc());
      return 0;
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`brabant: ${describeError(err)}`);
    process.exitCode = 1;
  },
);
