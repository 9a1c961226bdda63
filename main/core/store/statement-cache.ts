/**
 * Statements compiled once per database. better-sqlite3 compiles SQL on every `db.prepare`, and
 * the approval path (a person's handle resolved, the approver, their key, the challenge, the
 * request's state written) prepared about a dozen statements per tap: ~0.7 ms of the last
 * approver's tap to the token (bench desk-approval, profiled). Only for statements run with
 * `get`/`all`/`run` and fixed SQL text: a cached statement must never be left half-iterated
 * (`iterate`) or switched to `pluck`/`raw`, since the next caller would share it.
 */
import type Database from 'better-sqlite3';
import type { Db } from './database.js';

const compiled = new WeakMap<Db, Map<string, Database.Statement>>();

/** `db.prepare(sql)` compiled on first use and kept for the database's lifetime (positional parameters). */
export function cachedStatement<Params extends unknown[] = unknown[], Row = unknown>(db: Db, sql: string): Database.Statement<Params, Row> {
  let statements = compiled.get(db);
  if (statements === undefined) {
    statements = new Map<string, Database.Statement>();
    compiled.set(db, statements);
  }
  let statement = statements.get(sql);
  if (statement === undefined) {
    statement = db.prepare(sql);
    statements.set(sql, statement);
  }
  return statement as Database.Statement<Params, Row>;
}
