/**
 * The `--demo` tour over an hour of simulated time: the real core (SQLite, Cedar, signer,
 * gateway) and the real SDK over a real WebSocket, with the app's and the agents' clocks injected
 * so an hour of calls runs in seconds. Nothing is mocked.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { connectDemoAgents, demoHistory, demoSteps, type DemoAgents, type DemoOutcome, type DemoStep } from '../../main/cli/demo.js';
import { startHarness, type Harness } from '../helpers/harness.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const SEED = 20_260_112;

let h: Harness | undefined;
const extra: RunningCountersign[] = [];
const agentSets: DemoAgents[] = [];

afterEach(async () => {
  for (const a of agentSets.splice(0)) a.close();
  for (const app of extra.splice(0)) await app.close();
  await h?.close();
  h = undefined;
});

/** Play the tour's steps that fall before `untilMs`, moving the simulated clock to each. */
async function playTour(
  agents: DemoAgents,
  steps: Iterable<DemoStep>,
  start: number,
  untilMs: number,
  setNow: (t: number) => void,
): Promise<DemoOutcome[]> {
  const outcomes: DemoOutcome[] = [];
  for (const step of steps) {
    if (step.atMs >= untilMs) break;
    setNow(start + step.atMs);
    outcomes.push(await agents.play(step));
  }
  return outcomes;
}

const decisionOf = (o: DemoOutcome) => o.result?.decision ?? 'error';
const hasFactor = (o: DemoOutcome, name: string) => (o.risk?.factors ?? []).some((f) => f.name === name && f.points > 0);

describe('the demo tour', () => {
  it('stays a varied tour for an hour: allow, pending and deny throughout, one staged loop, no reason twice', async () => {
    let now = Date.now();
    const clock = () => now;
    h = await startHarness({ start: { clock } });
    const agents = await connectDemoAgents(h.app, { print: () => undefined, clock });
    agentSets.push(agents);
    const start = now;
    const outcomes = await playTour(agents, demoSteps(SEED), start, HOUR, (t) => (now = t));

    expect(outcomes.filter((o) => o.error !== undefined).map((o) => o.line)).toEqual([]);
    const times = outcomes.map((o) => o.step.atMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Paced like a working agent: well under the scorer's hourly floor of 60 calls per agent.
    for (const agentId of ['finance-bot', 'deploy-bot']) expect(outcomes.filter((o) => o.step.agentId === agentId).length).toBeLessThan(60);

    // Every kind of decision in the first half minute.
    const opening = outcomes.filter((o) => o.step.atMs < 30_000).map(decisionOf);
    expect(new Set(opening)).toEqual(new Set(['allow', 'pending', 'deny']));

    // Still a tour later on: each ten minutes allow and pending, deny in every twenty minutes,
    // and never mostly deny.
    for (let from = 0; from < HOUR; from += 10 * MINUTE) {
      const window = outcomes.filter((o) => o.step.atMs >= from && o.step.atMs < from + 10 * MINUTE).map(decisionOf);
      expect(window, `minutes ${from / MINUTE}-${from / MINUTE + 10}`).toContain('allow');
      expect(window, `minutes ${from / MINUTE}-${from / MINUTE + 10}`).toContain('pending');
      expect(window.filter((d) => d === 'deny').length, `minutes ${from / MINUTE}-${from / MINUTE + 10}`).toBeLessThan(window.length / 2);
    }
    for (let from = 0; from < HOUR; from += 20 * MINUTE) {
      expect(outcomes.filter((o) => o.step.atMs >= from && o.step.atMs < from + 20 * MINUTE).map(decisionOf)).toContain('deny');
    }

    // The loop detector fires on the staged retry loop, once, and on nothing else.
    const loopSteps = outcomes.filter((o) => o.step.loop === true);
    expect(loopSteps.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...loopSteps.map((o) => o.step.atMs)) - Math.min(...loopSteps.map((o) => o.step.atMs))).toBeLessThan(MINUTE);
    const flagged = outcomes.filter((o) => hasFactor(o, 'repeated_call'));
    expect(flagged.length).toBeGreaterThan(0);
    expect(flagged.every((o) => o.step.loop === true)).toBe(true);
    expect(flagged.some((o) => o.result?.decision === 'pending')).toBe(true);
    // Its own pace never looks like a burst.
    expect(outcomes.filter((o) => hasFactor(o, 'call_rate')).map((o) => o.line)).toEqual([]);

    // No decision lists a reason twice (two guardrail files share "the risk score is 90 or higher").
    for (const o of outcomes) expect(o.result!.reasons.length, o.line).toBe(new Set(o.result!.reasons).size);
  }, 180_000);

  it('a restart within ten minutes starts a fresh tour instead of denying from the first call', async () => {
    let now = Date.now();
    const clock = () => now;
    h = await startHarness({ start: { clock } });
    const first = await connectDemoAgents(h.app, { print: () => undefined, clock });
    const start = now;
    await playTour(first, demoSteps(SEED), start, 12 * MINUTE, (t) => (now = t));
    first.close();
    const port = h.app.port;
    await h.app.close();

    // Two minutes later, the same data directory, a new run: a new seed and the payments of the
    // hour before, as runDemo picks them.
    now = start + 14 * MINUTE;
    const app = await startCountersign({ dataDir: h.dataDir, overrides: { port }, log: () => undefined, clock });
    extra.push(app);
    h.app = app;
    const second = await connectDemoAgents(app, { print: () => undefined, clock });
    agentSets.push(second);
    const restart = now;
    const outcomes = await playTour(second, demoSteps(SEED + 1, demoHistory(app, now)), restart, 3 * MINUTE, (t) => (now = t));

    expect(decisionOf(outcomes[0]!)).toBe('allow');
    expect(new Set(outcomes.filter((o) => o.step.atMs < 30_000).map(decisionOf))).toEqual(new Set(['allow', 'pending', 'deny']));
    expect(outcomes.filter((o) => hasFactor(o, 'repeated_call') || hasFactor(o, 'call_rate')).map((o) => o.line)).toEqual([]);
  }, 120_000);
});
