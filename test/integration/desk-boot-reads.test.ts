/**
 * The desk's boot reads (shared/desk-boot-reads.ts, sent by renderer/src/boot.ts before the
 * renderer's main module runs) against a real core: they are exactly the requests the HTTP bridge
 * makes for the desk's first session, queue page and approvers, so the bridge takes each of them
 * instead of sending its own; each is taken once, only by a bridge with the same secret; and an
 * answer taken from them is checked like any other (a refused secret is not_authenticated, an
 * answer that does not match the method's schema is schema_invalid).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { registerPerson, signInOverHttp, type HttpSignIn } from '../helpers/desk-session.js';
import { createHttpBridge, type FetchFn } from '../../shared/bridge-http-client.js';
import { BOOT_QUEUE_PATHS, BOOT_SESSION_PATH, DESK_QUEUE_PAGE, sendBootReads, type BootFetch } from '../../shared/desk-boot-reads.js';
import { isCountersignError } from '../../shared/errors.js';

let h: Harness;
let base: string;
let person: HttpSignIn;
let heldIds: string[];

/** What a browser's cookie jar adds to every same-origin request: the person's session cookie. */
const withCookie =
  (cookie: string): BootFetch =>
  (input, init) =>
    fetch(input, { ...init, headers: { ...(init.headers as Record<string, string>), cookie } });

beforeAll(async () => {
  h = await startHarness({ config: { domain: 'test' } });
  base = `http://127.0.0.1:${h.app.port}`;
  const key = await registerPerson(h.app, 'alice', ['finance-approvers']);
  person = await signInOverHttp(h.app, 'alice', key);
  const agent = h.client('finance-bot', await h.enroll('finance-bot'));
  const held = await Promise.all(
    ['48000.00', '48001.00', '48002.00'].map((amount) => agent.submit(transferCall(amount, 'Northwind Traders'))),
  );
  heldIds = held.map((r) => r.requestId);
  expect(held.every((r) => r.decision === 'pending')).toBe(true);
});
afterAll(async () => {
  await h.close();
});

/** A fetch that records each path it is asked for, then fetches for real (with the cookie). */
function recordingFetch(cookie: string, asked: string[]): FetchFn {
  return (input, init) => {
    asked.push(new URL(input).pathname + new URL(input).search);
    return withCookie(cookie)(input, init);
  };
}

/** A bridge of the signed-in person that takes the boot reads first; `asked` lists the paths it sent itself. */
function bridgeTaking(reads: ReturnType<typeof sendBootReads>) {
  const asked: string[] = [];
  const bridge = createHttpBridge({
    baseUrl: base,
    sessionSecret: h.app.uiSessionSecret,
    fetch: recordingFetch(person.cookie, asked),
    prefetched: (path) => reads.take(h.app.uiSessionSecret, path),
  });
  return { asked, bridge };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isCountersignError(error) ? error.code : error).toBe(code);
}

describe("the desk's boot reads", () => {
  it("are the bridge's own first reads: it takes each of them and sends none of its own, with the same answers", async () => {
    const reads = sendBootReads({ origin: base, secret: h.app.uiSessionSecret, withQueue: true, fetch: withCookie(person.cookie) });
    expect(reads.left).toBe(1 + BOOT_QUEUE_PATHS.length);
    const { asked, bridge } = bridgeTaking(reads);
    const [session, queue, approvers] = await Promise.all([bridge.getSession(), bridge.listQueue(DESK_QUEUE_PAGE), bridge.listApprovers()]);
    expect(asked).toEqual([]);
    expect(reads.left).toBe(0);
    expect(session.session?.approverId).toBe('alice');
    expect(queue.pending.map((r) => r.requestId).sort()).toEqual([...heldIds].sort());
    // The same answers as a bridge that sends its own requests (checked the same way).
    const [ownSession, ownQueue, ownApprovers] = await Promise.all([
      person.bridge.getSession(),
      person.bridge.listQueue(DESK_QUEUE_PAGE),
      person.bridge.listApprovers(),
    ]);
    expect(session).toEqual(ownSession);
    expect(queue).toEqual(ownQueue);
    expect(approvers).toEqual(ownApprovers);
    // Taken once: the next reads are the bridge's own.
    await bridge.getSession();
    expect(asked).toEqual([BOOT_SESSION_PATH]);
  });

  it('outside the queue, read only the session; the queue page is then the bridge’s own request', async () => {
    const reads = sendBootReads({ origin: base, secret: h.app.uiSessionSecret, withQueue: false, fetch: withCookie(person.cookie) });
    expect(reads.left).toBe(1);
    const { asked, bridge } = bridgeTaking(reads);
    await Promise.all([bridge.getSession(), bridge.listQueue(DESK_QUEUE_PAGE)]);
    expect(asked).toEqual([BOOT_QUEUE_PATHS[0]]);
  });

  it('are taken only with the secret they were sent with, and dropped by forget', () => {
    const reads = sendBootReads({ origin: base, secret: h.app.uiSessionSecret, withQueue: true, fetch: withCookie(person.cookie) });
    expect(reads.take('B'.repeat(43), BOOT_SESSION_PATH)).toBeUndefined();
    expect(reads.left).toBe(3);
    reads.forget();
    expect(reads.take(h.app.uiSessionSecret, BOOT_SESSION_PATH)).toBeUndefined();
  });

  it('send nothing for a secret the bridge would refuse to use', () => {
    const asked: string[] = [];
    const reads = sendBootReads({ origin: base, secret: 'too-short', withQueue: true, fetch: recordingFetch(person.cookie, asked) });
    expect(reads.left).toBe(0);
    expect(asked).toEqual([]);
  });

  it('answered with a refused secret: the bridge that takes them fails with not_authenticated', async () => {
    const wrong = 'A'.repeat(43);
    const reads = sendBootReads({ origin: base, secret: wrong, withQueue: true, fetch: withCookie(person.cookie) });
    const bridge = createHttpBridge({ baseUrl: base, sessionSecret: wrong, prefetched: (path) => reads.take(wrong, path) });
    await expectCode(bridge.getSession(), 'not_authenticated');
    await expectCode(bridge.listQueue(DESK_QUEUE_PAGE), 'not_authenticated');
    expect(reads.left).toBe(1);
  });

  it('an answer that does not match the method’s schema is refused with schema_invalid, never shown', async () => {
    // Injected: the real core never answers a queue row without its call, so a Response stands in.
    const bridge = createHttpBridge({
      baseUrl: base,
      sessionSecret: h.app.uiSessionSecret,
      sessionCookie: person.token,
      prefetched: (path) =>
        path === BOOT_QUEUE_PATHS[0]
          ? Promise.resolve(new Response(JSON.stringify({ pending: [{ requestId: heldIds[0] }], total: 1 }), { status: 200 }))
          : undefined,
    });
    await expectCode(bridge.listQueue(DESK_QUEUE_PAGE), 'schema_invalid');
  });
});
