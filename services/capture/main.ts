/** Capture service entry point (wiring only: see runtime/service-main.ts); `--topology FILE --node ID`. */
import { serviceMain } from '../runtime/service-main.ts';
import { captureConfig, captureTopology } from './config.ts';
import { captureMetrics } from './metrics.ts';
import { runCapture } from './service.ts';
import { watchSlot } from './slot-watch.ts';

serviceMain({
  name: 'capture',
  spec: captureConfig,
  topology: captureTopology,
  logContext: (c) => ({ node: c.nodeId, region: c.region }),
  metrics: captureMetrics,
  run: async (deps) => {
    const watch = watchSlot(deps.config, deps.metrics, deps.log);
    try {
      await runCapture(deps);
    } finally {
      await watch.stop();
    }
  },
}).then((code) => process.exit(code));
