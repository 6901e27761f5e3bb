import { describe, expect, it } from 'vitest';
import {
  ANSWERS_READ,
  type Answers,
  exitedOnPostmasterDeath,
  readAnswers,
  readSetupAnswers,
  TransactionTracker,
} from './transaction-tracker.ts';
import {
  errorResponse,
  MessageScanner,
  message,
  parameterStatus,
  query,
  readyForQuery,
  type TransactionStatus,
  terminate,
} from './wire.ts';

const none = Buffer.alloc(0);
/** The longest message a client may send (BRABANT_ROUTER_MAX_MESSAGE_BYTES), small for these tests. */
const MAX_MESSAGE = 64 * 1024;
const z = (s: string) => Buffer.from(`${s}\0`);
const int16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);

// client → server (https://www.postgresql.org/docs/15/protocol-message-formats.html)
const parse = (sql: string) => message('P', Buffer.concat([z(''), z(sql), int16(0)]));
const bind = () => message('B', Buffer.concat([z(''), z(''), int16(0), int16(0), int16(0)]));
const describePortal = () => message('D', Buffer.concat([Buffer.from('P'), z('')]));
const execute = () => message('E', Buffer.concat([z(''), Buffer.alloc(4)]));
const sync = () => message('S', none);
const flush = () => message('H', none);
const copyData = (row: string) => message('d', Buffer.from(row));
const copyDone = () => message('c', none);
const copyFail = () => message('f', z('client gave up'));
/** One statement through the extended protocol, up to and including its Sync. */
const extended = (sql: string) => [parse(sql), bind(), describePortal(), execute(), sync()];

// server → client
const commandComplete = (tag: string) => message('C', z(tag));
const rowDescription = () => message('T', int16(0));
const dataRow = () => message('D', int16(0));
const parseComplete = () => message('1', none);
const bindComplete = () => message('2', none);
const copyInResponse = () => message('G', Buffer.from([0, 0, 0]));
const copyOutResponse = () => message('H', Buffer.from([0, 0, 0]));
const ready = (status: TransactionStatus) => readyForQuery(status);
const postmasterExit = () =>
  errorResponse('FATAL', '57P01', 'terminating connection due to unexpected postmaster exit');
const adminShutdown = () =>
  errorResponse('FATAL', '57P01', 'terminating connection due to administrator command');
/** The answers to one `extended` statement that returns a row. */
const extendedAnswers = (status: TransactionStatus) => [
  parseComplete(),
  bindComplete(),
  rowDescription(),
  dataRow(),
  commandComplete('SELECT 1'),
  ready(status),
];

/**
 * One client connection as the proxy sees it: what the client sends and what the node answers,
 * with the first answer of each transaction watched as the proxy does (relay.ts).
 */
function conversation() {
  const tracker = new TransactionTracker(MAX_MESSAGE);
  const answers = new MessageScanner(ANSWERS_READ);
  let firstAnswerDue = true;
  return {
    tracker,
    send: (...messages: Buffer[]) => tracker.request(Buffer.concat(messages)),
    answer: (...messages: Buffer[]): Answers => {
      const read = readAnswers(answers, Buffer.concat(messages), tracker, firstAnswerDue);
      if (read.kind === 'over') firstAnswerDue = true;
      else if (read.kind === 'running' && read.answered) firstAnswerDue = false;
      return read;
    },
  };
}

const running = { kind: 'running', answered: true, parameters: [] };
const overAtEnd = (...messages: Buffer[]) => ({
  kind: 'over',
  end: Buffer.concat(messages).length,
  parameters: [],
});

describe('a transaction on a pooled server connection', () => {
  it('simple query: one Query is one cycle, over at its ReadyForQuery (idle)', () => {
    const c = conversation();
    expect(c.send(query('select 1'))).toEqual({ forward: query('select 1'), terminated: false });
    expect(c.tracker.over).toBe(false);
    const answer = [rowDescription(), dataRow(), commandComplete('SELECT 1'), ready('I')];
    expect(c.answer(...answer)).toEqual(overAtEnd(...answer));
    expect(c.tracker.over).toBe(true);
  });

  it('simple query: BEGIN … COMMIT holds the connection until the ReadyForQuery after COMMIT', () => {
    const c = conversation();
    c.send(query('begin'));
    expect(c.answer(commandComplete('BEGIN'), ready('T'))).toEqual(running);
    c.send(query('insert into t values (1)'));
    expect(c.answer(commandComplete('INSERT 0 1'), ready('T'))).toEqual(running);
    expect(c.tracker.outsideTransaction).toBe(false);
    c.send(query('commit'));
    expect(c.answer(commandComplete('COMMIT'), ready('I'))).toEqual(
      overAtEnd(commandComplete('COMMIT'), ready('I')),
    );
  });

  it('simple query: an error inside a transaction keeps it (failed, E) until ROLLBACK', () => {
    const c = conversation();
    c.send(query('begin'));
    c.answer(commandComplete('BEGIN'), ready('T'));
    c.send(query('select 1 / 0'));
    expect(c.answer(errorResponse('ERROR', '22012', 'division by zero'), ready('E')).kind).toBe('running');
    c.send(query('select 1'));
    expect(c.answer(errorResponse('ERROR', '25P02', 'current transaction is aborted'), ready('E')).kind).toBe(
      'running',
    );
    c.send(query('rollback'));
    expect(c.answer(commandComplete('ROLLBACK'), ready('I')).kind).toBe('over');
  });

  it('simple query: an error outside a transaction ends the cycle like any answer', () => {
    const c = conversation();
    c.send(query('select 1 / 0'));
    expect(c.answer(errorResponse('ERROR', '22012', 'division by zero'), ready('I')).kind).toBe('over');
  });

  it('extended protocol: Parse … Sync is one cycle, however the client chunks it', () => {
    const c = conversation();
    const [p, b, d, e, s] = extended('select $1');
    for (const m of [p!, b!, d!, e!]) c.send(m);
    expect(c.tracker.over).toBe(false);
    c.send(s!);
    expect(c.answer(...extendedAnswers('I'))).toEqual(overAtEnd(...extendedAnswers('I')));
  });

  it('extended protocol: messages not yet synced hold the connection even when a ReadyForQuery says idle', () => {
    const c = conversation();
    // a Query, then (pipelined, before its answer) a statement the client has not synced yet
    c.send(query('select 1'), parse('select 2'), bind(), execute(), flush());
    expect(c.answer(commandComplete('SELECT 1'), ready('I')).kind).toBe('running');
    c.send(sync());
    expect(c.answer(parseComplete(), bindComplete(), commandComplete('SELECT 1'), ready('I')).kind).toBe(
      'over',
    );
  });

  it('extended protocol: a pipeline of several Syncs is over at the last ReadyForQuery only', () => {
    const c = conversation();
    c.send(...extended('select 1'), ...extended('select 2'), ...extended('select 3'));
    const first = extendedAnswers('I');
    const rest = [...extendedAnswers('I'), ...extendedAnswers('I')];
    expect(c.answer(...first)).toEqual(running);
    expect(c.answer(...rest)).toEqual(overAtEnd(...rest));
  });

  it('extended protocol: an error in a pipeline ends its cycle at the Sync; the next cycles go on', () => {
    const c = conversation();
    c.send(...extended('select 1 / 0'), ...extended('select 2'));
    // after the error the node skips to the Sync: ErrorResponse, ReadyForQuery
    expect(
      c.answer(parseComplete(), bindComplete(), errorResponse('ERROR', '22012', 'division by zero')),
    ).toEqual(running);
    expect(c.answer(ready('I')).kind).toBe('running');
    expect(c.answer(...extendedAnswers('I')).kind).toBe('over');
  });

  it('extended protocol: a transaction begun in a pipeline stays the client’s until its COMMIT is synced and answered', () => {
    const c = conversation();
    c.send(...extended('begin'), ...extended('insert into t values (1)'));
    expect(c.answer(...extendedAnswers('T'), ...extendedAnswers('T')).kind).toBe('running');
    c.send(...extended('commit'));
    expect(c.answer(...extendedAnswers('I')).kind).toBe('over');
  });

  it('COPY FROM STDIN: copy data and copy done belong to the Query that started it', () => {
    const c = conversation();
    c.send(query('copy t from stdin'));
    expect(c.answer(copyInResponse())).toEqual(running);
    c.send(copyData('1\n'), copyData('2\n'));
    c.send(copyDone());
    expect(c.tracker.over).toBe(false);
    expect(c.answer(commandComplete('COPY 2'), ready('I')).kind).toBe('over');
  });

  it('COPY FROM STDIN: a CopyFail ends the copy with an error; the cycle ends at its ReadyForQuery', () => {
    const c = conversation();
    c.send(query('copy t from stdin'));
    c.answer(copyInResponse());
    c.send(copyData('1\n'), copyFail());
    expect(c.answer(errorResponse('ERROR', '57014', 'COPY from stdin failed'), ready('I')).kind).toBe('over');
  });

  it('COPY FROM STDIN through the extended protocol, as libpq sends it: the Sync sent with the Execute is swallowed', () => {
    const c = conversation();
    c.send(parse('copy t from stdin'), bind(), describePortal(), execute(), sync());
    expect(c.answer(parseComplete(), bindComplete(), message('n', none), copyInResponse())).toEqual(running);
    // Sync and Flush during the copy are ignored by the node: they end no cycle
    c.send(copyData('1\n'), flush(), sync(), copyDone());
    expect(c.tracker.over).toBe(false);
    // libpq's second Sync, after CopyDone, is the one the node answers
    c.send(sync());
    expect(c.answer(commandComplete('COPY 1'), ready('I')).kind).toBe('over');
  });

  it('COPY FROM STDIN: a Sync during a simple-query COPY ends no cycle either', () => {
    const c = conversation();
    c.send(query('copy t from stdin'));
    c.answer(copyInResponse());
    c.send(copyData('1\n'), sync(), copyDone());
    expect(c.answer(commandComplete('COPY 1'), ready('I')).kind).toBe('over');
  });

  it('COPY FROM STDIN: any other message before CopyDone or CopyFail is a PROTOCOL_ERROR (the node would read it as copy data)', () => {
    const c = conversation();
    c.send(query('copy t from stdin'));
    c.answer(copyInResponse());
    expect(() => c.send(copyData('1\n'), query('select 1'))).toThrow(/during COPY FROM STDIN/);
    const ext = conversation();
    ext.send(query('copy t from stdin'));
    ext.answer(copyInResponse());
    expect(() => ext.send(parse('select 1'))).toThrow(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
  });

  it('COPY FROM STDIN with more sent behind it before its CopyInResponse: the client broke the protocol', () => {
    const c = conversation();
    c.send(query('copy t from stdin'), query('select 1'));
    expect(c.answer(copyInResponse())).toEqual({
      kind: 'client-broke',
      end: 0,
      text: expect.stringMatching(/read by the node as copy data/),
    });
    const ext = conversation();
    ext.send(query('copy t from stdin'), parse('select 1'));
    expect(ext.answer(copyInResponse()).kind).toBe('client-broke');
  });

  it('the node ending the session on a protocol violation is the client’s doing, not the node’s trouble', () => {
    const c = conversation();
    c.send(query('select 1'));
    const fatal = errorResponse('FATAL', '08P01', 'invalid frontend message type 97');
    expect(c.answer(fatal)).toEqual({ kind: 'client-broke', end: fatal.length, text: undefined });
  });

  it('COPY TO STDOUT: the node’s copy data flows through; over at its ReadyForQuery', () => {
    const c = conversation();
    c.send(query('copy t to stdout'));
    const answer = [
      copyOutResponse(),
      copyData('1\n'),
      copyData('2\n'),
      copyDone(),
      commandComplete('COPY 2'),
    ];
    expect(c.answer(...answer)).toEqual(running);
    expect(c.answer(ready('I')).kind).toBe('over');
  });

  it('a ReadyForQuery while the client is in the middle of its next message: the connection stays the client’s', () => {
    const c = conversation();
    const next = query(`select '${'x'.repeat(100)}'`);
    // a large pipelined Query arrives in two chunks, the node answers the first one in between
    c.send(query('select 1'), next.subarray(0, 50));
    expect(c.answer(commandComplete('SELECT 1'), ready('I'))).toEqual(running);
    c.send(next.subarray(50));
    expect(c.answer(commandComplete('SELECT 1'), ready('I')).kind).toBe('over');
  });

  it('finds the end of a transaction wherever the node’s bytes are cut', () => {
    const request = [query('begin; insert into t values (1); commit')];
    const answer = Buffer.concat([
      commandComplete('BEGIN'),
      commandComplete('INSERT 0 1'),
      parameterStatus('application_name', 'x'),
      commandComplete('COMMIT'),
      ready('I'),
    ]);
    for (let cut = 0; cut <= answer.length; cut++) {
      const c = conversation();
      c.send(...request);
      const reads = [c.answer(answer.subarray(0, cut)), c.answer(answer.subarray(cut))];
      const over = reads.findIndex((r) => r.kind === 'over');
      const read = reads[over];
      expect(read?.kind === 'over' && (over === 0 ? 0 : cut) + read.end).toBe(answer.length);
      expect(reads.flatMap((r) => ('parameters' in r ? r.parameters : []))).toEqual([
        { name: 'application_name', value: 'x' },
      ]);
    }
  });

  it('bytes behind the last answer are not the client’s: over ends at that ReadyForQuery', () => {
    const c = conversation();
    c.send(query('select 1'));
    const answer = [commandComplete('SELECT 1'), ready('I')];
    // a backend exiting on postmaster death sends its FATAL right behind its last answer
    expect(c.answer(...answer, postmasterExit())).toEqual(overAtEnd(...answer));
  });

  it('a parameter the node reports after the end is not the client’s either', () => {
    const c = conversation();
    c.send(query(`set application_name = 'a'`));
    const answer = [parameterStatus('application_name', 'a'), commandComplete('SET'), ready('I')];
    expect(c.answer(...answer, parameterStatus('TimeZone', 'UTC'))).toEqual({
      ...overAtEnd(...answer),
      parameters: [{ name: 'application_name', value: 'a' }],
    });
  });

  it('FATAL on postmaster death as the first answer: the node read nothing of the transaction', () => {
    const c = conversation();
    c.send(query('insert into t values (1)'));
    expect(c.answer(postmasterExit())).toEqual({ kind: 'unread' });
  });

  it('FATAL on postmaster death after a first answer: the transaction was read, its outcome is the node’s', () => {
    const c = conversation();
    c.send(query('begin'));
    c.answer(commandComplete('BEGIN'), ready('T'));
    c.send(query('insert into t values (1)'));
    expect(c.answer(postmasterExit())).toEqual({ kind: 'running', answered: true, parameters: [] });
  });

  it('FATAL after ReadyForQuery ended the transaction: the next transaction’s first answer is watched again', () => {
    const c = conversation();
    c.send(query('select 1'));
    expect(c.answer(commandComplete('SELECT 1'), ready('I')).kind).toBe('over');
    c.send(query('select 2'));
    expect(c.answer(postmasterExit())).toEqual({ kind: 'unread' });
  });

  it('other FATALs as first answer are no proof the node read nothing', () => {
    const c = conversation();
    c.send(query('insert into t values (1)'));
    expect(c.answer(adminShutdown())).toEqual(running);
    // a localized server: the message is not the one matched, so the transaction fails
    const localized = errorResponse('FATAL', '57P01', 'Verbindung wird abgebrochen');
    expect(exitedOnPostmasterDeath(localized.subarray(5))).toBe(false);
    expect(exitedOnPostmasterDeath(postmasterExit().subarray(5))).toBe(true);
    expect(exitedOnPostmasterDeath(errorResponse('ERROR', '57P01', 'postmaster exit').subarray(5))).toBe(
      false,
    );
  });

  it('a first answer cut short is not an answer yet', () => {
    const c = conversation();
    c.send(query('insert into t values (1)'));
    const exit = postmasterExit();
    expect(c.answer(exit.subarray(0, 7))).toEqual({ kind: 'running', answered: false, parameters: [] });
    expect(c.answer(exit.subarray(7))).toEqual({ kind: 'unread' });
  });

  it('Terminate is cut off (the router acts on it) and says the client is leaving', () => {
    const c = conversation();
    expect(c.send(query('select 1'), terminate())).toEqual({ forward: query('select 1'), terminated: true });
    expect(c.send(terminate())).toEqual({ forward: none, terminated: true });
  });

  it('a Terminate cut across chunks is held back, never sent in part', () => {
    const select = query('select 1');
    const bytes = Buffer.concat([select, terminate()]);
    // cut inside the Terminate's 5 bytes, once or twice
    for (const cuts of [[1], [3], [1, 3], [2, 4]]) {
      const c = conversation();
      const ends = [...cuts.map((n) => select.length + n), bytes.length];
      const reads = ends.map((end, i) => c.send(bytes.subarray(i === 0 ? 0 : ends[i - 1], end)));
      expect(Buffer.concat(reads.map((r) => r.forward))).toEqual(select);
      expect(reads.map((r) => r.terminated)).toEqual([...cuts.map(() => false), true]);
    }
    // a Terminate begun (and held back) is not half a message the node holds
    const c = conversation();
    c.send(query('select 1'), terminate().subarray(0, 2));
    expect(c.answer(commandComplete('SELECT 1'), ready('I')).kind).toBe('over');
    expect(c.tracker.settle()).toBe('give-back');
  });

  it('a malformed message from either side is a PROTOCOL_ERROR', () => {
    const bad = Buffer.from([0x51, 0, 0, 0, 2]); // 'Q' with a length below 4
    const protocolError = expect.objectContaining({ name: 'BrabantError', code: 'PROTOCOL_ERROR' });
    expect(() => new TransactionTracker(MAX_MESSAGE).request(bad)).toThrow(protocolError);
    // a declared length over the limit is refused at its header: its body is never waited for
    const huge = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]);
    expect(() => new TransactionTracker(MAX_MESSAGE).request(huge)).toThrow(
      /BRABANT_ROUTER_MAX_MESSAGE_BYTES/,
    );
    const c = conversation();
    c.send(query('select 1'));
    expect(() => c.answer(Buffer.from([0x5a, 0, 0, 0, 1]))).toThrow(protocolError);
    // a ReadyForQuery without its status, or with one that is none of I, T, E
    expect(() => conversation().answer(message('Z', none))).toThrow(protocolError);
    expect(() => conversation().answer(message('Z', Buffer.from('X')))).toThrow(protocolError);
  });
});

describe('a client that leaves', () => {
  it('with answers still due: its connection waits for them, then serves the next client', () => {
    const c = conversation();
    c.send(query('select pg_sleep(1)'));
    expect(c.tracker.settle()).toBe('wait');
    c.answer(commandComplete('SELECT 1'), ready('I'));
    expect(c.tracker.settle()).toBe('give-back');
  });

  it('inside a transaction: its connection closes (that rolls it back)', () => {
    const c = conversation();
    c.send(query('begin'));
    c.answer(commandComplete('BEGIN'), ready('T'));
    expect(c.tracker.settle()).toBe('close');
  });

  it('in a failed transaction, or with extended-protocol messages not synced: the connection closes', () => {
    const failed = conversation();
    failed.send(query('begin'));
    failed.answer(commandComplete('BEGIN'), ready('T'));
    failed.send(query('select 1 / 0'));
    failed.answer(errorResponse('ERROR', '22012', 'division by zero'), ready('E'));
    expect(failed.tracker.settle()).toBe('close');
    const unsynced = conversation();
    unsynced.send(parse('select 1'), bind(), execute());
    expect(unsynced.tracker.settle()).toBe('close');
  });

  it('after Terminate with its pipeline in flight: the pipeline finishes first', () => {
    const c = conversation();
    expect(c.send(...extended('select 1'), ...extended('select 2'), terminate()).terminated).toBe(true);
    expect(c.tracker.settle()).toBe('wait');
    c.answer(...extendedAnswers('I'));
    expect(c.tracker.settle()).toBe('wait');
    c.answer(...extendedAnswers('I'));
    expect(c.tracker.settle()).toBe('give-back');
  });

  it('in the middle of a message: the node would read the next client’s bytes as its rest, so the connection closes', () => {
    const c = conversation();
    const big = query(`insert into t values ('${'x'.repeat(100)}')`);
    c.send(big.subarray(0, 40));
    expect(c.tracker.settle()).toBe('close');
    // the same after a transaction that was over: a next message begun, then the client gone
    const after = conversation();
    after.send(query('select 1'));
    after.answer(commandComplete('SELECT 1'), ready('I'));
    after.send(big.subarray(0, 3));
    expect(after.tracker.settle()).toBe('close');
  });

  it('during a COPY FROM STDIN: the router sends a CopyFail for it, then the connection serves the next client', () => {
    const c = conversation();
    c.send(query('copy t from stdin'));
    c.answer(copyInResponse());
    c.send(copyData('1\n'));
    expect(c.tracker.settle()).toBe('fail-copy');
    // the proxy sends the CopyFail through the tracker, as if the client had
    expect(c.send(copyFail()).forward).toEqual(copyFail());
    expect(c.tracker.settle()).toBe('wait');
    c.answer(errorResponse('ERROR', '57014', 'COPY from stdin failed'), ready('I'));
    expect(c.tracker.settle()).toBe('give-back');
  });

  it('during a COPY inside a transaction block: after the CopyFail the transaction is open, so the connection closes', () => {
    const c = conversation();
    c.send(query('begin'));
    c.answer(commandComplete('BEGIN'), ready('T'));
    c.send(query('copy t from stdin'));
    c.answer(copyInResponse());
    expect(c.tracker.settle()).toBe('fail-copy');
    c.send(copyFail());
    c.answer(errorResponse('ERROR', '57014', 'COPY from stdin failed'), ready('E'));
    expect(c.tracker.settle()).toBe('close');
  });

  it('during a COPY, in the middle of a copy data message or in an extended-protocol COPY: the connection closes', () => {
    const cut = conversation();
    cut.send(query('copy t from stdin'));
    cut.answer(copyInResponse());
    cut.send(copyData('1\n2\n').subarray(0, 7));
    expect(cut.tracker.settle()).toBe('close');
    const extendedCopy = conversation();
    extendedCopy.send(parse('copy t from stdin'), bind(), execute());
    extendedCopy.answer(parseComplete(), bindComplete(), copyInResponse());
    expect(extendedCopy.tracker.settle()).toBe('close');
    // a COPY the node ended on its own (bad data: error, ReadyForQuery) is over like any cycle
    const failed = conversation();
    failed.send(query('copy t from stdin'));
    failed.answer(copyInResponse());
    failed.send(copyData('x\n'));
    failed.answer(errorResponse('ERROR', '22P02', 'invalid input syntax'), ready('I'));
    expect(failed.tracker.settle()).toBe('give-back');
  });

  it('before what it sent reached a server: nothing of it runs, the connection serves the next client', () => {
    const c = conversation();
    c.send(query('begin'), query('insert into t values (1)'));
    c.tracker.dropUnsent();
    expect(c.tracker.settle()).toBe('give-back');
    // a message it had only begun is dropped as well
    const cut = conversation();
    cut.send(query('begin'), query('select 1').subarray(0, 6));
    cut.tracker.dropUnsent();
    expect(cut.tracker.settle()).toBe('give-back');
  });
});

describe('the answers to the SET statements that carry a client’s settings', () => {
  const setTimeZone = [commandComplete('SET'), parameterStatus('TimeZone', 'Asia/Tokyo')];

  it('all answered: done, with the parameters the node reported', () => {
    const answers = new MessageScanner(ANSWERS_READ);
    expect(readSetupAnswers(answers, Buffer.concat([...setTimeZone, ready('I')]), undefined)).toEqual({
      kind: 'done',
      error: undefined,
      parameters: [{ name: 'TimeZone', value: 'Asia/Tokyo' }],
    });
  });

  it('an error is kept until the ReadyForQuery, whichever chunk brings it', () => {
    const answers = new MessageScanner(ANSWERS_READ);
    const refused = errorResponse('ERROR', '22023', 'invalid value for parameter "TimeZone": "Mars"');
    const first = readSetupAnswers(answers, Buffer.concat([commandComplete('SET'), refused]), undefined);
    expect(first).toEqual({
      kind: 'running',
      error: 'invalid value for parameter "TimeZone": "Mars"',
      parameters: [],
    });
    expect(readSetupAnswers(answers, ready('E'), first.kind === 'running' ? first.error : undefined)).toEqual(
      {
        kind: 'done',
        error: 'invalid value for parameter "TimeZone": "Mars"',
        parameters: [],
      },
    );
  });

  it('malformed answers are a PROTOCOL_ERROR, not a crash', () => {
    const protocolError = expect.objectContaining({ name: 'BrabantError', code: 'PROTOCOL_ERROR' });
    const unterminated = message('S', Buffer.from('TimeZone'));
    for (const bad of [unterminated, message('Z', none), Buffer.from([0x45, 0, 0, 0, 0])])
      expect(() => readSetupAnswers(new MessageScanner(ANSWERS_READ), bad, undefined)).toThrow(protocolError);
  });

  it('the node exiting on postmaster death, even right after the ReadyForQuery: the client’s transaction was not sent', () => {
    const answers = new MessageScanner(ANSWERS_READ);
    expect(readSetupAnswers(answers, postmasterExit(), undefined).kind).toBe('exited');
    const after = new MessageScanner(ANSWERS_READ);
    expect(
      readSetupAnswers(after, Buffer.concat([...setTimeZone, ready('I'), postmasterExit()]), undefined).kind,
    ).toBe('exited');
  });
});
