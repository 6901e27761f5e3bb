/** Apply service entry point (wiring only: see runtime/service-main.ts); `--topology FILE --node ID`. */
import { serviceMain } from '../runtime/service-main.ts';
import { applyConfig, applyTopology } from './config.ts';
import { applyMetrics } from './metrics.ts';
import { runApply } from './service.ts';

serviceMain({
  name: 'apply',
  spec: applyConfig,
  topology: applyTopology,
  logContext: (c) => ({ node: c.nodeId }),
  metrics: applyMetrics,
  run: runApply,
}).then((code) => process.exit(code));
