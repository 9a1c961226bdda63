/**
 * The group commit's inline sync failing (main/core/store/group-commit.ts, "A lone group"): a
 * lone group's write-ahead log is fdatasynced in the event loop's own thread, and when that sync
 * fails the unit is refused with store_failed, nothing is acknowledged, and every later unit and
 * durable() are refused too (fail-stop: after a failed fsync the kernel may have dropped the
 * pages), even once the disk works again.
 *
 * Fault injection: a real disk cannot be made to fail on demand, so the child process runs with
 * test/helpers/slow-wal-sync.c preloaded, which makes each fsync/fdatasync of the WAL fail with
 * EIO while a flag file exists and logs which thread the failed call ran in. Everything else is
 * real: the SQLite file, the committer, the kernel's descriptors.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { REPO_ROOT } from '../../main/core/app.js';
import { compiledScript } from '../helpers/compiled-script.js';
import { tempDir } from '../helpers/harness.js';

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

it('refuses a lone unit whose inline WAL sync fails (store_failed, nothing acknowledged), and every later unit, as the pool path does', () => {
  dir = tempDir('countersign-sync-fault-');
  const shim = join(dir, 'slow-wal-sync.so');
  const built = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', shim, join(REPO_ROOT, 'test/helpers/slow-wal-sync.c'), '-ldl']);
  expect(built.status, built.stderr?.toString()).toBe(0);
  const syncLog = join(dir, 'sync.log');
  const child = spawnSync(process.execPath, [compiledScript('test/helpers/sync-fault-child.ts'), join(dir, 'c.db')], {
    cwd: REPO_ROOT,
    env: { ...process.env, LD_PRELOAD: shim, FAIL_SYNC_FLAG: join(dir, 'fail-sync.flag'), SLOW_SYNC_LOG: syncLog },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(child.status, child.stderr).toBe(0);
  const storeFailed = { ok: false, code: 'store_failed', message: expect.stringContaining('restarts') as unknown, sameTurn: true };
  expect(JSON.parse(child.stdout)).toEqual({
    // With syncs working, a lone unit is synced inline and settles in the flush's own turn.
    before: { ok: true, sameTurn: true },
    // Its sync failed: refused in that same turn, never acknowledged.
    failed: storeFailed,
    // Fail-stop: a later unit is refused without running, and so is durable().
    after: storeFailed,
    durable: storeFailed,
    // The disk works again (the flag is gone): still refused until a restart.
    diskBack: storeFailed,
    ran: ['before', 'failed'],
  });
  // The injected failure is the one the event loop's thread met (the inline sync), once: nothing
  // was synced on the thread pool, and nothing tried to sync after the failure.
  const failures = readFileSync(syncLog, 'utf8')
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('F '))
    .map((line) => line.split(' ')[1]);
  expect(failures).toEqual(['main']);
}, 45_000);
