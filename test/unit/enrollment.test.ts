import { describe, expect, it } from 'vitest';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, ENROLLMENT_MAX_AGE_MS } from '../../shared/enrollment.js';

describe('enrollment requests (proof of possession)', () => {
  it.each(['EdDSA', 'ES256'] as const)('accepts a request signed by the key it enrolls (%s)', async (alg) => {
    const key = await importAgentKey(await generateAgentKey(alg));
    const request = await createEnrollmentRequest(key, 'finance-bot', 'Finance bot');
    const payload = await verifyEnrollmentRequest(JSON.parse(JSON.stringify(request)));
    expect(payload.publicJwk.kid).toBe(key.kid);
  });

  it('rejects a request signed by a different key', async () => {
    const key = await importAgentKey(await generateAgentKey());
    const other = await importAgentKey(await generateAgentKey());
    const request = await createEnrollmentRequest(key, 'finance-bot', 'Finance bot');
    const forged = await createEnrollmentRequest(other, 'finance-bot', 'Finance bot');
    await expect(verifyEnrollmentRequest({ payload: request.payload, signature: forged.signature })).rejects.toMatchObject({
      code: 'enrollment_proof_invalid',
    });
  });

  it('rejects a request whose public key was swapped after signing', async () => {
    const key = await importAgentKey(await generateAgentKey());
    const other = await importAgentKey(await generateAgentKey());
    const request = await createEnrollmentRequest(key, 'finance-bot', 'Finance bot');
    const swapped = { ...request, payload: { ...request.payload, publicJwk: other.publicJwk } };
    await expect(verifyEnrollmentRequest(swapped)).rejects.toMatchObject({ code: 'enrollment_proof_invalid' });
  });

  it('rejects a kid that is not the thumbprint of the key', async () => {
    const key = await importAgentKey(await generateAgentKey());
    const request = await createEnrollmentRequest(key, 'finance-bot', 'Finance bot');
    const badKid = { ...request, payload: { ...request.payload, publicJwk: { ...request.payload.publicJwk, kid: 'A'.repeat(43) } } };
    await expect(verifyEnrollmentRequest(badKid)).rejects.toMatchObject({ code: 'enrollment_invalid' });
  });

  it('rejects stale, future-dated, malformed and unknown-field requests', async () => {
    const key = await importAgentKey(await generateAgentKey());
    const now = Date.now();
    const old = await createEnrollmentRequest(key, 'finance-bot', 'f', now - ENROLLMENT_MAX_AGE_MS - 1000);
    await expect(verifyEnrollmentRequest(old, now)).rejects.toMatchObject({ code: 'enrollment_invalid' });
    const future = await createEnrollmentRequest(key, 'finance-bot', 'f', now + 3_600_000);
    await expect(verifyEnrollmentRequest(future, now)).rejects.toMatchObject({ code: 'enrollment_invalid' });
    await expect(verifyEnrollmentRequest({ payload: {}, signature: 'x' })).rejects.toMatchObject({ code: 'enrollment_invalid' });
    const ok = await createEnrollmentRequest(key, 'finance-bot', 'f');
    await expect(verifyEnrollmentRequest({ ...ok, extra: 1 })).rejects.toMatchObject({ code: 'enrollment_invalid' });
  });
});
