/**
 * Maps what the `pg` client throws to the stable codes: losing the database (refused, reset,
 * shut down, timed out waiting for a connection or for an answer) is store_unavailable, so callers fail closed
 * with a code that says "retry later"; anything else the database refused is store_failed.
 * CountersignErrors raised inside a unit of work pass through unchanged.
 */
import type pg from 'pg';
import { CountersignError } from '../../../../shared/errors.js';

const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH']);

export function isConnectionLoss(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (UNAVAILABLE_NODE_CODES.has(code)) return true;
    // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect now)
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|not queryable/i.test(
    error.message,
  );
}

/** PostgreSQL ended the transaction (or the unit's savepoint) to break a deadlock (SQLSTATE 40P01): nothing of it was written. */
export function isDeadlockVictim(error: unknown): boolean {
  const cause = error instanceof CountersignError ? error.cause : error;
  return typeof cause === 'object' && cause !== null && (cause as { code?: unknown }).code === '40P01';
}

export function storeError(error: unknown, doing: string): CountersignError {
  if (error instanceof CountersignError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  if (isConnectionLoss(error))
    return new CountersignError('store_unavailable', `the database cannot be reached while ${doing}: ${detail}`, { cause: error });
  return new CountersignError('store_failed', `the database refused ${doing}: ${detail}`, { cause: error });
}

/**
 * Check a client out of the pool with `onLost` already listening for its errors. pg-pool stops
 * listening on a client when it hands it out, and a new connection's start and a FATAL right after
 * it (the server shutting down) can arrive in one read: between the pool's callback and an
 * `await` continuation that error would have no listener and crash the process.
 */
export function checkOut(pool: pg.Pool, onLost: (error: Error) => void): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => {
      if (error || client === undefined) reject(error ?? new Error('the pool gave no client'));
      else {
        client.on('error', onLost);
        resolve(client);
      }
    });
  });
}
