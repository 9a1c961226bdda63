/**
 * The approval rows of the HTTP edge (main/core/http/) that are not bridge methods (those,
 * e.g. the pending list and the ceremonies, are derived from shared/bridge-table.ts):
 *
 *   GET  /.well-known/countersign-approvers.json        the approver directory (public keys; public)
 *   GET  /api/approvals/requests/{requestId}             one request and its approvals so far
 *   GET  /api/approvals/history?limit=                   decided requests, newest first
 *   POST /api/admin/ceremony                             {adminId, action} -> WebAuthn options
 *   POST /api/admin/submit                               {adminId, response} -> performs the action
 *   GET  /api/audit/checkpoint                           the latest signed checkpoint of the audit log
 *   GET  /api/audit/inclusion?seq=&size=                 inclusion proof of entry seq (against a checkpoint)
 *   GET  /api/audit/consistency?from=&to=                consistency proof between two tree sizes
 *
 * The edge requires the session secret and the origin policy on every /api/ route, reads bodies
 * (JSON, at most 64 KiB, strict I-JSON) and maps errors to {error: {code, message}}.
 * The test key domain's automation routes live in main/core/testing/automation-routes.ts.
 */
import { z } from 'zod';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { ApproverDirectory } from './approver-directory.js';
import { adminActionSchema, type AdminActions } from './admin-actions.js';
import type { AuditProofs } from '../audit/audit-proofs.js';
import { CountersignError } from '../../../shared/errors.js';
import { bridgeIdSchema, webauthnResponseSchema } from '../../../shared/bridge.js';
import { queryIntegerSchema } from '../../../shared/bridge-table.js';
import { parseBody, type HttpRoute } from '../http/http-edge.js';

/** The approval service reads these routes expose. */
export interface ApprovalReads {
  getPending(requestId: string): Promise<unknown>;
  history(limit: number): Promise<unknown[]>;
}

export interface ApprovalsRoutesOptions {
  service: ApprovalReads;
  directory: Pick<ApproverDirectory, 'published'>;
  /** Admin actions confirmed by an admin's key tap. */
  admin?: AdminActions;
  /** Audit proofs and checkpoints (the /api/audit/ routes). */
  audit?: AuditProofs;
}

// The admin action's own schema (admin-actions.ts) and the bridge's id and WebAuthn response schemas: one spelling each.
const adminStartBody = z.strictObject({ adminId: bridgeIdSchema, action: adminActionSchema });
const adminSubmitBody = z.strictObject({ adminId: bridgeIdSchema, response: webauthnResponseSchema });

/** `?limit=`: absent is 50; otherwise digits only (refused like the bridge's query integers), clamped to 1..500. */
function historyLimit(query: URLSearchParams): number {
  const value = query.get('limit');
  if (value === null) return 50;
  const parsed = queryIntegerSchema.safeParse(/^[0-9]{1,9}$/.test(value) ? Number(value) : Number.NaN);
  if (!parsed.success) throw new CountersignError('schema_invalid', 'the query parameter "limit" must be a whole number');
  return Math.min(Math.max(parsed.data, 1), 500);
}

/** A `{requestId}` path segment: the bridge's id schema (no `.`/`..`, at most 128 characters). */
function requestIdParam(value: string | undefined): string {
  if (!bridgeIdSchema.safeParse(value).success)
    throw new CountersignError('schema_invalid', 'the request id in the path must be 1 to 128 characters and not a dot segment');
  return value!;
}

export function approvalsRoutes(options: ApprovalsRoutesOptions): HttpRoute[] {
  const routes: HttpRoute[] = [
    { verb: 'GET', path: '/.well-known/countersign-approvers.json', access: 'public', handle: () => options.directory.published() },
    {
      verb: 'GET',
      path: '/api/approvals/requests/{requestId}',
      access: 'session',
      handle: ({ params }) => options.service.getPending(requestIdParam(params.requestId)),
    },
    {
      verb: 'GET',
      path: '/api/approvals/history',
      access: 'session',
      handle: async ({ query }) => ({ history: await options.service.history(historyLimit(query)) }),
    },
  ];
  const admin = options.admin;
  if (admin !== undefined) {
    routes.push(
      {
        verb: 'POST',
        path: '/api/admin/ceremony',
        access: 'session',
        handle: async ({ body }) => {
          const parsed = parseBody(adminStartBody, await body());
          return admin.start(parsed.adminId, parsed.action);
        },
      },
      {
        verb: 'POST',
        path: '/api/admin/submit',
        access: 'session',
        handle: async ({ body }) => {
          const parsed = parseBody(adminSubmitBody, await body());
          return admin.submit(parsed.adminId, parsed.response as unknown as AuthenticationResponseJSON);
        },
      },
    );
  }
  const audit = options.audit;
  if (audit !== undefined) {
    const whole = (query: URLSearchParams, name: string): number => {
      const v = query.get(name);
      const n = Number(v);
      if (v === null || !Number.isSafeInteger(n) || n < 0)
        throw new CountersignError('schema_invalid', `the query parameter ${JSON.stringify(name)} must be a whole number`);
      return n;
    };
    routes.push(
      { verb: 'GET', path: '/api/audit/checkpoint', access: 'session', handle: () => audit.latest() },
      {
        verb: 'GET',
        path: '/api/audit/inclusion',
        access: 'session',
        handle: ({ query }) => audit.inclusion(whole(query, 'seq'), query.has('size') ? whole(query, 'size') : undefined),
      },
      {
        verb: 'GET',
        path: '/api/audit/consistency',
        access: 'session',
        handle: ({ query }) => audit.consistency(whole(query, 'from'), whole(query, 'to')),
      },
    );
  }
  return routes;
}
