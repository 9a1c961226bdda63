/**
 * The running server's custody across rotations. `keys rotate` (or `keys init`) runs in its own
 * process and pins a new active key in the store; the running server adopts it on its next
 * signature (the active kid is read before every one: one indexed lookup) or within a second
 * when idle, opening the new key exactly as start-up does (openCustody: pin, token, not
 * extractable) and recording `signing_key.adopted` in the audit log. Until the new key is open
 * the previous one keeps signing, but only while it is published for longer than a token it
 * signs lives (SigningKeyRegistry.maySign); otherwise nothing is signed (signing_key_unpublished).
 * A key the server no longer signs with stays open until shutdown, so signatures in flight end.
 */
import type { CustodyStatus, OpenCustody } from './open-custody.js';
import type { PublicJwk, Signer, SignerCustody, SigningAlgorithm } from '../custody/signer.js';
import type { SigningKeyRegistry } from './signing-keys.js';
import type { TokenDomain } from '../../../shared/approval-token.js';
import { CountersignError, quote } from '../../../shared/errors.js';

export interface AdoptingCustodyOptions {
  /** Which key is active, and whether a key may sign: the data directory's registry, or a hub's team key set. */
  keys: Pick<SigningKeyRegistry, 'activeKid' | 'maySign'>;
  domain: TokenDomain;
  now: () => number;
  /** What a signature must stay verifiable for: the token lifetime. */
  reserveMs: number;
  /** Opens the domain's active key (openCustody with the server's configuration). */
  open: () => Promise<OpenCustody>;
  /** Called once the server signs with `next` (it audits the adoption). */
  onAdopted: (next: OpenCustody, previousKid: string) => void;
  log: (message: string) => void;
  /** After a failed adoption, how long before the next attempt (default 5 s). */
  retryMs?: number;
}

export class AdoptingCustody implements OpenCustody {
  readonly signer: Signer;
  private current: OpenCustody;
  private readonly superseded: OpenCustody[] = [];
  private adopting: Promise<void> | undefined;
  private nextAttemptAt = 0;
  private closed = false;

  constructor(
    initial: OpenCustody,
    private readonly options: AdoptingCustodyOptions,
  ) {
    this.current = initial;
    this.signer = new AdoptingSigner(this);
  }

  get currentSigner(): Signer {
    return this.current.signer;
  }

  status(): CustodyStatus {
    return this.current.status();
  }

  /**
   * The key-fixed signer for the next signature: the domain's active key (adopted first when it
   * changed), or the previous key while it may still sign. Throws signing_key_unpublished.
   */
  async forSignature(): Promise<Signer> {
    const { keys, domain, now, reserveMs } = this.options;
    const active = keys.activeKid(domain);
    if (active !== undefined && active !== this.current.signer.keyId) await this.adopt();
    const signer = this.current.signer;
    if (!keys.maySign(signer.keyId, now(), reserveMs)) {
      throw new CountersignError(
        'signing_key_unpublished',
        `the signing key ${quote(signer.keyId)} is no longer published long enough to sign, and the ${domain} domain's active key ${quote(active ?? '')} could not be opened; nothing was signed`,
      );
    }
    return signer;
  }

  /** Adopt the active key if it changed (the periodic check; never throws). */
  async refresh(): Promise<void> {
    const active = this.options.keys.activeKid(this.options.domain);
    if (active !== undefined && active !== this.current.signer.keyId) await this.adopt();
  }

  private adopt(): Promise<void> {
    if (this.closed || this.options.now() < this.nextAttemptAt) return Promise.resolve();
    this.adopting ??= (async () => {
      try {
        const next = await this.options.open();
        if (this.closed) {
          await next.close();
          return;
        }
        const previous = this.current;
        this.current = next;
        this.superseded.push(previous);
        this.options.onAdopted(next, previous.signer.keyId);
      } catch (error) {
        this.nextAttemptAt = this.options.now() + (this.options.retryMs ?? 5_000);
        this.options.log(
          `error: could not adopt the rotated ${this.options.domain} signing key: ${error instanceof Error ? error.message : String(error)}`,
        );
      } finally {
        this.adopting = undefined;
      }
    })();
    return this.adopting;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.adopting;
    for (const custody of [...this.superseded.splice(0), this.current].reverse()) await custody.close();
  }
}

/** The Signer the rest of the core holds: it reads as the current key, and signs with a fixed one. */
class AdoptingSigner implements Signer {
  constructor(private readonly owner: AdoptingCustody) {}

  get keyId(): string {
    return this.owner.currentSigner.keyId;
  }

  get algorithm(): SigningAlgorithm {
    return this.owner.currentSigner.algorithm;
  }

  get publicJwk(): PublicJwk {
    return this.owner.currentSigner.publicJwk;
  }

  get custody(): SignerCustody {
    return this.owner.currentSigner.custody;
  }

  forSignature(): Promise<Signer> {
    return this.owner.forSignature();
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    return (await this.owner.forSignature()).sign(data);
  }
}
