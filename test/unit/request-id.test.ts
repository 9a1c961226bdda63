/**
 * Request ids sort by creation time in SQLite's byte order (BINARY collation), so new rows of
 * every index keyed by request id land beside each other (issue #12), and they keep all 16 random
 * bytes of the ids before them (unguessable as ever).
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { newRequestId, orderedTime, requestKey } from '../../main/core/store/request-id.js';

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('request ids', () => {
  it('sort by their creation time byte for byte, across every digit boundary', () => {
    const times = [0, 1, 63, 64, 65, 4095, 4096, 2 ** 24 - 1, 2 ** 24, 1_790_000_000_000, 1_790_000_000_001, 2 ** 42, 2 ** 48 - 1];
    for (let k = 0; k < 48; k++) times.push(2 ** k - 1, 2 ** k);
    times.sort((a, b) => a - b);
    const ids = times.map((t) => newRequestId(t));
    for (let i = 1; i < ids.length; i++) {
      const order = byteOrder(ids[i - 1]!, ids[i]!);
      expect(order, `${times[i - 1]} before ${times[i]}`).toBe(times[i - 1] === times[i] ? order : -1);
      if (times[i - 1] !== times[i]) expect(byteOrder(orderedTime(times[i - 1]!), orderedTime(times[i]!))).toBe(-1);
    }
  });

  it('sort the same way in SQLite', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE r (id TEXT PRIMARY KEY, at INTEGER NOT NULL)');
    const insert = db.prepare('INSERT INTO r (id, at) VALUES (?, ?)');
    const start = 1_790_000_000_000;
    const times = Array.from({ length: 500 }, (_, i) => start + i * 997 + (i % 7) * 65_536);
    for (const t of [...times].reverse()) insert.run(newRequestId(t), t);
    const byId = db
      .prepare<[], { at: number }>('SELECT at FROM r ORDER BY id')
      .all()
      .map((r) => r.at);
    expect(byId).toEqual([...times].sort((a, b) => a - b));
    db.close();
  });

  it('carry the 16 random bytes whole, after the time', () => {
    const random = Uint8Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff);
    const id = newRequestId(1_790_000_000_000, random);
    expect(id).toMatch(/^req_[-0-9A-Za-z_]{8}[-0-9A-Za-z_]{22}$/);
    expect(Buffer.from(id.slice(12), 'base64url')).toEqual(Buffer.from(random));
    expect(newRequestId(1_790_000_000_000)).not.toBe(newRequestId(1_790_000_000_000));
    expect(() => newRequestId(0, new Uint8Array(8))).toThrow(RangeError);
  });

  it('clamp a time outside 48 bits instead of failing (the prefix only orders ids)', () => {
    expect(orderedTime(-5)).toBe(orderedTime(0));
    expect(orderedTime(Number.NaN)).toBe(orderedTime(0));
    expect(orderedTime(2 ** 60)).toBe(orderedTime(2 ** 48 - 1));
    expect(orderedTime(12.9)).toBe(orderedTime(12));
  });

  it("give the audit log's integer key: a safe integer that orders as the ids' times, any string included", () => {
    const start = 1_790_000_000_000;
    const times = Array.from({ length: 300 }, (_, i) => start + i * 7 + (i % 5) * 1_000);
    const sorted = [...times].sort((a, b) => a - b);
    const keyed = sorted.map((t) => requestKey(newRequestId(t)));
    for (let i = 1; i < keyed.length; i++) {
      if (sorted[i]! > sorted[i - 1]!) expect(keyed[i]!).toBeGreaterThan(keyed[i - 1]!);
    }
    // The key starts with the time: two ids of one millisecond differ at most in the key's last 11 bits.
    expect(Math.floor(requestKey(newRequestId(start)) / 2048)).toBe(start);
    for (const id of [newRequestId(2 ** 48 - 1), 'req_~~~~~~~~~~~~', '', 'x', 'req_é€😀é€😀é€😀é€😀', 'req_zzzzzzzzzzzz']) {
      expect(Number.isSafeInteger(requestKey(id))).toBe(true);
      expect(requestKey(id)).toBeGreaterThanOrEqual(0);
    }
  });
});
