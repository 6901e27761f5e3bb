/** docs/configuration.md, generated from the services' option declarations (one source of truth). */

import { externalConfig } from '../../infra/stack.ts';
import { applyConfig } from '../apply/config.ts';
import { captureConfig } from '../capture/config.ts';
import { routerConfig } from '../router/config.ts';
import { describeConfig } from '../runtime/config.ts';
import { controlConfig } from './config.ts';

export function configurationDoc(): string {
  return [
    '# Configuration',
    '',
    'Generated from the option declarations (`brabant config-docs > docs/configuration.md`); a test',
    'checks that this file matches the code.',
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
