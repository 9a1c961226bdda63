/**
 * The MCP proxy's configuration pieces on their own: the mapping file (what Countersign call an
 * MCP call becomes, and that unmapped tools are never left to an automatic allow), the durable
 * hold record (survives a restart, ages out, refuses a damaged file instead of forgetting holds),
 * and the host configuration snippet.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { mcpProxyCommand } from '../../main/cli/mcp-proxy-command.js';
import { loadOrCreateDevCertificate } from '../../main/core/http/dev-certificate.js';
import { mapCall, parseMapping } from '../../main/mcp/mapping.js';
import { HoldStore } from '../../main/mcp/hold-store.js';
import { printHostConfig } from '../../main/mcp/host-config.js';
import { isCountersignError } from '../../shared/errors.js';
import { tempDir } from '../helpers/harness.js';
import { MAPS } from '../helpers/mcp-harness.js';
import { requiredOf } from '../../main/mcp/proxy.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    return isCountersignError(error) ? `${error.code}: ${error.message}` : String(error);
  }
  return undefined;
};

describe('mapping file', () => {
  const base = { server: 'files', audience: 'mcp:files', tools: { write_file: { tool: 'fs.write', roles: { path: 'path' } } } };

  it('turns a mapped call into the Countersign tool with the canonical arguments, annotations and role values', () => {
    const call = mapCall(
      parseMapping(base),
      'write_file',
      { path: '/srv/a.md', content: 'x', z: 1 },
      { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    );
    expect(call).toEqual({
      tool: 'fs.write',
      dataClass: 'unclassified',
      jurisdiction: 'US',
      treatment: 'policy',
      mapped: true,
      audience: 'mcp:files',
      params: {
        server: 'files',
        tool: 'write_file',
        arguments: '{"content":"x","path":"/srv/a.md","z":1}',
        readOnly: false,
        destructive: true,
        idempotent: true,
        openWorld: false,
        path: '/srv/a.md',
      },
    });
  });

  it('treats a tool that says nothing about itself as destructive and open-world', () => {
    const call = mapCall(parseMapping(base), 'write_file', { path: 'a' }, undefined);
    expect(call.params).toMatchObject({ readOnly: false, destructive: true, idempotent: false, openWorld: true });
  });

  it('sends an unmapped tool as refused by default, or as the unmapped tool needing approval, never as policy-decided', () => {
    expect(mapCall(parseMapping(base), 'delete_everything', {}, undefined)).toMatchObject({ treatment: 'deny', mapped: false });
    const held = mapCall(parseMapping({ ...base, unmapped: 'approval' }), 'delete_everything', { all: true }, undefined);
    expect(held).toMatchObject({ tool: 'mcp.unmapped', treatment: 'approval', mapped: false, audience: 'mcp:unmapped' });
    expect(held.params.arguments).toBe('{"all":true}');
    expect(codeOf(() => parseMapping({ ...base, unmapped: 'allow' }))).toMatch(/^config_invalid: .* at unmapped/);
  });

  it('renders numeric roles as decimal text for Cedar, and refuses roles it cannot render', () => {
    const mapping = parseMapping({ ...base, tools: { pay: { tool: 'payments.pay', roles: { amount: 'value', payee: 'to' } } } });
    expect(mapCall(mapping, 'pay', { value: 12, to: 'Acme' }, undefined).params).toMatchObject({ amount: '12.0', payee: 'Acme' });
    expect(mapCall(mapping, 'pay', { value: 12.5, to: 'Acme' }, undefined).params.amount).toBe('12.5');
    expect(codeOf(() => mapCall(mapping, 'pay', { value: { nested: 1 }, to: 'Acme' }, undefined))).toMatch(/^invalid_params: .*"value"/);
    expect(codeOf(() => mapCall(mapping, 'pay', { value: 1e-7, to: 'Acme' }, undefined))).toMatch(/^invalid_params/);
  });

  it('refuses a role named like a member the proxy sets itself, and a tool name Countersign cannot take', () => {
    expect(codeOf(() => parseMapping({ ...base, tools: { w: { tool: 'fs.write', roles: { arguments: 'path' } } } }))).toMatch(
      /^config_invalid: .*"arguments" is a reserved name/,
    );
    expect(codeOf(() => parseMapping({ ...base, tools: { w: { tool: 'Write-File' } } }))).toMatch(/^config_invalid: .* at tools\.w\.tool/);
    expect(codeOf(() => parseMapping({ ...base, extra: 1 }))).toMatch(/^config_invalid/);
  });

  it('parses every mapping file shipped in examples/mcp', () => {
    for (const file of Object.values(MAPS)) expect(() => parseMapping(JSON.parse(readFileSync(file, 'utf8')))).not.toThrow();
  });
});

describe('hold store', () => {
  it('keeps held calls across a restart, and lets finished ones age out', () => {
    const dir = tempDir();
    dirs.push(dir);
    let now = 1_000_000;
    const file = join(dir, 'state', 'holds.json');
    const first = new HoldStore({ file, clock: () => now, doneRetentionMs: 60_000 });
    first.set('agent:digest-a', 'req_a', 'held');
    first.set('agent:digest-b', 'req_b', 'done', { content: [] });
    const second = new HoldStore({ file, clock: () => now, doneRetentionMs: 60_000 });
    expect(second.get('agent:digest-a')).toMatchObject({ requestId: 'req_a', state: 'held' });
    expect(second.get('agent:digest-b')).toMatchObject({ requestId: 'req_b', state: 'done', result: { content: [] } });
    now += 61_000;
    expect(second.get('agent:digest-b')).toBeUndefined();
    expect(second.get('agent:digest-a')).toMatchObject({ state: 'held' });
  });

  it('does not keep a result larger than its cap (a retry is then told the call already ran)', () => {
    const store = new HoldStore({ maxResultBytes: 100 });
    store.set('k', 'req_1', 'done', { content: [{ type: 'text', text: 'x'.repeat(200) }] });
    expect(store.get('k')).toMatchObject({ state: 'done' });
    expect(store.get('k')?.result).toBeUndefined();
  });

  it('refuses a damaged state file instead of silently forgetting the holds in it', () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'holds.json');
    writeFileSync(file, '{"entries": [');
    expect(codeOf(() => new HoldStore({ file }))).toMatch(/^config_invalid: .*not valid JSON/);
    writeFileSync(file, '{"version": 1}');
    expect(codeOf(() => new HoldStore({ file }))).toMatch(/^config_invalid: .*no entries list/);
  });
});

describe('host configuration snippet', () => {
  const input = {
    name: 'files',
    agentKeyFile: '/keys/proxy.key',
    mapFile: '/etc/cs/files.json',
    countersignUrl: undefined,
    domain: undefined,
    downstream: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/srv'] },
  };

  it('prints an mcpServers entry that starts the server through the proxy', () => {
    expect(JSON.parse(printHostConfig('claude-desktop', input))).toEqual({
      mcpServers: {
        files: {
          command: 'countersign',
          args: [
            'mcp-proxy',
            '--agent',
            '/keys/proxy.key',
            '--map',
            '/etc/cs/files.json',
            '--',
            'npx',
            '-y',
            '@modelcontextprotocol/server-filesystem',
            '/srv',
          ],
        },
      },
    });
    expect(JSON.parse(printHostConfig('vscode', { ...input, downstream: { url: 'https://tools.example/mcp' } }))).toEqual({
      servers: {
        files: {
          type: 'stdio',
          command: 'countersign',
          args: ['mcp-proxy', '--agent', '/keys/proxy.key', '--map', '/etc/cs/files.json', '--url', 'https://tools.example/mcp'],
        },
      },
    });
  });

  it('refuses a host it does not know', () => {
    expect(codeOf(() => printHostConfig('emacs', input))).toMatch(/^config_invalid: unknown host "emacs"/);
  });
});

describe('countersign mcp-proxy --print-config with a hub over TLS', () => {
  /** Runs the CLI command in this process and returns what it printed on stdout. */
  async function printed(argv: string[]): Promise<{ args: string[]; out: string }> {
    let out = '';
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      expect(await mcpProxyCommand(argv)).toBe(0);
    } finally {
      write.mockRestore();
    }
    const config = JSON.parse(out) as { mcpServers: Record<string, { args: string[] }> };
    return { args: Object.values(config.mcpServers)[0]?.args ?? [], out };
  }
  const base = ['--print-config', 'claude-desktop', '--agent', '/keys/proxy.key', '--map', MAPS.payments];
  const server = ['--', 'node', 'payments-server.js'];

  it('carries the CA file (as an absolute path) and the pinned fingerprint into the host entry', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const cert = await loadOrCreateDevCertificate(dir, 'countersign.example');
    const caFile = join(dir, 'countersign-dev.crt');
    writeFileSync(caFile, cert.cert);
    const bare = cert.fingerprint256.replaceAll(':', '').toLowerCase();
    const { args } = await printed([
      ...base,
      '--countersign',
      'wss://countersign.example:7345',
      '--countersign-ca',
      relative(process.cwd(), caFile),
      '--countersign-fingerprint',
      bare,
      ...server,
    ]);
    expect(args.slice(args.indexOf('--countersign'), args.indexOf('--'))).toEqual([
      '--countersign',
      'wss://countersign.example:7345',
      '--countersign-ca',
      caFile,
      '--countersign-fingerprint',
      cert.fingerprint256, // the form the hub prints: upper case, colon-separated
    ]);
    expect(args.slice(args.indexOf('--'))).toEqual(['--', 'node', 'payments-server.js']);
  });

  it("takes them from COUNTERSIGN_URL / COUNTERSIGN_CA / COUNTERSIGN_FINGERPRINT when not given, since the host's process lacks that environment", async () => {
    const pin = 'ab'.repeat(32);
    vi.stubEnv('COUNTERSIGN_FINGERPRINT', pin);
    vi.stubEnv('COUNTERSIGN_URL', 'wss://countersign.example:7345');
    try {
      const { args } = await printed([...base, ...server]);
      // A pin without the hub it pins would send the proxy to the default loopback gateway.
      expect(args[args.indexOf('--countersign') + 1]).toBe('wss://countersign.example:7345');
      expect(args).toContain('--countersign-fingerprint');
      expect(args[args.indexOf('--countersign-fingerprint') + 1]).toBe(pin.toUpperCase().match(/../g)!.join(':'));
      expect(args).not.toContain('--countersign-ca');
    } finally {
      vi.unstubAllEnvs();
    }
    const { args } = await printed([...base, ...server]);
    expect(args.filter((a) => a.startsWith('--countersign'))).toEqual([]);
  });

  it('refuses a malformed fingerprint or an unreadable CA file before printing anything', async () => {
    let out = '';
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      await expect(mcpProxyCommand([...base, '--countersign-fingerprint', 'not-a-fingerprint', ...server])).rejects.toMatchObject({
        code: 'config_invalid',
      });
      await expect(mcpProxyCommand([...base, '--countersign-ca', '/nonexistent/ca.pem', ...server])).rejects.toMatchObject({
        code: 'file_not_found',
      });
    } finally {
      write.mockRestore();
    }
    expect(out).toBe('');
  });
});

describe('the MCP proxy progress count', () => {
  const window = { ttlSeconds: 600, userVerification: 'required' as const, expiresAt: 0 };

  it('counts one person per group list, not the bare approvals number ("of 2" for one approval from [a] and [b])', () => {
    expect(requiredOf({ approvals: 1, groups: [['a'], ['b']], ...window })).toBe(2);
  });

  it("takes the gateway's required when it sends one", () => {
    expect(requiredOf({ approvals: 1, groups: [], required: 3, ...window })).toBe(3);
  });

  it('needs one person for a zero quorum or a missing requirement', () => {
    expect(requiredOf({ approvals: 0, groups: [], ...window })).toBe(1);
    expect(requiredOf(undefined)).toBe(1);
  });
});
