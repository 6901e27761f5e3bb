import { describe, expect, it } from 'vitest';
import { selectTargets } from './stack-control.ts';
import type { ComponentRecord } from './stack-state.ts';

const base = { pid: 1, startTime: 1, logFile: '' };
const kafka = (id: string): ComponentRecord => ({
  ...base,
  kind: 'kafka',
  id,
  name: id,
  spec: { name: id, brokerPort: 1, controllerPort: 2, dataDir: '', logFile: '', libsDir: '' },
});
const pgSpec = { name: 'x', port: 1, dataDir: '', logFile: '' };
const records: ComponentRecord[] = [
  kafka('kafka-vlaanderen'),
  kafka('kafka-wallonie'),
  { ...base, kind: 'postgres', id: 'vl-1', name: 'postgres vl-1', spec: pgSpec },
  { ...base, kind: 'registry-db', id: 'registry-db', name: 'registry-db', spec: pgSpec },
];

describe('selectTargets', () => {
  it('takes `kafka` for every Kafka cluster and a name for one part', () => {
    expect(selectTargets(records, 'kafka').map((r) => r.id)).toEqual(['kafka-vlaanderen', 'kafka-wallonie']);
    expect(selectTargets(records, 'kafka-wallonie').map((r) => r.id)).toEqual(['kafka-wallonie']);
    expect(selectTargets(records, 'vl-1').map((r) => r.id)).toEqual(['vl-1']);
  });

  it('refuses an unknown name, listing the ones it takes', () => {
    expect(() => selectTargets(records, 'wa-9')).toThrow(
      "the stack has no part 'wa-9'; `brabant restart` takes one of: kafka, kafka-vlaanderen, kafka-wallonie, vl-1, registry-db",
    );
  });
});
