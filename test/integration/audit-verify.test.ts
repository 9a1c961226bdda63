/**
 * The portable audit verifier (shared/audit-verify.ts) on real logs: exports of a running
 * Countersign (Ed25519 checkpoints) and of a log signed with an ES256 key, good and tampered,
 * get exactly the findings of the Node-only verifier it replaced (test/helpers/legacy-export-
 * verifier.ts) — through the core's file wrapper and through a bundle of the shared module run
 * in a bare VM context that has nothing but globalThis.crypto.subtle and TextEncoder/TextDecoder
 * (so no node: module, Buffer or process can be in its graph). The SDK's verifyAuditProof
 * accepts a real proof from a running server and refuses tampered ones with stable codes. Every
 * export is also verified fed in chunks of odd sizes, with the same result and its bytes untouched.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { buildSync } from 'esbuild';
import { DEMO_POLICY_DIR, ensurePeople, nodeWebSocket, tempDir, transferCall } from '../helpers/harness.js';
import { legacyVerifyExport } from '../helpers/legacy-export-verifier.js';
import { openDataDir, startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { openStore } from '../../main/core/store/database.js';
import { AuditLog, merkleHasher } from '../../main/core/audit/audit-log.js';
import { auditOrigin } from '../../main/core/audit/checkpoints.js';
import { exportAudit, verifyExport, type ExportSelection } from '../../main/core/audit/audit-export.js';
import { consistencyView, inclusionView } from '../../main/core/audit/audit-proofs.js';
import { signNote } from '../../main/core/audit/note-keys.js';
import { SoftwareSigner } from '../../main/core/custody/software-signer.js';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { checkpointText, formatSignedNote, toBase64 } from '../../shared/checkpoint-note.js';
import { AgentClient, verifyAuditProof } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { verifyAuditExport, verifyConsistencyView, verifyRecordInclusion } from '../../shared/audit-verify.js';
import type * as AuditVerify from '../../shared/audit-verify.js';
import type { AuditProofResult } from '../../shared/protocol.js';

type Portable = typeof AuditVerify;

const ORIGIN = auditOrigin('countersign-local');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * shared/audit-verify.ts bundled for a neutral platform (a node: import would not resolve) and
 * run in a fresh VM context whose only host objects are WebCrypto's subtle and the text codecs.
 */
function portableVerifier(): { verifier: Portable; inputs: string[] } {
  const out = buildSync({
    entryPoints: [fileURLToPath(new URL('../../shared/audit-verify.ts', import.meta.url))],
    bundle: true,
    format: 'iife',
    globalName: 'portable',
    platform: 'neutral',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const context = vm.createContext({ crypto: { subtle: globalThis.crypto.subtle }, TextEncoder, TextDecoder });
  vm.runInContext(out.outputFiles[0]!.text, context);
  return { verifier: (context as unknown as { portable: Portable }).portable, inputs: Object.keys(out.metafile.inputs) };
}

/** Plain data, so results from the VM's realm compare with ours. */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;
const nodeSha256 = (d: Uint8Array) => createHash('sha256').update(d).digest('base64');

/** Every variant of an export: the file itself and ways an attacker could change it. */
function variants(text: string, otherKeyNote?: string): Array<[string, string]> {
  const lines = text.split('\n');
  const entryIdx = lines.map((l, i) => (l.startsWith('{"type":"entry"') ? i : -1)).filter((i) => i >= 0);
  const mid = entryIdx[Math.floor(entryIdx.length / 2)]!;
  const cpIdx = lines.findIndex((l) => l.startsWith('{"type":"checkpoint"'));
  const consIdx = lines.findIndex((l) => l.startsWith('{"type":"consistency"'));
  const edit = (i: number, f: (l: string) => string) => lines.map((l, j) => (j === i ? f(l) : l)).join('\n');
  const out: Array<[string, string]> = [['good', text]];
  const changeRecord = (l: string) => l.replace(/"at":1/, '"at":2');
  out.push(['a record changed', edit(mid, changeRecord)]);
  out.push([
    'a record changed and its leaf hash recomputed',
    edit(mid, (l) => {
      const changed = changeRecord(l);
      const record = changed.slice(changed.indexOf(',"record":') + 10, -1);
      return changed.replace(
        /"leafHash":"[^"]+"/,
        `"leafHash":"${nodeSha256(Buffer.concat([Buffer.of(0), Buffer.from(record, 'utf8')]))}"`,
      );
    }),
  ]);
  out.push(['an entry deleted', lines.filter((_, j) => j !== mid).join('\n')]);
  out.push(['the last entry cut off', lines.filter((_, j) => j !== entryIdx[entryIdx.length - 1]).join('\n')]);
  out.push([
    'a checkpoint signature altered',
    edit(cpIdx, (l) =>
      l.replace(/(\u2014 \S+ [A-Za-z0-9+/]{12})([A-Za-z0-9+/])/, (_m, a: string, c: string) => a + (c === 'A' ? 'B' : 'A')),
    ),
  ]);
  if (consIdx >= 0)
    out.push([
      'a consistency proof altered',
      edit(consIdx, (l) => l.replace(/"proof":\["[A-Za-z0-9+/]/, (m) => m.slice(0, -1) + (m.endsWith('A') ? 'B' : 'A'))),
    ]);
  out.push([
    'an inclusion proof altered',
    edit(mid, (l) => l.replace(/"inclusion":\["[A-Za-z0-9+/]/, (m) => m.slice(0, -1) + (m.endsWith('A') ? 'B' : 'A'))),
  ]);
  out.push(['a duplicate member in the header', edit(0, (l) => l.replace('{"type":"header"', '{"type":"header","type":"header"'))]);
  out.push([
    'the checkpoints out of order',
    lines
      .filter((_, j) => j !== cpIdx)
      .join('\n')
      .replace(lines[entryIdx[0]! - 1]!, `${lines[entryIdx[0]! - 1]!}\n${lines[cpIdx]!}`),
  ]);
  if (otherKeyNote !== undefined)
    out.push(['a checkpoint by another key', edit(cpIdx, () => JSON.stringify({ type: 'checkpoint', note: otherKeyNote }))]);
  out.push(['empty', '']);
  // A change that did not apply to this export (no such line) would only repeat 'good'.
  return out.filter(([name, changed]) => name === 'good' || changed !== text);
}

/**
 * The file's bytes cut at sizes from 1 byte to a few KiB (so lines straddle one, two or many
 * chunks, and newlines fall on chunk edges), as Node Buffers over one shared copy that the
 * verifier must leave as it found it (the node:crypto hasher writes each leaf's prefix over the
 * byte before the record while it hashes, and puts it back).
 */
async function chunked(bytes: Uint8Array, keys: PublicJwk[]): Promise<unknown> {
  const copy = Buffer.from(bytes);
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < copy.length; i++) {
    const size = [1, 7, 64, 333, 4099, 2][i % 6]!;
    chunks.push(copy.subarray(at, at + size));
    at += size;
  }
  const result = await verifyAuditExport(chunks, keys, { hasher: merkleHasher });
  expect(copy.equals(bytes)).toBe(true);
  return result;
}

/** The three verifiers on one export: the legacy Node one, the core wrapper (also fed in odd chunks), the bare-VM bundle. */
async function allThree(dir: string, name: string, text: string, keys: PublicJwk[], portable: Portable) {
  const file = join(dir, `${name.replace(/\W+/g, '-')}.jsonl`);
  writeFileSync(file, text);
  const legacy = await legacyVerifyExport(file, keys);
  const core = await verifyExport(file, keys);
  expect(plain(await chunked(readFileSync(file), keys)), `${name}, in chunks`).toEqual(plain(core));
  const bare = await portable.verifyAuditExport([new Uint8Array(readFileSync(file))], plain(keys) as PublicJwk[]);
  return { legacy: plain(legacy), core: plain(core), bare: plain(bare) };
}

let portable: Portable;
let graph: string[];
beforeAll(() => {
  ({ verifier: portable, inputs: graph } = portableVerifier());
});

describe('the portable verifier runs with WebCrypto alone', () => {
  it('bundles for a neutral platform from shared/ files only (no node: module, no package in its graph)', () => {
    expect(graph.length).toBeGreaterThan(3);
    expect(graph.filter((input) => !input.startsWith('shared/'))).toEqual([]);
    expect(graph).toContain('shared/merkle.ts');
    expect(graph).toContain('shared/checkpoint-note.ts');
  });
});

describe('exports of a running Countersign (Ed25519): the shared verifier and the old Node path agree', () => {
  let dataDir: string;
  let keys: PublicJwk[];
  let requestId: string;
  let app: RunningCountersign | undefined;

  beforeAll(async () => {
    dataDir = tempDir('countersign-audit-verify-');
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    app = await startCountersign({ dataDir, log: () => undefined });
    ensurePeople(app, 'dana@example.com');
    app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'ap-agent', 'ap-agent')), {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    });
    const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key, webSocket: nodeWebSocket, reconnect: false });
    await client.connect();
    for (let i = 0; i < 3; i++) {
      requestId = (await client.submit(transferCall(`${100 + i}.00`))).requestId;
      await app.checkpoints.checkpoint(); // several checkpoints, so consistency proofs between them
    }
    client.close();
    await app.close();
    app = undefined;
    const d = openDataDir(dataDir);
    keys = d.signingKeys.list().map((k) => k.publicJwk);
    d.db.close();
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const selections: Array<[string, ExportSelection]> = [
    ['full', { kind: 'all' }],
    ['by request', { kind: 'request', requestId: 'set in the test' }],
    ['by time', { kind: 'time', since: 0, until: 8_000_000_000_000 }],
  ];
  it.each(selections)(
    '%s export: the same result and finding for the file and each tampered copy',
    async (_label, selection) => {
      const file = join(dataDir, `export-${selection.kind}.jsonl`);
      const d = openDataDir(dataDir);
      try {
        exportAudit({
          db: d.db,
          log: d.audit,
          origin: ORIGIN,
          file,
          selection: selection.kind === 'request' ? { kind: 'request', requestId } : selection,
        });
      } finally {
        d.db.close();
      }
      const seen = new Set<string>();
      for (const [name, text] of variants(readFileSync(file, 'utf8'))) {
        const { legacy, core, bare } = await allThree(dataDir, `${selection.kind}-${name}`, text, keys, portable);
        expect(core, name).toEqual(legacy);
        expect(bare, name).toEqual(legacy);
        // A partial export cannot prove nothing was left out (it says so: complete false).
        const undetectable = selection.kind !== 'all' && (name === 'an entry deleted' || name === 'the last entry cut off');
        if (name === 'good' || undetectable)
          expect(legacy, name).toMatchObject({ ok: true, origin: ORIGIN, complete: selection.kind === 'all' });
        else expect(legacy, name).toMatchObject({ ok: false });
        seen.add(JSON.stringify(legacy));
      }
      // The variants are told apart (each names its own problem), not all one generic failure.
      expect(seen.size).toBeGreaterThan(4);
    },
    120_000,
  );

  it("checks the API's inclusion and consistency proofs of the same log", () => {
    const d = openDataDir(dataDir);
    try {
      const size = d.audit.size();
      const inclusion = inclusionView(d.audit, 2, size, null) as {
        seq: number;
        record: string;
        treeSize: number;
        proof: string[];
        root: string;
      };
      expect(verifyRecordInclusion(inclusion)).toBe(true);
      expect(portable.verifyRecordInclusion(plain(inclusion) as typeof inclusion)).toBe(true);
      expect(verifyRecordInclusion({ ...inclusion, record: inclusion.record.replace('"seq":2', '"seq":3') })).toBe(false);
      expect(verifyRecordInclusion({ ...inclusion, seq: 3 })).toBe(false);
      const consistency = consistencyView(d.audit, 3, size) as {
        from: number;
        to: number;
        proof: string[];
        fromRoot: string;
        toRoot: string;
      };
      expect(verifyConsistencyView(consistency)).toBe(true);
      expect(portable.verifyConsistencyView(plain(consistency) as typeof consistency)).toBe(true);
      expect(verifyConsistencyView({ ...consistency, fromRoot: consistency.toRoot })).toBe(false);
      expect(verifyConsistencyView({ ...consistency, proof: ['not base64'] })).toBe(false);
    } finally {
      d.db.close();
    }
  });
});

describe('a log signed with an ES256 key (DER ECDSA note signatures)', () => {
  it('a full export: the shared verifier and the old Node path agree on the file and each tampered copy', async () => {
    const dir = tempDir('countersign-audit-es256-');
    dirs.push(dir);
    const db = openStore(join(dir, 'countersign.db'));
    const log = new AuditLog(db);
    const signer = await SoftwareSigner.openOrCreate(dir, { log: () => undefined, algorithm: 'ES256' });
    const other = await SoftwareSigner.openOrCreate(join(dir, 'other'), { log: () => undefined, algorithm: 'ES256' });
    const insert = db.prepare('INSERT INTO audit_checkpoints (tree_size, root_hash, at, note) VALUES (?, ?, ?, ?)');
    let otherNote = '';
    for (const size of [3, 4, 7, 12]) {
      db.transaction(() => {
        while (log.size() < size) log.append('config.loaded', 1_790_000_000_000 + log.size(), { configSha256: `c${log.size()}` });
      }).immediate();
      log.syncTree();
      const root = log.root(size);
      const text = checkpointText({ origin: ORIGIN, size, rootHash: toBase64(root), time: 1_790_000_000_000 + size });
      insert.run(size, root, 1_790_000_000_000 + size, formatSignedNote(text, [await signNote(signer, ORIGIN, text)]));
      if (size === 3) otherNote = formatSignedNote(text, [await signNote(other, ORIGIN, text)]);
    }
    const file = join(dir, 'export.jsonl');
    exportAudit({ db, log, origin: ORIGIN, file, selection: { kind: 'all' } });
    db.close();
    for (const [name, text] of variants(readFileSync(file, 'utf8'), otherNote)) {
      const { legacy, core, bare } = await allThree(dir, name, text, [signer.publicJwk], portable);
      expect(core, name).toEqual(legacy);
      expect(bare, name).toEqual(legacy);
      expect((legacy as { ok: boolean }).ok, name).toBe(name === 'good');
    }
  }, 120_000);
});

describe("the SDK's verifyAuditProof against a running server", () => {
  it('accepts the proof of a decision, and refuses each tampered copy with a stable code', async () => {
    const dataDir = tempDir('countersign-audit-sdk-');
    dirs.push(dataDir);
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    const app = await startCountersign({ dataDir, log: () => undefined });
    try {
      ensurePeople(app, 'dana@example.com');
      app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'ap-agent', 'ap-agent')), {
        owner: 'dana@example.com',
        group: 'finance-agents',
        allowedTools: ['payments.transfer'],
        dataClasses: ['financial'],
        jurisdictions: ['US'],
      });
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      const first = await client.submit(transferCall('120.00'));
      const decided = await client.submit(transferCall('48000.00', 'Northwind Traders'));
      const proof = await client.auditProof(decided.requestId);
      const otherProof = await client.auditProof(first.requestId);
      client.close();
      // The JWKS a tool server would fetch (/.well-known/jwks.json): the log signs with the same key.
      const keys = [app.signer.publicJwk];

      const verified = await verifyAuditProof(proof, { keys, origin: ORIGIN, requestId: decided.requestId });
      expect(verified).toMatchObject({ requestId: decided.requestId, origin: ORIGIN, treeSize: proof.treeSize });
      expect(verified.entries.map((e) => e.record)).toEqual([
        expect.objectContaining({ kind: 'decision.pending', requestId: decided.requestId }),
      ]);
      // A browser runs the same code: the bare-VM bundle agrees.
      expect(
        plain(await portable.verifyAuditProof(plain(proof) as AuditProofResult, { keys: plain(keys) as PublicJwk[], origin: ORIGIN })),
      ).toEqual(plain(verified));
      // Without a pinned origin the checkpoint's own is used (its signature must still verify).
      expect((await verifyAuditProof(proof, { keys })).origin).toBe(ORIGIN);

      const entry = proof.entries[0]!;
      const flip = (b64: string) => (b64[0] === 'A' ? 'B' : 'A') + b64.slice(1);
      const changedRecord = entry.record.replace('"agentId":"ap-agent"', '"agentId":"ap-agenx"');
      const leafOf = (record: string) =>
        createHash('sha256')
          .update(Buffer.concat([Buffer.of(0), Buffer.from(record, 'utf8')]))
          .digest('base64');
      const noteSig = proof.checkpoint.lastIndexOf(' ') + 12;
      const noteLines = proof.checkpoint.split('\n');
      const rootAltered = [noteLines[0], noteLines[1], flip(noteLines[2]!), ...noteLines.slice(3)].join('\n');
      const tampered: Array<[string, AuditProofResult, { origin?: string; requestId?: string; keys?: PublicJwk[] }, string]> = [
        ['a record changed', { ...proof, entries: [{ ...entry, record: changedRecord }] }, {}, 'audit_proof_invalid'],
        [
          'a record changed with its leaf hash recomputed',
          { ...proof, entries: [{ ...entry, record: changedRecord, leafHash: leafOf(changedRecord) }] },
          {},
          'audit_proof_invalid',
        ],
        [
          'a proof hash changed',
          { ...proof, entries: [{ ...entry, proof: [flip(entry.proof[0]!), ...entry.proof.slice(1)] }] },
          {},
          'audit_proof_invalid',
        ],
        ['a proof hash dropped', { ...proof, entries: [{ ...entry, proof: entry.proof.slice(1) }] }, {}, 'audit_proof_invalid'],
        ['another position claimed', { ...proof, entries: [{ ...entry, seq: entry.seq - 1 }] }, {}, 'audit_proof_invalid'],
        ['a larger tree claimed', { ...proof, treeSize: proof.treeSize + 1 }, {}, 'audit_proof_invalid'],
        ["another request's entries", { ...otherProof, requestId: decided.requestId }, {}, 'audit_proof_invalid'],
        ['no entries', { ...proof, entries: [] }, {}, 'audit_proof_invalid'],
        ['the proof of another request than asked', otherProof, { requestId: decided.requestId }, 'audit_proof_invalid'],
        [
          'the checkpoint signature altered',
          {
            ...proof,
            checkpoint:
              proof.checkpoint.slice(0, noteSig) + (proof.checkpoint[noteSig] === 'A' ? 'B' : 'A') + proof.checkpoint.slice(noteSig + 1),
          },
          {},
          'audit_checkpoint_invalid',
        ],
        ['the checkpoint root altered', { ...proof, checkpoint: rootAltered }, {}, 'audit_checkpoint_invalid'],
        ['another log pinned', proof, { origin: 'countersign/elsewhere' }, 'audit_checkpoint_invalid'],
        [
          'checked with another key',
          proof,
          { keys: [(await SoftwareSigner.openOrCreate(join(dataDir, 'other'), { log: () => undefined })).publicJwk] },
          'audit_checkpoint_invalid',
        ],
      ];
      for (const [name, bad, opts, code] of tampered) {
        await expect(
          verifyAuditProof(bad, {
            keys: opts.keys ?? keys,
            origin: opts.origin ?? ORIGIN,
            ...(opts.requestId === undefined ? {} : { requestId: opts.requestId }),
          }),
          name,
        ).rejects.toMatchObject({ code });
      }
    } finally {
      await app.close();
    }
  }, 120_000);
});
