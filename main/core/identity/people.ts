/**
 * People: who a handle (an approver id, an email, another alias) names. A person is one approver
 * record in the directory; every other handle of that person is an alias of it. Separation of
 * duties (an agent's owner may not approve its calls, a policy's conflicted approvers may not
 * approve) compares persons resolved here, never the strings people typed.
 *
 * Handles compare case-insensitively after trimming (emails are case-insensitive in practice,
 * and two approver ids differing only by case would be two spellings of one person). The
 * directory refuses an id or alias that collides with another person's, so a handle names at
 * most one person; a database that still holds such a collision resolves it to nobody.
 */
import type { Db } from '../store/database.js';
import { cachedStatement } from '../store/statement-cache.js';

/** What an approver id or alias may look like (1-128 letters, digits or . _ @ + -). */
export const PERSON_HANDLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;

export interface ResolvedPerson {
  /** The person's approver id (canonical). */
  id: string;
  /** How the handle matched: the id itself (in any case) or one of the person's aliases. */
  via: 'id' | 'alias';
  status: 'active' | 'disabled';
}

/** Trimmed and lowercased: the form aliases are stored and compared in. */
export function normalizeHandle(handle: string): string {
  return handle.trim().toLowerCase();
}

/**
 * The person `handle` names, or undefined when it names nobody (unknown, malformed, or ambiguous
 * in a database written before ids and aliases were kept unique).
 */
export function resolvePerson(db: Db, handle: string): ResolvedPerson | undefined {
  if (typeof handle !== 'string') return undefined;
  const key = normalizeHandle(handle);
  if (!PERSON_HANDLE_PATTERN.test(key)) return undefined;
  const byId = cachedStatement<[string], { id: string; status: 'active' | 'disabled' }>(
    db,
    'SELECT id, status FROM approvers WHERE lower(id) = ?',
  ).all(key);
  const byAlias = cachedStatement<[string], { id: string; status: 'active' | 'disabled' }>(
    db,
    'SELECT p.id, p.status FROM approver_aliases a JOIN approvers p ON p.id = a.approver_id WHERE a.alias = ?',
  ).all(key);
  const ids = new Set([...byId, ...byAlias].map((row) => row.id));
  if (ids.size !== 1) return undefined;
  const row = byId[0] ?? byAlias[0]!;
  return { id: row.id, via: byId.length === 1 ? 'id' : 'alias', status: row.status };
}

/** Whether two handles name the same person (both must resolve; an unknown handle is nobody). */
export function samePerson(db: Db, a: string, b: string): boolean {
  const left = resolvePerson(db, a);
  return left !== undefined && left.id === resolvePerson(db, b)?.id;
}
