/**
 * Approvers and their WebAuthn credentials: who may approve, in which groups, with which
 * security keys. Registration is a real WebAuthn ceremony (@simplewebauthn/server): user
 * verification required, attestation verified and stored as evidence, and an attestation policy
 * (allowed AAGUIDs; the project's virtual authenticator only for virtual approvers in the
 * headless test key domain). Every change is audited in the same transaction.
 *
 * One approver record is one person. Other handles of that person (emails, chat handles) are
 * aliases: unique across people and their ids, compared without case, so a handle names at most
 * one person (identity/people.ts resolves them for owners and conflict checks).
 */
import type { TeamTap } from '../store/pg/pg-directory.js';
import type pg from 'pg';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
// @simplewebauthn/server is imported when a ceremony needs it, not at start: with its helpers it
// is about 20 MB of a server's memory that only key registrations and taps use (issue #12).
import type { PublicKeyCredentialCreationOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { webauthnHelpers, webauthnServer } from './webauthn-library.js';
import { z } from 'zod';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isVirtualAuthenticatorAaguid } from './virtual-authenticator-aaguid.js';
import { isPlatformRegistration } from '../../../shared/authenticators.js';
import { clientDataChallenge } from './client-data.js';
import type { ApproverDirectory as PublishedDirectory } from '../../../shared/approvals.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { ADMIN_GROUP_NAME } from '../../../shared/bridge.js';
import { base64url } from '../../../shared/encoding.js';
import { canonicalize, parseStrictJson } from '../../../shared/canonical-json.js';
import type { TeamChallenges } from '../store/pg/pg-challenges.js';
import type { TokenDomain } from '../../../shared/approval-token.js';
import { PERSON_HANDLE_PATTERN, normalizeHandle, resolvePerson, type ResolvedPerson } from '../identity/people.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';
import { cachedStatement } from '../store/statement-cache.js';

export interface ApproverRecord {
  id: string;
  displayName: string;
  groups: string[];
  virtual: boolean;
  status: 'active' | 'disabled';
  createdAt: number;
}

/** A new approver as an admin, the CLI or the first run asks for it. */
export interface NewApprover {
  id: string;
  displayName: string;
  groups: string[];
  virtual?: boolean;
  aliases?: string[];
}

export interface CredentialRecord {
  credentialId: string;
  approverId: string;
  /** COSE public key, base64url. */
  publicKey: string;
  publicJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  signCount: number;
  aaguid: string;
  attestationFmt: string;
  transports: string[];
  status: 'active' | 'suspect' | 'removed';
  createdAt: number;
  lastUsedAt?: number;
}

export interface ApproverDirectoryOptions {
  domain: TokenDomain;
  rpId: string;
  rpName?: string;
  /** Exact origins ceremonies may come from (a function: the port is known only once bound). */
  origins: string[] | (() => string[]);
  /** Accept only these AAGUIDs (lowercase UUIDs); empty: any attested authenticator. */
  requireAaguids: string[];
  ceremonyTimeoutMs: number;
  /**
   * Require a single-use registration code (issued by an admin action or on the machine with
   * the CLI) to register a key, so holding the UI session is not enough to add a key to
   * someone else's name. The app turns this on; unit tests of the ceremony itself may not.
   */
  requireRegistrationCode?: boolean;
  now?: () => number;
}

/**
 * A team hub's writes of approver state (approvals/team-approvers.ts, ADR 0013): the directory's
 * own ceremonies (a key's registration, a key taken out of service) commit there, for every hub.
 */
export interface TeamApproverWrites {
  /** Store a verified key with its audit record, spending its registration code, in the team directory; the key as committed. */
  registerCredential(
    row: CredentialRow,
    codeHash: string | undefined,
    event: AuditEventFields<'approver.credential_registered'>,
  ): Promise<CredentialRecord>;
  /**
   * A desk sign-in's tap, checked in the team directory (the approver active, the key theirs and
   * active, as every hub has them now) with the team's counter advanced; records no change.
   */
  checkSignIn(tap: TeamTap, open?: (client: pg.ClientBase, approver: ApproverRecord) => Promise<void>): Promise<ApproverRecord>;
  /** Mark a key suspect (its counter went backwards) for every hub, audited. */
  markSuspect(credentialId: string, approverId: string, stored: number, reported: number): Promise<void>;
}

/** How long an issued registration code stays usable. */
export const REGISTRATION_CODE_TTL_MS = 24 * 3600 * 1000;

export interface ApproverRow {
  id: string;
  display_name: string;
  groups_json: string;
  virtual: number;
  status: 'active' | 'disabled';
  created_at: number;
}
export interface CredentialRow {
  credential_id: string;
  approver_id: string;
  public_key: string;
  public_jwk: string;
  sign_count: number;
  aaguid: string;
  attestation_fmt: string;
  transports: string;
  status: 'active' | 'suspect' | 'removed';
  created_at: number;
  last_used_at: number | null;
  /** Present in a registration's row image (evidence); not read back by this class. */
  attestation_object?: string;
}

/**
 * Authenticator models that are software test doubles: refused in the production key domain
 * whatever the AAGUID allowlist says. Chromium's CDP virtual authenticator attests with this one.
 */
export const KNOWN_TEST_AUTHENTICATOR_AAGUIDS: readonly string[] = ['01020304-0506-0708-0102-030405060708'];

const ID_PATTERN = PERSON_HANDLE_PATTERN;
const GROUP_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function hashCode(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex');
}

function toApprover(row: ApproverRow): ApproverRecord {
  return {
    id: row.id,
    displayName: row.display_name,
    groups: parseStrictJson(row.groups_json) as string[],
    virtual: row.virtual === 1,
    status: row.status,
    createdAt: row.created_at,
  };
}

function toCredential(row: CredentialRow): CredentialRecord {
  const record: CredentialRecord = {
    credentialId: row.credential_id,
    approverId: row.approver_id,
    publicKey: row.public_key,
    publicJwk: parseStrictJson(row.public_jwk) as unknown as CredentialRecord['publicJwk'],
    signCount: row.sign_count,
    aaguid: row.aaguid,
    attestationFmt: row.attestation_fmt,
    transports: parseStrictJson(row.transports) as string[],
    status: row.status,
    createdAt: row.created_at,
  };
  if (row.last_used_at !== null) record.lastUsedAt = row.last_used_at;
  return record;
}

/**
 * An approver as a committed team directory row image has it (the replica's columns): what a team
 * write answers with, so a replica that has not applied it yet cannot turn it into an error.
 */
export function approverFromRowImage(row: Readonly<Record<string, string | number | null>>): ApproverRecord {
  return toApprover(row as unknown as ApproverRow);
}

/** A security key as a committed team directory row image has it. */
export function credentialFromRowImage(row: Readonly<Record<string, string | number | null>>): CredentialRecord {
  return toCredential(row as unknown as CredentialRow);
}

/** last_admin for disabling `id`, the last active admin (embedded and team directories alike). */
export function lastActiveAdmin(id: string): CountersignError {
  return new CountersignError('last_admin', `${quote(id)} is the last active admin; add another admin before disabling them`);
}

/** A P-256 COSE key as a JWK (the only algorithm approver keys may use: ES256). */
async function coseToJwk(publicKey: Uint8Array): Promise<CredentialRecord['publicJwk']> {
  const { decodeCredentialPublicKey, cose } = await webauthnHelpers();
  const key = decodeCredentialPublicKey(new Uint8Array(publicKey)) as unknown as Map<number, unknown>;
  const kty = key.get(cose.COSEKEYS.kty);
  const crv = key.get(cose.COSEKEYS.crv);
  const x = key.get(cose.COSEKEYS.x);
  const y = key.get(cose.COSEKEYS.y);
  if (kty !== cose.COSEKTY.EC2 || crv !== cose.COSECRV.P256 || !(x instanceof Uint8Array) || !(y instanceof Uint8Array)) {
    throw new CountersignError('attestation_refused', 'approver keys must be P-256 (ES256) keys');
  }
  const jwk = { kty: 'EC' as const, crv: 'P-256' as const, x: base64url(x), y: base64url(y) };
  createPublicKey({ key: jwk, format: 'jwk' }); // a point not on the curve fails here
  return jwk;
}

/** A team registration challenge's record: the hash of the code it was begun with (none where no code is required). */
const registrationRecordSchema = z.strictObject({
  codeHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});

export class ApproverDirectory {
  private readonly now: () => number;
  /**
   * The registration code each open registration challenge was started with (hash): the code is
   * spent only when a key is stored, so a refused or cancelled attempt does not burn it. Kept in
   * memory: a challenge outlives no restart in practice (its ceremony timeout), and one whose
   * code is not found here fails closed.
   */
  private readonly codeOfChallenge = new Map<string, { codeHash: string; expiresAt: number }>();
  private teamWrites: TeamApproverWrites | undefined;
  private teamCeremonies: TeamChallenges | undefined;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    private readonly options: ApproverDirectoryOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Team mode (ADR 0013): this directory's tables are a replica of the team directory, written
   * only by its applier. The synchronous writers here refuse (a local-only write would hold on
   * one hub alone); writes go through TeamApprovers, and a key registered here is stored there.
   */
  useTeamDirectory(team: TeamApproverWrites): void {
    this.teamWrites = team;
  }

  /**
   * A team hub (docs/team-mode.md "One origin, any hub"): every ceremony's challenge (approval,
   * admin, registration, desk sign-in) is kept in the team database, so any hub finishes it.
   */
  useTeamChallenges(challenges: TeamChallenges): void {
    this.teamCeremonies = challenges;
  }

  /** Where ceremony challenges live on a team hub (undefined: this data directory's SQLite). */
  get teamChallenges(): TeamChallenges | undefined {
    return this.teamCeremonies;
  }

  /** The team directory's writes, on a team hub (and the CLI with --database). */
  get team(): TeamApproverWrites | undefined {
    return this.teamWrites;
  }

  private assertLocalWrites(): void {
    if (this.teamWrites !== undefined)
      throw new CountersignError(
        'internal_error',
        'this hub keeps a replica of the team directory: write approvers through the team database',
      );
  }

  /** The embedded mode's clock (the team writer stamps its changes with it too). */
  clock(): number {
    return this.now();
  }

  get domain(): TokenDomain {
    return this.options.domain;
  }

  get rpId(): string {
    return this.options.rpId;
  }

  get origins(): readonly string[] {
    const { origins } = this.options;
    return typeof origins === 'function' ? origins() : origins;
  }

  /** The person a handle (approver id in any case, or alias) names, if any. */
  resolvePerson(handle: string): ResolvedPerson | undefined {
    return resolvePerson(this.db, handle);
  }

  /** The aliases of a person, sorted. */
  aliasesOf(approverId: string): string[] {
    return this.db
      .prepare<[string], { alias: string }>('SELECT alias FROM approver_aliases WHERE approver_id = ? ORDER BY alias')
      .all(approverId)
      .map((r) => r.alias);
  }

  /** Give a person another handle (stored lowercase). Refused if any person already has it. */
  addAlias(approverId: string, alias: string): void {
    this.assertLocalWrites();
    const key = this.checkHandle(alias, 'alias');
    const now = this.now();
    this.db
      .transaction(() => {
        const approver = this.get(approverId);
        this.assertHandleFree(key, 'alias');
        this.db.prepare('INSERT INTO approver_aliases (alias, approver_id, created_at) VALUES (?, ?, ?)').run(key, approver.id, now);
        this.audit.append('approver.alias_added', now, { approverId: approver.id, alias: key });
      })
      .immediate();
  }

  removeAlias(approverId: string, alias: string): void {
    this.assertLocalWrites();
    const key = typeof alias === 'string' ? normalizeHandle(alias) : '';
    const now = this.now();
    this.db
      .transaction(() => {
        const approver = this.get(approverId);
        const removed = this.db.prepare('DELETE FROM approver_aliases WHERE alias = ? AND approver_id = ?').run(key, approver.id).changes;
        if (removed !== 1) throw new CountersignError('approver_unknown', `approver ${quote(approver.id)} has no alias ${quote(alias)}`);
        this.audit.append('approver.alias_removed', now, { approverId: approver.id, alias: key });
      })
      .immediate();
  }

  checkHandle(handle: string, what: 'id' | 'alias'): string {
    if (typeof handle !== 'string' || !ID_PATTERN.test(handle.trim())) {
      throw new CountersignError(
        'config_invalid',
        `the approver ${what} ${quote(String(handle))} must be 1-128 letters, digits or . _ @ + -`,
      );
    }
    return normalizeHandle(handle);
  }

  /** Throws alias_conflict when any person's id (in any case) or alias is `key` (lowercase). */
  private assertHandleFree(key: string, what: 'id' | 'alias'): void {
    const holder =
      this.db.prepare<[string], { id: string }>('SELECT id FROM approvers WHERE lower(id) = ?').get(key) ??
      this.db.prepare<[string], { id: string }>('SELECT approver_id AS id FROM approver_aliases WHERE alias = ?').get(key);
    if (holder !== undefined) {
      throw new CountersignError('alias_conflict', `the ${what} ${quote(key)} already names approver ${quote(holder.id)}`, {
        details: { handle: key, approverId: holder.id },
      });
    }
  }

  /** The checks a new approver gets before anything is written; returns it cleaned (groups and aliases sorted, unique). */
  checkNewApprover(input: NewApprover): Required<NewApprover> {
    const virtual = input.virtual ?? false;
    if (virtual && this.options.domain !== 'test') {
      throw new CountersignError(
        'virtual_approver_refused',
        'virtual approvers exist only in the headless test key domain; this configuration is production',
      );
    }
    if (typeof input.id !== 'string' || !ID_PATTERN.test(input.id))
      throw new CountersignError('config_invalid', `the approver id ${quote(String(input.id))} must be 1-128 letters, digits or . _ @ + -`);
    if (typeof input.displayName !== 'string' || input.displayName.length === 0 || input.displayName.length > 200) {
      throw new CountersignError('config_invalid', 'the approver display name must be 1-200 characters');
    }
    const groups = this.checkGroups(input.groups);
    const aliases = [...new Set((input.aliases ?? []).map((a) => this.checkHandle(a, 'alias')))]
      .filter((a) => a !== normalizeHandle(input.id))
      .sort();
    return { id: input.id, displayName: input.displayName, groups, virtual, aliases };
  }

  /** Groups cleaned (sorted, unique), each a valid name. */
  checkGroups(groups: readonly string[]): string[] {
    if (!Array.isArray(groups)) throw new CountersignError('config_invalid', 'the approver groups must be a list');
    const clean: string[] = [...new Set<string>(groups as readonly string[])].sort();
    for (const g of clean)
      if (typeof g !== 'string' || !GROUP_PATTERN.test(g))
        throw new CountersignError('config_invalid', `the group ${quote(String(g))} must be 1-128 letters, digits or . _ -`);
    return clean;
  }

  addApprover(input: NewApprover): ApproverRecord {
    this.assertLocalWrites();
    const { groups, virtual, aliases } = this.checkNewApprover(input);
    const now = this.now();
    return this.db
      .transaction(() => {
        if (this.db.prepare('SELECT 1 FROM approvers WHERE id = ?').get(input.id) !== undefined) {
          throw new CountersignError('config_invalid', `an approver named ${quote(input.id)} already exists`);
        }
        // One person, one id: another spelling of an existing id or alias is that person, not a new one.
        this.assertHandleFree(normalizeHandle(input.id), 'id');
        for (const alias of aliases) this.assertHandleFree(alias, 'alias');
        this.db
          .prepare("INSERT INTO approvers (id, display_name, groups_json, virtual, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)")
          .run(input.id, input.displayName, JSON.stringify(groups), virtual ? 1 : 0, now);
        for (const alias of aliases)
          this.db.prepare('INSERT INTO approver_aliases (alias, approver_id, created_at) VALUES (?, ?, ?)').run(alias, input.id, now);
        this.audit.append('approver.added', now, { approverId: input.id, groups, virtual, ...(aliases.length > 0 ? { aliases } : {}) });
        return this.get(input.id);
      })
      .immediate();
  }

  get(id: string): ApproverRecord {
    const row = cachedStatement<[string], ApproverRow>(this.db, 'SELECT * FROM approvers WHERE id = ?').get(id);
    if (row === undefined) throw new CountersignError('approver_unknown', `no approver named ${quote(id)}`);
    return toApprover(row);
  }

  list(): ApproverRecord[] {
    return this.db.prepare<[], ApproverRow>('SELECT * FROM approvers ORDER BY id').all().map(toApprover);
  }

  disable(id: string): void {
    this.assertLocalWrites();
    const now = this.now();
    this.db
      .transaction(() => {
        const approver = this.get(id);
        // As setGroups: the last active admin stays, or no one could act as admin any more.
        if (approver.status === 'active' && approver.groups.includes(ADMIN_GROUP_NAME)) {
          const others = this.list().filter((a) => a.id !== id && a.status === 'active' && a.groups.includes(ADMIN_GROUP_NAME));
          if (others.length === 0) throw lastActiveAdmin(id);
        }
        this.db.prepare("UPDATE approvers SET status = 'disabled', disabled_at = ? WHERE id = ?").run(now, id);
        this.audit.append('approver.disabled', now, { approverId: id });
      })
      .immediate();
  }

  setGroups(id: string, groups: string[]): void {
    this.assertLocalWrites();
    const now = this.now();
    const clean = this.checkGroups(groups);
    this.db
      .transaction(() => {
        const before = this.get(id);
        // The last admin cannot leave the admin group: with no admin the first-run setup would open
        // again, and anyone holding the desk's transport secret could make themselves admin.
        if (before.groups.includes(ADMIN_GROUP_NAME) && !clean.includes(ADMIN_GROUP_NAME)) {
          const otherAdmins = this.list().filter((a) => a.id !== id && a.groups.includes(ADMIN_GROUP_NAME));
          if (otherAdmins.length === 0)
            throw new CountersignError(
              'last_admin',
              `${quote(id)} is the last admin; add another admin before removing them from the admin group`,
            );
        }
        this.db.prepare('UPDATE approvers SET groups_json = ? WHERE id = ?').run(JSON.stringify(clean), id);
        this.audit.append('approver.groups_changed', now, { approverId: id, groups: clean });
      })
      .immediate();
  }

  removeCredential(credentialId: string): void {
    this.assertLocalWrites();
    const now = this.now();
    this.db
      .transaction(() => {
        const cred = this.credential(credentialId);
        this.db.prepare("UPDATE approver_credentials SET status = 'removed' WHERE credential_id = ?").run(credentialId);
        this.audit.append('approver.credential_removed', now, { approverId: cred.approverId, credentialId });
      })
      .immediate();
  }

  credential(credentialId: string): CredentialRecord {
    const row = cachedStatement<[string], CredentialRow>(this.db, 'SELECT * FROM approver_credentials WHERE credential_id = ?').get(
      credentialId,
    );
    if (row === undefined) throw new CountersignError('credential_unknown', 'that security key is not registered');
    return toCredential(row);
  }

  credentialsOf(approverId: string, activeOnly = true): CredentialRecord[] {
    const rows = cachedStatement<[string], CredentialRow>(
      this.db,
      'SELECT * FROM approver_credentials WHERE approver_id = ? ORDER BY created_at',
    ).all(approverId);
    return rows.map(toCredential).filter((c) => !activeOnly || c.status === 'active');
  }

  /**
   * Issue a single-use code that lets `approverId` register one security key (for a new approver,
   * or one who lost a key). Only the hash is stored; the code is shown once to the issuer.
   */
  issueRegistrationCode(approverId: string, issuedBy: string): { code: string; expiresAt: number } {
    this.assertLocalWrites();
    const approver = this.get(approverId);
    if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
    const code = base64url(randomBytes(24));
    const now = this.now();
    const expiresAt = now + REGISTRATION_CODE_TTL_MS;
    this.db
      .transaction(() => {
        this.db
          .prepare('INSERT INTO registration_codes (code_hash, approver_id, issued_by, expires_at) VALUES (?, ?, ?, ?)')
          .run(hashCode(code), approverId, issuedBy, expiresAt);
        this.audit.append('approver.registration_code_issued', now, { approverId, issuedBy, expiresAt });
      })
      .immediate();
    return { code, expiresAt };
  }

  /** Start registering a security key for `approverId`: single-use challenge, UV required. */
  async beginRegistration(approverId: string, registrationCode?: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const approver = this.get(approverId);
    if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
    let codeHash: string | undefined;
    if (this.options.requireRegistrationCode === true) {
      // Checked here, spent only when a key is stored (finishRegistration).
      const now = this.now();
      codeHash =
        typeof registrationCode === 'string' && registrationCode.length > 0 && registrationCode.length <= 128
          ? hashCode(registrationCode)
          : undefined;
      const usable =
        codeHash !== undefined &&
        this.db
          .prepare('SELECT 1 FROM registration_codes WHERE code_hash = ? AND approver_id = ? AND used_at IS NULL AND expires_at > ?')
          .get(codeHash, approverId, now) !== undefined;
      if (!usable)
        throw new CountersignError(
          'challenge_invalid',
          'the registration code is unknown, used, expired or for another approver; ask an admin for a new one',
        );
    }
    const challenge = base64url(randomBytes(32));
    const { generateRegistrationOptions } = await webauthnServer();
    const options = await generateRegistrationOptions({
      rpName: this.options.rpName ?? 'Countersign',
      rpID: this.options.rpId,
      userName: approver.id,
      userDisplayName: approver.displayName,
      userID: new TextEncoder().encode(approver.id),
      challenge,
      timeout: this.options.ceremonyTimeoutMs,
      attestationType: 'direct',
      excludeCredentials: this.credentialsOf(approverId, false).map((c) => ({ id: c.credentialId })),
      authenticatorSelection: { userVerification: 'required', residentKey: 'discouraged' },
      supportedAlgorithmIDs: [-7],
    });
    // Ask for a security key by hint only (WebAuthn L3 `hints`), not by authenticatorAttachment:
    // a browser whose only authenticator is built in would otherwise wait out the whole timeout
    // (a spinner that looks like a hang). A platform authenticator that answers is refused at
    // finish at once, with platform_authenticator_refused, and the code stays usable.
    options.hints = ['security-key'];
    const team = this.teamCeremonies;
    if (team !== undefined) {
      // A team hub: the challenge and the code it was begun with, for whichever hub finishes it.
      await team.issue('registration', {
        challenge: options.challenge,
        userId: approverId,
        record: canonicalize(codeHash === undefined ? {} : { codeHash }),
        expiresAt: this.now() + this.options.ceremonyTimeoutMs,
        offered: [],
      });
      return options;
    }
    this.db
      .prepare("INSERT INTO webauthn_challenges (challenge, purpose, approver_id, expires_at) VALUES (?, 'registration', ?, ?)")
      .run(options.challenge, approverId, this.now() + this.options.ceremonyTimeoutMs);
    if (codeHash !== undefined) {
      for (const [key, entry] of this.codeOfChallenge) if (entry.expiresAt <= this.now()) this.codeOfChallenge.delete(key);
      this.codeOfChallenge.set(options.challenge, { codeHash, expiresAt: this.now() + this.options.ceremonyTimeoutMs });
    }
    return options;
  }

  /** Verify the registration response and store the credential; the challenge is spent either way. */
  async finishRegistration(approverId: string, response: RegistrationResponseJSON): Promise<CredentialRecord> {
    const approver = this.get(approverId);
    if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
    const { challenge, code } = await this.takeRegistrationChallenge(approverId, response);
    if (this.options.requireRegistrationCode === true && code === undefined)
      throw new CountersignError('challenge_invalid', 'the registration challenge is unknown, used, expired or for another approver');
    // A built-in platform authenticator is refused before anything is stored (the code is not spent).
    const platformRefusal = new CountersignError(
      'platform_authenticator_refused',
      'this is a built-in platform authenticator (for example Windows Hello, Touch ID or a phone screen lock); register a security key instead, with the same code',
    );
    if (isPlatformRegistration({ attachment: response.authenticatorAttachment, transports: response.response.transports }))
      throw platformRefusal;
    const { verifyRegistrationResponse } = await webauthnServer();
    let verified;
    try {
      verified = await verifyRegistrationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: [...this.origins],
        expectedRPID: this.options.rpId,
        requireUserVerification: true,
        supportedAlgorithmIDs: [-7],
      });
    } catch (cause) {
      throw new CountersignError('assertion_invalid', 'the security key registration does not verify', { cause });
    }
    if (!verified.verified) throw new CountersignError('assertion_invalid', 'the security key registration does not verify');
    const info = verified.registrationInfo;
    const aaguid = info.aaguid.toLowerCase();
    if (isPlatformRegistration({ aaguid })) throw platformRefusal;
    if (isVirtualAuthenticatorAaguid(aaguid)) {
      if (this.options.domain !== 'test' || !approver.virtual) {
        throw new CountersignError(
          'attestation_refused',
          'a virtual authenticator can only register for a virtual approver in the headless test domain',
        );
      }
    } else if (approver.virtual) {
      throw new CountersignError('attestation_refused', 'a virtual approver can only hold virtual authenticator keys');
    }
    if (this.options.domain === 'production' && KNOWN_TEST_AUTHENTICATOR_AAGUIDS.includes(aaguid)) {
      throw new CountersignError(
        'attestation_refused',
        'this authenticator is a known software test double; production accepts security keys only',
      );
    }
    if (
      this.options.requireAaguids.length > 0 &&
      !isVirtualAuthenticatorAaguid(aaguid) &&
      !this.options.requireAaguids.map((a) => a.toLowerCase()).includes(aaguid)
    ) {
      throw new CountersignError('attestation_refused', `authenticators of type ${quote(aaguid)} are not accepted here`);
    }
    if (info.fmt === 'none' && this.options.requireAaguids.length > 0) {
      throw new CountersignError('attestation_refused', 'this configuration requires attested authenticators; the key sent no attestation');
    }
    const publicJwk = await coseToJwk(info.credential.publicKey);
    const now = this.now();
    const event: AuditEventFields<'approver.credential_registered'> = {
      approverId,
      credentialId: info.credential.id,
      aaguid,
      fmt: info.fmt,
      userVerified: info.userVerified,
    };
    if (this.teamWrites !== undefined) {
      // A team hub: the key, its spent code and its audit record commit in the team directory;
      // answered as committed (this hub's replica may apply it a moment later).
      return this.teamWrites.registerCredential(
        {
          credential_id: info.credential.id,
          approver_id: approverId,
          public_key: base64url(info.credential.publicKey),
          public_jwk: JSON.stringify(publicJwk),
          sign_count: info.credential.counter,
          aaguid,
          attestation_fmt: info.fmt,
          attestation_object: base64url(info.attestationObject),
          transports: JSON.stringify(info.credential.transports ?? []),
          status: 'active',
          created_at: now,
          last_used_at: null,
        },
        code?.codeHash,
        event,
      );
    }
    return this.db
      .transaction(() => {
        if (this.db.prepare('SELECT 1 FROM approver_credentials WHERE credential_id = ?').get(info.credential.id) !== undefined) {
          throw new CountersignError('config_invalid', 'that security key is already registered');
        }
        // The code is spent with the key it registered, in one transaction (single use across tabs).
        if (
          code !== undefined &&
          this.db
            .prepare(
              'UPDATE registration_codes SET used_at = ? WHERE code_hash = ? AND approver_id = ? AND used_at IS NULL AND expires_at > ?',
            )
            .run(now, code.codeHash, approverId, now).changes !== 1
        )
          throw new CountersignError(
            'challenge_invalid',
            'the registration code is unknown, used, expired or for another approver; ask an admin for a new one',
          );
        this.db
          .prepare(
            `INSERT INTO approver_credentials (credential_id, approver_id, public_key, public_jwk, sign_count, aaguid, attestation_fmt, attestation_object, transports, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)`,
          )
          .run(
            info.credential.id,
            approverId,
            base64url(info.credential.publicKey),
            JSON.stringify(publicJwk),
            info.credential.counter,
            aaguid,
            info.fmt,
            base64url(info.attestationObject),
            JSON.stringify(info.credential.transports ?? []),
            now,
          );
        this.audit.append('approver.credential_registered', now, event);
        return this.credential(info.credential.id);
      })
      .immediate();
  }

  /** The directory tool servers check co-signed tokens against (active approvers and keys). */
  published(): PublishedDirectory {
    return {
      rpId: this.options.rpId,
      origins: [...this.origins],
      approvers: this.list()
        .filter((a) => a.status === 'active')
        .map((a) => ({
          id: a.id,
          displayName: a.displayName,
          groups: a.groups,
          virtual: a.virtual,
          credentials: this.credentialsOf(a.id).map((c) => ({ id: c.credentialId, publicJwk: c.publicJwk })),
        })),
    };
  }

  /** Spend the registration challenge (single use; on a team hub for every hub) and find the code it was begun with. */
  private async takeRegistrationChallenge(
    approverId: string,
    response: RegistrationResponseJSON,
  ): Promise<{ challenge: string; code: { codeHash: string } | undefined }> {
    const challenge = clientDataChallenge(response.response.clientDataJSON);
    const now = this.now();
    const refused = () =>
      new CountersignError('challenge_invalid', 'the registration challenge is unknown, used, expired or for another approver');
    const team = this.teamCeremonies;
    if (team !== undefined) {
      const row = await team.claim('registration', challenge, approverId, now);
      if (row === undefined || row.record === null) throw refused();
      const stored = registrationRecordSchema.safeParse(parseStrictJson(row.record));
      if (!stored.success) throw refused();
      return { challenge, code: stored.data.codeHash === undefined ? undefined : { codeHash: stored.data.codeHash } };
    }
    const spent = this.db
      .prepare(
        "UPDATE webauthn_challenges SET used_at = ? WHERE challenge = ? AND purpose = 'registration' AND approver_id = ? AND used_at IS NULL AND expires_at > ?",
      )
      .run(now, challenge, approverId, now);
    if (spent.changes !== 1) throw refused();
    const code = this.codeOfChallenge.get(challenge);
    this.codeOfChallenge.delete(challenge);
    return { challenge, code };
  }
}
