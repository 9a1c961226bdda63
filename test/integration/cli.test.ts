/** The `countersign` command as a user runs it: separate processes on a real data directory. */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startCountersign } from '../../main/core/app.js';
import { compiledCli } from '../helpers/compiled-script.js';
import { tempDir } from '../helpers/harness.js';

// The CLI compiled once for the run, started with plain Node (cli-first-hour.test.ts starts the
// shipped launcher, bin/countersign.mjs).
const NODE = process.execPath;
const CLI = compiledCli();
const dataDir = tempDir();
const keysDir = join(dataDir, 'agent-keys');

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args, '--data-dir', dataDir], { encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('countersign CLI', () => {
  it('makes an agent key and an enrollment request, and enrolls, lists and revokes the agent', () => {
    const keygen = cli('keygen', '--agent-id', 'ap-bot', '--name', 'Accounts payable', '--out', keysDir);
    expect(keygen.status).toBe(0);
    const made = JSON.parse(keygen.stdout) as { keyFile: string; enrollmentFile: string; kid: string };
    expect(statSync(made.keyFile).mode & 0o777).toBe(0o600);

    // The owner is a person of the approver directory, named here by an alias: the id is stored.
    expect(cli('approvers', 'add', 'dana', '--name', 'Dana', '--aliases', 'dana@example.com').status).toBe(0);
    const enroll = cli(
      'agents',
      'enroll',
      made.enrollmentFile,
      '--owner',
      'dana@example.com',
      '--group',
      'finance-agents',
      '--tools',
      'payments.transfer',
      '--data-classes',
      'financial',
      '--jurisdictions',
      'US,GB',
      '--expires',
      '90d',
    );
    expect(enroll.status).toBe(0);
    expect(JSON.parse(enroll.stdout)).toMatchObject({ id: 'ap-bot', owner: 'dana', ownerState: 'resolved', jurisdictions: ['US', 'GB'] });

    const again = cli(
      'agents',
      'enroll',
      made.enrollmentFile,
      '--owner',
      'x',
      '--group',
      'g',
      '--tools',
      't',
      '--data-classes',
      'd',
      '--jurisdictions',
      'US',
    );
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('[enrollment_conflict]');

    const list = JSON.parse(cli('agents', 'list', '--json').stdout) as Array<{ id: string; keys: Array<{ kid: string; status: string }> }>;
    expect(list.find((a) => a.id === 'ap-bot')?.keys[0]).toMatchObject({ kid: made.kid, status: 'active' });

    const rotatedKeys = join(dataDir, 'rotated');
    const next = JSON.parse(cli('keygen', '--agent-id', 'ap-bot', '--alg', 'ES256', '--out', rotatedKeys).stdout) as {
      enrollmentFile: string;
      kid: string;
    };
    const rotate = cli('agents', 'rotate', 'ap-bot', next.enrollmentFile, '--overlap', '1h');
    expect(rotate.status).toBe(0);
    const keys = (
      JSON.parse(cli('agents', 'list', '--json').stdout) as Array<{ id: string; keys: Array<{ kid: string; status: string }> }>
    ).find((a) => a.id === 'ap-bot')!.keys;
    expect(keys.map((k) => k.status).sort()).toEqual(['active', 'retiring']);

    expect(cli('agents', 'revoke', 'ap-bot', '--reason', 'left the company').status).toBe(0);
    const revoked = (JSON.parse(cli('agents', 'list', '--json').stdout) as Array<{ id: string; status: string }>).find(
      (a) => a.id === 'ap-bot',
    );
    expect(revoked?.status).toBe('revoked');
    expect(cli('audit', 'verify').status).toBe(0);
  }, 120_000);

  it('refuses an enrollment request whose proof of possession is forged', () => {
    const made = JSON.parse(cli('keygen', '--agent-id', 'forged-bot', '--out', join(dataDir, 'forged')).stdout) as {
      enrollmentFile: string;
    };
    const request = JSON.parse(readFileSync(made.enrollmentFile, 'utf8')) as { payload: { displayName: string } };
    request.payload.displayName = 'Someone else';
    writeFileSync(made.enrollmentFile, JSON.stringify(request));
    const r = cli(
      'agents',
      'enroll',
      made.enrollmentFile,
      '--owner',
      'x',
      '--group',
      'g',
      '--tools',
      't',
      '--data-classes',
      'd',
      '--jurisdictions',
      'US',
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[enrollment_proof_invalid]');
  }, 60_000);

  it('checks and tests policy packs', () => {
    const check = cli('policy', 'check', '--policy-dir', join(REPO_ROOT, 'examples', 'finance'));
    expect(check.status).toBe(0);
    expect(check.stdout).toContain('sha256:');
    const test = cli(
      'policy',
      'test',
      join(REPO_ROOT, 'examples', 'finance', 'tests.json'),
      '--policy-dir',
      join(REPO_ROOT, 'examples', 'finance'),
    );
    expect(test.status).toBe(0);
  }, 60_000);

  it('prints the JWKS tool servers trust once a key is pinned, and says the key is software', async () => {
    const before = cli('jwks');
    expect(before.status).toBe(1);
    expect(before.stderr).toContain('[hsm_key_not_found]');
    const app = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } });
    const kid = app.signer.keyId;
    await app.close();

    const r = cli('jwks');
    expect(r.status).toBe(0);
    const jwks = JSON.parse(r.stdout) as { keys: Array<{ alg: string; kid: string; d?: string }> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ alg: 'ES256', kid });
    expect(jwks.keys[0]?.d).toBeUndefined();
    const status = cli('keys', 'status');
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ kid, custody: 'software', hardwareBacked: false, ok: true });
    // The headless test domain signs with a different key.
    const test = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0, domain: 'test' } });
    expect(test.signer.keyId).not.toBe(kid);
    await test.close();
    expect((JSON.parse(cli('jwks', '--domain', 'test').stdout) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)).toEqual([
      test.signer.keyId,
    ]);
  }, 60_000);

  it('refuses the key ceremony without a token configured, and a rotation with no token key to rotate', () => {
    expect(cli('keys', 'init').stderr).toContain('[config_invalid]');
    const hsmDir = tempDir();
    writeFileSync(
      join(hsmDir, 'config.json'),
      JSON.stringify({ custody: { pkcs11: { module: '/nonexistent/libpkcs11.so', tokenLabel: 't', pin: { env: 'NO_SUCH_PIN_VAR' } } } }),
    );
    const r = spawnSync(NODE, [CLI, 'keys', 'rotate', '--data-dir', hsmDir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[hsm_key_not_found]');
    rmSync(hsmDir, { recursive: true, force: true });
  }, 60_000);

  it('adds, lists and disables approvers, and refuses a malformed id', () => {
    const add = cli('approvers', 'add', 'alice', '--name', 'Alice Chen', '--groups', 'finance-approvers,treasury');
    expect(add.status).toBe(0);
    const added = JSON.parse(add.stdout) as { registration: { code: string; expiresAt: number } };
    expect(added).toMatchObject({ id: 'alice', groups: ['finance-approvers', 'treasury'], virtual: false, status: 'active' });
    expect(added.registration.code).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(cli('approvers', 'add', 'bad id!', '--name', 'x', '--groups', 'g').stderr).toContain('[config_invalid]');
    expect(cli('approvers', 'disable', 'alice').status).toBe(0);
    const listed = JSON.parse(cli('approvers', 'list', '--json').stdout) as Array<{ id: string; status: string; credentials: unknown[] }>;
    expect(listed.find((a) => a.id === 'alice')).toEqual(expect.objectContaining({ id: 'alice', status: 'disabled', credentials: [] }));
  }, 60_000);

  it('enrolls an agent with its model and agent version', () => {
    const made = JSON.parse(cli('keygen', '--agent-id', 'model-bot', '--out', keysDir).stdout) as { enrollmentFile: string };
    expect(cli('approvers', 'add', 'o@example.com', '--name', 'O').status).toBe(0);
    const enroll = cli(
      'agents',
      'enroll',
      made.enrollmentFile,
      '--owner',
      'o@example.com',
      '--group',
      'finance-agents',
      '--tools',
      'payments.transfer',
      '--data-classes',
      'financial',
      '--jurisdictions',
      'US',
      '--model',
      'claude-sonnet-4',
      '--agent-version',
      '2.3.1',
    );
    expect(enroll.status).toBe(0);
    expect(JSON.parse(enroll.stdout)).toMatchObject({ id: 'model-bot', model: 'claude-sonnet-4', agentVersion: '2.3.1' });
    const blank = JSON.parse(cli('keygen', '--agent-id', 'blank-bot', '--out', keysDir).stdout) as { enrollmentFile: string };
    const refused = cli(
      'agents',
      'enroll',
      blank.enrollmentFile,
      '--owner',
      'o',
      '--group',
      'g',
      '--tools',
      't',
      '--data-classes',
      'd',
      '--jurisdictions',
      'US',
      '--model',
      ' ',
    );
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('--model must be 1 to 128 characters [config_invalid]');
  }, 60_000);

  it('enrolls only a person of the directory as owner, with a scope the policy set knows, and names what it refuses', () => {
    const made = JSON.parse(cli('keygen', '--agent-id', 'typo-bot', '--out', keysDir).stdout) as { enrollmentFile: string };
    const scope: Record<string, string> = {
      '--owner': 'dana@example.com',
      '--group': 'finance-agents',
      '--tools': 'payments.transfer',
      '--data-classes': 'financial',
      '--jurisdictions': 'US',
    };
    const enroll = (override: Record<string, string>) =>
      cli('agents', 'enroll', made.enrollmentFile, ...Object.entries({ ...scope, ...override }).flat());
    const nobody = enroll({ '--owner': 'dana@exampel.com' });
    expect(nobody.status).toBe(1);
    expect(nobody.stderr).toContain('the owner "dana@exampel.com" is not a person in the approver directory');
    expect(nobody.stderr).toContain('[owner_unknown]');
    expect(enroll({ '--group': 'finance-agent' }).stderr).toMatch(/"finance-agent".*\[group_unknown\]/);
    expect(enroll({ '--jurisdictions': 'US,UK' }).stderr).toMatch(/"UK".*\[jurisdiction_unknown\]/);
    expect(JSON.parse(cli('agents', 'list', '--json').stdout)).not.toContainEqual(expect.objectContaining({ id: 'typo-bot' }));

    // Another handle of Dana's, added as an alias, names her: the agent's owner is her id.
    const alias = cli('approvers', 'alias', 'add', 'dana', 'D.Smith@Example.com');
    expect(alias.status).toBe(0);
    expect(JSON.parse(alias.stdout)).toEqual({ approverId: 'dana', aliases: ['d.smith@example.com', 'dana@example.com'] });
    expect(cli('approvers', 'add', 'd.smith@example.com', '--name', 'Impostor').stderr).toContain('[alias_conflict]');
    const enrolled = enroll({ '--owner': 'd.smith@example.com' });
    expect(enrolled.status).toBe(0);
    expect(JSON.parse(enrolled.stdout)).toMatchObject({ id: 'typo-bot', owner: 'dana', ownerState: 'resolved' });
    expect(JSON.parse(cli('agents', 'owner-report').stdout)).toEqual({ migration: null, heldNow: [] });
  }, 120_000);

  it("reports the risk scorer's detection and false-positive rates on the scenario sets", () => {
    const report = cli('risk', 'report');
    expect(report.status).toBe(0);
    expect(report.stdout).toMatch(
      /generated set \(test\/scenarios\/risk-scenarios\.json\) at threshold 60 \(300 scenarios, provenance as recorded\)/,
    );
    expect(report.stdout).toMatch(
      /hand-written set \(test\/scenarios\/attack-scenarios\.json\) at threshold 60 \(64 scenarios, provenance as recorded\)/,
    );
    expect(report.stdout).toMatch(
      /hand-written set \(test\/scenarios\/attack-scenarios\.json\) at threshold 60 \(64 scenarios, provenance withheld\)/,
    );
    expect(report.stdout).toMatch(/by source:[\s\S]*agentdojo[\s\S]*injecagent/);
    expect(report.stdout).toMatch(/by effect class \(calls\):[\s\S]*moves_money/);
    const detection = Number(/detection rate\s+([\d.]+)%/.exec(report.stdout)?.[1]);
    const falsePositives = Number(/false-positive rate\s+([\d.]+)%/.exec(report.stdout)?.[1]);
    expect(detection).toBeGreaterThanOrEqual(90);
    expect(falsePositives).toBeLessThanOrEqual(5);
    expect(report.stdout).toContain('split_transfer');
    const strict = cli('risk', 'report', '--threshold', '95');
    expect(Number(/detection rate\s+([\d.]+)%/.exec(strict.stdout)?.[1])).toBeLessThan(detection);
    expect(cli('risk', 'report', '--threshold', '0').stderr).toContain('--threshold must be a whole number from 1 to 100 [config_invalid]');
    const bad = join(dataDir, 'bad-scenarios.json');
    writeFileSync(bad, JSON.stringify({ version: 1, description: 'x', scenarios: [{ id: 'a' }] }));
    expect(cli('risk', 'report', '--scenarios', bad).stderr).toContain('[config_invalid]');
    const badConfig = join(dataDir, 'bad-risk.json');
    writeFileSync(badConfig, JSON.stringify({ factors: { off_hours: { weight: 500 } } }));
    expect(cli('risk', 'report', '--risk-config', badConfig).stderr).toContain('"factors.off_hours.weight"');
  }, 400_000);

  it('refuses audit commands it cannot honour, with a clear code', () => {
    const fresh = tempDir();
    const run = (...args: string[]) => spawnSync(NODE, [CLI, ...args, '--data-dir', fresh], { encoding: 'utf8', timeout: 60_000 });
    try {
      expect(run('audit', 'export', '--out', join(fresh, 'x.jsonl')).stderr).toContain('the audit log has no signed checkpoint yet');
      expect(run('audit', 'export', '--out', join(fresh, 'x.jsonl')).stderr).toContain('[audit_proof_unavailable]');
      expect(run('audit', 'export').stderr).toContain('--out FILE is required [config_invalid]');
      expect(run('audit', 'verify', '--export', join(fresh, 'x.jsonl')).stderr).toContain('--key is required with --export');
      writeFileSync(join(fresh, 'bad-key.json'), 'not a key');
      expect(run('audit', 'verify', '--export', join(fresh, 'x.jsonl'), '--key', join(fresh, 'bad-key.json')).stderr).toContain(
        'is not a JWKS, a JWK or a PEM public key [config_invalid]',
      );
      expect(run('audit', 'proof', 'inclusion', '--seq', '0').stderr).toContain('the audit log has no entry 0 [audit_proof_unavailable]');
      expect(run('audit', 'proof', 'inclusion', '--seq', 'x').stderr).toContain('--seq must be a whole number [config_invalid]');
      expect(run('audit', 'proof', 'sideways').stderr).toContain('usage: countersign audit proof inclusion');
      expect(run('audit', 'export', '--out', join(fresh, 'x.jsonl'), '--since', 'yesterday').stderr).toContain(
        '--since must be a date and time',
      );
      expect(run('audit', 'checkpoint').stderr).toContain('[audit_proof_unavailable]');
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  }, 120_000);

  it('runs the demo: agents send calls and decisions flow', async () => {
    const demoDir = tempDir();
    const child = spawn(NODE, [CLI, 'start', '--demo', '--port', '0', '--data-dir', demoDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // The opening shows allow, pending and deny within its first 25 seconds.
    const deadline = Date.now() + 60_000;
    while (
      !(
        out.includes(': ALLOW') &&
        out.includes(': PENDING') &&
        out.includes(': DENY') &&
        /as an external email asked: \w+.*\n.*\n/.test(out)
      ) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));

    // The demo's audit log: exported, verified offline with the public keys, and tampered with.
    const run = (...args: string[]) => spawnSync(NODE, [CLI, ...args, '--data-dir', demoDir], { encoding: 'utf8', timeout: 60_000 });
    expect(run('audit', 'verify').status).toBe(0);
    const exportFile = join(demoDir, 'export.jsonl');
    const keysFile = join(demoDir, 'audit-keys.json');
    expect(run('audit', 'export', '--out', exportFile).status).toBe(0);
    writeFileSync(keysFile, run('audit', 'keys').stdout);
    const verified = run('audit', 'verify', '--export', exportFile, '--key', keysFile);
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, origin: 'countersign/countersign-local' });
    const lines = readFileSync(exportFile, 'utf8').split('\n');
    const target = lines.findIndex((l) => l.includes('"type":"entry","seq":3,'));
    lines[target] = lines[target]!.replace('"kind":"', '"kind":"x');
    writeFileSync(exportFile, lines.join('\n'));
    const tampered = run('audit', 'verify', '--export', exportFile, '--key', keysFile);
    expect(tampered.status).toBe(1);
    expect(JSON.parse(tampered.stdout)).toMatchObject({
      ok: false,
      firstBadSeq: 3,
      reason: 'entry 3: the record does not match its leaf hash',
    });
    rmSync(demoDir, { recursive: true, force: true });
    expect(out).toContain('tool server verified the token');
    expect(out).toContain(': PENDING');
    // The same payment twice: automatic from a person, held once an external email asked for it.
    const payment = /pay ([\d,.]+ USD to [A-Za-z ]+) \(known payee\): ALLOW/.exec(out);
    expect(payment, out).not.toBeNull();
    expect(out).toContain(`pay ${payment![1]}, as an external email asked: PENDING`);
    // Each reason once, though two guardrail files share some.
    for (const line of out.split('\n').filter((l) => l.includes(' — '))) {
      const reasons = line
        .split(' — ')[1]!
        .replace(/ \(needs .*$/, '')
        .split('; ');
      expect(new Set(reasons).size, line).toBe(reasons.length);
    }
    expect(out).toContain('untrusted_provenance +45 (the input that led to this call came from "email:external")');
    expect(out).toContain('not hardware-backed');
  }, 150_000);
});
