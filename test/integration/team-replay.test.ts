/**
 * A replayed envelope on a team hub (real PostgreSQL 15) is refused by the early nonce read, before
 * risk, the policy and the token signature: counted with the decision's stage timings
 * (startCountersign onTiming). A replayed held call is told `envelope_replayed` even when the
 * agent is at its pending cap. Both failed while the early read was dropped on PostgreSQL (review5
 * F1): each replay signed a token and reset the agent's risk memory.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE, transferCall } from '../helpers/harness.js';
import { RawClient, signedEnvelope } from '../helpers/raw-client.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { closeTeamRoom, ensureTeamPeople, teamHubDir } from '../helpers/team-hubs.js';

const AGENT = 'finance-bot';
let cluster: PostgresCluster;
let db: pg.Pool;
let key: AgentKey;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const stages: string[] = [];
let a: RunningCountersign;

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  key = await importAgentKey(await generateAgentKey('EdDSA'));
  a = await startCountersign({
    dataDir: teamHubDir({ dirs }, 'hub-a', { gateway: { port: 0, maxPendingPerAgent: 1 } }),
    log: () => undefined,
    command: 'countersign hub (test)',
    team: { databaseUrl: cluster.url, hub: 'hub-a' },
    onTiming: (stage) => stages.push(stage),
  });
  hubs.push(a);
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT)), FINANCE_SCOPE);
}, 120_000);

afterAll(async () => {
  await closeTeamRoom({ clients: [], db, cluster, hubs, dirs });
}, 60_000);

describe('a replayed envelope on a team hub', () => {
  it('is refused before risk, the policy and the token signature, five times over', async () => {
    const envelope = await signedEnvelope(key, AGENT, transferCall('260.00'));
    const c = await RawClient.connect(a.url);
    try {
      expect((await c.authenticate(AGENT, key)).result).toBeDefined();
      expect((await c.call('call.submit', { envelope })).result).toMatchObject({ decision: 'allow' });
      const firstStages = stages.splice(0);
      expect(firstStages.filter((s) => s === 'sign')).toHaveLength(1);
      const replays = 5;
      for (let i = 0; i < replays; i++) expect((await c.call('call.submit', { envelope })).error?.data.code).toBe('envelope_replayed');
      // A replay should cost no token signature and no policy evaluation.
      expect(stages.filter((s) => s === 'sign')).toHaveLength(0);
      expect(stages.filter((s) => s === 'policy')).toHaveLength(0);
      expect(stages.filter((s) => s === 'risk')).toHaveLength(0);
    } finally {
      c.close();
    }
  }, 60_000);

  it('a replayed held call is refused as envelope_replayed, also when the agent is at its pending cap', async () => {
    const envelope = await signedEnvelope(key, AGENT, transferCall('48000.00', 'Northwind Traders'));
    const c = await RawClient.connect(a.url);
    try {
      expect((await c.authenticate(AGENT, key)).result).toBeDefined();
      expect((await c.call('call.submit', { envelope })).result).toMatchObject({ decision: 'pending' });
      const replay = await c.call('call.submit', { envelope });
      expect(replay.error?.data.code).toBe('envelope_replayed');
    } finally {
      c.close();
    }
  }, 60_000);
});
