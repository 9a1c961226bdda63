/**
 * Group commit: decisions that arrive in the same event-loop turn share one durable COMMIT
 * (one WAL fsync) instead of paying one each. Each unit of work runs in its own SAVEPOINT, so a
 * unit that throws is rolled back alone and the others still commit. Nobody is answered before
 * the COMMIT that holds their rows is durable: a result is only ever released once it is on
 * stable storage. If the COMMIT or its sync fails, every unit in it fails.
 *
 * Where the fsync runs (ADR 0003): with synchronous=FULL, SQLite fsyncs the WAL inside COMMIT,
 * on the event loop, and every connection and agent waits for the disk (milliseconds on a busy
 * machine, for every group). On a WAL file database the group's transaction therefore commits
 * with synchronous=NORMAL (SQLite writes the WAL frames but does not fsync them) and the
 * committer then fdatasyncs the WAL file on libuv's thread pool; the units settle only when
 * that sync has returned. An acknowledged unit is exactly as durable as under FULL (its commit
 * frame is on disk before its promise settles), while the event loop decides the next group
 * during the sync, and one sync covers every group committed before it started. The connection
 * is put back to FULL right after the COMMIT, so every other writer keeps its durable COMMIT.
 * A failed sync fails its groups and every later one (store_failed): after a failed fsync the
 * kernel may have dropped the pages, so nothing more is acknowledged until a restart.
 *
 * A group does not wait for a sync that started before its COMMIT (issue #12): a sync can only
 * cover frames written before it began, so a lone decision committed while another group's sync
 * runs used to wait for that sync to return and then for a whole sync of its own (two disk
 * flushes, ~2x the fdatasync time at 250 decisions/s). Up to `maxSyncsInFlight` syncs now run at
 * once: each committed group starts its own sync at once while a slot is free (later groups
 * coalesce into the next one when none is), and a returning sync settles every group committed
 * before it started, in commit order, whichever sync returns first.
 *
 * Each slot syncs through a descriptor of its own, opened at its first sync and kept until
 * close(): one thread-pool round trip per sync instead of three (open, fdatasync, close). One
 * descriptor per slot, never shared by two syncs at once, is what makes concurrent syncs safe:
 * Linux reports a writeback error once per open file description (errseq), to the first fsync
 * that checks after it, so two syncs through one descriptor could see one report the error and
 * the other succeed for the same pages; with a descriptor each, each slot's next sync reports
 * it. The descriptors stay the WAL's: SQLite unlinks the WAL file only when the last connection
 * to the database closes (or it leaves WAL mode, which needs every other connection gone), and
 * this committer's connection is open while it syncs; a checkpoint rewinds or truncates the
 * same file.
 *
 * A lone group (issue #12 open loop, #14): one unit, nothing queued behind it, no earlier group
 * waiting and no sync running, is synced in the event loop's own thread (fdatasync through a
 * descriptor of its own, held like the slots'), then settled in the same turn. The thread pool's
 * round trip costs such a call two thread wake-ups (the pool's thread, then the event loop's),
 * each a wait for a CPU on a loaded machine, and there is no next group whose work the sync could
 * overlap: no decision is waiting to commit. A frame that arrives during that sync is read after
 * it, as it is read after any other turn. As soon as a second unit, a queued one or a running
 * sync exists, groups go to the thread pool exactly as above. The same fail-stop rule holds: a
 * failed inline sync fails its group and every later one.
 */
import { close, closeSync, fdatasync, fdatasyncSync, open, openSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type Database from 'better-sqlite3';
import type { Db } from './database.js';
import { CountersignError } from '../../../shared/errors.js';

interface Unit {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Makes everything written to a file so far durable (fdatasync), off the event loop. */
export type FileSync = (path: string) => Promise<void>;

export interface GroupCommitOptions {
  /** Most units in one transaction (bounds the latency one COMMIT adds). */
  maxBatch?: number;
  /**
   * How the WAL file is made durable after a group's COMMIT (default: open, fdatasync and close
   * it on libuv's thread pool). Tests replace it only to hold a sync back or make it fail, which
   * a real disk cannot be made to do on demand.
   */
  syncFile?: FileSync;
  /**
   * Syncs of the WAL allowed to run at once (default 2; each holds a libuv thread-pool thread
   * while the disk flushes, and the pool's 4 threads also serve other file and crypto work).
   * 1: a group committed during a sync waits for it, then shares the next one.
   */
  maxSyncsInFlight?: number;
  /**
   * A group alone — one unit, nothing queued behind it, no group waiting for a sync and no sync
   * running — is synced in the event loop's own thread (default true; only with the default sync,
   * never with `syncFile`). See "A lone group" in the file comment.
   */
  syncLoneGroupInline?: boolean;
  /**
   * Per group (benchmarks, `--stage-timings`): `commit`, the event loop's time in the group's
   * transaction (every unit's savepoint and the COMMIT, with any WAL checkpoint SQLite runs in
   * it); `sync`, from that COMMIT to the group's release (the wait for a sync covering it).
   */
  onTiming?: (phase: 'commit' | 'sync', ms: number) => void;
}

/** fdatasync(2) of `path` through a descriptor of its own (Linux flushes the file's pages whoever wrote them). */
export const fdatasyncFile: FileSync = (path) =>
  new Promise<void>((resolve, reject) => {
    open(path, 'r', (openError, fd) => {
      if (openError) return reject(openError);
      fdatasync(fd, (syncError) => {
        close(fd, (closeError) => {
          const error = syncError ?? closeError;
          if (error) reject(error);
          else resolve();
        });
      });
    });
  });

/** fdatasync(2) through a descriptor of `path` opened once (see the file comment); close() releases it. */
export class HeldFileSync {
  private fd: Promise<number> | undefined;
  private path: string | undefined;

  readonly sync: FileSync = (path) => {
    if (this.path !== undefined && this.path !== path) return Promise.reject(new Error(`HeldFileSync holds ${this.path}, not ${path}`));
    this.path = path;
    this.fd ??= new Promise<number>((resolve, reject) => open(path, 'r', (error, fd) => (error ? reject(error) : resolve(fd))));
    const opened = this.fd;
    // A failed open is not kept: the next sync (after a restart the failure forces) opens again.
    opened.catch(() => {
      if (this.fd === opened) this.fd = undefined;
    });
    return opened.then((fd) => new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve()))));
  };

  /** Closes the descriptor (after any sync in flight: callers stop syncing first). */
  async close(): Promise<void> {
    const opened = this.fd;
    this.fd = undefined;
    if (opened === undefined) return;
    const fd = await opened.catch(() => undefined);
    if (fd !== undefined) await new Promise<void>((resolve) => close(fd, () => resolve()));
  }
}

export class GroupCommitter {
  private queue: Unit[] = [];
  private scheduled = false;
  private readonly maxBatch: number;
  /** Runs one unit; called inside the group transaction it becomes a SAVEPOINT. */
  private readonly inSavepoint: (work: () => unknown) => unknown;
  /** The group: every unit of a batch, each in its savepoint, then one COMMIT. */
  private readonly group: Database.Transaction<(batch: Unit[], outcomes: Outcome[]) => void>;
  /** The WAL file synced after each group, or undefined: the COMMIT itself syncs (FULL). */
  private readonly walFile: string | undefined;
  private readonly commitWithoutSync: Database.Statement | undefined;
  private readonly commitWithSync: Database.Statement | undefined;
  /** Groups committed and not yet settled, in commit order (each numbered by `seq`). */
  private unsettled: Committed[] = [];
  /** The number of the last group committed (groups are numbered from 1 in commit order). */
  private committedSeq = 0;
  /** Every group numbered up to this one is covered by a sync that has started. */
  private startedCoverSeq = 0;
  /** Every group numbered up to this one is on stable storage. */
  private durableSeq = 0;
  /** One per sync allowed at once: the sync function (its own descriptor) and whether it runs. */
  private readonly slots: Array<{ sync: FileSync; held?: HeldFileSync; busy: boolean }>;
  private failedWith: { error: CountersignError } | undefined;
  private readonly onTiming: GroupCommitOptions['onTiming'];
  /** Sync lone groups in this thread (see the file comment); false with an injected `syncFile`. */
  syncLoneGroupInline: boolean;
  /** The descriptor lone groups sync through (opened at the first, closed by close()). */
  private inlineFd: number | undefined;

  constructor(
    private readonly db: Db,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256);
    this.onTiming = options.onTiming;
    this.syncLoneGroupInline = options.syncFile === undefined && (options.syncLoneGroupInline ?? true);
    const slots = Math.max(1, Math.floor(options.maxSyncsInFlight ?? 2));
    this.slots = Array.from({ length: slots }, () => {
      if (options.syncFile !== undefined) return { sync: options.syncFile, busy: false };
      const held = new HeldFileSync();
      return { sync: held.sync, held, busy: false };
    });
    this.inSavepoint = db.transaction((work: () => unknown) => work());
    this.group = db.transaction((batch: Unit[], outcomes: Outcome[]) => {
      for (const unit of batch) {
        try {
          outcomes.push({ ok: true, value: this.inSavepoint(unit.work) });
        } catch (error) {
          outcomes.push({ ok: false, error });
        }
      }
    });
    // Only a WAL file whose connection syncs every COMMIT (FULL or EXTRA) moves its sync here;
    // anything else (in memory, another journal mode, a weaker setting) is left exactly as it is.
    const walOnFile = !db.memory && String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
    const synchronous = Number(db.pragma('synchronous', { simple: true }));
    if (walOnFile && synchronous === 2) {
      this.walFile = `${resolvePath(db.name)}-wal`;
      this.commitWithoutSync = db.prepare('PRAGMA synchronous = NORMAL');
      this.commitWithSync = db.prepare('PRAGMA synchronous = FULL');
    }
  }

  /** Run `work` inside the next group transaction; resolves after that transaction is durable. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Resolves once every group committed so far is on stable storage: at once when none is
   * waiting for a sync, else when a sync that covers the latest committed group returns. A reader
   * that acts outward on rows it read (a webhook POST) waits for this first, so nothing leaves
   * the process that a power loss could still take back. Rejects as the covering sync does.
   */
  durable(): Promise<void> {
    if (this.failedWith !== undefined) return Promise.reject(this.failedWith.error);
    if (this.durableSeq >= this.committedSeq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      // A barrier numbered as the latest group: settled with it (a sync covering it has started or will).
      this.unsettled.push({
        seq: this.committedSeq,
        batch: [{ work: () => undefined, resolve: () => resolve(), reject }],
        outcomes: [{ ok: true, value: undefined }],
      });
    });
  }

  /**
   * Waits for the syncs in flight (if any) and releases the WAL descriptors. Call it when no more
   * groups will be run, before the database closes.
   */
  async close(): Promise<void> {
    await this.durable().catch(() => undefined);
    while (this.slots.some((slot) => slot.busy)) await new Promise((r) => setImmediate(r));
    for (const slot of this.slots) await slot.held?.close();
    if (this.inlineFd !== undefined) {
      const fd = this.inlineFd;
      this.inlineFd = undefined;
      try {
        closeSync(fd);
      } catch {
        // nothing is left to sync through it
      }
    }
  }

  private flush(): void {
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) setImmediate(() => this.flush());
    else this.scheduled = false;
    if (this.failedWith !== undefined) {
      for (const unit of batch) unit.reject(this.failedWith.error);
      return;
    }
    const outcomes: Outcome[] = [];
    const deferSync = this.walFile !== undefined;
    const began = this.onTiming === undefined ? 0 : performance.now();
    try {
      if (deferSync) this.commitWithoutSync!.run();
      try {
        this.group.immediate(batch, outcomes);
      } finally {
        if (deferSync) this.commitWithSync!.run();
      }
    } catch (error) {
      for (const unit of batch) unit.reject(error);
      return;
    }
    const committed: Committed = { seq: ++this.committedSeq, batch, outcomes };
    if (this.onTiming !== undefined) {
      const at = performance.now();
      this.onTiming('commit', at - began);
      committed.committedAt = at;
    }
    if (!deferSync) {
      this.durableSeq = committed.seq;
      return settle(committed);
    }
    if (
      this.syncLoneGroupInline &&
      batch.length === 1 &&
      this.queue.length === 0 &&
      this.unsettled.length === 0 &&
      !this.slots.some((slot) => slot.busy)
    ) {
      try {
        this.inlineFd ??= openSync(this.walFile, 'r');
        fdatasyncSync(this.inlineFd);
      } catch (cause) {
        const error = syncFailed(cause);
        this.failedWith = { error };
        for (const unit of batch) unit.reject(error);
        return;
      }
      this.durableSeq = committed.seq;
      this.startedCoverSeq = Math.max(this.startedCoverSeq, committed.seq);
      if (committed.committedAt !== undefined) this.onTiming?.('sync', performance.now() - committed.committedAt);
      return settle(committed);
    }
    this.unsettled.push(committed);
    this.startSync();
  }

  /**
   * Starts a sync covering every group committed so far, if one is not yet covered by a started
   * sync and a slot is free; otherwise the groups wait for a slot (the next sync covers them all).
   */
  private startSync(): void {
    if (this.failedWith !== undefined || this.startedCoverSeq >= this.committedSeq) return;
    const slot = this.slots.find((s) => !s.busy);
    if (slot === undefined) return;
    const covers = this.committedSeq;
    this.startedCoverSeq = covers;
    slot.busy = true;
    slot.sync(this.walFile!).then(
      () => {
        slot.busy = false;
        if (this.failedWith !== undefined) return;
        if (covers > this.durableSeq) this.durableSeq = covers;
        // Every group committed before this sync began, in commit order (an earlier sync may still run).
        let settled = 0;
        while (settled < this.unsettled.length && this.unsettled[settled]!.seq <= this.durableSeq) settled++;
        const now = this.onTiming === undefined ? 0 : performance.now();
        for (const group of this.unsettled.splice(0, settled)) {
          if (group.committedAt !== undefined) this.onTiming?.('sync', now - group.committedAt);
          settle(group);
        }
        this.startSync();
      },
      (cause: unknown) => {
        slot.busy = false;
        if (this.failedWith !== undefined) return;
        const error = syncFailed(cause);
        this.failedWith = { error };
        // Nothing not yet settled is released, whatever a sync still running answers.
        for (const group of this.unsettled.splice(0)) for (const unit of group.batch) unit.reject(error);
      },
    );
  }
}

function syncFailed(cause: unknown): CountersignError {
  return new CountersignError(
    'store_failed',
    'the database could not make its write-ahead log durable, so nothing more is issued until countersign restarts',
    { cause },
  );
}

/** A committed group waiting for its sync: each unit's outcome, released together. */
interface Committed {
  /** Commit order (barriers from durable() carry the number of the latest group). */
  seq: number;
  /** When its COMMIT returned (performance.now), when timings are taken. */
  committedAt?: number;
  batch: Unit[];
  outcomes: Outcome[];
}

function settle({ batch, outcomes }: Committed): void {
  batch.forEach((unit, i) => {
    const outcome = outcomes[i]!;
    if (outcome.ok) unit.resolve(outcome.value);
    else unit.reject(outcome.error);
  });
}
