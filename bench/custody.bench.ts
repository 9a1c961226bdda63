/**
 * Custody benchmark (issue: hardware key custody): signatures per second through SoftHSM2 for
 * ES256 and EdDSA, through the Pkcs11Signer the app uses (async C_Sign with its time limit,
 * verify-after-sign), beside Node's own crypto signing the same bytes in the same run.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { Pkcs11Token } from '../main/core/custody/pkcs11-token.js';
import { readPin } from '../main/core/custody/pin-source.js';
import { verifyWithJwk } from '../main/core/custody/signer.js';
import type { SigningAlgorithm } from '../main/core/custody/signer.js';
import { benchToken } from './pkcs11-setup.js';

async function rate(seconds: number, inFlight: number, once: () => Promise<void>): Promise<number> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await once();
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

export async function runCustodyBench(options: { seconds: number }): Promise<Record<string, unknown>> {
  const { config } = benchToken();
  const token = await Pkcs11Token.open(config, { readPin: () => readPin(config.pin) });
  const data = new TextEncoder().encode('x'.repeat(600)); // about the size of a token's signing input
  const out: Record<string, unknown> = {};
  try {
    for (const algorithm of ['ES256', 'EdDSA'] as SigningAlgorithm[]) {
      const label = `bench-${algorithm}`;
      const id = algorithm === 'ES256' ? 'aa01' : 'aa02';
      const publicJwk = await token.generateSigningKey({ label, id, algorithm });
      const signer = await token.openSigner({ label, id, algorithm, pinnedKid: publicJwk.kid });
      const pair = algorithm === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
      const nodeSign = () =>
        algorithm === 'ES256'
          ? sign('sha256', data, { key: pair.privateKey, dsaEncoding: 'ieee-p1363' })
          : sign(null, data, pair.privateKey);
      const check = await signer.sign(data);
      if (!verifyWithJwk(publicJwk, data, check)) throw new Error('the token signature does not verify');
      await rate(0.5, 16, async () => {
        await signer.sign(data);
      }); // warm-up
      const pkcs11Sequential = await rate(options.seconds, 1, async () => {
        await signer.sign(data);
      });
      const pkcs11Concurrent = await rate(options.seconds, 32, async () => {
        await signer.sign(data);
      });
      const node = await rate(options.seconds, 1, () => {
        nodeSign();
        return Promise.resolve();
      });
      out[algorithm] = {
        pkcs11SignaturesPerSecondSequential: Math.round(pkcs11Sequential),
        pkcs11SignaturesPerSecond32InFlight: Math.round(pkcs11Concurrent),
        nodeCryptoSignaturesPerSecond: Math.round(node),
        ratioToNode: +(pkcs11Concurrent / node).toFixed(3),
      };
    }
  } finally {
    await token.close();
  }
  return out;
}
