/** Apply service entry point (wiring only: see runtime/service-main.ts). */
import { serviceMain } from '../runtime/service-main.ts';
import { applyConfig } from './config.ts';
import { applyMetrics } from './metrics.ts';
import { runApply } from './service.ts';

serviceMain({
  name: 'apply',
  spec: applyConfig,
  logContext: (c) => ({ node: c.nodeId }),
  metrics: applyMetrics,
  run: runApply,
}).then((code) => process.exit(code));
