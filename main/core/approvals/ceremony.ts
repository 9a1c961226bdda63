/**
 * The one WebAuthn ceremony engine: a WebAuthn assertion over a typed JCS record. Approvals of
 * requests (approval-service.ts), admin actions (admin-actions.ts) and, through them, the virtual
 * approvers of the test key domain all run their key taps through it, so every tap gets the same
 * checks in the same order:
 *
 * 1. The challenge is base64url(SHA-256(JCS(record))) (shared/approvals.ts recordChallenge): the
 *    key signs exactly the record shown. The engine stores it single-use in the challenge store of
 *    its purpose (approval: webauthn_challenges, admin: admin_challenges; on a team hub the team
 *    database's ceremony_challenges, so any hub finishes it) together with the keys offered
 *    (allowCredentials), which are the only keys that may answer.
 * 2. The response is read strictly; the key that answered must belong to the user, be active
 *    (a suspect key is refused with credential_suspect), have been offered, and the userHandle
 *    (when the authenticator sends one) must name the user.
 * 3. Origin, rpId, type, UP/UV and the signature are verified as @simplewebauthn/server does, in
 *    one synchronous step (es256-assertion.ts says why, and a test holds it to the library).
 * 4. The signature counter must advance. It is compared after the signature verified, so only a
 *    genuine assertion can take a key out of service: a regression marks the key suspect in its
 *    own audited transaction (`approver.credential_suspect`) and the tap is refused.
 */
// Imported at the first ceremony, not at start (approver-directory.ts says why; webauthn-library.ts keeps it).
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { webauthnHelpers, webauthnServer } from './webauthn-library.js';
import { AssertionRefused, SIGNATURE_REFUSED, verifyEs256Assertion } from './es256-assertion.js';
import { z } from 'zod';
import type { Db } from '../store/database.js';
import type { AuditLog, AuditKind } from '../audit/audit-log.js';
import type { ApproverDirectory, CredentialRecord } from './approver-directory.js';
import { clientDataChallenge } from './client-data.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { canonicalize, parseStrictJson } from '../../../shared/canonical-json.js';
import { counterRegressed } from '../../../shared/authenticators.js';
import type { TeamCounterRegression } from '../store/pg/pg-directory.js';
import { cachedStatement } from '../store/statement-cache.js';
import type { TeamChallengeRow, TeamChallenges } from '../store/pg/pg-challenges.js';

export type CeremonyUserVerification = 'required' | 'preferred';

/** Audit kind recorded when a key is taken out of service as suspect. */
const CREDENTIAL_SUSPECT_KIND = 'approver.credential_suspect' satisfies AuditKind;
/** Length of base64url(SHA-256(...)): every ceremony challenge has it. */
const CHALLENGE_LENGTH = 43;

const b64 = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');
/** The parts of an AuthenticationResponseJSON the engine reads, strictly typed. */
export const assertionResponseSchema = z.object({
  id: b64(1400),
  rawId: b64(1400),
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: b64(4096),
    authenticatorData: b64(4096),
    signature: b64(512),
    userHandle: b64(128).nullable().optional(),
  }),
});
export type AssertionResponse = z.infer<typeof assertionResponseSchema>;

/** The offered credential ids as stored in a challenge row (JSON array; NULL: nothing offered). */
const offeredSchema = z.array(b64(1400)).max(64);

/** The user handle the directory registers for a person: base64url(UTF-8 id). */
export function userHandleOf(userId: string): string {
  return Buffer.from(userId, 'utf8').toString('base64url');
}

/**
 * Reads the offered-credentials column of a challenge row (fails closed: unreadable offers nothing).
 * NULL is a ceremony started before the upgrade that added the column: it must be started again.
 */
export function parseOffered(stored: string | null): string[] {
  if (stored === null) throw new CountersignError('challenge_invalid', 'the ceremony was started before an upgrade and must be restarted');
  try {
    const parsed = offeredSchema.safeParse(parseStrictJson(stored));
    return parsed.success ? parsed.data : [];
  } catch {
    return [];
  }
}

/** The signature counter in authenticator data (bytes 33..36, big-endian). */
function authenticatorCounter(authenticatorData: string): number {
  const bytes = Buffer.from(authenticatorData, 'base64url');
  if (bytes.length < 37) throw new CountersignError('assertion_invalid', 'the authenticator data is too short');
  return bytes.readUInt32BE(33);
}

const regressed = counterRegressed;

/** Thrown (inside a caller's transaction) when the key's counter went backwards meanwhile. */
export class CounterRegression extends Error {
  constructor(
    readonly credential: Pick<CredentialRecord, 'credentialId' | 'approverId'>,
    readonly stored: number,
    readonly reported: number,
  ) {
    super('counter regression');
  }
}

/** A response as read by {@link CeremonyEngine.read}: its checked shape, as sent, and its challenge. */
export interface ReadAssertion {
  response: AssertionResponse;
  /** The response exactly as the client sent it (what the WebAuthn library verifies). */
  raw: AuthenticationResponseJSON;
  challenge: string;
}

export interface CeremonyOffer {
  /** For navigator.credentials.get() (e.g. @simplewebauthn/browser startAuthentication). */
  options: PublicKeyCredentialRequestOptionsJSON;
  /** The credential ids offered (allowCredentials): store them with the challenge row. */
  offered: string[];
}

/** Which ceremony a challenge belongs to; each purpose keeps its rows in its own table. */
export type ChallengePurpose = 'approval' | 'admin';

/**
 * A challenge row as the engine stores it, whatever its purpose: the same shape in this data
 * directory's tables and in a team's database (one type, so the two cannot drift apart).
 */
export type StoredChallenge = TeamChallengeRow;

export interface IssuedChallenge {
  challenge: string;
  userId: string;
  record: unknown;
  expiresAt: number;
  offered: readonly string[];
  /** approval only. */
  requestId?: string;
  verdict?: string;
}

interface ChallengeTableRow {
  challenge: string;
  user_id: string;
  request_id: string | null;
  verdict: string | null;
  record: string | null;
  expires_at: number;
  used_at: number | null;
  offered: string | null;
}

/** The SQL of each purpose's challenge store (the tables are as migrations.ts made them). */
const CHALLENGE_SQL: Record<ChallengePurpose, { insert: string; select: string; spend: string }> = {
  approval: {
    insert:
      "INSERT INTO webauthn_challenges (challenge, purpose, approver_id, request_id, verdict, record, expires_at, offered) VALUES (@challenge, 'approval', @userId, @requestId, @verdict, @record, @expiresAt, @offered)",
    select:
      "SELECT challenge, approver_id AS user_id, request_id, verdict, record, expires_at, used_at, offered FROM webauthn_challenges WHERE challenge = ? AND purpose = 'approval' AND record IS NOT NULL",
    spend: "UPDATE webauthn_challenges SET used_at = ? WHERE challenge = ? AND purpose = 'approval' AND used_at IS NULL",
  },
  admin: {
    insert:
      'INSERT INTO admin_challenges (challenge, admin_id, record, expires_at, offered) VALUES (@challenge, @userId, @record, @expiresAt, @offered)',
    select:
      'SELECT challenge, admin_id AS user_id, NULL AS request_id, NULL AS verdict, record, expires_at, used_at, offered FROM admin_challenges WHERE challenge = ?',
    spend: 'UPDATE admin_challenges SET used_at = ? WHERE challenge = ? AND used_at IS NULL',
  },
};

export interface CeremonyEngineOptions {
  db: Db;
  audit: AuditLog;
  directory: ApproverDirectory;
  now?: () => number;
}

export class CeremonyEngine {
  private readonly now: () => number;

  constructor(private readonly options: CeremonyEngineOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The keys `userId` may tap with now (credential_unknown with `noKey` when there is none). */
  keysOf(userId: string, noKey: string): CredentialRecord[] {
    const credentials = this.options.directory.credentialsOf(userId);
    if (credentials.length === 0) throw new CountersignError('credential_unknown', noKey);
    return credentials;
  }

  /** WebAuthn options offering exactly `credentials` for `challenge`. */
  async offer(input: {
    credentials: readonly CredentialRecord[];
    challenge: string;
    userVerification: CeremonyUserVerification;
    timeoutMs: number;
  }): Promise<CeremonyOffer> {
    const { generateAuthenticationOptions } = await webauthnServer();
    const options = await generateAuthenticationOptions({
      rpID: this.options.directory.rpId,
      challenge: new Uint8Array(Buffer.from(input.challenge, 'base64url')),
      allowCredentials: input.credentials.map((c) => ({ id: c.credentialId, transports: c.transports })),
      userVerification: input.userVerification,
      timeout: Math.max(1, input.timeoutMs),
    });
    if (options.challenge !== input.challenge)
      throw new CountersignError('internal_error', 'the ceremony challenge was not encoded as bound');
    return { options, offered: input.credentials.map((c) => c.credentialId) };
  }

  // ---- the challenge store ----
  //
  // Embedded (and a hub's own data directory before it joined a team), challenges are rows of
  // this data directory's SQLite, spent inside the caller's final transaction. A team hub keeps
  // them in the team database (directory.teamChallenges, store/pg/pg-challenges.ts) so any hub
  // finishes a ceremony another began: there the row is claimed, once for the whole team, by
  // claimChallenge just before that transaction, and spendChallenge inside it only confirms the
  // claim. Callers run the same steps either way: challenge, verify, claimChallenge, spendChallenge.

  private get team(): TeamChallenges | undefined {
    return this.options.directory.teamChallenges;
  }

  /**
   * Store `issued` single use under `purpose`. `within`, when given, runs the local write inside
   * the caller's transaction (its audit event): embedded the challenge is written there; a team
   * hub stores it in the team database first and `within` gets nothing to write.
   */
  async issueChallenge(purpose: ChallengePurpose, issued: IssuedChallenge, within?: (local: () => void) => Promise<void>): Promise<void> {
    const team = this.team;
    if (team !== undefined) {
      await team.issue(purpose, {
        challenge: issued.challenge,
        userId: issued.userId,
        requestId: issued.requestId,
        verdict: issued.verdict,
        record: canonicalize(issued.record),
        expiresAt: issued.expiresAt,
        offered: issued.offered,
      });
      if (within !== undefined) await within(() => undefined);
      return;
    }
    const write = () => this.insertLocal(purpose, issued);
    if (within !== undefined) await within(write);
    else write();
  }

  private insertLocal(purpose: ChallengePurpose, issued: IssuedChallenge): void {
    const params: Record<string, unknown> = {
      challenge: issued.challenge,
      userId: issued.userId,
      record: canonicalize(issued.record),
      expiresAt: issued.expiresAt,
      offered: JSON.stringify(issued.offered),
    };
    if (purpose === 'approval') {
      params['requestId'] = issued.requestId ?? null;
      params['verdict'] = issued.verdict ?? null;
    }
    cachedStatement(this.options.db, CHALLENGE_SQL[purpose].insert).run(params);
  }

  /** The stored challenge of `purpose`, or undefined when there is none (the caller words the refusal). */
  async challenge(purpose: ChallengePurpose, challenge: string): Promise<StoredChallenge | undefined> {
    const team = this.team;
    if (team !== undefined) {
      const row = await team.read(purpose, challenge);
      return row === undefined || row.record === null ? undefined : row;
    }
    return this.localChallenge(purpose, challenge);
  }

  private localChallenge(purpose: ChallengePurpose, challenge: string): StoredChallenge | undefined {
    const row = cachedStatement<[string], ChallengeTableRow>(this.options.db, CHALLENGE_SQL[purpose].select).get(challenge);
    if (row === undefined) return undefined;
    return {
      challenge: row.challenge,
      userId: row.user_id,
      requestId: row.request_id,
      verdict: row.verdict,
      record: row.record,
      expiresAt: row.expires_at,
      usedAt: row.used_at,
      offered: row.offered,
    };
  }

  /**
   * Once the key's signature verified, just before the caller's final transaction: on a team
   * hub the challenge is spent here for every hub (the row as issued, or undefined when it is
   * used, expired or was issued to someone else: refuse); embedded the row as it is now (spent
   * by spendChallenge inside that transaction).
   */
  async claimChallenge(purpose: ChallengePurpose, challenge: string, userId: string, now: number): Promise<StoredChallenge | undefined> {
    const team = this.team;
    if (team === undefined) return this.localChallenge(purpose, challenge);
    const row = await team.claim(purpose, challenge, userId, now);
    if (row === undefined || row.record === null) return undefined;
    for (const [claimed, expiresAt] of this.claimed) if (expiresAt <= now) this.claimed.delete(claimed);
    this.claimed.set(`${purpose}:${challenge}`, row.expiresAt);
    return row;
  }

  /** Challenges this hub claimed in the team database and has not yet spent (key: purpose:challenge). */
  private readonly claimed = new Map<string, number>();

  /**
   * Mark the challenge used (inside the caller's final transaction); false when it already was.
   * On a team hub: true once for a challenge this hub claimed (claimChallenge), false otherwise.
   */
  spendChallenge(purpose: ChallengePurpose, challenge: string, now: number): boolean {
    if (this.team !== undefined) return this.claimed.delete(`${purpose}:${challenge}`);
    return cachedStatement(this.options.db, CHALLENGE_SQL[purpose].spend).run(now, challenge).changes === 1;
  }

  // ---- the key's response ----

  /**
   * The response read strictly, and the challenge it answers (assertion_invalid otherwise; a
   * ceremony's challenges have `challengeLength` characters: the record hashes', or a desk
   * sign-in's stateless ones, ui/sign-in-challenge.ts).
   */
  read(input: unknown, challengeLength = CHALLENGE_LENGTH): ReadAssertion {
    const parsed = assertionResponseSchema.safeParse(input);
    if (!parsed.success || parsed.data.id !== parsed.data.rawId)
      throw new CountersignError('assertion_invalid', 'the security key response is malformed');
    return {
      response: parsed.data,
      raw: input as AuthenticationResponseJSON,
      challenge: clientDataChallenge(parsed.data.response.clientDataJSON, challengeLength),
    };
  }

  /**
   * The key that answered: registered to `userId`, active, offered in this ceremony; and the
   * userHandle, when sent, names `userId`. Runs before verification and again inside the
   * caller's final transaction (the key's status can change meanwhile).
   */
  credentialFor(userId: string, response: AssertionResponse, offered: readonly string[]): CredentialRecord {
    let credential: CredentialRecord;
    try {
      credential = this.options.directory.credential(response.id);
    } catch (error) {
      if (isCountersignError(error, 'credential_unknown'))
        throw new CountersignError('credential_unknown', 'that security key is not registered', { cause: error });
      throw error;
    }
    if (credential.approverId !== userId)
      throw new CountersignError('credential_unknown', `that security key is not registered to approver ${quote(userId)}`);
    if (credential.status === 'suspect')
      throw new CountersignError(
        'credential_suspect',
        'that security key is marked suspect (its signature counter went backwards) and is refused',
      );
    if (credential.status !== 'active') throw new CountersignError('credential_unknown', 'that security key has been removed');
    if (!offered.includes(credential.credentialId))
      throw new CountersignError('credential_unknown', 'that security key was not offered in this ceremony');
    const userHandle = response.response.userHandle ?? undefined;
    if (userHandle !== undefined && userHandle !== userHandleOf(userId)) {
      throw new CountersignError('assertion_invalid', 'the security key answered for another user');
    }
    return credential;
  }

  /**
   * The WebAuthn checks (origin, rpId, type, UP/UV, signature), then the counter: a regression
   * marks the key suspect (audited) and refuses the tap. Returns the new counter.
   */
  async verify(read: ReadAssertion, credential: CredentialRecord, userVerification: CeremonyUserVerification): Promise<number> {
    const { response, challenge } = read;
    const reported = authenticatorCounter(response.response.authenticatorData);
    const stored = credential.signCount;
    const regression = regressed(stored, reported);
    const helpers = await webauthnHelpers();
    let newCounter: number;
    try {
      newCounter = verifyEs256Assertion(helpers, {
        response: response.response,
        expectedChallenge: challenge,
        expectedOrigins: this.options.directory.origins,
        expectedRpId: this.options.directory.rpId,
        publicJwk: credential.publicJwk,
        // A regression is decided below, once the signature is known to be genuine.
        counter: regression ? 0 : stored,
        requireUserVerification: userVerification === 'required',
      });
    } catch (cause) {
      throw new CountersignError(
        'assertion_invalid',
        cause instanceof AssertionRefused && cause.message === SIGNATURE_REFUSED
          ? 'the security key signature does not verify'
          : 'the security key response does not verify',
        { cause },
      );
    }
    if (regression) await this.refuse(new CounterRegression(credential, stored, reported));
    return newCounter;
  }

  /**
   * Inside the caller's final transaction: the key's counter (re-read there) must still be below
   * the new one, then it is stored. Throws CounterRegression; the caller's transaction rolls back
   * and it hands the error to {@link refuse}.
   */
  recordUse(credential: CredentialRecord, newCounter: number, now: number): void {
    if (regressed(credential.signCount, newCounter)) throw new CounterRegression(credential, credential.signCount, newCounter);
    cachedStatement(this.options.db, 'UPDATE approver_credentials SET sign_count = ?, last_used_at = ? WHERE credential_id = ?').run(
      newCounter,
      now,
      credential.credentialId,
    );
  }

  /**
   * Take the key out of service (its own committed, audited transaction; on a team hub in the
   * team directory, for every hub) and refuse the tap. A regression the team directory found
   * (TeamCounterRegression, thrown inside a commit) is refused the same way.
   */
  async refuse(regression: CounterRegression | TeamCounterRegression): Promise<never> {
    const { credentialId, approverId } = regression instanceof CounterRegression ? regression.credential : regression;
    const team = this.options.directory.team;
    if (team !== undefined) await team.markSuspect(credentialId, approverId, regression.stored, regression.reported);
    else this.suspect({ credentialId, approverId }, regression.stored, regression.reported);
    throw new CountersignError(
      'credential_suspect',
      `the security key reported signature counter ${regression.reported}, not above ${regression.stored}; it is now refused`,
    );
  }

  private suspect(credential: Pick<CredentialRecord, 'credentialId' | 'approverId'>, stored: number, reported: number): void {
    const now = this.now();
    const { db, audit } = this.options;
    try {
      db.transaction(() => {
        const changed = db
          .prepare("UPDATE approver_credentials SET status = 'suspect' WHERE credential_id = ? AND status = 'active'")
          .run(credential.credentialId);
        if (changed.changes === 1) {
          try {
            audit.append(CREDENTIAL_SUSPECT_KIND, now, {
              approverId: credential.approverId,
              credentialId: credential.credentialId,
              status: 'suspect',
              reason: 'signature counter went backwards',
              storedCounter: stored,
              reportedCounter: reported,
            });
          } catch (cause) {
            throw new CountersignError('audit_write_failed', undefined, { cause });
          }
        }
      }).immediate();
    } catch (error) {
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the approval could not be stored, so nothing was recorded', { cause: error });
    }
  }
}
