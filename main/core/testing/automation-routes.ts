/**
 * The automation routes of the headless TEST key domain (virtual approvers driven over HTTP),
 * rows of the HTTP edge that app.ts registers only when the domain is `test`; nothing else may
 * import this file:
 *
 *   POST /api/automation/virtual-approvers               {id, displayName, groups}
 *   POST /api/automation/requests/{requestId}/decide     {approverId, verdict, reason?}
 *   GET  /api/automation/requests/{requestId}/wait?timeoutMs=   waits until the request leaves pending
 *
 * Like every /api/ route they need the session secret and pass the origin policy.
 */
import { z } from 'zod';
import type { VirtualApprovers } from './virtual-approvers.js';
import { RequestRepository } from '../store/request-repository.js';
import type { Db } from '../store/database.js';
import { CountersignError } from '../../../shared/errors.js';
import { bridgeIdSchema } from '../../../shared/bridge.js';
import { parseBody, type HttpRoute } from '../http/http-edge.js';

export interface AutomationRoutesOptions {
  automation: VirtualApprovers;
  db: Db;
  /**
   * A team hub: its requests are in the team database, so the wait follows the request's end
   * there (LISTEN/NOTIFY; the final state, request_unknown, or an abort when `signal` fires).
   */
  waitForEnd?: (requestId: string, signal: AbortSignal) => Promise<string>;
  now?: () => number;
}

const MAX_WAIT_MS = 120_000;
/** Ids as the bridge spells them: 1..128 characters, never `.` or `..`. */
const ID = bridgeIdSchema;
const virtualBody = z.strictObject({
  id: ID,
  displayName: z.string().min(1).max(200),
  groups: z.array(z.string().min(1).max(128)).max(64),
});
/** A `{requestId}` path segment, checked like the body ids. */
function requestIdParam(value: string | undefined): string {
  if (!ID.safeParse(value).success)
    throw new CountersignError('schema_invalid', 'the request id in the path must be 1 to 128 characters and not a dot segment');
  return value!;
}
const decideBody = z.strictObject({ approverId: ID, verdict: z.enum(['approve', 'deny']), reason: z.string().max(500).optional() });

export function automationRoutes(options: AutomationRoutesOptions): HttpRoute[] {
  const now = options.now ?? Date.now;
  const { automation } = options;

  const waitForDecision = async (requestId: string, timeoutMs: number): Promise<unknown> => {
    const bounded = Math.min(Math.max(timeoutMs, 0), MAX_WAIT_MS);
    if (options.waitForEnd !== undefined) {
      const signal = AbortSignal.timeout(bounded);
      try {
        return { requestId, state: await options.waitForEnd(requestId, signal) };
      } catch (error) {
        if (signal.aborted) throw new CountersignError('timeout', 'the request is still pending');
        throw error;
      }
    }
    const requests = new RequestRepository(options.db);
    const deadline = now() + bounded;
    for (;;) {
      const state = requests.stateOf(requestId);
      if (state === undefined) throw new CountersignError('request_unknown', 'no request has that id');
      if (state !== 'pending') return { requestId, state };
      if (now() >= deadline) throw new CountersignError('timeout', 'the request is still pending');
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  return [
    {
      verb: 'POST',
      path: '/api/automation/virtual-approvers',
      access: 'session',
      handle: async ({ body }) => automation.create(parseBody(virtualBody, await body())),
    },
    {
      verb: 'POST',
      path: '/api/automation/requests/{requestId}/decide',
      access: 'session',
      handle: async ({ body, params }) =>
        automation.decide({ requestId: requestIdParam(params.requestId), ...parseBody(decideBody, await body()) }),
    },
    {
      verb: 'GET',
      path: '/api/automation/requests/{requestId}/wait',
      access: 'session',
      handle: ({ params, query }) => waitForDecision(requestIdParam(params.requestId), Number(query.get('timeoutMs') ?? 30_000) || 0),
    },
  ];
}
