#!/usr/bin/env node
/**
 * The `countersign` command. Every subcommand works on a data directory (--data-dir, default
 * $COUNTERSIGN_DATA_DIR or ~/.local/share/countersign) and runs under plain Node.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CountersignError, isCountersignError } from '../../shared/errors.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { generateAgentKey, importAgentKey, type AgentKeyAlgorithm } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { defaultDataDir, loadConfig } from '../core/config.js';
import { publicEdgeOf, relyingPartyId } from '../core/http/public-edge.js';
import {
  DEFAULT_POLICY_PACK,
  DEFAULT_RENDERER_DIR,
  REPO_ROOT,
  describeOwnerMigration,
  openDataDir,
  resolvePolicyDir,
  startCountersign,
} from '../core/app.js';
import { loadPolicyDirectory } from '../core/policy/policy-set.js';
import { loadRiskConfig, loadRiskSettings } from '../core/risk/risk-config.js';
import { formatScenarioReport, readScenarioSet, runScenarioReport } from '../core/risk/scenario-report.js';
import { keysCommand, domainOption } from './keys-command.js';
import { ApproverDirectory } from '../core/approvals/approver-directory.js';
import { checkPolicyDirectory, runPolicyTests } from '../core/policy/policy-tests.js';
import { writeAgentKeyFile } from './agent-key-file.js';
import { parseDuration } from './durations.js';
import { runDemo } from './demo.js';
import { auditCommand } from './audit-command.js';
import { formatTime, print, printListing } from './print.js';
import { readUserFile } from '../core/user-files.js';
import { findElectronBinary, runDesktop, systemOpener } from './desktop-command.js';
import { approverConsoleLine, writeUiSecretFile } from './ui-secret-file.js';
import { hubSecretsCommand } from './hub-secrets-command.js';
import { openTeamDirectory, type TeamDirectoryCli } from './team-directory.js';
import { replicatesTeamDirectory } from '../core/store/pg/pg-directory.js';
import { StageTimings, recordGarbageCollections } from './stage-timings.js';
import { LISTEN_OPTIONS, LISTEN_USAGE, describeListening, listenOverrides, scalarValues } from './listen-options.js';

const USAGE = `usage: countersign <command> [options]

  start [--demo]            run Countersign on embedded defaults (gateway on 127.0.0.1:7345)
  headless [--demo]         the same core in the test key domain, for CI and automation
  hub --database postgres://USER@HOST:PORT/DB [--name HUB] [--domain production|test]
                            run a team hub: decisions on the shared PostgreSQL database, agents
                            and desks on this hub; start as many as you like on one database
                            (docs/team-mode.md; --database overrides team.database.url)
  hub rotate-desk-secret --database postgres://... [--ui-secret-file PATH]
                            a new desk link secret for the team, taken by every running hub at
                            once; every desk session ends; never printed (PATH gets it, 0600)
  hub rotate-sign-in-key --database postgres://...
                            a new key for the desk sign-in challenges, taken by every running hub
                            at once; sign-ins begun before it are refused (begin again)
  desktop                   the Electron app, or (no Electron binary here) the desk in the system browser
                            (start, headless, hub and desktop take --ui-secret-file PATH: the desk
                            API's bearer secret, written 0600 and removed on a clean exit; a hub
                            prints its desk link's secret only to a terminal)
                            start, headless and hub take --stage-timings: at each SIGUSR2,
                            print the decision stages' times and the event loop's garbage
                            collections since the last report (JSON line)
  keygen --agent-id ID      make an agent key pair and a signed enrollment request
         [--name NAME] [--alg EdDSA|ES256] [--out DIR]
  agents enroll FILE --owner O --group G --tools a,b --data-classes c,d --jurisdictions US,GB [--expires 90d]
                [--model M] [--agent-version V]
                            O is a person of the approver directory (id or alias); the group,
                            tools, data classes and jurisdictions must be known to the policy set
  agents list [--json]
  agents revoke ID [--reason TEXT]
  agents rotate ID FILE [--overlap 24h]
  agents set-owner ID PERSON
                            enroll, revoke, rotate and set-owner take --database postgres://...: the
                            team directory, for every hub of that database (docs/team-mode.md)
                            give the agent a person as owner (releases an agent held for review)
  agents owner-report       the free-text owner migration: resolved owners, agents held for review
  approvers add ID --name NAME [--groups g1,g2] [--aliases sam@example.com,...]
  approvers alias add ID ALIAS | approvers alias remove ID ALIAS
                            other handles (emails) of the same person; unique across people
  approvers list [--json] | approvers disable ID | approvers registration-code ID
  approvers set-groups ID --groups g1,g2 | approvers remove-key CREDENTIAL
                            people who approve held calls (they register keys in the UI); every
                            write takes --database postgres://...: the team directory, for every
                            hub of that database (docs/team-mode.md)
  policy check [--policy-dir DIR]
  policy test FILE [--policy-dir DIR]
  keys init [--alg ES256|EdDSA] [--overlap 24h]
                            generate the domain's signing key in the PKCS#11 token and pin it
  keys rotate [--alg ES256|EdDSA] [--overlap 24h]
                            new token key becomes active; the old one stays published for --overlap
  keys rotate --database postgres://... [--name HUB] [--alg ES256|EdDSA]
                            team mode: a new key in the shared HSM, published to every hub now,
                            signed with after team.keyPublishLeadMs (docs/team-mode.md)
  keys list [--json]        pinned signing keys: fingerprint, algorithm, custody, status
  keys export-public [--format jwks|pem]
  keys status               token present, logged in, key matches its pin, last signature
                            (keys commands take --domain production|test; default: config)
  jwks                      print the public keys tool servers trust (JWKS)
  audit verify              recompute the audit Merkle log, check every checkpoint and the
                            checkpoint file beside the database; names the first bad entry
  audit verify --export F --key K
                            verify an export offline with the log's public key(s)
  audit export --out F [--since T] [--until T] [--request ID]
                            JSONL export up to the latest signed checkpoint
  audit proof inclusion --seq N [--size S] | audit proof consistency --from A --to B
  audit checkpoint          print the latest signed checkpoint (C2SP signed note)
  audit keys                every pinned public key of the domain (JWKS), for verifiers
  audit alarms              tamper alarms: open ones (high-impact calls are held) and acknowledged
  audit reset-checkpoint    after a deliberate restore: record it and rewrite the checkpoint file
  mcp-proxy --agent KEY_FILE [--map FILE] -- COMMAND [ARGS...]
                            put Countersign in front of an MCP server (stdio; or --url URL);
                            --print-config HOST prints the host's mcpServers entry (docs/mcp.md)
  risk report [--scenarios FILE] [--risk-config FILE] [--threshold N]
                            the scorer's detection and false-positive rates on the labelled
                            scenario sets (default: the generated set, and the hand-written
                            set with provenance as recorded and withheld)

common options: --data-dir DIR, --config FILE, --port N, --policy-dir DIR
listings print a table; --json prints the records as JSON (times in epoch milliseconds)

${LISTEN_USAGE}`;

/** The labelled scenario set shipped with the repository (test/scenarios/). */
const DEFAULT_SCENARIO_FILE = join(REPO_ROOT, 'test', 'scenarios', 'risk-scenarios.json');
/** The hand-written set drawn from public attack descriptions (test/scenarios/attack-scenarios.ts). */
const HAND_WRITTEN_SCENARIO_FILE = join(REPO_ROOT, 'test', 'scenarios', 'attack-scenarios.json');

const OPTIONS = {
  ...LISTEN_OPTIONS,
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  port: { type: 'string' },
  'policy-dir': { type: 'string' },
  'ui-secret-file': { type: 'string' },
  demo: { type: 'boolean' },
  'stage-timings': { type: 'boolean' },
  'agent-id': { type: 'string' },
  name: { type: 'string' },
  alg: { type: 'string' },
  out: { type: 'string' },
  owner: { type: 'string' },
  group: { type: 'string' },
  tools: { type: 'string' },
  'data-classes': { type: 'string' },
  jurisdictions: { type: 'string' },
  expires: { type: 'string' },
  reason: { type: 'string' },
  overlap: { type: 'string' },
  domain: { type: 'string' },
  format: { type: 'string' },
  groups: { type: 'string' },
  aliases: { type: 'string' },
  model: { type: 'string' },
  'agent-version': { type: 'string' },
  scenarios: { type: 'string' },
  'risk-config': { type: 'string' },
  threshold: { type: 'string' },
  export: { type: 'string' },
  key: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  request: { type: 'string' },
  seq: { type: 'string' },
  size: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  database: { type: 'string' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function list(value: string | undefined, name: string): string[] {
  if (value === undefined || value.trim() === '')
    throw new CountersignError('config_invalid', `--${name} is required (a comma-separated list)`);
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function optionalLabel(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '' || value.length > 128) throw new CountersignError('config_invalid', `--${name} must be 1 to 128 characters`);
  return value;
}

function required(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw new CountersignError('config_invalid', `--${name} is required`);
  return value;
}

async function readEnrollment(file: string) {
  return verifyEnrollmentRequest(parseStrictJson(readUserFile('the enrollment request file', file)));
}

async function serve(values: Values, domain: 'production' | 'test', team?: { databaseUrl?: string; hub?: string }): Promise<void> {
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir());
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
    throw new CountersignError('config_invalid', '--port must be a port number');
  // --stage-timings: each decision stage's total time, count and distribution since the last report,
  // as one JSON line on stdout at every SIGUSR2 (`npm run bench` reads the running server's stages this way).
  const timings = new StageTimings();
  const app = await startCountersign({
    dataDir,
    configFile: values.config,
    overrides: { port, policyDir: values['policy-dir'], domain, ...listenOverrides(values) },
    command: `countersign ${team !== undefined ? 'hub' : domain === 'test' ? 'headless' : 'start'}`,
    ...(team === undefined ? {} : { team }),
    ...(values['stage-timings'] !== true
      ? {}
      : {
          onTiming: (stage: string, ms: number) => timings.record(stage, ms),
        }),
  });
  if (values['stage-timings'] === true) {
    recordGarbageCollections(timings);
    process.on('SIGUSR2', () => {
      process.stdout.write(`${JSON.stringify({ timings: timings.report() })}\n`);
    });
  }
  process.stdout.write(
    `${approverConsoleLine({
      uiBuilt: existsSync(join(DEFAULT_RENDERER_DIR, 'index.html')),
      deskUrl: app.deskUrl,
      secret: app.uiSessionSecret,
      teamSecret: team !== undefined,
      toTerminal: process.stdout.isTTY === true,
    })}\n`,
  );
  for (const line of describeListening(app)) process.stdout.write(`${line}\n`);
  let removeSecretFile: (() => void) | undefined;
  try {
    if (values['ui-secret-file'] !== undefined) removeSecretFile = writeUiSecretFile(values['ui-secret-file'], app.uiSessionSecret);
  } catch (error) {
    await app.close();
    throw error;
  }
  // A hub follows a rotation of the team's desk secret: its file holds the new one, a terminal gets the new link.
  app.team?.secrets.onChange((name) => {
    if (name !== 'desk secret') return;
    const file = values['ui-secret-file'];
    try {
      if (file !== undefined) removeSecretFile = writeUiSecretFile(file, app.uiSessionSecret);
    } catch (error) {
      console.error(
        `countersign: the new desk secret could not be written to ${JSON.stringify(file)}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (process.stdout.isTTY === true)
      process.stdout.write(
        `${approverConsoleLine({ uiBuilt: existsSync(join(DEFAULT_RENDERER_DIR, 'index.html')), deskUrl: app.deskUrl, secret: app.uiSessionSecret, teamSecret: true, toTerminal: true })}\n`,
      );
  });
  let stopDemo: (() => void) | undefined;
  if (values.demo) stopDemo = await runDemo(app, (line) => process.stdout.write(`${line}\n`));
  const shutdown = () => {
    stopDemo?.();
    removeSecretFile?.();
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

export async function main(argv: string[]): Promise<number> {
  // The proxy has its own options and takes the server's command line after --.
  // Loaded only for this command: the MCP SDK is about a third of every other command's start-up.
  if (argv[0] === 'mcp-proxy') return (await import('./mcp-proxy-command.js')).mcpProxyCommand(argv.slice(1));
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [command, sub, arg] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !values.help ? 2 : 0;
  }
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir());

  switch (command) {
    case 'start':
      await serve(values, 'production');
      return -1; // keep running
    case 'headless':
      await serve(values, 'test');
      return -1;
    case 'hub': {
      if (sub !== undefined)
        return hubSecretsCommand(sub, loadConfig(dataDir, values.config), {
          database: values.database,
          name: values.name,
          uiSecretFile: values['ui-secret-file'],
        });
      const domain = values.domain ?? 'production';
      if (domain !== 'production' && domain !== 'test') throw new CountersignError('config_invalid', '--domain must be production or test');
      await serve(values, domain, {
        ...(values.database === undefined ? {} : { databaseUrl: values.database }),
        ...(values.name === undefined ? {} : { hub: values.name }),
      });
      return -1;
    }
    case 'desktop': {
      const outcome = await runDesktop({
        findElectron: () => findElectronBinary(join(REPO_ROOT, 'node_modules', 'electron')),
        shellEntry: () => {
          const entry = join(REPO_ROOT, 'dist', 'main', 'electron', 'main.js');
          return existsSync(entry) ? entry : undefined;
        },
        runElectron: (binary, entry) =>
          new Promise((done) => spawn(binary, [entry], { stdio: 'inherit' }).once('exit', (code) => done(code ?? 1))),
        startCore: () => startCountersign({ dataDir, configFile: values.config, command: 'countersign desktop' }),
        open: systemOpener(),
        write: (line) => process.stdout.write(`${line}\n`),
      });
      if (outcome.kind === 'electron') return outcome.exitCode;
      const shutdown = () =>
        void outcome.core.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
      return -1;
    }
    case 'keygen': {
      const agentId = required(values['agent-id'], 'agent-id');
      const alg = (values.alg ?? 'EdDSA') as AgentKeyAlgorithm;
      if (alg !== 'EdDSA' && alg !== 'ES256') throw new CountersignError('config_invalid', '--alg must be EdDSA or ES256');
      const out = resolve(values.out ?? '.');
      mkdirSync(out, { recursive: true, mode: 0o700 });
      const privateJwk = await generateAgentKey(alg);
      const enrollment = await createEnrollmentRequest(await importAgentKey(privateJwk), agentId, values.name ?? agentId);
      const keyFile = join(out, `${agentId}.key.json`);
      const enrollmentFile = join(out, `${agentId}.enrollment.json`);
      writeAgentKeyFile(keyFile, { agentId, privateJwk });
      writeAgentKeyFile(enrollmentFile, enrollment as unknown as Parameters<typeof writeAgentKeyFile>[1]);
      print({ agentId, kid: privateJwk.kid, alg, keyFile, enrollmentFile });
      return 0;
    }
    case 'agents': {
      const { registry, db } = openDataDir(dataDir, (report) => {
        for (const line of describeOwnerMigration(report)) console.error(line);
      });
      // --database: the team directory (docs/team-mode.md); this data directory holds its replica.
      let team: TeamDirectoryCli | undefined;
      try {
        if (values.database !== undefined && sub !== 'list' && sub !== 'owner-report')
          team = await openTeamDirectory(loadConfig(dataDir, values.config, { policyDir: values['policy-dir'] }), values.database, {
            db,
            registry,
          });
        // Without --database on a hub's data directory, a write would hold on this replica alone
        // (a revocation the other hubs never see, undone here by the next change applied).
        else if (sub !== 'list' && sub !== 'owner-report' && replicatesTeamDirectory(db))
          throw new CountersignError(
            'config_invalid',
            'this data directory holds a replica of a team directory: write its agents with --database URL (docs/team-mode.md), for every hub at once',
          );
        if (sub === 'enroll') {
          const payload = await readEnrollment(required(arg, 'FILE'));
          // The scope is checked against the policy set the server would load from this data directory.
          const config = loadConfig(dataDir, values.config, { policyDir: values['policy-dir'] });
          const policySet = await loadPolicyDirectory(
            values['policy-dir'] ? resolve(values['policy-dir']) : resolvePolicyDir(dataDir, config, (m) => console.error(m)),
          );
          registry.useVocabulary(() => policySet.vocabulary);
          const enroll = team === undefined ? registry.enroll.bind(registry) : team.agents.enroll.bind(team.agents);
          const agent = await enroll(payload, {
            owner: required(values.owner, 'owner'),
            group: required(values.group, 'group'),
            allowedTools: list(values.tools, 'tools'),
            dataClasses: list(values['data-classes'], 'data-classes'),
            jurisdictions: list(values.jurisdictions, 'jurisdictions'),
            expiresAt: values.expires === undefined ? undefined : Date.now() + parseDuration(values.expires),
            model: optionalLabel(values.model, 'model'),
            agentVersion: optionalLabel(values['agent-version'], 'agent-version'),
          });
          print(agent);
          return 0;
        }
        if (sub === 'list') {
          printListing(
            registry.list(),
            [
              { header: 'id', value: (a) => a.id },
              { header: 'name', value: (a) => a.displayName },
              { header: 'status', value: (a) => (a.ownerState === 'held_for_review' ? `${a.status}, held for review` : a.status) },
              { header: 'owner', value: (a) => a.owner },
              { header: 'group', value: (a) => a.group },
              { header: 'tools', value: (a) => a.allowedTools.join(',') },
              {
                header: 'keys',
                value: (a) =>
                  a.keys
                    .map((k) => `${k.kid.slice(0, 12)}… ${k.status}${k.status === 'retiring' ? ` until ${formatTime(k.notAfter)}` : ''}`)
                    .join(', '),
              },
              { header: 'enrolled', value: (a) => formatTime(a.createdAt) },
              { header: 'expires', value: (a) => formatTime(a.expiresAt) },
            ],
            { json: values.json, empty: 'no agents are enrolled' },
          );
          return 0;
        }
        if (sub === 'revoke') {
          // A running server sees the revocation within a second: it tells the agent and closes it.
          const reason = values.reason ?? 'revoked by an administrator';
          const ended = await (team === undefined
            ? registry.revoke(required(arg, 'ID'), reason)
            : team.agents.revoke(required(arg, 'ID'), reason));
          print({ revoked: arg, endedRequests: ended.map((r) => r.requestId) });
          return 0;
        }
        if (sub === 'set-owner') {
          const id = required(arg, 'ID');
          const person = required(positionals[3], 'PERSON');
          print(await (team === undefined ? registry.setOwner(id, person) : team.agents.setOwner(id, person)));
          return 0;
        }
        if (sub === 'owner-report') {
          print(registry.ownerReport());
          return 0;
        }
        if (sub === 'rotate') {
          const file = positionals[3];
          const payload = await readEnrollment(required(file, 'FILE'));
          const overlap = parseDuration(values.overlap ?? '24h');
          print(
            await (team === undefined
              ? registry.rotate(required(arg, 'ID'), payload, overlap)
              : team.agents.rotate(required(arg, 'ID'), payload, overlap)),
          );
          return 0;
        }
        throw new CountersignError('config_invalid', `unknown agents command ${JSON.stringify(sub ?? '')}`);
      } finally {
        await team?.close();
        db.close();
      }
    }
    case 'policy': {
      const config = loadConfig(dataDir, values.config, { policyDir: values['policy-dir'] });
      const policyDir = values['policy-dir'] ? resolve(values['policy-dir']) : resolvePolicyDir(dataDir, config, (m) => console.error(m));
      if (sub === 'check') {
        const summary = await checkPolicyDirectory(policyDir);
        // The risk settings `start` would load with this policy directory, through the same loader.
        const risk = config.risk.enabled
          ? loadRiskSettings(policyDir, config.risk.file === undefined ? undefined : resolve(dataDir, config.risk.file))
          : undefined;
        print({ ...summary, risk: risk === undefined ? { enabled: false } : { enabled: true, file: risk.file ?? '(built-in defaults)' } });
        return 0;
      }
      if (sub === 'test') {
        const report = await runPolicyTests(policyDir, required(arg, 'FILE'));
        print(report);
        return report.failed === 0 ? 0 : 1;
      }
      throw new CountersignError('config_invalid', `unknown policy command ${JSON.stringify(sub ?? '')}`);
    }
    case 'jwks': {
      const config = loadConfig(dataDir, values.config, { domain: domainOption(values.domain) });
      const { signingKeys, db } = openDataDir(dataDir);
      try {
        const keys = signingKeys.published(config.domain, Date.now());
        if (keys.length === 0)
          throw new CountersignError(
            'hsm_key_not_found',
            `no signing key is pinned for the ${config.domain} domain yet; start countersign once or run keys init`,
          );
        print({ keys });
        return 0;
      } finally {
        db.close();
      }
    }
    case 'keys':
      return keysCommand(sub, values, dataDir);
    case 'approvers': {
      const config = loadConfig(dataDir, values.config);
      const { db, audit, registry } = openDataDir(dataDir);
      let team: TeamDirectoryCli | undefined;
      try {
        const approvers = new ApproverDirectory(db, audit, {
          domain: config.domain,
          rpId: relyingPartyId(config),
          origins: publicEdgeOf(config).approvalOrigins(config.gateway.port),
          requireAaguids: config.approvals.requireAaguids,
          ceremonyTimeoutMs: config.approvals.ceremonyTimeoutMs,
        });
        // --database: the team directory (docs/team-mode.md), for every hub; this data directory holds its replica.
        if (values.database !== undefined && sub !== 'list')
          team = await openTeamDirectory(config, values.database, { db, registry, approvers });
        else if (sub !== 'list' && replicatesTeamDirectory(db))
          throw new CountersignError(
            'config_invalid',
            'this data directory holds a replica of a team directory: write its approvers with --database URL (docs/team-mode.md), for every hub at once',
          );
        const teamApprovers = team?.approvers;
        if (sub === 'add') {
          const input = {
            id: required(arg, 'ID'),
            displayName: required(values.name, 'name'),
            groups: values.groups === undefined ? [] : list(values.groups, 'groups'),
            aliases: values.aliases === undefined ? [] : list(values.aliases, 'aliases'),
          };
          if (teamApprovers !== undefined) {
            const added = await teamApprovers.add(input, { issuedBy: 'cli' });
            print({ ...added.approver, registration: added.registration });
            return 0;
          }
          const approver = approvers.addApprover(input);
          // Shown once: the approver registers their first security key with it in the UI.
          print({ ...approver, registration: approvers.issueRegistrationCode(approver.id, 'cli') });
          return 0;
        }
        if (sub === 'registration-code') {
          const id = required(arg, 'ID');
          print(
            teamApprovers === undefined ? approvers.issueRegistrationCode(id, 'cli') : await teamApprovers.issueRegistrationCode(id, 'cli'),
          );
          return 0;
        }
        if (sub === 'alias') {
          const [action, id, alias] = [arg, positionals[3], positionals[4]];
          if (action === 'add') {
            if (teamApprovers === undefined) approvers.addAlias(required(id, 'ID'), required(alias, 'ALIAS'));
            else await teamApprovers.addAlias(required(id, 'ID'), required(alias, 'ALIAS'));
          } else if (action === 'remove') {
            if (teamApprovers === undefined) approvers.removeAlias(required(id, 'ID'), required(alias, 'ALIAS'));
            else await teamApprovers.removeAlias(required(id, 'ID'), required(alias, 'ALIAS'));
          } else throw new CountersignError('config_invalid', 'usage: countersign approvers alias add|remove ID ALIAS');
          print({ approverId: id, aliases: approvers.aliasesOf(required(id, 'ID')) });
          return 0;
        }
        if (sub === 'set-groups') {
          const id = required(arg, 'ID');
          const groups = values.groups === undefined ? [] : list(values.groups, 'groups');
          if (teamApprovers === undefined) approvers.setGroups(id, groups);
          else await teamApprovers.setGroups(id, groups);
          print({ id, groups: approvers.get(id).groups });
          return 0;
        }
        if (sub === 'remove-key') {
          const credentialId = required(arg, 'CREDENTIAL');
          if (teamApprovers === undefined) approvers.removeCredential(credentialId);
          else await teamApprovers.removeCredential(credentialId);
          print({ removed: credentialId });
          return 0;
        }
        if (sub === 'list') {
          const listed = approvers.list().map((a) => ({
            ...a,
            aliases: approvers.aliasesOf(a.id),
            credentials: approvers
              .credentialsOf(a.id, false)
              .map((c) => ({ id: c.credentialId, aaguid: c.aaguid, status: c.status, signCount: c.signCount })),
          }));
          printListing(
            listed,
            [
              { header: 'id', value: (a) => a.id },
              { header: 'name', value: (a) => a.displayName },
              { header: 'status', value: (a) => a.status },
              { header: 'groups', value: (a) => a.groups.join(',') },
              { header: 'aliases', value: (a) => a.aliases.join(',') },
              {
                header: 'security keys',
                value: (a) => `${a.credentials.filter((c) => c.status === 'active').length} active of ${a.credentials.length}`,
              },
              { header: 'virtual', value: (a) => (a.virtual ? 'yes' : 'no') },
              { header: 'added', value: (a) => formatTime(a.createdAt) },
            ],
            {
              json: values.json,
              empty: 'no approvers yet: add one with approvers add ID --name NAME [--groups g1,g2] [--aliases x@example.com]',
            },
          );
          return 0;
        }
        if (sub === 'disable') {
          if (teamApprovers === undefined) approvers.disable(required(arg, 'ID'));
          else await teamApprovers.disable(required(arg, 'ID'));
          print({ disabled: arg });
          return 0;
        }
        throw new CountersignError('config_invalid', `unknown approvers command ${JSON.stringify(sub ?? '')}`);
      } finally {
        await team?.close();
        db.close();
      }
    }
    case 'audit':
      return auditCommand(sub, positionals.slice(2), scalarValues(values), dataDir);
    case 'risk': {
      if (sub !== 'report')
        throw new CountersignError(
          'config_invalid',
          'usage: countersign risk report [--scenarios FILE] [--risk-config FILE] [--threshold N]',
        );
      const riskConfig = loadRiskConfig(resolve(values['risk-config'] ?? join(DEFAULT_POLICY_PACK, 'risk.json')), true);
      const threshold = values.threshold === undefined ? riskConfig.reportThreshold : Number(values.threshold);
      if (!Number.isInteger(threshold) || threshold < 1 || threshold > 100)
        throw new CountersignError('config_invalid', '--threshold must be a whole number from 1 to 100');
      if (values.scenarios !== undefined) {
        const set = readScenarioSet(resolve(values.scenarios));
        const runs = [
          runScenarioReport(set, riskConfig, threshold),
          runScenarioReport(set, riskConfig, threshold, { withholdProvenance: true }),
        ];
        process.stdout.write(`${runs.map((r) => formatScenarioReport(r, `risk scenario report: ${values.scenarios}`)).join('\n\n')}\n`);
        return 0;
      }
      // The shipped sets: the generated one, and the hand-written one with honest and withheld provenance.
      const generated = runScenarioReport(readScenarioSet(DEFAULT_SCENARIO_FILE), riskConfig, threshold);
      const written = readScenarioSet(HAND_WRITTEN_SCENARIO_FILE);
      const honest = runScenarioReport(written, riskConfig, threshold);
      const withheld = runScenarioReport(written, riskConfig, threshold, { withholdProvenance: true });
      process.stdout.write(
        `${[
          formatScenarioReport(generated, 'generated set (test/scenarios/risk-scenarios.json)'),
          formatScenarioReport(honest, 'hand-written set (test/scenarios/attack-scenarios.json)'),
          formatScenarioReport(withheld, 'hand-written set (test/scenarios/attack-scenarios.json)'),
        ].join('\n\n')}\n`,
      );
      return 0;
    }
    default:
      throw new CountersignError('config_invalid', `unknown command ${JSON.stringify(command)}; run countersign --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (isCountersignError(error)) console.error(`countersign: ${error.message} [${error.code}]`);
    else console.error(`countersign: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
