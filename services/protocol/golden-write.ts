/** `npm run fixtures:write`: writes the golden records of golden.ts that have no file yet. */
import { existsSync, writeFileSync } from 'node:fs';
import { FIXTURE_DIR, goldenRecords } from './golden.ts';

for (const g of goldenRecords()) {
  const file = (ext: string) => new URL(`${g.name}.${ext}`, FIXTURE_DIR);
  if (existsSync(file('bin'))) continue;
  writeFileSync(file('bin'), g.bytes);
  writeFileSync(file('avsc'), `${JSON.stringify(g.schema, null, 2)}\n`);
  const headers = g.headers === undefined ? {} : { headers: g.headers };
  writeFileSync(
    file('json'),
    `${JSON.stringify({ schemaId: g.schemaId, ...headers, decoded: g.decoded }, null, 2)}\n`,
  );
  console.log(`wrote ${g.name}`);
}
