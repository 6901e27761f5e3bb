/** Capture service entry point (wiring only: see runtime/service-main.ts). */
import { serviceMain } from '../runtime/service-main.ts';
import { captureConfig } from './config.ts';
import { captureMetrics } from './metrics.ts';
import { runCapture } from './service.ts';

serviceMain({
  name: 'capture',
  spec: captureConfig,
  logContext: (c) => ({ node: c.nodeId, region: c.region }),
  metrics: captureMetrics,
  run: runCapture,
}).then((code) => process.exit(code));
