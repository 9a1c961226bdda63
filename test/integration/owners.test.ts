/**
 * Agent owners are people of the approver directory (issue #10 item 2): separation of duties
 * compares persons through ids and aliases, enrollment refuses owners who are nobody and scopes
 * the policy set does not know, and free-text owners from before are migrated with a report,
 * the unresolved ones held for review and refused by the gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DEMO_POLICY_DIR, DEPLOY_SCOPE, FINANCE_SCOPE, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { RawClient, errorCode } from '../helpers/raw-client.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { openDataDir } from '../../main/core/app.js';
import { AgentRegistry, type AgentScope } from '../../main/core/identity/agent-registry.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { isCountersignError } from '../../shared/errors.js';

const PRODUCTION_DEPLOY = {
  tool: 'deploy.production',
  params: { service: 'checkout', environment: 'production-eu', changeId: 'CHG-1042', diff: '- replicas: 4\n+ replicas: 6' },
  dataClass: 'source-code',
  jurisdiction: 'US',
  provenance: ['ci'],
};

/**
 * The demo pack with the scheduled change freeze moved into the past (so a production deploy is
 * held for two approvers whatever today's date) and the two-person permit naming `pat@example.com`
 * as conflicted: an alias, not an approver id.
 */
function packWithoutFreeze(): string {
  const dir = join(tempDir('countersign-owners-pack-'), 'policies');
  cpSync(DEMO_POLICY_DIR, dir, { recursive: true, dereference: true }); // the demo pack links the other packs' files
  const entities = join(dir, 'entities.json');
  writeFileSync(
    entities,
    readFileSync(entities, 'utf8')
      .replace('2026-12-18T00:00:00Z', '2000-01-01T00:00:00Z')
      .replace('2027-01-04T00:00:00Z', '2000-01-02T00:00:00Z'),
  );
  const deploys = join(dir, 'production-deploys.cedar');
  const text = readFileSync(deploys, 'utf8');
  if (!text.includes('@id("production-two-person")')) throw new Error('the demo pack changed: no production-two-person permit');
  writeFileSync(
    deploys,
    text.replace('@id("production-two-person")', '@id("production-two-person")\n@conflicted_approvers("pat@example.com")'),
  );
  return dir;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => ({ resolved: value }),
    (error: unknown) => error,
  );
}

describe('the owner of an agent is a person: conflicts compare persons, never strings', () => {
  let h: Harness;
  let policyDir: string;

  beforeAll(async () => {
    policyDir = packWithoutFreeze();
    h = await startHarness({ config: { domain: 'test' }, policyDir });
    const va = h.app.virtualApprovers!;
    await va.create({ id: 'sam', displayName: 'Sam', groups: ['sre-approvers'] });
    h.app.approvers.addAlias('sam', 'Sam@Example.com');
    await va.create({ id: 'pat', displayName: 'Pat', groups: ['sre-approvers'] });
    h.app.approvers.addAlias('pat', 'pat@example.com');
    await va.create({ id: 'sre-1', displayName: 'SRE One', groups: ['sre-approvers'] });
    await va.create({ id: 'sre-2', displayName: 'SRE Two', groups: ['sre-approvers'] });
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    rmSync(join(policyDir, '..'), { recursive: true, force: true });
  });

  it("does not count Sam's approval, under his approver id, toward the two-person rule of the deploy agent he owns as sam@example.com", async () => {
    const key = await h.enroll('deploy-bot', DEPLOY_SCOPE); // owner: 'sam@example.com'
    expect(h.app.registry.getAgent('deploy-bot')).toMatchObject({ owner: 'sam', ownerState: 'resolved' });
    const client = h.client('deploy-bot', key);
    const pending = await client.submit(PRODUCTION_DEPLOY);
    expect(pending).toMatchObject({ decision: 'pending', state: 'pending' });
    const va = h.app.virtualApprovers!;

    const refused = await rejection(va.decide({ requestId: pending.requestId, approverId: 'sam', verdict: 'approve' }));
    expect(isCountersignError(refused, 'approver_conflicted')).toBe(true);
    expect(refused).toMatchObject({ details: { reason: 'owner' } });
    expect((refused as Error).message).toBe('approver "sam" owns the agent that made this request (owner "sam") and may not decide it');
    expect(await h.app.approvals.approvalsOf(pending.requestId)).toEqual([]);

    // The person the policy names by an alias is refused too, with the policy as the reason.
    const patRefused = await rejection(va.decide({ requestId: pending.requestId, approverId: 'pat', verdict: 'approve' }));
    expect(patRefused).toMatchObject({ code: 'approver_conflicted', details: { reason: 'policy' } });

    // What the approvers' desk is told: who may not decide and why, as approver ids.
    const view = await h.app.approvals.getPending(pending.requestId);
    expect(view.agentOwner).toBe('sam');
    expect(view.excludedApprovers).toEqual(
      expect.arrayContaining([
        { approverId: 'sam', reason: 'owner' },
        { approverId: 'pat', reason: 'policy' },
      ]),
    );
    expect(view.ownerUnresolved).toBeUndefined();

    // Two other people are needed: one approval leaves the deploy pending, the second completes it.
    expect(await va.decide({ requestId: pending.requestId, approverId: 'sre-1', verdict: 'approve' })).toMatchObject({ state: 'pending' });
    expect(await va.decide({ requestId: pending.requestId, approverId: 'sre-2', verdict: 'approve' })).toMatchObject({ state: 'approved' });
    const approved = h.app.audit
      .entries()
      .find((e) => e.kind === 'decision.approved' && (JSON.parse(e.record) as { requestId?: string }).requestId === pending.requestId);
    expect((JSON.parse(approved?.record ?? '{}') as { approvers?: string[] }).approvers).toEqual(['sre-1', 'sre-2']);
  }, 60_000);

  it('refuses a second person whose id or alias is another spelling of an existing handle', () => {
    for (const id of ['SAM', 'sam@example.com', 'PAT@example.com']) {
      expect(() => h.app.approvers.addApprover({ id, displayName: id, groups: [] })).toThrow(
        expect.objectContaining({ code: 'alias_conflict' }),
      );
    }
    expect(() => h.app.approvers.addAlias('sre-1', 'SAM@EXAMPLE.COM')).toThrow(expect.objectContaining({ code: 'alias_conflict' }));
    expect(() => h.app.approvers.addAlias('sre-1', 'sre-2')).toThrow(expect.objectContaining({ code: 'alias_conflict' }));
    expect(h.app.approvers.aliasesOf('sre-1')).toEqual([]);
    expect(h.app.approvers.resolvePerson(' SAM@example.COM ')).toMatchObject({ id: 'sam', via: 'alias' });
  });
});

describe('enrollment checks the owner and the scope', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.app.approvers.addApprover({ id: 'dana', displayName: 'Dana', groups: [], aliases: ['dana@example.com'] });
    h.app.approvers.addApprover({ id: 'gone', displayName: 'Gone', groups: [] });
    h.app.approvers.disable('gone');
  }, 60_000);
  afterAll(async () => h?.close());

  async function payload(agentId: string) {
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    return verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId));
  }

  it('refuses an owner who is no active person, and a group, tool, data class or jurisdiction the policy set does not know, naming the value; nothing is enrolled', async () => {
    const cases: Array<[Partial<AgentScope>, string, Record<string, string>]> = [
      [{ owner: 'dana@exampel.com' }, 'owner_unknown', { owner: 'dana@exampel.com' }],
      [{ owner: 'gone' }, 'owner_unknown', { owner: 'gone' }],
      [{ group: 'finance-agent' }, 'group_unknown', { group: 'finance-agent' }],
      [{ allowedTools: ['payments.transfer', 'payments.transfr'] }, 'unknown_tool', { tool: 'payments.transfr' }],
      [{ dataClasses: ['finacial'] }, 'data_class_unknown', { dataClass: 'finacial' }],
      [{ jurisdictions: ['US', 'UK'] }, 'jurisdiction_unknown', { jurisdiction: 'UK' }],
    ];
    const auditBefore = h.app.audit.entries().length;
    for (const [override, code, details] of cases) {
      const p = await payload('scoped-bot');
      let error: unknown;
      try {
        h.app.registry.enroll(p, { ...FINANCE_SCOPE, owner: 'dana@example.com', ...override });
      } catch (caught) {
        error = caught;
      }
      expect(error, code).toMatchObject({ code, details });
      expect((error as Error).message).toContain(`"${Object.values(details)[0]!}"`);
      expect(h.app.registry.getAgent('scoped-bot')).toBeUndefined();
    }
    expect(h.app.audit.entries().length).toBe(auditBefore);

    // The same scope with the typos fixed enrolls, the owner stored as the person's id.
    expect(h.app.registry.enroll(await payload('scoped-bot'), { ...FINANCE_SCOPE, owner: 'DANA@example.com' })).toMatchObject({
      owner: 'dana',
      ownerState: 'resolved',
    });
    const enrolled = h.app.audit
      .entries()
      .filter((e) => e.kind === 'agent.enrolled')
      .map((e) => JSON.parse(e.record) as Record<string, unknown>);
    expect(enrolled.at(-1)).toMatchObject({ agentId: 'scoped-bot', owner: 'dana', ownerEntered: 'DANA@example.com' });
  });

  it('refuses to enroll at all without a policy set to check the scope against', async () => {
    const bare = new AgentRegistry(h.app.db, h.app.audit);
    expect(() => bare.enroll({} as never, FINANCE_SCOPE)).toThrow(expect.objectContaining({ code: 'policy_invalid' }));
    expect(await payload('unscoped-bot')).toBeDefined();
    expect(h.app.registry.getAgent('unscoped-bot')).toBeUndefined();
  });
});

describe('free-text owners from before owners were people', () => {
  const dataDir = tempDir();
  let heldKey: AgentKey;
  let h: Harness | undefined;

  /** A data directory as the previous release left it: the schema before this change, free-text owners. */
  async function legacyDataDir(): Promise<void> {
    const aliasesMigration = MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE approver_aliases'));
    expect(aliasesMigration).toBeGreaterThan(0);
    const db = new Database(join(dataDir, 'countersign.db'));
    for (let version = 0; version < aliasesMigration; version++) {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }
    db.prepare(
      "INSERT INTO approvers (id, display_name, groups_json, virtual, status, created_at) VALUES ('sam', 'Sam', '[\"sre-approvers\"]', 0, 'active', 1)",
    ).run();
    heldKey = await importAgentKey(await generateAgentKey('EdDSA'));
    const agent =
      db.prepare(`INSERT INTO agents (id, display_name, owner, group_name, allowed_tools, data_classes, jurisdictions, status, created_at)
      VALUES (?, ?, ?, 'finance-agents', '["payments.transfer"]', '["financial"]', '["US"]', 'active', 1)`);
    agent.run('by-id-bot', 'By id', ' SAM ');
    agent.run('by-email-bot', 'By email', 'sam@example.com');
    agent.run('nobody-bot', 'Nobody', 'someone');
    db.prepare(
      "INSERT INTO agent_keys (kid, agent_id, alg, public_jwk, status, created_at) VALUES (?, 'by-email-bot', ?, ?, 'active', 1)",
    ).run(heldKey.kid, heldKey.publicJwk.alg, JSON.stringify(heldKey.publicJwk));
    db.close();
  }

  afterAll(async () => {
    await h?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('resolves owners that name a person, holds the others for review, and reports and audits it once', async () => {
    await legacyDataDir();
    const reports: unknown[] = [];
    const opened = openDataDir(dataDir, (report) => reports.push(report));
    try {
      expect(reports).toEqual([
        {
          at: expect.any(Number) as unknown,
          resolved: [{ agentId: 'by-id-bot', entered: ' SAM ', person: 'sam', via: 'id' }],
          held: [
            { agentId: 'by-email-bot', entered: 'sam@example.com', reason: expect.stringContaining('"sam@example.com"') as unknown },
            { agentId: 'nobody-bot', entered: 'someone', reason: expect.stringContaining('"someone"') as unknown },
          ],
        },
      ]);
      expect(opened.registry.getAgent('by-id-bot')).toMatchObject({ owner: 'sam', ownerState: 'resolved' });
      expect(opened.registry.getAgent('by-email-bot')).toMatchObject({ owner: 'sam@example.com', ownerState: 'held_for_review' });
      const migrated = opened.audit.entries().filter((e) => e.kind === 'agent.owners_migrated');
      expect(migrated).toHaveLength(1);
      expect(JSON.parse(migrated[0]!.record)).toMatchObject({ held: [{ agentId: 'by-email-bot' }, { agentId: 'nobody-bot' }] });
      expect(opened.registry.ownerReport()).toMatchObject({
        migration: reports[0],
        heldNow: [{ agentId: 'by-email-bot' }, { agentId: 'nobody-bot' }],
      });
    } finally {
      opened.db.close();
    }
    // Opening again migrates nothing more.
    const again = openDataDir(dataDir, (report) => reports.push(report));
    again.db.close();
    expect(reports).toHaveLength(1);
  });

  it('refuses a held agent at the gateway until an admin gives it a person as owner', async () => {
    h = await startHarness({ dataDir });
    const refused = await RawClient.connect(h.app.url);
    expect(errorCode(await refused.authenticate('by-email-bot', heldKey))).toBe('agent_held_for_review');
    expect((await refused.waitClosed()).code).toBe(4001); // every refusal at connect closes with 4001 (docs/protocol.md)

    h.app.approvers.addAlias('sam', 'sam@example.com');
    expect(h.app.registry.getAgent('by-email-bot')?.ownerState).toBe('held_for_review'); // an alias alone releases nothing
    expect(() => h!.app.registry.setOwner('by-email-bot', 'nobody@example.com')).toThrow(
      expect.objectContaining({ code: 'owner_unknown' }),
    );
    expect(h.app.registry.setOwner('by-email-bot', 'sam@example.com')).toMatchObject({ owner: 'sam', ownerState: 'resolved' });
    const changed = h.app.audit
      .entries()
      .filter((e) => e.kind === 'agent.owner_changed')
      .map((e) => JSON.parse(e.record) as unknown);
    expect(changed).toEqual([
      expect.objectContaining({
        kind: 'agent.owner_changed',
        agentId: 'by-email-bot',
        from: 'sam@example.com',
        to: 'sam',
        entered: 'sam@example.com',
        releasedFromReview: true,
      }),
    ]);

    const admitted = await RawClient.connect(h.app.url);
    expect(errorCode(await admitted.authenticate('by-email-bot', heldKey))).toBeUndefined();
    admitted.close();
  }, 60_000);
});
