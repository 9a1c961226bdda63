/** Nonces are persisted: an envelope replayed after a restart is still refused. */
import { describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCountersign } from '../../main/core/app.js';
import { DEMO_POLICY_DIR, tempDir, transferCall, ensurePeople } from '../helpers/harness.js';
import { RawClient, errorCode, signedEnvelope } from '../helpers/raw-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';

describe('replay protection across restarts', () => {
  it('refuses an envelope replayed against a restarted server, and keeps the first decision', async () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const quiet = { dataDir, log: () => undefined };
    try {
      let app = await startCountersign(quiet);
      const key = await importAgentKey(await generateAgentKey('ES256'));
      ensurePeople(app, 'dana');
      app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'f')), {
        owner: 'dana',
        group: 'finance-agents',
        allowedTools: ['payments.transfer'],
        dataClasses: ['financial'],
        jurisdictions: ['US'],
      });
      const envelope = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
      let c = await RawClient.connect(app.url);
      await c.authenticate('finance-bot', key);
      const first = await c.call('call.submit', { envelope });
      expect(first.result).toMatchObject({ decision: 'allow' });
      c.close();
      await app.close();

      app = await startCountersign(quiet);
      c = await RawClient.connect(app.url);
      await c.authenticate('finance-bot', key);
      expect(errorCode(await c.call('call.submit', { envelope }))).toBe('envelope_replayed');
      const requests = (app.db.prepare('SELECT COUNT(*) AS n FROM requests').get() as { n: number }).n;
      expect(requests).toBe(1);
      expect(app.audit.verify()).toMatchObject({ ok: true });
      c.close();
      await app.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('caps total connections', async () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0, maxConnections: 3 }, policyDir: DEMO_POLICY_DIR }));
    const app = await startCountersign({ dataDir, log: () => undefined });
    try {
      const open = [await RawClient.connect(app.url), await RawClient.connect(app.url), await RawClient.connect(app.url)];
      await expect(RawClient.connect(app.url)).rejects.toThrow('503');
      open[0]!.close();
      await open[0]!.waitClosed();
      await new Promise((r) => setTimeout(r, 50));
      const again = await RawClient.connect(app.url);
      again.close();
      for (const c of open) c.close();
    } finally {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
