/**
 * Approvals over the local HTTP interface (on the gateway's port, after its Host allowlist):
 *
 *   GET  /.well-known/countersign-approvers.json        the approver directory (public keys)
 *   GET  /api/approvals/pending?limit=&offset=           pending requests (oldest first), with the full call
 *   GET  /api/approvals/requests/<id>                    one request and its approvals so far
 *   GET  /api/approvals/history?limit=                   decided requests, newest first
 *   POST /api/approvals/requests/<id>/ceremony           {approverId, verdict} -> WebAuthn options
 *   POST /api/approvals/requests/<id>/submit             {approverId, response, reason?}
 *   GET  /api/approvers                                  approvers (no key material)
 *   POST /api/approvers/<id>/registration                {registrationCode} -> WebAuthn creation options
 *   POST /api/approvers/<id>/registration/finish         {response}
 *   POST /api/admin/ceremony                             {adminId, action} -> WebAuthn options
 *   POST /api/admin/submit                               {adminId, response} -> performs the action
 *   GET  /api/audit/checkpoint                           the latest signed checkpoint of the audit log
 *   GET  /api/audit/inclusion?seq=&size=                 inclusion proof of entry seq (against a checkpoint)
 *   GET  /api/audit/consistency?from=&to=                consistency proof between two tree sizes
 * Headless test domain only (the automation API; absent otherwise):
 *   POST /api/automation/virtual-approvers               {id, displayName, groups}
 *   POST /api/automation/requests/<id>/decide            {approverId, verdict, reason?}
 *   GET  /api/automation/requests/<id>/wait?timeoutMs=   waits until the request leaves pending
 *
 * Every /api/ route needs `Authorization: Bearer <session secret>`; a request with an Origin
 * header must come from the app's own origin (no cross-site POSTs). Bodies: JSON, at most 64 KiB,
 * strict I-JSON. Errors: {error: {code, message}} with a stable code.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { ApproverDirectory } from './approver-directory.js';
import type { AdminActions } from './admin-actions.js';
import type { AuditProofs } from '../audit/audit-proofs.js';
import type { Db } from '../store/database.js';
import { CountersignError, httpStatusFor, isCountersignError } from '../../../shared/errors.js';
import { RequestRepository } from '../store/request-repository.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';

/** The approval service operations this interface exposes. */
export interface ApprovalApi {
  listPending(limit?: number, offset?: number): unknown[];
  countPending(): number;
  getPending(requestId: string): unknown;
  history(limit: number): unknown[];
  startCeremony(input: { requestId: string; approverId: string; verdict: 'approve' | 'deny' }): Promise<unknown>;
  submitCeremony(input: { requestId: string; approverId: string; response: AuthenticationResponseJSON; reason?: string }): Promise<unknown>;
}

/**
 * The automation routes' operations: the test key domain's virtual approvers
 * (main/core/testing/virtual-approvers.ts) implement it; declared here so this room never
 * imports the testing wing (docs/adr/0005-layering.md).
 */
export interface AutomationApi {
  create(input: { id: string; displayName: string; groups: string[] }): Promise<unknown>;
  decide(input: { requestId: string; approverId: string; verdict: 'approve' | 'deny'; reason?: string }): Promise<unknown>;
}

export interface ApprovalsHttpOptions {
  sessionSecret: string;
  service: ApprovalApi;
  directory: ApproverDirectory;
  db: Db;
  /** The app's own origins (requests carrying another Origin are refused). */
  origins: () => readonly string[];
  /** Present only in the headless test domain. */
  automation?: AutomationApi;
  /** Admin actions confirmed by an admin's key tap. */
  admin?: AdminActions;
  /** Audit proofs and checkpoints (the /api/audit/ routes). */
  audit?: AuditProofs;
  now?: () => number;
}

const MAX_BODY = 64 * 1024;
const MAX_WAIT_MS = 120_000;
const ID = z.string().min(1).max(128);

const ceremonyBody = z.strictObject({ approverId: ID, verdict: z.enum(['approve', 'deny']) });
const submitBody = z.strictObject({ approverId: ID, response: z.record(z.string(), z.unknown()), reason: z.string().max(500).optional() });
const registrationBody = z.strictObject({ registrationCode: z.string().min(1).max(128) });
const finishBody = z.strictObject({ response: z.record(z.string(), z.unknown()) });
const virtualBody = z.strictObject({ id: ID, displayName: z.string().min(1).max(200), groups: z.array(z.string().min(1).max(128)).max(64) });
const adminStartBody = z.strictObject({ adminId: ID, action: z.record(z.string(), z.unknown()) });
const adminSubmitBody = z.strictObject({ adminId: ID, response: z.record(z.string(), z.unknown()) });
const decideBody = z.strictObject({ approverId: ID, verdict: z.enum(['approve', 'deny']), reason: z.string().max(500).optional() });


const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

export function createApprovalsHttpHandler(options: ApprovalsHttpOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const secretDigest = digest(options.sessionSecret);
  const now = options.now ?? Date.now;

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(text);
  };
  const fail = (res: ServerResponse, error: unknown): void => {
    const known = isCountersignError(error) ? error : new CountersignError('internal_error');
    send(res, httpStatusFor(known.code), { error: { code: known.code, message: known.message } });
  };

  const done = (res: ServerResponse, status: number, body: unknown): true => {
    send(res, status, body);
    return true;
  };

  const authorized = (req: IncomingMessage): boolean => {
    const header = req.headers.authorization;
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
    return timingSafeEqual(digest(header.slice(7)), secretDigest);
  };

  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const type = req.headers['content-type'] ?? '';
    if (!type.toLowerCase().startsWith('application/json')) throw new CountersignError('schema_invalid', 'the body must be application/json');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new CountersignError('frame_too_large', `the body is larger than ${MAX_BODY} bytes`);
      chunks.push(chunk);
    }
    return parseStrictJson(Buffer.concat(chunks).toString('utf8'));
  };

  const parse = <T>(schema: z.ZodType<T>, value: unknown): T => {
    const result = schema.safeParse(value);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new CountersignError('schema_invalid', `the body does not match at ${JSON.stringify(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`);
    }
    return result.data;
  };

  const waitForDecision = async (requestId: string, timeoutMs: number): Promise<unknown> => {
    const requests = new RequestRepository(options.db);
    const deadline = now() + Math.min(Math.max(timeoutMs, 0), MAX_WAIT_MS);
    for (;;) {
      const state = requests.stateOf(requestId);
      if (state === undefined) throw new CountersignError('request_unknown', 'no request has that id');
      if (state !== 'pending') return { requestId, state };
      if (now() >= deadline) throw new CountersignError('timeout', 'the request is still pending');
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  /** Answers the request, or returns false when no route matches. */
  const route = async (req: IncomingMessage, res: ServerResponse, method: string, path: string, query: URLSearchParams): Promise<boolean> => {
    const parts = path.split('/').filter((p) => p.length > 0).map((p) => decodeURIComponent(p));
    // parts: ['api', area, ...]
    const [, area, a, b, c, d] = parts;
    if (area === 'approvals') {
      if (method === 'GET' && a === 'pending' && b === undefined) {
        const limit = Number(query.get('limit') ?? 1000) || 1000;
        const offset = Number(query.get('offset') ?? 0) || 0;
        return done(res, 200, { pending: options.service.listPending(limit, offset), total: options.service.countPending() });
      }
      if (method === 'GET' && a === 'history' && b === undefined) {
        const limit = Math.min(Math.max(Number(query.get('limit') ?? 50) || 50, 1), 500);
        return done(res, 200, { history: options.service.history(limit) });
      }
      if (a === 'requests' && b !== undefined) {
        if (method === 'GET' && c === undefined) return done(res, 200, options.service.getPending(b));
        if (method === 'POST' && c === 'ceremony' && d === undefined) {
          const body = parse(ceremonyBody, await readBody(req));
          return done(res, 200, await options.service.startCeremony({ requestId: b, ...body }));
        }
        if (method === 'POST' && c === 'submit' && d === undefined) {
          const body = parse(submitBody, await readBody(req));
          const input = { requestId: b, approverId: body.approverId, response: body.response as unknown as AuthenticationResponseJSON };
          return done(res, 200, await options.service.submitCeremony(body.reason === undefined ? input : { ...input, reason: body.reason }));
        }
      }
    }
    if (area === 'approvers') {
      if (method === 'GET' && a === undefined) return done(res, 200, { approvers: options.directory.list() });
      if (method === 'POST' && a !== undefined && b === 'registration' && c === undefined) {
        const body = parse(registrationBody, await readBody(req));
        return done(res, 200, await options.directory.beginRegistration(a, body.registrationCode));
      }
      if (method === 'POST' && a !== undefined && b === 'registration' && c === 'finish' && d === undefined) {
        const body = parse(finishBody, await readBody(req));
        const credential = await options.directory.finishRegistration(a, body.response as unknown as RegistrationResponseJSON);
        return done(res, 200, { credentialId: credential.credentialId, aaguid: credential.aaguid, approverId: credential.approverId });
      }
    }
    if (area === 'admin' && options.admin !== undefined && method === 'POST' && b === undefined) {
      if (a === 'ceremony') {
        const body = parse(adminStartBody, await readBody(req));
        return done(res, 200, await options.admin.start(body.adminId, body.action));
      }
      if (a === 'submit') {
        const body = parse(adminSubmitBody, await readBody(req));
        return done(res, 200, await options.admin.submit(body.adminId, body.response as unknown as AuthenticationResponseJSON));
      }
    }
    if (area === 'audit' && options.audit !== undefined && method === 'GET' && b === undefined) {
      const whole = (name: string): number => {
        const v = query.get(name);
        const n = Number(v);
        if (v === null || !Number.isSafeInteger(n) || n < 0) throw new CountersignError('schema_invalid', `the query parameter ${JSON.stringify(name)} must be a whole number`);
        return n;
      };
      if (a === 'checkpoint') return done(res, 200, options.audit.latest());
      if (a === 'inclusion') return done(res, 200, await options.audit.inclusion(whole('seq'), query.has('size') ? whole('size') : undefined));
      if (a === 'consistency') return done(res, 200, options.audit.consistency(whole('from'), whole('to')));
    }
    if (area === 'automation' && options.automation !== undefined) {
      if (method === 'POST' && a === 'virtual-approvers' && b === undefined) {
        const body = parse(virtualBody, await readBody(req));
        return done(res, 200, await options.automation.create(body));
      }
      if (a === 'requests' && b !== undefined) {
        if (method === 'POST' && c === 'decide' && d === undefined) {
          const body = parse(decideBody, await readBody(req));
          return done(res, 200, await options.automation.decide({ requestId: b, ...body }));
        }
        if (method === 'GET' && c === 'wait' && d === undefined) return done(res, 200, await waitForDecision(b, Number(query.get('timeoutMs') ?? 30_000) || 0));
      }
    }
    return false;
  };

  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/.well-known/countersign-approvers.json' && (req.method === 'GET' || req.method === 'HEAD')) {
      send(res, 200, options.directory.published());
      return true;
    }
    if (!(path.startsWith('/api/approvals/') || path === '/api/approvals' || path.startsWith('/api/approvers') || path.startsWith('/api/automation/') || path.startsWith('/api/admin/') || (options.audit !== undefined && path.startsWith('/api/audit/')))) return false;
    if (!authorized(req)) {
      fail(res, new CountersignError('not_authenticated', 'this API needs the session secret'));
      return true;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !options.origins().includes(origin)) {
      fail(res, new CountersignError('origin_not_allowed', `requests from ${JSON.stringify(origin)} are not allowed`));
      return true;
    }
    route(req, res, req.method ?? 'GET', path, url.searchParams).then(
      (handled) => {
        if (!handled) send(res, httpStatusFor('method_unknown'), { error: { code: 'method_unknown', message: 'not found' } });
      },
      (error: unknown) => fail(res, error),
    );
    return true;
  };
}
