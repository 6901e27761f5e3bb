/** Capture service entry point (wiring only: see runtime/service-main.ts); `--topology FILE --node ID`. */
import { serviceMain } from '../runtime/service-main.ts';
import { captureConfig, captureTopology } from './config.ts';
import { captureMetrics } from './metrics.ts';
import { runCapture } from './service.ts';

serviceMain({
  name: 'capture',
  spec: captureConfig,
  topology: captureTopology,
  logContext: (c) => ({ node: c.nodeId, region: c.region }),
  metrics: captureMetrics,
  run: runCapture,
}).then((code) => process.exit(code));
