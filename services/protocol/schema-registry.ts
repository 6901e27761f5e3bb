/**
 * Client of a Confluent-compatible schema registry, through the Confluent REST API only
 * (Confluent Schema Registry, Apicurio's ccompat API, Karapace). Ids are cached for ever (an id
 * never changes its schema); registrations are cached per subject and schema text.
 */
import { BrabantError } from '../runtime/errors.ts';
import type { ClientTls } from '../runtime/security.ts';
import { tlsFailure } from '../runtime/tls-errors.ts';
import { type HttpAnswer, registryRequest } from './registry-http.ts';

export interface RegistryClientOptions {
  /** Base URL, e.g. http://127.0.0.1:8081 or http://host/apis/ccompat/v7 */
  url: string;
  timeoutMs?: number;
  /** Tries per request when the registry is unreachable or answers 5xx. */
  retries?: number;
  /**
   * The primary region's registry, when `url` is a read-only follower (a registry on a hot
   * standby of the primary's database, docs/registry.md): ids are looked up at `url`, and only a
   * schema it does not know yet is registered here. Ids agree because only the primary hands
   * them out; none is ever made up locally.
   */
  primaryUrl?: string;
  /** https: the CA to check the registry's certificate against, and this client's certificate. */
  tls?: ClientTls;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

export class SchemaRegistryClient {
  private readonly byId = new Map<number, string>();
  private readonly registered = new Map<string, number>();
  readonly url: string;
  private readonly primary: SchemaRegistryClient | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly tls: ClientTls | undefined;

  constructor(opts: RegistryClientOptions) {
    this.url = opts.url.replace(/\/$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retries = opts.retries ?? 5;
    this.tls = opts.tls;
    const primary = opts.primaryUrl?.replace(/\/$/, '');
    this.primary =
      primary === undefined || primary === '' || primary === this.url
        ? undefined
        : new SchemaRegistryClient({ ...opts, url: primary, primaryUrl: undefined, retries: 2 });
  }

  /** Registers (or finds) an Avro schema under a subject and returns its global id. */
  async register(subject: string, schema: object): Promise<number> {
    const text = JSON.stringify(schema);
    const cacheKey = `${subject}\u0000${text}`;
    const cached = this.registered.get(cacheKey);
    if (cached !== undefined) return cached;
    if (this.primary !== undefined) {
      const id = await this.registerThroughPrimary(subject, text, schema);
      this.registered.set(cacheKey, id);
      this.byId.set(id, text);
      return id;
    }
    const path = `/subjects/${encodeURIComponent(subject)}/versions`;
    const body = { schemaType: 'AVRO', schema: text };
    let id: number;
    try {
      id = idOf(await this.request('POST', path, body), 'POST', path);
    } catch (err) {
      if (!(err instanceof RegistryHttpError) || err.status !== 409) throw err;
      // 409 also comes back when a concurrent (or retried) request created the subject first
      // (Apicurio: "already exists"): if the schema is registered now, that is success.
      const found = await this.lookup(subject, text);
      if (found !== undefined) id = found;
      else if (/already exists/i.test(err.message))
        id = idOf(await this.request('POST', path, body), 'POST', path);
      else throw err;
    }
    this.registered.set(cacheKey, id);
    this.byId.set(id, text);
    return id;
  }

  /** A follower: the local id if the schema is known here, else the id the primary registers it under. */
  private async registerThroughPrimary(subject: string, text: string, schema: object): Promise<number> {
    const primary = this.primary!;
    const local = await this.lookup(subject, text).catch(() => undefined);
    if (local !== undefined) return local;
    try {
      return await primary.register(subject, schema);
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status < 500) throw err;
      throw new BrabantError(
        'SCHEMA_REGISTRATION_WAITING',
        `the new schema of ${subject} is not in this region's registry ${this.url} (a read-only follower) and the primary ` +
          `registry ${primary.url} cannot be reached (${(err as Error).message}); capture waits and retries until the ` +
          'primary answers (the link to the primary region may be cut); no id is made up meanwhile, and the slot keeps the WAL',
        { cause: err },
      );
    }
  }

  /** The id of a schema already registered under a subject, or undefined. */
  async lookup(subject: string, text: string): Promise<number | undefined> {
    try {
      const path = `/subjects/${encodeURIComponent(subject)}`;
      return idOf(await this.request('POST', path, { schemaType: 'AVRO', schema: text }), 'POST', path);
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** The schema text of an id. */
  async schemaById(id: number): Promise<string> {
    const cached = this.byId.get(id);
    if (cached !== undefined) return cached;
    const path = `/schemas/ids/${id}`;
    const res = (await this.request('GET', path)) as { schema?: unknown } | null;
    if (typeof res?.schema !== 'string')
      throw unexpected('GET', path, 'an object without a schema string', res);
    this.byId.set(id, res.schema);
    return res.schema;
  }

  /** Whether a schema is compatible with the latest version under a subject (true when the subject is new). */
  async isCompatible(subject: string, schema: object): Promise<{ compatible: boolean; messages: string[] }> {
    try {
      const res = (await this.request(
        'POST',
        `/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest?verbose=true`,
        { schemaType: 'AVRO', schema: JSON.stringify(schema) },
      )) as { is_compatible?: unknown; messages?: string[]; reason?: string | null } | null;
      if (typeof res?.is_compatible !== 'boolean')
        throw unexpected(
          'POST',
          `/compatibility/subjects/${subject}/versions/latest`,
          'no is_compatible',
          res,
        );
      // Confluent answers a `messages` array; Apicurio one `reason` string.
      const messages = res.messages ?? (res.reason ? [res.reason] : []);
      return { compatible: res.is_compatible, messages };
    } catch (err) {
      if (err instanceof RegistryHttpError && (err.errorCode === 40401 || err.status === 404)) {
        return { compatible: true, messages: [] };
      }
      throw err;
    }
  }

  async setCompatibility(
    subject: string,
    level: 'BACKWARD' | 'FORWARD' | 'FULL' | 'NONE' | 'BACKWARD_TRANSITIVE' | 'FULL_TRANSITIVE',
  ): Promise<void> {
    await this.request('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level });
  }

  async subjects(): Promise<string[]> {
    const res = await this.request('GET', '/subjects');
    if (!Array.isArray(res) || !res.every((x) => typeof x === 'string'))
      throw unexpected('GET', '/subjects', 'no list of subject names', res);
    return res;
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.retries; attempt++) {
      let res: HttpAnswer;
      try {
        res = await registryRequest(`${this.url}${path}`, {
          method,
          headers: { 'content-type': CONTENT_TYPE, accept: CONTENT_TYPE },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          timeoutMs: this.timeoutMs,
          ...(this.tls === undefined ? {} : { tls: this.tls }),
        });
      } catch (err) {
        const tls = tlsFailure(err);
        if (tls !== undefined)
          throw new BrabantError('REGISTRY_ERROR', `schema registry at ${this.url}: ${tls}`, {
            cause: err,
            retriable: false,
          });
        lastError = err;
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        continue;
      }
      const text = res.text;
      if (res.status >= 200 && res.status < 300) {
        if (text === '') return undefined;
        try {
          return JSON.parse(text);
        } catch {
          throw unexpected(method, path, 'a body that is not JSON', text, this.url);
        }
      }
      let errorCode: number | undefined;
      let message = text;
      try {
        const j = JSON.parse(text) as { error_code?: unknown; message?: unknown } | null;
        if (typeof j?.error_code === 'number') errorCode = j.error_code;
        if (typeof j?.message === 'string') message = j.message;
      } catch {
        /* not JSON: the text itself, shortened below */
      }
      const err = new RegistryHttpError(method, path, res.status, errorCode, excerpt(message));
      if (res.status < 500) throw err;
      lastError = err;
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    }
    if (lastError instanceof RegistryHttpError) throw lastError;
    throw new BrabantError(
      'REGISTRY_ERROR',
      `schema registry at ${this.url} is unreachable (${(lastError as Error)?.message ?? lastError}); ` +
        'check BRABANT_REGISTRY_URL and that the registry runs',
      { cause: lastError, retriable: true },
    );
  }
}

/** The `id` of a registration or lookup answer, or a clear error naming what came back. */
function idOf(res: unknown, method: string, path: string): number {
  const id = (res as { id?: unknown } | null)?.id;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
    throw unexpected(method, path, 'no schema id (a non-negative integer "id")', res);
  return id;
}

/** At most 200 characters of what a registry sent, for a message. */
function excerpt(x: unknown): string {
  const t = typeof x === 'string' ? x : (JSON.stringify(x) ?? String(x));
  return t.length > 200 ? `${t.slice(0, 200)}… (${t.length} characters)` : t;
}

/**
 * An answer that is not what the Confluent API gives: not retried (the URL most likely points at
 * something else than a registry's Confluent API), and the message shows what came back.
 */
function unexpected(method: string, path: string, what: string, got: unknown, url?: string): BrabantError {
  return new BrabantError(
    'REGISTRY_ERROR',
    `schema registry${url ? ` at ${url}` : ''} ${method} ${path} answered with ${what}: ${excerpt(got)}; ` +
      'check that BRABANT_REGISTRY_URL is the Confluent-compatible API of a schema registry (Apicurio: …/apis/ccompat/v7)',
    { retriable: false },
  );
}

export class RegistryHttpError extends BrabantError {
  constructor(
    method: string,
    path: string,
    readonly status: number,
    readonly errorCode: number | undefined,
    detail: string,
  ) {
    super(
      status === 409 ? 'SCHEMA_INCOMPATIBLE' : 'REGISTRY_ERROR',
      `schema registry ${method} ${path} answered ${status}${errorCode === undefined ? '' : ` (error ${errorCode})`}: ${detail}`,
      { retriable: status >= 500 },
    );
  }
}
