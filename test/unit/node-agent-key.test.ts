/**
 * The MCP proxy's agent key (main/mcp/node-signature.ts, nodeAgentKey): it signs with
 * node:crypto in the calling thread, and its signatures are the agent SDK's WebCrypto key's:
 * they verify with the enrolled public key, Ed25519 ones byte for byte equal, and a key file the
 * SDK refuses is refused alike.
 */
import { describe, expect, it } from 'vitest';
import { nodeAgentKey } from '../../main/mcp/node-signature.js';
import { generateAgentKey, importAgentKey, signCanonical, verifyAgentSignature, type AgentKeyAlgorithm } from '../../shared/agent-keys.js';
import { fromBase64url, utf8 } from '../../shared/encoding.js';
import { canonicalize } from '../../shared/canonical-json.js';
import { isCountersignError } from '../../shared/errors.js';

describe('nodeAgentKey', () => {
  for (const alg of ['EdDSA', 'ES256'] as AgentKeyAlgorithm[]) {
    it(`signs ${alg} call envelopes that verify with the enrolled public key`, async () => {
      const jwk = await generateAgentKey(alg);
      const key = await nodeAgentKey(jwk);
      expect(key.kid).toBe(jwk.kid);
      expect(key.alg).toBe(alg);
      const payload = { typ: 'countersign.call.v1', agentId: 'a', call: { tool: 't', params: { n: 1, s: 'é' } } };
      const signature = fromBase64url(await signCanonical(key, payload))!;
      expect(signature.length).toBe(64);
      expect(await verifyAgentSignature(key.publicJwk, utf8(canonicalize(payload)), signature)).toBe(true);
      // Another payload's signature does not verify for this one.
      const other = fromBase64url(await signCanonical(key, { ...payload, agentId: 'b' }))!;
      expect(await verifyAgentSignature(key.publicJwk, utf8(canonicalize(payload)), other)).toBe(false);
    });
  }

  it('gives the WebCrypto key’s Ed25519 signatures byte for byte (Ed25519 is deterministic)', async () => {
    const jwk = await generateAgentKey('EdDSA');
    const bytes = utf8('the same bytes');
    const node = await (await nodeAgentKey(jwk)).sign(bytes);
    const web = await (await importAgentKey(jwk)).sign(bytes);
    expect(Buffer.from(node).equals(Buffer.from(web))).toBe(true);
  });

  it('refuses a key file whose kid is not its thumbprint, as importAgentKey does', async () => {
    const jwk = { ...(await generateAgentKey('EdDSA')), kid: 'not-the-thumbprint' };
    const error = await nodeAgentKey(jwk).catch((e: unknown) => e);
    expect(isCountersignError(error, 'config_invalid')).toBe(true);
  });

  for (const alg of ['EdDSA', 'ES256'] as AgentKeyAlgorithm[]) {
    it(`refuses a ${alg} key file whose private key belongs to another public key, as importAgentKey does`, async () => {
      const a = await generateAgentKey(alg);
      const b = await generateAgentKey(alg);
      // a's public members and kid with b's private scalar.
      const mixed = { ...a, d: b.d };
      await expect(importAgentKey(mixed)).rejects.toThrow();
      await expect(nodeAgentKey(mixed)).rejects.toThrow();
    });
  }
});
