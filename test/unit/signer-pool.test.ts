/** The signer pool: spreads concurrent signatures over its sessions, holds one key only. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SignerPool } from '../../main/core/custody/signer-pool.js';
import { SoftwareSigner } from '../../main/core/custody/software-signer.js';
import { verifyWithJwk, type Signer } from '../../main/core/custody/signer.js';
import { isCountersignError } from '../../shared/errors.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function software(dir?: string): Promise<SoftwareSigner> {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'countersign-pool-'));
  dirs.push(d);
  return SoftwareSigner.openOrCreate(d, { log: () => undefined });
}

/** A member that counts its calls and answers after a tick, like a device round trip. */
function counting(inner: Signer): Signer & { calls: number } {
  const member = {
    keyId: inner.keyId,
    algorithm: inner.algorithm,
    publicJwk: inner.publicJwk,
    custody: inner.custody,
    calls: 0,
    async sign(data: Uint8Array) {
      member.calls++;
      await new Promise((r) => setImmediate(r));
      return inner.sign(data);
    },
  };
  return member;
}

describe('signer pool', () => {
  it('spreads concurrent signatures over its members, and every signature verifies', async () => {
    const key = await software();
    const members = [counting(key), counting(key), counting(key)];
    const pool = new SignerPool(members);
    const data = new TextEncoder().encode('pooled');
    const signatures = await Promise.all(Array.from({ length: 30 }, () => pool.sign(data)));
    expect(signatures.every((s) => verifyWithJwk(pool.publicJwk, data, s))).toBe(true);
    expect(members.map((m) => m.calls)).toEqual([10, 10, 10]);
  });

  it('refuses members that hold different keys', async () => {
    const a = await software();
    const b = await software();
    let error: unknown;
    try {
      new SignerPool([a, b]);
    } catch (e) {
      error = e;
    }
    expect(isCountersignError(error, 'hsm_key_mismatch')).toBe(true);
  });
});
