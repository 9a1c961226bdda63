/**
 * The desk benches' shared setup: a real core in the test key domain with the demo policy, risk
 * scoring off (thousands of held transfers from one agent would, rightly, score as a loop) and the
 * per-agent pending cap and rate limits raised to fit the queue being measured; finance-bot
 * enrolled and connected over a real WebSocket (the test harness's enroll and client), and the
 * queue filled with distinct held transfers (identical calls would merge into one prompt).
 */
import type { AgentClientOptions, AgentClient } from '../shared/agent-client.js';
import type { StartOptions } from '../main/core/app.js';
import { startHarness, type Harness } from '../test/helpers/harness.js';

export interface DeskBenchCore {
  readonly h: Harness;
  readonly client: AgentClient;
  /** A new distinct held-to-be transfer (each call a fresh amount). */
  readonly transfer: () => Parameters<AgentClient['submit']>[0];
  /** Submit `count` distinct transfers, 100 at a time; each is held for approval. */
  readonly fill: (count: number) => Promise<void>;
}

export async function startDeskBenchCore(options: {
  /** How many may wait at once (the cap is set a little above it). */
  capacity: number;
  rendererDir?: string;
  onDecision?: AgentClientOptions['onDecision'];
  onApprovalTiming?: StartOptions['onApprovalTiming'];
}): Promise<DeskBenchCore> {
  const h = await startHarness({
    config: {
      domain: 'test',
      gateway: { maxPendingPerAgent: options.capacity + 100, ratePerSecond: 100_000, rateBurst: 100_000 },
      risk: { enabled: false },
    },
    start: {
      log: () => undefined,
      ...(options.rendererDir === undefined ? {} : { rendererDir: options.rendererDir }),
      ...(options.onApprovalTiming === undefined ? {} : { onApprovalTiming: options.onApprovalTiming }),
    },
  });
  try {
    const key = await h.enroll('finance-bot', { jurisdictions: ['US'] });
    const client = h.client('finance-bot', key, {
      requestTimeoutMs: 60_000,
      ...(options.onDecision === undefined ? {} : { onDecision: options.onDecision }),
    });
    await client.connect();
    let amount = 20_000;
    const transfer = () => ({
      tool: 'payments.transfer',
      params: { amount: `${amount++}.00`, currency: 'USD', payee: 'Northwind Traders', memo: 'bench' },
      dataClass: 'financial',
      jurisdiction: 'US',
      provenance: ['user'],
    });
    return {
      h,
      client,
      transfer,
      async fill(count) {
        for (let submitted = 0; submitted < count; submitted += 100)
          await Promise.all(Array.from({ length: Math.min(100, count - submitted) }, () => client.submit(transfer())));
      },
    };
  } catch (error) {
    await h.close();
    throw error;
  }
}
