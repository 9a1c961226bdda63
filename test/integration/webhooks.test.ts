/**
 * Signed webhooks against a real local HTTP receiver (node:http) and a real core (gateway,
 * SQLite outbox, audit observer): a held call is delivered once with a signature that verifies
 * (shared/webhook-signature.ts) and a chat-ready body linking to the desk; a 500 is retried with
 * backoff; a receiver that keeps failing dead-letters the delivery after maxAttempts, the desk's
 * bridge lists it and its retry delivers it; a slow receiver counts as a failed attempt (timeout);
 * a missing secret stops the start; no log line carries the secret or the webhook URL.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { verifyWebhookSignature } from '../../shared/webhook-signature.js';
import { isCountersignError } from '../../shared/errors.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { signInOverHttp } from '../helpers/desk-session.js';
import { fdatasyncFile, type FileSync } from '../../main/core/store/group-commit.js';
import type { StartOptions } from '../../main/core/app.js';

const SECRET = 'whsec-test-6f1c2a9e8d7b';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  path: string;
}

/** A receiver whose answer each test chooses: a status, or a delay before answering. */
class Receiver {
  readonly received: Received[] = [];
  answer: (n: number) => { status: number; delayMs?: number } = () => ({ status: 204 });
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), path: req.url ?? '' });
        const { status, delayMs } = this.answer(this.received.length);
        const send = () => {
          if (!res.destroyed) res.writeHead(status).end();
        };
        if (delayMs === undefined) send();
        else setTimeout(send, delayMs).unref();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
  }

  url(path = '/hooks/T0KEN-in-path'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

async function until<T>(what: string, check: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let receiver: Receiver;
let h: Harness | undefined;
let logs: string[];

async function start(notifications: Record<string, unknown>, startOptions: Partial<StartOptions> = {}): Promise<Harness> {
  const dataDir = tempDir();
  writeFileSync(join(dataDir, 'webhook.secret'), `${SECRET}\n`);
  logs = [];
  h = await startHarness({
    dataDir,
    config: {
      domain: 'test',
      notifications: {
        deskUrl: 'https://desk.example.test',
        webhooks: [{ id: 'chat', url: receiver.url(), secretFile: 'webhook.secret', events: ['approval.pending'] }],
        ...notifications,
      },
    },
    start: { log: (m: string) => logs.push(m), ...startOptions },
  });
  return h;
}

/** A person with a registered software key (in the admin group when `admin`), signed in over HTTP. */
async function signedIn(h: Harness, id: string, admin: boolean) {
  const app = h.app;
  app.approvers.addApprover({ id, displayName: id, groups: admin ? [ADMIN_GROUP_NAME] : ['finance-approvers'], virtual: true });
  const key = new VirtualAuthenticator();
  const { code } = app.approvers.issueRegistrationCode(id, 'test');
  const options = await app.approvers.beginRegistration(id, code);
  await app.approvers.finishRegistration(
    id,
    key.createCredential({
      rpId: 'localhost',
      origin: app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return signInOverHttp(app, id, key);
}

async function holdTransfer(app: Harness): Promise<string> {
  const agent = app.client('finance-bot', await app.enroll('finance-bot'));
  const pending = await agent.submit(transferCall('48000.00'));
  expect(pending).toMatchObject({ decision: 'pending' });
  return pending.requestId;
}

beforeAll(async () => {
  receiver = new Receiver();
  await receiver.start();
});
afterAll(async () => {
  await receiver.stop();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
  receiver.received.length = 0;
  receiver.answer = () => ({ status: 204 });
});

describe('signed webhooks', () => {
  it('delivers a held call once, signed, with a chat-ready text linking to the request (never an approve action)', async () => {
    const app = await start({});
    const requestId = await holdTransfer(app);
    const got = await until('one delivery', () => receiver.received[0]);
    await verifyWebhookSignature({
      secret: SECRET,
      header: got.headers['countersign-signature'] as string,
      body: got.body,
      now: Math.floor(Date.now() / 1000),
    });
    const body = JSON.parse(got.body) as Record<string, unknown>;
    const link = `https://desk.example.test/ui/#request=${requestId}`;
    expect(body).toMatchObject({
      type: 'approval.pending',
      requestId,
      agentId: 'finance-bot',
      tool: 'payments.transfer',
      headline: 'payments.transfer: 48000.00 USD to Acme Ltd',
      url: link,
    });
    expect(body.text).toContain('Approval needed: payments.transfer: 48000.00 USD to Acme Ltd (agent finance-bot).');
    expect(body.text).toContain(link);
    expect(got.body.toLowerCase()).not.toMatch(/"(actions|buttons|approve_url|approveurl)"/);
    expect(got.headers['countersign-delivery']).toBe(body.deliveryId);
    expect(got.headers['countersign-event']).toBe('approval.pending');
    expect(got.path).toBe('/hooks/T0KEN-in-path');
    // A wrong secret or a changed body does not verify.
    await expect(
      verifyWebhookSignature({
        secret: 'nope',
        header: got.headers['countersign-signature'] as string,
        body: got.body,
        now: Math.floor(Date.now() / 1000),
      }),
    ).rejects.toMatchObject({ code: 'webhook_signature_invalid' });
    // The row is delivered and stays so (no second delivery).
    await until('delivered row', () =>
      app.app.db.prepare("SELECT state FROM webhook_outbox WHERE state = 'delivered'").get() === undefined ? undefined : true,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.received).toHaveLength(1);
  }, 60_000);

  it('sends nothing before the commit that queued it is durable (its write-ahead log synced)', async () => {
    // The real fdatasync, then held by the test until released: a disk cannot be paused on demand.
    const held: Array<() => void> = [];
    // Held only from the call on: the start's audit checkpoint commits through the same group commit.
    let holding = false;
    const syncFile: FileSync = async (path) => {
      await fdatasyncFile(path);
      if (holding) await new Promise<void>((resolve) => held.push(resolve));
    };
    const app = await start({}, { syncFile });
    const agent = app.client('finance-bot', await app.enroll('finance-bot'));
    await agent.connect();
    holding = true;
    const answer = agent.submit(transferCall('48000.00'));
    // The decision's group is committed (its outbox row is visible in the process) but not yet synced.
    await until('the committed outbox row', () =>
      app.app.db.prepare("SELECT id FROM webhook_outbox WHERE state = 'pending'").get() === undefined ? undefined : true,
    );
    await until('the held sync', () => (held.length > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 300)); // the delivery loop was kicked when the row was queued
    expect(receiver.received).toHaveLength(0);
    holding = false;
    for (const release of held.splice(0)) release();
    expect(await answer).toMatchObject({ decision: 'pending' });
    const got = await until('one delivery', () => receiver.received[0]);
    expect(JSON.parse(got.body)).toMatchObject({ type: 'approval.pending', agentId: 'finance-bot' });
  }, 60_000);

  it('queues the delivery in the same transaction as the request: a rolled-back decision leaves no row', async () => {
    const app = await start({});
    // The audit observer runs inside the append's transaction: the same append queues a row when
    // it commits, and nothing when its transaction rolls back.
    const count = () => (app.app.db.prepare('SELECT COUNT(*) AS n FROM webhook_outbox').get() as { n: number }).n;
    const pendingEvent = (requestId: string) => ({
      requestId,
      agentId: 'finance-bot',
      kid: 'k',
      tool: 'payments.transfer',
      callSha256: 'x',
      dataClass: 'financial',
      jurisdiction: 'US',
      provenance: ['user'],
      nonce: requestId,
      policyHash: 'p',
      determiningPolicies: [],
      reasons: [],
      risk: { score: 0, factors: [] },
      approval: { expiresAt: Date.now() + 60_000 },
    });
    const before = count();
    expect(() =>
      app.app.db.transaction(() => {
        app.app.audit.append('decision.pending', Date.now(), pendingEvent('rolled-back'));
        throw new Error('fault injected after the append');
      })(),
    ).toThrow('fault injected');
    expect(count()).toBe(before);
    app.app.db.transaction(() => app.app.audit.append('decision.pending', Date.now(), pendingEvent('committed')))();
    expect(count()).toBe(before + 1);
  }, 60_000);

  it('retries after a 500 with backoff, and signs each attempt afresh', async () => {
    receiver.answer = (n) => ({ status: n === 1 ? 500 : 200 });
    const app = await start({ initialBackoffMs: 200, maxAttempts: 3 });
    await holdTransfer(app);
    const second = await until('the retry', () => receiver.received[1]);
    const first = receiver.received[0]!;
    expect(second.body).toBe(first.body);
    expect(second.headers['countersign-delivery']).toBe(first.headers['countersign-delivery']);
    await verifyWebhookSignature({
      secret: SECRET,
      header: second.headers['countersign-signature'] as string,
      body: second.body,
      now: Math.floor(Date.now() / 1000),
    });
    const row = await until('delivered row', () =>
      app.app.db.prepare<[], { attempts: number }>("SELECT attempts FROM webhook_outbox WHERE state = 'delivered'").get(),
    );
    expect(row.attempts).toBe(2);
    expect(logs.some((l) => l.includes('failed on attempt 1 of 3: the receiver answered HTTP 500; retrying in'))).toBe(true);
  }, 60_000);

  it('dead-letters after maxAttempts; the desk lists it and its retry delivers it', async () => {
    receiver.answer = () => ({ status: 503 });
    const app = await start({ initialBackoffMs: 50, maxAttempts: 3 });
    const requestId = await holdTransfer(app);
    const { bridge } = await signedIn(app, 'root', true);
    const dead = await until('a dead letter', () => {
      const row = app.app.db.prepare("SELECT delivery_id FROM webhook_outbox WHERE state = 'dead'").get();
      return row === undefined ? undefined : row;
    });
    expect(dead).toBeDefined();
    expect(receiver.received).toHaveLength(3);
    // Admin rows: the transport secret alone, or a signed-in non-admin, is refused.
    const bearerOnly = createHttpBridge({ baseUrl: `http://127.0.0.1:${app.app.port}`, sessionSecret: app.app.uiSessionSecret });
    const anonymous: unknown = await bearerOnly.listWebhookDeadLetters().catch((e: unknown) => e);
    expect(isCountersignError(anonymous) && anonymous.code).toBe('not_signed_in');
    const approver = await signedIn(app, 'carol', false);
    const notAdmin: unknown = await approver.bridge
      .retryWebhookDeadLetter((dead as { delivery_id: string }).delivery_id)
      .catch((e: unknown) => e);
    expect(isCountersignError(notAdmin) && notAdmin.code).toBe('admin_required');
    const { deadLetters } = await bridge.listWebhookDeadLetters();
    expect(deadLetters).toEqual([
      expect.objectContaining({
        webhookId: 'chat',
        event: 'approval.pending',
        requestId,
        attempts: 3,
        lastError: 'the receiver answered HTTP 503',
      }),
    ]);

    receiver.answer = () => ({ status: 200 });
    expect(await bridge.retryWebhookDeadLetter(deadLetters[0]!.deliveryId)).toEqual({
      deliveryId: deadLetters[0]!.deliveryId,
      state: 'pending',
    });
    await until('redelivery', () => receiver.received[3]);
    await until('delivered', () =>
      app.app.db.prepare("SELECT 1 FROM webhook_outbox WHERE state = 'delivered'").get() === undefined ? undefined : true,
    );
    expect((await bridge.listWebhookDeadLetters()).deadLetters).toEqual([]);
    // A second retry of the same id (no longer dead) and an unknown id are refused with the stable code.
    const again: unknown = await bridge.retryWebhookDeadLetter(deadLetters[0]!.deliveryId).catch((e: unknown) => e);
    expect(isCountersignError(again) ? again.code : again).toBe('webhook_dead_letter_unknown');
  }, 60_000);

  it('counts a receiver slower than timeoutMs as a failed attempt and retries it', async () => {
    receiver.answer = (n) => (n === 1 ? { status: 200, delayMs: 5_000 } : { status: 200 });
    const app = await start({ timeoutMs: 300, initialBackoffMs: 100, maxAttempts: 3 });
    await holdTransfer(app);
    await until('the retry after the timeout', () => receiver.received[1]);
    await until('delivered', () =>
      app.app.db.prepare("SELECT 1 FROM webhook_outbox WHERE state = 'delivered'").get() === undefined ? undefined : true,
    );
    expect(logs.some((l) => l.includes('failed on attempt 1 of 3: no answer within 300 ms'))).toBe(true);
  }, 60_000);

  it('never logs the secret or the webhook URL (which may carry its own token)', async () => {
    receiver.answer = () => ({ status: 500 });
    const app = await start({ initialBackoffMs: 50, maxAttempts: 2 });
    await holdTransfer(app);
    await until('dead letter', () =>
      app.app.db.prepare("SELECT 1 FROM webhook_outbox WHERE state = 'dead'").get() === undefined ? undefined : true,
    );
    expect(logs.some((l) => l.includes('webhook chat'))).toBe(true);
    for (const line of logs) {
      expect(line).not.toContain(SECRET);
      expect(line).not.toContain('T0KEN-in-path');
    }
  }, 60_000);

  it('refuses to start when a webhook secret is missing', async () => {
    const dataDir = tempDir();
    const error: unknown = await startHarness({
      dataDir,
      config: {
        domain: 'test',
        notifications: { webhooks: [{ id: 'chat', url: receiver.url(), secretEnv: 'COUNTERSIGN_TEST_UNSET_WEBHOOK_SECRET' }] },
      },
    }).catch((e: unknown) => e);
    expect(isCountersignError(error) ? error.code : error).toBe('webhook_secret_unavailable');
  }, 60_000);
});
