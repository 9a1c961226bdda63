/**
 * `--demo`: enroll two demo agents (a finance agent and a deploy agent) on first run and have
 * them send realistic calls through the real SDK over a real WebSocket, so a newcomer sees
 * allow, pending and deny decisions within the first half minute and a meaningful tour for an
 * hour. A demo "tool server" verifies each token with the shipped verifier, as a real one would.
 *
 * The calls come from a schedule (`demoSteps`): varied payees, amounts, services and changes,
 * paced like working agents (after a short opening, a payment every 4 minutes spread over the
 * known suppliers, a deploy every 90 s), so the risk scorer never mistakes the demo's own traffic
 * for a loop, a burst or a transfer split into pieces. It shows the loop detector once, on
 * purpose: at minute 9 the finance agent retries one payment five times. Amounts
 * and change ids depend on a per-run seed, so a restart does not replay the calls of the run
 * before (the scorer keeps its recent window across restarts, on purpose: see docs/risk.md).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { RunningCountersign } from '../core/app.js';
import { AgentClient, type SubmitCall, type WebSocketLike } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore } from '../../shared/verify-approval-token.js';
import { verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { isCountersignError } from '../../shared/errors.js';
import type { AgentScope } from '../core/identity/agent-registry.js';
import { readAgentKeyFile, writeAgentKeyFile } from './agent-key-file.js';
import { jwksFor } from '../core/tokens/jwks.js';
import type { RiskAssessment } from '../../shared/risk.js';
import { RequestRepository } from '../core/store/request-repository.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { prng } from '../../shared/prng.js';
import { requiredApprovers } from '../../shared/quorum.js';

interface DemoAgent {
  id: string;
  name: string;
  /** The owner is a person of the approver directory: added (id, name, email alias) if missing. */
  owner: { id: string; name: string; alias: string };
  scope: AgentScope;
}

export const DEMO_AGENTS: DemoAgent[] = [
  {
    id: 'finance-bot',
    name: 'Accounts payable agent',
    owner: { id: 'dana', name: 'Dana (finance)', alias: 'dana@example.com' },
    scope: {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US', 'GB'],
    },
  },
  {
    id: 'deploy-bot',
    name: 'Release agent',
    owner: { id: 'sam', name: 'Sam (SRE)', alias: 'sam@example.com' },
    scope: {
      owner: 'sam@example.com',
      group: 'deploy-agents',
      allowedTools: ['deploy.staging', 'deploy.production'],
      dataClasses: ['source-code'],
      jurisdictions: ['US'],
    },
  },
];

/** One call of the tour: when (ms after the demo started), which agent, what a person reads. */
export interface DemoStep {
  atMs: number;
  agentId: string;
  label: string;
  call: SubmitCall;
  /** Part of the one retry loop the demo stages on purpose. */
  loop?: boolean;
}

/** Between the deploy agent's calls after the opening (40 an hour). */
export const DEMO_PACE_MS = 90_000;
/** Between the finance agent's payments after the opening (15 an hour, as an accounts payable run). */
export const DEMO_PAYMENT_PACE_MS = 4 * 60_000;
/** When the staged retry loop starts, and how many times the payment is sent. */
export const DEMO_LOOP_AT_MS = 9 * 60_000;
export const DEMO_LOOP_CALLS = 5;

/** The known-payee list of the demo policy pack (examples/demo/entities.json). */
const KNOWN_PAYEES = [
  'Acme Ltd',
  'Globex Corporation',
  'Hooli Cloud',
  'Initech LLC',
  'Stark Industrial',
  'Umbrella Supplies',
  'Vandelay Industries',
  'Wayne Logistics',
];
const NEW_PAYEES = ['Northwind Traders', 'Contoso Pharmaceuticals', 'Tailspin Toys', 'Fabrikam Inc', 'Wide World Importers', 'Litware Inc'];
const SANCTIONED = [
  { payee: 'Pyongyang Trading', jurisdiction: 'KP' },
  { payee: 'Havana Imports', jurisdiction: 'CU' },
  { payee: 'Tehran Machinery', jurisdiction: 'IR' },
];
const SERVICES = ['checkout', 'search', 'billing', 'notifications', 'inventory'];

const HOUR_MS = 60 * 60_000;
const money = (n: number) => n.toFixed(2);
const display = (amount: string) => Number(amount).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function transfer(
  amount: string,
  payee: string,
  memo: string,
  options: { jurisdiction?: string; provenance?: string[]; currency?: string } = {},
): SubmitCall {
  return {
    tool: 'payments.transfer',
    params: { amount, currency: options.currency ?? 'USD', payee, memo },
    dataClass: 'financial',
    jurisdiction: options.jurisdiction ?? 'US',
    provenance: options.provenance ?? ['user'],
  };
}

/** A payment the finance agent made before this run (from the requests table), for pacing payees. */
export interface PastPayment {
  payee: string;
  /** Milliseconds before the demo started (negative or zero). */
  atMs: number;
}

/**
 * The demo's calls in time order, without end: an opening that shows every kind of decision in
 * the first half minute, the staged retry loop once, then routine traffic dealt from decks.
 * `history` is what the finance agent paid in the hour before (a restart), so a payee paid then
 * is not paid a third time within the hour now.
 */
export function* demoSteps(seed: number, history: readonly PastPayment[] = []): Generator<DemoStep> {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (low: number, high: number) => Math.round((low + random() * (high - low)) * 100) / 100;
  const hex = () =>
    Math.floor(random() * 0xffffff)
      .toString(16)
      .padStart(6, '0');
  let invoice = 10_000 + Math.floor(random() * 80_000);
  const memo = () => `invoice INV-${invoice++}`;
  let change = 1_000 + Math.floor(random() * 8_000);
  let service = Math.floor(random() * SERVICES.length);
  const nextService = () => SERVICES[service++ % SERVICES.length]!;
  let now = 0;

  // Suppliers are paid in turn, each at most twice an hour, as an accounts payable run does:
  // three payments to one payee within the hour is what the split detector looks for.
  const paid = new Map<string, number[]>();
  for (const p of history) paid.set(p.payee, [...(paid.get(p.payee) ?? []), p.atMs]);
  const usesInHour = (payee: string) => (paid.get(payee) ?? []).filter((t) => t > now - HOUR_MS - 5 * 60_000).length;
  const lastUse = (payee: string) => Math.max(-Infinity, ...(paid.get(payee) ?? []));
  const leastPaid = (payees: readonly string[]): { payee: string; uses: number } => {
    const order = payees
      .map((payee) => ({ payee, uses: usesInHour(payee), last: lastUse(payee), tie: random() }))
      .sort((a, b) => a.uses - b.uses || a.last - b.last || a.tie - b.tie);
    return order[0]!;
  };
  const pay = (payee: string, times = 1) => {
    for (let i = 0; i < times; i++) paid.set(payee, [...(paid.get(payee) ?? []), now]);
    return payee;
  };
  /** A known payee with room this hour, or undefined when every one was paid twice. */
  const knownPayee = (): string | undefined => {
    const { payee, uses } = leastPaid(KNOWN_PAYEES);
    return uses >= 2 ? undefined : pay(payee);
  };
  const newPayee = () => pay(leastPaid(NEW_PAYEES).payee);

  const staging = (): Omit<DemoStep, 'atMs'> => {
    const svc = nextService();
    const commit = hex();
    return {
      agentId: 'deploy-bot',
      label: `deploy ${svc}@${commit} to staging`,
      call: {
        tool: 'deploy.staging',
        params: { service: svc, diff: `bump ${svc} to ${commit}` },
        dataClass: 'source-code',
        jurisdiction: 'US',
        provenance: ['ci'],
      },
    };
  };
  const production = (ticket: boolean): Omit<DemoStep, 'atMs'> => {
    const svc = nextService();
    const commit = hex();
    const env = pick(['production-eu', 'production-us']);
    const replicas = 2 + Math.floor(random() * 6);
    const changeId = ticket ? `CHG-${change++}` : '';
    return {
      agentId: 'deploy-bot',
      label: ticket ? `deploy ${svc}@${commit} to ${env} (${changeId})` : `deploy ${svc}@${commit} to ${env} without a change ticket`,
      call: {
        tool: 'deploy.production',
        params: {
          service: svc,
          environment: env,
          changeId,
          diff: `- replicas: ${replicas}\n+ replicas: ${replicas + 2}\n- image: ${svc}@prev\n+ image: ${svc}@${commit}`,
        },
        dataClass: 'source-code',
        jurisdiction: 'US',
        provenance: ['ci'],
      },
    };
  };
  const finance = (label: string, call: SubmitCall): Omit<DemoStep, 'atMs'> => ({ agentId: 'finance-bot', label, call });
  /** A modest invoice from a supplier paid for the first time: not automatic, one approver. */
  const newSupplier = () => {
    const amount = money(between(300, 900));
    const payee = newPayee();
    return finance(`pay ${display(amount)} USD to ${payee} (new supplier)`, transfer(amount, payee, memo()));
  };
  /** A payment to a known payee, or a new supplier's invoice when every known one was paid twice this hour. */
  const toKnown = (make: (payee: string) => Omit<DemoStep, 'atMs'>) => () => {
    const payee = knownPayee();
    return payee === undefined ? newSupplier() : make(payee);
  };

  // The opening: the same small payment twice (automatic when a person asked, held when an
  // external email did), a large one to a new payee, one to a sanctioned jurisdiction; a staging
  // deploy, a production deploy (two-person rule) and one without a change ticket.
  const small = money(between(120, 480));
  const smallPayee = pay(leastPaid(KNOWN_PAYEES).payee, 2);
  const smallMemo = memo();
  const large = money(between(25_000, 60_000));
  const largePayee = newPayee();
  const sanctioned = pick(SANCTIONED);
  const sanctionedAmount = money(between(500, 950));
  const opening: DemoStep[] = [
    { atMs: 0, ...finance(`pay ${display(small)} USD to ${smallPayee} (known payee)`, transfer(small, smallPayee, smallMemo)) },
    { atMs: 4_000, ...staging() },
    {
      atMs: 8_000,
      ...finance(
        `pay ${display(small)} USD to ${smallPayee}, as an external email asked`,
        transfer(small, smallPayee, smallMemo, { provenance: ['email:external'] }),
      ),
    },
    { atMs: 12_000, ...production(true) },
    { atMs: 16_000, ...finance(`pay ${display(large)} USD to ${largePayee} (new payee)`, transfer(large, largePayee, memo())) },
    { atMs: 20_000, ...production(false) },
    {
      atMs: 24_000,
      ...finance(
        `pay ${display(sanctionedAmount)} USD to ${sanctioned.payee} in ${sanctioned.jurisdiction}`,
        transfer(sanctionedAmount, sanctioned.payee, memo(), { jurisdiction: sanctioned.jurisdiction }),
      ),
    },
  ];
  yield* opening;

  // Routine calls are dealt from shuffled decks, so every stretch of the tour has a bit of
  // everything: each 8 payments (32 minutes) and each 6 deploys (9 minutes) hold every kind once
  // or more, in a new order each round.
  const deck = (cards: Array<() => Omit<DemoStep, 'atMs'>>) => {
    let hand: Array<() => Omit<DemoStep, 'atMs'>> = [];
    return () => {
      if (hand.length === 0) {
        hand = [...cards];
        for (let i = hand.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [hand[i], hand[j]] = [hand[j]!, hand[i]!];
        }
      }
      return hand.pop()!();
    };
  };
  const smallKnown = toKnown((payee) => {
    const amount = money(between(40, 950));
    return finance(`pay ${display(amount)} USD to ${payee}`, transfer(amount, payee, memo()));
  });
  const nextPayment = deck([
    smallKnown,
    smallKnown,
    smallKnown,
    toKnown((payee) => {
      const amount = money(between(1_200, 9_500));
      return finance(`pay ${display(amount)} USD to ${payee} (above the automatic limit)`, transfer(amount, payee, memo()));
    }),
    () => {
      const amount = money(between(12_000, 60_000));
      const payee = newPayee();
      return finance(`pay ${display(amount)} USD to ${payee} (new payee)`, transfer(amount, payee, memo()));
    },
    newSupplier,
    toKnown((payee) => {
      const amount = money(between(150, 900));
      return finance(
        `pay ${display(amount)} USD to ${payee}, as an external email asked`,
        transfer(amount, payee, memo(), { provenance: ['email:external'] }),
      );
    }),
    () => {
      // Refused before any money moves, so neither needs a payee's turn.
      if (random() < 0.5) {
        const s = pick(SANCTIONED);
        const amount = money(between(300, 950));
        return finance(
          `pay ${display(amount)} USD to ${s.payee} in ${s.jurisdiction}`,
          transfer(amount, s.payee, memo(), { jurisdiction: s.jurisdiction }),
        );
      }
      const amount = money(between(80, 700));
      const payee = pick(KNOWN_PAYEES);
      return finance(
        `pay ${display(amount)} EUR to ${payee} (only USD is permitted)`,
        transfer(amount, payee, memo(), { currency: 'EUR' }),
      );
    },
  ]);
  const nextDeploy = deck([staging, staging, staging, staging, () => production(true), () => production(false)]);

  // The staged loop: an agent that thinks its payment timed out and sends it again and again.
  // Its payee is then left alone for the hour: the loop is the one thing to notice there.
  const loopAmount = money(between(200, 600));
  const loopPayee = pay(leastPaid(KNOWN_PAYEES).payee, 2);
  const loopCall = transfer(loopAmount, loopPayee, memo());
  let loopDone = false;

  // Routine traffic, two streams merged in time: a deploy every DEMO_PACE_MS from 1:45, a
  // payment every DEMO_PAYMENT_PACE_MS from 1:00 (the loop takes the first slot from minute 7).
  let deployAt = 105_000;
  let paymentAt = 60_000;
  const loopSteps: DemoStep[] = [];
  for (;;) {
    const loopAt = loopSteps[0]?.atMs ?? Infinity;
    if (loopAt <= paymentAt && loopAt <= deployAt) {
      yield loopSteps.shift()!;
    } else if (paymentAt <= deployAt) {
      now = paymentAt;
      if (!loopDone && now >= DEMO_LOOP_AT_MS) {
        loopDone = true;
        pay(loopPayee, DEMO_LOOP_CALLS);
        for (let i = 0; i < DEMO_LOOP_CALLS; i++) {
          loopSteps.push({
            atMs: now + i * 5_000,
            agentId: 'finance-bot',
            loop: true,
            call: loopCall,
            label: `retry loop (staged): pay ${display(loopAmount)} USD to ${loopPayee} again, attempt ${i + 1} of ${DEMO_LOOP_CALLS}`,
          });
        }
      } else {
        yield { atMs: now, ...nextPayment() };
      }
      paymentAt += DEMO_PAYMENT_PACE_MS;
    } else {
      now = deployAt;
      yield { atMs: now, ...nextDeploy() };
      deployAt += DEMO_PACE_MS;
    }
  }
}

/** What the finance agent paid in the hour before `now`, for `demoSteps` after a restart. */
export function demoHistory(app: RunningCountersign, now: number): PastPayment[] {
  const since = now - HOUR_MS;
  // recentOf includes `since` itself; the window is the hour strictly before `now`.
  const rows = new RequestRepository(app.db).recentOf('finance-bot', since).filter((row) => row.createdAt > since);
  const history: PastPayment[] = [];
  for (const row of rows) {
    const payee = row.call.params['payee'];
    if (typeof payee === 'string') history.push({ payee, atMs: row.createdAt - now });
  }
  return history;
}

async function ensureAgent(app: RunningCountersign, dir: string, agent: DemoAgent) {
  const keyFile = join(dir, `${agent.id}.key.json`);
  if (!existsSync(keyFile) || !app.registry.getAgent(agent.id)) {
    if (app.registry.getAgent(agent.id)) app.registry.revoke(agent.id, 'demo key file missing');
    const privateJwk = await generateAgentKey('EdDSA');
    const key = await importAgentKey(privateJwk);
    const payload = await verifyEnrollmentRequest(await createEnrollmentRequest(key, agent.id, agent.name));
    if (!app.registry.getAgent(agent.id)) {
      if (existsSync(keyFile)) throw new Error(`demo key file ${keyFile} exists for an agent that is not enrolled; remove it`);
      writeAgentKeyFile(keyFile, { agentId: agent.id, privateJwk });
      if (app.approvers.resolvePerson(agent.owner.alias) === undefined) {
        app.approvers.addApprover({ id: agent.owner.id, displayName: agent.owner.name, groups: [], aliases: [agent.owner.alias] });
      }
      app.registry.enroll(payload, agent.scope);
    }
  }
  return importAgentKey((await readAgentKeyFile(keyFile)).privateJwk);
}

/** The risk the scorer recorded for a request (agents are not told it; the demo shows it). */
function storedRisk(app: RunningCountersign, requestId: string): RiskAssessment | undefined {
  return new RequestRepository(app.db).get(requestId)?.risk;
}

function riskLine(risk: RiskAssessment | undefined): string {
  if (!risk) return 'risk: not recorded';
  const factors = risk.factors.filter((f) => f.points > 0);
  return `risk ${risk.score}/100${factors.length === 0 ? '' : `: ${factors.map((f) => `${f.name} +${f.points} (${f.explanation})`).join('; ')}`}`;
}

/** What one step of the tour produced: the decision, the stored risk, and the printed line. */
export interface DemoOutcome {
  step: DemoStep;
  result?: DecisionResult;
  risk?: RiskAssessment;
  error?: string;
  line: string;
}

export interface DemoAgents {
  /** Send one step's call and describe its decision. */
  play(step: DemoStep): Promise<DemoOutcome>;
  close(): void;
}

/** Enroll (on first run) and connect the demo agents; `clock` is the time they sign with. */
export async function connectDemoAgents(
  app: RunningCountersign,
  options: { print: (line: string) => void; clock?: () => number },
): Promise<DemoAgents> {
  const { print } = options;
  const clock = options.clock ?? Date.now;
  const dir = join(app.dataDir, 'demo-agents');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const jwks = jwksFor([app.signer]);
  const jtis = new MemoryJtiStore({ now: clock });
  const clients = new Map<string, AgentClient>();
  for (const agent of DEMO_AGENTS) {
    const key = await ensureAgent(app, dir, agent);
    const client = new AgentClient({
      url: app.url,
      agentId: agent.id,
      key,
      clock,
      webSocket: (url, protocols) => new WebSocket(url, protocols) as unknown as WebSocketLike,
      onDecision: (r) => print(`  [${agent.id}] ${r.requestId} is now ${r.state.toUpperCase()}`),
    });
    clients.set(agent.id, client);
    await client.connect();
  }
  return {
    async play(step) {
      const client = clients.get(step.agentId);
      if (!client) throw new Error(`no demo agent ${step.agentId}`);
      try {
        const result = await client.submit(step.call);
        const risk = storedRisk(app, result.requestId);
        let line = `[${step.agentId}] ${step.label}: ${result.decision.toUpperCase()} — ${result.reasons.join('; ')}`;
        if (result.approval)
          line += ` (needs ${result.approval.required ?? requiredApprovers(result.approval)} approver(s) from ${result.approval.groups.map((g) => g.join(' or ')).join(' and ')})`;
        line += `\n    ${riskLine(risk)}`;
        if (result.token) {
          const verified = await verifyApprovalToken(result.token, {
            call: { tool: step.call.tool, params: step.call.params },
            audience: app.policy.tool(step.call.tool)?.audience ?? '',
            keys: jwks,
            jtiStore: jtis,
            domain: app.config.domain,
            issuer: app.issuer.issuer,
            now: clock,
          });
          line += `\n    tool server verified the token: jti ${verified.jti}, expires in ${verified.exp - verified.iat} s`;
        }
        print(line);
        return risk === undefined ? { step, result, line } : { step, result, risk, line };
      } catch (error) {
        const message = isCountersignError(error) ? `${error.code}: ${error.message}` : String(error);
        const line = `[${step.agentId}] ${step.label}: ERROR ${message}`;
        print(line);
        return { step, error: message, line };
      }
    },
    close() {
      for (const c of clients.values()) c.close();
    },
  };
}

/** Start the demo tour on real timers; returns a function that stops it. */
export async function runDemo(app: RunningCountersign, print: (line: string) => void, seed = Date.now()): Promise<() => void> {
  const agents = await connectDemoAgents(app, { print });
  print(
    `demo: ${DEMO_AGENTS.length} agents send calls to ${app.url}: a short opening, a staged retry loop at minute ${DEMO_LOOP_AT_MS / 60_000}, then a deploy every ${DEMO_PACE_MS / 1000} s and a payment every ${DEMO_PAYMENT_PACE_MS / 60_000} minutes; ctrl-c to stop`,
  );
  const steps = demoSteps(seed, demoHistory(app, Date.now()));
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const next = () => {
    if (stopped) return;
    const step = steps.next().value as DemoStep;
    timer = setTimeout(
      () => {
        void agents.play(step).then(next);
      },
      Math.max(0, started + step.atMs - Date.now()),
    );
  };
  next();
  return () => {
    stopped = true;
    clearTimeout(timer);
    agents.close();
  };
}
