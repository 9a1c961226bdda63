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
 */
import { randomBytes } from 'node:crypto';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { z } from 'zod';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ApproverDirectory } from './approver-directory.js';
import type { TamperAlarm } from '../audit/tamper-alarm.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import { verifyEnrollmentRequest, type EnrollmentPayload } from '../../../shared/enrollment.js';
import { CeremonyEngine, CounterRegression, parseOffered } from './ceremony.js';
import { recordChallenge } from '../../../shared/approvals.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { ADMIN_GROUP_NAME } from '../../../shared/bridge.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { SIGNED_TYP } from '../../../shared/typ.js';
import { adminActionSchema, type AdminAction } from '../../../shared/admin-actions.js';

export const ADMIN_GROUP = ADMIN_GROUP_NAME;
export const ADMIN_ACTION_TYP = SIGNED_TYP.adminAction;

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
    // Fail before the tap, not after it: the alarm must be open now (and is checked again at submit).
    if (action.kind === 'audit.acknowledge_alarm') this.tamperAlarm().assertOpen(action.alarmId);
    // An enrollment request that does not verify is refused before the tap too (and checked again at submit).
    if (action.kind === 'agent.enroll' || action.kind === 'agent.rotate') {
      this.agents();
      await verifyEnrollmentRequest(action.request, this.now());
    }
    if (action.kind === 'agent.revoke') this.agents();
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
    this.ceremonies.issueChallenge('admin', { challenge, userId: adminId, record, expiresAt, offered });
    return { options, action };
  }

  /** Verify the admin's assertion and perform the action it confirms, in one transaction. */
  async submit(adminId: string, response: AuthenticationResponseJSON): Promise<{ action: AdminAction; result: unknown }> {
    this.adminCredentials(adminId);
    const read = this.ceremonies.read(response);
    const { challenge } = read;
    const row = this.ceremonies.challenge('admin', challenge);
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
    // The agent's proof of possession, verified on the object as signed (never re-serialised first).
    const enrollment =
      action.kind === 'agent.enroll' || action.kind === 'agent.rotate' ? await verifyEnrollmentRequest(action.request, now) : undefined;
    let result: unknown;
    try {
      result = this.db
        .transaction(() => {
          // Spend the challenge first: a concurrent submit of the same assertion finds it used.
          if (!this.ceremonies.spendChallenge('admin', challenge, now))
            throw new CountersignError('challenge_invalid', 'the admin challenge was already used');
          // The admin as they are now (disabled or removed from the admin group meanwhile: refused).
          this.adminCredentials(adminId);
          // The key as it is now (a concurrent tap may have moved its counter or marked it suspect).
          this.ceremonies.recordUse(this.ceremonies.credentialFor(adminId, read.response, offered), newCounter, now);
          const outcome = this.perform(action, adminId, now, enrollment);
          try {
            this.audit.append('admin.action', now, {
              adminId,
              action: action,
              credentialId: credential.credentialId,
              evidence: {
                authenticatorData: read.response.response.authenticatorData,
                clientDataJSON: read.response.response.clientDataJSON,
                signature: read.response.response.signature,
              },
            });
          } catch (cause) {
            throw new CountersignError('audit_write_failed', undefined, { cause });
          }
          return outcome;
        })
        .immediate();
    } catch (error) {
      if (error instanceof CounterRegression) this.ceremonies.refuse(error);
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the admin action could not be stored, so nothing was performed', { cause: error });
    }
    return { action, result };
  }

  private perform(action: AdminAction, adminId: string, now: number, enrollment: EnrollmentPayload | undefined): unknown {
    switch (action.kind) {
      case 'agent.enroll': {
        const { scope } = action;
        const agent = this.agents().enroll(
          required(enrollment),
          {
            owner: scope.owner,
            group: scope.group,
            allowedTools: scope.allowedTools,
            dataClasses: scope.dataClasses,
            jurisdictions: scope.jurisdictions,
            expiresAt: scope.expiresInDays === undefined ? undefined : now + scope.expiresInDays * 24 * 3600 * 1000,
          },
          now,
        );
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

function required(payload: EnrollmentPayload | undefined): EnrollmentPayload {
  if (payload === undefined) throw new CountersignError('internal_error', 'the enrollment request was not verified');
  return payload;
}
