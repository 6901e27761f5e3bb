/**
 * `npm run bench [-- W1 …]`: the benchmark table of ../shared/BENCHMARKS.md. No scenario is
 * implemented yet (that is the benchmarks issue); this prints the table's shape and says so,
 * rather than printing a figure that was not measured.
 */
const SCENARIOS = [
  ['W1', 'catch-up 400k rows', 'native logical replication; pglogical 2'],
  ['W2', 'live lag, 8 clients', 'native logical replication'],
  ['W3', 'one 1M-row transaction', 'native logical replication'],
  ['W4', 'conflicts on 100 hot keys', 'pglogical last_update_wins'],
  ['W5', 'capture alone', 'Debezium PostgreSQL connector 3.6.1'],
  ['W6', 'switchover / failover', 'targets 0.5 s / 6 s'],
] as const;

const wanted = process.argv.slice(2).filter((a) => /^W\d$/.test(a));
console.log('| id | scenario | Brabant | baseline | ratio |');
console.log('| --- | --- | --- | --- | --- |');
for (const [id, name, baseline] of SCENARIOS) {
  if (wanted.length > 0 && !wanted.includes(id)) continue;
  console.log(`| ${id} | ${name} | not implemented yet | ${baseline}: not run | — |`);
}
console.log('\nNo benchmark scenario is implemented yet; see the benchmarks issue.');
