/**
 * Team store bench (BENCH_ONLY=team-store): decisions/s and p99 through the store seam on SQLite
 * and on PostgreSQL with two hubs, in the same run (target: PostgreSQL at least half of SQLite);
 * approval latency from a finish on hub A to the token at a call held on hub B (LISTEN/NOTIFY);
 * audit leader failover time after kill -9 of the leading hub (target under 5 s). Starts its own
 * throwaway PostgreSQL 15 cluster.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../main/core/audit/audit-log.js';
import { PgAuditLeader } from '../main/core/audit/pg-audit-leader.js';
import { SoftwareSigner } from '../main/core/custody/software-signer.js';
import { SqliteDecisionStore } from '../main/core/decision/sqlite-decision-store.js';
import { openStore } from '../main/core/store/database.js';
import { PgDecisionStore } from '../main/core/store/pg/pg-decision-store.js';
import type { DecisionStore } from '../main/core/store/store-seam.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { approveWrite, decisionWrite } from '../test/helpers/team-fixtures.js';

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

async function load(stores: DecisionStore[], concurrency: number, seconds: number) {
  const latencies: number[] = [];
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      const store = stores[i % stores.length]!;
      while (Date.now() < until) {
        const started = performance.now();
        await store.recordDecision(decisionWrite({ agentId: `agent-${i}` }));
        latencies.push(performance.now() - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    decisionsPerSecond: Math.round(latencies.length / seconds),
    p50Ms: +pct(latencies, 0.5).toFixed(2),
    p99Ms: +pct(latencies, 0.99).toFixed(2),
  };
}

export async function runTeamStoreBench(options: { seconds: number; concurrency: number }): Promise<Record<string, unknown>> {
  const work = mkdtempSync(join(tmpdir(), 'countersign-team-bench-'));
  const cluster = await startPostgres();
  try {
    const db = openStore(join(work, 'bench.db'));
    const sqlite = new SqliteDecisionStore(db, new AuditLog(db));
    const sqliteResult = await load([sqlite], options.concurrency, options.seconds);
    db.close();

    const a = await PgDecisionStore.open({ url: cluster.url, hub: 'hub-a', onError: () => undefined });
    const b = await PgDecisionStore.open({ url: cluster.url, hub: 'hub-b', onError: () => undefined });
    const pgResult = await load([a, b], options.concurrency, options.seconds);

    const approvals: number[] = [];
    for (let i = 0; i < 50; i++) {
      const held = decisionWrite({ state: 'pending' });
      await b.recordDecision(held);
      const waiting = b.waitForOutcome(held.request.id);
      await new Promise((r) => setTimeout(r, 5));
      const started = performance.now();
      await a.finishRequest(approveWrite(held.request.id));
      await waiting;
      approvals.push(performance.now() - started);
    }
    approvals.sort((x, y) => x - y);
    await a.close();

    // Failover: a child hub leads; kill -9 it; time until hub B holds the leader lock.
    const keyDir = join(work, 'keys');
    const signer = await SoftwareSigner.openOrCreate(keyDir, { log: () => undefined });
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, '..', 'test', 'helpers', 'pg-hub-child.ts'),
        cluster.url,
        'hub-c',
        keyDir,
        'bench/team',
        '1',
      ],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => c.toString().includes('leader') && resolve()));
    let tookOver: (() => void) | undefined;
    const led = new Promise<void>((resolve) => (tookOver = resolve));
    const leaderB = new PgAuditLeader({
      config: b.config,
      hub: 'hub-b',
      signer,
      origin: 'bench/team',
      onError: () => undefined,
      onLeadership: (l) => l && tookOver?.(),
    });
    leaderB.start();
    await new Promise((r) => setTimeout(r, 500));
    const killed = performance.now();
    child.kill('SIGKILL');
    await led;
    const failoverMs = Math.round(performance.now() - killed);
    await leaderB.stop();
    await b.close();

    return {
      concurrency: options.concurrency,
      sqlite: sqliteResult,
      postgresTwoHubs: pgResult,
      pgToSqliteThroughput: +(pgResult.decisionsPerSecond / Math.max(1, sqliteResult.decisionsPerSecond)).toFixed(2),
      targetRatio: 0.5,
      approvalLatencyHubAToHubB: { p50Ms: +pct(approvals, 0.5).toFixed(2), p99Ms: +pct(approvals, 0.99).toFixed(2) },
      failoverMs,
      failoverTargetMs: 5_000,
    };
  } finally {
    cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}
