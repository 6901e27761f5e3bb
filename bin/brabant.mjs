#!/usr/bin/env node
// The `brabant` command: runs the TypeScript CLI through tsx, no build step.
import { register } from 'tsx/esm/api';

register();
await import('../services/control/main.ts');
