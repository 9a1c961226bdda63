/**
 * The Merkle audit log against tampering, on real data directories: a clean run exports and
 * verifies offline with the public key; a row rewritten in the middle, a row deleted, the tail
 * truncated, the database replaced by an older copy, a fork (rewritten and re-hashed), a
 * checkpoint signed with another key, and the external checkpoint file missing or corrupt are
 * each refused at start or named by `audit verify` and the offline verifier. A full disk fails
 * the decision closed and loses nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync, sign } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DEMO_POLICY_DIR, nodeWebSocket, tempDir, transferCall, ensurePeople } from '../helpers/harness.js';
import { REPO_ROOT, openDataDir, startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { AuditLog } from '../../main/core/audit/audit-log.js';
import { CHECKPOINT_FILE, RECOMPUTE_SLICE, auditOrigin, verifyCheckpointNote } from '../../main/core/audit/checkpoints.js';
import { exportAudit, verifyExport } from '../../main/core/audit/audit-export.js';
import { noteKeyId } from '../../main/core/audit/note-keys.js';
import { checkpointText, formatSignedNote, parseCheckpointText, parseSignedNote } from '../../shared/checkpoint-note.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { compiledCli, compiledScript } from '../helpers/compiled-script.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ORIGIN = auditOrigin('countersign-local');

interface World {
  dataDir: string;
  key: AgentKey;
}

async function world(config: Record<string, unknown> = {}): Promise<World> {
  const dataDir = tempDir('countersign-audit-');
  dirs.push(dataDir);
  writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, ...config }));
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  const app = await startCountersign({ dataDir, log: () => undefined });
  ensurePeople(app, 'dana@example.com');
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'ap-agent', 'ap-agent')), {
    owner: 'dana@example.com',
    group: 'finance-agents',
    allowedTools: ['payments.transfer'],
    dataClasses: ['financial'],
    jurisdictions: ['US'],
  });
  await app.close();
  return { dataDir, key };
}

/** Start, send `calls` transfers (different amounts: no loop), stop (which signs a checkpoint). */
async function run(w: World, calls: number, logs: string[] = []): Promise<{ requestIds: string[] }> {
  const app = await startCountersign({ dataDir: w.dataDir, log: (m) => logs.push(m) });
  try {
    const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
    await client.connect();
    const requestIds: string[] = [];
    for (let i = 0; i < calls; i++) requestIds.push((await client.submit(transferCall(`${100 + i}.00`))).requestId);
    client.close();
    return { requestIds };
  } finally {
    await app.close();
  }
}

/** Open the database as an attacker would: the append-only triggers dropped. */
function tamper(w: World, sql: (db: Database.Database) => void): void {
  const db = new Database(join(w.dataDir, 'countersign.db'));
  db.exec(
    'DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_leaf_once; DROP TRIGGER IF EXISTS audit_log_no_delete; DROP TRIGGER IF EXISTS audit_tree_no_update; DROP TRIGGER IF EXISTS audit_tree_no_delete;',
  );
  sql(db);
  db.close();
}

function inspect<T>(w: World, fn: (d: ReturnType<typeof openDataDir>) => T): T {
  const d = openDataDir(w.dataDir);
  try {
    return fn(d);
  } finally {
    d.db.close();
  }
}

const keysOf = (w: World): PublicJwk[] => inspect(w, ({ signingKeys }) => signingKeys.list().map((k) => k.publicJwk));

async function exportAndVerify(w: World, selection: Parameters<typeof exportAudit>[0]['selection'] = { kind: 'all' }) {
  const file = join(w.dataDir, `export-${Math.random()}.jsonl`);
  inspect(w, ({ db, audit }) => exportAudit({ db, log: audit, origin: ORIGIN, file, selection }));
  return { file, result: await verifyExport(file, keysOf(w)) };
}

const start = (w: World, logs: string[] = []) => startCountersign({ dataDir: w.dataDir, log: (m) => logs.push(m) });

describe('audit log: a clean run', () => {
  it('signs a checkpoint at shutdown, beside the database, and an export verifies offline with the public key', async () => {
    const w = await world();
    const { requestIds } = await run(w, 6);
    const note = readFileSync(join(w.dataDir, CHECKPOINT_FILE), 'utf8');
    const checkpoint = verifyCheckpointNote(note, ORIGIN, keysOf(w));
    const size = inspect(w, ({ audit }) => audit.size());
    expect(checkpoint.size).toBe(size);
    expect(checkpoint.time).toBeGreaterThan(Date.now() - 60_000);
    expect(note).toMatch(
      /^countersign\/countersign-local\n\d+\n[A-Za-z0-9+/]{43}=\ntime \S+\n\n\u2014 countersign\/countersign-local [A-Za-z0-9+/]+={0,2}\n$/,
    );
    expect(inspect(w, ({ audit }) => audit.verify())).toMatchObject({ ok: true, entries: size });

    const full = await exportAndVerify(w);
    expect(full.result).toMatchObject({ ok: true, origin: ORIGIN, treeSize: size, entries: size });
    const byRequest = await exportAndVerify(w, { kind: 'request', requestId: requestIds[2]! });
    expect(byRequest.result).toMatchObject({ ok: true, entries: 1 });
    const byTime = await exportAndVerify(w, { kind: 'time', since: 0, until: Date.now() });
    expect(byTime.result).toMatchObject({ ok: true, entries: size });
    // Another key does not verify it.
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }) as unknown as PublicJwk;
    expect(await verifyExport(full.file, [other])).toMatchObject({
      ok: false,
      reason: expect.stringContaining('not signed by a pinned signing key') as unknown,
    });
    expect(full.result).toMatchObject({ complete: true, selection: { kind: 'all' } });
    expect(byRequest.result).toMatchObject({ complete: false, selection: { kind: 'request', requestId: requestIds[2] } });
    // The next start accepts the checkpoint.
    const app = await start(w);
    await app.close();
  });

  it('the offline verifier requires every consistency proof, and a partial export only what its selection names', async () => {
    const w = await world({ audit: { checkpointEveryEntries: 3, checkpointEveryMs: 100 } });
    const app = await start(w);
    const requestIds: string[] = [];
    try {
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      for (let i = 0; i < 5; i++) {
        requestIds.push((await client.submit(transferCall(`${700 + i}.00`))).requestId);
        await app.checkpoints.checkpoint(); // several checkpoints, so several consistency proofs
      }
      client.close();
    } finally {
      await app.close();
    }
    const { file } = await exportAndVerify(w);
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.filter((l) => l.includes('"type":"consistency"')).length).toBeGreaterThan(2);
    writeFileSync(file, lines.filter((l) => !l.includes('"type":"consistency"')).join('\n'));
    expect(await verifyExport(file, keysOf(w))).toMatchObject({
      ok: false,
      reason: expect.stringContaining('lacks the consistency proof') as unknown,
    });

    // A request export with another request's entry slipped in (its inclusion proof is genuine).
    const { file: one } = await exportAndVerify(w, { kind: 'request', requestId: requestIds[1]! });
    const { file: other } = await exportAndVerify(w, { kind: 'request', requestId: requestIds[3]! });
    const foreign = readFileSync(other, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('{"type":"entry"'))!;
    writeFileSync(one, `${readFileSync(one, 'utf8')}${foreign}\n`);
    expect(await verifyExport(one, keysOf(w))).toMatchObject({
      ok: false,
      reason: expect.stringContaining("outside the export's selection") as unknown,
    });
  });

  it('signs checkpoints every N entries while running', async () => {
    const w = await world({ audit: { checkpointEveryEntries: 5, checkpointEveryMs: 100 } });
    const app = await start(w);
    try {
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      for (let i = 0; i < 6; i++) await client.submit(transferCall(`${200 + i}.00`));
      client.close();
      const deadline = Date.now() + 5_000;
      const file = join(w.dataDir, CHECKPOINT_FILE);
      // The file copy follows the stored row: written on the thread pool once the row is durable.
      const copied = () => (app.checkpoints.latest()?.size ?? 0) >= 6 && readFileSync(file, 'utf8') === app.checkpoints.latest()!.note;
      while (!copied() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(app.checkpoints.latest()!.size).toBeGreaterThanOrEqual(6);
      expect(readFileSync(file, 'utf8')).toBe(app.checkpoints.latest()!.note);
    } finally {
      await app.close();
    }
  });
});

describe('audit log: checkpoints beside the decisions', () => {
  it('re-hashes the entries a checkpoint covers in slices, letting the event loop run between them, and still names a rewritten entry in a later slice', async () => {
    const w = await world({ audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000 } });
    const app = await start(w);
    try {
      const first = app.audit.size();
      const append = app.db.transaction(() => {
        for (let i = 0; i < 3 * RECOMPUTE_SLICE + 50; i++)
          app.audit.append('call.rejected', Date.now(), { code: 'rate_limited', agentId: `a${i}` });
      });
      append();
      // Turns of the event loop run before the checkpoint is stored: while it re-hashes, one per slice boundary.
      const target = first + 3 * RECOMPUTE_SLICE + 50;
      let turnsBeforeStored = 0;
      let counting = true;
      const tick = () => {
        if ((app.checkpoints.latest()?.size ?? 0) < target) turnsBeforeStored++;
        if (counting) setImmediate(tick);
      };
      setImmediate(tick);
      const made = await app.checkpoints.checkpoint();
      counting = false;
      expect(turnsBeforeStored).toBeGreaterThanOrEqual(3);
      expect(made!.size).toBe(first + 3 * RECOMPUTE_SLICE + 50);
      expect(readFileSync(join(w.dataDir, CHECKPOINT_FILE), 'utf8')).toBe(made!.note);
      expect(verifyCheckpointNote(made!.note, ORIGIN, keysOf(w)).size).toBe(made!.size);

      // An entry of the third slice after this checkpoint rewritten: the next checkpoint names it.
      const size = made!.size;
      append();
      const victim = size + 2 * RECOMPUTE_SLICE + 7;
      tamper(w, (db) =>
        db.prepare(`UPDATE audit_log SET record = replace(record, '"rate_limited"', '"forged"') WHERE seq = ?`).run(victim),
      );
      await expect(app.checkpoints.checkpoint()).rejects.toMatchObject({
        code: 'audit_corrupt',
        message: expect.stringContaining(`entry ${victim} does not match its stored leaf hash`) as unknown,
      });
      expect(app.checkpoints.latest()!.size).toBe(size);
    } finally {
      await app.close().catch(() => undefined);
    }
  });
});

describe('audit log: a checkpoint row is durable before anyone can read it', () => {
  it('another process reading the database while the server makes a checkpoint sees the row only after the write-ahead log sync covering it has returned', async () => {
    const w = await world({ audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000 } });
    // Fault injection: a preloaded shim makes each sync of the write-ahead log take 300 ms while
    // the flag file exists and logs when WAL writes return and syncs begin and end (a real disk
    // cannot be slowed on demand); the reader below polls meanwhile, as `audit export` would.
    const shim = join(w.dataDir, 'slow-wal-sync.so');
    const built = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', shim, join(REPO_ROOT, 'test/helpers/slow-wal-sync.c'), '-ldl']);
    expect(built.status, built.stderr?.toString()).toBe(0);
    const flag = join(w.dataDir, 'slow-sync.flag');
    const syncLog = join(w.dataDir, 'slow-sync.log');
    const child = spawn(process.execPath, [compiledScript('test/helpers/checkpoint-child.ts'), w.dataDir], {
      cwd: REPO_ROOT,
      env: { ...process.env, LD_PRELOAD: shim, SLOW_SYNC_FLAG: flag, SLOW_SYNC_LOG: syncLog, SLOW_SYNC_MS: '300' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const nextLine = async (): Promise<string> => {
      const next = await lines.next();
      if (next.done) throw new Error('the child exited early');
      return next.value;
    };
    try {
      const readyLine = await nextLine();
      const size = Number(/^ready (\d+)$/.exec(readyLine)![1]);
      const reader = new Database(join(w.dataDir, 'countersign.db'), { readonly: true, fileMustExist: true });
      let seenAt: bigint | undefined;
      try {
        const largest = reader.prepare('SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints').pluck();
        expect(largest.get()).toBeLessThan(size);
        writeFileSync(flag, '');
        // Written out before the loop below holds this process's event loop.
        await new Promise((resolve) => child.stdin.write('checkpoint\n', resolve));
        const deadline = Date.now() + 15_000;
        while (seenAt === undefined && Date.now() < deadline) if (Number(largest.get()) >= size) seenAt = process.hrtime.bigint();
      } finally {
        reader.close();
      }
      expect(await nextLine()).toBe(`made ${size}`);
      rmSync(flag);
      expect(seenAt).toBeDefined();
      const events = readFileSync(syncLog, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(' '));
      const writes = events.filter((e) => e[0] === 'W').map((e) => BigInt(e[1]!));
      const began = new Map(events.filter((e) => e[0] === 'B').map((e) => [e[1]!, BigInt(e[2]!)]));
      const syncs = events.filter((e) => e[0] === 'E').map((e) => ({ begin: began.get(e[1]!)!, end: BigInt(e[2]!) }));
      // The row's frames are the last WAL write before the reader saw it; a sync that began after
      // them must have returned before it did.
      const rowWritten = writes.filter((t) => t <= seenAt!).reduce((a, b) => (b > a ? b : a), 0n);
      expect(rowWritten).toBeGreaterThan(0n);
      const ms = (t: bigint) => Number(t - rowWritten) / 1e6;
      expect({
        syncedBeforeSeen: syncs.some((s) => s.begin >= rowWritten && s.end <= seenAt!),
        seenAfterTheSlowSync: ms(seenAt!) >= 250,
      }).toEqual({ syncedBeforeSeen: true, seenAfterTheSlowSync: true });
      child.stdin.write('stop\n');
      expect(await nextLine()).toBe('stopped');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 45_000);
});

describe('audit log: tampering', () => {
  it('a row rewritten in the middle: audit verify and the offline verifier name the entry', async () => {
    const w = await world();
    await run(w, 6);
    tamper(w, (db) =>
      expect(db.prepare(`UPDATE audit_log SET record = replace(record, '"kind":"', '"kind":"edited.') WHERE seq = 5`).run().changes).toBe(
        1,
      ),
    );
    expect(inspect(w, ({ audit }) => audit.verify())).toEqual({ ok: false, badSeq: 5, reason: 'the entry does not match its leaf hash' });
    const { result } = await exportAndVerify(w);
    expect(result).toMatchObject({ ok: false, firstBadSeq: 5, reason: 'entry 5: the record does not match its leaf hash' });
  });

  it('a stored subtree hash altered (records and leaves intact): audit verify names its range', async () => {
    const w = await world();
    await run(w, 6);
    // Entry 8's row holds the subtrees its leaf completes (5..8 is level 2, the second hash).
    tamper(w, (db) => {
      const { subtrees } = db.prepare<[], { subtrees: Buffer }>('SELECT subtrees FROM audit_log WHERE seq = 8').get()!;
      expect(subtrees.length).toBe(3 * 32);
      subtrees.fill(9, 32, 64);
      expect(db.prepare('UPDATE audit_log SET subtrees = ? WHERE seq = 8').run(subtrees).changes).toBe(1);
    });
    expect(inspect(w, ({ audit }) => audit.verify())).toEqual({
      ok: false,
      badSeq: 5,
      reason: 'the stored hash of entries 5..8 does not match the entries',
    });
  });

  it('a row deleted: refused at start, and named', async () => {
    const w = await world();
    await run(w, 6);
    tamper(w, (db) => db.prepare('DELETE FROM audit_log WHERE seq = 4').run());
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_corrupt',
      message: expect.stringContaining('missing 1 of its') as unknown,
    });
    expect(inspect(w, ({ audit }) => audit.verify())).toEqual({ ok: false, badSeq: 4, reason: 'entry missing' });
    // Entry 4's row also held the hashes of entries 3..4 and 1..4 (migration 22): the export cannot
    // prove the checkpoints' consistency across them, and refuses with audit_corrupt.
    await expect(exportAndVerify(w)).rejects.toMatchObject({
      code: 'audit_corrupt',
      message: 'the audit tree is missing the hash of subtree 2/0',
    });
  });

  it('the tail truncated: refused at start (the tree got smaller than its checkpoint)', async () => {
    const w = await world();
    await run(w, 6);
    const size = inspect(w, ({ audit }) => audit.size());
    tamper(w, (db) => {
      db.prepare('DELETE FROM audit_log WHERE seq > ?').run(size - 3);
      db.prepare('DELETE FROM audit_checkpoints').run();
    });
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_rollback',
      message: expect.stringContaining(`holds ${size - 3} entries but its checkpoint`) as unknown,
    });
  });

  it('the database replaced by an older copy: refused at start', async () => {
    const w = await world();
    await run(w, 3);
    const db = join(w.dataDir, 'countersign.db');
    copyFileSync(db, `${db}.old`);
    await run(w, 3);
    copyFileSync(`${db}.old`, db);
    for (const ext of ['-wal', '-shm']) rmSync(`${db}${ext}`, { force: true });
    await expect(start(w)).rejects.toMatchObject({ code: 'audit_rollback' });
  });

  it('a fork: entries rewritten and every hash recomputed to match — refused at start, named by verify', async () => {
    const w = await world();
    await run(w, 6);
    tamper(w, (db) => {
      db.prepare(`UPDATE audit_log SET record = replace(record, '"kind":"', '"kind":"edited.') WHERE seq = 6`).run();
      db.prepare('UPDATE audit_log SET leaf = NULL, subtrees = NULL').run();
      db.prepare('DELETE FROM audit_tree').run();
      db.prepare('DELETE FROM audit_checkpoints').run();
    });
    inspect(w, ({ db }) => new AuditLog(db).syncTree()); // the attacker re-hashes the rewritten log
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_fork',
      message: expect.stringContaining('do not match the checkpoint') as unknown,
    });
  });

  it('hashes planted for entries that do not exist yet: refused at start', async () => {
    const w = await world();
    await run(w, 2);
    const size = inspect(w, ({ audit }) => audit.size());
    tamper(w, (db) => {
      const insert = db.prepare('INSERT INTO audit_tree (end_leaf, level, hash) VALUES (?, 0, ?)');
      for (let i = size; i < size + 4; i++) insert.run(i + 1, Buffer.alloc(32, 7));
    });
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_corrupt',
      message: expect.stringContaining(`holds hashes for ${size + 4} entries but the log has ${size}`) as unknown,
    });
  });

  it('records written after the last checkpoint with planted hashes that do not match them: the first checkpoint refuses to sign, and the start fails', async () => {
    const w = await world();
    await run(w, 2);
    const size = inspect(w, ({ audit }) => audit.size());
    // The attacker's version of two future entries, hashed into a complete, consistent tree…
    tamper(w, (db) => {
      const entry = db.prepare('INSERT INTO audit_log (seq, at, kind, record) VALUES (?, 0, ?, ?)');
      for (let seq = size + 1; seq <= size + 2; seq++)
        entry.run(seq, 'server.started', JSON.stringify({ at: 0, forged: true, kind: 'server.started', seq }));
    });
    inspect(w, ({ audit }) => audit.syncTree());
    // …then the records the server really wrote, under those planted hashes.
    tamper(w, (db) =>
      db.prepare(`UPDATE audit_log SET record = replace(record, '"forged":true', '"forged":false') WHERE seq > ?`).run(size),
    );
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_corrupt',
      message: expect.stringContaining(`entry ${size + 1} does not match its stored leaf hash`) as unknown,
    });
  });

  it('the external checkpoint file missing or corrupt: refused at start; a good mirror copy is enough', async () => {
    const w = await world();
    await run(w, 2);
    const file = join(w.dataDir, CHECKPOINT_FILE);
    const good = readFileSync(file, 'utf8');
    rmSync(file);
    await expect(start(w)).rejects.toMatchObject({ code: 'audit_checkpoint_missing' });
    writeFileSync(file, good.slice(0, 40));
    await expect(start(w)).rejects.toMatchObject({ code: 'audit_checkpoint_invalid' });
    writeFileSync(
      file,
      good.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`),
    );
    await expect(start(w)).rejects.toMatchObject({ code: 'audit_checkpoint_invalid' });

    // With a mirror directory, a corrupt main file is survivable (and reported).
    const mirror = join(w.dataDir, 'mirror');
    mkdirSync(mirror);
    writeFileSync(join(mirror, CHECKPOINT_FILE), good);
    writeFileSync(
      join(w.dataDir, 'config.json'),
      JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, audit: { mirrorDir: mirror } }),
    );
    const logs: string[] = [];
    const app = await start(w, logs);
    await app.close();
    expect(logs.some((l) => l.startsWith('warning: audit checkpoint:') && l.includes(CHECKPOINT_FILE))).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(readFileSync(join(mirror, CHECKPOINT_FILE), 'utf8')); // both rewritten at shutdown
  });

  it('a checkpoint signed with another key: refused at start, and by the offline verifier', async () => {
    const w = await world();
    await run(w, 2);
    const file = join(w.dataDir, CHECKPOINT_FILE);
    const honest = parseCheckpointText(parseSignedNote(readFileSync(file, 'utf8')).text);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const jwk = publicKey.export({ format: 'jwk' }) as unknown as PublicJwk;
    const text = checkpointText({ ...honest });
    const forged = formatSignedNote(text, [
      { keyName: ORIGIN, keyId: noteKeyId(ORIGIN, jwk), signature: new Uint8Array(sign(null, Buffer.from(text), privateKey)) },
    ]);
    writeFileSync(file, forged);
    await expect(start(w)).rejects.toMatchObject({
      code: 'audit_checkpoint_invalid',
      message: expect.stringContaining('not signed by a pinned signing key') as unknown,
    });
    // The same forged checkpoint inside an export.
    const { file: exported } = await exportAndVerify(w);
    const lines = readFileSync(exported, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"type":"checkpoint"'));
    lines[i] = JSON.stringify({ type: 'checkpoint', note: forged });
    writeFileSync(exported, lines.join('\n'));
    expect(await verifyExport(exported, keysOf(w))).toMatchObject({
      ok: false,
      line: i + 1,
      reason: expect.stringContaining('checkpoint: the checkpoint is not signed by a pinned signing key') as unknown,
    });
  });

  // Its own timeout: it starts the core four times and the CLI once (8.1 s at load 5-6 on this
  // 2-core machine, past 20 s under load in earlier sessions), honest work, not a wait.
  it('reset-checkpoint after a deliberate restore records the rollback in the log and lets it start', { timeout: 60_000 }, async () => {
    const w = await world();
    await run(w, 2);
    const db = join(w.dataDir, 'countersign.db');
    copyFileSync(db, `${db}.old`);
    await run(w, 2);
    copyFileSync(`${db}.old`, db);
    for (const ext of ['-wal', '-shm']) rmSync(`${db}${ext}`, { force: true });
    await expect(start(w)).rejects.toMatchObject({ code: 'audit_rollback' });
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [compiledCli(), 'audit', 'reset-checkpoint', '--data-dir', w.dataDir], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ reset: true, previous: expect.stringContaining('audit_rollback') as unknown });
    const app = await start(w);
    const kinds = app.audit.entries(1, 10_000).map((e) => e.kind);
    await app.close();
    expect(kinds).toContain('audit.checkpoint_reset');
  });
});

describe('audit log: fail closed', () => {
  it('a full disk during append refuses the call, issues no token and leaves nothing half-written; room again, it works', async () => {
    const w = await world();
    const app: RunningCountersign = await start(w);
    try {
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      expect((await client.submit(transferCall('100.00'))).decision).toBe('allow');
      const counts = () =>
        app.db
          .prepare<[], { r: number; t: number; a: number }>(
            "SELECT (SELECT COUNT(*) FROM requests) AS r, (SELECT COUNT(*) FROM tokens) AS t, (SELECT COUNT(*) FROM audit_log WHERE kind LIKE 'decision.%') AS a",
          )
          .get()!;
      const before = counts();
      // A size-limited database: no page can be added.
      const pages = app.db.pragma('page_count', { simple: true }) as number;
      app.db.pragma(`max_page_count = ${pages}`);
      let refused: unknown;
      for (let i = 0; i < 50 && refused === undefined; i++) {
        try {
          await client.submit({
            ...transferCall(`${300 + i}.00`),
            params: { amount: `${300 + i}.00`, currency: 'USD', payee: 'Acme Ltd', memo: 'x'.repeat(2000) },
          });
        } catch (error) {
          refused = error;
        }
      }
      expect(refused).toMatchObject({ code: expect.stringMatching(/^(store_failed|audit_write_failed)$/) as unknown });
      const during = counts();
      expect(during.r - before.r).toBe(during.a - before.a); // every stored decision has its audit entry
      expect(during.t - before.t).toBeLessThanOrEqual(during.r - before.r);
      app.db.pragma('max_page_count = 1073741823');
      expect((await client.submit(transferCall('101.00'))).decision).toBe('allow');
      client.close();
      expect(app.audit.verify()).toMatchObject({ ok: true });
    } finally {
      await app.close();
    }
    expect(existsSync(join(w.dataDir, CHECKPOINT_FILE))).toBe(true);
  });
});

describe('audit log: a crash between decision and audit write', () => {
  it('SIGKILL inside the decision transaction: after restart the database is intact, every request has one state, no token lacks its audit record', async () => {
    const { spawn } = await import('node:child_process');
    const { REPO_ROOT } = await import('../../main/core/app.js');
    const w = await world();
    await run(w, 3);
    // Plain node on the compiled script, not the tsx CLI (which would run the script in a grandchild).
    const child = spawn(process.execPath, [compiledScript('test/helpers/crash-child.ts'), w.dataDir, '4'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /ready (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', () => reject(new Error('the child exited before it was ready')));
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const client = new AgentClient({
      url,
      agentId: 'ap-agent',
      key: w.key,
      webSocket: nodeWebSocket,
      reconnect: false,
      requestTimeoutMs: 5_000,
    });
    await client.connect();
    const answered: string[] = [];
    for (let i = 0; i < 6; i++) {
      try {
        answered.push((await client.submit(transferCall(`${500 + i}.00`))).requestId);
      } catch {
        break; // the server died mid-decision
      }
    }
    client.close();
    expect(await exited).toBe('SIGKILL');
    expect(answered).toHaveLength(3); // the 4th decision never committed, so it was never answered

    const app = await start(w);
    try {
      expect(app.db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(app.audit.verify()).toMatchObject({ ok: true });
      const states = app.db.prepare<[], { state: string; n: number }>('SELECT state, COUNT(*) AS n FROM requests GROUP BY state').all();
      expect(states.every((s) => ['allowed', 'denied', 'pending', 'approved', 'expired'].includes(s.state))).toBe(true);
      const requests = app.db
        .prepare<[], { id: string }>('SELECT id FROM requests')
        .all()
        .map((r) => r.id);
      for (const id of answered) expect(requests).toContain(id);
      // Every request has exactly one decision entry in the log, and every token its audit record.
      for (const id of requests)
        expect(
          app.audit
            .entriesFor(id)
            .filter((e) => e.kind === 'decision.allow' || e.kind === 'decision.deny' || e.kind === 'decision.pending'),
          id,
        ).toHaveLength(1);
      for (const { jti, request_id } of app.db
        .prepare<[], { jti: string; request_id: string }>('SELECT jti, request_id FROM tokens')
        .all()) {
        expect(
          app.audit.entriesFor(request_id).some((e) => e.record.includes(`"jti":"${jti}"`)),
          jti,
        ).toBe(true);
      }
      expect(requests).toHaveLength(3 + 3);
    } finally {
      await app.close();
    }
  }, 60_000);
});

describe('audit proofs', () => {
  it('an agent host gets the inclusion proof of its own decision, and it verifies; another agent gets nothing', async () => {
    const { createHash } = await import('node:crypto');
    const { MerkleHasher, verifyInclusion, verifyConsistency } = await import('../../shared/merkle.js');
    const { fromBase64 } = await import('../../shared/checkpoint-note.js');
    const H = new MerkleHasher((d) => new Uint8Array(createHash('sha256').update(d).digest()));
    const w = await world();
    const app = await start(w);
    try {
      const other = await importAgentKey(await generateAgentKey('EdDSA'));
      ensurePeople(app, 'sam@example.com');
      app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(other, 'other-agent', 'other-agent')), {
        owner: 'sam@example.com',
        group: 'finance-agents',
        allowedTools: ['payments.transfer'],
        dataClasses: ['financial'],
        jurisdictions: ['US'],
      });
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      const decided = await client.submit(transferCall('48000.00', 'Northwind Traders'));
      const proof = await client.auditProof(decided.requestId);
      const checkpoint = verifyCheckpointNote(proof.checkpoint, ORIGIN, [app.signer.publicJwk]);
      expect(checkpoint.size).toBe(proof.treeSize);
      expect(proof.entries).toHaveLength(1);
      for (const e of proof.entries) {
        expect(JSON.parse(e.record)).toMatchObject({ requestId: decided.requestId, kind: 'decision.pending', seq: e.seq });
        const leaf = H.leaf(new Uint8Array(Buffer.from(e.record, 'utf8')));
        expect(Buffer.from(leaf).toString('base64')).toBe(e.leafHash);
        expect(verifyInclusion(H, e.seq - 1, proof.treeSize, leaf, e.proof.map(fromBase64), fromBase64(checkpoint.rootHash))).toBe(true);
      }
      const intruder = new AgentClient({ url: app.url, agentId: 'other-agent', key: other, webSocket: nodeWebSocket, reconnect: false });
      await intruder.connect();
      await expect(intruder.auditProof(decided.requestId)).rejects.toMatchObject({ code: 'audit_proof_unavailable' });
      await expect(client.auditProof('req_doesnotexist')).rejects.toMatchObject({ code: 'audit_proof_unavailable' });
      intruder.close();
      client.close();

      // The local API: checkpoint, inclusion and consistency proofs (bearer secret required).
      const get = async (path: string, secret: string | null = app.uiSessionSecret) => {
        const res = await fetch(`http://127.0.0.1:${app.port}${path}`, {
          headers: secret === null ? {} : { authorization: `Bearer ${secret}` },
        });
        return { status: res.status, json: (await res.json()) as Record<string, unknown> };
      };
      expect((await get('/api/audit/checkpoint', null)).status).toBe(401);
      const latest = await get('/api/audit/checkpoint');
      expect(latest.status).toBe(200);
      const size = latest.json.treeSize as number;
      const inclusion = await get('/api/audit/inclusion?seq=1');
      expect(inclusion.status).toBe(200);
      const inc = inclusion.json as { treeSize: number; leafHash: string; proof: string[]; root: string };
      expect(verifyInclusion(H, 0, inc.treeSize, fromBase64(inc.leafHash), inc.proof.map(fromBase64), fromBase64(inc.root))).toBe(true);
      const consistency = (await get(`/api/audit/consistency?from=1&to=${size}`)).json as {
        proof: string[];
        fromRoot: string;
        toRoot: string;
      };
      expect(
        verifyConsistency(H, 1, size, consistency.proof.map(fromBase64), fromBase64(consistency.fromRoot), fromBase64(consistency.toRoot)),
      ).toBe(true);
      expect(await get(`/api/audit/consistency?from=${size}&to=1`)).toMatchObject({
        status: 404,
        json: { error: { code: 'audit_proof_unavailable' } },
      });
      expect(await get('/api/audit/inclusion?seq=abc')).toMatchObject({ status: 400, json: { error: { code: 'schema_invalid' } } });
      expect(await get(`/api/audit/inclusion?seq=${size + 100}`)).toMatchObject({ status: 404 });
    } finally {
      await app.close();
    }
  });
});

describe('audit log: sensitive parameters', () => {
  it('keeps only the digest and a redacted view for configured data classes; the digest still proves the call', async () => {
    const { callDigest } = await import('../../main/core/tokens/call-digest.js');
    const plain = await world();
    const redacted = await world({ audit: { redactDataClasses: ['financial'] } });
    const call = {
      ...transferCall('250.00', 'Acme Ltd'),
      params: { amount: '250.00', currency: 'USD', payee: 'Acme Ltd', memo: 'patient 4711 invoice' },
    };
    const decisionRecord = async (w: World) => {
      const app = await start(w);
      try {
        const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key: w.key, webSocket: nodeWebSocket, reconnect: false });
        await client.connect();
        const { requestId } = await client.submit(call);
        client.close();
        return app.audit.entriesFor(requestId)[0]!.record;
      } finally {
        await app.close();
      }
    };
    const kept = JSON.parse(await decisionRecord(plain)) as Record<string, unknown>;
    expect(kept.params).toEqual(call.params);
    const text = await decisionRecord(redacted);
    const record = JSON.parse(text) as Record<string, unknown>;
    expect(record.params).toBeUndefined();
    expect(record.paramsRedacted).toEqual({
      amount: '[redacted string]',
      currency: '[redacted string]',
      payee: '[redacted string]',
      memo: '[redacted string]',
    });
    expect(text).not.toContain('patient 4711');
    expect(text).not.toContain('Acme Ltd');
    expect(record.callSha256).toBe(callDigest(call.tool, call.params));
  });
});

describe('audit log: malformed exports and unwritable copies', () => {
  it('the offline verifier refuses malformed exports with a reason and the line', async () => {
    const w = await world();
    await run(w, 2);
    const { file } = await exportAndVerify(w);
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
    const header = lines[0]!;
    const checkpoints = lines.filter((l) => l.includes('"type":"checkpoint"'));
    const entries = lines.filter((l) => l.startsWith('{"type":"entry"'));
    const check = async (content: string) => {
      writeFileSync(file, content);
      return verifyExport(file, keysOf(w));
    };
    expect(await check('')).toMatchObject({ ok: false, reason: 'the export is empty' });
    expect(await check(`${entries[0]!}\n`)).toMatchObject({
      ok: false,
      line: 1,
      reason: expect.stringContaining('does not start with a countersign-audit-export/v1 header') as unknown,
    });
    expect(await check(`${header}\nnot json\n`)).toMatchObject({
      ok: false,
      line: 2,
      reason: expect.stringContaining('the line is not valid strict JSON') as unknown,
    });
    // A member the reader cannot hold faithfully, or a second copy of a member, is refused rather
    // than letting the verifier read a value other than the file holds.
    expect(
      await check(`${header}\n${checkpoints[0]!.replace('{"type":"checkpoint"', '{"__proto__":{"note":"x"},"type":"checkpoint"')}\n`),
    ).toMatchObject({ ok: false, line: 2, reason: expect.stringContaining('"__proto__" cannot be represented faithfully') as unknown });
    expect(
      await check(`${header}\n${checkpoints[0]!.replace('{"type":"checkpoint"', '{"type":"checkpoint","type":"checkpoint"')}\n`),
    ).toMatchObject({ ok: false, line: 2, reason: expect.stringContaining('duplicate member name "type"') as unknown });
    expect(await check(`${header}\n{"type":"surprise"}\n`)).toMatchObject({ ok: false, line: 2, reason: 'unknown line type "surprise"' });
    expect(await check(`${header}\n${entries[0]!}\n`)).toMatchObject({
      ok: false,
      line: 2,
      reason: expect.stringContaining('no signed checkpoint') as unknown,
    });
    expect(await check(`${header.replace('"selection":{"kind":"all"}', '"selection":{"kind":"odd"}')}\n`)).toMatchObject({
      ok: false,
      reason: 'the export header has no valid selection',
    });
    expect(await check(`${header.replace(ORIGIN, 'countersign/other')}\n${checkpoints.join('\n')}\n`)).toMatchObject({
      ok: false,
      line: 2,
      reason: expect.stringContaining('is for the log "countersign/countersign-local", not "countersign/other"') as unknown,
    });
    expect(await check(`${header}\n${[...checkpoints].reverse().join('\n')}\n`)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('checkpoints must grow') as unknown,
    });
    expect(
      await check(`${header}\n${checkpoints.join('\n')}\n${entries[0]!.replace('"leafHash":"', '"leafHash":"x').replace(/=",/, '",')}\n`),
    ).toMatchObject({ ok: false, reason: expect.stringContaining('malformed') as unknown });
  });

  it('a mirror directory that cannot be written is reported and does not stop the log; the main file is still written', async () => {
    const w = await world();
    const notADirectory = join(w.dataDir, 'mirror-is-a-file');
    writeFileSync(notADirectory, 'x');
    writeFileSync(
      join(w.dataDir, 'config.json'),
      JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, audit: { mirrorDir: notADirectory } }),
    );
    const logs: string[] = [];
    await run(w, 2, logs);
    expect(logs.some((l) => l.startsWith(`could not write the checkpoint to ${join(notADirectory, CHECKPOINT_FILE)}`))).toBe(true);
    expect(verifyCheckpointNote(readFileSync(join(w.dataDir, CHECKPOINT_FILE), 'utf8'), ORIGIN, keysOf(w)).size).toBe(
      inspect(w, ({ audit }) => audit.size()),
    );
  });
});
