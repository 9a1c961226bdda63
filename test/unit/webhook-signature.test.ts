/**
 * The webhook signature (shared/webhook-signature.ts) against test/vectors/webhook-signatures.json,
 * computed with node:crypto independently: valid deliveries verify, and every malformed, stale or
 * invalid one is refused with its stable code.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isCountersignError } from '../../shared/errors.js';
import { signWebhook, verifyWebhookSignature } from '../../shared/webhook-signature.js';

interface Vector {
  name: string;
  secret: string;
  body: string;
  now: number;
  header: string | null;
  code?: string;
}
const file = JSON.parse(readFileSync(new URL('../vectors/webhook-signatures.json', import.meta.url), 'utf8')) as {
  valid: Vector[];
  invalid: Vector[];
};

describe('webhook signatures (vectors)', () => {
  it.each(file.valid.map((v) => [v.name, v] as const))('verifies: %s', async (_name, v) => {
    await expect(verifyWebhookSignature({ secret: v.secret, header: v.header, body: v.body, now: v.now })).resolves.toBeTypeOf('number');
    // The same over the raw bytes.
    await expect(
      verifyWebhookSignature({ secret: v.secret, header: v.header, body: new TextEncoder().encode(v.body), now: v.now }),
    ).resolves.toBeTypeOf('number');
  });

  it.each(file.invalid.map((v) => [v.name, v] as const))('refuses: %s', async (_name, v) => {
    const error: unknown = await verifyWebhookSignature({ secret: v.secret, header: v.header, body: v.body, now: v.now }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error) ? error.code : error).toBe(v.code);
  });

  it('signs exactly the first valid vector', async () => {
    const v = file.valid[0]!;
    const t = Number(/^t=(\d+)/.exec(v.header!)![1]);
    expect(await signWebhook(v.secret, t, v.body)).toBe(v.header);
  });
});
