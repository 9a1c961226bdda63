/**
 * The pinned custody keys: which key signs each key domain's tokens, where it lives (software
 * file or PKCS#11 token, label and CKA_ID), and which earlier keys stay published during their
 * rotation overlap. The pin is the RFC 7638 thumbprint of the public key: at start the key the
 * signer presents must have exactly this thumbprint, or nothing is signed.
 */
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import { jwkThumbprint, type PublicJwk, type SigningAlgorithm } from '../custody/signer.js';
import type { TokenDomain } from '../../../shared/approval-token.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import type { HistoricKey } from '../audit/key-history.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';

export type SigningKeyStatus = 'active' | 'retiring' | 'retired';

export interface SigningKeyRecord {
  kid: string;
  domain: TokenDomain;
  custody: 'software' | 'pkcs11';
  algorithm: SigningAlgorithm;
  publicJwk: PublicJwk;
  tokenLabel?: string;
  keyLabel?: string;
  /** CKA_ID, hex. */
  keyId?: string;
  status: SigningKeyStatus;
  createdAt: number;
  notAfter?: number;
  retiredAt?: number;
}

interface Row {
  kid: string;
  domain: TokenDomain;
  custody: 'software' | 'pkcs11';
  alg: SigningAlgorithm;
  public_jwk: string;
  token_label: string | null;
  key_label: string | null;
  key_id: string | null;
  status: SigningKeyStatus;
  created_at: number;
  not_after: number | null;
  retired_at: number | null;
}

function toRecord(row: Row): SigningKeyRecord {
  const publicJwk = parseStrictJson(row.public_jwk) as unknown as PublicJwk;
  // The kid is the key's RFC 7638 thumbprint: a row whose public key was swapped under a pinned
  // kid (a database edit) must never vouch for another key, in the JWKS or the key history.
  if (jwkThumbprint(publicJwk) !== row.kid) {
    throw new CountersignError(
      'hsm_key_mismatch',
      `the pinned signing key ${quote(row.kid)} does not match its stored public key; the database was edited`,
    );
  }
  const record: SigningKeyRecord = {
    kid: row.kid,
    domain: row.domain,
    custody: row.custody,
    algorithm: row.alg,
    publicJwk,
    status: row.status,
    createdAt: row.created_at,
  };
  if (row.token_label !== null) record.tokenLabel = row.token_label;
  if (row.key_label !== null) record.keyLabel = row.key_label;
  if (row.key_id !== null) record.keyId = row.key_id;
  if (row.not_after !== null) record.notAfter = row.not_after;
  if (row.retired_at !== null) record.retiredAt = row.retired_at;
  return record;
}

export interface NewSigningKey {
  domain: TokenDomain;
  custody: 'software' | 'pkcs11';
  publicJwk: PublicJwk;
  tokenLabel?: string;
  keyLabel?: string;
  keyId?: string;
}

export class SigningKeyRegistry {
  private readonly activeKidQuery;
  private readonly keyState;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
  ) {
    this.activeKidQuery = db.prepare<[string], { kid: string }>("SELECT kid FROM signing_keys WHERE domain = ? AND status = 'active'");
    this.keyState = db.prepare<[string], { status: SigningKeyStatus; not_after: number | null }>(
      'SELECT status, not_after FROM signing_keys WHERE kid = ?',
    );
  }

  active(domain: TokenDomain): SigningKeyRecord | undefined {
    const row = this.db.prepare<[string], Row>("SELECT * FROM signing_keys WHERE domain = ? AND status = 'active'").get(domain);
    return row === undefined ? undefined : toRecord(row);
  }

  /** The active key's kid only: read before every signature, so it is one indexed lookup. */
  activeKid(domain: TokenDomain): string | undefined {
    return this.activeKidQuery.get(domain)?.kid;
  }

  /**
   * Whether the key may sign now: it is its domain's active key, or it is still in its overlap
   * window for at least `reserveMs` more (what it signs — a token valid for up to the token
   * lifetime — must stay verifiable with the published keys). Never a key that is not published.
   */
  maySign(kid: string, now: number, reserveMs: number): boolean {
    const row = this.keyState.get(kid);
    if (row === undefined) return false;
    if (row.status === 'active') return true;
    return row.status === 'retiring' && row.not_after !== null && row.not_after - reserveMs >= now;
  }

  list(domain?: TokenDomain): SigningKeyRecord[] {
    const rows =
      domain === undefined
        ? this.db.prepare<[], Row>('SELECT * FROM signing_keys ORDER BY created_at, kid').all()
        : this.db.prepare<[string], Row>('SELECT * FROM signing_keys WHERE domain = ? ORDER BY created_at, kid').all(domain);
    return rows.map(toRecord);
  }

  /** Keys tool servers must trust now: the active one and those still in their overlap window. */
  published(domain: TokenDomain, now: number): PublicJwk[] {
    return this.list(domain)
      .filter((k) => k.status === 'active' || (k.status === 'retiring' && (k.notAfter ?? 0) > now))
      .map((k) => publicMembers(k.publicJwk));
  }

  /**
   * Pin a new key as the domain's active key. The previous active key (if any) stays published
   * until `now + overlapMs`, then retires. One transaction, audited.
   */
  activate(key: NewSigningKey, now: number, overlapMs: number): SigningKeyRecord {
    if (!Number.isSafeInteger(overlapMs) || overlapMs < 0)
      throw new CountersignError('config_invalid', 'the rotation overlap must be zero or more milliseconds');
    const kid = key.publicJwk.kid;
    return this.db
      .transaction(() => {
        if (this.db.prepare('SELECT 1 FROM signing_keys WHERE kid = ?').get(kid) !== undefined) {
          throw new CountersignError('config_invalid', `the signing key ${quote(kid)} is already registered`);
        }
        const previous = this.active(key.domain);
        if (previous !== undefined) {
          this.db.prepare("UPDATE signing_keys SET status = 'retiring', not_after = ? WHERE kid = ?").run(now + overlapMs, previous.kid);
        }
        this.db
          .prepare(
            `INSERT INTO signing_keys (kid, domain, custody, alg, public_jwk, token_label, key_label, key_id, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)`,
          )
          .run(
            kid,
            key.domain,
            key.custody,
            key.publicJwk.alg,
            JSON.stringify(publicMembers(key.publicJwk)),
            key.tokenLabel ?? null,
            key.keyLabel ?? null,
            key.keyId ?? null,
            now,
          );
        const event: AuditEventFields<'signing_key.activated'> = { kid, domain: key.domain, custody: key.custody, alg: key.publicJwk.alg };
        if (key.tokenLabel !== undefined) event.tokenLabel = key.tokenLabel;
        if (key.keyLabel !== undefined) event.keyLabel = key.keyLabel;
        if (previous === undefined) this.audit.append('signing_key.activated', now, event);
        else this.audit.append('signing_key.rotated', now, { ...event, previous: { kid: previous.kid, publishedUntil: now + overlapMs } });
        return this.active(key.domain)!;
      })
      .immediate();
  }

  /** Retire keys whose overlap window has ended; returns their kids. */
  retireExpired(now: number): string[] {
    return this.db
      .transaction(() => {
        const due = this.db
          .prepare<[number], { kid: string; domain: string }>(
            "SELECT kid, domain FROM signing_keys WHERE status = 'retiring' AND not_after <= ?",
          )
          .all(now);
        for (const { kid, domain } of due) {
          this.db.prepare("UPDATE signing_keys SET status = 'retired', retired_at = ? WHERE kid = ?").run(now, kid);
          this.audit.append('signing_key.retired', now, { kid, domain });
        }
        return due.map((d) => d.kid);
      })
      .immediate();
  }

  /** When the key last signed a token that was released (from the token table). */
  lastSignatureAt(kid: string): number | undefined {
    const row = this.db.prepare<[string], { at: number | null }>('SELECT MAX(issued_at) AS at FROM tokens WHERE kid = ?').get(kid);
    return row?.at ?? undefined;
  }
}

/**
 * The shortest overlap a rotation may have: a token signed by the old key just before the
 * rotation stays valid for the token lifetime, and tool servers' clocks and cached JWKS
 * (`cache-control: max-age=60`) lag by up to a minute more.
 */
export const JWKS_CACHE_MS = 60_000;
export function minimumOverlapMs(tokenTtlSeconds: number): number {
  return tokenTtlSeconds * 1000 + JWKS_CACHE_MS;
}

function publicMembers(jwk: PublicJwk): PublicJwk {
  const { kty, crv, x, y, kid, alg } = jwk;
  return y === undefined ? { kty, crv, x, kid, alg, use: 'sig' } : { kty, crv, x, y, kid, alg, use: 'sig' };
}

/** A key's window from its registry row: a retired row without an overlap end ends at its retirement. */
export function historicKey(record: SigningKeyRecord): HistoricKey {
  const end = record.status === 'active' ? undefined : (record.notAfter ?? record.retiredAt ?? record.createdAt);
  return { kid: record.kid, publicJwk: record.publicJwk, activeFrom: record.createdAt, ...(end === undefined ? {} : { activeUntil: end }) };
}
