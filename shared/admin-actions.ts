/**
 * The admin actions an admin confirms with a security-key tap (main/core/approvals/admin-actions.ts
 * performs them; the desk's admin views and the CLI-free first run build them): one schema, used
 * by the core's HTTP rows, the bridge table and the renderer. Agent actions carry the agent's own
 * signed enrollment request; the scope is the admin's decision, never the agent's.
 */
import { z } from 'zod';
import { enrollmentRequestSchema } from './enrollment.js';
import { agentIdSchema } from './protocol.js';

const id = z.string().min(1).max(128);
const label = z.string().min(1).max(128);
const labels = z.array(label).max(256);

/** What an admin decides at enrollment (identity/agent-registry.ts AgentScope, without the optional model pins). */
export const agentScopeInputSchema = z.strictObject({
  owner: id,
  group: label,
  allowedTools: labels.min(1),
  dataClasses: labels,
  jurisdictions: labels,
  /** Days until the agent can no longer act; absent: no expiry. */
  expiresInDays: z.int().min(1).max(3650).optional(),
});
export type AgentScopeInput = z.infer<typeof agentScopeInputSchema>;

export const adminActionSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('approver.add'),
    id,
    displayName: z.string().min(1).max(200),
    groups: z.array(z.string().min(1).max(128)).max(64),
  }),
  z.strictObject({ kind: z.literal('approver.disable'), id }),
  z.strictObject({ kind: z.literal('approver.set_groups'), id, groups: z.array(z.string().min(1).max(128)).max(64) }),
  z.strictObject({ kind: z.literal('credential.remove'), credentialId: z.string().min(1).max(1400) }),
  z.strictObject({ kind: z.literal('approver.issue_registration_code'), id }),
  // Close an open tamper alarm (docs/audit.md): high-impact calls are allowed automatically again.
  z.strictObject({ kind: z.literal('audit.acknowledge_alarm'), alarmId: z.int().min(1).max(Number.MAX_SAFE_INTEGER) }),
  // Agents (docs/agents.md): enroll from the agent's signed enrollment request, rotate to a new key, revoke.
  z.strictObject({ kind: z.literal('agent.enroll'), request: enrollmentRequestSchema, scope: agentScopeInputSchema }),
  z.strictObject({
    kind: z.literal('agent.rotate'),
    id: agentIdSchema,
    request: enrollmentRequestSchema,
    overlapHours: z
      .int()
      .min(0)
      .max(24 * 30),
  }),
  z.strictObject({ kind: z.literal('agent.revoke'), id: agentIdSchema, reason: z.string().min(1).max(500) }),
]);
export type AdminAction = z.infer<typeof adminActionSchema>;
