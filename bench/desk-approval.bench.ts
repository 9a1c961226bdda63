/**
 * The desk's last tap to the token at the agent (issue #13), with 1,000 other requests pending:
 * the clock starts when the last approver's signed assertion is sent to the desk's bridge route
 * (POST /api/approvals/requests/{id}/submit, with the session secret and that approver's sign-in
 * cookie, exactly as the renderer sends it) and stops when the co-signed token arrives at the
 * agent over its WebSocket (the SDK's onDecision). Real parts: the HTTP edge, the session and
 * caller checks, the ceremony verification (@simplewebauthn), the quorum, SQLite in WAL with
 * synchronous=FULL, the token signed by the custody key, the audit append, the push event to an
 * open desk event stream, and a real WebSocket agent. The assertion itself comes from the
 * project's software authenticator (main/core/testing/virtual-authenticator.ts, the one the tests
 * use) and is made before the clock starts: a browser per tap would time Chromium, not the path.
 */
import type { RunningCountersign } from '../main/core/app.js';
import { VirtualAuthenticator } from '../main/core/testing/virtual-authenticator.js';
import type { DecisionResult } from '../shared/protocol.js';
import { signInOverHttp, tapKey, type HttpSignIn } from '../test/helpers/desk-session.js';
import { StageTimings } from '../main/cli/stage-timings.js';
import { startDeskBenchCore } from './desk-core.js';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const stats = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50Ms: +percentile(sorted, 50).toFixed(3),
    p99Ms: +percentile(sorted, 99).toFixed(3),
    maxMs: +sorted[sorted.length - 1]!.toFixed(3),
  };
};

async function registerKey(app: RunningCountersign, id: string): Promise<VirtualAuthenticator> {
  app.approvers.addApprover({ id, displayName: id, groups: ['finance-approvers'], virtual: true });
  const key = new VirtualAuthenticator();
  const { code } = app.approvers.issueRegistrationCode(id, 'bench');
  const options = await app.approvers.beginRegistration(id, code);
  await app.approvers.finishRegistration(
    id,
    key.createCredential({
      rpId: app.approvers.rpId,
      origin: app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return key;
}

export async function runDeskApprovalBench(options: { pending: number; taps: number }): Promise<Record<string, unknown>> {
  const arrivals = new Map<string, (r: DecisionResult) => void>();
  // The core's own stages of each measured last tap (ApprovalService's onTiming), to see what the
  // tail is made of; the first taps and the first approver's taps are not recorded.
  const stages = new StageTimings();
  let measuring = false;
  const core = await startDeskBenchCore({
    capacity: options.pending + options.taps,
    onDecision: (r) => arrivals.get(r.requestId)?.(r),
    onApprovalTiming: (stage, ms) => {
      if (measuring) stages.record(stage, ms);
    },
  });
  const { app } = core.h;
  const client = core.client;
  const base = `http://127.0.0.1:${app.port}`;
  const events = new AbortController();
  try {
    const keys = { alice: await registerKey(app, 'alice'), bob: await registerKey(app, 'bob') };
    const sessions: Record<'alice' | 'bob', HttpSignIn> = {
      alice: await signInOverHttp(app, 'alice', keys.alice),
      bob: await signInOverHttp(app, 'bob', keys.bob),
    };
    const transfer = () => core.transfer();
    await core.fill(options.pending);

    // An open desk: its event stream receives the `decided` push of every approval.
    let pushed = 0;
    const stream = await fetch(`${base}/api/ui/events`, { headers: sessions.alice.headers, signal: events.signal });
    void (async () => {
      try {
        for await (const chunk of stream.body!) pushed += String(Buffer.from(chunk)).split('event: decided').length - 1;
      } catch {
        // aborted at the end
      }
    })();

    const post = async (who: 'alice' | 'bob', path: string, body: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { ...sessions[who].headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
      return json;
    };
    const tap = async (who: 'alice' | 'bob', requestId: string) => {
      const begun = await post(who, `/api/approvals/requests/${requestId}/ceremony`, { approverId: who, verdict: 'approve' });
      return tapKey(app, keys[who], begun.options as { challenge: string; allowCredentials?: Array<{ id: string }> });
    };

    const toAgent: number[] = [];
    const toAnswer: number[] = [];
    // Process CPU (user + system, every thread: the core, its workers and the bench's own client
    // and agent, all in this process) from the tap to the token at the agent: less sensitive to
    // the machine's load than wall time, so it can tell before from after on a busy machine.
    const cpu: number[] = [];
    const warmUp = 10;
    for (let i = 0; i < options.taps + warmUp; i++) {
      const held = await client.submit(transfer());
      if (held.state !== 'pending') throw new Error(`expected a held transfer, got ${held.state}`);
      await post('alice', `/api/approvals/requests/${held.requestId}/submit`, {
        approverId: 'alice',
        response: await tap('alice', held.requestId),
      });
      const last = await tap('bob', held.requestId);
      const arrived = new Promise<number>((resolve, reject) =>
        arrivals.set(held.requestId, (r) => {
          if (r.state === 'approved' && r.token !== undefined) resolve(performance.now());
          else reject(new Error(`request ended ${r.state} without a token`));
        }),
      );
      measuring = i >= warmUp;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const outcome = await post('bob', `/api/approvals/requests/${held.requestId}/submit`, { approverId: 'bob', response: last });
      const answered = performance.now();
      measuring = false;
      const atAgent = await arrived;
      const cpuUsed = process.cpuUsage(cpu0);
      arrivals.delete(held.requestId);
      if (outcome.state !== 'approved') throw new Error(`the last tap answered ${String(outcome.state)}`);
      if (i < warmUp) continue;
      toAgent.push(atAgent - t0);
      toAnswer.push(answered - t0);
      cpu.push((cpuUsed.user + cpuUsed.system) / 1000);
    }
    const stillPending = await app.approvals.countPending();
    return {
      otherPending: stillPending,
      taps: options.taps,
      lastTapToTokenAtAgent: stats(toAgent),
      lastTapToDeskAnswer: stats(toAnswer),
      processCpuMsPerLastTap: stats(cpu),
      coreStagesOfLastTap: stages.report(),
      decidedEventsPushedToTheDesk: pushed,
      assertion: "software authenticator (the tests' P-256 virtual authenticator), made before the clock starts",
      target: 'p99 under 20 ms with 1,000 pending',
    };
  } finally {
    events.abort();
    await core.h.close();
  }
}
