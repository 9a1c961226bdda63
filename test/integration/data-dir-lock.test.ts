/**
 * One process owns a data directory: a second server is refused with `data_dir_locked` naming
 * the holder, a killed holder does not block the next start, and concurrent first uses of a
 * fresh directory (real child processes) all find one complete schema.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { REPO_ROOT, startCountersign } from '../../main/core/app.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { LOCK_HOLDER_FILE } from '../../main/core/store/data-dir-lock.js';
import { isCountersignError, type CountersignError } from '../../shared/errors.js';
import { tempDir } from '../helpers/harness.js';
import { compiledCli, compiledScript } from '../helpers/compiled-script.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
function freshDir(): string {
  const dir = tempDir('countersign-lock-');
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function child(script: 'server-child.ts' | 'open-store-child.ts', args: string[]): ChildProcess {
  const c = spawn(process.execPath, [compiledScript(`test/helpers/${script}`), ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(c);
  return c;
}

/** Resolves with the first stdout line matching `pattern` (rejects if the child exits first). */
function line(c: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const found = buffered.split('\n').find((l) => pattern.test(l));
      if (found !== undefined) {
        c.stdout!.off('data', onData);
        resolve(found);
      }
    };
    c.stdout!.on('data', onData);
    c.once('exit', (code) =>
      reject(new Error(`child exited (${code}) before printing ${pattern}; it printed ${JSON.stringify(buffered)}`)),
    );
  });
}

async function startError(dataDir: string): Promise<CountersignError> {
  try {
    const app = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } });
    await app.close();
  } catch (error) {
    if (isCountersignError(error)) return error;
    throw error;
  }
  throw new Error('the second server started');
}

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
function cli(dataDir: string, ...args: string[]) {
  return spawnSync(NODE, [CLI, ...args, '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
}

describe('one server per data directory', () => {
  it('refuses a second server in the same process with data_dir_locked naming the first, and starts once it stops', async () => {
    const dataDir = freshDir();
    const first = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 }, command: 'countersign start' });
    const refused = await startError(dataDir);
    expect(refused.code).toBe('data_dir_locked');
    expect(refused.details).toMatchObject({ pid: process.pid, command: 'countersign start' });
    expect(refused.message).toContain(`pid ${process.pid} (countersign start`);
    // The refused start changed nothing: the first server still serves and still holds the lock.
    expect(first.db.prepare('SELECT COUNT(*) AS n FROM audit_log').get()).toBeDefined();
    expect((await startError(dataDir)).code).toBe('data_dir_locked');
    await first.close();
    const second = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } });
    await second.close();
  }, 60_000);

  it('names a server in another process, lets read-only commands run beside it, refuses a checkpoint reset, and a SIGKILLed holder does not block the next start', async () => {
    const dataDir = freshDir();
    const server = child('server-child.ts', [dataDir]);
    const ready = await line(server, /^ready /);
    const pid = Number(ready.split(' ')[1]);
    expect(JSON.parse(readFileSync(join(dataDir, LOCK_HOLDER_FILE), 'utf8'))).toMatchObject({
      pid,
      command: 'countersign headless (test child)',
    });

    const refused = await startError(dataDir);
    expect(refused.code).toBe('data_dir_locked');
    expect(refused.details).toMatchObject({ pid, command: 'countersign headless (test child)' });

    // The CLI as a user runs it: `headless` is refused with the code and the holder's pid.
    const second = cli(dataDir, 'headless', '--port', '0');
    expect(second.status).toBe(1);
    expect(second.stderr).toContain('[data_dir_locked]');
    expect(second.stderr).toContain(`pid ${pid}`);
    // Reading beside a running server is fine (SQLite WAL); rewriting its checkpoint file is not.
    expect(cli(dataDir, 'agents', 'list').status).toBe(0);
    const reset = cli(dataDir, 'audit', 'reset-checkpoint');
    expect(reset.status).toBe(1);
    expect(reset.stderr).toContain('[data_dir_locked]');

    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    // The kernel dropped the dead server's lock; its holder note is stale and is simply replaced.
    const next = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 }, command: 'countersign start' });
    expect(JSON.parse(readFileSync(join(dataDir, LOCK_HOLDER_FILE), 'utf8'))).toMatchObject({
      pid: process.pid,
      command: 'countersign start',
    });
    await next.close();
  }, 120_000);
});

describe('first use of a fresh data directory', () => {
  it('lets several processes open a fresh directory at the same moment: every one succeeds and the schema is applied once', async () => {
    const dataDir = freshDir();
    const racers = Array.from({ length: 4 }, () => child('open-store-child.ts', [dataDir]));
    await Promise.all(racers.map((c) => line(c, /^ready$/)));
    const results = racers.map((c) => line(c, /^(ok|error)/));
    for (const c of racers) c.stdin!.write('go\n');
    expect(await Promise.all(results)).toEqual(['ok', 'ok', 'ok', 'ok']);
    const db = new Database(join(dataDir, 'countersign.db'), { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    db.close();
  }, 120_000);
});
