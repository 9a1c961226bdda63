/**
 * The ONE bridge method table. Each row names a method the renderer may call: its arguments
 * (each with a zod schema and where it travels over HTTP), its result schema, its IPC channel and
 * its HTTP verb and path. The preload client, the Electron IPC handlers, the HTTP client and the
 * HTTP routes are all derived from these rows by generic code (as VS Code's ProxyChannel does),
 * so adding a method is one row here plus one method on the server (main/core/ui/ui-service.ts)
 * (and its name in shared/bridge-method-names.ts, the zod-free list the desk's first-paint bridge
 * offers; the typecheck says so).
 * Push events (a new pending request, a request decided) are rows too: over HTTP they are
 * Server-Sent Events on one path, over IPC one channel sent to the window.
 * Arguments are validated once, on the server side (`parseBridgeArguments`); results once, in
 * the client (`parseBridgeResult`).
 */
import { z } from 'zod';
import { CountersignError } from './errors.js';
import type { BRIDGE_METHOD_NAME_LIST } from './bridge-method-names.js';
import {
  agentListSchema,
  approvalCeremonySchema,
  approvalOutcomeSchema,
  approvalReasonSchema,
  approvalVerdictSchema,
  approverListResponseSchema,
  bridgeIdSchema,
  bridgeStatusSchema,
  decisionListSchema,
  deskRequestSchema,
  parseBridgeArgument,
  pendingApprovalsResponseSchema,
  registeredKeySchema,
  registrationCodeSchema,
  registrationOptionsSchema,
  requestStateSchema,
  webauthnResponseSchema,
  parseBridgeResult,
  toCountersignError,
  type WebAuthnResponseJson,
  webhookDeadLettersResponseSchema,
  webhookRetryResultSchema,
} from './bridge.js';
import { agentIdSchema, toolCallSchema } from './protocol.js';
import {
  auditVerificationSchema,
  custodyHealthSchema,
  historyEntrySchema,
  historyPageSchema,
  historyQuerySchema,
  policyOverviewSchema,
  policyTestResultSchema,
} from './desk-records.js';
import { adminActionSchema, type AdminAction } from './admin-actions.js';
import {
  adminCeremonySchema,
  adminConfirmationCeremonySchema,
  adminConfirmationOutcomeSchema,
  adminConfirmationVerdictSchema,
  adminProposalListSchema,
  adminProposalStateSchema,
  adminOutcomeSchema,
  approverDirectorySchema,
  displayNameSchema,
  firstAdminSchema,
  firstRunStateSchema,
} from './bridge-admin.js';
import { deskSessionResponseSchema, signInOptionsSchema, signedInSchema, signedOutSchema, type BridgeCallerRule } from './desk-session.js';

/** Where an argument travels over HTTP: a `{name}` path segment, a `?name=` whole number, or a member of the JSON body. */
export type ArgPlace = 'path' | 'query' | 'body';

export interface BridgeArg<S extends z.ZodType = z.ZodType, T = z.infer<S>, O extends boolean = boolean> {
  readonly name: string;
  readonly schema: S;
  readonly in: ArgPlace;
  /** A trailing argument the caller may leave out. */
  readonly optional: O;
  /** Phantom: the TypeScript type callers pass (defaults to what the schema yields). */
  readonly _type?: T;
}

/** A required argument. */
export function arg<S extends z.ZodType>(name: string, schema: S, place: ArgPlace): BridgeArg<S, z.infer<S>, false> {
  return { name, schema, in: place, optional: false };
}

/** A required argument whose callers hold a structural type `T` the schema checks more loosely or strictly than TypeScript can say. */
export function typedArg<T>(name: string, schema: z.ZodType, place: ArgPlace): BridgeArg<z.ZodType, T, false> {
  return { name, schema, in: place, optional: false };
}

/** An optional trailing argument (absent over IPC: undefined; over HTTP: no member / no query parameter). */
export function optionalArg<S extends z.ZodType>(name: string, schema: S, place: ArgPlace): BridgeArg<S, z.infer<S>, true> {
  return { name, schema, in: place, optional: true };
}

export interface BridgeMethodRow<A extends readonly BridgeArg[] = readonly BridgeArg[], R extends z.ZodType = z.ZodType> {
  readonly args: A;
  readonly result: R;
  readonly channel: `countersign:${string}`;
  readonly http: { readonly verb: 'GET' | 'POST'; readonly path: `/api/${string}` };
  /**
   * Who may call it beyond the transport gate (shared/desk-session.ts): left out, a row with an
   * `approverId` argument needs that person signed in, one with `adminId` a signed-in admin.
   */
  readonly caller?: BridgeCallerRule;
}

const method = <const A extends readonly BridgeArg[], R extends z.ZodType>(row: BridgeMethodRow<A, R>): BridgeMethodRow<A, R> => row;

/** Whole numbers carried in a query string (`?limit=50`): digits only, so `-1` or `1e3` are refused. */
export const queryIntegerSchema = z.int().min(0).max(999_999_999);

// ---- the table ----

export const BRIDGE_METHODS = {
  getStatus: method({
    args: [],
    result: bridgeStatusSchema,
    channel: 'countersign:getStatus',
    http: { verb: 'GET', path: '/api/ui/status' },
  }),
  listRecentDecisions: method({
    args: [optionalArg('limit', queryIntegerSchema, 'query')],
    result: decisionListSchema,
    channel: 'countersign:listRecentDecisions',
    http: { verb: 'GET', path: '/api/ui/decisions' },
  }),
  listAgents: method({
    args: [],
    result: agentListSchema,
    channel: 'countersign:listAgents',
    http: { verb: 'GET', path: '/api/ui/agents' },
  }),
  /** Every approver (no key material), to choose who is approving. */
  listApprovers: method({
    args: [],
    result: approverListResponseSchema,
    channel: 'countersign:listApprovers',
    http: { verb: 'GET', path: '/api/approvers' },
  }),
  /** Pending, unexpired requests waiting for approvers, oldest first, with the full call; `total` counts them all. */
  listPendingApprovals: method({
    args: [optionalArg('limit', queryIntegerSchema, 'query'), optionalArg('offset', queryIntegerSchema, 'query')],
    result: pendingApprovalsResponseSchema,
    channel: 'countersign:listPendingApprovals',
    http: { verb: 'GET', path: '/api/approvals/pending' },
  }),
  /** Start registering a security key with the single-use registration code an admin issued. */
  beginApproverRegistration: method({
    args: [arg('approverId', bridgeIdSchema, 'path'), arg('registrationCode', registrationCodeSchema, 'body')],
    result: registrationOptionsSchema,
    channel: 'countersign:beginApproverRegistration',
    http: { verb: 'POST', path: '/api/approvers/{approverId}/registration' },
    // Authorised by the single-use registration code: the person has no key to sign in with yet.
    caller: 'transport',
  }),
  /** Finish it with the browser's response; the key is verified and stored. */
  finishApproverRegistration: method({
    args: [arg('approverId', bridgeIdSchema, 'path'), typedArg<WebAuthnResponseJson>('response', webauthnResponseSchema, 'body')],
    result: registeredKeySchema,
    channel: 'countersign:finishApproverRegistration',
    http: { verb: 'POST', path: '/api/approvers/{approverId}/registration/finish' },
    caller: 'transport',
  }),
  /** Start one approval ceremony (challenge bound to the call, the verdict and the approver). */
  startApprovalCeremony: method({
    args: [
      arg('requestId', bridgeIdSchema, 'path'),
      arg('approverId', bridgeIdSchema, 'body'),
      arg('verdict', approvalVerdictSchema, 'body'),
    ],
    result: approvalCeremonySchema,
    channel: 'countersign:startApprovalCeremony',
    http: { verb: 'POST', path: '/api/approvals/requests/{requestId}/ceremony' },
  }),
  /** Submit the assertion; the outcome says whether the request is still pending, approved or denied. */
  submitApprovalCeremony: method({
    args: [
      arg('requestId', bridgeIdSchema, 'path'),
      arg('approverId', bridgeIdSchema, 'body'),
      typedArg<WebAuthnResponseJson>('response', webauthnResponseSchema, 'body'),
      optionalArg('reason', approvalReasonSchema, 'body'),
    ],
    result: approvalOutcomeSchema,
    channel: 'countersign:submitApprovalCeremony',
    http: { verb: 'POST', path: '/api/approvals/requests/{requestId}/submit' },
  }),
  // ---- History, Policies, Custody and health (read-only views; shared/desk-records.ts) ----
  /** One page of decided requests, newest decision first: filters, search, keyed paging (`nextCursor`). */
  searchHistory: method({
    args: [arg('historyQuery', historyQuerySchema, 'body')],
    result: historyPageSchema,
    channel: 'countersign:searchHistory',
    http: { verb: 'POST', path: '/api/ui/history' },
  }),
  /** One decided request in full: approvals, token id, audit entries and their inclusion proof with the log's keys. */
  getHistoryEntry: method({
    args: [arg('requestId', bridgeIdSchema, 'path')],
    result: historyEntrySchema,
    channel: 'countersign:getHistoryEntry',
    http: { verb: 'GET', path: '/api/ui/history/{requestId}' },
  }),
  /** The active policy set (hash, files, policies, tools) and the last reload's outcome with file:line. */
  getPolicyOverview: method({
    args: [],
    result: policyOverviewSchema,
    channel: 'countersign:getPolicyOverview',
    http: { verb: 'GET', path: '/api/ui/policies' },
  }),
  /** Test a call: the decision, risk and approvals it would get, as a dry run (nothing stored or audited). */
  testPolicyCall: method({
    args: [arg('agentId', agentIdSchema, 'body'), arg('call', toolCallSchema, 'body')],
    result: policyTestResultSchema,
    channel: 'countersign:testPolicyCall',
    http: { verb: 'POST', path: '/api/ui/policies/test' },
    // A signed-in person, not only the transport: it runs the agent's risk scorer against its
    // history (amount baseline, known payees) and costs a Cedar evaluation per call. Not admin:
    // it changes nothing, and approvers use it to learn what a call will ask of them.
    caller: 'person',
  }),
  /** Custody (HSM or software), signing keys and rotation, the audit checkpoint and verification, the tamper alarm. */
  getCustodyHealth: method({
    args: [],
    result: custodyHealthSchema,
    channel: 'countersign:getCustodyHealth',
    http: { verb: 'GET', path: '/api/ui/health' },
  }),
  /** Re-verify the whole audit log now (raises the tamper alarm on a finding). */
  verifyAuditNow: method({
    args: [],
    result: auditVerificationSchema,
    channel: 'countersign:verifyAuditNow',
    http: { verb: 'POST', path: '/api/ui/health/verify' },
    // A signed-in person: it re-hashes the whole log (cost grows with the log) and can raise the
    // tamper alarm. Not admin: every approver relies on the log and may check it; raising the
    // alarm on a real finding is right whoever asks, and only an admin's key tap clears it.
    caller: 'person',
  }),
  // ---- the admin console and the first run (renderer/src/desk/: first-run, agents, approvers) ----
  /** Whether the first-run setup is open (no admin exists yet). */
  getFirstRun: method({
    args: [],
    result: firstRunStateSchema,
    channel: 'countersign:getFirstRun',
    http: { verb: 'GET', path: '/api/ui/first-run' },
  }),
  /** Create the first admin and their registration code; refused with first_run_closed once any admin exists. */
  createFirstAdmin: method({
    args: [arg('newAdminId', bridgeIdSchema, 'body'), arg('displayName', displayNameSchema, 'body')],
    result: firstAdminSchema,
    channel: 'countersign:createFirstAdmin',
    http: { verb: 'POST', path: '/api/ui/first-run' },
  }),
  /** Start an admin action: WebAuthn options for the admin's key tap over exactly that action. */
  startAdminAction: method({
    args: [arg('adminId', bridgeIdSchema, 'body'), typedArg<AdminAction>('action', adminActionSchema, 'body')],
    result: adminCeremonySchema,
    channel: 'countersign:startAdminAction',
    http: { verb: 'POST', path: '/api/ui/admin/ceremony' },
  }),
  /** Submit the tap; the action is performed and audited with it. */
  submitAdminAction: method({
    args: [arg('adminId', bridgeIdSchema, 'body'), typedArg<WebAuthnResponseJson>('response', webauthnResponseSchema, 'body')],
    result: adminOutcomeSchema,
    channel: 'countersign:submitAdminAction',
    http: { verb: 'POST', path: '/api/ui/admin/submit' },
  }),
  // ---- the admin quorum (approvals.adminQuorum: 2; docs/approvals.md) ----
  /** The quorum in force and the proposed admin actions waiting for a second admin, oldest first. */
  listPendingAdminActions: method({
    args: [],
    result: adminProposalListSchema,
    channel: 'countersign:listPendingAdminActions',
    http: { verb: 'GET', path: '/api/ui/admin/proposals' },
    caller: 'admin',
  }),
  /** Start a second admin's tap over exactly one proposal and a verdict (confirm or reject); never the proposer's own. */
  startAdminConfirmation: method({
    args: [
      arg('proposalId', bridgeIdSchema, 'path'),
      arg('adminId', bridgeIdSchema, 'body'),
      arg('confirmation', adminConfirmationVerdictSchema, 'body'),
    ],
    result: adminConfirmationCeremonySchema,
    channel: 'countersign:startAdminConfirmation',
    http: { verb: 'POST', path: '/api/ui/admin/proposals/{proposalId}/ceremony' },
  }),
  /** Submit that tap: confirmed, the action is performed once and audited with both admins; rejected, it is not. */
  submitAdminConfirmation: method({
    args: [arg('adminId', bridgeIdSchema, 'body'), typedArg<WebAuthnResponseJson>('response', webauthnResponseSchema, 'body')],
    result: adminConfirmationOutcomeSchema,
    channel: 'countersign:submitAdminConfirmation',
    http: { verb: 'POST', path: '/api/ui/admin/proposals/submit' },
  }),
  /** People with their groups, aliases and keys (make and model come from the AAGUID in the renderer). */
  listApproverDirectory: method({
    args: [],
    result: approverDirectorySchema,
    channel: 'countersign:listApproverDirectory',
    http: { verb: 'GET', path: '/api/ui/approver-directory' },
    caller: 'admin',
  }),
  /** Webhook deliveries that failed their last attempt, newest first (the desk's admin panel). */
  listWebhookDeadLetters: method({
    args: [],
    result: webhookDeadLettersResponseSchema,
    channel: 'countersign:listWebhookDeadLetters',
    http: { verb: 'GET', path: '/api/notifications/dead-letters' },
    caller: 'admin',
  }),
  /** Put one dead delivery back in the queue with a fresh attempt budget. */
  retryWebhookDeadLetter: method({
    args: [arg('deliveryId', bridgeIdSchema, 'path')],
    result: webhookRetryResultSchema,
    channel: 'countersign:retryWebhookDeadLetter',
    http: { verb: 'POST', path: '/api/notifications/dead-letters/{deliveryId}/retry' },
    caller: 'admin',
  }),
  // ---- desk sessions (sign-in with a security key; docs/adr/0010-desk-sessions.md) ----
  /** The person signed in at this desk, or null. */
  getSession: method({
    args: [],
    result: deskSessionResponseSchema,
    channel: 'countersign:getSession',
    http: { verb: 'GET', path: '/api/session' },
  }),
  /** Start signing in as `approverId`: WebAuthn options offering that person's keys (single-use challenge, UV required). */
  beginSignIn: method({
    args: [arg('approverId', bridgeIdSchema, 'body')],
    result: signInOptionsSchema,
    channel: 'countersign:beginSignIn',
    http: { verb: 'POST', path: '/api/session/sign-in' },
    caller: 'transport',
  }),
  /** Finish it with the key's assertion: the session (cookie / per window) now belongs to that person. */
  finishSignIn: method({
    args: [arg('approverId', bridgeIdSchema, 'body'), typedArg<WebAuthnResponseJson>('response', webauthnResponseSchema, 'body')],
    result: signedInSchema,
    channel: 'countersign:finishSignIn',
    http: { verb: 'POST', path: '/api/session/sign-in/finish' },
    caller: 'transport',
  }),
  /** End this desk's session (true when there was one). */
  signOut: method({
    args: [],
    result: signedOutSchema,
    channel: 'countersign:signOut',
    http: { verb: 'POST', path: '/api/session/sign-out' },
  }),
  // ---- the desk's queue and request views (renderer/src/desk/queue-view.tsx, request-view.tsx) ----
  /** The queue: pending, unexpired prompts, the soonest to expire first; `total` counts them all. */
  listQueue: method({
    args: [optionalArg('limit', queryIntegerSchema, 'query'), optionalArg('offset', queryIntegerSchema, 'query')],
    result: pendingApprovalsResponseSchema,
    channel: 'countersign:listQueue',
    http: { verb: 'GET', path: '/api/ui/queue' },
  }),
  /** One request (any state) for one approver: the keys behind each decision and whether each verdict could succeed, and why not. */
  getRequest: method({
    args: [arg('requestId', bridgeIdSchema, 'path'), arg('approverId', bridgeIdSchema, 'path')],
    result: deskRequestSchema,
    channel: 'countersign:getRequest',
    http: { verb: 'GET', path: '/api/ui/requests/{requestId}/for/{approverId}' },
  }),
} as const;

export type BridgeMethodName = keyof typeof BRIDGE_METHODS;
export const BRIDGE_METHOD_NAMES = Object.keys(BRIDGE_METHODS) as BridgeMethodName[];

// The zod-free list of names (shared/bridge-method-names.ts) names exactly these rows.
type ListedName = (typeof BRIDGE_METHOD_NAME_LIST)[number];
const everyRowListed: [BridgeMethodName] extends [ListedName]
  ? true
  : ['a row missing from BRIDGE_METHOD_NAME_LIST', Exclude<BridgeMethodName, ListedName>] = true;
const everyListedRow: [ListedName] extends [BridgeMethodName]
  ? true
  : ['a listed name with no row', Exclude<ListedName, BridgeMethodName>] = true;
void everyRowListed;
void everyListedRow;

// ---- push events ----

/**
 * What the core pushes: a call now waits for approvers; an approval of a held call was recorded;
 * a held call reached its end; an admin action was proposed under the admin quorum, or a second
 * admin confirmed or rejected it (the desk then reads listPendingAdminActions, which only admins
 * may call: the event names no action);
 * or the event stream lost events it cannot replay (`resync`, see main/core/ui/bridge-events.ts).
 */
export const BRIDGE_EVENTS = {
  pending: z.strictObject({ requestId: bridgeIdSchema, agentId: bridgeIdSchema }),
  // An approver's approval or denial of a held call was recorded (it may still wait for others).
  approvalRecorded: z.strictObject({ requestId: bridgeIdSchema }),
  decided: z.strictObject({ requestId: bridgeIdSchema, state: requestStateSchema }),
  adminProposal: z.strictObject({ proposalId: bridgeIdSchema, state: adminProposalStateSchema }),
  // Sent by the Server-Sent Events stream to a client that reconnected after a gap the server's
  // replay ring no longer covers (or after a server restart), and by a team hub whose own gap in
  // the team's events is too long to replay (store/pg/pg-desk-events.ts): re-read every view.
  resync: z.strictObject({}),
} as const;
export type BridgeEventName = keyof typeof BRIDGE_EVENTS;
export type BridgeEvent = { [K in BridgeEventName]: { name: K; data: z.infer<(typeof BRIDGE_EVENTS)[K]> } }[BridgeEventName];
/** The one IPC channel main sends events on (to the window only). */
export const BRIDGE_EVENT_CHANNEL = 'countersign:event';
/** The one HTTP path serving them as Server-Sent Events (session secret required; in the zod-free transport). */
export { BRIDGE_EVENTS_PATH } from './bridge-http-transport.js';

/** Validate one pushed event (the client side): undefined when it is not one of ours. */
export function parseBridgeEvent(name: unknown, data: unknown): BridgeEvent | undefined {
  if (typeof name !== 'string' || !Object.hasOwn(BRIDGE_EVENTS, name)) return undefined;
  const parsed = BRIDGE_EVENTS[name as BridgeEventName].safeParse(data);
  return parsed.success ? ({ name, data: parsed.data } as BridgeEvent) : undefined;
}

// ---- types derived from the table ----

type ArgTuple<A extends readonly unknown[]> = A extends readonly [infer H, ...infer R]
  ? H extends BridgeArg<z.ZodType, infer T, infer O>
    ? O extends true
      ? [T?, ...ArgTuple<R>]
      : [T, ...ArgTuple<R>]
    : never
  : [];
export type BridgeArgs<K extends BridgeMethodName> = ArgTuple<(typeof BRIDGE_METHODS)[K]['args']>;
export type BridgeResult<K extends BridgeMethodName> = z.infer<(typeof BRIDGE_METHODS)[K]['result']>;

/** Every table method as an async function: what the server implements and every client offers. */
export type BridgeMethods = { [K in BridgeMethodName]: (...args: BridgeArgs<K>) => Promise<BridgeResult<K>> };

export type BridgeListener = (event: BridgeEvent) => void;

/** The renderer's bridge: the table's methods plus a subscription to the push events. */
export interface CountersignBridge extends BridgeMethods {
  /** Call `listener` for each pushed event until the returned function is called. */
  subscribe: (listener: BridgeListener) => () => void;
}

// ---- generic helpers the transports share ----

/**
 * Validate the arguments of one call against the row (server side, once): a missing required
 * argument, an extra one or a bad value is `schema_invalid` naming the argument.
 */
export function parseBridgeArguments<K extends BridgeMethodName>(name: K, raw: readonly unknown[]): BridgeArgs<K> {
  const row: BridgeMethodRow = BRIDGE_METHODS[name];
  if (raw.length > row.args.length)
    throw new CountersignError('schema_invalid', `the bridge method ${JSON.stringify(name)} takes at most ${row.args.length} arguments`);
  const out: unknown[] = [];
  row.args.forEach((spec, index) => {
    const value = raw[index];
    if (value === undefined && spec.optional) return;
    out[index] = parseBridgeArgument(spec.schema, value, spec.name);
  });
  // Trailing optional arguments left out stay out (the server sees them as undefined).
  return out as BridgeArgs<K>;
}

/** Fill a row's path template: every `{name}` from the named argument, each one encoded segment. */
export function fillBridgePath(template: string, values: Readonly<Record<string, unknown>>): string {
  return template.replace(/\{([A-Za-z]+)\}/g, (_match, name: string) =>
    encodeURIComponent(parseBridgeArgument(bridgeIdSchema, values[name], name)),
  );
}

/** How a client reaches the server: one call by method name with its arguments as given. */
export type BridgeCall = (name: BridgeMethodName, args: readonly unknown[]) => Promise<unknown>;

/**
 * Build a bridge from a transport: every method of the table, each result validated against its
 * row (once, here in the client) and every failure a CountersignError. Trailing undefined
 * arguments are dropped so an optional argument left out is absent on every transport.
 */
export function createBridgeClient(call: BridgeCall, subscribe: CountersignBridge['subscribe']): CountersignBridge {
  const methods = {} as Record<BridgeMethodName, (...args: unknown[]) => Promise<unknown>>;
  for (const name of BRIDGE_METHOD_NAMES) {
    const row: BridgeMethodRow = BRIDGE_METHODS[name];
    methods[name] = async (...args: unknown[]) => {
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
      let value: unknown;
      try {
        value = await call(name, args);
      } catch (error) {
        throw toCountersignError(error);
      }
      return parseBridgeResult(row.result, value);
    };
  }
  return { ...(methods as unknown as BridgeMethods), subscribe };
}

/**
 * Wrap a bridge the renderer did not build itself (the preload's `window.countersign`): every
 * result is validated again, every error becomes a CountersignError, every event is re-checked.
 */
export function validatingBridge(inner: CountersignBridge): CountersignBridge {
  return createBridgeClient(
    (name, args) => (inner[name] as (...a: unknown[]) => Promise<unknown>)(...args),
    (listener) =>
      inner.subscribe((event) => {
        const checked = parseBridgeEvent(event?.name, event?.data);
        if (checked !== undefined) listener(checked);
      }),
  );
}
