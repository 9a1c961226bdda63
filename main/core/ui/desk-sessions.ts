/**
 * Desk sessions: an approver signs in at a desk with a security key (a WebAuthn assertion run
 * through the one ceremony engine, approvals/ceremony.ts: an offered, active key of that person,
 * the userHandle, UV required, the signature, a counter that must advance) and gets a session
 * that belongs to that person. docs/adr/0010-desk-sessions.md has the design; in short:
 *
 * - the session id is 32 random bytes; only its SHA-256 is kept, in this process's memory (a
 *   restart signs everyone out, which is right for a short-lived local session), or on a team hub
 *   in the team database (store/pg/pg-desk-sessions.ts), so a desk's next request may reach any
 *   hub: a session ended on one hub (sign-out, idle, the person disabled) is ended on all, and
 *   what it was granted on is re-read there, never in the hub's replica;
 * - each session records the credential whose assertion created it (bound to that ceremony);
 * - it ends after `idleMs` without a call and, whatever the activity, `absoluteMs` after sign-in,
 *   on sign-out, and as soon as what it was granted on no longer holds: the person is disabled or
 *   gone, the key that signed in is removed or marked suspect, or the person has left a group they
 *   were in at sign-in (the admin group above all: rights come from groups). The clock is injected
 *   for the lifetime tests;
 * - sign-in challenges are stateless (ADR 0019, sign-in-challenge.ts): a begin stores nothing,
 *   so nobody can fill a bound or displace a person's sign-in in flight; the challenge carries an
 *   HMAC (this process's key, or the team's, so any hub finishes a sign-in) over itself, the
 *   person and its expiry, checked first at finish. It is single use: once the assertion
 *   verified, its digest is recorded in the transaction that opens the session (in this
 *   process's memory, or on a team hub in the team database before the key's counter is
 *   checked), so a replayed finish opens no second session;
 * - desk.signed_in is audited in the transaction that stores the key's new counter;
 *   desk.signed_out when a session ends (sign-out, or found idle or expired).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ApproverDirectory, ApproverRecord, CredentialRecord } from '../approvals/approver-directory.js';
import { CeremonyEngine, CounterRegression, type ReadAssertion } from '../approvals/ceremony.js';
import { TeamCounterRegression, storedRow } from '../store/pg/pg-directory.js';
import type { PgDeskSessions } from '../store/pg/pg-desk-sessions.js';
import { approverFromRowImage } from '../approvals/approver-directory.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { isAdminGroups, type DeskSessionView } from '../../../shared/desk-session.js';
import { newSignInKeyBytes, SIGN_IN_CHALLENGE_LENGTH, SignInChallenges, type CheckedSignInChallenge } from './sign-in-challenge.js';

export interface DeskSessionOptions {
  /** A session ends after this long without a call (default 30 min). */
  idleMs?: number;
  /** A session ends this long after sign-in, whatever the activity (default 12 h). */
  absoluteMs?: number;
  /** How long a sign-in challenge may be answered (the ceremony timeout). */
  ceremonyTimeoutMs: number;
  /** Most sessions kept at once (oldest dropped first); bounds memory. */
  maxSessions?: number;
  /** A team hub: sessions kept in the team database, for every hub (with `directory.team`). */
  teamSessions?: PgDeskSessions;
  now?: () => number;
}

export const DEFAULT_SESSION_IDLE_MS = 30 * 60_000;
export const DEFAULT_SESSION_ABSOLUTE_MS = 12 * 3600_000;

/** Why a session ended (the `reason` of desk.signed_out; shared/audit-events.ts lists the same). */
export type SessionEndReason =
  | 'signed_out'
  | 'idle'
  | 'expired'
  | 'replaced'
  | 'approver_disabled'
  | 'approver_removed'
  | 'key_removed'
  | 'key_suspect'
  | 'groups_changed';

interface StoredSession {
  approverId: string;
  credentialId: string;
  /** The person's groups when they signed in: leaving any of them ends the session (rights come from groups). */
  groups: readonly string[];
  signedInAt: number;
  lastSeenAt: number;
  expiresAt: number;
  /** The audit reference: a prefix of a second hash of the id, so the log never holds a usable digest. */
  ref: string;
}

/** The session id's digest (the map key): the id itself is never stored. */
const digest = (token: string): string => createHash('sha256').update(token, 'utf8').digest('base64url');
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export class DeskSessions {
  private readonly now: () => number;
  private readonly idleMs: number;
  private readonly absoluteMs: number;
  private readonly maxSessions: number;
  private readonly ceremonies: CeremonyEngine;
  private readonly sessions = new Map<string, StoredSession>();
  /** Sign-in challenges are tagged and checked with this process's key, or on a team hub the team's. */
  private readonly signInChallenges: SignInChallenges;
  /**
   * The digests of sign-in challenges this process used or is finishing now, until they expire
   * (embedded, the single-use record; on a team hub the team's record is sign_in_challenges_used).
   */
  private readonly usedChallenges = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    private readonly directory: ApproverDirectory,
    private readonly options: DeskSessionOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.idleMs = options.idleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.absoluteMs = options.absoluteMs ?? DEFAULT_SESSION_ABSOLUTE_MS;
    this.maxSessions = options.maxSessions ?? 1024;
    if (!(this.idleMs > 0 && this.absoluteMs > 0)) throw new Error('session lifetimes must be positive');
    this.ceremonies = new CeremonyEngine({ db, audit, directory, now: this.now });
    // Embedded, a key of this start's: a restart ends the sign-ins in flight, as it ends the sessions.
    // On a hub the team's, read at each use: a rotation ends the sign-ins in flight on every hub.
    const team = options.teamSessions;
    this.signInChallenges = new SignInChallenges(team === undefined ? newSignInKeyBytes() : () => team.signInKey, directory.rpId);
  }

  /** Seconds the cookie may live (the absolute lifetime; idleness is enforced here). */
  get cookieMaxAgeSeconds(): number {
    return Math.ceil(this.absoluteMs / 1000);
  }

  /**
   * WebAuthn options for `approverId` to sign in: their active keys offered, UV required, a fresh
   * stateless challenge bound to them that expires with the ceremony timeout. Nothing is stored,
   * so any number of begins, by anyone, leaves every other sign-in answerable.
   */
  async begin(approverId: string): Promise<{ options: PublicKeyCredentialRequestOptionsJSON }> {
    this.activeApprover(approverId);
    const credentials = this.keysOf(approverId);
    const challenge = this.signInChallenges.issue(approverId, this.now() + this.options.ceremonyTimeoutMs);
    const { options } = await this.ceremonies.offer({
      credentials,
      challenge,
      userVerification: 'required',
      timeoutMs: this.options.ceremonyTimeoutMs,
    });
    return { options };
  }

  /** Verify the assertion and open a session for `approverId`: the new session id (for the cookie / the window) and its view. */
  async finish(approverId: string, input: unknown): Promise<{ token: string; session: DeskSessionView }> {
    const read = this.ceremonies.read(input, SIGN_IN_CHALLENGE_LENGTH);
    const now = this.now();
    // First: made here (this start's or the team's key) for this person, and unexpired.
    const challenge = this.signInChallenges.check(read.challenge, approverId, now);
    // Then not used, nor being finished now, in this process (held from here on); on a team hub
    // not used on any hub either. So a replay is refused as such before the key's counter (which
    // the first use advanced) could take it for a clone's answer.
    this.refuseUsed(challenge.digest, now);
    this.usedChallenges.set(challenge.digest, challenge.expiresAt);
    try {
      if (this.options.teamSessions !== undefined && (await this.options.teamSessions.signInChallengeUsed(challenge.digest)))
        throw new CountersignError('challenge_invalid', 'the sign-in challenge has already been used');
      return await this.open(approverId, read, challenge, now);
    } catch (error) {
      // No session: the challenge stays answerable until it expires (on a team hub, unless the
      // team's commit recorded it).
      this.usedChallenges.delete(challenge.digest);
      throw error;
    }
  }

  /** The rest of a finish, the challenge checked and held: the key's answer, then the session. */
  private async open(
    approverId: string,
    read: ReadAssertion,
    challenge: CheckedSignInChallenge,
    now: number,
  ): Promise<{ token: string; session: DeskSessionView }> {
    const team = this.directory.team;
    const teamSessions = this.options.teamSessions;
    if (team !== undefined && teamSessions === undefined)
      throw new CountersignError('internal_error', 'a team hub signs in only with the team desk sessions');
    this.activeApprover(approverId);
    // The keys a begin offers are the person's active ones; the one that answered must still be.
    const offered = this.keysOf(approverId).map((key) => key.credentialId);
    const credential = this.ceremonies.credentialFor(approverId, read.response, offered);
    const newCounter = await this.ceremonies.verify(read, credential, 'required');
    const token = randomBytes(32).toString('base64url');
    const key = digest(token);
    const stored: StoredSession = {
      approverId,
      credentialId: credential.credentialId,
      groups: [],
      signedInAt: now,
      lastSeenAt: now,
      expiresAt: now + this.absoluteMs,
      ref: digest(key).slice(0, 16),
    };
    let granted: ApproverRecord | undefined;
    if (team !== undefined && teamSessions !== undefined) {
      // A team hub: the challenge recorded as used for the team first (a replay is refused there,
      // on any hub, before the counter could take it for a clone), then the person and key as the
      // team directory has them now (this hub's replica may lag a removal made on another hub),
      // and the team's counter advanced; a regression takes the key out of service on every hub.
      // The team's session row is written in that same transaction, with the groups read there
      // (not this hub's replica, which may lag a demotion).
      try {
        granted = await team.checkSignIn(
          {
            approverId,
            credentialId: credential.credentialId,
            counter: newCounter,
            at: now,
            spendsChallenge: (client) =>
              teamSessions.spendSignInChallenge(client, { digest: challenge.digest, approverId, expiresAt: challenge.expiresAt, at: now }),
          },
          async (client, approver) => {
            stored.groups = approver.groups;
            await teamSessions.insert(client, key, stored, this.idleMs);
          },
        );
      } catch (error) {
        if (error instanceof TeamCounterRegression) await this.ceremonies.refuse(error);
        throw error;
      }
    }
    try {
      this.db
        .transaction(() => {
          // The groups as of the committed sign-in: the rights this session was granted on.
          if (teamSessions === undefined) stored.groups = this.activeApprover(approverId).groups;
          this.ceremonies.recordUse(this.ceremonies.credentialFor(approverId, read.response, offered), newCounter, now);
          try {
            this.audit.append('desk.signed_in', now, {
              approverId,
              credentialId: credential.credentialId,
              session: stored.ref,
              signCount: newCounter,
              expiresAt: stored.expiresAt,
            });
          } catch (cause) {
            throw new CountersignError('audit_write_failed', undefined, { cause });
          }
        })
        .immediate();
    } catch (error) {
      // The team's row is unreachable without the token (never handed out); removed all the same.
      if (teamSessions !== undefined) await teamSessions.remove(key).catch(() => undefined);
      if (error instanceof CounterRegression) await this.ceremonies.refuse(error);
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the sign-in could not be recorded, so no session was opened', { cause: error });
    }
    // Only now, after its audit entry committed, does the session exist.
    if (teamSessions !== undefined && granted !== undefined)
      return { token, session: this.view(stored, granted.displayName, isAdminGroups(granted.groups)) };
    this.dropOldest();
    this.sessions.set(key, stored);
    return { token, session: this.view(stored) };
  }

  /**
   * The live session a token names, its idle deadline moved on unless `touch` is false
   * (undefined: none, or it ended; an ended one is removed and audited). The person is re-read:
   * disabled ends the session.
   */
  async resolve(token: string | undefined, options: { touch?: boolean } = {}): Promise<DeskSessionView | undefined> {
    if (token === undefined || !TOKEN_PATTERN.test(token)) return undefined;
    const key = digest(token);
    if (this.options.teamSessions !== undefined) return this.resolveTeam(this.options.teamSessions, key, options.touch !== false);
    const stored = this.sessions.get(key);
    if (stored === undefined) return undefined;
    const now = this.now();
    if (now >= stored.expiresAt) return this.end(key, stored, 'expired');
    if (now >= stored.lastSeenAt + this.idleMs) return this.end(key, stored, 'idle');
    // What the session was granted on, re-read on every call: the person, the key that signed
    // in, and the groups they had then. Any of them gone ends it (fail closed on a read error too).
    let approver: ApproverRecord;
    let keyStatus: CredentialRecord['status'];
    try {
      approver = this.directory.get(stored.approverId);
      keyStatus = this.directory.credential(stored.credentialId).status;
    } catch {
      return this.end(key, stored, 'approver_removed');
    }
    if (approver.status !== 'active') return this.end(key, stored, 'approver_disabled');
    if (keyStatus === 'removed') return this.end(key, stored, 'key_removed');
    if (keyStatus !== 'active') return this.end(key, stored, 'key_suspect');
    if (stored.groups.some((group) => !approver.groups.includes(group))) return this.end(key, stored, 'groups_changed');
    // Only calls that act for the person count as activity: the desk's automatic polling
    // (status, queue, getSession) must not keep an unattended session alive.
    if (options.touch !== false) stored.lastSeenAt = now;
    return this.view(stored, approver.displayName, isAdminGroups(approver.groups));
  }

  /**
   * A team hub's session (PG migration 14): the row and what it was granted on, read in the team
   * database in one statement (store_unavailable when it cannot be read: no session is granted).
   * The same checks as this process's sessions below, on the team directory's rows.
   */
  private async resolveTeam(team: PgDeskSessions, key: string, touch: boolean): Promise<DeskSessionView | undefined> {
    const now = this.now();
    const found = await team.read(key, now, this.idleMs, touch);
    if (found === undefined) return undefined;
    const stored: StoredSession = { ...found.session, groups: [...found.session.groups] };
    if (now >= stored.expiresAt) return this.endTeam(team, key, 'expired');
    if (now >= stored.lastSeenAt + this.idleMs) return this.endTeam(team, key, 'idle');
    if (found.approverRow === null) return this.endTeam(team, key, 'approver_removed');
    const approver = approverFromRowImage(storedRow(found.approverRow));
    if (found.approverStatus !== 'active') return this.endTeam(team, key, 'approver_disabled');
    if (found.keyStatus === null || found.keyStatus === 'removed') return this.endTeam(team, key, 'key_removed');
    if (found.keyStatus !== 'active') return this.endTeam(team, key, 'key_suspect');
    if (stored.groups.some((group) => !approver.groups.includes(group))) return this.endTeam(team, key, 'groups_changed');
    if (touch) stored.lastSeenAt = now;
    return this.view(stored, approver.displayName, isAdminGroups(approver.groups));
  }

  /** End a team session: deleted for every hub, audited by the one hub whose delete took the row. */
  private async endTeam(team: PgDeskSessions, key: string, reason: SessionEndReason): Promise<undefined> {
    const removed = await team.remove(key);
    if (removed !== undefined) this.audited(removed, reason);
    return undefined;
  }

  /** End the session a token names (sign-out; on a team hub, on every hub); false when there was none. */
  async signOut(token: string | undefined, reason: 'signed_out' | 'replaced' = 'signed_out'): Promise<boolean> {
    if (token === undefined || !TOKEN_PATTERN.test(token)) return false;
    const key = digest(token);
    const teamSessions = this.options.teamSessions;
    if (teamSessions !== undefined) {
      const removed = await teamSessions.remove(key);
      if (removed !== undefined) this.audited(removed, reason);
      return removed !== undefined;
    }
    const stored = this.sessions.get(key);
    if (stored === undefined) return false;
    this.end(key, stored, reason);
    return true;
  }

  /** How many sessions are open (for tests and status). */
  get size(): number {
    return this.sessions.size;
  }

  private end(key: string, stored: StoredSession, reason: SessionEndReason): undefined {
    this.sessions.delete(key);
    this.audited(stored, reason);
    return undefined;
  }

  /** desk.signed_out for a session that has already been removed. */
  private audited(stored: Pick<StoredSession, 'approverId' | 'credentialId' | 'ref'>, reason: SessionEndReason): void {
    const now = this.now();
    // The session is gone either way; a failed audit write must not keep it alive.
    try {
      this.db
        .transaction(() => {
          this.audit.append('desk.signed_out', now, {
            approverId: stored.approverId,
            credentialId: stored.credentialId,
            session: stored.ref,
            reason,
          });
        })
        .immediate();
    } catch {
      // Fail closed: the session has already been removed.
    }
  }

  private view(stored: StoredSession, displayName?: string, admin?: boolean): DeskSessionView {
    let name = displayName;
    let isAdmin = admin;
    if (name === undefined || isAdmin === undefined) {
      const approver = this.directory.get(stored.approverId);
      name = approver.displayName;
      isAdmin = isAdminGroups(approver.groups);
    }
    return {
      approverId: stored.approverId,
      displayName: name,
      admin: isAdmin,
      credentialId: stored.credentialId,
      signedInAt: stored.signedInAt,
      expiresAt: stored.expiresAt,
      idleExpiresAt: Math.min(stored.lastSeenAt + this.idleMs, stored.expiresAt),
    };
  }

  private activeApprover(approverId: string): ApproverRecord {
    const approver = this.directory.get(approverId);
    if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
    return approver;
  }

  /** The person's active keys (credential_unknown when they have none). */
  private keysOf(approverId: string): CredentialRecord[] {
    return this.ceremonies.keysOf(approverId, `approver ${quote(approverId)} has no active security key to sign in with`);
  }

  /**
   * challenge_invalid when this process used this sign-in challenge or is finishing it now.
   * Records of expired challenges are dropped first (their expiry refuses them anyway), so the map
   * holds only the sign-ins of one ceremony timeout that verified or are being verified.
   */
  private refuseUsed(digest: string, now: number): void {
    for (const [used, expiresAt] of this.usedChallenges) if (expiresAt <= now) this.usedChallenges.delete(used);
    if (this.usedChallenges.has(digest)) throw new CountersignError('challenge_invalid', 'the sign-in challenge has already been used');
  }

  private dropOldest(): void {
    while (this.sessions.size >= this.maxSessions) {
      const oldest = this.sessions.keys().next();
      if (oldest.done === true) return;
      this.sessions.delete(oldest.value);
    }
  }
}
