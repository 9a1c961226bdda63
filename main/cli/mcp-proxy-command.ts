/**
 * `countersign mcp-proxy`: put Countersign in front of an MCP server. Reads the agent key file
 * and the mapping file, starts the proxy (main/mcp/proxy.ts) and serves it to the agent host on
 * stdio. `--print-config HOST` prints the host configuration entry instead. docs/mcp.md.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { CountersignError } from '../../shared/errors.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { defaultDataDir } from '../core/config.js';
import { readAgentKeyFile } from './agent-key-file.js';
import { emptyMapping, parseMapping, type MappingFile } from '../mcp/mapping.js';
import { McpProxy, type Downstream } from '../mcp/proxy.js';
import { printHostConfig } from '../mcp/host-config.js';
import { listenMcpHttp, parseListenAddress } from '../mcp/http-listener.js';
import { readTlsTrust } from '../mcp/tls-trust.js';
import { nodeAgentKey } from '../mcp/node-signature.js';

export const MCP_PROXY_USAGE = `usage: countersign mcp-proxy --agent KEY_FILE [--map FILE] [--countersign URL] [--domain production|test]
                             [--state FILE] [--listen [HOST:]PORT] (-- COMMAND [ARGS...] | --url URL)
       countersign mcp-proxy --print-config HOST --agent KEY_FILE [--map FILE] [--name NAME] [--countersign URL]
                             [--countersign-ca FILE] [--countersign-fingerprint HEX] (-- COMMAND [ARGS...] | --url URL)

  Serves, on stdio, the tools of the MCP server started by COMMAND (or reached at the Streamable
  HTTP URL); every tools/call is decided by Countersign and forwarded only with a verified token.
  --agent        the agent key file written by \`countersign keygen\` (holds the agent id)
  --map          mapping file: MCP tool -> Countersign tool, data class, argument roles, treatment
                 (without one, every tool is unmapped and refused)
  --countersign  the agent gateway (default $COUNTERSIGN_URL or ws://127.0.0.1:7345; a hub: wss://NAME:PORT)
  --countersign-ca FILE  PEM CA (or the hub's own certificate) to trust for wss:// (default $COUNTERSIGN_CA)
  --countersign-fingerprint HEX
                 pin the hub certificate's SHA-256 fingerprint, as the hub prints it at start
                 (default $COUNTERSIGN_FINGERPRINT); without a CA file the pin alone is trusted
  --domain       token domain to accept (default production; test for \`countersign headless\`)
  --state        file recording held calls, so a retried call finds its request
                 (default <data dir>/mcp-proxy/<agent id>.<server>.json)
  --hold-poll-ms how often a held call re-reads its request and tells the host (default 2000)
  --max-argument-bytes  largest arguments accepted (default 49152; keep under the gateway's
                 maxMessageBytes)
  --listen       serve hosts over Streamable HTTP at http://HOST:PORT/mcp instead of stdio
                 (HOST defaults to 127.0.0.1; Host and Origin headers are checked)
  --allowed-host NAME    another Host header name to accept (repeatable; loopback names always)
  --allowed-origin NAME  an Origin host name to accept (repeatable; default loopback only)
  --max-body-bytes       largest HTTP request body (default 1048576)
  --print-config HOST   print the entry for HOST's configuration file: claude-desktop, cursor,
                 vscode or generic (an "mcpServers" entry); --countersign, --domain and the TLS
                 trust (--countersign-ca as an absolute path, --countersign-fingerprint; from
                 $COUNTERSIGN_URL / $COUNTERSIGN_CA / $COUNTERSIGN_FINGERPRINT when not given) are carried into it`;

export async function mcpProxyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      agent: { type: 'string' },
      'agent-id': { type: 'string' },
      map: { type: 'string' },
      countersign: { type: 'string' },
      'countersign-ca': { type: 'string' },
      'countersign-fingerprint': { type: 'string' },
      domain: { type: 'string' },
      state: { type: 'string' },
      url: { type: 'string' },
      name: { type: 'string' },
      'print-config': { type: 'string' },
      'data-dir': { type: 'string' },
      'hold-poll-ms': { type: 'string' },
      'max-argument-bytes': { type: 'string' },
      listen: { type: 'string' },
      'allowed-host': { type: 'string', multiple: true },
      'allowed-origin': { type: 'string', multiple: true },
      'max-body-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stderr.write(`${MCP_PROXY_USAGE}\n`);
    return 0;
  }
  const command = positionals[0];
  if ((command === undefined) === (values.url === undefined)) {
    throw new CountersignError('config_invalid', 'give either a command after -- or --url, not both and not neither');
  }
  if (values.agent === undefined) throw new CountersignError('config_invalid', '--agent is required (the agent key file)');
  const downstream: Downstream = command !== undefined ? { command, args: positionals.slice(1) } : { url: values.url ?? '' };
  if ('url' in downstream) {
    let url: URL;
    try {
      url = new URL(downstream.url);
    } catch {
      throw new CountersignError('config_invalid', `--url ${JSON.stringify(downstream.url)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new CountersignError('config_invalid', '--url must be an http: or https: URL');
  }
  const serverName =
    values.name ??
    ('url' in downstream ? new URL(downstream.url).hostname : basename(downstream.command).replace(/[^A-Za-z0-9._-]/g, '') || 'mcp');
  const mapping: MappingFile =
    values.map === undefined
      ? emptyMapping(serverName.replace(/^[^A-Za-z0-9]+/, '') || 'mcp')
      : parseMapping(readJson(values.map), `the mapping file ${JSON.stringify(values.map)}`);

  // The same defaults as a running proxy (option, else environment), checked before anything is printed.
  const caFile = values['countersign-ca'] ?? process.env.COUNTERSIGN_CA;
  const fingerprint = values['countersign-fingerprint'] ?? process.env.COUNTERSIGN_FINGERPRINT;
  const tlsTrust = readTlsTrust({ caFile, fingerprint256: fingerprint });

  if (values['print-config'] !== undefined) {
    process.stdout.write(
      `${printHostConfig(values['print-config'], {
        name: values.name ?? mapping.server,
        agentKeyFile: resolve(values.agent),
        mapFile: values.map === undefined ? undefined : resolve(values.map),
        countersignUrl: values.countersign ?? process.env.COUNTERSIGN_URL,
        countersignCa: caFile === undefined ? undefined : resolve(caFile),
        countersignFingerprint: tlsTrust.pin,
        domain: values.domain,
        downstream,
      })}\n`,
    );
    return 0;
  }

  const keyFile = await readAgentKeyFile(resolve(values.agent));
  const agentId = values['agent-id'] ?? keyFile.agentId;
  // Signs each call envelope in this thread (node:crypto), not through WebCrypto's thread pool.
  const key = await nodeAgentKey(keyFile.privateJwk);
  const domain = values.domain ?? 'production';
  if (domain !== 'production' && domain !== 'test') throw new CountersignError('config_invalid', '--domain must be production or test');
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir());
  const stateFile = resolve(values.state ?? join(dataDir, 'mcp-proxy', `${agentId}.${mapping.server}.json`));
  const holdPollMs = positiveInt(values['hold-poll-ms'], 'hold-poll-ms', 100, 60_000);
  const maxArgumentBytes = positiveInt(values['max-argument-bytes'], 'max-argument-bytes', 1024, 16 * 1024 * 1024);
  const listen = values.listen === undefined ? undefined : parseListenAddress(values.listen);
  const maxBodyBytes = positiveInt(values['max-body-bytes'], 'max-body-bytes', 1024, 64 * 1024 * 1024);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const proxy = McpProxy.launch({
    agentId,
    key,
    downstream,
    mapping,
    domain,
    stateFile,
    log,
    holdPollMs,
    maxArgumentBytes,
    countersignUrl: values.countersign ?? process.env.COUNTERSIGN_URL ?? 'ws://127.0.0.1:7345',
    tlsTrust,
  });
  if (listen !== undefined) {
    const listener = await listenMcpHttp(proxy, {
      ...listen,
      log,
      allowedHosts: values['allowed-host'] ?? [],
      allowedOrigins: values['allowed-origin'] ?? [],
      ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
    }).catch(async (error: unknown) => {
      await proxy.close();
      throw new CountersignError(
        'config_invalid',
        `cannot listen on ${values.listen ?? ''}: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    log(`mcp-proxy: serving MCP over Streamable HTTP at ${listener.url}`);
    proxy.ready.catch((error: unknown) => {
      log(`mcp-proxy: the MCP server could not be started: ${error instanceof Error ? error.message : String(error)}`);
      void Promise.all([listener.close(), proxy.close()]).finally(() => process.exit(1));
    });
    const stopListening = () => void Promise.all([listener.close(), proxy.close()]).finally(() => process.exit(0));
    process.once('SIGINT', stopListening);
    process.once('SIGTERM', stopListening);
    return -1;
  }
  // stdout is the MCP channel from here on: everything else goes to stderr. The host is answered
  // at once; tools/list and tools/call wait until the tool server is up.
  const handle = serveStdio(() => proxy.createServer(), { onerror: (error) => log(`mcp-proxy: ${error.message}`) });
  proxy.ready.catch((error: unknown) => {
    log(`mcp-proxy: the MCP server could not be started: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
    void Promise.all([handle.close(), proxy.close()]).finally(() => process.exit(1));
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void Promise.all([handle.close(), proxy.close()]).finally(() => process.exit(0));
  };
  // The host closing our stdin ends the session: stop the tool server too. A held call stays
  // pending in Countersign; the next proxy finds it through the state file.
  process.stdin.once('end', stop);
  process.stdin.once('close', stop);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return -1;
}

function positiveInt(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new CountersignError('config_invalid', `--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CountersignError('config_invalid', `the mapping file ${JSON.stringify(file)} cannot be read`, { cause: error });
  }
  return parseStrictJson(text);
}
