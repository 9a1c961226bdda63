/**
 * The team directory's writes under a silent partition (ADR 0013), on a real PostgreSQL 15 cluster
 * reached through a TCP relay (test/helpers/tcp-relay.ts: the network between one hub and the
 * database, the only way to drop its packets on demand). A directory write whose answer never
 * comes fails closed with store_unavailable, and its connection is destroyed, not handed back to
 * the pool with a timed-out query and a ROLLBACK still waiting on it (the same rule as the
 * decision store's group transaction).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { PgDecisionStore } from '../../main/core/store/pg/pg-decision-store.js';
import { PgDirectory } from '../../main/core/store/pg/pg-directory.js';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { tempDir } from '../helpers/harness.js';

let cluster: PostgresCluster;
let relay: TcpRelay;
let dir: string;
let db: Db;
let store: PgDecisionStore;
let directory: PgDirectory;

beforeAll(async () => {
  cluster = await startPostgres();
  relay = await startTcpRelay(cluster.port);
  dir = tempDir('countersign-directory-faults-');
  db = openStore(join(dir, 'countersign.db'));
  store = await PgDecisionStore.open({
    url: `postgres://countersign@127.0.0.1:${relay.port}/postgres`,
    hub: 'hub-a',
    statementTimeoutMs: 1_000,
    connectTimeoutMs: 1_000,
  });
  directory = await PgDirectory.open(store, db);
}, 120_000);

afterAll(async () => {
  relay?.thaw();
  await directory?.close();
  await store?.close().catch(() => undefined);
  await relay?.close();
  db?.close();
  cluster?.destroy();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('team directory writes under a silent partition', () => {
  it('fail closed with store_unavailable and destroy the connection that stopped answering', async () => {
    // The catch-ups (at open, after the listener connected) leave a pooled connection idle: the write below takes it.
    await directory.catchUp();
    expect(store.pool.idleCount).toBeGreaterThan(0);
    const total = store.pool.totalCount;
    relay.freeze();
    const write = directory.change('test.partitioned', Date.now(), async (client) => {
      await client.query('SELECT 1');
      return { ops: [], audit: [], result: undefined };
    });
    await expect(write).rejects.toMatchObject({ code: 'store_unavailable' });
    // Destroyed (the pool holds one connection fewer), not returned to it idle.
    expect(store.pool.totalCount).toBe(total - 1);
    relay.thaw();
    // The directory writes again once the network answers.
    await expect(
      directory.change('test.healed', Date.now(), async (client) => {
        await client.query('SELECT 1');
        return { ops: [], audit: [], result: 'ok' };
      }),
    ).resolves.toBe('ok');
  }, 60_000);
});
