/**
 * `countersign mcp-proxy` end to end with real parts only: a real Countersign (SQLite, Cedar,
 * WebSocket gateway, virtual approvers) on the examples/mcp policy pack; the reference MCP servers
 * `@modelcontextprotocol/server-filesystem` and `server-everything` plus the example payments
 * server; and an agent host made of the MCP SDK's real client, which starts the proxy CLI over
 * stdio the way a desktop host does. Side effects are checked on the servers' side (files on
 * disk, the payments ledger), never by trusting the proxy's answer.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { AgentClient } from '../../shared/agent-client.js';
import { computeCallDigest } from '../../shared/approval-token.js';
import { mapCall, parseMapping } from '../../main/mcp/mapping.js';
import { APPROVAL_META_KEY, McpProxy, OUTCOME_META_KEY, type CallStage } from '../../main/mcp/proxy.js';
import { nodeWebSocket } from '../helpers/harness.js';
import {
  EVERYTHING_SERVER,
  FILESYSTEM_SERVER,
  MAPS,
  PAYMENTS_SERVER,
  PROXY_AGENT,
  startHost,
  startInProcessHost,
  startMcpHarness,
  type Host,
  type McpHarness,
  withholdSubmitAnswers,
} from '../helpers/mcp-harness.js';

let m: McpHarness;
let caseNo = 0;
const hosts: Host[] = [];

// Each case starts real MCP servers (and some the proxy CLI) as processes: generous timeouts
// for loaded machines; nothing here asserts on time.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

beforeAll(async () => {
  m = await startMcpHarness({ gateway: { maxMessageBytes: 4 * 1024 * 1024 } });
});
afterAll(async () => {
  for (const host of hosts) await host.close().catch(() => undefined);
  await m.close();
});

/** A fresh folder and proxy state file per case, so cases never see each other's holds. */
function caseDir(): { dir: string; stateFile: string } {
  const dir = join(m.dir, `case-${++caseNo}`);
  mkdirSync(join(dir, 'files'), { recursive: true });
  return { dir: join(dir, 'files'), stateFile: join(dir, 'proxy-state.json') };
}

/** A host that starts the proxy CLI over stdio, exactly as a desktop host does. */
async function cliHost(options: Parameters<typeof startHost>[1]): Promise<Host> {
  const h = await startHost(m, options);
  hosts.push(h);
  return h;
}

/** A host linked to the same proxy running in this process (cheaper to start). */
async function host(options: Parameters<typeof startInProcessHost>[1]): Promise<Host> {
  const h = await startInProcessHost(m, options);
  hosts.push(h);
  return h;
}

const textOf = (result: CallToolResult): string => result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
const outcomeOf = (result: CallToolResult) => result._meta?.[OUTCOME_META_KEY] as { code: string; requestId?: string } | undefined;

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const fsServer = (dir: string) => ['node', FILESYSTEM_SERVER, dir];

describe('mcp-proxy in front of the reference filesystem server', () => {
  it("lists the server's tools unchanged: names, descriptions, schemas and annotations", async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await cliHost({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const direct = new Client({ name: 'direct', version: '1.0.0' });
    await direct.connect(new StdioClientTransport({ command: 'node', args: [FILESYSTEM_SERVER, dir], stderr: 'pipe' }));
    try {
      const [viaProxy, straight] = [await proxied.client.listTools(undefined, { timeout: 120_000 }), await direct.listTools()];
      expect(viaProxy.tools.length).toBeGreaterThan(5);
      expect(viaProxy.tools).toEqual(straight.tools);
      expect(viaProxy.tools.find((t) => t.name === 'write_file')?.annotations).toMatchObject({
        destructiveHint: true,
        readOnlyHint: false,
      });
    } finally {
      await direct.close();
    }
  });

  it("forwards an allowed call and returns the server's own result", async () => {
    const { dir, stateFile } = caseDir();
    writeFileSync(join(dir, 'notes.txt'), 'the quarterly numbers are in\n');
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const result = await proxied.client.callTool({ name: 'read_text_file', arguments: { path: join(dir, 'notes.txt') } });
    expect(result.isError ?? false).toBe(false);
    expect(textOf(result)).toContain('the quarterly numbers are in');
  });

  it('returns a tool error for a denied call, without policy internals, and the server never writes the file', async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const target = join(dir, 'secret-keys.txt');
    const result = await proxied.client.callTool({ name: 'write_file', arguments: { path: target, content: 'AKIA...' } });
    expect(result.isError).toBe(true);
    expect(outcomeOf(result)?.code).toBe('mcp_call_denied');
    expect(outcomeOf(result)?.requestId).toMatch(/^req_/);
    expect(textOf(result)).toMatch(/policy does not allow this call/);
    // No policy ids, reasons or hashes reach the model.
    expect(textOf(result)).not.toMatch(/no-secret-files|guardrails|look like secrets|sha256/);
    expect(existsSync(target)).toBe(false);
  });

  it('refuses an unmapped tool without asking Countersign, and the server never acts', async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const before = (await m.api('/api/approvals/pending')).json.total;
    const result = await proxied.client.callTool({ name: 'create_directory', arguments: { path: join(dir, 'made-by-agent') } });
    expect(result.isError).toBe(true);
    expect(outcomeOf(result)?.code).toBe('mcp_tool_refused');
    expect(existsSync(join(dir, 'made-by-agent'))).toBe(false);
    expect((await m.api('/api/approvals/pending')).json.total).toBe(before);
  });

  it('holds a write for two approvers, reports "0 of 2", "1 of 2" then "2 of 2" progress to the host, in order, then writes once', async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const target = join(dir, 'plan.md');
    // Everything the host's SDK client hands to onprogress, and where the result landed among it.
    const seen: Array<{ progress: number; total?: number; message?: string } | 'result'> = [];
    const call = proxied.client
      .callTool(
        { name: 'write_file', arguments: { path: target, content: '# Plan\n' } },
        {
          onprogress: (p) => seen.push({ progress: p.progress, total: p.total, message: p.message }),
          resetTimeoutOnProgress: true,
        },
      )
      .then((result) => {
        seen.push('result');
        return result;
      });
    const progress = () => seen.flatMap((s) => (s === 'result' ? [] : [s]));
    const held = await waitFor(
      async () => (await m.pending()).find((p) => p.tool === 'fs.write' && p.params.path === target),
      'the held write',
    );
    // The approvers see the exact MCP arguments they are approving.
    expect(JSON.parse(held.params.arguments as string)).toEqual({ path: target, content: '# Plan\n' });
    const waiting = (n: number) =>
      `waiting for 2 approvers: ${n} of 2 (request ${held.requestId}; approvers decide in http://127.0.0.1:${m.h.app.port}/ui/)`;
    await waitFor(() => progress().find((p) => p.message === waiting(0)), 'the first progress notification');
    expect(existsSync(target)).toBe(false);
    expect(await m.approve(held.requestId, 'alice')).toMatchObject({ state: 'pending' });
    await waitFor(() => progress().find((p) => p.message === waiting(1)), 'progress after the first approval');
    expect(existsSync(target)).toBe(false);
    expect(await m.approve(held.requestId, 'bob')).toMatchObject({ state: 'approved' });
    const result = await call;
    expect(result.isError ?? false).toBe(false);
    expect(readFileSync(target, 'utf8')).toBe('# Plan\n');

    // Every notification reached the real client before the result, counted out of 2, and growing
    // (MCP requires progress to increase; heartbeats add fractions below the next approval).
    expect(seen.at(-1)).toBe('result');
    const all = progress();
    expect(all.every((p) => p.total === 2)).toBe(true);
    for (let i = 1; i < all.length; i++) expect(all[i]!.progress).toBeGreaterThan(all[i - 1]!.progress);
    // Its messages, repeats (heartbeats) folded: 0 of 2, 1 of 2, then the quorum complete.
    const steps = all.map((p) => p.message).filter((message, i, list) => message !== list[i - 1]);
    expect(steps).toEqual([waiting(0), waiting(1), `approved: 2 of 2 (request ${held.requestId})`]);
    expect(all.at(-1)!.progress).toBe(2);
    expect(all.filter((p) => p.message === waiting(1)).every((p) => p.progress >= 1 && p.progress < 2)).toBe(true);
  });

  it('tells the host when an approver declines a held call, and nothing is written', async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const target = join(dir, 'declined.md');
    const call = proxied.client.callTool({ name: 'write_file', arguments: { path: target, content: 'x' } });
    const held = await waitFor(async () => (await m.pending()).find((p) => p.params.path === target), 'the held write');
    await m.approve(held.requestId, 'alice', 'deny');
    const result = await call;
    expect(outcomeOf(result)).toEqual({ code: 'mcp_call_denied', requestId: held.requestId });
    expect(textOf(result)).toMatch(/An approver declined this call/);
    expect(existsSync(target)).toBe(false);
  });

  it('drops a held record naming a request Countersign does not know, and decides the call afresh', async () => {
    const { dir, stateFile } = caseDir();
    writeFileSync(join(dir, 'a.txt'), 'fresh');
    const args = { path: join(dir, 'a.txt') };
    // The record a previous proxy would have left, for a request of another data directory.
    const call = mapCall(parseMapping(JSON.parse(readFileSync(MAPS.filesystem, 'utf8'))), 'read_text_file', args, {
      readOnlyHint: true,
      openWorldHint: false,
    });
    const key = `${PROXY_AGENT}:${await computeCallDigest(call.tool, call.params)}`;
    writeFileSync(
      stateFile,
      JSON.stringify({
        version: 1,
        entries: [{ key, requestId: 'req_from_elsewhere', state: 'held', createdAt: Date.now(), updatedAt: Date.now() }],
      }),
    );
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile });
    const result = await proxied.client.callTool({ name: 'read_text_file', arguments: args });
    expect(textOf(result)).toContain('fresh');
    expect(readFileSync(stateFile, 'utf8')).not.toContain('req_from_elsewhere');
  });

  it('fails closed with a clear error when Countersign is unreachable, and the server never acts', async () => {
    const { dir, stateFile } = caseDir();
    writeFileSync(join(dir, 'a.txt'), 'hello');
    const proxied = await host({ map: MAPS.filesystem, server: fsServer(dir), stateFile, countersignUrl: 'ws://127.0.0.1:9' });
    const read = await proxied.client.callTool({ name: 'read_text_file', arguments: { path: join(dir, 'a.txt') } });
    expect(read.isError).toBe(true);
    expect(outcomeOf(read)?.code).toBe('mcp_countersign_unavailable');
    expect(textOf(read)).toMatch(/cannot be reached/);
    expect(textOf(read)).not.toContain('hello');
    const write = await proxied.client.callTool({ name: 'write_file', arguments: { path: join(dir, 'b.txt'), content: 'x' } });
    expect(outcomeOf(write)?.code).toBe('mcp_countersign_unavailable');
    expect(existsSync(join(dir, 'b.txt'))).toBe(false);
  });
});

describe('mcp-proxy in front of the reference "everything" server', () => {
  it('passes large arguments through, and refuses arguments over its limit before asking anyone', async () => {
    const { stateFile } = caseDir();
    const proxied = await host({
      map: MAPS.everything,
      server: ['node', EVERYTHING_SERVER, 'stdio'],
      stateFile,
      maxArgumentBytes: 2_000_000,
    });
    const message = 'x'.repeat(600_000);
    const echoed = await proxied.client.callTool({ name: 'echo', arguments: { message } });
    expect(echoed.isError ?? false).toBe(false);
    expect(textOf(echoed)).toContain(message);
    const tooLarge = await proxied.client.callTool({ name: 'echo', arguments: { message: 'y'.repeat(2_100_000) } });
    expect(tooLarge.isError).toBe(true);
    expect(outcomeOf(tooLarge)?.code).toBe('frame_too_large');
  });

  it('answers with a tool error when the server crashes mid-call, and keeps answering afterwards', async () => {
    const { stateFile } = caseDir();
    const proxied = await host({ map: MAPS.everything, server: ['node', EVERYTHING_SERVER, 'stdio'], stateFile });
    const call = proxied.client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
      { timeout: 60_000 },
    );
    const server = await waitFor(() => proxied.proxy?.downstreamPid ?? undefined, 'the everything server process');
    // Let the call reach the server (its answer is the same if it had not yet).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    process.kill(server, 'SIGKILL');
    const result = await call;
    expect(result.isError).toBe(true);
    expect(outcomeOf(result)?.code).toBe('mcp_downstream_failed');
    const after = await proxied.client.callTool({ name: 'echo', arguments: { message: 'still there?' } });
    expect(outcomeOf(after)?.code).toBe('mcp_downstream_failed');
    expect(textOf(after)).toMatch(/not running/);
  });
});

describe('mcp-proxy in front of a Streamable HTTP server', () => {
  it('lists and calls the "everything" server over Streamable HTTP, gated the same way', async () => {
    const { stateFile } = caseDir();
    // The reference server reads its port from PORT only: take a free one from the kernel.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address() as AddressInfo;
        probe.close(() => resolve(address.port));
      });
    });
    const child = spawn('node', [EVERYTHING_SERVER, 'streamableHttp'], {
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let log = '';
      child.stderr.on('data', (chunk: Buffer) => {
        log += chunk.toString('utf8');
      });
      await waitFor(() => (log.includes('listening on port') ? true : undefined), 'the HTTP server to listen');
      const mapping = parseMapping(JSON.parse(readFileSync(MAPS.everything, 'utf8')));
      const proxy = await McpProxy.start({
        agentId: PROXY_AGENT,
        key: m.key,
        countersignUrl: m.h.app.url,
        mapping,
        domain: 'test',
        stateFile,
        downstream: { url: `http://127.0.0.1:${port}/mcp` },
      });
      const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
      await proxy.createServer().connect(proxySide);
      const client = new Client({ name: 'test-host', version: '1.0.0' });
      await client.connect(hostSide);
      try {
        expect((await client.listTools()).tools.find((t) => t.name === 'echo')?.annotations).toMatchObject({ readOnlyHint: true });
        const echoed = await client.callTool({ name: 'echo', arguments: { message: 'over http' } });
        expect(textOf(echoed)).toContain('over http');
        // get-env is not in the mapping, and this mapping holds unmapped tools for a person.
        const progress: string[] = [];
        const held = client.callTool({ name: 'get-env', arguments: {} }, { onprogress: (p) => progress.push(p.message ?? '') });
        const request = await waitFor(
          async () => (await m.pending()).find((p) => p.tool === 'mcp.unmapped' && p.params.tool === 'get-env'),
          'the held unmapped call',
        );
        await waitFor(() => progress.find((p) => p.startsWith('waiting for 1 approver')), 'hold progress');
        await m.approve(request.requestId, 'alice');
        const result = await held;
        expect(result.isError ?? false, textOf(result)).toBe(false);
        expect(textOf(result)).toContain('PATH');
      } finally {
        await client.close();
        await proxy.close();
      }
    } finally {
      child.kill();
    }
  });

  it('refuses a tool whose treatment is approval when policy allowed it without anyone', async () => {
    const { stateFile } = caseDir();
    const mapping = parseMapping({
      ...(JSON.parse(readFileSync(MAPS.everything, 'utf8')) as object),
      tools: { echo: { tool: 'demo.echo', treatment: 'approval' } },
    });
    const proxy = await McpProxy.start({
      agentId: PROXY_AGENT,
      key: m.key,
      countersignUrl: m.h.app.url,
      mapping,
      domain: 'test',
      stateFile,
      downstream: { command: 'node', args: [EVERYTHING_SERVER, 'stdio'] },
    });
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await proxy.createServer().connect(proxySide);
    const client = new Client({ name: 'test-host', version: '1.0.0' });
    await client.connect(hostSide);
    try {
      const result = await client.callTool({ name: 'echo', arguments: { message: 'should not echo' } });
      expect(outcomeOf(result)?.code).toBe('mcp_approval_required');
      expect(textOf(result)).not.toContain('should not echo');
    } finally {
      await client.close();
      await proxy.close();
    }
  });
});

describe('mcp-proxy with the example payments server (token checked on the server side)', () => {
  const ledgerOf = (dir: string) => join(dir, 'ledger.jsonl');
  const paymentsServer = (dir: string) => ({
    server: ['node', '--import', 'tsx', PAYMENTS_SERVER],
    env: {
      COUNTERSIGN_JWKS_URL: `http://127.0.0.1:${m.h.app.port}/.well-known/jwks.json`,
      COUNTERSIGN_DOMAIN: 'test',
      PAYMENTS_LEDGER: ledgerOf(dir),
    },
  });
  const ledgerLines = (dir: string) =>
    existsSync(ledgerOf(dir)) ? readFileSync(ledgerOf(dir), 'utf8').trim().split('\n').filter(Boolean) : [];

  it('a small payment runs at once; the server verified the token carried in _meta', async () => {
    const { dir, stateFile } = caseDir();
    const proxied = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir) });
    const result = await proxied.client.callTool({ name: 'pay', arguments: { amount: '12.50', payee: 'Acme Ltd' } });
    expect(textOf(result)).toMatch(/^paid "12.50" to "Acme Ltd" \(approved by Countersign request req_/);
    expect(ledgerLines(dir)).toHaveLength(1);
  });

  it('the host disconnects while a call is held; the retried call finds the same request and the payment runs once', async () => {
    const { dir, stateFile } = caseDir();
    const args = { amount: '250.00', payee: 'Initech LLC' };
    const first = await cliHost({ map: MAPS.payments, stateFile, ...paymentsServer(dir) });
    const firstProgress: string[] = [];
    const abandoned = first.client
      .callTool({ name: 'pay', arguments: args }, { timeout: 120_000, onprogress: (p) => firstProgress.push(p.message ?? '') })
      .catch((error: unknown) => error);
    const held = await waitFor(
      async () => (await m.pending()).find((p) => p.tool === 'payments.pay' && p.params.payee === 'Initech LLC'),
      'the held payment',
    );
    // The host leaves once it has been told the call is held (the proxy records the hold when the
    // answer reaches it, before its first progress; the core lists the request a moment earlier).
    await waitFor(() => firstProgress.find((p) => p.includes(held.requestId)), 'the first host told the call is held');
    await first.close(); // the host goes away: the proxy and its server stop
    await abandoned;

    const second = await cliHost({ map: MAPS.payments, stateFile, ...paymentsServer(dir) });
    const progress: string[] = [];
    const retried = second.client.callTool(
      { name: 'pay', arguments: args },
      { timeout: 120_000, resetTimeoutOnProgress: true, onprogress: (p) => progress.push(p.message ?? '') },
    );
    // The retried call is waiting on the first call's request, not on a new one.
    const waiting = await waitFor(
      () => progress.find((p) => p.startsWith('waiting for 1 approver: 0 of 1')),
      'the retried call to be held',
    );
    expect(waiting).toContain(held.requestId);
    expect(
      (await m.pending()).filter((p) => p.tool === 'payments.pay' && p.params.payee === 'Initech LLC').map((p) => p.requestId),
    ).toEqual([held.requestId]);
    expect(await m.approve(held.requestId, 'carol')).toMatchObject({ state: 'approved' });
    const result = await retried;
    expect(textOf(result)).toContain(`approved by Countersign request ${held.requestId}`);
    expect(ledgerLines(dir)).toHaveLength(1);

    // The same call again within the retry window gets the recorded result, not a second payment.
    const again = await second.client.callTool({ name: 'pay', arguments: args }, { timeout: 120_000 });
    expect(textOf(again)).toBe(textOf(result));
    expect(ledgerLines(dir)).toHaveLength(1);
  });

  // The hold-recording window: Countersign has committed the held request, but its answer has
  // not reached the proxy (so the proxy has no request id to record) when the host leaves. The
  // seam (withholdSubmitAnswers) holds that answer back on the proxy's real socket, so the race
  // happens every run instead of under load only.
  it('the host leaves before the held answer reaches the proxy and the proxy stops; the retry joins the same prompt and the payment runs once', async () => {
    const { dir, stateFile } = caseDir();
    const args = { amount: '260.00', payee: 'Initech LLC' };
    const seam = withholdSubmitAnswers();
    const first = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir), webSocket: seam.factory });
    const abandoned = first.client.callTool({ name: 'pay', arguments: args }, { timeout: 120_000 }).catch((error: unknown) => error);
    await seam.withheld; // committed by Countersign, answer held back at the proxy's socket
    const held = (await m.pending()).find((p) => p.tool === 'payments.pay' && p.params.amount === '260.00');
    expect(held).toBeDefined();
    await first.close(); // the host goes away and its proxy with it, before the answer is read
    await abandoned;
    // Nothing but the session was recorded: the proxy never learned the request id.
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { session: string; entries: unknown[] };
    expect(state.entries).toEqual([]);
    expect(state.session).toMatch(/^mcp-[0-9a-f]{16}$/);

    const second = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir) });
    const progress: string[] = [];
    const retried = second.client.callTool(
      { name: 'pay', arguments: args },
      { timeout: 120_000, resetTimeoutOnProgress: true, onprogress: (p) => progress.push(p.message ?? '') },
    );
    // Signed byte-equal to the first attempt (same session), so Countersign holds it in the first
    // request's group: one prompt for approvers, and the host is told which request it joined.
    const waiting = await waitFor(
      () => progress.find((p) => p.startsWith('waiting for 1 approver: 0 of 1')),
      'the retried call to be held',
    );
    expect(waiting).toContain(`asked together with the identical request ${held!.requestId}: approvers decide once for all 2`);
    const prompts = ((await m.api('/api/approvals/pending')).json.pending as Array<Record<string, unknown>>).filter(
      (p) => p.tool === 'payments.pay' && (p.params as Record<string, unknown>).amount === '260.00',
    );
    expect(prompts.map((p) => [p.requestId, p.count])).toEqual([[held!.requestId, 2]]);
    const follower = (prompts[0]?.followers as string[])[0];
    expect(waiting).toContain(`request ${follower}`);

    expect(await m.approve(held!.requestId, 'carol')).toMatchObject({ state: 'approved' });
    const result = await retried;
    expect(textOf(result)).toContain(`approved by Countersign request ${follower}`);
    expect(ledgerLines(dir)).toHaveLength(1);
  });

  it('the host cancels before the held answer reaches the proxy; its retry waits for that answer and finds the one request', async () => {
    const { dir, stateFile } = caseDir();
    const args = { amount: '270.00', payee: 'Initech LLC' };
    const seam = withholdSubmitAnswers();
    let prepared = 0;
    const h = await host({
      map: MAPS.payments,
      stateFile,
      ...paymentsServer(dir),
      webSocket: seam.factory,
      onStage: (stage) => {
        if (stage === 'prepared') prepared++;
      },
    });
    const cancel = new AbortController();
    const cancelled = h.client
      .callTool({ name: 'pay', arguments: args }, { timeout: 120_000, signal: cancel.signal })
      .catch((error: unknown) => error);
    await seam.withheld;
    cancel.abort(); // the SDK client sends notifications/cancelled to the proxy
    expect(await cancelled).toBeInstanceOf(Error);

    const progress: string[] = [];
    const retried = h.client.callTool(
      { name: 'pay', arguments: args },
      { timeout: 120_000, resetTimeoutOnProgress: true, onprogress: (p) => progress.push(p.message ?? '') },
    );
    // The retry is inside the window (it reached the proxy's handler; the first answer is still held back).
    await waitFor(() => (prepared === 2 ? true : undefined), 'the retry to reach the proxy');
    seam.release();
    const waiting = await waitFor(() => progress.find((p) => p.startsWith('waiting for 1 approver: 0 of 1')), 'the retry held');
    const prompts = (await m.pending()).filter((p) => p.tool === 'payments.pay' && p.params.amount === '270.00');
    expect(prompts).toHaveLength(1);
    expect(waiting).toContain(`request ${prompts[0]!.requestId};`);
    expect(seam.submits()).toBe(1);

    expect(await m.approve(prompts[0]!.requestId, 'carol')).toMatchObject({ state: 'approved' });
    expect(textOf(await retried)).toContain(`approved by Countersign request ${prompts[0]!.requestId}`);
    expect(ledgerLines(dir)).toHaveLength(1);
    expect(seam.submits()).toBe(1);
  });

  // A retry of a call decided while its host was away: it gets that decision, never a second
  // prompt or a second run. The proxy stopping inside the recording window waits (closeDrainMs)
  // for the answers on their way, so the holds are recorded even though approvers decide (which
  // seals and ends the groups a byte-equal retry could otherwise join) before the retry comes.
  it('the host leaves before the held answers reach the proxy and approvers decide both meanwhile; the retries get the approval (run once) and the denial, with no new prompt', async () => {
    const { dir, stateFile } = caseDir();
    const approved = { amount: '290.00', payee: 'Initech LLC' };
    const declined = { amount: '291.00', payee: 'Initech LLC' };
    const seam = withholdSubmitAnswers();
    const first = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir), webSocket: seam.factory });
    const abandoned = [approved, declined].map((args) =>
      first.client.callTool({ name: 'pay', arguments: args }, { timeout: 120_000 }).catch((error: unknown) => error),
    );
    const requestOf = async (amount: string) =>
      (await m.pending()).find((p) => p.tool === 'payments.pay' && p.params.amount === amount)?.requestId;
    await seam.withheld;
    const approvedId = await waitFor(() => requestOf('290.00'), 'the first held payment');
    const declinedId = await waitFor(() => requestOf('291.00'), 'the second held payment');
    const stopping = first.close(); // the host leaves; the proxy stops once the answers are in
    for (const call of abandoned) expect(await call).toBeInstanceOf(Error);
    expect(await m.approve(approvedId, 'carol')).toMatchObject({ state: 'approved' });
    expect(await m.approve(declinedId, 'carol', 'deny')).toMatchObject({ state: 'denied' });
    seam.release(); // the answers (both "pending") reach the stopping proxy
    await stopping;
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as { entries: Array<{ requestId: string; state: string }> };
    expect(state.entries.map((e) => [e.requestId, e.state]).sort()).toEqual(
      [
        [approvedId, 'held'],
        [declinedId, 'held'],
      ].sort(),
    );

    const counting = withholdSubmitAnswers();
    counting.release(); // counts the proxy's submits, holds nothing back
    const second = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir), webSocket: counting.factory });
    const paid = await second.client.callTool({ name: 'pay', arguments: approved }, { timeout: 120_000 });
    expect(textOf(paid)).toContain(`paid "290.00" to "Initech LLC" (approved by Countersign request ${approvedId}`);
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await second.client.callTool({ name: 'pay', arguments: declined }, { timeout: 120_000 });
      expect(outcomeOf(refused)).toEqual({ code: 'mcp_call_denied', requestId: declinedId });
      expect(textOf(refused)).toContain('An approver declined this call');
    }
    expect(counting.submits()).toBe(0);
    expect((await m.pending()).filter((p) => p.tool === 'payments.pay' && ['290.00', '291.00'].includes(String(p.params.amount)))).toEqual(
      [],
    );
    expect(ledgerLines(dir)).toEqual([expect.stringContaining('"290.00"')]);
  });

  // A retry waits on the first attempt's answer (in flight, or held for approvers); it must still
  // end on its own cancel. notifications/cancelled, the host's connection closing and the
  // client's own timeout all abort the same request signal in the SDK (Protocol._oncancel,
  // _onclose); the cases below use the first two.
  it("a retry waiting for the first attempt's answer ends at once on its own cancel; the abandoned call is neither submitted again nor run", async () => {
    const { dir, stateFile } = caseDir();
    const args = { amount: '13.00', payee: 'Acme Ltd' }; // allowed at once by the policy
    const seam = withholdSubmitAnswers();
    const stages: CallStage[] = [];
    const count = (stage: CallStage) => stages.filter((s) => s === stage).length;
    const h = await host({
      map: MAPS.payments,
      stateFile,
      ...paymentsServer(dir),
      webSocket: seam.factory,
      onStage: (s) => stages.push(s),
    });
    const firstCancel = new AbortController();
    const first = h.client
      .callTool({ name: 'pay', arguments: args }, { timeout: 120_000, signal: firstCancel.signal })
      .catch((error: unknown) => error);
    await seam.withheld; // decided by Countersign, its answer held back at the proxy's socket
    const retryCancel = new AbortController();
    const retry = h.client
      .callTool({ name: 'pay', arguments: args }, { timeout: 120_000, signal: retryCancel.signal })
      .catch((error: unknown) => error);
    await waitFor(() => (count('prepared') === 2 ? true : undefined), 'the retry to reach the proxy');
    retryCancel.abort(); // notifications/cancelled for the retry alone
    expect(await retry).toBeInstanceOf(Error);
    // The retry's handler ends while the first answer is still held back (it used to wait for it).
    await waitFor(() => (count('answered') === 1 ? true : undefined), "the retry's handler to end on its cancel");
    expect(count('decided')).toBe(0);
    firstCancel.abort();
    expect(await first).toBeInstanceOf(Error);
    await waitFor(() => (count('answered') === 2 ? true : undefined), "the first call's handler to end on its cancel");

    // The answer arrives after both hosts gave up: the allowed call is not forwarded, and nobody submits it again.
    seam.release();
    await waitFor(() => (count('decided') === 1 ? true : undefined), 'the withheld answer to reach the proxy');
    const fresh = await h.client.callTool({ name: 'pay', arguments: args }, { timeout: 120_000 });
    expect(textOf(fresh)).toMatch(/^paid "13.00" to "Acme Ltd"/);
    expect(seam.submits()).toBe(2); // the first attempt's and the fresh call's, none for the cancelled retry
    expect(ledgerLines(dir)).toHaveLength(1);
  });

  it('a retry that joined a held call ends alone on its own cancel, and keeps the call going when the first host leaves; one request, one payment', async () => {
    const { dir, stateFile } = caseDir();
    const args = { amount: '280.00', payee: 'Initech LLC' }; // held for a finance approver
    const stages: CallStage[] = [];
    const count = (stage: CallStage) => stages.filter((s) => s === stage).length;
    const h = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir), onStage: (s) => stages.push(s) });
    const firstProgress: string[] = [];
    const first = h.client
      .callTool({ name: 'pay', arguments: args }, { timeout: 120_000, onprogress: (p) => firstProgress.push(p.message ?? '') })
      .catch((error: unknown) => error);
    await waitFor(() => firstProgress.find((p) => p.startsWith('waiting for 1 approver: 0 of 1')), 'the first call held');
    // A second host connection to the same proxy (another window of the host, an HTTP session).
    const other = new Client({ name: 'test-host-2', version: '1.0.0' });
    const [otherSide, proxySide] = InMemoryTransport.createLinkedPair();
    await h.proxy!.createServer().connect(proxySide);
    await other.connect(otherSide);
    try {
      const cancelledProgress: string[] = [];
      const cancel = new AbortController();
      const cancelled = other
        .callTool(
          { name: 'pay', arguments: args },
          { timeout: 120_000, signal: cancel.signal, onprogress: (p) => cancelledProgress.push(p.message ?? '') },
        )
        .catch((error: unknown) => error);
      // Joined: told about the same hold under its own progress token.
      await waitFor(() => cancelledProgress.find((p) => p.startsWith('waiting for 1 approver')), 'the retry to join the hold');
      cancel.abort();
      expect(await cancelled).toBeInstanceOf(Error);
      await waitFor(() => (count('answered') === 1 ? true : undefined), 'the cancelled retry to end while the first still waits');

      const retryProgress: string[] = [];
      const retried = other.callTool(
        { name: 'pay', arguments: args },
        { timeout: 120_000, resetTimeoutOnProgress: true, onprogress: (p) => retryProgress.push(p.message ?? '') },
      );
      await waitFor(() => retryProgress.find((p) => p.startsWith('waiting for 1 approver')), 'the second retry to join the hold');
      await h.client.close(); // the first host goes away; the retry still waits
      expect(await first).toBeInstanceOf(Error);

      const prompts = (await m.pending()).filter((p) => p.tool === 'payments.pay' && p.params.amount === '280.00');
      expect(prompts).toHaveLength(1);
      expect(retryProgress.at(-1)).toContain(`request ${prompts[0]!.requestId};`);
      expect(await m.approve(prompts[0]!.requestId, 'carol')).toMatchObject({ state: 'approved' });
      expect(textOf(await retried)).toContain(`approved by Countersign request ${prompts[0]!.requestId}`);
      expect(retryProgress.at(-1)).toBe(`approved: 1 of 1 (request ${prompts[0]!.requestId})`);
      expect(ledgerLines(dir)).toHaveLength(1);
    } finally {
      await other.close();
    }
  });

  it('passes a tools/list change on to the host; a tool that appears at run time stays unmapped and is refused', async () => {
    const { dir, stateFile } = caseDir();
    const seen: string[][] = [];
    const proxied = await host({ map: MAPS.payments, stateFile, ...paymentsServer(dir), onToolsChanged: (names) => seen.push(names) });
    expect((await proxied.client.listTools()).tools.map((t) => t.name)).toEqual(['pay']);
    process.kill(proxied.proxy?.downstreamPid ?? -1, 'SIGUSR2');
    const names = await waitFor(() => seen.find((list) => list.includes('refund')), 'the tools/list_changed notification');
    expect(names.sort()).toEqual(['pay', 'refund']);
    const refund = await proxied.client.listTools();
    expect(refund.tools.find((t) => t.name === 'refund')?.annotations).toMatchObject({ destructiveHint: true });
    const result = await proxied.client.callTool({ name: 'refund', arguments: { requestId: 'req_x' } });
    expect(outcomeOf(result)?.code).toBe('mcp_tool_refused');
  });

  it('the example server refuses a token whose approved arguments differ from the call it receives', async () => {
    const { dir } = caseDir();
    // A valid token for a 50.00 payment, obtained the way the proxy obtains it.
    const mapping = parseMapping(JSON.parse(readFileSync(MAPS.payments, 'utf8')));
    const approved = mapCall(
      mapping,
      'pay',
      { amount: '50.00', payee: 'Acme Ltd' },
      { destructiveHint: true, readOnlyHint: false, idempotentHint: false, openWorldHint: true },
    );
    const agent = new AgentClient({ url: m.h.app.url, agentId: PROXY_AGENT, key: m.key, webSocket: nodeWebSocket, reconnect: false });
    const decision = await agent.submit({
      tool: approved.tool,
      params: approved.params,
      dataClass: approved.dataClass,
      jurisdiction: approved.jurisdiction,
      provenance: ['user'],
    });
    agent.close();
    expect(decision).toMatchObject({ decision: 'allow' });
    const meta = { [APPROVAL_META_KEY]: { token: decision.token, call: { tool: approved.tool, params: approved.params } } };

    // Straight to the server, as a tampering intermediary would: same token, 5,000.00 instead.
    const { server, env } = paymentsServer(dir);
    const direct = new Client({ name: 'tamperer', version: '1.0.0' });
    await direct.connect(
      new StdioClientTransport({
        command: server[0] ?? 'node',
        args: server.slice(1),
        env: { PATH: process.env.PATH ?? '', ...env },
        stderr: 'pipe',
      }),
    );
    try {
      const changed = await direct.callTool({ name: 'pay', arguments: { amount: '5000.00', payee: 'Acme Ltd' }, _meta: meta });
      expect(changed.isError).toBe(true);
      expect(textOf(changed)).toContain('token_digest_mismatch');
      const none = await direct.callTool({ name: 'pay', arguments: { amount: '50.00', payee: 'Acme Ltd' } });
      expect(textOf(none)).toContain('token_malformed');
      expect(ledgerLines(dir)).toHaveLength(0);
      // The untouched call passes once; the token is single use.
      const exact = await direct.callTool({ name: 'pay', arguments: { amount: '50.00', payee: 'Acme Ltd' }, _meta: meta });
      expect(textOf(exact)).toMatch(/^paid "50.00"/);
      const replay = await direct.callTool({ name: 'pay', arguments: { amount: '50.00', payee: 'Acme Ltd' }, _meta: meta });
      expect(textOf(replay)).toContain('token_replayed');
      expect(ledgerLines(dir)).toHaveLength(1);
    } finally {
      await direct.close();
    }
  });
});
