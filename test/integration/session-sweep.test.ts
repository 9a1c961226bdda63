/**
 * The gateway's once-a-second sweep of live sessions finds the ones that may have to end with one
 * statement (AgentRegistry.unusableOf) instead of one lookup per session. Against a real SQLite
 * store: the statement returns exactly the (agent, key) pairs that lookup + assertUsable refuse,
 * for every state that ends a session (revoked, held for review, enrollment expired, key revoked,
 * key past its rotation overlap) and for unknown or mismatched rows, and none of the usable ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.js';

let h: Harness;
const kids = new Map<string, string>();

beforeAll(async () => {
  h = await startHarness({ config: { domain: 'test', risk: { enabled: false } } });
  for (const id of [
    'usable',
    'revoked',
    'held',
    'expired',
    'expires-later',
    'key-revoked',
    'key-retired',
    'key-in-overlap',
    'key-retiring-open',
  ])
    kids.set(id, (await h.enroll(id)).kid);
}, 60_000);

afterAll(async () => {
  await h?.close();
});

describe('the session sweep statement', () => {
  it('returns exactly the pairs lookup and assertUsable refuse, and no usable one', () => {
    const db = h.app.db;
    const now = Date.now();
    const setAgent = (id: string, column: string, value: unknown) =>
      db.prepare(`UPDATE agents SET ${column} = ? WHERE id = ?`).run(value, id);
    const setKey = (id: string, status: string, notAfter: number | null) =>
      db.prepare('UPDATE agent_keys SET status = ?, not_after = ? WHERE kid = ?').run(status, notAfter, kids.get(id));
    setAgent('revoked', 'status', 'revoked');
    setAgent('held', 'owner_state', 'held_for_review');
    setAgent('expired', 'expires_at', now - 1);
    setAgent('expires-later', 'expires_at', now + 60_000);
    setKey('key-revoked', 'revoked', null);
    setKey('key-retired', 'retiring', now);
    setKey('key-in-overlap', 'retiring', now + 60_000);
    setKey('key-retiring-open', 'retiring', null);
    const pairs: Array<[string, string]> = [...kids].map(([id, kid]) => [id, kid]);
    pairs.push(['nobody', kids.get('usable')!], ['usable', kids.get('revoked')!], ['usable', 'no-such-kid']);
    const refused = pairs.filter(([id, kid]) => {
      try {
        h.app.registry.assertUsable(h.app.registry.lookup(id, kid), now);
        return false;
      } catch {
        return true;
      }
    });
    const found = h.app.registry.unusableOf(pairs, now);
    expect(found.map((p) => p.join(' ')).sort()).toEqual(refused.map((p) => p.join(' ')).sort());
    const foundPairs = found.map((p) => p.join(' '));
    for (const id of ['usable', 'expires-later', 'key-in-overlap']) expect(foundPairs).not.toContain(`${id} ${kids.get(id)}`);
    expect(refused).toHaveLength(9); // 6 states that end a session + 3 unknown or mismatched rows
    expect(h.app.registry.unusableOf([], now)).toEqual([]);
  });
});
