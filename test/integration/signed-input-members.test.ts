/**
 * What was signed is exactly what is decided: a member inserted into a signed envelope's frame
 * text (never signed by the agent) is refused at every depth through the real gateway, and a
 * `__proto__` member, which JavaScript objects cannot hold faithfully, is refused with
 * json_reserved_member wherever it appears. No request row and no token is ever created.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { RawClient, errorCode, signedEnvelope, type RawMessage } from '../helpers/raw-client.js';
import type { AgentKey } from '../../shared/agent-keys.js';

/** Every name Object.prototype answers to, plus names with special meaning to common libraries. */
const RESERVED_NAMES = [...Object.getOwnPropertyNames(Object.prototype), 'prototype', 'then', 'length', 'toJSON'];

let h: Harness;
let key: AgentKey;

function rows(): { requests: number; tokens: number } {
  const n = (t: string) => (h.app.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  return { requests: n('requests'), tokens: n('tokens') };
}

/** Every object inside `value`, outermost first, with the path that reaches it. */
function objectsOf(value: unknown, path: string[] = []): Array<{ path: string[]; object: Record<string, unknown> }> {
  if (Array.isArray(value)) return value.flatMap((v, i) => objectsOf(v, [...path, String(i)]));
  if (typeof value !== 'object' || value === null) return [];
  const object = value as Record<string, unknown>;
  return [{ path, object }, ...Object.keys(object).flatMap((k) => objectsOf(object[k], [...path, k]))];
}

/** The frame text with one extra member `name` in the object at `index` (own data property, as a parser would make it). */
function frameWith(frame: unknown, index: number, name: string, value: unknown): string {
  const copy = JSON.parse(JSON.stringify(frame)) as unknown;
  const target = objectsOf(copy)[index]!.object;
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
  const text = JSON.stringify(copy);
  expect(text).toContain(JSON.stringify(name) + ':');
  return text;
}

async function sendRaw(c: RawClient, text: string): Promise<RawMessage> {
  c.sendText(text);
  return c.next();
}

beforeAll(async () => {
  h = await startHarness({ config: { gateway: { ratePerSecond: 5_000, rateBurst: 5_000 } } });
  key = await h.enroll('finance-bot');
});
afterAll(async () => h.close());

describe('members inserted into a signed envelope after signing', () => {
  it('refuses the outside-testing reproduction: "__proto__" inserted into call.params of a signed transfer', async () => {
    const c = await RawClient.connect(h.app.url);
    expect((await c.authenticate('finance-bot', key)).result).toMatchObject({ agentId: 'finance-bot' });
    const envelope = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    const frame = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'call.submit', params: { envelope } });
    const tampered = frame.replace(
      '"params":{"amount":"250.00"',
      '"params":{"__proto__":{"amount":"1.00","isAdmin":true},"amount":"250.00"',
    );
    expect(tampered).not.toBe(frame);
    const before = rows();
    const refused = await sendRaw(c, tampered);
    expect(refused.result).toBeUndefined();
    expect(errorCode(refused)).toBe('json_reserved_member');
    expect(rows()).toEqual(before);
    // Control: the very same envelope, as signed, is decided normally.
    const allowed = await sendRaw(c, frame);
    expect(allowed.result).toMatchObject({ decision: 'allow' });
    c.close();
  });

  it('refuses every reserved name at every depth of the frame, and creates nothing', async () => {
    const c = await RawClient.connect(h.app.url);
    expect((await c.authenticate('finance-bot', key)).result).toMatchObject({ agentId: 'finance-bot' });
    const envelope = await signedEnvelope(key, 'finance-bot', { ...transferCall('250.00'), session: { id: 'run-1', depth: 0 } });
    const frame = { jsonrpc: '2.0', id: 9, method: 'call.submit', params: { envelope } };
    const positions = objectsOf(frame);
    // message, params, envelope, payload, call, call.params, call.session
    expect(positions.map((p) => p.path.join('.'))).toEqual([
      '',
      'params',
      'params.envelope',
      'params.envelope.payload',
      'params.envelope.payload.call',
      'params.envelope.payload.call.params',
      'params.envelope.payload.call.session',
    ]);
    const before = rows();
    const outcomes = new Map<string, Set<string>>();
    for (let index = 0; index < positions.length; index++) {
      for (const name of RESERVED_NAMES) {
        for (const value of [{ amount: '1.00', isAdmin: true }, 'x']) {
          const answer = await sendRaw(c, frameWith(frame, index, name, value));
          const where = `${name} at ${positions[index]!.path.join('.') || '(message)'}`;
          expect(answer.result, where).toBeUndefined();
          const code = errorCode(answer);
          expect(code, where).toBeTypeOf('string');
          if (name === '__proto__') expect(code, where).toBe('json_reserved_member');
          outcomes.set(code!, (outcomes.get(code!) ?? new Set()).add(positions[index]!.path.join('.')));
        }
      }
    }
    expect(rows()).toEqual(before);
    // The refusals come from the right layer: strict objects refuse unknown members; inside the
    // signed params the signature no longer verifies.
    expect(outcomes.get('schema_invalid')).toBeDefined();
    expect([...outcomes.get('envelope_signature_invalid')!]).toEqual(['params.envelope.payload.call.params']);
    // Still authenticated and deciding after all of that.
    expect((await sendRaw(c, JSON.stringify(frame))).result).toMatchObject({ decision: 'allow' });
    c.close();
  });

  it('refuses a "__proto__" member nested inside a parameter value and in an escaped spelling', async () => {
    const c = await RawClient.connect(h.app.url);
    expect((await c.authenticate('finance-bot', key)).result).toMatchObject({ agentId: 'finance-bot' });
    const envelope = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    const frame = JSON.stringify({ jsonrpc: '2.0', id: 11, method: 'call.submit', params: { envelope } });
    const before = rows();
    for (const tampered of [
      frame.replace('"memo":"test"', '"memo":{"a":[{"__proto__":{"x":1}}]}'),
      frame.replace('"params":{"amount":"250.00"', '"params":{"\\u005f_proto__":{"amount":"1.00"},"amount":"250.00"'),
      frame.replace('"provenance":["user"]', '"provenance":["user",{"__proto__":null}]'),
    ]) {
      expect(tampered).not.toBe(frame);
      expect(errorCode(await sendRaw(c, tampered))).toBe('json_reserved_member');
    }
    expect(rows()).toEqual(before);
    c.close();
  });
});
