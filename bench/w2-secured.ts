/**
 * W2S — the cost of security: W2 (8 clients inserting 1-row transactions on A, lag commit-on-A →
 * visible-on-B) on the secured stack (TLS and authentication on every link: PostgreSQL
 * verify-full TLS with SCRAM, Kafka SASL_SSL with SCRAM and ACLs, the registry's mutual TLS, the
 * services as their own non-superuser roles), and in the same run, right before it, on the
 * plaintext stack. Both stacks are up during both measurements, so they share the machine alike.
 * The table's "Brabant" column is the secured stack's figure, the baseline the plaintext one's.
 */
import type { Ctx } from './lib/context.ts';
import { SecuredBench } from './lib/secured.ts';
import { type RowSpec, type Scenario, W2 } from './scenarios.ts';

let secured: SecuredBench | undefined;

/** The secured stack, started the first time a W2S run needs it. */
async function securedCtx(ctx: Ctx): Promise<Ctx> {
  secured ??= await SecuredBench.start(`${ctx.stack.workDir}-secured`);
  const { a, b } = secured.servers();
  const [ra, rb] = secured.stack.regions;
  return {
    ...ctx,
    stack: secured.stack,
    a,
    b,
    regionA: ra!.name,
    regionB: rb!.name,
    brokers: secured.brokers,
    registryUrl: secured.stack.registryUrl,
    secured,
  };
}

/** Stops the secured stack (the end of the benchmark, an error, Ctrl-C). */
export async function stopW2S(): Promise<void> {
  const s = secured;
  secured = undefined;
  await s?.stop();
}

const PLAIN = 'plaintext stack, same run';

export const W2S: Scenario = {
  id: 'W2S',
  title: 'live lag, secured stack (TLS and authentication on every link)',
  systems: ['brabant'],
  rows: W2.rows.map(
    (r): RowSpec => ({
      ...r,
      label: `${r.label}, secured`,
      baselines: [],
      sameRun: { key: `plaintext.${r.key}`, text: PLAIN },
    }),
  ),
  async run(ctx, _system, label) {
    // the secured stack first, so that both measurements run with both stacks up
    const sctx = await securedCtx(ctx);
    const plain = await W2.run(ctx, 'brabant', `${label}-plaintext`);
    const sec = await W2.run(sctx, 'brabant', `${label}-secured`);
    const values: Record<string, number> = { ...sec.values };
    for (const [k, v] of Object.entries(plain.values)) values[`plaintext.${k}`] = v;
    return { values, details: { secured: sec.details, plaintext: plain.details } };
  },
};
