import { describe, expect, it } from 'vitest';
import { classifyKafkaError, isKafkaError, kafkaLogLine } from './kafka-errors.ts';

const ctx = { brokers: ['127.0.0.1:19090'], retry: 'every 200 ms doubling to 5000 ms' };

describe('kafkajs in Brabant’s terms', () => {
  it('logs a broker that cannot be reached as KAFKA_UNAVAILABLE with the brokers and the retry schedule', () => {
    const line = kafkaLogLine(
      'error',
      'Connection error: connect ECONNREFUSED 127.0.0.1:19090',
      { broker: '127.0.0.1:19090', clientId: 'x', stack: 'Error: …' },
      ctx,
    );
    expect(line).toEqual({
      level: 'warn',
      message:
        'KAFKA_UNAVAILABLE: Kafka broker 127.0.0.1:19090 cannot be reached (Connection error: connect ECONNREFUSED 127.0.0.1:19090); retrying every 200 ms doubling to 5000 ms',
      fields: { code: 'KAFKA_UNAVAILABLE', broker: '127.0.0.1:19090', brokers: ['127.0.0.1:19090'] },
      throttleKey: 'unavailable:127.0.0.1:19090',
    });
  });

  it('does not call a group coordinator that is still loading an unreachable broker', () => {
    expect(
      kafkaLogLine('error', 'The group coordinator is not available', {}, ctx).fields.code,
    ).toBeUndefined();
  });

  it('passes other lines through without their stack', () => {
    expect(kafkaLogLine('warn', 'something else', { stack: 's', groupId: 'g' }, ctx)).toEqual({
      level: 'warn',
      message: 'something else',
      fields: { groupId: 'g' },
    });
  });

  it('classifies errors: fenced and too large stop, the rest is unavailable and retried', () => {
    const fenced = Object.assign(new Error('fenced'), {
      name: 'KafkaJSProtocolError',
      type: 'PRODUCER_FENCED',
    });
    expect(isKafkaError(fenced)).toBe(true);
    expect(classifyKafkaError(fenced, 'producing')).toMatchObject({ code: 'FENCED', retriable: false });
    const big = Object.assign(new Error('big'), {
      name: 'KafkaJSError',
      cause: { type: 'MESSAGE_TOO_LARGE' },
    });
    expect(classifyKafkaError(big, 'producing')).toMatchObject({
      code: 'MESSAGE_TOO_LARGE',
      retriable: false,
    });
    const down = Object.assign(new Error('Connection timeout'), { name: 'KafkaJSConnectionError' });
    expect(classifyKafkaError(down, 'consuming')).toMatchObject({
      code: 'KAFKA_UNAVAILABLE',
      retriable: true,
      message: 'consuming: Connection timeout',
    });
  });
});
