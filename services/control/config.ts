import { int, str } from '../runtime/config.ts';

/** Options of the `brabant` CLI (flags override them). */
export const controlConfig = {
  home: str({
    env: 'BRABANT_HOME',
    description: 'Folder of the local stack: data, logs and the state file',
    default: '.brabant',
  }),
  basePort: int({
    env: 'BRABANT_BASE_PORT',
    description: 'First loopback port of the local stack; components take the ports after it in order',
    default: 19090,
    min: 1024,
    max: 65000,
  }),
};
