/**
 * Bench servers in a child process of their own, apart from the load generator. The core under
 * test is normally `countersign start` itself (bench/child-server.ts); this script serves:
 *   baseline <keysFile>           the floor: the same WebSocket protocol, strict parsing, schema
 *                                 check and agent signature verification, but no policy, no
 *                                 token signing and no storage
 *   core <dataDir>                the core through startCountersign, only for the diagnostic
 *                                 BENCH_POLICY_WORKER=0 (Cedar in the event loop's thread), which
 *                                 the command does not offer
 * Prints one JSON line `{"port": N}` on stdout when ready.
 */
import { readFileSync } from 'node:fs';
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { startCountersign } from '../main/core/app.js';
import { StageTimings } from '../main/cli/stage-timings.js';
import { canonicalBytes, parseStrictJson } from '../shared/canonical-json.js';
import { clientRequestSchema, SIGNED_TYPES, PROTOCOL_VERSION, WS_SUBPROTOCOL } from '../shared/protocol.js';
import type { AgentPublicJwk } from '../shared/agent-keys.js';

const [mode, arg] = process.argv.slice(2);

async function core(dataDir: string): Promise<number> {
  const timings = new StageTimings();
  const app = await startCountersign({
    dataDir,
    log: () => undefined,
    // BENCH_POLICY_WORKER=0: Cedar in the event loop's thread (what the worker hand-off costs).
    policyWorker: process.env.BENCH_POLICY_WORKER !== '0',
    onTiming: (stage, ms) => timings.record(stage, ms),
  });
  // SIGUSR2: report and reset the stage timings (one JSON line), so each phase is measured alone.
  process.on('SIGUSR2', () => {
    process.stdout.write(`${JSON.stringify({ timings: timings.report() })}\n`);
  });
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
  return app.port;
}

async function baseline(keysFile: string): Promise<number> {
  const keys = new Map<string, { alg: string; key: KeyObject }>();
  for (const jwk of parseStrictJson(readFileSync(keysFile, 'utf8')) as unknown as Array<AgentPublicJwk & { agentId: string }>) {
    keys.set(jwk.agentId, {
      alg: jwk.alg,
      key: createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y ? { y: jwk.y } : {}) }, format: 'jwk' }),
    });
  }
  const check = (agentId: string, data: Uint8Array, sig: string) => {
    const k = keys.get(agentId);
    if (!k) return false;
    const s = Buffer.from(sig, 'base64url');
    return k.alg === 'EdDSA' ? verify(null, data, k.key, s) : verify('sha256', data, { key: k.key, dsaEncoding: 'ieee-p1363' }, s);
  };
  const http = createServer();
  const wss = new WebSocketServer({ server: http, maxPayload: 64 * 1024, perMessageDeflate: false, handleProtocols: () => WS_SUBPROTOCOL });
  wss.on('connection', (ws) => {
    const challenge = randomBytes(32).toString('base64url');
    let agentId: string | undefined;
    ws.send(
      JSON.stringify({
        jsonrpc: '2.0',
        method: 'session.challenge',
        params: { protocol: PROTOCOL_VERSION, challenge, serverId: 'baseline', expiresInMs: 10_000 },
      }),
    );
    ws.on('message', (data: Buffer) => {
      const parsed = clientRequestSchema.safeParse(parseStrictJson(data.toString('utf8')));
      if (!parsed.success) return ws.close(1008);
      const req = parsed.data;
      if (req.method === 'session.authenticate') {
        const ok = check(
          req.params.agentId,
          canonicalBytes({ typ: SIGNED_TYPES.auth, challenge, serverId: 'baseline', agentId: req.params.agentId, kid: req.params.kid }),
          req.params.proof,
        );
        if (!ok) return ws.close(4001);
        agentId = req.params.agentId;
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { agentId, kid: req.params.kid, sessionId: 'b' } }));
      } else if (req.method === 'call.submit' && agentId) {
        const { payload, signature } = req.params.envelope;
        const ok = payload.agentId === agentId && check(agentId, canonicalBytes(payload), signature);
        ws.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: req.id,
            result: {
              requestId: 'baseline',
              decision: ok ? 'allow' : 'deny',
              state: ok ? 'allowed' : 'denied',
              reasons: [],
              determiningPolicies: [],
              policyHash: '',
            },
          }),
        );
      }
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  process.on('SIGTERM', () => process.exit(0));
  const address = http.address();
  return typeof address === 'object' && address ? address.port : 0;
}

const port = mode === 'core' ? await core(arg!) : await baseline(arg!);
process.stdout.write(`${JSON.stringify({ port })}\n`);
