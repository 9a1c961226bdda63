/**
 * Enrolled agents and their keys. Status is read from the database on every use (a revocation
 * made by the CLI in another process takes effect on the next call, and the gateway's once-a-second
 * sweep closes live connections); only immutable public-key objects are cached.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { EnrollmentPayload } from '../../../shared/enrollment.js';
import type { AgentKeyAlgorithm, AgentPublicJwk } from '../../../shared/agent-keys.js';
import type { JsonObject } from '../../../shared/canonical-json.js';
import type { DecisionResult } from '../../../shared/protocol.js';

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

export interface AgentRecord extends AgentScope {
  id: string;
  displayName: string;
  status: 'active' | 'revoked';
  createdAt: number;
  revokedAt?: number | undefined;
}

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
  id: string; display_name: string; owner: string; group_name: string; allowed_tools: string; data_classes: string;
  jurisdictions: string; status: 'active' | 'revoked'; created_at: number; expires_at: number | null; revoked_at: number | null;
  model: string | null; agent_version: string | null;
}
interface KeyRow {
  kid: string; agent_id: string; alg: AgentKeyAlgorithm; public_jwk: string; status: 'active' | 'retiring' | 'revoked';
  created_at: number; not_after: number | null;
}

function toAgent(row: AgentRow): AgentRecord {
  return {
    id: row.id,
    displayName: row.display_name,
    owner: row.owner,
    group: row.group_name,
    allowedTools: JSON.parse(row.allowed_tools) as string[],
    dataClasses: JSON.parse(row.data_classes) as string[],
    jurisdictions: JSON.parse(row.jurisdictions) as string[],
    status: row.status,
    createdAt: row.created_at,
    expiresAt: row.expires_at ?? undefined,
    revokedAt: row.revoked_at ?? undefined,
    model: row.model ?? undefined,
    agentVersion: row.agent_version ?? undefined,
  };
}

function toKey(row: KeyRow): AgentKeyRecord {
  return {
    kid: row.kid,
    agentId: row.agent_id,
    alg: row.alg,
    publicJwk: JSON.parse(row.public_jwk) as AgentPublicJwk,
    status: row.status,
    createdAt: row.created_at,
    notAfter: row.not_after ?? undefined,
  };
}

interface EndedRow {
  id: string; tool: string; call_sha256: string; policy_hash: string; determining_policies: string;
}

const revocationReason = (reason: string): string => `agent revoked: ${reason}`;

function endedResult(row: EndedRow, reasons: string[]): DecisionResult {
  return {
    requestId: row.id, decision: 'deny', state: 'denied', reasons: [...reasons],
    determiningPolicies: JSON.parse(row.determining_policies) as string[], policyHash: row.policy_hash,
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
  private revocationListener: ((agentId: string, ended: DecisionResult[]) => void) | undefined;

  constructor(private readonly db: Db, private readonly audit: AuditLog) {
    this.getAgentStmt = db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?');
    this.getKeyStmt = db.prepare<[string], KeyRow>('SELECT * FROM agent_keys WHERE kid = ?');
  }

  enroll(payload: EnrollmentPayload, scope: AgentScope, now = Date.now()): AgentRecord {
    const enroll = this.db.transaction(() => {
      if (this.getAgentStmt.get(payload.agentId)) {
        throw new CountersignError('enrollment_conflict', `an agent named ${quote(payload.agentId)} is already enrolled; rotate its key instead`);
      }
      if (this.getKeyStmt.get(payload.publicJwk.kid)) {
        throw new CountersignError('enrollment_conflict', 'that key is already enrolled');
      }
      this.db
        .prepare('INSERT INTO agents (id, display_name, owner, group_name, allowed_tools, data_classes, jurisdictions, status, created_at, expires_at, model, agent_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(payload.agentId, payload.displayName, scope.owner, scope.group, JSON.stringify(scope.allowedTools), JSON.stringify(scope.dataClasses), JSON.stringify(scope.jurisdictions), 'active', now, scope.expiresAt ?? null, scope.model ?? null, scope.agentVersion ?? null);
      this.insertKey(payload.agentId, payload.publicJwk, now);
      this.audit.append('agent.enrolled', now, {
        agentId: payload.agentId,
        kid: payload.publicJwk.kid,
        alg: payload.publicJwk.alg,
        owner: scope.owner,
        group: scope.group,
        allowedTools: scope.allowedTools,
        dataClasses: scope.dataClasses,
        jurisdictions: scope.jurisdictions,
        expiresAt: scope.expiresAt ?? null,
        model: scope.model ?? null,
        agentVersion: scope.agentVersion ?? null,
      });
    });
    enroll.immediate();
    return this.requireAgent(payload.agentId);
  }

  /** New key becomes active; the agent's current keys keep working until `now + overlapMs`. */
  rotate(agentId: string, payload: EnrollmentPayload, overlapMs: number, now = Date.now()): AgentKeyRecord {
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
      this.audit.append('agent.key_rotated', now, { agentId, newKid: payload.publicJwk.kid, retiredKeys: retired, overlapEndsAt: notAfter });
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
    const revoke = this.db.transaction((): DecisionResult[] | undefined => {
      const agent = this.requireAgent(agentId);
      if (agent.status === 'revoked') return undefined;
      this.db.prepare("UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = ? WHERE id = ?").run(now, reason, agentId);
      this.db.prepare("UPDATE agent_keys SET status = 'revoked', revoked_at = ? WHERE agent_id = ? AND status != 'revoked'").run(now, agentId);
      const waiting = this.db.prepare<[string], EndedRow>(
        "SELECT id, tool, call_sha256, policy_hash, determining_policies FROM requests WHERE agent_id = ? AND state = 'pending' ORDER BY created_at, id",
      ).all(agentId);
      this.audit.append('agent.revoked', now, { agentId, reason, endedRequests: waiting.map((r) => r.id) });
      const reasons = [revocationReason(reason)];
      const end = this.db.prepare("UPDATE requests SET state = 'denied', decided_at = ?, reasons = ? WHERE id = ? AND state = 'pending'");
      for (const row of waiting) {
        end.run(now, JSON.stringify(reasons), row.id);
        this.audit.append('decision.deny', now, {
          requestId: row.id, agentId, tool: row.tool, callSha256: row.call_sha256, policyHash: row.policy_hash,
          determiningPolicies: JSON.parse(row.determining_policies) as string[], reasons, endedBy: 'agent.revoked',
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
    const agent = this.db.prepare<[string], { revoked_at: number | null; revoked_reason: string | null }>('SELECT revoked_at, revoked_reason FROM agents WHERE id = ?').get(agentId);
    if (agent?.revoked_at == null) return [];
    const reasons = [revocationReason(agent.revoked_reason ?? '')];
    return this.db.prepare<[string, number, string], EndedRow>(
      "SELECT id, tool, call_sha256, policy_hash, determining_policies FROM requests WHERE agent_id = ? AND state = 'denied' AND decided_at = ? AND reasons = ? ORDER BY created_at, id",
    ).all(agentId, agent.revoked_at, JSON.stringify(reasons)).map((row) => endedResult(row, reasons));
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
    const agentRow = this.getAgentStmt.get(agentId);
    if (!agentRow) throw new CountersignError('agent_unknown', `no agent named ${quote(agentId)} is enrolled`);
    const keyRow = this.getKeyStmt.get(kid);
    if (!keyRow || keyRow.agent_id !== agentId) throw new CountersignError('key_unknown', `the key is not enrolled for agent ${quote(agentId)}`);
    return { agent: toAgent(agentRow), key: toKey(keyRow) };
  }

  /** Throws agent_revoked, agent_expired or key_revoked unless the agent and key are usable at `now`. */
  assertUsable({ agent, key }: ResolvedAgentKey, now: number): void {
    if (agent.status === 'revoked') throw new CountersignError('agent_revoked', `agent ${quote(agent.id)} has been revoked`);
    if (agent.expiresAt !== undefined && now >= agent.expiresAt) throw new CountersignError('agent_expired', `the enrollment of agent ${quote(agent.id)} has expired`);
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
