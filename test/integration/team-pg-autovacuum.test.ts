/**
 * PG migration 17 (main/core/store/pg/pg-migrations.ts): audit_submissions, a queue every
 * decision inserts into and the audit leader deletes from, carries its own autovacuum settings
 * (a fixed dead-row threshold, no share of the table, unthrottled), on a new team database and
 * on an existing one migrated from version 16 with rows still queued. Real PostgreSQL 15
 * (test/helpers/postgres.ts); the settings are read back from pg_class.reloptions.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateTeamDatabase } from '../../main/core/store/pg/pg-decision-store.js';
import { PG_MIGRATIONS } from '../../main/core/store/pg/pg-migrations.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';

/** The schema version before the settings (migration 17 is PG_MIGRATIONS[16]). */
const BEFORE = 16;
const SETTINGS = [
  'autovacuum_vacuum_scale_factor=0',
  'autovacuum_vacuum_threshold=1000',
  'autovacuum_vacuum_insert_scale_factor=0',
  'autovacuum_vacuum_insert_threshold=1000',
  'autovacuum_analyze_scale_factor=0',
  'autovacuum_analyze_threshold=1000',
  'autovacuum_vacuum_cost_delay=0',
];

let cluster: PostgresCluster;
let admin: pg.Pool;
const pools: pg.Pool[] = [];

beforeAll(async () => {
  cluster = await startPostgres();
  admin = testPool(cluster.url);
}, 120_000);

afterAll(async () => {
  for (const pool of pools) await pool.end().catch(() => undefined);
  await admin?.end().catch(() => undefined);
  cluster?.destroy();
}, 60_000);

/** A pool on a new, empty database of the cluster. */
async function freshDatabase(name: string): Promise<pg.Pool> {
  await admin.query(`CREATE DATABASE ${name}`);
  const pool = testPool(cluster.url.replace(/\/postgres$/, `/${name}`));
  pools.push(pool);
  return pool;
}

const reloptions = async (pool: pg.Pool, table: string): Promise<string[] | null> =>
  (await pool.query<{ reloptions: string[] | null }>('SELECT reloptions FROM pg_class WHERE oid = $1::regclass', [table])).rows[0]!
    .reloptions;

const version = async (pool: pg.Pool): Promise<number> =>
  (await pool.query<{ version: number }>('SELECT version FROM schema_version')).rows[0]!.version;

describe('team database: audit_submissions autovacuum settings', () => {
  it('a new team database has them once migrated, on audit_submissions alone', async () => {
    const pool = await freshDatabase('fresh_team');
    await migrateTeamDatabase(pool);
    expect(await version(pool)).toBe(PG_MIGRATIONS.length);
    expect((await reloptions(pool, 'audit_submissions'))?.sort()).toEqual([...SETTINGS].sort());
    // The other tables keep the server's defaults.
    expect(await reloptions(pool, 'audit_log')).toBeNull();
    expect(await reloptions(pool, 'requests')).toBeNull();
  });

  it('an existing team database at version 16 gets them, its queued submissions kept', async () => {
    const pool = await freshDatabase('old_team');
    // The database as a build of version 16 left it, with two audit events not yet sequenced.
    await pool.query('CREATE TABLE schema_version (version integer NOT NULL)');
    for (const step of PG_MIGRATIONS.slice(0, BEFORE)) await pool.query(step);
    await pool.query('INSERT INTO schema_version (version) VALUES ($1)', [BEFORE]);
    await pool.query(`INSERT INTO audit_submissions (at, kind, fields, request_id, hub) VALUES
      (1, 'call.rejected', '{"code":"rate_limited"}', NULL, 'hub-a'), (2, 'call.rejected', '{"code":"rate_limited"}', NULL, 'hub-b')`);
    expect(await reloptions(pool, 'audit_submissions')).toBeNull();

    await migrateTeamDatabase(pool);
    expect(await version(pool)).toBe(PG_MIGRATIONS.length);
    expect((await reloptions(pool, 'audit_submissions'))?.sort()).toEqual([...SETTINGS].sort());
    expect((await pool.query('SELECT at, hub FROM audit_submissions ORDER BY id')).rows).toEqual([
      { at: '1', hub: 'hub-a' },
      { at: '2', hub: 'hub-b' },
    ]);
    // Migrating again (another hub starting) changes nothing.
    await migrateTeamDatabase(pool);
    expect(await version(pool)).toBe(PG_MIGRATIONS.length);
    expect((await reloptions(pool, 'audit_submissions'))?.sort()).toEqual([...SETTINGS].sort());
  });
});
