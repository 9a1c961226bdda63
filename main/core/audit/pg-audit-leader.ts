/**
 * The audit log's one writer in team mode (ADR 0012). Every hub runs one; the hub holding the
 * PostgreSQL session advisory lock AUDIT_LEADER_LOCK is the leader. The others wait inside
 * pg_advisory_lock (blocked in the server, not polling): when the leader's session ends (its
 * process died, its host was cut off and TCP keepalive gave up), PostgreSQL grants the lock to
 * the next waiter at once, which then takes over.
 *
 * The leader moves audit_submissions (written by any hub in the transaction of the state they
 * record) into audit_log in id order, giving each the next seq and its leaf hash (and storing in
 * audit_nodes, in that transaction, every subtree the new leaves complete, so any hub serves
 * inclusion proofs from O(log n) rows: pg-audit-proofs.ts), and signs
 * checkpoints (C2SP signed notes, the same as the embedded log) with its custody key. All of its
 * writes go through the very session that holds the lock: if that session is gone, so is the
 * transaction, so a deposed leader can never append (and the seq primary key refuses a second
 * writer of the same position anyway). On taking over, the new leader recomputes the tree from
 * the records and refuses to lead (audit_fork) if it does not match the last signed checkpoint.
 *
 * Only the wait for the lock has no answer timeout. Every query of a leader gives up when no
 * answer comes within the database's answer timeout (statementTimeoutMs + margin, pg-config.ts)
 * and the leader then steps down at once, without waiting for the dead connection to close: a
 * leader cut off silently (nothing reset, nothing answered) stops calling itself leader within
 * one checkpoint interval and that timeout, instead of for as long as TCP takes to notice.
 */
import pg from 'pg';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import { checkpointText, formatSignedNote, toBase64 } from '../../../shared/checkpoint-note.js';
import { CountersignError } from '../../../shared/errors.js';
import { MerkleAccumulator } from '../../../shared/merkle.js';
import { merkleHasher } from './audit-log.js';
import { signNote, verifyNoteSignature } from './note-keys.js';
import { signerForOneSignature, type Signer } from '../custody/signer.js';
import { writeFileAtomicAsync, type AtomicWriteFsAsync } from './checkpoints.js';
import type { ResolvedDatabaseConfig } from '../store/pg/pg-config.js';
import { AUDIT_CHANNEL } from '../store/pg/pg-decision-store.js';
import { isConnectionLoss, storeError } from '../store/pg/pg-errors.js';
import { PG_LOCKS } from '../store/pg/pg-locks.js';
import { parseStoredJson } from '../store/stored-json.js';

export const AUDIT_LEADER_LOCK = PG_LOCKS.auditLeader;
/** Most submissions sequenced in one transaction. */
const SEQUENCE_BATCH = 2_000;

export interface AuditLeaderOptions {
  config: ResolvedDatabaseConfig;
  hub: string;
  signer: Signer;
  /** The log's origin line (checkpoints.ts auditOrigin). */
  origin: string;
  /** Sign a checkpoint at least this often while the log grows (ms). */
  checkpointEveryMs?: number;
  /** Files the leader also writes each checkpoint to (the external copy: checkpoints.ts). */
  checkpointFiles?: readonly string[];
  /**
   * How those files' steps are performed (default: on libuv's thread pool, checkpoints.ts
   * atomicWriteFsAsync). Tests wrap it to hold a step or make one fail, which a disk cannot do on demand.
   */
  checkpointFileFs?: AtomicWriteFsAsync;
  onError?: (message: string) => void;
  /** Told when this hub becomes leader and when it stops being one. */
  onLeadership?: (leader: boolean) => void;
  now?: () => number;
}

/** The lock holder's session: each query fails when no answer comes within the timeout. */
interface LeaderSession {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

function answeringWithin(client: pg.Client, timeoutMs: number): LeaderSession {
  return {
    query<R extends pg.QueryResultRow>(text: string, values?: unknown[]) {
      // pg reads a per-query query_timeout (its types omit it); 0 would fall back to the client's (none).
      const config: pg.QueryConfig & { query_timeout: number } = { text, values, query_timeout: timeoutMs };
      return client.query<R>(config);
    },
  };
}

/** A complete subtree above the leaves (audit_nodes, PG migration 9). */
interface StoredSubtree {
  level: number;
  idx: number;
  hash: Uint8Array;
}

/** How many complete subtrees above the leaves a tree of `size` leaves has: size minus its set bits. */
export function subtreesOf(size: number): number {
  let bits = 0;
  for (let rest = size; rest > 0; rest = Math.floor(rest / 2)) bits += rest % 2;
  return size - bits;
}

/** Store subtrees, 1,000 to a statement. */
async function insertSubtrees(session: LeaderSession, nodes: readonly StoredSubtree[], onConflict: string): Promise<void> {
  for (let at = 0; at < nodes.length; at += 1_000) {
    const batch = nodes.slice(at, at + 1_000);
    await session.query(
      `INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[]) ${onConflict}`,
      [batch.map((n) => n.level), batch.map((n) => n.idx), batch.map((n) => Buffer.from(n.hash))],
    );
  }
}

export class PgAuditLeader {
  private client: pg.Client | undefined;
  private session: LeaderSession | undefined;
  /** Ends the current campaign round (the leader's query got no answer): it steps down at once. */
  private abandon: (() => void) | undefined;
  private leader = false;
  private stopped = false;
  private acc = new MerkleAccumulator(merkleHasher);
  private checkpointed = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private wakeQueued = false;
  /** Signing keys this process has recorded in audit_checkpoint_keys. */
  private readonly recordedKeys = new Set<string>();
  private readonly onError: (message: string) => void;
  private readonly now: () => number;
  /** When this hub last became leader (ms since the epoch), for failover measurements. */
  leaderSince: number | undefined;

  constructor(private readonly options: AuditLeaderOptions) {
    // eslint-disable-next-line no-console -- default sink when the caller injects none
    this.onError = options.onError ?? ((message) => console.warn(message));
    this.now = options.now ?? Date.now;
  }

  isLeader(): boolean {
    return this.leader;
  }

  /** Start campaigning: resolves at once; this hub leads when the lock is granted. */
  start(): void {
    void this.campaign();
  }

  private async campaign(): Promise<void> {
    while (!this.stopped) {
      // pg_advisory_lock waits for as long as another hub leads: no statement or answer timeout.
      const client = new pg.Client({ ...this.options.config.pool, statement_timeout: 0, query_timeout: 0 });
      const lost = new Promise<void>((resolve) => {
        this.abandon = resolve;
        client.on('error', (error) => {
          this.onError(`the audit leader connection failed: ${error.message}`);
          resolve();
        });
        client.on('end', () => resolve());
      });
      try {
        await client.connect();
        this.client = client;
        // Blocks in the server until the lock is free: the current leader's session ended.
        await client.query('SELECT pg_advisory_lock($1)', [AUDIT_LEADER_LOCK]);
        if (this.stopped) break;
        this.session = answeringWithin(client, this.options.config.pool.query_timeout ?? 0);
        await this.takeOver(this.session, client);
        await lost;
      } catch (error) {
        if (!this.stopped) this.onError(`the audit leader lost the database: ${error instanceof Error ? error.message : String(error)}`);
      }
      this.depose(client);
      if (!this.stopped) await new Promise((r) => setTimeout(r, 250));
    }
  }

  private depose(client: pg.Client): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const was = this.leader;
    this.leader = false;
    if (this.client === client) {
      this.client = undefined;
      this.session = undefined;
      this.abandon = undefined;
    }
    client.end().catch(() => undefined);
    if (was) this.options.onLeadership?.(false);
  }

  /** Rebuild the tree from the stored records, check it against the last checkpoint, then lead. */
  private async takeOver(session: LeaderSession, client: pg.Client): Promise<void> {
    const acc = new MerkleAccumulator(merkleHasher);
    const latest = await session.query<{ tree_size: string; root_hash: Buffer }>(
      'SELECT tree_size, root_hash FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1',
    );
    const cpSize = latest.rows[0] ? Number(latest.rows[0].tree_size) : 0;
    // A log sequenced before PG migration 9 (or by a hub of an older version) lacks the subtree
    // hashes proofs are read from: they are stored as the tree is rebuilt (existing rows kept).
    const stored = await session.query<{ nodes: string; leaves: string }>(
      'SELECT (SELECT count(*) FROM audit_nodes) AS nodes, (SELECT count(*) FROM audit_log) AS leaves',
    );
    const backfill = Number(stored.rows[0]!.nodes) !== subtreesOf(Number(stored.rows[0]!.leaves));
    let from = 0;
    for (;;) {
      const { rows } = await session.query<{ seq: string; record: string; leaf: Buffer }>(
        'SELECT seq, record, leaf FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 10000',
        [from],
      );
      if (rows.length === 0) break;
      const nodes: StoredSubtree[] = [];
      for (const row of rows) {
        const seq = Number(row.seq);
        if (seq !== acc.size + 1) throw new CountersignError('audit_corrupt', `the audit log is missing entry ${acc.size + 1}`);
        const leaf = merkleHasher.leaf(Buffer.from(row.record, 'utf8'));
        if (!row.leaf.equals(leaf)) throw new CountersignError('audit_corrupt', `entry ${seq} does not match its stored leaf hash`);
        acc.pushLeafHash(leaf, backfill ? (level, idx, hash) => nodes.push({ level, idx, hash }) : undefined);
        if (acc.size === cpSize && !Buffer.from(acc.root()).equals(latest.rows[0]!.root_hash))
          throw new CountersignError('audit_fork', `the audit log does not match its signed checkpoint of ${cpSize} entries`);
        from = seq;
      }
      await insertSubtrees(session, nodes, 'ON CONFLICT DO NOTHING');
    }
    if (acc.size < cpSize)
      throw new CountersignError('audit_rollback', `the audit log has ${acc.size} entries but its last checkpoint covers ${cpSize}`);
    this.acc = acc;
    this.checkpointed = cpSize;
    // Recorded now, not only at its next checkpoint: a team upgraded to PG migration 9 (an empty
    // key table) and idle would otherwise show every History proof as signed by no known key. A
    // checkpoint an earlier leader signed with another key that was never recorded (per-hub
    // software keys before migration 9) stays unverifiable until the next checkpoint is signed.
    await this.recordKey(session, await signerForOneSignature(this.options.signer), this.now());
    await session.query(`LISTEN ${AUDIT_CHANNEL}`);
    client.on('notification', (message) => {
      if (message.channel === AUDIT_CHANNEL) this.wake();
    });
    this.leader = true;
    this.leaderSince = this.now();
    this.options.onLeadership?.(true);
    const every = Math.max(50, this.options.checkpointEveryMs ?? 1_000);
    this.timer = setInterval(() => void this.tick(true), every);
    this.timer.unref();
    // Whatever was submitted while nobody led is sequenced and checkpointed now.
    await this.tick(true);
  }

  /** Coalesce notifications: one sequencing pass for however many arrived meanwhile. */
  private wake(): void {
    if (this.wakeQueued) return;
    this.wakeQueued = true;
    void this.tick(false);
  }

  /** Sequence what was submitted, and sign a checkpoint if asked. Serialized. */
  tick(checkpoint: boolean): Promise<void> {
    const run = this.chain.then(async () => {
      this.wakeQueued = false;
      const session = this.session;
      if (!this.leader || !session) return;
      try {
        while ((await this.sequence(session)) === SEQUENCE_BATCH);
        if (checkpoint) await this.checkpoint(session);
      } catch (error) {
        this.onError(`the audit leader could not write: ${storeError(error, 'sequencing the audit log').message}`);
        // The in-memory tree may be ahead of a rolled-back transaction, or the connection stopped
        // answering: step down now (the campaign ends the session) and rebuild before leading on.
        if (this.session === session) this.abandon?.();
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async sequence(client: LeaderSession): Promise<number> {
    await client.query('BEGIN');
    try {
      const { rows } = await client.query<{ id: string; at: string; kind: string; fields: string; request_id: string | null }>(
        'SELECT id, at, kind, fields, request_id FROM audit_submissions ORDER BY id LIMIT $1',
        [SEQUENCE_BATCH],
      );
      if (rows.length === 0) {
        await client.query('COMMIT');
        return 0;
      }
      // The tree grows on a copy, kept only once its leaves and subtrees are committed.
      const tree = this.acc.clone();
      const nodes: StoredSubtree[] = [];
      const values: unknown[] = [];
      const tuples: string[] = [];
      rows.forEach((row, i) => {
        const seq = this.acc.size + 1 + i;
        const at = Number(row.at);
        const record = canonicalize({ ...(parseStoredJson(row.fields) as JsonObject), kind: row.kind, at, seq });
        const leaf = merkleHasher.leaf(Buffer.from(record, 'utf8'));
        tree.pushLeafHash(leaf, (level, idx, hash) => nodes.push({ level, idx, hash }));
        const p = values.length;
        tuples.push(`($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6}, $${p + 7})`);
        values.push(seq, at, row.kind, record, row.request_id, Buffer.from(leaf), this.options.hub);
      });
      await client.query(
        `INSERT INTO audit_log (seq, at, kind, record, request_id, leaf, sequenced_by) VALUES ${tuples.join(', ')}`,
        values,
      );
      await insertSubtrees(client, nodes, '');
      await client.query('DELETE FROM audit_submissions WHERE id = ANY($1::bigint[])', [rows.map((r) => r.id)]);
      await client.query('COMMIT');
      this.acc = tree;
      return rows.length;
    } catch (error) {
      // A connection that stopped answering would only time out again; its session ends with it.
      if (!isConnectionLoss(error)) await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  /** Record the key this leader signs with, once: any hub's desk checks team checkpoints against these (pg-audit-proofs.ts). */
  private async recordKey(client: LeaderSession, signer: { keyId: string; publicJwk: unknown }, at: number): Promise<void> {
    if (this.recordedKeys.has(signer.keyId)) return;
    await client.query(
      'INSERT INTO audit_checkpoint_keys (kid, public_jwk, hub, first_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING',
      [signer.keyId, JSON.stringify(signer.publicJwk), this.options.hub, at],
    );
    this.recordedKeys.add(signer.keyId);
  }

  private async checkpoint(client: LeaderSession): Promise<void> {
    const size = this.acc.size;
    if (size <= this.checkpointed) return;
    const signer = await signerForOneSignature(this.options.signer);
    const root = this.acc.root();
    const at = this.now();
    const { origin } = this.options;
    const text = checkpointText({ origin, size, rootHash: toBase64(root), time: at });
    const signature = await signNote(signer, origin, text);
    if (!verifyNoteSignature(signer.publicJwk, origin, text, signature))
      throw new CountersignError('signer_failed', 'the checkpoint signature did not verify with the signing key');
    const note = formatSignedNote(text, [signature]);
    await this.recordKey(client, signer, at);
    await client.query('INSERT INTO audit_checkpoints (tree_size, root_hash, at, note, signed_by_hub) VALUES ($1, $2, $3, $4, $5)', [
      size,
      Buffer.from(root),
      at,
      note,
      this.options.hub,
    ]);
    this.checkpointed = size;
    // The embedded checkpointer's atomic write, with its writes and fsyncs on the thread pool: the
    // leader's connection, its notifications and the hub's decisions keep the event loop while the
    // disk flushes. Awaited within the serialized tick, so two copies are never written at once
    // (the temporary file's name is per process) and a file never goes back to an older note.
    for (const file of this.options.checkpointFiles ?? []) {
      try {
        await writeFileAtomicAsync(file, note, this.options.checkpointFileFs);
      } catch (error) {
        this.onError(`could not write the checkpoint to ${file}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  /** Sequence and checkpoint what is left (if leading), then release the lock. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    if (this.leader) await this.tick(true).catch(() => undefined);
    this.stopped = true;
    const client = this.client;
    if (client) this.depose(client);
  }
}
