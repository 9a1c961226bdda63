/**
 * The demo's schedule (`demoSteps`) for many seeds over three hours: the properties that keep
 * the risk scorer from mistaking the demo's own traffic for a loop, a burst or a split transfer
 * (test/integration/demo-tour.test.ts plays one seed through the real core).
 */
import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../shared/canonical-json.js';
import { DEMO_LOOP_CALLS, demoSteps, type DemoStep } from '../../main/cli/demo.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function take(seed: number, untilMs: number, history: Parameters<typeof demoSteps>[1] = []): DemoStep[] {
  const steps: DemoStep[] = [];
  for (const step of demoSteps(seed, history)) {
    if (step.atMs >= untilMs) break;
    steps.push(step);
  }
  return steps;
}

const identity = (s: DemoStep) => canonicalize({ tool: s.call.tool, params: s.call.params });
/** Payments that move money if approved: USD, not to a sanctioned jurisdiction. */
const countedPayee = (s: DemoStep): string | undefined => {
  const payee = s.call.params.payee;
  return s.call.tool === 'payments.transfer' &&
    s.call.params.currency === 'USD' &&
    s.call.jurisdiction === 'US' &&
    typeof payee === 'string'
    ? payee
    : undefined;
};

describe('demoSteps', () => {
  it('for any seed: in time order, paced under 60 calls an hour per agent, one staged loop, no other repeated call, no payee three times in an hour', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const steps = take(seed, 3 * HOUR);
      const times = steps.map((s) => s.atMs);
      expect(times).toEqual([...times].sort((a, b) => a - b));

      for (let hour = 0; hour < 3; hour++) {
        for (const agent of ['finance-bot', 'deploy-bot']) {
          expect(steps.filter((s) => s.agentId === agent && s.atMs >= hour * HOUR && s.atMs < (hour + 1) * HOUR).length).toBeLessThan(60);
        }
      }

      const loop = steps.filter((s) => s.loop === true);
      expect(loop).toHaveLength(DEMO_LOOP_CALLS);
      expect(new Set(loop.map(identity)).size).toBe(1);
      // Outside the loop, only the opening sends one payment twice (once as a person asked, once
      // as an email did): one earlier identical call is below the loop detector's two.
      const others = steps.filter((s) => s.loop !== true).map(identity);
      const repeated = others.filter((call, i) => others.indexOf(call) !== i);
      expect(repeated, `seed ${seed}: a call repeats outside the staged loop`).toEqual([identity(steps[0]!)]);
      expect(others).not.toContain(identity(loop[0]!));

      for (const step of steps) {
        const payee = countedPayee(step);
        if (payee === undefined || step.loop) continue;
        const inHour = steps.filter((s) => countedPayee(s) === payee && s.atMs > step.atMs - HOUR && s.atMs <= step.atMs);
        expect(inHour.length, `seed ${seed}: ${payee} at ${step.atMs / MINUTE} min`).toBeLessThanOrEqual(2);
      }
    }
  });

  it('differs from seed to seed, so a restart does not replay the calls before it', () => {
    const a = take(1, 10 * MINUTE).map(identity);
    const b = take(2, 10 * MINUTE).map(identity);
    expect(a.filter((call) => b.includes(call))).toEqual([]);
  });

  it('does not pay a payee paid twice in the hour before a restart', () => {
    const first = take(7, 12 * MINUTE);
    const paidTwice = [...new Set(first.map(countedPayee).filter((p) => p !== undefined))].filter(
      (p) => first.filter((s) => countedPayee(s) === p).length >= 2,
    );
    expect(paidTwice.length).toBeGreaterThan(0);
    const history = first.flatMap((s) => (countedPayee(s) === undefined ? [] : [{ payee: countedPayee(s)!, atMs: s.atMs - 14 * MINUTE }]));
    const after = take(8, 30 * MINUTE, history);
    for (const payee of paidTwice) expect(after.filter((s) => countedPayee(s) === payee && s.loop !== true)).toEqual([]);
  });
});
