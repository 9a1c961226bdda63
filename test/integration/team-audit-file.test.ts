/**
 * The team audit leader's checkpoint files, on a real PostgreSQL 15 cluster started by the test:
 * the leader writes each checkpoint it signs to its files with the embedded engine's atomic write
 * (checkpoints.ts), whose writes and fsyncs run on libuv's thread pool, in the crash-safe order;
 * the copies are written one at a time in checkpoint order, so a file never goes back to an older
 * note; a copy that cannot be written is reported and does not stop the leader. The steps are
 * observed through a wrapper that passes each to the real file system, and where a test holds one
 * back or makes one fail it says so (fault injection: a disk cannot do either on demand).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  atomicWriteFsAsync,
  verifyCheckpointNote,
  type AtomicWriteFsAsync,
  type AtomicWriteStep,
} from '../../main/core/audit/checkpoints.js';
import { PgAuditLeader } from '../../main/core/audit/pg-audit-leader.js';
import { SoftwareSigner } from '../../main/core/custody/software-signer.js';
import { PgDecisionStore } from '../../main/core/store/pg/pg-decision-store.js';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { decisionWrite } from '../helpers/team-fixtures.js';

const ORIGIN = 'countersign.test/team-audit-file';

let cluster: PostgresCluster;
let work: string;
const opened: Array<{ close(): Promise<void> }> = [];

async function store(dbName: string): Promise<PgDecisionStore> {
  const s = await PgDecisionStore.open({ url: cluster.url.replace(/\/postgres$/, `/${dbName}`), hub: 'hub-a', onError: () => undefined });
  opened.push(s);
  return s;
}

async function freshDatabase(name: string): Promise<PgDecisionStore> {
  const admin = await store('postgres');
  await admin.pool.query(`CREATE DATABASE ${name}`);
  return store(name);
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function latestRow(s: PgDecisionStore): Promise<{ size: number; note: string } | undefined> {
  const { rows } = await s.pool.query<{ tree_size: string; note: string }>(
    'SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1',
  );
  return rows[0] === undefined ? undefined : { size: Number(rows[0].tree_size), note: rows[0].note };
}

/** Each step as `op name`, the temporary file's pid suffix dropped. */
function stepName(step: AtomicWriteStep, names: Map<unknown, string>): string {
  const name = (path: string) => basename(path).replace(/\.tmp-\d+$/, '.tmp');
  if (step.op === 'mkdir') return `mkdir ${name(step.path)}`;
  if (step.op === 'open') return `open ${name(step.path)}`;
  if (step.op === 'rename') return `rename ${name(step.from)} -> ${name(step.to)}`;
  return `${step.op} ${names.get(step.handle) ?? '?'}`;
}

/**
 * The audit leader of `s` as hub-a, signing with a software key kept in `keys` (under the test's
 * directory), checkpointing every 100 ms and writing each checkpoint to `files` through `fs`; the
 * errors it reports are collected. Stopped after the file's tests if a test did not stop it.
 */
async function fileLeader(
  s: PgDecisionStore,
  keys: string,
  files: string[],
  fs: AtomicWriteFsAsync,
): Promise<{ leader: PgAuditLeader; signer: SoftwareSigner; errors: string[] }> {
  const signer = await SoftwareSigner.openOrCreate(join(work, keys), { log: () => undefined });
  const errors: string[] = [];
  const leader = new PgAuditLeader({
    config: s.config,
    hub: 'hub-a',
    signer,
    origin: ORIGIN,
    checkpointEveryMs: 100,
    checkpointFiles: files,
    onError: (m) => errors.push(m),
    checkpointFileFs: fs,
  });
  opened.push({ close: () => leader.stop() });
  return { leader, signer, errors };
}

beforeAll(async () => {
  cluster = await startPostgres();
  work = mkdtempSync(join(tmpdir(), 'countersign-team-file-'));
}, 180_000);

afterAll(async () => {
  for (const s of opened.reverse()) await s.close();
  cluster?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('team audit leader: checkpoint files', () => {
  it('writes each checkpoint it signs to its files through the asynchronous atomic write, one copy at a time in checkpoint order', async () => {
    const s = await freshDatabase('leaderfile');
    const dir = join(work, 'leaderfile');
    const file = join(dir, 'team-checkpoint.note');
    const steps: string[] = [];
    const names = new Map<unknown, string>();
    // Fault injection: the first fsync of the temporary file is held until the test lets it go.
    let release: (() => void) | undefined;
    let holdNext = true;
    const { leader, signer, errors } = await fileLeader(s, 'keys-a', [file], async (step) => {
      steps.push(stepName(step, names));
      if (step.op === 'fsync' && names.get(step.handle) === 'team-checkpoint.note.tmp' && holdNext) {
        holdNext = false;
        await new Promise<void>((resolve) => (release = resolve));
      }
      const result = await atomicWriteFsAsync(step);
      if (step.op === 'open') names.set(result, basename(step.path).replace(/\.tmp-\d+$/, '.tmp'));
      return result;
    });
    try {
      await s.recordDecision(decisionWrite());
      leader.start();
      await waitFor(() => release !== undefined, 'the first copy to reach its fsync');
      const held = await latestRow(s);
      expect(held).toBeDefined();
      expect(existsSync(file)).toBe(false);
      // The event loop runs while that fsync is held: the store keeps committing decisions, and
      // no second copy starts before the first is done (the log grows, the timer ticks meanwhile).
      for (let i = 0; i < 3; i++) await s.recordDecision(decisionWrite());
      await new Promise((r) => setTimeout(r, 400));
      expect(steps.filter((x) => x === 'open team-checkpoint.note.tmp')).toHaveLength(1);
      release!();
      // The held copy lands, then a checkpoint of the decisions recorded meanwhile replaces it.
      await waitFor(async () => {
        const newest = await latestRow(s);
        return newest!.size > held!.size && existsSync(file) && readFileSync(file, 'utf8') === newest!.note;
      }, 'a newer note in the file');
      const newest = await latestRow(s);
      expect(verifyCheckpointNote(readFileSync(file, 'utf8'), ORIGIN, [signer.publicJwk]).size).toBe(newest!.size);
      // The note is in the file from its rename on, but that copy's directory fsync (or the timer's
      // next copy) may still be running: stop waits for the serialized tick, so every copy the
      // steps below list is whole (a check before it saw 8 of a copy's 9 steps under load).
      await leader.stop();
      // Every copy took the crash-safe steps in order, one copy after another.
      const one = [
        'mkdir leaderfile',
        'open team-checkpoint.note.tmp',
        'write team-checkpoint.note.tmp',
        'fsync team-checkpoint.note.tmp',
        'close team-checkpoint.note.tmp',
        'rename team-checkpoint.note.tmp -> team-checkpoint.note',
        'open leaderfile',
        'fsync leaderfile',
        'close leaderfile',
      ];
      expect(steps.length % one.length).toBe(0);
      expect(steps.length).toBeGreaterThanOrEqual(2 * one.length);
      for (let at = 0; at < steps.length; at += one.length) expect(steps.slice(at, at + one.length)).toEqual(one);
      expect(errors).toEqual([]);
    } finally {
      release?.();
      await leader.stop();
    }
  }, 90_000);

  it('reports a copy that cannot be written and keeps leading; the next checkpoint writes it (fault injection)', async () => {
    const s = await freshDatabase('leaderfilefault');
    const file = join(work, 'leaderfilefault', 'team-checkpoint.note');
    const mirror = join(work, 'leaderfilefault-mirror', 'team-checkpoint.note');
    let failMirror = true;
    const { leader, errors } = await fileLeader(s, 'keys-b', [mirror, file], async (step) => {
      if (failMirror && step.op === 'rename' && step.to === mirror) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      return atomicWriteFsAsync(step);
    });
    try {
      await s.recordDecision(decisionWrite());
      leader.start();
      await waitFor(() => errors.length > 0 && existsSync(file), 'the failed mirror copy to be reported and the file written');
      expect(errors[0]).toContain(`could not write the checkpoint to ${mirror}: injected EIO`);
      expect(existsSync(mirror)).toBe(false);
      expect(leader.isLeader()).toBe(true);
      failMirror = false;
      await s.recordDecision(decisionWrite());
      // Both copies hold the newest note once the next checkpoint is written (mirror first, then file).
      const both = async () => {
        const note = (await latestRow(s))?.note;
        return [mirror, file].every((f) => existsSync(f) && readFileSync(f, 'utf8') === note);
      };
      await waitFor(both, 'the mirror copy and the file to hold the newest note');
    } finally {
      await leader.stop();
    }
  }, 90_000);
});
