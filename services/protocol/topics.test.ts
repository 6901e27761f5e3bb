import { describe, expect, it } from 'vitest';
import { changeTopicSettings, topicProblems } from './topics.ts';

const declared = changeTopicSettings('brabant.vlaanderen.changes');
const ok = {
  'cleanup.policy': 'delete',
  'retention.ms': String(declared.retentionMs),
  'max.message.bytes': '1048576',
};

describe('an existing topic against the declared settings', () => {
  it('finds nothing wrong with the declared settings, more partitions or longer retention', () => {
    expect(topicProblems(declared, { partitions: 6, configs: ok })).toEqual([]);
    expect(topicProblems(declared, { partitions: 12, configs: { ...ok, 'retention.ms': '-1' } })).toEqual([]);
  });

  it('stops on a compacted topic: it would delete committed changes', () => {
    const p = topicProblems(declared, {
      partitions: 6,
      configs: { ...ok, 'cleanup.policy': 'compact,delete' },
    });
    expect(p).toMatchObject([{ setting: 'cleanup.policy', severity: 'stop' }]);
  });

  it('warns on shorter retention and a smaller message limit', () => {
    const p = topicProblems(declared, {
      partitions: 6,
      configs: { ...ok, 'retention.ms': '3600000', 'max.message.bytes': '65536' },
    });
    expect(p.map((x) => `${x.setting}:${x.severity}`)).toEqual([
      'retention.ms:warn',
      'max.message.bytes:warn',
    ]);
    expect(p[0]!.why).toContain('a region away longer than 1.0 h can no longer catch up');
  });
});
