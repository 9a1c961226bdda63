/**
 * The core's synchronous call digest (node:crypto) and the shared one (WebCrypto) must agree
 * byte for byte, or tool servers would reject every token. Run over the JCS vectors (as params)
 * and the calls of the approval-token vectors.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { callDigest } from '../../main/core/tokens/call-digest.js';
import { createHash } from 'node:crypto';
import { computeCallDigest, computeCallDigestSync } from '../../shared/approval-token.js';
import { parseStrictJson, type JsonValue } from '../../shared/canonical-json.js';

const jcs = JSON.parse(readFileSync(new URL('../vectors/jcs.json', import.meta.url), 'utf8')) as {
  cases: Array<{ name: string; input: string; rejectedBy?: string }>;
};
const tokens = JSON.parse(readFileSync(new URL('../vectors/approval-tokens.json', import.meta.url), 'utf8')) as {
  vectors: Array<{ name: string; call: { tool: string; params: JsonValue } }>;
};

describe('call digest', () => {
  const accepted = jcs.cases.filter((c) => c.rejectedBy === undefined);
  it.each(accepted.map((c) => [c.name, c.input] as const))('agrees with the shared digest on JCS vector %s', async (_name, input) => {
    const params = parseStrictJson(input);
    expect(callDigest('vector.tool', params)).toBe(await computeCallDigest('vector.tool', params));
  });

  it.each(tokens.vectors.map((v) => [v.name, v.call] as const))('agrees with the shared digest on token vector %s', async (_name, call) => {
    expect(callDigest(call.tool, call.params)).toBe(await computeCallDigest(call.tool, call.params));
  });

  it.each(tokens.vectors.map((v) => [v.name, v.call] as const))(
    'the synchronous shared digest agrees, with its own SHA-256 and with node:crypto, on token vector %s',
    async (_name, call) => {
      const expected = await computeCallDigest(call.tool, call.params);
      expect(computeCallDigestSync(call.tool, call.params)).toBe(expected);
      expect(computeCallDigestSync(call.tool, call.params, (b) => createHash('sha256').update(b).digest())).toBe(expected);
    },
  );

  it('changes when one parameter changes', () => {
    expect(callDigest('payments.transfer', { amount: '250.00' })).not.toBe(callDigest('payments.transfer', { amount: '250.01' }));
  });
});
