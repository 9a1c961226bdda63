/**
 * The team's custody keys in team mode (ADR 0014): every hub of one database signs with ONE key
 * held in the shared PKCS#11 token (a network HSM; each hub opens its own sessions), and serves the
 * team's published keys in its JWKS. The key set lives in PostgreSQL (`team_signing_keys`,
 * migration 4) and moves only forward:
 *
 *   published --(sign_from passed)--> active --(the next key activated)--> retiring --(published_until passed)--> retired
 *
 * A rotation generates the new key in the HSM and publishes it first: every hub learns of it by
 * LISTEN/NOTIFY and serves it in its JWKS at once; no hub may sign with it before `sign_from`
 * (now + team.keyPublishLeadMs, so tool servers have fetched it), which the database itself checks
 * (`activated_at >= sign_from`). Then any hub activates it (the first to notice; one transaction
 * under an advisory lock), the old key stays published until every token it signed has expired,
 * then retires. The signing point (AdoptingCustody.forSignature) asks `maySign` of this set before
 * every signature: a kid that is not the team's active key, or a retiring key still published for
 * longer than a token lives, is never used. Every step is a team audit record naming its hub.
 *
 * The hub's data directory keeps its own key registry (keys/signing-keys.ts) for its local audit
 * log's key history; `follow` mirrors the team's active key into it before the hub may adopt it,
 * so the pinning entry always precedes the first local checkpoint the key signs.
 */
import pg from 'pg';
import type { TokenDomain } from '../../../shared/approval-token.js';
import type { AuditEventFields, AuditKind } from '../../../shared/audit-events.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { jwkThumbprint, verifyWithJwk, type PublicJwk, type SigningAlgorithm } from '../custody/signer.js';
import type { Pkcs11Config } from '../config.js';
import type { ResolvedDatabaseConfig } from '../store/pg/pg-config.js';
import { submitTeamAudit } from '../store/pg/pg-audit-submissions.js';
import { migrateTeamDatabase } from '../store/pg/pg-decision-store.js';
import { checkOut, storeError } from '../store/pg/pg-errors.js';
import { PgListener } from '../store/pg/pg-listener.js';
import { PG_LOCKS } from '../store/pg/pg-locks.js';
import type { SigningKeyRecord, SigningKeyRegistry } from './signing-keys.js';
import { defaultOpenToken, newPkcs11KeyName } from './open-custody.js';

export const KEYS_CHANNEL = 'countersign_keys';
/** The advisory transaction lock every change of the key set runs under. */
const KEYS_LOCK = PG_LOCKS.teamKeys;

export type TeamKeyState = 'published' | 'active' | 'retiring' | 'retired';

export interface TeamKeyRecord {
  kid: string;
  domain: TokenDomain;
  algorithm: SigningAlgorithm;
  publicJwk: PublicJwk;
  tokenLabel: string;
  keyLabel: string;
  /** CKA_ID, hex. */
  keyId: string;
  state: TeamKeyState;
  publishedAt: number;
  publishedBy: string;
  /** No hub signs with the key before this time. */
  signFrom: number;
  activatedAt?: number;
  activatedBy?: string;
  /** Retiring: the key stays in every JWKS until then. */
  publishedUntil?: number;
  retiredAt?: number;
  retiredBy?: string;
}

/** A key made in the HSM, to be published: where it lives and its public half. */
export interface NewTeamKey {
  publicJwk: PublicJwk;
  tokenLabel: string;
  keyLabel: string;
  keyId: string;
}

interface Row {
  kid: string;
  domain: TokenDomain;
  alg: SigningAlgorithm;
  public_jwk: string;
  token_label: string;
  key_label: string;
  key_id: string;
  state: TeamKeyState;
  published_at: string;
  published_by: string;
  sign_from: string;
  activated_at: string | null;
  activated_by: string | null;
  published_until: string | null;
  retired_at: string | null;
  retired_by: string | null;
}

function toRecord(row: Row): TeamKeyRecord {
  const publicJwk = parseStrictJson(row.public_jwk) as unknown as PublicJwk;
  // The kid is the public key's thumbprint: a row whose key was swapped under a kid (an edit of
  // the database) must never be served or signed with.
  if (jwkThumbprint(publicJwk) !== row.kid || publicJwk.kid !== row.kid || publicJwk.alg !== row.alg) {
    throw new CountersignError(
      'hsm_key_mismatch',
      `the team signing key ${quote(row.kid)} does not match its stored public key; the team database was edited`,
    );
  }
  const record: TeamKeyRecord = {
    kid: row.kid,
    domain: row.domain,
    algorithm: row.alg,
    publicJwk,
    tokenLabel: row.token_label,
    keyLabel: row.key_label,
    keyId: row.key_id,
    state: row.state,
    publishedAt: Number(row.published_at),
    publishedBy: row.published_by,
    signFrom: Number(row.sign_from),
  };
  if (row.activated_at !== null) record.activatedAt = Number(row.activated_at);
  if (row.activated_by !== null) record.activatedBy = row.activated_by;
  if (row.published_until !== null) record.publishedUntil = Number(row.published_until);
  if (row.retired_at !== null) record.retiredAt = Number(row.retired_at);
  if (row.retired_by !== null) record.retiredBy = row.retired_by;
  return record;
}

function publicMembers(jwk: PublicJwk): PublicJwk {
  const { kty, crv, x, y, kid, alg } = jwk;
  return y === undefined ? { kty, crv, x, kid, alg, use: 'sig' } : { kty, crv, x, y, kid, alg, use: 'sig' };
}

export interface TeamKeySetOptions {
  database: ResolvedDatabaseConfig;
  hub: string;
  domain: TokenDomain;
  now: () => number;
  /** How long a new key is published before any hub signs with it (team.keyPublishLeadMs). */
  publishLeadMs: number;
  /** How long a replaced key stays published: at least the token lifetime plus the JWKS cache. */
  retireOverlapMs: number;
  onError?: (message: string) => void;
}

export class TeamKeySet {
  private readonly pool: pg.Pool;
  private listener: PgListener | undefined;
  private keys: readonly TeamKeyRecord[] = [];
  private follower: ((keys: readonly TeamKeyRecord[]) => void) | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private closed = false;
  private readonly served = new Set<string>();
  private readonly changed = new Set<() => void>();
  private readonly onError: (message: string) => void;

  private constructor(private readonly options: TeamKeySetOptions) {
    // Two connections: the key set changes rarely; the listener holds one more.
    this.pool = new pg.Pool({ ...options.database.pool, max: 2 });
    this.pool.on('error', (error) => this.onError(`a team key set database connection failed: ${error.message}`));
    // eslint-disable-next-line no-console -- default sink when the caller injects none
    this.onError = options.onError ?? ((message) => console.warn(message));
  }

  /** Connect (migrating the database if this is its first user), listen for changes, read the set. */
  static async open(options: TeamKeySetOptions): Promise<TeamKeySet> {
    const set = new TeamKeySet(options);
    try {
      await migrateTeamDatabase(set.pool);
      await set.listen(); // and the first read of the set
    } catch (error) {
      await set.close();
      throw storeError(error, 'reading the team signing keys');
    }
    return set;
  }

  get hub(): string {
    return this.options.hub;
  }

  /** Every key of the domain, oldest first. */
  list(): readonly TeamKeyRecord[] {
    return this.keys;
  }

  has(kid: string): boolean {
    return this.keys.some((k) => k.kid === kid);
  }

  active(): TeamKeyRecord | undefined {
    return this.keys.find((k) => k.state === 'active');
  }

  /** The team's signing key: what AdoptingCustody adopts (the argument is the domain this set is for). */
  activeKid(domain: TokenDomain): string | undefined {
    return domain === this.options.domain ? this.active()?.kid : undefined;
  }

  /**
   * Whether `kid` may sign now: the team's active key, or a retiring key that stays published
   * for at least `reserveMs` more. Never a key that is only published (its sign_from may not have
   * passed on every tool server), retired, or not in the team's set at all.
   */
  maySign(kid: string, now: number, reserveMs: number): boolean {
    const key = this.keys.find((k) => k.kid === kid);
    if (key === undefined) return false;
    if (key.state === 'active') return now >= key.signFrom;
    return key.state === 'retiring' && key.publishedUntil !== undefined && key.publishedUntil - reserveMs >= now;
  }

  /** What every hub's JWKS serves: keys published for a rotation, the active key, retiring keys still in their overlap. */
  published(now: number): PublicJwk[] {
    return this.keys
      .filter((k) => k.state === 'published' || k.state === 'active' || (k.state === 'retiring' && (k.publishedUntil ?? 0) > now))
      .map((k) => publicMembers(k.publicJwk));
  }

  /**
   * Call `follower` with the set now and after every change, before the change takes effect here
   * (if it throws, this hub keeps the set it had and tries again at the next change or refresh).
   */
  follow(follower: (keys: readonly TeamKeyRecord[]) => void): void {
    follower(this.keys);
    this.follower = follower;
  }

  /** Told after each change of the set has taken effect (tests, health). Returns the unsubscribe. */
  onChanged(listener: () => void): () => void {
    this.changed.add(listener);
    return () => this.changed.delete(listener);
  }

  /** The hubs that have served each key in their JWKS, and since when. */
  async servingHubs(kid: string): Promise<Array<{ hub: string; since: number }>> {
    const { rows } = await this.pool.query<{ hub: string; serving_since: string }>(
      'SELECT hub, serving_since FROM team_signing_key_hubs WHERE kid = $1 ORDER BY serving_since, hub',
      [kid],
    );
    return rows.map((r) => ({ hub: r.hub, since: Number(r.serving_since) }));
  }

  /**
   * The first hub of a team publishes its pinned key as the team's active key (nothing was
   * signed with another team key before, so there is nothing to overlap). Returns the team's
   * active key afterwards, which is another hub's when one got there first.
   */
  async publishFirst(key: NewTeamKey): Promise<TeamKeyRecord | undefined> {
    const now = this.options.now();
    await this.change(async (client) => {
      const existing = await client.query('SELECT 1 FROM team_signing_keys WHERE domain = $1 LIMIT 1', [this.options.domain]);
      if (existing.rowCount !== 0) return;
      await this.insert(client, key, 'active', now, now);
      await this.submitAudit(client, 'team_key.published', now, { ...this.keyEvent(key), hub: this.hub, signFrom: now });
      await this.submitAudit(client, 'team_key.activated', now, { kid: key.publicJwk.kid, domain: this.options.domain, hub: this.hub });
    });
    return this.active();
  }

  /**
   * Publish a rotated-in key: served by every hub from now on, signed with by none before
   * now + publishLeadMs. One rotation at a time per domain.
   */
  async publishRotation(key: NewTeamKey): Promise<TeamKeyRecord> {
    const now = this.options.now();
    const signFrom = now + this.options.publishLeadMs;
    await this.change(async (client) => {
      const waiting = await client.query<{ kid: string }>(
        "SELECT kid FROM team_signing_keys WHERE domain = $1 AND state IN ('published', 'active') ORDER BY state",
        [this.options.domain],
      );
      if (waiting.rows.some((r) => r.kid === key.publicJwk.kid))
        throw new CountersignError('config_invalid', `the signing key ${quote(key.publicJwk.kid)} is already one of the team's keys`);
      if (waiting.rows.length !== 1)
        throw new CountersignError(
          'config_invalid',
          `the ${this.options.domain} domain ${waiting.rows.length === 0 ? 'has no team key to rotate' : 'already has a rotation waiting to take effect'}; nothing was published`,
        );
      await this.insert(client, key, 'published', now, signFrom);
      await this.submitAudit(client, 'team_key.published', now, { ...this.keyEvent(key), hub: this.hub, signFrom });
    });
    const published = this.keys.find((k) => k.kid === key.publicJwk.kid);
    if (published === undefined) throw new CountersignError('store_failed', 'the published key was not read back');
    return published;
  }

  /**
   * Move the set on in time: a published key whose sign_from passed becomes active (the active
   * one retiring, published until the tokens it signed expired); retiring keys past their
   * overlap retire. Any hub may do it; the first to get the lock does. Cheap when nothing is due.
   */
  async advance(): Promise<void> {
    const now = this.options.now();
    const due = this.keys.some(
      (k) => (k.state === 'published' && k.signFrom <= now) || (k.state === 'retiring' && (k.publishedUntil ?? 0) <= now),
    );
    if (!due) return;
    await this.change(async (client) => {
      const { rows } = await client.query<Row>('SELECT * FROM team_signing_keys WHERE domain = $1 ORDER BY published_at, kid', [
        this.options.domain,
      ]);
      const keys = rows.map(toRecord);
      const next = keys.find((k) => k.state === 'published' && k.signFrom <= now);
      if (next !== undefined) {
        const current = keys.find((k) => k.state === 'active');
        const publishedUntil = now + this.options.retireOverlapMs;
        if (current !== undefined)
          await client.query("UPDATE team_signing_keys SET state = 'retiring', published_until = $2 WHERE kid = $1", [
            current.kid,
            publishedUntil,
          ]);
        await client.query("UPDATE team_signing_keys SET state = 'active', activated_at = $2, activated_by = $3 WHERE kid = $1", [
          next.kid,
          now,
          this.hub,
        ]);
        await this.submitAudit(client, 'team_key.activated', now, {
          kid: next.kid,
          domain: this.options.domain,
          hub: this.hub,
          ...(current === undefined ? {} : { previous: { kid: current.kid, publishedUntil } }),
        });
      }
      for (const key of keys.filter((k) => k.state === 'retiring' && (k.publishedUntil ?? 0) <= now)) {
        await client.query("UPDATE team_signing_keys SET state = 'retired', retired_at = $2, retired_by = $3 WHERE kid = $1", [
          key.kid,
          now,
          this.hub,
        ]);
        await this.submitAudit(client, 'team_key.retired', now, { kid: key.kid, domain: this.options.domain, hub: this.hub });
      }
    });
  }

  /** Re-read the set (after a notification, or a listener reconnect). Serialized; coalesced. */
  refresh(): Promise<void> {
    if (this.refreshing !== undefined) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.refreshAgain = false;
          await this.readOnce();
        } while (this.refreshAgain);
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private async readOnce(): Promise<void> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM team_signing_keys WHERE domain = $1 ORDER BY published_at, kid', [
      this.options.domain,
    ]);
    const keys = rows.map(toRecord);
    // The follower (the hub's local key registry) sees the change first: if it cannot, this hub
    // keeps serving and signing with what it had; the listener tries the read again (backoff).
    this.follower?.(keys);
    this.keys = keys;
    for (const listener of this.changed) listener();
    await this.recordServing(this.published(this.options.now()).map((k) => k.kid));
  }

  /** Note (once per key) that this hub now serves it: the team can see which hubs publish a key. */
  private async recordServing(kids: string[]): Promise<void> {
    const fresh = kids.filter((kid) => !this.served.has(kid));
    if (fresh.length === 0) return;
    await this.pool.query(
      'INSERT INTO team_signing_key_hubs (kid, hub, serving_since) SELECT unnest($1::text[]), $2, $3 ON CONFLICT DO NOTHING',
      [fresh, this.hub, this.options.now()],
    );
    for (const kid of fresh) this.served.add(kid);
  }

  /** One change of the set: a transaction under the key set's lock, a notification at commit, then a re-read. */
  private async change(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    // Listening from the moment it is handed out: a dropped connection rejects the running query.
    const ignore = () => undefined;
    const client = await checkOut(this.pool, ignore).catch((error: unknown) => {
      throw storeError(error, 'changing the team signing keys');
    });
    let failed: unknown;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [KEYS_LOCK]);
      await work(client);
      await client.query('SELECT pg_notify($1, $2)', [KEYS_CHANNEL, this.options.domain]);
      await client.query('COMMIT');
    } catch (error) {
      failed = error;
      await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      client.off('error', ignore);
      client.release(failed !== undefined && !(failed instanceof CountersignError) ? (failed as Error) : undefined);
    }
    if (failed !== undefined) throw storeError(failed, 'changing the team signing keys');
    await this.refresh();
  }

  private async insert(client: pg.PoolClient, key: NewTeamKey, state: 'published' | 'active', now: number, signFrom: number) {
    const jwk = publicMembers(key.publicJwk);
    if (jwkThumbprint(jwk) !== jwk.kid) throw new CountersignError('hsm_key_mismatch', 'the key to publish does not match its kid');
    await client.query(
      `INSERT INTO team_signing_keys (kid, domain, alg, public_jwk, token_label, key_label, key_id, state, published_at, published_by, sign_from, activated_at, activated_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        jwk.kid,
        this.options.domain,
        jwk.alg,
        JSON.stringify(jwk),
        key.tokenLabel,
        key.keyLabel,
        key.keyId,
        state,
        now,
        this.hub,
        signFrom,
        state === 'active' ? now : null,
        state === 'active' ? this.hub : null,
      ],
    );
  }

  private keyEvent(key: NewTeamKey): Omit<AuditEventFields<'team_key.published'>, 'hub' | 'signFrom'> {
    return {
      kid: key.publicJwk.kid,
      domain: this.options.domain,
      custody: 'pkcs11',
      alg: key.publicJwk.alg,
      tokenLabel: key.tokenLabel,
      keyLabel: key.keyLabel,
    };
  }

  /** A team audit record in the transaction of the change (the audit leader sequences it). */
  private submitAudit<K extends AuditKind>(client: pg.PoolClient, kind: K, at: number, fields: AuditEventFields<K>): Promise<void> {
    return submitTeamAudit(client, this.hub, kind, at, fields);
  }

  // ---- the change listener: one connection, re-established after a database restart ----

  private listen(): Promise<void> {
    this.listener = new PgListener({
      connection: this.options.database.pool,
      channel: KEYS_CHANNEL,
      name: 'the team signing keys',
      onNotify: (domain) => {
        if (domain === this.options.domain) void this.listener?.catchUp();
      },
      // Changes made while no listener was connected were not heard; a read that fails (or whose
      // follower refuses it) leaves this hub on the set it had, so PgListener tries it again.
      onConnected: () => this.refresh(),
      onError: this.onError,
    });
    return this.listener.start();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener?.close();
    await this.refreshing?.catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * Join the team's key set at a hub's start (custody.pkcs11 in team mode), before the custody key
 * is opened. The first hub of a team publishes the PKCS#11 key its data directory pins (made by
 * `countersign keys init`) as the team's key; every other hub signs with the team's active key,
 * which its data directory then pins too (openCustody opens it from the hub's own token sessions
 * and checks the token's key against it: hsm_key_mismatch / hsm_key_not_found). A hub whose data
 * directory pins a PKCS#11 key that is not one of the team's refuses to start (hsm_key_mismatch).
 */
export async function joinTeamKeys(options: TeamKeySetOptions & { registry: SigningKeyRegistry }): Promise<TeamKeySet> {
  const { registry, domain } = options;
  const set = await TeamKeySet.open(options);
  try {
    const local = registry.active(domain);
    if (set.active() === undefined && !set.list().some((k) => k.state === 'published')) {
      if (local?.custody !== 'pkcs11')
        throw new CountersignError(
          'hsm_key_not_found',
          `the team has no ${domain} signing key yet and this hub's data directory pins no PKCS#11 key; run countersign keys init${domain === 'test' ? ' --domain test' : ''} on this hub: the first hub publishes its key to the team`,
        );
      await set.publishFirst(teamKeyOf(local));
    }
    const team = set.active();
    if (team === undefined)
      throw new CountersignError('hsm_key_not_found', `the team's ${domain} key set has no active key; nothing can be signed`);
    if (local?.custody === 'pkcs11' && local.kid !== team.kid && !set.has(local.kid))
      throw new CountersignError(
        'hsm_key_mismatch',
        `this hub's data directory pins the ${domain} key ${quote(local.kid)}, which is not one of the team's keys (the team signs with ${quote(team.kid)}); refusing to start rather than sign with another key`,
      );
    set.follow((keys) => mirrorTeamActive(registry, keys, domain, options.now(), options.retireOverlapMs));
    return set;
  } catch (error) {
    await set.close();
    throw error;
  }
}

function teamKeyOf(local: SigningKeyRecord): NewTeamKey {
  if (local.tokenLabel === undefined || local.keyLabel === undefined || local.keyId === undefined)
    throw new CountersignError('hsm_key_not_found', `the pinned key ${quote(local.kid)} has no PKCS#11 token, label and id`);
  return { publicJwk: local.publicJwk, tokenLabel: local.tokenLabel, keyLabel: local.keyLabel, keyId: local.keyId };
}

/**
 * Pin the team's active key in the hub's own registry (audited in its local log as
 * signing_key.activated / rotated) when it is not pinned there yet; the key it replaces stays
 * published there as long as the team publishes it.
 */
export function mirrorTeamActive(
  registry: SigningKeyRegistry,
  keys: readonly TeamKeyRecord[],
  domain: TokenDomain,
  now: number,
  /** How long a replaced key the team never had (a software key of a first run) stays published here. */
  overlapMs: number,
): void {
  const team = keys.find((k) => k.state === 'active');
  if (team === undefined) return;
  const local = registry.active(domain);
  if (local?.kid === team.kid) return;
  const replaced = local === undefined ? undefined : keys.find((k) => k.kid === local.kid);
  registry.activate(
    { domain, custody: 'pkcs11', publicJwk: team.publicJwk, tokenLabel: team.tokenLabel, keyLabel: team.keyLabel, keyId: team.keyId },
    now,
    replaced?.publishedUntil === undefined ? overlapMs : Math.max(0, replaced.publishedUntil - now),
  );
}

/**
 * Start a coordinated rotation: generate a new non-extractable key in the team's HSM (through this
 * hub's token configuration), check it signs and verifies, and publish it to the team's key set.
 * Hubs serve it at once and sign with it from its sign_from on.
 */
export async function rotateTeamKey(
  set: TeamKeySet,
  pkcs11: Pkcs11Config,
  options: { domain: TokenDomain; algorithm?: SigningAlgorithm; now: () => number; log: (message: string) => void },
): Promise<TeamKeyRecord> {
  const algorithm = options.algorithm ?? set.active()?.algorithm ?? 'ES256';
  // Refused before a key is made in the HSM when this hub already knows of a waiting rotation (the
  // database checks again when publishing).
  const waiting = set.list().find((k) => k.state === 'published');
  if (waiting !== undefined)
    throw new CountersignError(
      'config_invalid',
      `the ${options.domain} domain already has a rotation waiting to take effect (${quote(waiting.kid)}); nothing was published`,
    );
  const token = await defaultOpenToken(pkcs11, options.log);
  try {
    const now = options.now();
    const name = newPkcs11KeyName(options.domain, now);
    const publicJwk = await token.generateSigningKey({ label: name.label, id: name.id, algorithm });
    const signer = await token.openSigner({ label: name.label, id: name.id, algorithm, pinnedKid: publicJwk.kid });
    const probe = new TextEncoder().encode(`countersign team key ceremony ${options.domain} ${publicJwk.kid} ${now}`);
    if (!verifyWithJwk(publicJwk, probe, await signer.sign(probe)))
      throw new CountersignError('signer_failed', 'the new key did not produce a signature that verifies; it was not published');
    const tokenLabel = pkcs11.tokenLabel ?? `slot ${pkcs11.slot ?? ''}`;
    return await set.publishRotation({ publicJwk, tokenLabel, keyLabel: name.label, keyId: name.id });
  } finally {
    await token.close();
  }
}
