/**
 * One running Countersign per data directory. A server holds an exclusive SQLite lock on a
 * dedicated lock database (`countersign.lock`) for its whole life: a `BEGIN EXCLUSIVE` that is
 * never committed. The lock is an OS file lock (fcntl), so the kernel drops it when the process
 * dies, however it dies — a SIGKILLed server never leaves a stale lock behind. Who holds it is
 * written beside it (`countersign.lock.json`: pid, command, since) so a refused start can name
 * the holder; that file is only ever read after the lock itself said "taken".
 *
 * Node has no flock; SQLite's own locking is the portable OS lock already in the process, and it
 * also excludes a second holder inside the same process (SQLite tracks locks per inode).
 */
import Database from 'better-sqlite3';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStoredJson } from './stored-json.js';

export const LOCK_FILE = 'countersign.lock';
export const LOCK_HOLDER_FILE = 'countersign.lock.json';

export interface DataDirHolder {
  pid: number;
  /** What is running, e.g. `countersign start`. */
  command: string;
  /** When it took the lock (ms since the epoch). */
  since: number;
  host: string;
}

export interface DataDirLock {
  readonly holder: DataDirHolder;
  release(): void;
}

/** Take the data directory's lock for this process, or throw `data_dir_locked` naming the holder. */
export function lockDataDir(dataDir: string, command: string, now = Date.now()): DataDirLock {
  const lockPath = join(dataDir, LOCK_FILE);
  const holderPath = join(dataDir, LOCK_HOLDER_FILE);
  let db: Database.Database;
  try {
    db = new Database(lockPath);
  } catch (cause) {
    throw new CountersignError('store_failed', `cannot open the lock file ${quote(lockPath, 400)}`, { cause });
  }
  try {
    // No waiting: a second server is refused at once rather than queued behind the first.
    db.pragma('busy_timeout = 0');
    db.exec('BEGIN EXCLUSIVE');
  } catch (cause) {
    db.close();
    if (isBusy(cause)) throw lockedError(dataDir, readHolder(holderPath));
    throw new CountersignError('store_failed', `cannot lock the data directory ${quote(dataDir, 400)}`, { cause });
  }
  const holder: DataDirHolder = { pid: process.pid, command, since: now, host: hostname() };
  try {
    const temporary = `${holderPath}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(holder)}\n`, { mode: 0o600 });
    renameSync(temporary, holderPath);
  } catch (cause) {
    db.exec('ROLLBACK');
    db.close();
    throw new CountersignError('store_failed', `cannot write ${quote(holderPath, 400)}`, { cause });
  }
  let released = false;
  return {
    holder,
    release() {
      if (released) return;
      released = true;
      // Remove the holder note first, while the lock still keeps everyone else out of it.
      if (readHolder(holderPath)?.pid === process.pid) rmSync(holderPath, { force: true });
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

/**
 * Throw `data_dir_locked` if a server holds the data directory right now. For the few CLI
 * commands that must not run beside a server (they rewrite files the server also writes).
 */
export function assertDataDirFree(dataDir: string, what: string): void {
  const lock = lockDataDir(dataDir, what);
  lock.release();
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

function readHolder(holderPath: string): DataDirHolder | undefined {
  try {
    const value = parseStoredJson(readFileSync(holderPath, 'utf8')) as Partial<DataDirHolder>;
    if (typeof value.pid !== 'number' || typeof value.command !== 'string' || typeof value.since !== 'number') return undefined;
    return { pid: value.pid, command: value.command, since: value.since, host: typeof value.host === 'string' ? value.host : '' };
  } catch {
    return undefined;
  }
}

function lockedError(dataDir: string, holder: DataDirHolder | undefined): CountersignError {
  const who =
    holder === undefined
      ? 'another process (it has not written its name yet)'
      : `pid ${holder.pid} (${holder.command}${holder.host ? ` on ${holder.host}` : ''}, since ${new Date(holder.since).toISOString()})`;
  return new CountersignError(
    'data_dir_locked',
    `the data directory ${quote(dataDir, 400)} is in use by ${who}; stop it first, or use another --data-dir`,
    {
      details: holder === undefined ? {} : { pid: holder.pid, command: holder.command, since: holder.since },
    },
  );
}
