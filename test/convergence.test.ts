/**
 * The proof: random inserts, updates and deletes on a small key space from both regions at once
 * (so conflicts are frequent). Every committed write is recorded with its commit timestamp and
 * node; after quiescence (1) both nodes hold exactly the same rows and (2) each key's state is the
 * write with the greatest (commit timestamp, node id), deletes included. Also with capture and
 * apply killed with kill -9 at random moments, and with one region's apply stopped for a while.
 *
 * Size: BRABANT_CONVERGENCE_OPS (per node, default 300), BRABANT_CONVERGENCE_KEYS (default 20);
 * BRABANT_CONVERGENCE_SEED replays a run (seeds are printed).
 */
import { convergenceSuite } from './support/convergence.ts';
import { replicationPair } from './support/pair.ts';

convergenceSuite('convergence (last writer wins)', (schema) => replicationPair(schema));
