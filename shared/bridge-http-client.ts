/**
 * CountersignBridge over the headless HTTP API (`/api/ui/*`, `/api/approvals/*` and
 * `/api/approvers/*` on the gateway port), for the renderer served by `countersign headless` and
 * for tests. Pure TypeScript: `fetch` is injected or taken from globalThis. Every response is
 * validated; errors are CountersignErrors: not_authenticated (401), the server's own code when
 * it answers `{error: {code, message}}` with a known code (e.g. approver_conflicted),
 * schema_invalid (a response that does not match), connection_closed (no answer, timeout) or
 * internal_error (anything else).
 */
import type { z } from 'zod';
import { parseStrictJson } from './canonical-json.js';
import { CountersignError, httpStatusFor } from './errors.js';
import {
  UI_API_PATHS, agentListSchema, apiPath, approvalCeremonySchema, approvalOutcomeSchema, approverListResponseSchema, bridgeStatusSchema,
  clampDecisionLimit, decisionListSchema, httpErrorBodySchema, parseBridgeResult, pendingApprovalsResponseSchema, registeredKeySchema,
  registrationOptionsSchema, sessionSecretSchema, type CountersignBridge,
} from './bridge.js';

// `cache` is a browser fetch option: Node's RequestInit type lacks it (its fetch accepts it).
export type FetchFn = (input: string, init: RequestInit & { cache?: 'no-store' }) => Promise<Response>;

export interface HttpBridgeOptions {
  /** Origin of the Countersign server, e.g. `http://localhost:7345` (a path is ignored). */
  baseUrl: string;
  /** The per-start UI session secret (`RunningCountersign.uiSessionSecret`). */
  sessionSecret: string;
  fetch?: FetchFn;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
}

const MAX_BODY_CHARS = 8 * 1024 * 1024;

export function createHttpBridge(options: HttpBridgeOptions): CountersignBridge {
  if (!sessionSecretSchema.safeParse(options.sessionSecret).success) {
    throw new CountersignError('not_authenticated', 'the UI session secret is missing or malformed');
  }
  let origin: string;
  try {
    const url = new URL(options.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    origin = url.origin;
  } catch (cause) {
    throw new CountersignError('internal_error', 'the UI base URL is not an http(s) URL', { cause });
  }
  const doFetch: FetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const authorization = `Bearer ${options.sessionSecret}`;
  const timeoutMs = options.timeoutMs ?? 10_000;

  /** One request: GET, or POST with an optional JSON body (the approval routes). */
  async function call<S extends z.ZodType>(method: 'GET' | 'POST', path: string, schema: S, payload?: unknown): Promise<z.infer<S>> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let body: string;
    const headers: Record<string, string> = { authorization, accept: 'application/json' };
    let requestBody: string | undefined;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      requestBody = JSON.stringify(payload);
    }
    try {
      const response = await doFetch(`${origin}${path}`, {
        method,
        headers,
        ...(requestBody === undefined ? {} : { body: requestBody }),
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        signal: controller.signal,
      });
      status = response.status;
      body = await response.text();
    } catch (cause) {
      const timedOut = controller.signal.aborted;
      throw new CountersignError('connection_closed', timedOut ? `the request to ${path} timed out` : `the request to ${path} failed`, { cause });
    } finally {
      clearTimeout(timer);
    }
    if (status === httpStatusFor('not_authenticated')) throw new CountersignError('not_authenticated', 'the UI session secret was not accepted', { details: { status } });
    if (body.length > MAX_BODY_CHARS) throw new CountersignError('schema_invalid', 'the response is too large');
    let json: unknown;
    try {
      json = parseStrictJson(body);
    } catch (cause) {
      if (status !== 200) throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status }, cause });
      throw new CountersignError('schema_invalid', `the response to ${path} is not JSON`, { cause });
    }
    if (status !== 200) {
      // The server's own error, when it is one of ours (the schema only admits known codes).
      const error = httpErrorBodySchema.safeParse(json);
      if (error.success) throw new CountersignError(error.data.error.code, error.data.error.message, { details: { status, serverCode: error.data.error.code } });
      throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status, serverCode: 'unknown' } });
    }
    return parseBridgeResult(schema, json);
  }

  const get = <S extends z.ZodType>(path: string, schema: S) => call('GET', path, schema);
  const post = <S extends z.ZodType>(path: string, schema: S, payload?: unknown) => call('POST', path, schema, payload);
  /** Path arguments are checked before anything is sent (a bad id never reaches the network). */
  const settle = <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return work();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new CountersignError('internal_error'));
    }
  };

  return {
    getStatus: () => get(UI_API_PATHS.getStatus, bridgeStatusSchema),
    listRecentDecisions: (limit) => get(`${UI_API_PATHS.listRecentDecisions}?limit=${clampDecisionLimit(limit)}`, decisionListSchema),
    listAgents: () => get(UI_API_PATHS.listAgents, agentListSchema),
    listApprovers: async () => (await get(UI_API_PATHS.listApprovers, approverListResponseSchema)).approvers,
    listPendingApprovals: async () => (await get(UI_API_PATHS.listPendingApprovals, pendingApprovalsResponseSchema)).pending,
    beginApproverRegistration: (approverId, registrationCode) =>
      settle(() => post(apiPath(UI_API_PATHS.beginApproverRegistration, { approverId }), registrationOptionsSchema, { registrationCode })),
    finishApproverRegistration: (approverId, response) =>
      settle(() => post(apiPath(UI_API_PATHS.finishApproverRegistration, { approverId }), registeredKeySchema, { response })),
    startApprovalCeremony: (requestId, approverId, verdict) =>
      settle(() => post(apiPath(UI_API_PATHS.startApprovalCeremony, { requestId }), approvalCeremonySchema, { approverId, verdict })),
    submitApprovalCeremony: (requestId, approverId, response, reason) =>
      settle(() => post(apiPath(UI_API_PATHS.submitApprovalCeremony, { requestId }), approvalOutcomeSchema, reason === undefined ? { approverId, response } : { approverId, response, reason })),
  };
}
