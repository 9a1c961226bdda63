/**
 * Admin actions on the approver directory (add an approver, disable one, change groups, remove
 * a key) and the acknowledgement of a tamper alarm, over the local API, need an admin's
 * security-key tap over exactly that action: the WebAuthn challenge is base64url(SHA-256(JCS({typ, adminId, action, nonce, expiresAt}))),
 * stored server-side and single use with the keys offered, user verification required. The tap
 * runs through the one ceremony engine (ceremony.ts): an offered key of this admin, the
 * userHandle, the signature, and a counter that must advance (a regression marks the key suspect,
 * audited, and refuses the action). The action and the admin's assertion are audited together. Admins are approvers in the `countersign-admins` group; the
 * first admin is created on the machine itself (`countersign approvers add`), which is the root
 * of trust for a local app.
 *
 * The admin quorum (`approvals.adminQuorum: 2`): the first admin's tapped action is not performed
 * but stored as a proposal (admin_proposals, audited `admin.action_proposed`); a second, distinct
 * admin confirms or rejects it with their own tap over a record naming the proposal, the action and
 * the verdict (typ countersign.admin-confirmation/v1). The proposal leaves 'pending' exactly once,
 * in the transaction that performs the action and audits it with both admins' assertions. While
 * fewer admins than the quorum can tap (an active admin with an active key), one tap performs the
 * action (the first run, adding the second admin); docs/approvals.md explains the trade-off.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { z } from 'zod';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ApproverDirectory } from './approver-directory.js';
import type { TamperAlarm } from '../audit/tamper-alarm.js';
import type { AgentRegistry, AgentScope } from '../identity/agent-registry.js';
import type { TeamAgents } from '../identity/team-agents.js';
import type { TeamApprovers } from './team-approvers.js';
import type { AuditSubmission } from '../store/store-seam.js';
import { verifyEnrollmentRequest, type EnrollmentPayload } from '../../../shared/enrollment.js';
import { CeremonyEngine, CounterRegression, parseOffered } from './ceremony.js';
import { TeamCounterRegression, TeamQuorumApplies, type TeamTap } from '../store/pg/pg-directory.js';
import type { TeamProposals } from '../store/pg/pg-admin-proposals.js';
import { recordChallenge } from '../../../shared/approvals.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { ADMIN_GROUP_NAME } from '../../../shared/bridge.js';
import { canonicalize, parseStrictJson } from '../../../shared/canonical-json.js';
import type { AdminConfirmationVerdict, AdminProposal, AdminProposalState } from '../../../shared/bridge-admin.js';
import { SIGNED_TYP } from '../../../shared/typ.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';
import { adminActionSchema, type AdminAction } from '../../../shared/admin-actions.js';

export const ADMIN_GROUP = ADMIN_GROUP_NAME;
export const ADMIN_ACTION_TYP = SIGNED_TYP.adminAction;
export const ADMIN_CONFIRMATION_TYP = SIGNED_TYP.adminConfirmation;
export const DEFAULT_ADMIN_PROPOSAL_TTL_MS = 24 * 3600_000;

const id = z.string().min(1).max(128);
// The action schema is shared (the desk builds actions): one spelling, re-exported for the core's callers.
export { adminActionSchema, type AdminAction };

/** The record an admin's key signs (its challenge is recordChallenge of it), as stored in admin_challenges. */
export const adminChallengeRecordSchema = z.strictObject({
  typ: z.literal(ADMIN_ACTION_TYP),
  adminId: id,
  action: adminActionSchema,
  nonce: z
    .string()
    .length(43)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url'),
  expiresAt: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type AdminChallengeRecord = z.infer<typeof adminChallengeRecordSchema>;

/** The record a second admin's key signs to confirm or reject a proposal (its challenge is recordChallenge of it). */
export const adminConfirmationRecordSchema = z.strictObject({
  typ: z.literal(ADMIN_CONFIRMATION_TYP),
  adminId: id,
  proposalId: id,
  proposedBy: id,
  action: adminActionSchema,
  verdict: z.enum(['confirm', 'reject']),
  nonce: z
    .string()
    .length(43)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url'),
  expiresAt: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type AdminConfirmationRecord = z.infer<typeof adminConfirmationRecordSchema>;

/** What a submitted admin action did: performed (result), or stored as a proposal for a second admin. */
export type AdminSubmitOutcome = { action: AdminAction; result: unknown; proposal?: AdminProposal };

interface ProposalRow {
  id: string;
  action: string;
  proposed_by: string;
  proposer_credential: string;
  proposer_evidence: string;
  state: 'pending' | 'executed' | 'rejected';
  created_at: number;
  expires_at: number;
}

/** The assertion kept as evidence with an audited admin action. */
type Evidence = { authenticatorData: string; clientDataJSON: string; signature: string };
const evidenceSchema = z.strictObject({ authenticatorData: z.string(), clientDataJSON: z.string(), signature: z.string() });

export class AdminActions {
  private readonly now: () => number;
  private readonly ceremonies: CeremonyEngine;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    private readonly directory: ApproverDirectory,
    private readonly options: {
      ceremonyTimeoutMs: number;
      now?: () => number;
      alarm?: TamperAlarm;
      /** Agents (enroll, rotate, revoke); without it the agent actions are refused. */
      registry?: Pick<AgentRegistry, 'enroll' | 'rotate' | 'revoke'>;
      /**
       * A team hub (ADR 0013): agent actions are performed in the team directory, in one
       * PostgreSQL transaction with their `admin.action` record, after the tap was checked and its
       * challenge spent here; the hub's own agent tables are a replica it may not write.
       */
      teamAgents?: Pick<TeamAgents, 'enroll' | 'rotate' | 'revoke'>;
      /** A team hub: approver actions are performed in the team directory the same way (approvals/team-approvers.ts). */
      teamApprovers?: Pick<
        TeamApprovers,
        'add' | 'issueRegistrationCode' | 'disable' | 'setGroups' | 'removeCredential' | 'tappingAdmins' | 'assertTappingAdmin'
      >;
      /**
       * A team hub: proposals are the team's (store/pg/pg-admin-proposals.ts), listed and decided
       * on every hub, each written with its team audit record and the tap that made it.
       */
      teamProposals?: TeamProposals;
      /** Distinct admins' taps an action needs (approvals.adminQuorum; default 1). */
      quorum?: 1 | 2;
      /** How long a proposal waits for the second admin (approvals.adminProposalTtlMs). */
      proposalTtlMs?: number;
      /**
       * Told after a proposal is stored ('pending') or decided ('executed', 'rejected'), once its
       * transaction committed: the desk's push event (adminProposal), so admins need not poll.
       */
      onProposal?: (proposalId: string, state: AdminProposalState) => void;
    },
  ) {
    this.now = options.now ?? Date.now;
    this.ceremonies = new CeremonyEngine({ db, audit, directory, now: this.now });
  }

  /** WebAuthn options for `adminId` to confirm `action` with a key tap. */
  async start(adminId: string, input: unknown): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; action: AdminAction }> {
    const parsed = adminActionSchema.safeParse(input);
    if (!parsed.success)
      throw new CountersignError(
        'schema_invalid',
        `the admin action is malformed at ${quote(parsed.error.issues[0]?.path.join('.') ?? '')}`,
      );
    const action = parsed.data;
    const credentials = this.adminCredentials(adminId);
    // Fail before the tap, not after it: the alarm must be open now, an enrollment request must
    // verify (each is checked again when performed).
    await this.precheck(action);
    const now = this.now();
    const expiresAt = now + this.options.ceremonyTimeoutMs;
    const record: AdminChallengeRecord = {
      typ: ADMIN_ACTION_TYP,
      adminId,
      action: action,
      nonce: randomBytes(32).toString('base64url'),
      expiresAt,
    };
    const challenge = await recordChallenge(record);
    const { options, offered } = await this.ceremonies.offer({
      credentials,
      challenge,
      userVerification: 'required',
      timeoutMs: this.options.ceremonyTimeoutMs,
    });
    await this.ceremonies.issueChallenge('admin', { challenge, userId: adminId, record, expiresAt, offered });
    return { options, action };
  }

  /** Verify the admin's assertion and perform the action it confirms, in one transaction. */
  async submit(adminId: string, response: AuthenticationResponseJSON): Promise<AdminSubmitOutcome> {
    this.adminCredentials(adminId);
    const read = this.ceremonies.read(response);
    const { challenge } = read;
    const row = await this.ceremonies.challenge('admin', challenge);
    const now = this.now();
    if (row === undefined || row.record === null || row.userId !== adminId || row.usedAt !== null || row.expiresAt <= now) {
      throw new CountersignError('challenge_invalid', 'the admin challenge is unknown, used, expired or for another admin');
    }
    const parsedRecord = adminChallengeRecordSchema.safeParse(parseStrictJson(row.record));
    if (!parsedRecord.success || parsedRecord.data.adminId !== adminId || (await recordChallenge(parsedRecord.data)) !== challenge) {
      throw new CountersignError('challenge_invalid', 'the admin challenge does not match its bound record');
    }
    const { action } = parsedRecord.data;
    const offered = parseOffered(row.offered);
    const credential = this.ceremonies.credentialFor(adminId, read.response, offered);
    const newCounter = await this.ceremonies.verify(read, credential, 'required');
    await this.claim(challenge, adminId);
    // The agent's proof of possession, verified on the object as signed (never re-serialised first).
    const enrollment =
      action.kind === 'agent.enroll' || action.kind === 'agent.rotate' ? await verifyEnrollmentRequest(action.request, now) : undefined;
    const evidence = evidenceOf(read.response);
    // A team hub counts the admins who can tap in the team directory (its replica may lag behind a new admin).
    const teamQuorum = await this.teamQuorumApplies();
    let outcome: SubmitStep;
    try {
      outcome = this.db
        .transaction((): SubmitStep => {
          // Spend the challenge first: a concurrent submit of the same assertion finds it used.
          if (!this.ceremonies.spendChallenge('admin', challenge, now))
            throw new CountersignError('challenge_invalid', 'the admin challenge was already used');
          // The admin as they are now (disabled or removed from the admin group meanwhile: refused).
          this.adminCredentials(adminId);
          // The key as it is now (a concurrent tap may have moved its counter or marked it suspect).
          this.ceremonies.recordUse(this.ceremonies.credentialFor(adminId, read.response, offered), newCounter, now);
          // Under the admin quorum the tap proposes; a second admin's tap performs (confirm()).
          if (teamQuorum ?? this.quorumApplies()) {
            // A team hub writes the proposal in the team database once this commits (below).
            if (this.options.teamProposals !== undefined) return { teamProposal: true as const };
            return { action, result: {}, proposal: this.propose(action, adminId, credential.credentialId, evidence, now) };
          }
          if (this.inTeamDirectory(action))
            return { team: { kind: 'admin.action', at: now, event: { adminId, action, credentialId: credential.credentialId, evidence } } };
          const outcome = this.perform(action, adminId, now, enrollment);
          this.record('admin.action', now, { adminId, action, credentialId: credential.credentialId, evidence });
          return { action, result: outcome };
        })
        .immediate();
    } catch (error) {
      if (error instanceof CounterRegression || error instanceof TeamCounterRegression) await this.ceremonies.refuse(error);
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the admin action could not be stored, so nothing was performed', { cause: error });
    }
    const tap: TeamTap = { approverId: adminId, credentialId: credential.credentialId, counter: newCounter, at: now };
    if ('team' in outcome) {
      // The count above was read before this transaction: a second admin committed since then
      // (their key registered, their group joined, on any hub) makes this tap a proposal. The
      // directory lock orders the recount after every such change.
      try {
        return {
          action,
          result: await this.performInTeam(action, now, enrollment, outcome.team, {
            ...tap,
            actsAlone: (client) => this.assertActsAlone(client),
          }),
        };
      } catch (error) {
        if (!(error instanceof TeamQuorumApplies)) throw error;
        outcome = { teamProposal: true };
      }
    }
    if ('teamProposal' in outcome) {
      const proposal = await this.proposeInTeam(action, adminId, credential.credentialId, evidence, now, tap);
      this.told(proposal.id, 'pending');
      return { action, result: {}, proposal };
    }
    if (outcome.proposal !== undefined) this.told(outcome.proposal.id, 'pending');
    return outcome;
  }

  /** Whether `action` is performed in the team directory rather than in this hub's own tables. */
  private inTeamDirectory(action: AdminAction): boolean {
    switch (action.kind) {
      case 'agent.enroll':
      case 'agent.rotate':
      case 'agent.revoke':
        return this.options.teamAgents !== undefined;
      case 'audit.acknowledge_alarm':
        return false;
      default:
        return this.options.teamApprovers !== undefined;
    }
  }

  /**
   * An agent or approver action in the team directory, with its admin.action record and the
   * admin's tap (the key's counter advanced for every hub) in the same PostgreSQL transaction.
   */
  private async performInTeam(
    action: AdminAction,
    now: number,
    enrollment: EnrollmentPayload | undefined,
    record: AuditSubmission<'admin.action'>,
    tap: TeamTap,
  ): Promise<unknown> {
    return this.refusingClonedKeys(() => this.performInTeamDirectory(action, now, enrollment, record, tap));
  }

  /**
   * Runs a team write that carries an admin's tap; a counter the team database finds gone
   * backwards (a cloned key) marks the key suspect before the refusal reaches the caller.
   */
  private async refusingClonedKeys<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof TeamCounterRegression) await this.ceremonies.refuse(error);
      throw error;
    }
  }

  private async performInTeamDirectory(
    action: AdminAction,
    now: number,
    enrollment: EnrollmentPayload | undefined,
    record: AuditSubmission<'admin.action'>,
    tap: TeamTap,
  ): Promise<unknown> {
    const context = { also: [record], tap };
    switch (action.kind) {
      case 'agent.enroll': {
        const agent = await this.teamAgents().enroll(required(enrollment), scopeOf(action.scope, now), now, [record], tap);
        return { enrolled: agent.id };
      }
      case 'agent.rotate': {
        const key = await this.teamAgents().rotate(action.id, required(enrollment), action.overlapHours * 3600 * 1000, now, [record], tap);
        return { rotated: action.id, kid: key.kid };
      }
      case 'agent.revoke':
        return {
          revoked: action.id,
          endedRequests: (await this.teamAgents().revoke(action.id, action.reason, now, [record], tap)).map((r) => r.requestId),
        };
      case 'approver.add': {
        // A new approver comes with the code they register their first key with, in one transaction.
        const added = await this.teamApprovers().add(
          { id: action.id, displayName: action.displayName, groups: action.groups },
          { issuedBy: record.event.adminId, ...context },
        );
        return { approver: added.approver, registration: added.registration };
      }
      case 'approver.issue_registration_code':
        return this.teamApprovers().issueRegistrationCode(action.id, record.event.adminId, context);
      case 'approver.disable':
        await this.teamApprovers().disable(action.id, context);
        return { disabled: action.id };
      case 'approver.set_groups':
        await this.teamApprovers().setGroups(action.id, action.groups, context);
        return { id: action.id, groups: action.groups };
      case 'credential.remove':
        await this.teamApprovers().removeCredential(action.credentialId, context);
        return { removed: action.credentialId };
      default:
        throw new CountersignError('internal_error', 'this action is not performed in the team directory');
    }
  }

  private teamAgents(): NonNullable<(typeof this.options)['teamAgents']> {
    if (this.options.teamAgents === undefined)
      throw new CountersignError('internal_error', 'agent actions are not available on this server');
    return this.options.teamAgents;
  }

  private teamApprovers(): NonNullable<(typeof this.options)['teamApprovers']> {
    if (this.options.teamApprovers === undefined)
      throw new CountersignError('internal_error', 'approver actions are not available on this server');
    return this.options.teamApprovers;
  }

  // ---- the admin quorum ----

  /** The quorum in force (1: an admin's own tap performs; 2: a second admin confirms). */
  get quorum(): 1 | 2 {
    return this.options.quorum ?? 1;
  }

  /** Proposals waiting for a second admin, oldest first (expired ones are not listed). */
  async listProposals(): Promise<AdminProposal[]> {
    const team = this.options.teamProposals;
    if (team !== undefined) return (await team.pending(this.now(), 1000)).map(toProposal);
    return this.db
      .prepare<[number], ProposalRow>(
        "SELECT * FROM admin_proposals WHERE state = 'pending' AND expires_at > ? ORDER BY created_at, id LIMIT 1000",
      )
      .all(this.now())
      .map(toProposal);
  }

  /** WebAuthn options for `adminId` to confirm or reject proposal `proposalId` with a key tap over exactly it. */
  async startConfirmation(
    adminId: string,
    proposalId: string,
    verdict: AdminConfirmationVerdict,
  ): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; proposal: AdminProposal; verdict: AdminConfirmationVerdict }> {
    const credentials = this.adminCredentials(adminId);
    const now = this.now();
    const proposal = await this.pendingProposalOfTeam(proposalId, now);
    if (proposal.proposedBy === adminId)
      throw new CountersignError('admin_self_confirm', `${quote(adminId)} proposed ${quote(proposalId)}; a second admin must decide it`);
    // A confirmation that cannot be performed is refused before the tap (and checked again at submit).
    if (verdict === 'confirm') await this.precheck(proposal.action);
    const record: AdminConfirmationRecord = {
      typ: ADMIN_CONFIRMATION_TYP,
      adminId,
      proposalId,
      proposedBy: proposal.proposedBy,
      action: proposal.action,
      verdict,
      nonce: randomBytes(32).toString('base64url'),
      expiresAt: Math.min(now + this.options.ceremonyTimeoutMs, proposal.expiresAt),
    };
    const challenge = await recordChallenge(record);
    const { options, offered } = await this.ceremonies.offer({
      credentials,
      challenge,
      userVerification: 'required',
      timeoutMs: this.options.ceremonyTimeoutMs,
    });
    await this.ceremonies.issueChallenge('admin', { challenge, userId: adminId, record, expiresAt: record.expiresAt, offered });
    return { options, proposal, verdict };
  }

  /**
   * Verify the second admin's assertion and decide the proposal it names, in one transaction: the
   * proposal leaves 'pending' once (a second confirmation finds it closed); confirmed, the action
   * is performed and audited with both admins' assertions; rejected, nothing is performed.
   */
  async submitConfirmation(
    adminId: string,
    response: AuthenticationResponseJSON,
  ): Promise<{ proposalId: string; verdict: AdminConfirmationVerdict; action: AdminAction; result: unknown }> {
    this.adminCredentials(adminId);
    const read = this.ceremonies.read(response);
    const { challenge } = read;
    const row = await this.ceremonies.challenge('admin', challenge);
    const now = this.now();
    if (row === undefined || row.record === null || row.userId !== adminId || row.usedAt !== null || row.expiresAt <= now) {
      throw new CountersignError('challenge_invalid', 'the admin challenge is unknown, used, expired or for another admin');
    }
    const parsedRecord = adminConfirmationRecordSchema.safeParse(parseStrictJson(row.record));
    if (!parsedRecord.success || parsedRecord.data.adminId !== adminId || (await recordChallenge(parsedRecord.data)) !== challenge) {
      throw new CountersignError('challenge_invalid', 'the admin challenge is not a confirmation of a proposed admin action');
    }
    const { proposalId, verdict, action } = parsedRecord.data;
    const offered = parseOffered(row.offered);
    const credential = this.ceremonies.credentialFor(adminId, read.response, offered);
    const newCounter = await this.ceremonies.verify(read, credential, 'required');
    await this.claim(challenge, adminId);
    const enrollment =
      verdict === 'confirm' && (action.kind === 'agent.enroll' || action.kind === 'agent.rotate')
        ? await verifyEnrollmentRequest(action.request, now)
        : undefined;
    const evidence = evidenceOf(read.response);
    type Confirmed = { proposalId: string; verdict: AdminConfirmationVerdict; action: AdminAction; result: unknown };
    let outcome: Confirmed | { team: AuditSubmission<'admin.action'> } | { teamProposal: true };
    try {
      outcome = this.db
        .transaction((): Confirmed | { team: AuditSubmission<'admin.action'> } | { teamProposal: true } => {
          if (!this.ceremonies.spendChallenge('admin', challenge, now))
            throw new CountersignError('challenge_invalid', 'the admin challenge was already used');
          this.adminCredentials(adminId);
          this.ceremonies.recordUse(this.ceremonies.credentialFor(adminId, read.response, offered), newCounter, now);
          // A team hub decides the team's proposal in the team database once this commits (below).
          if (this.options.teamProposals !== undefined) return { teamProposal: true as const };
          const stored = this.proposalRow(proposalId);
          const proposal = this.pendingProposal(proposalId, now);
          if (proposal.proposedBy === adminId)
            throw new CountersignError(
              'admin_self_confirm',
              `${quote(adminId)} proposed ${quote(proposalId)}; a second admin must decide it`,
            );
          // What the proposer signed is what the second admin signed (the record carries the action).
          if (stored.action !== canonicalize(action))
            throw new CountersignError('challenge_invalid', 'the confirmation was made over another action than the one proposed');
          // Leave 'pending' exactly once: a concurrent or repeated confirmation changes nothing.
          const moved = this.db
            .prepare("UPDATE admin_proposals SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending'")
            .run(verdict === 'confirm' ? 'executed' : 'rejected', adminId, now, proposalId).changes;
          if (moved !== 1) throw closed(proposalId);
          const second = { adminId, credentialId: credential.credentialId, evidence };
          if (verdict === 'reject') {
            this.record('admin.action_rejected', now, { proposalId, proposedBy: proposal.proposedBy, action, ...second });
            return { proposalId, verdict, action, result: { rejected: proposalId } };
          }
          // The proposer as they are now: one disabled or out of the admin group meanwhile no longer stands behind it.
          this.adminCredentials(proposal.proposedBy);
          const record: AuditSubmission<'admin.action'> = {
            kind: 'admin.action',
            at: now,
            event: {
              adminId: proposal.proposedBy,
              action,
              credentialId: stored.proposer_credential,
              evidence: evidenceSchema.parse(parseStrictJson(stored.proposer_evidence)),
              proposalId,
              confirmedBy: second,
            },
          };
          // A team hub performs it in the team directory once this commits (the proposal is closed
          // either way: if the database refuses, nothing was performed and the admins propose again).
          if (this.inTeamDirectory(action)) return { team: record };
          const result = this.perform(action, proposal.proposedBy, now, enrollment);
          this.record('admin.action', now, record.event);
          return { proposalId, verdict, action, result };
        })
        .immediate();
    } catch (error) {
      if (error instanceof CounterRegression || error instanceof TeamCounterRegression) await this.ceremonies.refuse(error);
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the admin confirmation could not be stored, so nothing was performed', { cause: error });
    }
    const tap = { approverId: adminId, credentialId: credential.credentialId, counter: newCounter, at: now };
    if ('teamProposal' in outcome) {
      const second = { adminId, credentialId: credential.credentialId, evidence };
      const result = await this.decideInTeam({ proposalId, verdict, action, second, now, enrollment, tap });
      this.told(proposalId, verdict === 'confirm' ? 'executed' : 'rejected');
      return { proposalId, verdict, action, result };
    }
    if ('team' in outcome) {
      const result = await this.performInTeam(action, now, enrollment, outcome.team, tap);
      this.told(proposalId, 'executed');
      return { proposalId, verdict, action, result };
    }
    this.told(outcome.proposalId, outcome.verdict === 'confirm' ? 'executed' : 'rejected');
    return outcome;
  }

  /**
   * On a team hub, spend the verified tap's challenge for every hub now (the same answer sent to
   * another hub finds it used); embedded this reads it, and the final transaction spends it.
   */
  private async claim(challenge: string, adminId: string): Promise<void> {
    if ((await this.ceremonies.claimChallenge('admin', challenge, adminId, this.now())) === undefined)
      throw new CountersignError('challenge_invalid', 'the admin challenge was already used or has expired');
  }

  /** Tell the listener (the push event); its fault never undoes or fails a committed action. */
  private told(proposalId: string, state: AdminProposalState): void {
    try {
      this.options.onProposal?.(proposalId, state);
    } catch {
      // The desk re-reads the list on its next event or start.
    }
  }

  /**
   * On a team hub, whether an action needs a second admin now, counted in the team directory:
   * this hub's replica may not have applied a second admin's key or group yet, and counting there
   * let one admin's tap on that hub act alone. Undefined off a team (quorumApplies decides).
   * Read before the tap's transaction, so a tap it lets act alone is counted again inside the
   * team change that performs it (assertActsAlone, under the directory lock); the hub-local
   * action (a tamper alarm's acknowledgement) is not.
   */
  private async teamQuorumApplies(): Promise<boolean | undefined> {
    const team = this.options.teamApprovers;
    if (team === undefined) return undefined;
    if (this.quorum < 2) return false;
    return (await team.tappingAdmins()).length >= this.quorum;
  }

  /** Inside a team change an admin's tap performs alone: the admin quorum must not apply now (else TeamQuorumApplies). */
  private async assertActsAlone(client: pg.PoolClient): Promise<void> {
    const team = this.options.teamApprovers;
    if (team === undefined || this.quorum < 2) return;
    if ((await team.tappingAdmins(client)).length >= this.quorum) throw new TeamQuorumApplies();
  }

  /** Whether an action needs a second admin now: the quorum is 2 and at least two admins can tap. */
  private quorumApplies(): boolean {
    if (this.quorum < 2) return false;
    const able = this.directory
      .list()
      .filter((a) => a.status === 'active' && a.groups.includes(ADMIN_GROUP) && this.directory.credentialsOf(a.id).length > 0);
    return able.length >= this.quorum;
  }

  private propose(action: AdminAction, adminId: string, credentialId: string, evidence: Evidence, now: number): AdminProposal {
    const row = this.newProposalRow(action, adminId, credentialId, evidence, now);
    this.db
      .prepare(
        'INSERT INTO admin_proposals (id, action, proposed_by, proposer_credential, proposer_evidence, state, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(row.id, row.action, row.proposed_by, row.proposer_credential, row.proposer_evidence, row.state, row.created_at, row.expires_at);
    this.record('admin.action_proposed', now, proposedEvent(row, action, evidence));
    return { id: row.id, action, proposedBy: adminId, createdAt: now, expiresAt: row.expires_at };
  }

  /** A team hub: the proposal and its record, with the proposer's tap, in the team database (listed on every hub). */
  private async proposeInTeam(
    action: AdminAction,
    adminId: string,
    credentialId: string,
    evidence: Evidence,
    now: number,
    tap: TeamTap,
  ): Promise<AdminProposal> {
    const row = this.newProposalRow(action, adminId, credentialId, evidence, now);
    const record: AuditSubmission<'admin.action_proposed'> = {
      kind: 'admin.action_proposed',
      at: now,
      event: proposedEvent(row, action, evidence),
    };
    await this.refusingClonedKeys(() => this.teamProposalStore().propose(row, record, tap));
    return toProposal(row);
  }

  /** A new pending proposal, embedded or team: a fresh id and the configured time to live. */
  private newProposalRow(action: AdminAction, adminId: string, credentialId: string, evidence: Evidence, now: number): ProposalRow {
    return {
      id: `adm-${randomBytes(12).toString('base64url')}`,
      action: canonicalize(action),
      proposed_by: adminId,
      proposer_credential: credentialId,
      proposer_evidence: canonicalize(evidence),
      state: 'pending',
      created_at: now,
      expires_at: now + (this.options.proposalTtlMs ?? DEFAULT_ADMIN_PROPOSAL_TTL_MS),
    };
  }

  /**
   * A team hub: the second admin's decision on the team's proposal, with the embedded rules
   * (pending and unexpired, a second person, the action proposed is the action signed). The
   * proposal leaves 'pending' once for the team, with the rejection's record and tap, or (to
   * confirm) before the action is performed: in the team directory with both admins' record and
   * this tap, or on this hub (a tamper alarm's acknowledgement). If performing then fails, the
   * proposal stays closed and nothing was performed (the admins propose again), as before.
   */
  private async decideInTeam(input: {
    proposalId: string;
    verdict: AdminConfirmationVerdict;
    action: AdminAction;
    second: { adminId: string; credentialId: string; evidence: Evidence };
    now: number;
    enrollment: EnrollmentPayload | undefined;
    tap: TeamTap;
  }): Promise<unknown> {
    const { proposalId, verdict, action, second, now, enrollment, tap } = input;
    const check = async (stored: ProposalRow, client: pg.ClientBase) => {
      if (stored.state !== 'pending' || stored.expires_at <= now) throw closed(proposalId);
      if (stored.proposed_by === second.adminId)
        throw new CountersignError(
          'admin_self_confirm',
          `${quote(second.adminId)} proposed ${quote(proposalId)}; a second admin must decide it`,
        );
      if (stored.action !== canonicalize(action))
        throw new CountersignError('challenge_invalid', 'the confirmation was made over another action than the one proposed');
      // The proposer as the team directory has them now (not this hub's replica, which may lag):
      // one disabled, out of the admin group or without a key meanwhile no longer stands behind it.
      if (verdict !== 'confirm') return;
      const team = this.options.teamApprovers;
      if (team !== undefined) await team.assertTappingAdmin(client, stored.proposed_by);
      else this.adminCredentials(stored.proposed_by);
    };
    // The performed action's record: the proposer's tap (its fields do not change after proposing) and the confirmation.
    const actionEvent = (proposed: ProposalRow): AuditEventFields<'admin.action'> => ({
      adminId: proposed.proposed_by,
      action,
      credentialId: proposed.proposer_credential,
      evidence: evidenceSchema.parse(parseStrictJson(proposed.proposer_evidence)),
      proposalId,
      confirmedBy: second,
    });
    const store = this.teamProposalStore();
    if (verdict === 'confirm' && this.inTeamDirectory(action)) {
      // Closed in the action's own team transaction (TeamTap.closesProposal): if the action is
      // refused or the commit fails, the proposal stays pending and no record claims it ran.
      const proposed = await store.get(proposalId);
      if (proposed === undefined)
        throw new CountersignError('admin_proposal_unknown', `no proposed admin action is named ${quote(proposalId)}`);
      const closing: TeamTap = {
        ...tap,
        closesProposal: async (client) => {
          await store.closeWithin(client, proposalId, 'executed', second.adminId, now, check);
        },
      };
      return this.performInTeam(action, now, enrollment, { kind: 'admin.action', at: now, event: actionEvent(proposed) }, closing);
    }
    if (verdict === 'reject')
      return this.refusingClonedKeys(async () => {
        const proposed = await store.get(proposalId);
        if (proposed === undefined)
          throw new CountersignError('admin_proposal_unknown', `no proposed admin action is named ${quote(proposalId)}`);
        const record: AuditSubmission<'admin.action_rejected'> = {
          kind: 'admin.action_rejected',
          at: now,
          event: { proposalId, proposedBy: proposed.proposed_by, action, ...second },
        };
        await store.close(proposalId, 'rejected', second.adminId, now, check, [record], tap);
        return { rejected: proposalId };
      });
    const stored = await this.refusingClonedKeys(() => store.close(proposalId, 'executed', second.adminId, now, check, [], tap));
    const event = actionEvent(stored);
    return this.db
      .transaction(() => {
        const result = this.perform(action, stored.proposed_by, now, enrollment);
        this.record('admin.action', now, event);
        return result;
      })
      .immediate();
  }

  private teamProposalStore(): TeamProposals {
    if (this.options.teamProposals === undefined) throw new CountersignError('internal_error', 'this hub keeps no team proposals');
    return this.options.teamProposals;
  }

  /** The pending proposal: the team's on a hub, this data directory's otherwise. */
  private async pendingProposalOfTeam(proposalId: string, now: number): Promise<AdminProposal> {
    const team = this.options.teamProposals;
    if (team === undefined) return this.pendingProposal(proposalId, now);
    const row = await team.get(proposalId);
    if (row === undefined) throw new CountersignError('admin_proposal_unknown', `no proposed admin action is named ${quote(proposalId)}`);
    if (row.state !== 'pending' || row.expires_at <= now) throw closed(proposalId);
    return toProposal(row);
  }

  private proposalRow(proposalId: string): ProposalRow {
    const row = this.db.prepare<[string], ProposalRow>('SELECT * FROM admin_proposals WHERE id = ?').get(proposalId);
    if (row === undefined) throw new CountersignError('admin_proposal_unknown', `no proposed admin action is named ${quote(proposalId)}`);
    return row;
  }

  private pendingProposal(proposalId: string, now: number): AdminProposal {
    const row = this.proposalRow(proposalId);
    if (row.state !== 'pending' || row.expires_at <= now) throw closed(proposalId);
    return toProposal(row);
  }

  /** The checks an action gets before a tap (each is repeated when it is performed). */
  private async precheck(action: AdminAction): Promise<void> {
    if (action.kind === 'audit.acknowledge_alarm') this.tamperAlarm().assertOpen(action.alarmId);
    if (action.kind === 'agent.enroll' || action.kind === 'agent.rotate') {
      this.agents();
      await verifyEnrollmentRequest(action.request, this.now());
    }
    if (action.kind === 'agent.revoke') this.agents();
  }

  private record<K extends 'admin.action' | 'admin.action_proposed' | 'admin.action_rejected'>(
    kind: K,
    now: number,
    fields: AuditEventFields<K>,
  ): void {
    try {
      this.audit.append(kind, now, fields);
    } catch (cause) {
      throw new CountersignError('audit_write_failed', undefined, { cause });
    }
  }

  private perform(action: AdminAction, adminId: string, now: number, enrollment: EnrollmentPayload | undefined): unknown {
    switch (action.kind) {
      case 'agent.enroll': {
        const { scope } = action;
        const agent = this.agents().enroll(required(enrollment), scopeOf(scope, now), now);
        return { enrolled: agent.id };
      }
      case 'agent.rotate': {
        const key = this.agents().rotate(action.id, required(enrollment), action.overlapHours * 3600 * 1000, now);
        return { rotated: action.id, kid: key.kid };
      }
      case 'agent.revoke':
        return {
          revoked: action.id,
          endedRequests: this.agents()
            .revoke(action.id, action.reason, now)
            .map((r) => r.requestId),
        };
      case 'audit.acknowledge_alarm':
        return { acknowledged: this.tamperAlarm().acknowledge(action.alarmId, adminId, now) };
      case 'approver.add': {
        // A new approver comes with the code they register their first key with.
        const approver = this.directory.addApprover({ id: action.id, displayName: action.displayName, groups: action.groups });
        return { approver, registration: this.directory.issueRegistrationCode(action.id, adminId) };
      }
      case 'approver.issue_registration_code':
        return this.directory.issueRegistrationCode(action.id, adminId);
      case 'approver.disable':
        this.directory.disable(action.id);
        return { disabled: action.id };
      case 'approver.set_groups':
        this.directory.setGroups(action.id, action.groups);
        return { id: action.id, groups: action.groups };
      case 'credential.remove':
        this.directory.removeCredential(action.credentialId);
        return { removed: action.credentialId };
    }
  }

  private agents(): NonNullable<(typeof this.options)['registry']> {
    if (this.options.registry === undefined) throw new CountersignError('internal_error', 'agent actions are not available on this server');
    return this.options.registry;
  }

  private tamperAlarm(): TamperAlarm {
    if (this.options.alarm === undefined) throw new CountersignError('tamper_alarm_unknown', 'this server keeps no tamper alarms');
    return this.options.alarm;
  }

  private adminCredentials(adminId: string) {
    const admin = this.directory.get(adminId);
    if (admin.status !== 'active') throw new CountersignError('approver_disabled', `admin ${quote(adminId)} is disabled`);
    if (!admin.groups.includes(ADMIN_GROUP))
      throw new CountersignError('approver_not_eligible', `${quote(adminId)} is not in ${ADMIN_GROUP}`);
    return this.ceremonies.keysOf(adminId, `admin ${quote(adminId)} has no active security key`);
  }
}

/** The agent scope an enroll action asks for, its expiry counted from `now`. */
function scopeOf(scope: Extract<AdminAction, { kind: 'agent.enroll' }>['scope'], now: number): AgentScope {
  return {
    owner: scope.owner,
    group: scope.group,
    allowedTools: scope.allowedTools,
    dataClasses: scope.dataClasses,
    jurisdictions: scope.jurisdictions,
    expiresAt: scope.expiresInDays === undefined ? undefined : now + scope.expiresInDays * 24 * 3600 * 1000,
  };
}

function required(payload: EnrollmentPayload | undefined): EnrollmentPayload {
  if (payload === undefined) throw new CountersignError('internal_error', 'the enrollment request was not verified');
  return payload;
}

function closed(proposalId: string): CountersignError {
  return new CountersignError('admin_proposal_closed', `the proposed admin action ${quote(proposalId)} is no longer pending`);
}

/**
 * What an admin's tap led to inside this hub's transaction: performed here, or to be performed
 * (or proposed) in the team database once that transaction commits.
 */
type SubmitStep = AdminSubmitOutcome | { team: AuditSubmission<'admin.action'> } | { teamProposal: true };

/** The admin.action_proposed record of a new proposal row. */
function proposedEvent(row: ProposalRow, action: AdminAction, evidence: Evidence): AuditEventFields<'admin.action_proposed'> {
  return {
    proposalId: row.id,
    adminId: row.proposed_by,
    action,
    credentialId: row.proposer_credential,
    evidence,
    expiresAt: row.expires_at,
  };
}

function toProposal(row: ProposalRow): AdminProposal {
  return {
    id: row.id,
    action: adminActionSchema.parse(parseStrictJson(row.action)),
    proposedBy: row.proposed_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

function evidenceOf(response: { response: Evidence }): Evidence {
  return {
    authenticatorData: response.response.authenticatorData,
    clientDataJSON: response.response.clientDataJSON,
    signature: response.response.signature,
  };
}
