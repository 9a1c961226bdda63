/**
 * What a new user hits in the first hour with the `countersign` command, run as separate
 * processes on real data directories: the package's bin launcher (the server run from its build),
 * readable listings (and
 * `--json`), stable codes for a port another process holds and for a file that is not there,
 * and `policy check` refusing the risk settings `start` would refuse.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startCountersign } from '../../main/core/app.js';
import { tempDir } from '../helpers/harness.js';
import { compiledCli } from '../helpers/compiled-script.js';

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
const dirs: string[] = [];
const fresh = () => {
  const dir = tempDir();
  dirs.push(dir);
  return dir;
};

function cli(dataDir: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args, '--data-dir', dataDir], { encoding: 'utf8', timeout: 90_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the bin named in package.json', () => {
  it('exists, is executable, and runs the CLI from any directory', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const bin = join(REPO_ROOT, pkg.bin.countersign!);
    expect(statSync(bin).mode & 0o111).not.toBe(0);
    const cwd = fresh();
    const help = spawnSync(bin, ['--help'], { cwd, encoding: 'utf8', timeout: 90_000 });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('usage: countersign <command>');
    const bad = spawnSync(process.execPath, [bin, 'bogus'], { cwd, encoding: 'utf8', timeout: 90_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('countersign: unknown command "bogus"; run countersign --help [config_invalid]');
  }, 120_000);

  it('runs the server from its build in plain Node: Cedar in its worker decides, and --stage-timings reports on SIGUSR2', async () => {
    const bin = join(REPO_ROOT, 'bin', 'countersign.mjs');
    const child = spawn(process.execPath, [bin, 'start', '--demo', '--port', '0', '--data-dir', fresh(), '--stage-timings'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // The demo's first automatic decision: the policy set, evaluated in the Cedar worker thread.
      const deadline = Date.now() + 60_000;
      while (!out.includes(': ALLOW') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain(': ALLOW');
      // No TypeScript compiled at run time: tsx would have started its esbuild service as a child.
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      for (const pid of children) expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toContain('esbuild');
      const before = out.length;
      child.kill('SIGUSR2');
      const reportDeadline = Date.now() + 10_000;
      while (!out.slice(before).includes('{"timings"') && Date.now() < reportDeadline) await new Promise((r) => setTimeout(r, 50));
      const line = out
        .slice(before)
        .split('\n')
        .find((l) => l.startsWith('{"timings"'));
      const { timings } = JSON.parse(line ?? '{}') as { timings?: Record<string, { ms: number; n: number }> };
      expect(timings?.policy?.n, out).toBeGreaterThan(0);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 90_000);
});

describe('listings', () => {
  it('print an aligned table with readable UTC times by default, and the records as JSON with --json', () => {
    const dataDir = fresh();
    const keys = join(dataDir, 'agent-keys');
    const made = JSON.parse(cli(dataDir, 'keygen', '--agent-id', 'ap-bot', '--name', 'Accounts payable', '--out', keys).stdout) as {
      enrollmentFile: string;
      kid: string;
    };
    // The owner is a person of the approver directory, named here by an alias (stored as the id).
    expect(cli(dataDir, 'approvers', 'add', 'dana', '--name', 'Dana Scully', '--aliases', 'dana@example.com').status).toBe(0);
    expect(
      cli(
        dataDir,
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
        'US',
        '--expires',
        '90d',
      ).status,
    ).toBe(0);
    expect(cli(dataDir, 'approvers', 'add', 'alice', '--name', 'Alice Chen', '--groups', 'finance-approvers').status).toBe(0);

    const table = cli(dataDir, 'agents', 'list');
    expect(table.status).toBe(0);
    const [header, row, ...rest] = table.stdout.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(header).toMatch(/^ID +NAME +STATUS +OWNER +GROUP +TOOLS +KEYS +ENROLLED +EXPIRES$/);
    expect(row).toMatch(
      /^ap-bot +Accounts payable +active +dana +finance-agents +payments\.transfer +\S{12}… active +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
    );
    // Aligned: every column starts at the same offset in the header and the row.
    expect(row!.indexOf('active')).toBe(header!.indexOf('STATUS'));
    expect(row!.indexOf('dana')).toBe(header!.indexOf('OWNER'));
    expect(row).toContain(made.kid.slice(0, 12));
    expect(table.stdout).not.toContain('{');

    const json = JSON.parse(cli(dataDir, 'agents', 'list', '--json').stdout) as Array<{
      id: string;
      createdAt: number;
      keys: Array<{ kid: string }>;
    }>;
    expect(json).toEqual([expect.objectContaining({ id: 'ap-bot', keys: [expect.objectContaining({ kid: made.kid })] })]);
    expect(row).toContain(new Date(json[0]!.createdAt).toISOString().slice(0, 19).replace('T', ' '));

    const approvers = cli(dataDir, 'approvers', 'list').stdout.trimEnd().split('\n');
    expect(approvers[0]).toMatch(/^ID +NAME +STATUS +GROUPS +ALIASES +SECURITY KEYS +VIRTUAL +ADDED$/);
    expect(approvers.find((line) => line.startsWith('alice'))).toMatch(
      /^alice +Alice Chen +active +finance-approvers +- +0 active of 0 +no +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
    );
    expect(approvers.find((line) => line.startsWith('dana'))).toMatch(
      /^dana +Dana Scully +active +- +dana@example\.com +0 active of 0 +no +\d{4}-/,
    );
    expect(JSON.parse(cli(dataDir, 'approvers', 'list', '--json').stdout)).toContainEqual(
      expect.objectContaining({ id: 'alice', credentials: [] }),
    );

    expect(cli(dataDir, 'keys', 'list').stdout.trim()).toBe('no signing key is pinned for the production domain yet');
    expect(JSON.parse(cli(dataDir, 'keys', 'list', '--json').stdout)).toEqual([]);
  }, 180_000);

  it('lists the pinned signing keys as a table', async () => {
    const dataDir = fresh();
    const app = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } });
    const kid = app.signer.keyId;
    await app.close();
    const lines = cli(dataDir, 'keys', 'list').stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^KID +STATUS +CUSTODY +ALG +CREATED +PUBLISHED UNTIL +LAST SIGNATURE$/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${kid} +active +software +ES256 +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ +- +(-|\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ)$`,
      ),
    );
  }, 120_000);
});

describe('stable codes for first-hour mistakes', () => {
  it('a port another process holds: port_in_use naming the port, and nothing started', async () => {
    const holder = await startCountersign({ dataDir: fresh(), log: () => undefined, overrides: { port: 0 } });
    try {
      const dataDir = fresh();
      const r = cli(dataDir, 'start', '--port', String(holder.port));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`countersign: port ${holder.port} on 127.0.0.1 is already in use by another process`);
      expect(r.stderr).toMatch(/\[port_in_use\]\n$/);
      expect(r.stdout).not.toContain('approver console');
    } finally {
      await holder.close();
    }
  }, 120_000);

  it('a file or directory that is not there: file_not_found naming the path', () => {
    const dataDir = fresh();
    const missing = join(dataDir, 'no-such');
    const cases: Array<[string[], string]> = [
      [['policy', 'check', '--config', `${missing}.json`], `the configuration file "${missing}.json" does not exist`],
      [['policy', 'check', '--policy-dir', missing], `the policy directory "${missing}" does not exist`],
      [
        ['policy', 'test', `${missing}.json`, '--policy-dir', join(REPO_ROOT, 'examples', 'finance')],
        `the policy test file "${missing}.json" does not exist`,
      ],
      [
        [
          'agents',
          'enroll',
          `${missing}.json`,
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
        ],
        `the enrollment request file "${missing}.json" does not exist`,
      ],
      [['risk', 'report', '--scenarios', `${missing}.json`], `the scenario file "${missing}.json" does not exist`],
      [['audit', 'verify', '--export', `${missing}.jsonl`, '--key', `${missing}.jwks`], `the key file "${missing}.jwks" does not exist`],
      [['start', '--policy-dir', missing, '--port', '0'], `the policy directory "${missing}" does not exist`],
    ];
    for (const [args, message] of cases) {
      const r = cli(dataDir, ...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toBe(`countersign: ${message} [file_not_found]\n`);
    }
  }, 300_000);
});

describe('policy check and start agree on risk.json', () => {
  it('policy check refuses a risk.json that start refuses, and passes one start accepts', async () => {
    const pack = fresh();
    cpSync(join(REPO_ROOT, 'examples', 'demo'), pack, { recursive: true });
    const dataDir = fresh();
    const good = cli(dataDir, 'policy', 'check', '--policy-dir', pack);
    expect(good.status, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ risk: { enabled: true, file: join(pack, 'risk.json') } });

    // A misspelt factor: the risk settings schema is strict.
    writeFileSync(join(pack, 'risk.json'), JSON.stringify({ factors: { repeated_calls: { weight: 10 } } }));
    const check = cli(dataDir, 'policy', 'check', '--policy-dir', pack);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain(`the risk settings file "${join(pack, 'risk.json')}"`);
    expect(check.stderr).toMatch(/\[config_invalid\]\n$/);
    await expect(
      startCountersign({ dataDir: fresh(), log: () => undefined, overrides: { port: 0, policyDir: pack } }),
    ).rejects.toMatchObject({
      code: 'config_invalid',
      message: check.stderr.replace(/^countersign: /, '').replace(/ \[config_invalid\]\n$/, ''),
    });
  }, 180_000);
});
