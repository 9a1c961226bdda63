/**
 * Human approvals end to end: a real Countersign core (SQLite, Cedar, software signer, gateway)
 * holds a 48,000.00 USD transfer to a new payee for two finance approvers; approvers with
 * security keys registered through real WebAuthn ceremonies (the virtual authenticator) approve
 * or deny it, and the co-signed token is verified the way a tool server would.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { ApproverDirectory } from '../../main/core/approvals/approver-directory.js';
import { VirtualAuthenticator, type VirtualAuthenticatorTestHooks } from '../../main/core/testing/virtual-authenticator.js';
import {
  ApprovalService,
  type ApprovalOutcome,
  type ApprovalPolicyHook,
  type ApprovalVerdict,
  type CeremonyStart,
} from '../../main/core/approvals/approval-service.js';
import type { RunningCountersign } from '../../main/core/app.js';
import { tokenMinter, type ApprovedMinter } from '../../main/core/tokens/token-minter.js';
import { policyReevaluation } from '../../main/core/approvals/policy-reevaluation.js';
import { approvalAssertionSchema, approvalChallenge } from '../../shared/approvals.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { AgentClient } from '../../shared/agent-client.js';
import type { DecisionResult } from '../../shared/protocol.js';

const ORIGIN = 'http://localhost:7345';
const RP_ID = 'localhost';
const NORTHWIND = transferCall('48000.00', 'Northwind Traders');

/** What app.ts wires: the shared token minter and the policy re-evaluation hook. */
const approvedMinter = (app: RunningCountersign): ApprovedMinter => tokenMinter(app.issuer);
const policyHook = (app: RunningCountersign): ApprovalPolicyHook => policyReevaluation(app.registry, app.policy, Date.now);

interface World {
  h: Harness;
  app: RunningCountersign;
  client: AgentClient;
  directory: ApproverDirectory;
  /** One virtual security key per credential, as with physical keys. */
  authenticatorFor(credentialId: string): VirtualAuthenticator;
  keys: Map<string, string[]>;
  decided: Array<{ agentId: string; result: DecisionResult }>;
  skew: { ms: number };
  service: ApprovalService;
  makeService(extra?: { policy?: ApprovalPolicyHook; minter?: ApprovedMinter }): ApprovalService;
  addApprover(id: string, displayName: string, groups: string[], keyCount?: number): Promise<string[]>;
  pendingRequest(call?: typeof NORTHWIND): Promise<string>;
}

async function world(): Promise<World> {
  const h = await startHarness({ config: { domain: 'test' } });
  const app = h.app;
  const skew = { ms: 0 };
  const now = () => Date.now() + skew.ms;
  const directory = new ApproverDirectory(app.db, app.audit, {
    domain: 'test',
    rpId: RP_ID,
    origins: [ORIGIN],
    requireAaguids: [],
    ceremonyTimeoutMs: 60_000,
    now,
  });
  const authenticators: VirtualAuthenticator[] = [];
  const authenticatorFor = (credentialId: string) => {
    const found = authenticators.find((a) => a.hasCredential(credentialId));
    if (found === undefined) throw new Error(`no virtual key holds ${credentialId}`);
    return found;
  };
  const keys = new Map<string, string[]>();
  const decided: World['decided'] = [];
  const makeService = (extra: { policy?: ApprovalPolicyHook; minter?: ApprovedMinter } = {}) =>
    new ApprovalService({
      db: app.db,
      audit: app.audit,
      directory,
      minter: approvedMinter(app),
      audienceOf: (tool) => app.policy.tool(tool)?.audience,
      now,
      ceremonyTimeoutMs: 60_000,
      onDecided: (agentId, result) => decided.push({ agentId, result }),
      ...extra,
    });
  const w: World = {
    h,
    app,
    client: undefined as unknown as AgentClient,
    directory,
    authenticatorFor,
    keys,
    decided,
    skew,
    makeService,
    service: makeService({ policy: policyHook(app) }),
    async addApprover(id, displayName, groups, keyCount = 1) {
      directory.addApprover({ id, displayName, groups, virtual: true });
      const ids: string[] = [];
      for (let i = 0; i < keyCount; i++) {
        const options = await directory.beginRegistration(id);
        const authenticator = new VirtualAuthenticator();
        authenticators.push(authenticator);
        const response = authenticator.createCredential({
          rpId: RP_ID,
          origin: ORIGIN,
          challenge: options.challenge,
          user: options.user,
          userVerification: 'required',
          excludeCredentials: (options.excludeCredentials ?? []).map((c) => c.id),
        });
        ids.push((await directory.finishRegistration(id, response)).credentialId);
      }
      keys.set(id, ids);
      return ids;
    },
    async pendingRequest(call = NORTHWIND) {
      const result = await w.client.submit(call);
      expect(result.state).toBe('pending');
      return result.requestId;
    },
  };
  await w.addApprover('alice', 'Alice Example', ['finance-approvers']);
  await w.addApprover('bob', 'Bob Example', ['finance-approvers']);
  await w.addApprover('carol', 'Carol Example', ['finance-approvers']);
  await w.addApprover('erin', 'Erin Example', ['treasury']);
  await w.addApprover('dana@example.com', 'Dana Example', ['finance-approvers']);
  // The owner (dana@example.com) is a person of the directory before the agent is enrolled.
  w.client = h.client('finance-bot', await h.enroll('finance-bot'));
  return w;
}

interface SignOptions {
  origin?: string;
  credentialId?: string;
  allowCredentials?: string[];
  testHooks?: VirtualAuthenticatorTestHooks;
}

function sign(w: World, started: CeremonyStart, options: SignOptions = {}): AuthenticationResponseJSON {
  const allowCredentials = options.allowCredentials ?? (started.options.allowCredentials ?? []).map((c) => c.id);
  return w.authenticatorFor(options.credentialId ?? allowCredentials[0]!).getAssertion({
    rpId: RP_ID,
    origin: options.origin ?? ORIGIN,
    challenge: started.options.challenge,
    allowCredentials,
    userVerification: started.options.userVerification ?? 'required',
    ...(options.credentialId !== undefined ? { credentialId: options.credentialId } : {}),
    ...(options.testHooks !== undefined ? { testHooks: options.testHooks } : {}),
  });
}

async function decide(
  w: World,
  requestId: string,
  approverId: string,
  verdict: ApprovalVerdict = 'approve',
  reason?: string,
): Promise<ApprovalOutcome> {
  const started = await w.service.startCeremony({ requestId, approverId, verdict });
  return w.service.submitCeremony({
    requestId,
    approverId,
    response: sign(w, started),
    verdict,
    ...(reason !== undefined ? { reason } : {}),
  });
}

function count(w: World, sql: string, ...args: string[]): number {
  return (w.app.db.prepare(sql).get(...args) as { n: number }).n;
}
const approvalRows = (w: World, requestId: string) => count(w, 'SELECT COUNT(*) AS n FROM approvals WHERE request_id = ?', requestId);
const tokenRows = (w: World, requestId: string) => count(w, 'SELECT COUNT(*) AS n FROM tokens WHERE request_id = ?', requestId);
const auditKinds = (w: World, kind: string) => count(w, 'SELECT COUNT(*) AS n FROM audit_log WHERE kind = ?', kind);
const requestState = (w: World, requestId: string) =>
  (w.app.db.prepare('SELECT state FROM requests WHERE id = ?').get(requestId) as { state: string }).state;

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'CountersignError', code });
}

describe('approval service', () => {
  let w: World;
  beforeEach(async () => {
    w = await world();
  });
  afterEach(async () => w.h.close());

  it('approves with two finance approvers and issues a co-signed token carrying both assertions', async () => {
    const requestId = await w.pendingRequest();
    const pending = await w.service.listPending();
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({
      requestId,
      agentId: 'finance-bot',
      agentOwner: 'dana@example.com',
      tool: 'payments.transfer',
      params: NORTHWIND.params,
      dataClass: 'financial',
      jurisdiction: 'US',
      provenance: ['user'],
      policyHash: w.app.policy.hash,
      determiningPolicies: ['finance-transfers:two-approvers'],
      obligation: { approvals: 2, groups: [['finance-approvers']], userVerification: 'required' },
      approvals: [],
    });

    const first = await decide(w, requestId, 'alice');
    expect(first).toMatchObject({ state: 'pending', approvalsSoFar: [{ approverId: 'alice', verdict: 'approve' }] });
    expect(first.token).toBeUndefined();
    expect((await w.service.getPending(requestId)).approvals).toMatchObject([
      { approverId: 'alice', displayName: 'Alice Example', verdict: 'approve' },
    ]);

    const second = await decide(w, requestId, 'bob');
    expect(second.state).toBe('approved');
    expect(second.reasons.at(-1)).toBe('approved by Alice Example and Bob Example');
    expect(second.token).toBeTypeOf('string');
    expect(tokenRows(w, requestId)).toBe(1);
    expect(requestState(w, requestId)).toBe('approved');
    expect(auditKinds(w, 'approval.given')).toBe(2);
    const approvedAudit = w.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'decision.approved'").all() as Array<{
      record: string;
    }>;
    expect(approvedAudit).toHaveLength(1);
    const jti = (w.app.db.prepare('SELECT jti FROM tokens WHERE request_id = ?').get(requestId) as { jti: string }).jti;
    expect(JSON.parse(approvedAudit[0]!.record)).toMatchObject({
      requestId,
      approvers: ['alice', 'bob'],
      token: { jti, audience: 'payments-service' },
    });

    // The tool server's view: the token verifies against the JWKS and carries both assertions.
    const keys = { keys: w.app.signingKeys.published('test', Date.now()) };
    const verified = await verifyApprovalToken(second.token!, {
      call: { tool: NORTHWIND.tool, params: NORTHWIND.params },
      audience: 'payments-service',
      keys,
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(verified.decision).toMatchObject({ id: requestId, mode: 'approved', policy_hash: w.app.policy.hash });
    expect(verified.approvals).toHaveLength(2);
    const published = w.directory.published();
    for (const raw of verified.approvals!) {
      const assertion = approvalAssertionSchema.parse(raw);
      expect(assertion.record).toMatchObject({
        requestId,
        callSha256: verified.call_sha256,
        verdict: 'approve',
        policyHash: w.app.policy.hash,
      });
      const clientData = JSON.parse(Buffer.from(assertion.clientDataJSON, 'base64url').toString('utf8')) as {
        challenge: string;
        origin: string;
      };
      expect(clientData.challenge).toBe(await approvalChallenge(assertion.record));
      expect(clientData.origin).toBe(ORIGIN);
      const jwk = published.approvers
        .find((a) => a.id === assertion.approverId)!
        .credentials.find((c) => c.id === assertion.credentialId)!.publicJwk;
      const signed = Buffer.concat([
        Buffer.from(assertion.authenticatorData, 'base64url'),
        createHash('sha256').update(Buffer.from(assertion.clientDataJSON, 'base64url')).digest(),
      ]);
      expect(
        nodeVerify('sha256', signed, createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(assertion.signature, 'base64url')),
      ).toBe(true);
    }
    expect(verified.approvals!.map((a) => (a as { approverId: string }).approverId)).toEqual(['alice', 'bob']);

    // The agent is notified and can fetch the decision with its token.
    expect(w.decided).toMatchObject([
      { agentId: 'finance-bot', result: { requestId, state: 'approved', decision: 'allow', token: second.token } },
    ]);
    await expect(w.client.getRequest(requestId)).resolves.toMatchObject({ state: 'approved', token: second.token });
    expect(await w.service.listPending()).toHaveLength(0);
    expect(await w.service.history(10)).toMatchObject([{ requestId, state: 'approved' }]);
    expect((await w.service.approvalsOf(requestId)).map((a) => a.approverId)).toEqual(['alice', 'bob']);
    expect(w.app.audit.verify().ok).toBe(true);
  });

  it('counts one person with two keys once', async () => {
    const requestId = await w.pendingRequest();
    const [k1, k2] = await w.addApprover('frank', 'Frank Example', ['finance-approvers'], 2);
    const a = await w.service.startCeremony({ requestId, approverId: 'frank', verdict: 'approve' });
    const b = await w.service.startCeremony({ requestId, approverId: 'frank', verdict: 'approve' });
    expect((a.options.allowCredentials ?? []).map((c) => c.id).sort()).toEqual([k1!, k2!].sort());
    await expect(
      w.service.submitCeremony({ requestId, approverId: 'frank', response: sign(w, a, { credentialId: k1! }) }),
    ).resolves.toMatchObject({ state: 'pending' });
    await expectCode(
      w.service.submitCeremony({ requestId, approverId: 'frank', response: sign(w, b, { credentialId: k2! }) }),
      'approver_already_decided',
    );
    await expectCode(w.service.startCeremony({ requestId, approverId: 'frank', verdict: 'approve' }), 'approver_already_decided');
    expect(approvalRows(w, requestId)).toBe(1);
    expect(requestState(w, requestId)).toBe('pending');
    expect(tokenRows(w, requestId)).toBe(0);
  });

  it("reports the agent's quorum progress by the quorum rule: a person with two keys once, an approver since moved out of the group not at all", async () => {
    const requestId = await w.pendingRequest();
    await w.addApprover('frank', 'Frank Example', ['finance-approvers'], 2);
    await decide(w, requestId, 'bob');
    w.directory.setGroups('bob', ['treasury']);
    await decide(w, requestId, 'frank');
    expect(approvalRows(w, requestId)).toBe(2);
    expect(requestState(w, requestId)).toBe('pending');
    const fetched = await w.client.getRequest(requestId);
    expect(fetched.approval).toMatchObject({ approvals: 2, required: 2, received: 1 });
    expect(await w.service.quorumProgress(requestId)).toEqual({ required: 2, received: 1 });
  });

  it('refuses the agent owner approving their own agent', async () => {
    const requestId = await w.pendingRequest();
    await expectCode(w.service.startCeremony({ requestId, approverId: 'dana@example.com', verdict: 'approve' }), 'approver_conflicted');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'dana@example.com', verdict: 'deny' }), 'approver_conflicted');
    expect(count(w, "SELECT COUNT(*) AS n FROM webauthn_challenges WHERE purpose = 'approval'")).toBe(0);
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses an approver outside finance-approvers', async () => {
    const requestId = await w.pendingRequest();
    await expectCode(w.service.startCeremony({ requestId, approverId: 'erin', verdict: 'approve' }), 'approver_not_eligible');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'erin', verdict: 'deny' }), 'approver_not_eligible');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'nobody', verdict: 'approve' }), 'approver_unknown');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses an assertion for request A presented for request B', async () => {
    const a = await w.pendingRequest();
    const b = await w.pendingRequest(transferCall('52000.00', 'Northwind Traders'));
    const started = await w.service.startCeremony({ requestId: a, approverId: 'alice', verdict: 'approve' });
    await expectCode(w.service.submitCeremony({ requestId: b, approverId: 'alice', response: sign(w, started) }), 'challenge_invalid');
    expect(approvalRows(w, a) + approvalRows(w, b)).toBe(0);
  });

  it('refuses an approve assertion submitted as a deny', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    await expectCode(
      w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started), verdict: 'deny' }),
      'challenge_invalid',
    );
    expect(approvalRows(w, requestId)).toBe(0);
    expect(requestState(w, requestId)).toBe('pending');
  });

  it('refuses a reused challenge', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    const response = sign(w, started);
    await w.service.submitCeremony({ requestId, approverId: 'alice', response });
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response }), 'challenge_invalid');
    expect(approvalRows(w, requestId)).toBe(1);
    expect(tokenRows(w, requestId)).toBe(0);
  });

  it("refuses another approver's security key", async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'bob', verdict: 'approve' });
    const aliceKey = w.keys.get('alice')![0]!;
    const response = sign(w, started, { allowCredentials: [aliceKey] });
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'bob', response }), 'credential_unknown');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('marks a key whose counter went backwards suspect and refuses it from then on', async () => {
    const [k1, k2] = await w.addApprover('frank', 'Frank Example', ['finance-approvers'], 2);
    const first = await w.pendingRequest();
    const second = await w.pendingRequest(transferCall('52000.00', 'Northwind Traders'));
    const a = await w.service.startCeremony({ requestId: first, approverId: 'frank', verdict: 'approve' });
    await w.service.submitCeremony({ requestId: first, approverId: 'frank', response: sign(w, a, { credentialId: k1! }) });
    expect(w.directory.credential(k1!).signCount).toBe(1);

    w.authenticatorFor(k1!).setCounter(k1!, 0); // the next assertion carries 1 again: a cloned key?
    const b = await w.service.startCeremony({ requestId: second, approverId: 'frank', verdict: 'approve' });
    await expectCode(
      w.service.submitCeremony({ requestId: second, approverId: 'frank', response: sign(w, b, { credentialId: k1! }) }),
      'credential_suspect',
    );
    expect(w.directory.credential(k1!).status).toBe('suspect');
    expect(approvalRows(w, second)).toBe(0);
    const suspectAudit = w.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'approver.credential_suspect'").all() as Array<{
      record: string;
    }>;
    expect(suspectAudit.map((r) => JSON.parse(r.record) as Record<string, unknown>)).toMatchObject([
      { credentialId: k1, status: 'suspect', storedCounter: 1, reportedCounter: 1 },
    ]);

    // From now on the key is neither offered nor accepted, and it is not published.
    const c = await w.service.startCeremony({ requestId: second, approverId: 'frank', verdict: 'approve' });
    expect((c.options.allowCredentials ?? []).map((x) => x.id)).toEqual([k2]);
    await expectCode(
      w.service.submitCeremony({ requestId: second, approverId: 'frank', response: sign(w, c, { allowCredentials: [k1!] }) }),
      'credential_suspect',
    );
    expect(
      w.directory
        .published()
        .approvers.find((x) => x.id === 'frank')!
        .credentials.map((x) => x.id),
    ).toEqual([k2]);
    expect(approvalRows(w, second)).toBe(0);
    // The other key still works.
    await expect(
      w.service.submitCeremony({ requestId: second, approverId: 'frank', response: sign(w, c, { credentialId: k2! }) }),
    ).resolves.toMatchObject({ state: 'pending' });
  });

  it('refuses a ceremony started before the upgrade that records offered keys, asking to restart it', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    // A row written by a version before the offered column existed.
    w.app.db.prepare("UPDATE webauthn_challenges SET offered = NULL WHERE purpose = 'approval'").run();
    const refused = await w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started) }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({ code: 'challenge_invalid' });
    expect((refused as Error).message).toContain('must be restarted');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses an approver disabled between start and submit', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    w.directory.disable('alice');
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started) }), 'approver_disabled');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' }), 'approver_disabled');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses an approver removed from the group between challenge and submit', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    w.directory.setGroups('alice', ['treasury']);
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started) }), 'approver_not_eligible');
    expect(approvalRows(w, requestId)).toBe(0);
    expect(requestState(w, requestId)).toBe('pending');
  });

  it('refuses approvals after the request expired', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    const response = sign(w, started);
    w.skew.ms = 16 * 60_000; // the window is 15 minutes
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response }), 'request_not_pending');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'bob', verdict: 'approve' }), 'request_not_pending');
    expect(await w.service.listPending()).toHaveLength(0);
    expect(approvalRows(w, requestId)).toBe(0);
    expect(tokenRows(w, requestId)).toBe(0);
  });

  it('refuses a ceremony whose own timeout passed while the request is still pending', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    const response = sign(w, started);
    w.skew.ms = 61_000;
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response }), 'challenge_invalid');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('ends the request on a denial, with the reason, and notifies the agent', async () => {
    const requestId = await w.pendingRequest();
    await decide(w, requestId, 'alice');
    const outcome = await decide(w, requestId, 'bob', 'deny', 'payee not verified');
    expect(outcome).toMatchObject({ state: 'denied', reasons: ['denied by Bob Example: payee not verified'] });
    expect(outcome.token).toBeUndefined();
    expect(requestState(w, requestId)).toBe('denied');
    expect(tokenRows(w, requestId)).toBe(0);
    expect(auditKinds(w, 'approval.denied')).toBe(1);
    expect(auditKinds(w, 'decision.deny')).toBe(1);
    expect(w.decided).toMatchObject([
      {
        agentId: 'finance-bot',
        result: { requestId, state: 'denied', decision: 'deny', reasons: ['denied by Bob Example: payee not verified'] },
      },
    ]);
    await expect(w.client.getRequest(requestId)).resolves.toMatchObject({
      state: 'denied',
      reasons: ['denied by Bob Example: payee not verified'],
    });
    expect(await w.service.approvalsOf(requestId)).toMatchObject([
      { approverId: 'alice', verdict: 'approve' },
      { approverId: 'bob', verdict: 'deny', reason: 'payee not verified' },
    ]);
  });

  it('refuses an approval after a denial', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    await decide(w, requestId, 'bob', 'deny');
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started) }), 'request_not_pending');
    await expectCode(w.service.startCeremony({ requestId, approverId: 'carol', verdict: 'approve' }), 'request_not_pending');
    expect(requestState(w, requestId)).toBe('denied');
    expect(approvalRows(w, requestId)).toBe(1);
    expect(tokenRows(w, requestId)).toBe(0);
  });

  it('lets exactly one of two racing final approvals complete the request', async () => {
    // Both final approvals are verified and minted before either commits: the transaction's
    // re-check must let exactly one through.
    const inner = approvedMinter(w.app);
    let waiting: Array<() => void> = [];
    const barrier: ApprovedMinter = {
      async mint(input) {
        const minted = await inner.mint(input);
        await new Promise<void>((resolve) => {
          waiting.push(resolve);
          if (waiting.length === 2) {
            for (const release of waiting) release();
            waiting = [];
          }
        });
        return minted;
      },
    };
    w.service = w.makeService({ policy: policyHook(w.app), minter: barrier });
    const requestId = await w.pendingRequest();
    await decide(w, requestId, 'alice');
    const bob = await w.service.startCeremony({ requestId, approverId: 'bob', verdict: 'approve' });
    const carol = await w.service.startCeremony({ requestId, approverId: 'carol', verdict: 'approve' });
    const results = await Promise.allSettled([
      w.service.submitCeremony({ requestId, approverId: 'bob', response: sign(w, bob) }),
      w.service.submitCeremony({ requestId, approverId: 'carol', response: sign(w, carol) }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(won[0]!.value).toMatchObject({ state: 'approved' });
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: 'request_not_pending' });
    expect(tokenRows(w, requestId)).toBe(1);
    expect(auditKinds(w, 'decision.approved')).toBe(1);
    expect(approvalRows(w, requestId)).toBe(2);
    expect(w.decided).toHaveLength(1);
  });

  it('completes the quorum when the first two approvals race', async () => {
    const requestId = await w.pendingRequest();
    const alice = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    const bob = await w.service.startCeremony({ requestId, approverId: 'bob', verdict: 'approve' });
    const outcomes = await Promise.all([
      w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, alice) }),
      w.service.submitCeremony({ requestId, approverId: 'bob', response: sign(w, bob) }),
    ]);
    expect(outcomes.map((o) => o.state).sort()).toEqual(['approved', 'pending']);
    expect(requestState(w, requestId)).toBe('approved');
    expect(tokenRows(w, requestId)).toBe(1);
    expect(auditKinds(w, 'decision.approved')).toBe(1);
  });

  it('re-plans when a counted approver is disabled while the final approval is being minted', async () => {
    let disableAlice = false;
    const inner = approvedMinter(w.app);
    const racing: ApprovedMinter = {
      async mint(input) {
        const minted = await inner.mint(input);
        if (disableAlice) {
          disableAlice = false;
          w.directory.disable('alice');
        }
        return minted;
      },
    };
    w.service = w.makeService({ policy: policyHook(w.app), minter: racing });
    const requestId = await w.pendingRequest();
    await decide(w, requestId, 'alice');
    disableAlice = true;
    const outcome = await decide(w, requestId, 'bob');
    // Alice no longer counts: one approval short, nothing minted is stored.
    expect(outcome.state).toBe('pending');
    expect(outcome.token).toBeUndefined();
    expect(requestState(w, requestId)).toBe('pending');
    expect(tokenRows(w, requestId)).toBe(0);
    expect(auditKinds(w, 'decision.approved')).toBe(0);
    const carol = await decide(w, requestId, 'carol');
    expect(carol.state).toBe('approved');
    const verified = await verifyApprovalToken(carol.token!, {
      call: { tool: NORTHWIND.tool, params: NORTHWIND.params },
      audience: 'payments-service',
      keys: { keys: w.app.signingKeys.published('test', Date.now()) },
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(verified.approvals!.map((a) => (a as { approverId: string }).approverId)).toEqual(['bob', 'carol']);
  });

  it('refuses an assertion from the wrong origin (port), and the ceremony can still complete', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    await expectCode(
      w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started, { origin: 'http://localhost:7346' }) }),
      'assertion_invalid',
    );
    expect(approvalRows(w, requestId)).toBe(0);
    await expect(w.service.submitCeremony({ requestId, approverId: 'alice', response: sign(w, started) })).resolves.toMatchObject({
      state: 'pending',
    });
  });

  it('refuses an assertion without user verification when the policy requires it', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    expect(started.options.userVerification).toBe('required');
    await expectCode(
      w.service.submitCeremony({
        requestId,
        approverId: 'alice',
        response: sign(w, started, { testHooks: { withoutUserVerification: true } }),
      }),
      'assertion_invalid',
    );
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses a tampered signature', async () => {
    const requestId = await w.pendingRequest();
    const started = await w.service.startCeremony({ requestId, approverId: 'alice', verdict: 'approve' });
    const response = sign(w, started);
    const sig = Buffer.from(response.response.signature, 'base64url');
    sig.writeUInt8(sig.readUInt8(sig.length - 1) ^ 0x01, sig.length - 1);
    const forged = { ...response, response: { ...response.response, signature: sig.toString('base64url') } };
    await expectCode(w.service.submitCeremony({ requestId, approverId: 'alice', response: forged }), 'assertion_invalid');
    expect(w.directory.credential(w.keys.get('alice')![0]!).status).toBe('active');
    expect(approvalRows(w, requestId)).toBe(0);
  });

  it('refuses a tampered final signature as assertion_invalid though the policy re-evaluated beside it denies or fails: no token signed, nothing recorded, still pending', async () => {
    // The re-evaluation runs beside the WebAuthn verification; its answer is used only once the
    // key's signature verified, and no token is minted before that.
    const minted: string[] = [];
    const minter = approvedMinter(w.app);
    const countingMinter: ApprovedMinter = { mint: (input) => (minted.push(input.requestId), minter.mint(input)) };
    const answers: ApprovalPolicyHook[] = [
      { reevaluate: () => ({ outcome: 'deny', policyHash: 'sha256:new', reasons: ['the payee is now blocked'], determiningPolicies: [] }) },
      {
        reevaluate: () => {
          throw new Error('the policy engine failed');
        },
      },
    ];
    for (const policy of answers) {
      w.service = w.makeService({ policy, minter: countingMinter });
      const requestId = await w.pendingRequest();
      await decide(w, requestId, 'alice');
      const started = await w.service.startCeremony({ requestId, approverId: 'bob', verdict: 'approve' });
      const response = sign(w, started);
      const sig = Buffer.from(response.response.signature, 'base64url');
      sig.writeUInt8(sig.readUInt8(sig.length - 1) ^ 0x01, sig.length - 1);
      const forged = { ...response, response: { ...response.response, signature: sig.toString('base64url') } };
      await expectCode(w.service.submitCeremony({ requestId, approverId: 'bob', response: forged }), 'assertion_invalid');
      expect(requestState(w, requestId)).toBe('pending');
      expect(approvalRows(w, requestId)).toBe(1);
      expect(tokenRows(w, requestId)).toBe(0);
    }
    expect(minted).toEqual([]);
    expect(w.decided).toEqual([]);
  });

  it('denies at completion when the current policy now denies the call', async () => {
    const denyNow: ApprovalPolicyHook = {
      reevaluate: () => ({
        outcome: 'deny',
        policyHash: 'sha256:new',
        reasons: ['the payee is now blocked'],
        determiningPolicies: ['guardrails:blocked-payee'],
      }),
    };
    w.service = w.makeService({ policy: denyNow });
    const requestId = await w.pendingRequest();
    await decide(w, requestId, 'alice');
    const outcome = await decide(w, requestId, 'bob');
    expect(outcome).toMatchObject({ state: 'denied', reasons: ['the payee is now blocked'] });
    expect(outcome.token).toBeUndefined();
    expect(tokenRows(w, requestId)).toBe(0);
    expect(requestState(w, requestId)).toBe('denied');
    expect(w.decided).toMatchObject([
      { result: { state: 'denied', policyHash: 'sha256:new', determiningPolicies: ['guardrails:blocked-payee'] } },
    ]);
  });

  it('applies the stricter obligation when the policy changed while pending', async () => {
    const stricter: ApprovalPolicyHook = {
      reevaluate: ({ policyHash }) => ({
        outcome: 'approval_required',
        policyHash,
        obligation: { approvals: 3, groups: [['finance-approvers']], ttlSeconds: 600, userVerification: 'required' },
      }),
    };
    w.service = w.makeService({ policy: stricter });
    const requestId = await w.pendingRequest();
    await decide(w, requestId, 'alice');
    await expect(decide(w, requestId, 'bob')).resolves.toMatchObject({ state: 'pending' });
    expect((await w.service.getPending(requestId)).obligation).toMatchObject({ approvals: 3 });
    expect(tokenRows(w, requestId)).toBe(0);
    const third = await decide(w, requestId, 'carol');
    expect(third.state).toBe('approved');
    const keys = { keys: w.app.signingKeys.published('test', Date.now()) };
    const verified = await verifyApprovalToken(third.token!, {
      call: { tool: NORTHWIND.tool, params: NORTHWIND.params },
      audience: 'payments-service',
      keys,
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(verified.approvals).toHaveLength(3);
  });
});
