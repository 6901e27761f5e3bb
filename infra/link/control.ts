/** Cutting, healing and slowing the local stack's link between regions, through its control API (main.ts). */
import type { CutMode, LinkStatus } from './relay.ts';

async function call(controlUrl: string, method: 'GET' | 'POST', path: string): Promise<LinkStatus> {
  const res = await fetch(`${controlUrl}${path}`, { method, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`link control ${method} ${path} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as LinkStatus;
}

export const linkControl = (controlUrl: string) => ({
  status: () => call(controlUrl, 'GET', '/status'),
  cut: (mode: CutMode = 'reset') => call(controlUrl, 'POST', `/cut?mode=${mode}`),
  heal: () => call(controlUrl, 'POST', '/heal'),
  delay: (ms: number) => call(controlUrl, 'POST', `/delay?ms=${ms}`),
});
