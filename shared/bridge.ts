/**
 * The ONE typed bridge between the renderer and the core. The renderer knows only this
 * interface; the Electron preload implements it over IPC and `bridge-http-client.ts` over the
 * headless HTTP API. Every response is validated against the schemas below on the client side:
 * the renderer never trusts its transport.
 */
import { z } from 'zod';
import { CountersignError, ERROR_CODES, isCountersignError, isErrorCode } from './errors.js';
import type { RequestState } from './protocol.js';

// ---- results ----

const text = (max: number) => z.string().max(max);
const count = z.int().min(0);
const epochMs = z.int().min(0);

export const bridgeStatusSchema = z.strictObject({
  serverId: text(128).min(1),
  /** `test` is the headless key domain; the UI shows it loudly. */
  domain: z.enum(['production', 'test']),
  policyHash: text(256).min(1),
  /** `software` keys are not hardware-backed; the UI warns. */
  custody: z.enum(['software', 'pkcs11']),
  /** Where agent hosts connect, e.g. `ws://127.0.0.1:7345`. */
  gatewayUrl: text(512).min(1),
  connections: count,
  authenticated: count,
  decisions: count,
});
export type BridgeStatus = z.infer<typeof bridgeStatusSchema>;

export const requestStateSchema = z.enum(['allowed', 'denied', 'pending', 'approved', 'expired']) satisfies z.ZodType<RequestState>;

export const decisionSummarySchema = z.strictObject({
  requestId: text(128).min(1),
  agentId: text(128).min(1),
  tool: text(128).min(1),
  state: requestStateSchema,
  reasons: z.array(text(4096)).max(64),
  policyHash: text(256).min(1),
  createdAt: epochMs,
});
export type DecisionSummary = z.infer<typeof decisionSummarySchema>;

export const agentKeySummarySchema = z.strictObject({
  kid: text(256).min(1),
  alg: z.enum(['EdDSA', 'ES256']),
  status: z.enum(['active', 'retiring', 'revoked']),
});
export type AgentKeySummary = z.infer<typeof agentKeySummarySchema>;

export const agentSummarySchema = z.strictObject({
  id: text(128).min(1),
  displayName: text(256),
  owner: text(256),
  group: text(256),
  status: z.enum(['active', 'revoked']),
  allowedTools: z.array(text(128)).max(1024),
  keys: z.array(agentKeySummarySchema).max(1024),
});
export type AgentSummary = z.infer<typeof agentSummarySchema>;

/** Bounds of `listRecentDecisions(limit)`: the core clamps to these. */
export const DECISION_LIMIT = { min: 1, max: 500, default: 50 } as const;

export const decisionListSchema = z.array(decisionSummarySchema).max(DECISION_LIMIT.max);
export const agentListSchema = z.array(agentSummarySchema).max(100_000);

/** Clamp a requested decision count to 1..500 (non-numbers get the default). */
export function clampDecisionLimit(limit: unknown): number {
  if (typeof limit !== 'number' || Number.isNaN(limit)) return DECISION_LIMIT.default;
  return Math.min(DECISION_LIMIT.max, Math.max(DECISION_LIMIT.min, Math.floor(limit)));
}

// ---- the interface ----

export interface CountersignBridge {
  getStatus(): Promise<BridgeStatus>;
  listRecentDecisions(limit: number): Promise<DecisionSummary[]>;
  listAgents(): Promise<AgentSummary[]>;
}

// ---- transports ----

/** IPC channel names (Electron preload <-> main). */
export const BRIDGE_CHANNELS = {
  getStatus: 'countersign:getStatus',
  listRecentDecisions: 'countersign:listRecentDecisions',
  listAgents: 'countersign:listAgents',
} as const satisfies Record<keyof CountersignBridge, string>;
export type BridgeChannel = (typeof BRIDGE_CHANNELS)[keyof typeof BRIDGE_CHANNELS];

/** HTTP paths of the headless UI API (same port as the gateway; Host allowlist applies). */
export const UI_API_PATHS = {
  getStatus: '/api/ui/status',
  listRecentDecisions: '/api/ui/decisions',
  listAgents: '/api/ui/agents',
} as const satisfies Record<keyof CountersignBridge, string>;

/** Where the built renderer is served, in both Electron and headless mode. */
export const UI_BASE_PATH = '/ui/';
/** The URL fragment parameter carrying the headless session secret (`/ui/#secret=...`). */
export const UI_SECRET_FRAGMENT_PARAM = 'secret';
/** Session secrets are 32 random bytes, base64url. */
export const sessionSecretSchema = z.string().regex(/^[A-Za-z0-9_-]{32,256}$/);

/** The error body of the HTTP API and the failure half of an IPC answer. */
export const bridgeErrorSchema = z.strictObject({
  code: z.string().max(64).refine(isErrorCode, 'unknown error code'),
  message: text(2048),
});
export type BridgeError = z.infer<typeof bridgeErrorSchema>;
export const httpErrorBodySchema = z.strictObject({ error: bridgeErrorSchema });

/**
 * What an IPC handler answers: errors travel as data because Electron's IPC (and the context
 * bridge) copy only an Error's message, never its `code`.
 */
export type BridgeAnswer<T> = { ok: true; value: T } | { ok: false; error: BridgeError };

const answerSchema = z.union([
  z.strictObject({ ok: z.literal(true), value: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: bridgeErrorSchema }),
]);

/** Turn any thrown value into the wire error (internal details are never exposed). */
export function toBridgeError(error: unknown): BridgeError {
  if (isCountersignError(error)) return { code: error.code, message: error.message.slice(0, 2048) };
  return { code: 'internal_error', message: ERROR_CODES.internal_error };
}

/** Validate one result against its schema; anything else is `schema_invalid`. */
export function parseBridgeResult<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError('schema_invalid', `the bridge response does not match its schema at ${JSON.stringify(issue?.path.join('.') ?? '')}`);
  }
  return parsed.data;
}

/** Unwrap an IPC answer: the value validated by `schema`, or the error it carries. */
export function unwrapBridgeAnswer<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const answer = answerSchema.safeParse(raw);
  if (!answer.success) throw new CountersignError('schema_invalid', 'the bridge answer is malformed');
  if (!answer.data.ok) throw new CountersignError(answer.data.error.code, answer.data.error.message);
  return parseBridgeResult(schema, answer.data.value);
}

/**
 * Errors crossing Electron's context bridge keep only their message, so the preload puts the
 * code in front (`[code] message`) and `toCountersignError` restores it on the renderer side.
 */
export function bridgeErrorMessage(error: BridgeError): string {
  return `[${error.code}] ${error.message}`;
}

export function toCountersignError(error: unknown): CountersignError {
  if (isCountersignError(error)) return error;
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const match = /\[([a-z_]{1,64})\] ?(.*)$/s.exec(message);
  const code = match?.[1];
  if (code !== undefined && isErrorCode(code)) return new CountersignError(code, match?.[2] || ERROR_CODES[code], { cause: error });
  return new CountersignError('internal_error', undefined, { cause: error });
}

/**
 * Wrap a bridge the renderer did not build itself (the preload's `window.countersign`):
 * every result is validated again and every error becomes a CountersignError.
 */
export function validatingBridge(inner: CountersignBridge): CountersignBridge {
  const guard = async <S extends z.ZodType>(schema: S, call: () => Promise<unknown>): Promise<z.infer<S>> => {
    let value: unknown;
    try {
      value = await call();
    } catch (error) {
      throw toCountersignError(error);
    }
    return parseBridgeResult(schema, value);
  };
  return {
    getStatus: () => guard(bridgeStatusSchema, () => inner.getStatus()),
    listRecentDecisions: (limit) => guard(decisionListSchema, () => inner.listRecentDecisions(clampDecisionLimit(limit))),
    listAgents: () => guard(agentListSchema, () => inner.listAgents()),
  };
}
