/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, because approvals,
 * nonces and audit records must survive power loss once acknowledged (STACK.md: NORMAL can
 * lose committed transactions). Schema changes are numbered migrations, applied in order in one
 * IMMEDIATE transaction, so concurrent first uses of a data directory cannot both apply them.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { CountersignError } from '../../../shared/errors.js';
import { MIGRATIONS } from './migrations.js';
import { requestKey } from './request-id.js';

export type Db = Database.Database;

export interface OpenStoreOptions {
  /** Milliseconds to wait on a locked database before failing (closed: the action fails). */
  busyTimeoutMs?: number;
}

export function openStore(file: string, options: OpenStoreOptions = {}): Db {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  let db: Db;
  try {
    db = new Database(file);
  } catch (cause) {
    throw new CountersignError('store_failed', `cannot open the database at ${JSON.stringify(file)}`, { cause });
  }
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    // 16 MiB of page cache (the default is 2 MiB): risk baselines and the audit tree are read at
    // random on every decision, and a miss is a system call on the hot path. It was 64 MiB; every
    // page a decision writes stays cached, so a busy core grew towards +64 MiB of resident memory
    // against a 300 MiB budget (issue #12), while the pages decisions keep reading (the tree's
    // right edge, active agents' baselines, recent requests) fit in far less.
    db.pragma('cache_size = -16384');
    // Migration 22 keys the audit log's by-request index with the same function the appends use.
    db.function('countersign_request_key', { deterministic: true }, (id: unknown) => (typeof id === 'string' ? requestKey(id) : null));
    migrate(db);
  } catch (cause) {
    db.close();
    if (cause instanceof CountersignError) throw cause;
    throw new CountersignError(
      'store_failed',
      `cannot prepare the database at ${JSON.stringify(file)}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function migrate(db: Db): void {
  if (checkedVersion(db) === MIGRATIONS.length) return;
  // Two processes may open a fresh data directory at once (two CLI commands, a CLI command beside
  // a starting server). The version is re-read under the write lock an IMMEDIATE transaction
  // takes, so exactly one of them applies the steps and the other finds them applied; reading it
  // before the lock let both start from version 0 ("table meta already exists").
  const upgrade = db.transaction(() => {
    for (let version = checkedVersion(db); version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }
  });
  try {
    upgrade.immediate();
  } catch (cause) {
    if (cause instanceof CountersignError) throw cause;
    throw new CountersignError(
      'store_failed',
      `the database schema could not be upgraded: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

function checkedVersion(db: Db): number {
  const current = schemaVersion(db);
  if (current > MIGRATIONS.length) {
    throw new CountersignError(
      'store_failed',
      `the database schema version ${current} is newer than this build supports (${MIGRATIONS.length}); upgrade countersign`,
    );
  }
  return current;
}
