/**
 * Enrolled agents and their keys. Status is read from the database on every use (a revocation
 * made by the CLI in another process takes effect on the next call, and the gateway's once-a-second
 * sweep closes live connections); only immutable public-key objects are cached.
 *
 * An agent's owner is a person of the approver directory (identity/people.ts), stored as that
 * person's approver id whatever handle the admin typed, so separation of duties compares persons.
 * Enrollment refuses an owner who is nobody, and a group, tool, data class or jurisdiction the
 * active policy set does not know (policy/policy-set.ts EnrollmentVocabulary). Agents enrolled
 * with a free-text owner before this are resolved once by migrateFreeTextOwners; those whose
 * owner names nobody are held for review: the gateway refuses them until an admin sets a real
 * owner.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import type { Db } from '../store/database.js';
import { RequestRepository, type EndingRequest } from '../store/request-repository.js';
import type { AuditLog } from '../audit/audit-log.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { EnrollmentPayload } from '../../../shared/enrollment.js';
import type { AgentKeyAlgorithm, AgentPublicJwk } from '../../../shared/agent-keys.js';
import type { JsonObject } from '../../../shared/canonical-json.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';
import type { EnrollmentVocabulary } from '../policy/policy-set.js';
import { resolvePerson, type ResolvedPerson } from './people.js';
import type { DecisionResult } from '../../../shared/protocol.js';
import { parseStoredJson } from '../store/stored-json.js';

export interface AgentScope {
  owner: string;
  group: string;
  allowedTools: string[];
  dataClasses: string[];
  jurisdictions: string[];
  /** Epoch ms after which the agent can no longer act; undefined = no expiry. */
  expiresAt?: number | undefined;
  /** The model and agent software version enrolled; a call declaring others raises its risk. */
  model?: string | undefined;
  agentVersion?: string | undefined;
}

/**
 * Whether the owner is a known person: 'resolved' (owner is an approver id), 'held_for_review'
 * (a free-text owner from before owners were people, naming nobody: the agent is refused), or
 * 'unchecked' (migrated but not yet resolved; refused like a held agent).
 */
export type OwnerState = 'resolved' | 'held_for_review' | 'unchecked';

export interface AgentRecord extends AgentScope {
  id: string;
  displayName: string;
  status: 'active' | 'revoked';
  createdAt: number;
  revokedAt?: number | undefined;
  ownerState: OwnerState;
  /** Why the agent is held for review (set with ownerState 'held_for_review'). */
  reviewReason?: string | undefined;
}

/** One agent in the report of the free-text owner migration. */
export interface OwnerMigrationEntry {
  agentId: string;
  /** The owner as it was entered (free text). */
  entered: string;
  /** The person it resolved to, and how (held agents have none). */
  person?: string;
  via?: 'id' | 'alias';
  /** Why it was held for review. */
  reason?: string;
}

export interface OwnerMigrationReport {
  at: number;
  resolved: OwnerMigrationEntry[];
  held: OwnerMigrationEntry[];
}

/** Checks a proposed scope against the active policy set's vocabulary; throws the first problem. */
export function checkScopeVocabulary(
  scope: Pick<AgentScope, 'group' | 'allowedTools' | 'dataClasses' | 'jurisdictions'>,
  vocabulary: EnrollmentVocabulary,
): void {
  if (!vocabulary.groups.has(scope.group)) {
    throw new CountersignError(
      'group_unknown',
      `no policy of the active set names the agent group ${quote(scope.group)}; an agent in it could only be denied`,
      { details: { group: scope.group } },
    );
  }
  for (const tool of scope.allowedTools) {
    if (!vocabulary.tools.has(tool))
      throw new CountersignError('unknown_tool', `the tool ${quote(tool)} is not declared in the active policy set`, { details: { tool } });
  }
  for (const dataClass of scope.dataClasses) {
    if (vocabulary.dataClasses === undefined) {
      throw new CountersignError(
        'data_class_unknown',
        `the policy schema declares no data classes, so ${quote(dataClass)} cannot be checked; declare \`entity DataClass enum [...]\` in the schema`,
        { details: { dataClass } },
      );
    }
    if (!vocabulary.dataClasses.has(dataClass))
      throw new CountersignError('data_class_unknown', `the data class ${quote(dataClass)} is not declared in the policy schema`, {
        details: { dataClass },
      });
  }
  for (const jurisdiction of scope.jurisdictions) {
    if (vocabulary.jurisdictions === undefined) {
      throw new CountersignError(
        'jurisdiction_unknown',
        `the policy schema declares no jurisdictions, so ${quote(jurisdiction)} cannot be checked; declare \`entity Jurisdiction enum [...]\` in the schema`,
        { details: { jurisdiction } },
      );
    }
    if (!vocabulary.jurisdictions.has(jurisdiction))
      throw new CountersignError('jurisdiction_unknown', `the jurisdiction ${quote(jurisdiction)} is not declared in the policy schema`, {
        details: { jurisdiction },
      });
  }
}

/** The `agent.enrolled` audit record of an enrollment (embedded and team directory alike); `owner`: the person's id the entered owner resolved to. */
export function enrolledEvent(payload: EnrollmentPayload, owner: string, scope: AgentScope): AuditEventFields<'agent.enrolled'> {
  return {
    agentId: payload.agentId,
    kid: payload.publicJwk.kid,
    alg: payload.publicJwk.alg,
    owner,
    ownerEntered: scope.owner,
    group: scope.group,
    allowedTools: scope.allowedTools,
    dataClasses: scope.dataClasses,
    jurisdictions: scope.jurisdictions,
    expiresAt: scope.expiresAt ?? null,
    model: scope.model ?? null,
    agentVersion: scope.agentVersion ?? null,
  };
}

/** The person `handle` names, for an owner: unknown or disabled people are refused. */
function requireOwnerPerson(db: Db, handle: string): ResolvedPerson {
  const person = typeof handle === 'string' ? resolvePerson(db, handle) : undefined;
  if (person === undefined) {
    throw new CountersignError(
      'owner_unknown',
      `the owner ${quote(String(handle))} is not a person in the approver directory; add them (or the alias) with countersign approvers`,
      { details: { owner: String(handle) } },
    );
  }
  if (person.status !== 'active') {
    throw new CountersignError('owner_unknown', `the owner ${quote(handle)} is approver ${quote(person.id)}, who is disabled`, {
      details: { owner: handle },
    });
  }
  return person;
}

const OWNER_MIGRATION_REPORT_KEY = 'owner_migration_report';

export interface AgentKeyRecord {
  kid: string;
  agentId: string;
  alg: AgentKeyAlgorithm;
  publicJwk: AgentPublicJwk;
  status: 'active' | 'retiring' | 'revoked';
  createdAt: number;
  notAfter?: number | undefined;
}

interface AgentRow {
  id: string;
  display_name: string;
  owner: string;
  group_name: string;
  allowed_tools: string;
  data_classes: string;
  jurisdictions: string;
  status: 'active' | 'revoked';
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  model: string | null;
  agent_version: string | null;
  owner_state: OwnerState;
  owner_entered: string | null;
  review_reason: string | null;
}
interface KeyRow {
  kid: string;
  agent_id: string;
  alg: AgentKeyAlgorithm;
  public_jwk: string;
  status: 'active' | 'retiring' | 'revoked';
  created_at: number;
  not_after: number | null;
}

/** The key's columns beside its agent's in one row (AgentRegistry.lookup). */
interface KeyOfAgentRow {
  key_kid: string;
  key_alg: AgentKeyAlgorithm;
  key_public_jwk: string;
  key_status: KeyRow['status'];
  key_created_at: number;
  key_not_after: number | null;
}

function toAgent(row: AgentRow): AgentRecord {
  return {
    id: row.id,
    displayName: row.display_name,
    owner: row.owner,
    group: row.group_name,
    allowedTools: parseStoredJson(row.allowed_tools) as string[],
    dataClasses: parseStoredJson(row.data_classes) as string[],
    jurisdictions: parseStoredJson(row.jurisdictions) as string[],
    status: row.status,
    createdAt: row.created_at,
    expiresAt: row.expires_at ?? undefined,
    revokedAt: row.revoked_at ?? undefined,
    model: row.model ?? undefined,
    agentVersion: row.agent_version ?? undefined,
    ownerState: row.owner_state,
    reviewReason: row.review_reason ?? undefined,
  };
}

/**
 * An agent as a committed team directory row image has it (the replica's columns): what a team
 * write answers with, so a replica that has not applied it yet cannot turn it into an error.
 */
export function agentFromRowImage(row: Readonly<Record<string, string | number | null>>): AgentRecord {
  return toAgent(row as unknown as AgentRow);
}

/** An agent key as a committed team directory row image has it. */
export function keyFromRowImage(row: Readonly<Record<string, string | number | null>>): AgentKeyRecord {
  return toKey(row as unknown as KeyRow);
}

function toKey(row: KeyRow): AgentKeyRecord {
  return {
    kid: row.kid,
    agentId: row.agent_id,
    alg: row.alg,
    publicJwk: parseStoredJson(row.public_jwk) as AgentPublicJwk,
    status: row.status,
    createdAt: row.created_at,
    notAfter: row.not_after ?? undefined,
  };
}

const revocationReason = (reason: string): string => `agent revoked: ${reason}`;

function endedResult(row: Pick<EndingRequest, 'id' | 'determiningPolicies' | 'policyHash'>, reasons: string[]): DecisionResult {
  return {
    requestId: row.id,
    decision: 'deny',
    state: 'denied',
    reasons: [...reasons],
    determiningPolicies: row.determiningPolicies,
    policyHash: row.policyHash,
  };
}

export interface ResolvedAgentKey {
  agent: AgentRecord;
  key: AgentKeyRecord;
}

export class AgentRegistry {
  private readonly keyObjects = new Map<string, KeyObject>();
  private readonly getAgentStmt;
  private readonly getKeyStmt;
  private readonly getAgentKeyStmt;
  private readonly unusableStmt;
  private revocationListener: ((agentId: string, ended: DecisionResult[]) => void) | undefined;

  private vocabulary: (() => EnrollmentVocabulary) | undefined;
  /** Team mode: the directory is written through PostgreSQL (identity/team-agents.ts), never here. */
  private teamDirectory = false;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
  ) {
    this.getAgentStmt = db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?');
    this.getKeyStmt = db.prepare<[string], KeyRow>('SELECT * FROM agent_keys WHERE kid = ?');
    // Every decision resolves its agent and key: one statement (one read of the WAL) for both.
    this.getAgentKeyStmt = db.prepare<[string, string], AgentRow & KeyOfAgentRow>(
      `SELECT a.*, k.kid AS key_kid, k.alg AS key_alg, k.public_jwk AS key_public_jwk, k.status AS key_status,
              k.created_at AS key_created_at, k.not_after AS key_not_after
       FROM agent_keys k JOIN agents a ON a.id = k.agent_id WHERE k.kid = ? AND k.agent_id = ?`,
    );
    // Every condition of lookup + assertUsable, or a missing/mismatched row: a superset of the
    // pairs they refuse (the caller decides each one exactly with them).
    this.unusableStmt = db.prepare<[string, number, number], { agent_id: string; kid: string }>(
      `SELECT p.value ->> 0 AS agent_id, p.value ->> 1 AS kid FROM json_each(?) p
       LEFT JOIN agents a ON a.id = p.value ->> 0
       LEFT JOIN agent_keys k ON k.kid = p.value ->> 1
       WHERE a.id IS NULL OR k.kid IS NULL OR k.agent_id IS NOT a.id
          OR a.status = 'revoked' OR a.owner_state IS NOT 'resolved' OR a.expires_at <= ?
          OR k.status = 'revoked' OR (k.status = 'retiring' AND (k.not_after IS NULL OR k.not_after <= ?))`,
    );
  }

  /** Where enrollment reads the active policy set's vocabulary (app.ts: the running engine's set). */
  useVocabulary(vocabulary: () => EnrollmentVocabulary): void {
    this.vocabulary = vocabulary;
  }

  /**
   * Team mode (ADR 0013): this registry's tables are a replica of the team directory, written
   * only by its applier; enroll, rotate, revoke and set-owner here refuse (a local-only write
   * would hold on one hub alone). Writes go through TeamAgents.
   */
  useTeamDirectory(): void {
    this.teamDirectory = true;
  }

  private assertLocalWrites(): void {
    if (this.teamDirectory)
      throw new CountersignError(
        'internal_error',
        'this hub keeps a replica of the team directory: write agents through the team database',
      );
  }

  /**
   * The checks an enrollment's scope gets before anything is written: the active policy set's
   * vocabulary and the owner, a person; returns that person. Fails closed without a policy set.
   */
  checkEnrollment(scope: AgentScope): ResolvedPerson {
    if (this.vocabulary === undefined)
      throw new CountersignError('policy_invalid', 'enrollment needs the active policy set to check the scope against, and none is loaded');
    const owner = this.checkOwner(scope.owner);
    checkScopeVocabulary(scope, this.vocabulary());
    return owner;
  }

  /** The person `handle` names, for an owner: unknown or disabled people are refused (owner_unknown). */
  checkOwner(handle: string): ResolvedPerson {
    return requireOwnerPerson(this.db, handle);
  }

  /** Tell the listener (the gateway) of a revocation committed through the team directory on this hub. */
  announceRevocation(agentId: string, ended: DecisionResult[]): void {
    this.revocationListener?.(agentId, ended);
  }

  /**
   * Enroll an agent. The owner may be given as any handle of a person (approver id or alias);
   * the person's approver id is what is stored. Fails closed: without a policy set to check the
   * scope against, nothing is enrolled.
   */
  enroll(payload: EnrollmentPayload, scope: AgentScope, now = Date.now()): AgentRecord {
    this.assertLocalWrites();
    if (this.vocabulary === undefined)
      throw new CountersignError('policy_invalid', 'enrollment needs the active policy set to check the scope against, and none is loaded');
    const vocabulary = this.vocabulary();
    const enroll = this.db.transaction(() => {
      if (this.getAgentStmt.get(payload.agentId)) {
        throw new CountersignError(
          'enrollment_conflict',
          `an agent named ${quote(payload.agentId)} is already enrolled; rotate its key instead`,
        );
      }
      if (this.getKeyStmt.get(payload.publicJwk.kid)) {
        throw new CountersignError('enrollment_conflict', 'that key is already enrolled');
      }
      const owner = requireOwnerPerson(this.db, scope.owner);
      checkScopeVocabulary(scope, vocabulary);
      this.db
        .prepare(
          "INSERT INTO agents (id, display_name, owner, group_name, allowed_tools, data_classes, jurisdictions, status, created_at, expires_at, model, agent_version, owner_state, owner_entered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'resolved', ?)",
        )
        .run(
          payload.agentId,
          payload.displayName,
          owner.id,
          scope.group,
          JSON.stringify(scope.allowedTools),
          JSON.stringify(scope.dataClasses),
          JSON.stringify(scope.jurisdictions),
          'active',
          now,
          scope.expiresAt ?? null,
          scope.model ?? null,
          scope.agentVersion ?? null,
          scope.owner,
        );
      this.insertKey(payload.agentId, payload.publicJwk, now);
      this.audit.append('agent.enrolled', now, enrolledEvent(payload, owner.id, scope));
    });
    enroll.immediate();
    return this.requireAgent(payload.agentId);
  }

  /** New key becomes active; the agent's current keys keep working until `now + overlapMs`. */
  rotate(agentId: string, payload: EnrollmentPayload, overlapMs: number, now = Date.now()): AgentKeyRecord {
    this.assertLocalWrites();
    if (payload.agentId !== agentId) {
      throw new CountersignError('enrollment_invalid', `the enrollment request is for ${quote(payload.agentId)}, not ${quote(agentId)}`);
    }
    const rotate = this.db.transaction(() => {
      const agent = this.requireAgent(agentId);
      if (agent.status !== 'active') throw new CountersignError('agent_revoked', `agent ${quote(agentId)} is revoked`);
      if (this.getKeyStmt.get(payload.publicJwk.kid)) throw new CountersignError('enrollment_conflict', 'that key is already enrolled');
      const notAfter = now + Math.max(0, overlapMs);
      const retired = this.db
        .prepare("UPDATE agent_keys SET status = 'retiring', not_after = ? WHERE agent_id = ? AND status = 'active'")
        .run(notAfter, agentId).changes;
      this.insertKey(agentId, payload.publicJwk, now);
      this.audit.append('agent.key_rotated', now, {
        agentId,
        newKid: payload.publicJwk.kid,
        retiredKeys: retired,
        overlapEndsAt: notAfter,
      });
    });
    rotate.immediate();
    return this.requireKey(payload.publicJwk.kid);
  }

  /**
   * Revoke the agent and all its keys, and end every request of it still waiting for approvers:
   * each becomes `denied` with the reason "agent revoked: <reason>", audited, in the same
   * transaction as the revocation (approvers are never asked to tap for a revoked agent). Returns
   * the ended requests as the agent is told of them; empty if it was already revoked.
   */
  revoke(agentId: string, reason: string, now = Date.now()): DecisionResult[] {
    this.assertLocalWrites();
    const revoke = this.db.transaction((): DecisionResult[] | undefined => {
      const agent = this.requireAgent(agentId);
      if (agent.status === 'revoked') return undefined;
      this.db.prepare("UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = ? WHERE id = ?").run(now, reason, agentId);
      this.db
        .prepare("UPDATE agent_keys SET status = 'revoked', revoked_at = ? WHERE agent_id = ? AND status != 'revoked'")
        .run(now, agentId);
      const requests = new RequestRepository(this.db);
      const waiting = requests.pendingOf(agentId);
      this.audit.append('agent.revoked', now, { agentId, reason, endedRequests: waiting.map((r) => r.id) });
      const reasons = [revocationReason(reason)];
      for (const row of waiting) {
        requests.finish(row.id, 'denied', now, reasons);
        this.audit.append('decision.deny', now, {
          requestId: row.id,
          agentId,
          tool: row.tool,
          callSha256: row.callSha256,
          policyHash: row.policyHash,
          determiningPolicies: row.determiningPolicies,
          reasons,
          endedBy: 'agent.revoked',
        });
      }
      return waiting.map((row) => endedResult(row, reasons));
    });
    const ended = revoke.immediate();
    if (ended === undefined) return [];
    this.revocationListener?.(agentId, ended);
    return ended;
  }

  /** Called after a revocation made through this registry commits (the gateway tells the agent). */
  onRevoked(listener: (agentId: string, ended: DecisionResult[]) => void): void {
    this.revocationListener = listener;
  }

  /**
   * The requests a revocation ended, as the agent is told of them: for a revocation made by
   * another process (the CLI), which the gateway finds on its own.
   */
  endedByRevocation(agentId: string): DecisionResult[] {
    const agent = this.db
      .prepare<[string], { revoked_at: number | null; revoked_reason: string | null }>(
        'SELECT revoked_at, revoked_reason FROM agents WHERE id = ?',
      )
      .get(agentId);
    if (agent?.revoked_at == null) return [];
    const reasons = [revocationReason(agent.revoked_reason ?? '')];
    return new RequestRepository(this.db).deniedAt(agentId, agent.revoked_at, reasons).map((row) => endedResult(row, reasons));
  }

  /**
   * Give an agent a person as owner (any handle of theirs; the approver id is stored). This is
   * how an agent held for review after the owner migration is released: audited with the
   * previous owner and whether it released a hold.
   */
  setOwner(agentId: string, handle: string, now = Date.now()): AgentRecord {
    this.assertLocalWrites();
    this.db
      .transaction(() => {
        const agent = this.requireAgent(agentId);
        const person = requireOwnerPerson(this.db, handle);
        this.db.prepare("UPDATE agents SET owner = ?, owner_state = 'resolved', review_reason = NULL WHERE id = ?").run(person.id, agentId);
        this.audit.append('agent.owner_changed', now, {
          agentId,
          from: agent.owner,
          to: person.id,
          entered: handle,
          releasedFromReview: agent.ownerState !== 'resolved',
        });
      })
      .immediate();
    return this.requireAgent(agentId);
  }

  /**
   * Resolve owners entered as free text before owners were people (migration 9 marks them
   * 'unchecked'). An owner naming a person by id or alias becomes that person's id; any other is
   * held for review (refused by the gateway, never silently allowed). Runs once per data
   * directory, in one transaction with one audit record; the report is kept for
   * `countersign agents owner-report`. Returns undefined when there was nothing to migrate.
   */
  migrateFreeTextOwners(now = Date.now()): OwnerMigrationReport | undefined {
    return this.db
      .transaction(() => {
        const rows = this.db
          .prepare<[], { id: string; owner: string }>("SELECT id, owner FROM agents WHERE owner_state = 'unchecked' ORDER BY id")
          .all();
        if (rows.length === 0) return undefined;
        const report: OwnerMigrationReport = { at: now, resolved: [], held: [] };
        for (const row of rows) {
          const person = resolvePerson(this.db, row.owner);
          if (person !== undefined) {
            this.db
              .prepare("UPDATE agents SET owner = ?, owner_state = 'resolved', review_reason = NULL WHERE id = ?")
              .run(person.id, row.id);
            report.resolved.push({ agentId: row.id, entered: row.owner, person: person.id, via: person.via });
          } else {
            const reason = `the owner ${quote(row.owner)} entered before owners were people names no person in the approver directory`;
            this.db.prepare("UPDATE agents SET owner_state = 'held_for_review', review_reason = ? WHERE id = ?").run(reason, row.id);
            report.held.push({ agentId: row.id, entered: row.owner, reason });
          }
        }
        this.audit.append('agent.owners_migrated', now, {
          resolved: report.resolved.map((e) => ({ agentId: e.agentId, entered: e.entered, person: e.person ?? null, via: e.via ?? null })),
          held: report.held.map((e) => ({ agentId: e.agentId, entered: e.entered, reason: e.reason ?? null })),
        });
        this.db
          .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
          .run(OWNER_MIGRATION_REPORT_KEY, JSON.stringify(report));
        return report;
      })
      .immediate();
  }

  /** The owner migration's report (if one ran) and the agents held for review right now. */
  ownerReport(): { migration: OwnerMigrationReport | null; heldNow: Array<{ agentId: string; owner: string; reason: string }> } {
    const stored = this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(OWNER_MIGRATION_REPORT_KEY);
    const heldNow = this.db
      .prepare<[], { id: string; owner: string; review_reason: string | null }>(
        "SELECT id, owner, review_reason FROM agents WHERE owner_state != 'resolved' ORDER BY id",
      )
      .all()
      .map((row) => ({
        agentId: row.id,
        owner: row.owner,
        reason: row.review_reason ?? 'the owner has not been resolved to a person yet',
      }));
    return { migration: stored === undefined ? null : (parseStoredJson(stored.value) as OwnerMigrationReport), heldNow };
  }

  list(): Array<AgentRecord & { keys: AgentKeyRecord[] }> {
    const keys = this.db.prepare<[], KeyRow>('SELECT * FROM agent_keys ORDER BY created_at').all().map(toKey);
    return this.db
      .prepare<[], AgentRow>('SELECT * FROM agents ORDER BY id')
      .all()
      .map((row) => ({ ...toAgent(row), keys: keys.filter((k) => k.agentId === row.id) }));
  }

  getAgent(agentId: string): AgentRecord | undefined {
    const row = this.getAgentStmt.get(agentId);
    return row ? toAgent(row) : undefined;
  }

  /**
   * The key `kid` of agent `agentId`, usable at `now`, or a typed error. A key of another agent
   * is `key_unknown` for this one: identity comes from the key, never from a claimed id.
   */
  resolve(agentId: string, kid: string, now = Date.now()): ResolvedAgentKey {
    const resolved = this.lookup(agentId, kid);
    this.assertUsable(resolved, now);
    return resolved;
  }

  /**
   * The enrolled key `kid` of agent `agentId` whatever its status (agent_unknown / key_unknown
   * otherwise). Check a signature with it before calling assertUsable, so only the key holder
   * learns that the agent or key is revoked or expired.
   */
  lookup(agentId: string, kid: string): ResolvedAgentKey {
    const row = this.getAgentKeyStmt.get(kid, agentId);
    if (row !== undefined && row.id === agentId && row.key_kid === kid) {
      const key: KeyRow = {
        kid: row.key_kid,
        agent_id: row.id,
        alg: row.key_alg,
        public_jwk: row.key_public_jwk,
        status: row.key_status,
        created_at: row.key_created_at,
        not_after: row.key_not_after,
      };
      return { agent: toAgent(row), key: toKey(key) };
    }
    // No such pair: which of the two is missing decides the error, exactly as before.
    const agentRow = this.getAgentStmt.get(agentId);
    if (!agentRow) throw new CountersignError('agent_unknown', `no agent named ${quote(agentId)} is enrolled`);
    const keyRow = this.getKeyStmt.get(kid);
    if (!keyRow || keyRow.agent_id !== agentId)
      throw new CountersignError('key_unknown', `the key is not enrolled for agent ${quote(agentId)}`);
    return { agent: toAgent(agentRow), key: toKey(keyRow) };
  }

  /**
   * Of the (agent id, kid) pairs given, those `lookup` + `assertUsable` may refuse at `now` (a
   * superset: unknown or mismatched rows too), in one statement. The gateway's once-a-second
   * sweep of every live session read each one through `lookup` (two statements and two decoded
   * rows per session: tens of milliseconds of the event loop with 1,000 agents connected); it now
   * checks only the pairs this returns, exactly as before.
   */
  unusableOf(pairs: ReadonlyArray<readonly [agentId: string, kid: string]>, now: number): Array<[agentId: string, kid: string]> {
    if (pairs.length === 0) return [];
    return this.unusableStmt.all(JSON.stringify(pairs), now, now).map((r) => [r.agent_id, r.kid]);
  }

  /** Throws agent_revoked, agent_held_for_review, agent_expired or key_revoked unless the agent and key are usable at `now`. */
  assertUsable({ agent, key }: ResolvedAgentKey, now: number): void {
    if (agent.status === 'revoked') throw new CountersignError('agent_revoked', `agent ${quote(agent.id)} has been revoked`);
    if (agent.ownerState !== 'resolved') {
      throw new CountersignError(
        'agent_held_for_review',
        `agent ${quote(agent.id)} is held for review: its owner is not a known person; an administrator must set one (countersign agents set-owner)`,
      );
    }
    if (agent.expiresAt !== undefined && now >= agent.expiresAt)
      throw new CountersignError('agent_expired', `the enrollment of agent ${quote(agent.id)} has expired`);
    if (key.status === 'revoked' || (key.status === 'retiring' && (key.notAfter === undefined || now >= key.notAfter))) {
      throw new CountersignError('key_revoked', `that key of agent ${quote(agent.id)} has been rotated out or revoked`);
    }
  }

  /** Verify a signature by an enrolled key (cached node:crypto key object, about 60 µs). */
  verifySignature(key: AgentKeyRecord, data: Uint8Array, signature: Uint8Array): boolean {
    let keyObject = this.keyObjects.get(key.kid);
    if (!keyObject) {
      keyObject = createPublicKey({ key: key.publicJwk as unknown as JsonObject, format: 'jwk' });
      this.keyObjects.set(key.kid, keyObject);
    }
    try {
      return key.alg === 'EdDSA'
        ? nodeVerify(null, data, keyObject, signature)
        : nodeVerify('sha256', data, { key: keyObject, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  }

  private insertKey(agentId: string, jwk: EnrollmentPayload['publicJwk'], now: number): void {
    this.db
      .prepare("INSERT INTO agent_keys (kid, agent_id, alg, public_jwk, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)")
      .run(jwk.kid, agentId, jwk.alg, JSON.stringify(jwk), now);
  }

  private requireAgent(agentId: string): AgentRecord {
    const agent = this.getAgent(agentId);
    if (!agent) throw new CountersignError('agent_unknown', `no agent named ${quote(agentId)} is enrolled`);
    return agent;
  }

  private requireKey(kid: string): AgentKeyRecord {
    const row = this.getKeyStmt.get(kid);
    if (!row) throw new CountersignError('key_unknown', 'that key is not enrolled');
    return toKey(row);
  }
}
