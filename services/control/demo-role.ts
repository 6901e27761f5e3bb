/**
 * The demo's application role on the secured stack: what an application of a real deployment
 * is, a role that is not a superuser, owns the application's tables, runs their DDL, and logs in
 * to the routers with SCRAM. Its password is made once into the stack's secrets folder
 * (`postgres-app-<role>`, 0600, never printed) and the role is created on every node with one and
 * the same SCRAM verifier — a router proves a client against one node's verifier and logs in to
 * whichever node leads with the keys it proved, so the salt and iterations must match everywhere.
 *
 * It gets CREATE on schema public (PostgreSQL 15 grants CREATE on public to no one but its owner)
 * and nothing else; `brabant node init --ddl-roles` then makes apply a member, so a replicated
 * DDL of the role runs as it on the peers and the tables it creates are its own there too
 * (docs/security.md, "DDL replay and table ownership").
 */
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { pgClientConfig } from '../../infra/postgres/postgres.ts';
import { passwordVerifier } from '../router/scram-server.ts';
import { BrabantError } from '../runtime/errors.ts';
import { readSecretFile } from '../runtime/security.ts';
import type { TopologySecurity } from '../runtime/topology-security.ts';
import { ident } from './node-roles.ts';

export const DEMO_ROLE = 'brabant_demo';

/** The password file of an application role kept for every node alike. */
export function appSecretFile(s: Pick<TopologySecurity, 'secrets'>, role: string): string {
  return join(s.secrets, `postgres-app-${role}`);
}

/** The role's password: made once (24 random bytes, base64url), then read. */
export function ensureAppPassword(s: Pick<TopologySecurity, 'secrets'>, role: string): string {
  const file = appSecretFile(s, role);
  if (!existsSync(file))
    writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  return readSecretFile(file, `the password of ${role}`);
}

/**
 * The statements (pure) that make `role` an application's owner role holding exactly: LOGIN,
 * `verifier` as its password, CREATE and USAGE on `schema`; no other attribute.
 */
export function appRolePlan(role: string, verifier: string, schema: string): string[] {
  const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
  return [
    `do $$ begin if not exists (select 1 from pg_roles where rolname = ${lit(role)}) then create role ${ident(role)}; end if; end $$`,
    `alter role ${ident(role)} with login nosuperuser nocreatedb nocreaterole nobypassrls noreplication password ${lit(verifier)}`,
    `grant usage, create on schema ${ident(schema)} to ${ident(role)}`,
  ];
}

/** Creates (or corrects) the role on every node, as the superuser, with one verifier. */
export async function ensureAppRole(
  nodes: { id: string; postgres: string }[],
  adminPassword: string,
  role: string,
  password: string,
): Promise<void> {
  const statements = appRolePlan(role, passwordVerifier(password), 'public');
  for (const n of nodes) {
    const db = new pg.Client(pgClientConfig(n.postgres, adminPassword));
    db.on('error', () => {});
    try {
      await db.connect();
      for (const sql of statements) await db.query(sql);
    } catch (err) {
      throw new BrabantError(
        'PERMISSION_DENIED',
        `creating the demo's role ${role} on ${n.id} failed: ${(err as Error).message}`,
        { cause: err },
      );
    } finally {
      await db.end().catch(() => {});
    }
  }
}
