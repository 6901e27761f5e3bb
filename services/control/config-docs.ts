/** docs/configuration.md, generated from the services' option declarations (one source of truth). */

import { externalConfig } from '../../infra/stack.ts';
import { applyConfig } from '../apply/config.ts';
import { captureConfig } from '../capture/config.ts';
import { routerConfig } from '../router/config.ts';
import { describeConfig } from '../runtime/config.ts';
import { describeTopologyFields } from '../runtime/topology.ts';
import { controlConfig } from './config.ts';

export function configurationDoc(): string {
  return [
    '# Configuration',
    '',
    'Generated from the option declarations (`brabant config-docs > docs/configuration.md`); a test',
    'checks that this file matches the code.',
    '',
    '## the topology file',
    '',
    'Every service and command takes `--topology FILE` (or `BRABANT_TOPOLOGY`), and a service the node',
    'it runs for (`--node ID`; a router `--region R`); the variables below override what the file says.',
    '',
    describeTopologyFields(),
    '',
    '## capture',
    '',
    describeConfig(captureConfig),
    '',
    '## apply',
    '',
    describeConfig(applyConfig),
    '',
    '## router',
    '',
    describeConfig(routerConfig),
    '',
    '## brabant CLI',
    '',
    describeConfig(controlConfig),
    '',
    '## local stack and tests: external components',
    '',
    describeConfig(externalConfig),
    '',
  ].join('\n');
}
