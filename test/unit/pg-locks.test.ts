/** The team database's advisory lock keys: one table, no key used by two features. */
import { describe, expect, it } from 'vitest';
import { PG_LOCKS } from '../../main/core/store/pg/pg-locks.js';

describe('PostgreSQL advisory lock keys', () => {
  it('gives every feature its own key', () => {
    const keys = Object.values(PG_LOCKS);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('keeps the keys inside PostgreSQL int4 so the two-key form can take the held-calls key too', () => {
    for (const key of Object.values(PG_LOCKS)) expect(Number.isSafeInteger(key) && key > 0 && key < 2 ** 31).toBe(true);
  });
});
