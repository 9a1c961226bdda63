/**
 * Several signers over the same key (one PKCS#11 session each) presented as one Signer: each
 * signature goes to the signer with the fewest in flight. A session performs one operation at
 * a time and its answer needs an event-loop turn to come back, so parallel sessions are what
 * lets signing keep up with decisions under load. Every member must hold the pinned key.
 */
import type { PublicJwk, Signer, SignerCustody, SigningAlgorithm } from './signer.js';
import { CountersignError } from '../../../shared/errors.js';

export class SignerPool implements Signer {
  readonly keyId: string;
  readonly algorithm: SigningAlgorithm;
  readonly publicJwk: PublicJwk;
  readonly custody: SignerCustody;
  private readonly inFlight: number[];

  constructor(private readonly members: readonly Signer[]) {
    const first = members[0];
    if (first === undefined) throw new CountersignError('config_invalid', 'a signer pool needs at least one signer');
    for (const member of members) {
      if (member.keyId !== first.keyId || member.algorithm !== first.algorithm) {
        throw new CountersignError('hsm_key_mismatch', 'the sessions of the signer pool do not hold the same key');
      }
    }
    this.keyId = first.keyId;
    this.algorithm = first.algorithm;
    this.publicJwk = first.publicJwk;
    this.custody = first.custody;
    this.inFlight = members.map(() => 0);
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    let pick = 0;
    for (let i = 1; i < this.members.length; i++) if (this.inFlight[i]! < this.inFlight[pick]!) pick = i;
    this.inFlight[pick]!++;
    try {
      return await this.members[pick]!.sign(data);
    } finally {
      this.inFlight[pick]!--;
    }
  }
}
