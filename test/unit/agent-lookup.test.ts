/**
 * AgentRegistry.lookup, which every decision calls: the agent and key read in one statement give
 * the same records as reading each alone, and a missing or mismatched pair is still refused with
 * the code that says which half is wrong (agent_unknown, key_unknown), whatever the key's status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { openDataDir } from '../../main/core/app.js';
import { prepareDirectEnrollment } from '../helpers/direct-enrollment.js';
import { DEMO_POLICY_DIR, FINANCE_SCOPE, tempDir } from '../helpers/harness.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { isCountersignError } from '../../shared/errors.js';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return isCountersignError(error) ? error.code : 'not a countersign error';
  }
};

describe('AgentRegistry.lookup', () => {
  const dir = tempDir('countersign-agent-lookup-');
  let store: ReturnType<typeof openDataDir>;
  const keys: Record<string, AgentKey> = {};

  beforeAll(async () => {
    store = openDataDir(dir);
    await prepareDirectEnrollment(store, DEMO_POLICY_DIR, [FINANCE_SCOPE.owner]);
    for (const id of ['alpha-bot', 'beta-bot']) {
      const key = await importAgentKey(await generateAgentKey('EdDSA'));
      keys[id] = key;
      store.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)), FINANCE_SCOPE);
    }
  });
  afterAll(() => {
    store.db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the agent and key records that reading each alone gives', () => {
    const { agent, key } = store.registry.lookup('alpha-bot', keys['alpha-bot']!.kid);
    expect(agent).toEqual(store.registry.getAgent('alpha-bot'));
    expect(key).toEqual(
      store.registry
        .list()
        .find((a) => a.id === 'alpha-bot')!
        .keys.find((k) => k.kid === keys['alpha-bot']!.kid),
    );
    expect(key.agentId).toBe('alpha-bot');
    expect(key.status).toBe('active');
  });

  it('refuses an unknown agent, an unknown key and the key of another agent', () => {
    expect(codeOf(() => store.registry.lookup('gamma-bot', keys['alpha-bot']!.kid))).toBe('agent_unknown');
    expect(codeOf(() => store.registry.lookup('alpha-bot', 'no-such-kid'))).toBe('key_unknown');
    expect(codeOf(() => store.registry.lookup('alpha-bot', keys['beta-bot']!.kid))).toBe('key_unknown');
  });

  it('resolves a revoked agent (assertUsable, after the signature check, refuses it)', () => {
    store.registry.revoke('beta-bot', 'lookup test');
    const resolved = store.registry.lookup('beta-bot', keys['beta-bot']!.kid);
    expect(resolved.agent.status).toBe('revoked');
    expect(codeOf(() => store.registry.assertUsable(resolved, Date.now()))).toBe('agent_revoked');
  });
});
