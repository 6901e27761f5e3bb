/** A target table as the catalog describes it, for unit tests: text columns `id` and `v`, keyed by `primaryKey`. */
import { DEFAULT_POLICY, type TargetColumn, type TargetTable } from './target-catalog.ts';

const textColumn = (name: string, notNull: boolean): TargetColumn => ({
  name,
  type: 'text',
  notNull,
  identity: '',
  baseType: 'text',
  addedValue: null,
});

export function testTable(name: string, primaryKey = ['id']): TargetTable {
  return {
    schema: 'public',
    name,
    sql: `"public"."${name}"`,
    columns: new Map([
      ['id', textColumn('id', true)],
      ['v', textColumn('v', false)],
    ]),
    primaryKey,
    otherUniqueKeys: false,
    primaryKeyIndex: primaryKey.length > 0 ? `${name}_pkey` : undefined,
    identityAlways: false,
    renames: new Map(),
    policy: DEFAULT_POLICY,
    replicaIdentity: 'd',
  };
}
