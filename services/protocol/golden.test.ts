import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChangeDecoder } from './change-decoder.ts';
import { ENVELOPE_VERSION, frame, NEWEST_READABLE_ENVELOPE } from './envelope.ts';
import { changeAsJson, FIXTURE_DIR, goldenRecords } from './golden.ts';

const read = (name: string, ext: string) => readFileSync(new URL(`${name}.${ext}`, FIXTURE_DIR));
const names = readdirSync(FIXTURE_DIR)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => f.slice(0, -4));

describe('golden records of the wire contract', () => {
  it('are checked in for every record the writer builds', () => {
    expect(names.sort()).toEqual(expect.arrayContaining(goldenRecords().map((g) => g.name)));
  });

  it.each(names)('%s decodes with its writer schema to what it held when written', async (name) => {
    const { schemaId, decoded, headers } = JSON.parse(read(name, 'json').toString()) as {
      schemaId: number;
      decoded: unknown;
      headers?: Record<string, string>;
    };
    const schema = read(name, 'avsc').toString();
    const decoder = new ChangeDecoder({
      schemaById: async (id) => {
        if (id !== schemaId) throw new Error(`fixture ${name} asks for schema id ${id}`);
        return JSON.stringify(JSON.parse(schema));
      },
    });
    expect(changeAsJson(await decoder.decode(read(name, 'bin'), headers))).toEqual(decoded);
  });

  it.each(goldenRecords().map((g) => [g.name, g] as const))(
    '%s is written today exactly as checked in (a writer change needs a new fixture)',
    (name, g) => {
      expect(g.bytes.equals(read(name, 'bin'))).toBe(true);
      expect(g.schema).toEqual(JSON.parse(read(name, 'avsc').toString()));
      expect(g.headers).toEqual((JSON.parse(read(name, 'json').toString()) as { headers?: unknown }).headers);
    },
  );

  it('a reader refuses a record of a newer envelope version, naming the node and the fix', async () => {
    const { schemaId } = JSON.parse(read('control-heartbeat', 'json').toString()) as { schemaId: number };
    const bytes = read('control-heartbeat', 'bin');
    // the envelope field is the first of the body: a zigzag varint right after the framing
    const body = Buffer.from(bytes.subarray(5));
    expect(body[0]).toBe(ENVELOPE_VERSION * 2);
    body[0] = (NEWEST_READABLE_ENVELOPE + 1) * 2;
    const decoder = new ChangeDecoder({
      schemaById: async () => read('control-heartbeat', 'avsc').toString(),
    });
    await expect(decoder.decode(frame(schemaId, body))).rejects.toMatchObject({
      code: 'ENVELOPE_UNSUPPORTED',
      message: expect.stringMatching(/node vl-1 \(vlaanderen\).*envelope version 3.*upgrade apply/),
    });
  });
});
