/**
 * A team audit record submitted inside the transaction of the change it records (team mode,
 * ADR 0012): the row joins `audit_submissions`, the audit leader sequences it into the Merkle log,
 * and the NOTIFY that wakes the leader is delivered only when the change commits. Used by team
 * changes made outside the decision store's own units (the team key set, the desk secrets).
 */
import type pg from 'pg';
import { assertAuditEvent, type AuditEventFields, type AuditKind } from '../../../../shared/audit-events.js';
import { canonicalize, type JsonObject } from '../../../../shared/canonical-json.js';
import { AUDIT_CHANNEL } from './pg-decision-store.js';

export async function submitTeamAudit<K extends AuditKind>(
  client: pg.ClientBase,
  hub: string,
  kind: K,
  at: number,
  fields: AuditEventFields<K>,
): Promise<void> {
  assertAuditEvent(kind, fields);
  await client.query('INSERT INTO audit_submissions (at, kind, fields, request_id, hub) VALUES ($1, $2, $3, NULL, $4)', [
    at,
    kind,
    canonicalize(fields as unknown as JsonObject),
    hub,
  ]);
  await client.query('SELECT pg_notify($1, $2)', [AUDIT_CHANNEL, '']);
}
