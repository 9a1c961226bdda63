/**
 * CountersignBridge over the headless HTTP API (`/api/ui/*` on the gateway port), for the
 * renderer served by `countersign headless` and for tests. Pure TypeScript: `fetch` is injected
 * or taken from globalThis. Every response is validated; errors are CountersignErrors with the
 * codes not_authenticated, schema_invalid, connection_closed or internal_error.
 */
import type { z } from 'zod';
import { CountersignError } from './errors.js';
import {
  UI_API_PATHS, agentListSchema, bridgeStatusSchema, clampDecisionLimit, decisionListSchema, httpErrorBodySchema, parseBridgeResult,
  sessionSecretSchema, type CountersignBridge,
} from './bridge.js';

export type FetchFn = (input: string, init: RequestInit) => Promise<Response>;

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

  async function get<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let body: string;
    try {
      const response = await doFetch(`${origin}${path}`, {
        method: 'GET',
        headers: { authorization, accept: 'application/json' },
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
    if (status === 401) throw new CountersignError('not_authenticated', 'the UI session secret was not accepted', { details: { status } });
    if (body.length > MAX_BODY_CHARS) throw new CountersignError('schema_invalid', 'the response is too large');
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch (cause) {
      if (status !== 200) throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status }, cause });
      throw new CountersignError('schema_invalid', `the response to ${path} is not JSON`, { cause });
    }
    if (status !== 200) {
      const error = httpErrorBodySchema.safeParse(json);
      const serverCode = error.success ? error.data.error.code : 'unknown';
      throw new CountersignError('internal_error', `the server answered HTTP ${status} (${serverCode})`, { details: { status, serverCode } });
    }
    return parseBridgeResult(schema, json);
  }

  return {
    getStatus: () => get(UI_API_PATHS.getStatus, bridgeStatusSchema),
    listRecentDecisions: (limit) => get(`${UI_API_PATHS.listRecentDecisions}?limit=${clampDecisionLimit(limit)}`, decisionListSchema),
    listAgents: () => get(UI_API_PATHS.listAgents, agentListSchema),
  };
}
