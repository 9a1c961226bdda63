/**
 * What a webhook says, built from the audit event it announces: a chat-tool friendly body (`text`
 * with a headline and the desk link, which Slack, Mattermost, Google Chat and Teams incoming
 * webhooks all show) plus structured members for programs. It links to the request in the desk
 * and NEVER carries an approve action: only a security-key tap in the desk approves.
 * Redacted data classes stay redacted: the headline reads `params` only when the audit event
 * kept them (audit/redaction.ts).
 */
import type { AuditEventFields, AuditKind } from '../../../shared/audit-events.js';
import type { WebhookEvent } from '../config.js';

export interface WebhookMessage {
  readonly event: WebhookEvent;
  readonly requestId: string;
  readonly agentId: string;
  readonly tool: string | undefined;
  readonly headline: string;
  readonly expiresAt: number | undefined;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const scalar = (v: unknown): string | undefined =>
  typeof v === 'string' ? v.slice(0, 120) : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;

/** "48000.00 USD to Acme Ltd (new payee)", "production: v2.3.1", or the tool alone. */
export function headlineOf(tool: string, params: unknown): string {
  if (!isObject(params)) return tool;
  const amount = scalar(params.amount);
  const currency = scalar(params.currency);
  const payee = scalar(params.payee);
  if (amount !== undefined)
    return `${tool}: ${amount}${currency === undefined ? '' : ` ${currency}`}${payee === undefined ? '' : ` to ${payee}`}`;
  const environment = scalar(params.environment);
  const version = scalar(params.version) ?? scalar(params.change);
  if (environment !== undefined) return `${tool}: ${environment}${version === undefined ? '' : ` ${version}`}`;
  return tool;
}

/**
 * The message an audit append announces, if any. Merged followers (one prompt stands for the
 * group) and re-evaluations are not announced again; the group's primary is.
 */
export function messageFor<K extends AuditKind>(kind: K, fields: AuditEventFields<K>): WebhookMessage | undefined {
  const e = fields as unknown as Json;
  const requestId = typeof e.requestId === 'string' ? e.requestId : undefined;
  const agentId = typeof e.agentId === 'string' ? e.agentId : undefined;
  if (requestId === undefined || agentId === undefined) return undefined;
  const tool = typeof e.tool === 'string' ? e.tool : undefined;
  if (e.groupOf !== undefined || e.mergedInto !== undefined) return undefined;
  switch (kind) {
    case 'decision.pending': {
      if (tool === undefined || !isObject(e.approval)) return undefined;
      const expiresAt = typeof e.approval.expiresAt === 'number' ? e.approval.expiresAt : undefined;
      return { event: 'approval.pending', requestId, agentId, tool, headline: headlineOf(tool, e.params), expiresAt };
    }
    case 'decision.approved':
      return { event: 'approval.approved', requestId, agentId, tool, headline: tool ?? requestId, expiresAt: undefined };
    case 'decision.deny':
      // Only a denial of a held request by a person (or its agent's revocation), not a policy deny.
      if (e.deniedBy === undefined && e.endedBy === undefined) return undefined;
      return { event: 'approval.denied', requestId, agentId, tool, headline: tool ?? requestId, expiresAt: undefined };
    case 'decision.expired':
      return { event: 'approval.expired', requestId, agentId, tool, headline: tool ?? requestId, expiresAt: undefined };
    default:
      return undefined;
  }
}

const VERBS: Record<WebhookEvent, string> = {
  'approval.pending': 'Approval needed',
  'approval.approved': 'Approved',
  'approval.denied': 'Denied',
  'approval.expired': 'Expired without a decision',
};

/** The JSON body (text exactly as sent and signed). */
export function webhookBody(message: WebhookMessage, deliveryId: string, deskUrl: string, at: number): string {
  const url = `${deskUrl.replace(/\/+$/, '')}/ui/#request=${encodeURIComponent(message.requestId)}`;
  const expiry = message.expiresAt === undefined ? '' : ` Expires ${new Date(message.expiresAt).toISOString()}.`;
  const action =
    message.event === 'approval.pending' ? ' Review it in the Countersign desk (approving needs your security key)' : ' Details';
  return JSON.stringify({
    text: `${VERBS[message.event]}: ${message.headline} (agent ${message.agentId}).${expiry}${action}: ${url}`,
    type: message.event,
    deliveryId,
    occurredAt: at,
    requestId: message.requestId,
    agentId: message.agentId,
    ...(message.tool === undefined ? {} : { tool: message.tool }),
    headline: message.headline,
    ...(message.expiresAt === undefined ? {} : { expiresAt: message.expiresAt }),
    url,
  });
}
