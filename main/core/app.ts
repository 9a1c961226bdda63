/**
 * The composition root of the headless core: store, audit, identity, policy, custody, tokens,
 * decisions and the gateway, wired together. The CLI, the Electron shell and the tests all
 * start Countersign through `startCountersign`, so there is one way it runs.
 */
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { canonicalize } from '../../shared/canonical-json.js';
import { CountersignError, isCountersignError } from '../../shared/errors.js';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, type Db } from './store/database.js';
import { GroupCommitter, type FileSync } from './store/group-commit.js';
import { WalCheckpointer } from './store/wal-checkpointer.js';
import { RequestSearchIndex } from './store/request-search-index.js';
import { SqliteDecisionStore } from './decision/sqlite-decision-store.js';
import { lockDataDir } from './store/data-dir-lock.js';
import { AuditLog, type AuditEventFields, type AuditKind } from './audit/audit-log.js';
import { Checkpointer, auditOrigin, checkExternalCheckpoint, checkpointFiles, findingOf } from './audit/checkpoints.js';
import { AuditProofs } from './audit/audit-proofs.js';
import { TamperAlarm } from './audit/tamper-alarm.js';
import { AuditVerifier } from './audit/audit-verifier.js';
import { AgentRegistry, type OwnerMigrationReport } from './identity/agent-registry.js';
import { PolicyEngine } from './policy/policy-engine.js';
import { packTestRequests } from './policy/fast-path-cases.js';
import { openCustody, type OpenCustody, type OpenCustodyOptions } from './keys/open-custody.js';
import { SigningKeyRegistry, historicKey } from './keys/signing-keys.js';
import type { Signer } from './custody/signer.js';
import { AdoptingCustody } from './keys/adopting-custody.js';
import { TokenIssuer } from './tokens/token-issuer.js';
import { DecisionService, type DecisionServiceOptions } from './decision/decision-service.js';
import { UnscoredRisk, type RiskScorer } from './risk/risk-ports.js';
import { RiskEngine } from './risk/risk-engine.js';
import { loadRiskSettings } from './risk/risk-config.js';
import { Gateway } from './gateway/gateway-server.js';
import { describeTls, resolvePublicEdge, type PublicEdge } from './http/public-edge.js';
import { loadConfig, type ConfigOverrides, type CountersignConfig } from './config.js';
import { UiService } from './ui/ui-service.js';
import { HistoryReader } from './ui/history-reader.js';
import { PolicyDesk, PolicyReloadLog } from './ui/policy-desk.js';
import { HealthDesk } from './ui/health-desk.js';
import { WebhookOutbox } from './notify/webhook-outbox.js';
import { WebhookDelivery, resolveWebhookTargets } from './notify/webhook-delivery.js';
import { DeskSessions } from './ui/desk-sessions.js';
import { uiStaticRoutes } from './ui/ui-http.js';
import { bridgeRoutes } from './ui/bridge-routes.js';
import { BridgeEventHub, DEFAULT_REPLAY_LIMIT } from './ui/bridge-events.js';
import { ApproverDirectory } from './approvals/approver-directory.js';
import { ApprovalService, type ApprovalServiceOptions } from './approvals/approval-service.js';
import { policyReevaluation } from './approvals/policy-reevaluation.js';
import { tokenMinter } from './tokens/token-minter.js';
import type { VirtualApprovers } from './testing/virtual-approvers.js';
import { approvalsRoutes } from './approvals/approvals-http.js';
import { automationRoutes } from './testing/automation-routes.js';
import { AdminActions } from './approvals/admin-actions.js';
import { FirstRun } from './approvals/first-run.js';
import { PgDecisionStore } from './store/pg/pg-decision-store.js';
import { PgDirectory } from './store/pg/pg-directory.js';
import { TeamAgents } from './identity/team-agents.js';
import { TeamApprovers } from './approvals/team-approvers.js';
import { PgChallenges } from './store/pg/pg-challenges.js';
import { PgDeskSessions } from './store/pg/pg-desk-sessions.js';
import { TeamSecrets } from './store/pg/pg-team-secrets.js';
import { PgAdminProposals } from './store/pg/pg-admin-proposals.js';
import { PgDeskEvents } from './store/pg/pg-desk-events.js';
import { PgRequestReads } from './store/pg/pg-request-reads.js';
import { PgApprovalStore, type AgentColumns } from './store/pg/pg-approval-store.js';
import { PgAuditLeader } from './audit/pg-audit-leader.js';
import { PgAuditProofs } from './audit/pg-audit-proofs.js';
import { PgRiskLog } from './risk/pg-risk-log.js';
import { joinTeamKeys, type TeamKeySet } from './keys/team-key-set.js';
import { minimumOverlapMs } from './keys/signing-keys.js';
import { resolveDatabaseConfig } from './store/pg/pg-config.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The policy pack a fresh data directory starts with. */
export const DEFAULT_POLICY_PACK = join(REPO_ROOT, 'examples', 'demo');
/** The built renderer, served at /ui/ (`npm run build:renderer`). */
export const DEFAULT_RENDERER_DIR = join(REPO_ROOT, 'renderer', 'dist');

export interface StartOptions {
  dataDir: string;
  configFile?: string | undefined;
  overrides?: ConfigOverrides;
  log?: (message: string) => void;
  clock?: () => number;
  /** For tests: a scorer that replaces the risk engine (fault injection). Baselines are still kept. */
  risk?: RiskScorer;
  /** Directory of the built renderer served at /ui/ (default renderer/dist). */
  rendererDir?: string;
  /** Evaluate Cedar in a worker thread (default true; false measures Cedar's cost alone). */
  policyWorker?: boolean;
  /** Decide calls with the fast policy evaluator, checked against cedar-wasm (default true; ADR 0023). */
  fastEvaluator?: boolean;
  /** For tests: how PKCS#11 tokens are opened (fault injection around the real module). */
  openToken?: OpenCustodyOptions['openToken'];
  /** Stage timings of every decision (benchmarks). */
  onTiming?: DecisionServiceOptions['onTiming'];
  /** Stage timings of every submitted approval key tap (benchmarks). */
  onApprovalTiming?: ApprovalServiceOptions['onTiming'];
  /** What is running, named in the data directory's lock (e.g. `countersign start`). */
  command?: string;
  /**
   * For tests: how the decision store's group commit syncs its write-ahead log (store/group-commit.ts;
   * default fdatasync). Replaced only to hold a sync back, which a real disk cannot be made to do.
   */
  syncFile?: FileSync;
  /**
   * Run as a team hub (`countersign hub`, docs/team-mode.md): decisions on the shared PostgreSQL
   * database of `config.team` (the URL here overrides its `database.url`).
   */
  team?: { databaseUrl?: string | undefined; hub?: string | undefined };
}

export interface RunningCountersign {
  config: CountersignConfig;
  dataDir: string;
  /** The agent endpoint base: ws://127.0.0.1:PORT, or wss://<publicHost>:PORT over TLS. */
  url: string;
  /** Where desks open the approver console: http://localhost:PORT, or https://<publicHost>:PORT over TLS. */
  deskUrl: string;
  /** Host name, scheme, TLS material (and its fingerprint) the server is reached by. */
  edge: PublicEdge;
  port: number;
  db: Db;
  audit: AuditLog;
  registry: AgentRegistry;
  policy: PolicyEngine;
  decisions: DecisionService;
  gateway: Gateway;
  signer: Signer;
  custody: OpenCustody;
  approvers: ApproverDirectory;
  approvals: ApprovalService;
  /** Headless test domain only: virtual approvers driven by the automation API. */
  virtualApprovers?: VirtualApprovers;
  signingKeys: SigningKeyRegistry;
  issuer: TokenIssuer;
  /** Signed checkpoints of the audit log. */
  checkpoints: Checkpointer;
  /** Open tamper alarms (stored): while one is open, high-impact calls wait for approvers. */
  tamperAlarm: TamperAlarm;
  /** Continuous re-verification of the whole log (at start, then every audit.verifyEveryMs). */
  auditVerifier: AuditVerifier;
  /** The risk scorer and baselines (undefined when `risk.enabled` is false). */
  riskEngine?: RiskEngine;
  /**
   * Secret for the /api/ HTTP routes (32 random bytes, base64url): per start, or on a hub the
   * team's as the hub holds it now (a rotation replaces it while the hub runs). Never log it.
   */
  readonly uiSessionSecret: string;
  /** The one server implementation of the bridge table (HTTP routes and the Electron shell's IPC). */
  ui: UiService;
  /** Desk sessions (sign-in with a security key; ADR 0010). */
  deskSessions: DeskSessions;
  /** The bridge's push events (pending, decided), for the shell's IPC channel; HTTP serves them as SSE. */
  bridgeEvents: BridgeEventHub;
  /** Signed webhooks: the durable outbox and its delivery loop (docs/notifications.md). */
  webhookOutbox: WebhookOutbox;
  webhooks: WebhookDelivery;
  /** Team mode only: the hub's PostgreSQL store and its audit leader campaign. */
  team?: TeamHub;
  /** Team mode with custody.pkcs11: the team's one custody key set (keys/team-key-set.ts, ADR 0014). */
  teamKeys?: TeamKeySet;
  close(): Promise<void>;
}

/**
 * Open the data directory's store (creating it) without starting the gateway: for the CLI.
 * Agents enrolled with a free-text owner before owners were people are resolved here, once
 * (identity/agent-registry.ts migrateFreeTextOwners), and `onOwnerMigration` hears the report.
 */
export function openDataDir(
  dataDir: string,
  onOwnerMigration?: (report: OwnerMigrationReport) => void,
): { db: Db; audit: AuditLog; registry: AgentRegistry; signingKeys: SigningKeyRegistry } {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = openStore(join(dataDir, 'countersign.db'));
  const audit = new AuditLog(db);
  const registry = new AgentRegistry(db, audit);
  try {
    const report = registry.migrateFreeTextOwners();
    if (report !== undefined) onOwnerMigration?.(report);
  } catch (error) {
    db.close();
    throw error;
  }
  return { db, audit, registry, signingKeys: new SigningKeyRegistry(db, audit) };
}

/** One line per agent of the owner migration, for a terminal or a log. */
export function describeOwnerMigration(report: OwnerMigrationReport): string[] {
  return [
    `owner migration: ${report.resolved.length} agent owner(s) resolved to people, ${report.held.length} held for review`,
    ...report.resolved.map(
      (e) => `  ${e.agentId}: owner ${JSON.stringify(e.entered)} is person ${JSON.stringify(e.person)} (by ${e.via ?? 'id'})`,
    ),
    ...report.held.map((e) => `  ${e.agentId}: HELD FOR REVIEW: ${e.reason ?? ''}; run countersign agents set-owner ${e.agentId} PERSON`),
  ];
}

export function resolvePolicyDir(dataDir: string, config: CountersignConfig, log: (m: string) => void): string {
  if (config.policyDir !== undefined) return resolve(config.policyDir);
  const dir = join(dataDir, 'policies');
  if (!existsSync(dir)) {
    cpSync(DEFAULT_POLICY_PACK, dir, { recursive: true, dereference: true });
    log(`created ${dir} from the demo policy pack (finance transfers and production changes)`);
  }
  return dir;
}

/**
 * Start Countersign on a data directory. The process holds the directory's lock for the life of
 * the server (store/data-dir-lock.ts): a second server on the same directory fails with
 * `data_dir_locked` naming the first.
 */
export async function startCountersign(options: StartOptions): Promise<RunningCountersign> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = lockDataDir(dataDir, options.command ?? 'countersign');
  let app: RunningCountersign;
  try {
    app = await startLocked({ ...options, dataDir });
  } catch (error) {
    lock.release();
    throw error;
  }
  // The running app itself, not a copy: a copy would freeze its getters (a hub's uiSessionSecret follows rotations).
  const running = app;
  const closeRunning = running.close.bind(running);
  running.close = async () => {
    try {
      await closeRunning();
    } finally {
      lock.release();
    }
  };
  return running;
}

async function startLocked(options: StartOptions): Promise<RunningCountersign> {
  // eslint-disable-next-line no-console -- the default sink when the embedder injects no log function
  const log = options.log ?? ((m: string) => console.error(m));
  const clock = options.clock ?? Date.now;
  const dataDir = resolve(options.dataDir);
  const config = loadConfig(dataDir, options.configFile, options.overrides);
  // Before anything is opened or written: a non-loopback bind without TLS is refused here, and the
  // certificate (files, or the development one in the data directory) is read or made.
  const edge = await resolvePublicEdge(config, dataDir, log);
  const { db, audit, registry, signingKeys } = openDataDir(dataDir, (report) => {
    for (const line of describeOwnerMigration(report)) log(line);
  });
  const appendAudit = <K extends AuditKind>(kind: K, event: AuditEventFields<K>) =>
    db.transaction(() => audit.append(kind, clock(), event)).immediate();

  let policy: PolicyEngine;
  let riskEngine: RiskEngine | undefined;
  try {
    const policyDir = resolvePolicyDir(dataDir, config, log);
    if (config.risk.enabled) {
      riskEngine = new RiskEngine(
        db,
        loadRiskSettings(policyDir, config.risk.file === undefined ? undefined : resolve(dataDir, config.risk.file)).config,
      );
    }
    policy = await PolicyEngine.open(policyDir, {
      worker: options.policyWorker ?? true,
      fastPathCases: packTestRequests,
      // The fast evaluator, checked against cedar-wasm on every load and by shadow evaluation (ADR 0023).
      fastEvaluator: options.fastEvaluator ?? true,
      onEvaluatorDisagreement: (disagreement) => appendAudit('policy.evaluator_disagreed', disagreement),
    });
    const engine = policy;
    // Enrollment checks scopes against the set in force at that moment (hot reloads included).
    registry.useVocabulary(() => engine.current.vocabulary);
  } catch (error) {
    db.close();
    throw error;
  }
  // Team mode with a PKCS#11 key: every hub signs with the team's one key (ADR 0014); joined
  // before custody opens, so the data directory pins the team's active key and nothing else.
  let teamKeys: TeamKeySet | undefined;
  const teamUrl = options.team === undefined ? undefined : (options.team.databaseUrl ?? config.team.database.url);
  if (options.team !== undefined && teamUrl !== undefined && config.custody.pkcs11 !== undefined) {
    try {
      teamKeys = await joinTeamKeys({
        database: resolveDatabaseConfig({ ...config.team.database, url: teamUrl }),
        hub: options.team.hub ?? config.team.hub ?? config.serverId,
        domain: config.domain,
        now: clock,
        publishLeadMs: config.team.keyPublishLeadMs,
        retireOverlapMs: minimumOverlapMs(config.tokens.ttlSeconds),
        registry: signingKeys,
        onError: log,
      });
    } catch (error) {
      await policy.close();
      db.close();
      throw error;
    }
  }
  let custody: AdoptingCustody;
  try {
    signingKeys.retireExpired(clock());
    const custodyOptions: OpenCustodyOptions = { dataDir, config, keys: signingKeys, log, now: clock, openToken: options.openToken };
    // A rotation made while the server runs (keys rotate, in its own process) is adopted on the
    // next signature; the previous key signs only while it is published (adopting-custody.ts).
    custody = new AdoptingCustody(await openCustody(custodyOptions), {
      // A hub of a team signs only with what the team's key set allows (maySign at every signature).
      keys: teamKeys ?? signingKeys,
      domain: config.domain,
      now: clock,
      reserveMs: config.tokens.ttlSeconds * 1000,
      log,
      open: () => openCustody(custodyOptions),
      onAdopted: (next, previousKid) => {
        appendAudit('signing_key.adopted', {
          kid: next.signer.keyId,
          domain: config.domain,
          custody: next.signer.custody,
          previous: previousKid,
          serverId: config.serverId,
        });
        log(
          `adopted the rotated ${config.domain} signing key ${next.signer.keyId} (${next.signer.custody}); ${previousKid} no longer signs`,
        );
      },
    });
  } catch (error) {
    await teamKeys?.close();
    await policy.close();
    db.close();
    throw error;
  }
  const signer = custody.signer;
  let openedTeam: Omit<TeamHub, 'approvers'> | undefined;
  if (options.team !== undefined) {
    try {
      openedTeam = await openTeamHub(config, options.team, signer, log, clock, { db, registry, riskEngine });
    } catch (error) {
      await teamKeys?.close();
      await custody.close();
      await policy.close();
      db.close();
      throw error;
    }
  }
  /** Closes what the team hub opened when the start fails after this point. */
  const closeTeam = async () => {
    await openedTeam?.close();
    await teamKeys?.close();
  };

  // The audit log must not have gone backwards or forked since its last external checkpoint.
  const origin = auditOrigin(config.serverId);
  const files = checkpointFiles(dataDir, config.audit.mirrorDir === undefined ? undefined : resolve(dataDir, config.audit.mirrorDir));
  let trusted: { size: number; root: Uint8Array };
  try {
    // Which keys may have signed the checkpoint: the log's whole key history, each key inside
    // the window it was in force and only if the signed log itself records its pinning (a key
    // pinned by editing the database is not). The current signer was checked by openCustody:
    // with custody.requireHardware it is a key held in the token.
    const history = signingKeys.list().map(historicKey);
    const checked = checkExternalCheckpoint({ db, log: audit, origin, files, currentKid: signer.keyId, history });
    for (const warning of checked.warnings) log(`warning: audit checkpoint: ${warning}`);
    trusted = { size: checked.size, root: checked.root };
  } catch (error) {
    await closeTeam();
    await custody.close();
    await policy.close();
    db.close();
    throw error;
  }
  const tamperAlarm = new TamperAlarm(db, audit, clock);
  const raiseFromCheckpoint = (error: Parameters<typeof findingOf>[0]) => {
    const raised = tamperAlarm.raise('checkpoint', [findingOf(error)]);
    if (raised) log(`TAMPER ALARM ${raised.id}: ${error.message}`);
  };
  const checkpoints = new Checkpointer({
    db,
    log: audit,
    signer,
    origin,
    files,
    now: clock,
    onError: log,
    trusted,
    onTamper: raiseFromCheckpoint,
    everyEntries: config.audit.checkpointEveryEntries,
    everyMs: config.audit.checkpointEveryMs,
    // The decisions' pending syncs first, on the thread pool; then the row's own durable COMMIT.
    durable: () => committer.durable(),
    ...(options.onTiming === undefined ? {} : { onCommitTiming: (ms: number) => options.onTiming!('checkpoint-commit', ms) }),
  });
  const issuer = new TokenIssuer({
    signer,
    issuer: `countersign:${config.serverId}`,
    domain: config.domain,
    ttlSeconds: config.tokens.ttlSeconds,
    now: clock,
  });
  const minter = tokenMinter(issuer);
  // The embedded store's group commit (ADR 0003); the webhook loop waits for its syncs below.
  const committer = new GroupCommitter(db, {
    ...(options.syncFile === undefined ? {} : { syncFile: options.syncFile }),
    ...(options.onTiming === undefined
      ? {}
      : { onTiming: (phase: 'commit' | 'sync', ms: number) => options.onTiming!(`group-${phase}` as const, ms) }),
  });
  // The History search index, filled after each decision's commit; at start it indexes whatever a
  // crash left unindexed (store/request-search-index.ts).
  const searchIndex = new RequestSearchIndex(db, { onError: log });
  try {
    searchIndex.catchUp();
  } catch (error) {
    log(`request search indexing failed at start (retried at the next search): ${error instanceof Error ? error.message : String(error)}`);
  }
  const decisions = new DecisionService({
    db,
    audit,
    store: openedTeam?.store ?? new SqliteDecisionStore(db, audit, committer, searchIndex),
    registry,
    policy,
    minter,
    risk: options.risk ?? riskEngine ?? UnscoredRisk,
    learner: riskEngine,
    clock,
    onTiming: options.onTiming,
    maxAgeMs: config.envelope.maxAgeMs,
    maxFutureMs: config.envelope.maxFutureMs,
    maxPendingPerAgent: config.gateway.maxPendingPerAgent,
    redactDataClasses: config.audit.redactDataClasses,
    // The approval service is made below; request.get asks it only once the app is running.
    quorumProgress: (requestId) => approvals.quorumProgress(requestId),
    tamperHold: {
      current: () => tamperAlarm.current(),
      requirement: {
        approvals: config.audit.tamperHold.approvals,
        groups: config.audit.tamperHold.approverGroups.length === 0 ? [] : [config.audit.tamperHold.approverGroups],
        ttlSeconds: config.audit.tamperHold.ttlSeconds,
        userVerification: config.audit.tamperHold.userVerification,
      },
    },
  });
  // The desk's bearer secret: per start, or on a hub the team's one (docs/team-mode.md "One origin, any hub").
  // A hub reads the team's at each request: `countersign hub rotate-desk-secret` replaces it while the hub runs.
  const startSecret = randomBytes(32).toString('base64url');
  const teamSecrets = openedTeam?.secrets;
  const uiSessionSecret = teamSecrets === undefined ? () => startSecret : () => teamSecrets.deskSecret;

  // Human approvals: the directory needs the bound port for its origins, so they are read lazily.
  let boundPort = 0;
  const approvalOrigins = (): string[] => edge.approvalOrigins(boundPort);

  // Signed webhooks: secrets are read now (a missing one stops the start); the outbox is filled by
  // an audit observer in the very transaction of the entry it announces (docs/notifications.md).
  let webhookTargets;
  try {
    webhookTargets = resolveWebhookTargets(config.notifications.webhooks, dataDir);
  } catch (error) {
    await closeTeam();
    await policy.close();
    await custody.close();
    db.close();
    throw error;
  }
  const webhookOutbox = new WebhookOutbox(db, config.notifications.webhooks, () => config.notifications.deskUrl ?? edge.origin(boundPort));
  const webhooks = new WebhookDelivery(webhookOutbox, webhookTargets, config.notifications, {
    now: clock,
    log,
    durable: () => committer.durable(),
  });
  // kick() waits for the next turn, so the rows it sends are committed by then; it sends them
  // only once that commit's write-ahead log is synced (durable above).
  const stopObserving = audit.observe((kind, at, event) => {
    if (webhookOutbox.observe(kind, at, event)) webhooks.kick();
  });
  const approvers = new ApproverDirectory(db, audit, {
    domain: config.domain,
    rpId: edge.rpId,
    origins: approvalOrigins,
    requireAaguids: config.approvals.requireAaguids,
    ceremonyTimeoutMs: config.approvals.ceremonyTimeoutMs,
    now: clock,
    requireRegistrationCode: true,
  });
  // A hub's approvers are its replica of the team directory too: written there, for every hub.
  const team: TeamHub | undefined =
    openedTeam === undefined ? undefined : { ...openedTeam, approvers: new TeamApprovers(approvers, openedTeam.directory, log) };
  if (team !== undefined) approvers.useTeamDirectory(team.approvers);
  // One origin, any hub: a ceremony begun on one hub is finished on another (docs/team-mode.md).
  if (team !== undefined) approvers.useTeamChallenges(new PgChallenges(team.store.pool, team.hub, clock));
  // The desks' push events. Embedded, the gateway and the services emit them here; on a hub they
  // come from the team database, every hub's alike, whichever hub wrote them (pg-desk-events.ts).
  const bridgeEvents = new BridgeEventHub();
  // A rotated desk secret ends the event streams opened with the old one (a desk reconnects with the new link, or cannot).
  teamSecrets?.onChange((name) => {
    if (name === 'desk secret') bridgeEvents.endStreams();
    log(`the team's ${name} was replaced; this hub uses the new one from now on`);
  });
  const embeddedEvents = team === undefined ? bridgeEvents : undefined;
  const approvals = new ApprovalService({
    db,
    audit,
    // A hub reads and commits approvals in the team database, so any hub's desk decides any held call.
    store: team === undefined ? undefined : new PgApprovalStore({ store: team.store, agentOf: (id) => agentColumns(registry, id) }),
    directory: approvers,
    now: clock,
    ceremonyTimeoutMs: config.approvals.ceremonyTimeoutMs,
    audienceOf: (tool) => policy.tool(tool)?.audience,
    minter,
    policy: policyReevaluation(registry, policy, clock),
    learner: riskEngine,
    onDecided: (agentId, result) => {
      gateway.notifyAgent(agentId, result);
    },
    onRecorded: (requestId) => embeddedEvents?.emit({ name: 'approvalRecorded', data: { requestId } }),
    onTiming: options.onApprovalTiming,
  });
  const virtualApprovers =
    config.domain === 'test'
      ? // Imported in the test domain only: its virtual authenticator needs @simplewebauthn/server's helpers.
        new (await import('./testing/virtual-approvers.js')).VirtualApprovers(approvers, approvals, {
          dataDir,
          domain: config.domain,
          team: team?.approvers,
        })
      : undefined;
  const auditProofs = new AuditProofs(db, audit, checkpoints);
  const auditVerifier = new AuditVerifier({
    db,
    log: audit,
    alarm: tamperAlarm,
    everyMs: config.audit.verifyEveryMs,
    now: clock,
    onError: log,
  });
  // The History, Policies and Custody-and-health views (read-only; the health view's "verify now" runs the verifier).
  const policyReloads = new PolicyReloadLog(clock);
  const teamReads = team === undefined ? undefined : new PgRequestReads(team.store, (id) => agentColumns(registry, id));
  // A hub's decisions are in the team audit log: its History and agents' proofs come from there.
  const teamProofs = team === undefined ? undefined : new PgAuditProofs(team.store.pool);
  const history = new HistoryReader({
    db,
    searchIndex,
    // A hub's desk shows what every hub decided (the team database), with the team log's proofs.
    ...(teamReads === undefined || teamProofs === undefined
      ? {
          proofs: auditProofs,
          origin,
          // One log per data directory whichever key domain signs it: every key it has had may have signed a checkpoint.
          noteKeys: () =>
            signingKeys.list().map(({ publicJwk: k }) => ({ kty: k.kty, crv: k.crv, x: k.x, ...(k.y === undefined ? {} : { y: k.y }) })),
        }
      : { team: teamReads, proofs: teamProofs, origin: config.team.auditOrigin, noteKeys: () => teamProofs.noteKeys() }),
  });
  const policyDesk = new PolicyDesk({ policy, decisions, reloads: policyReloads });
  const healthDesk = new HealthDesk({
    serverId: config.serverId,
    domain: config.domain,
    origin,
    custody,
    keys: signingKeys,
    checkpoints,
    verifier: auditVerifier,
    alarm: tamperAlarm,
    log: audit,
  });
  let url = '';
  const adminActions = new AdminActions(db, audit, approvers, {
    ceremonyTimeoutMs: config.approvals.ceremonyTimeoutMs,
    now: clock,
    alarm: tamperAlarm,
    registry,
    ...(team === undefined ? {} : { teamAgents: team.agents, teamApprovers: team.approvers, teamProposals: team.proposals }),
    quorum: config.approvals.adminQuorum,
    proposalTtlMs: config.approvals.adminProposalTtlMs,
    onProposal: (proposalId, state) => embeddedEvents?.emit({ name: 'adminProposal', data: { proposalId, state } }),
  });
  // Every hub's requests and proposals reach this hub's desks, each event once (this hub's own too).
  await team?.deskEvents.start((event) => bridgeEvents.emit(event));
  // Desk sign-in by security key: sessions per person, kept hashed in memory (ADR 0010), or on a
  // hub in the team database, so a desk's requests may reach any hub (ADR 0017).
  const deskSessions = new DeskSessions(db, audit, approvers, {
    ...(team === undefined ? {} : { teamSessions: team.deskSessions }),
    idleMs: config.approvals.sessionIdleMs,
    absoluteMs: config.approvals.sessionLifetimeMs,
    ceremonyTimeoutMs: config.approvals.ceremonyTimeoutMs,
    now: clock,
  });
  const ui = new UiService({
    history,
    ...(teamReads === undefined ? {} : { recentRequests: (limit: number) => teamReads.recent(limit) }),
    policyDesk,
    healthDesk,
    deskSessions,
    adminConsole: { admin: adminActions, firstRun: new FirstRun(db, approvers, team?.approvers), directory: approvers },
    db,
    webhooks: { outbox: webhookOutbox, kick: () => webhooks.kick(), now: clock },
    registry,
    policy,
    signer,
    config,
    tamperAlarm,
    approvals,
    approvers,
    gateway: { getStats: () => gateway.getStats() },
    gatewayUrl: () => url,
  });
  // The HTTP edge's rows besides the gateway's own: the bridge table, the static renderer, the
  // approval routes, and the automation routes only in the test key domain.
  const httpRoutes = [
    ...bridgeRoutes(ui, bridgeEvents),
    ...approvalsRoutes({
      service: approvals,
      directory: approvers,
      audit: auditProofs,
      admin: adminActions,
    }),
    ...(virtualApprovers === undefined
      ? []
      : automationRoutes({
          automation: virtualApprovers,
          db,
          now: clock,
          // A hub's requests are in the team database: follow their end there.
          ...(team === undefined
            ? {}
            : { waitForEnd: async (id: string, signal: AbortSignal) => (await team.store.waitForOutcome(id, { signal })).state }),
        })),
    ...uiStaticRoutes(options.rendererDir ?? DEFAULT_RENDERER_DIR),
  ];
  const gateway: Gateway = new Gateway({
    config,
    edge,
    registry,
    decisions,
    log,
    clock,
    auditProof: (agentId, requestId) => (teamProofs ?? auditProofs).forRequest(agentId, requestId),
    http: { routes: httpRoutes, sessionSecret: uiSessionSecret, origins: approvalOrigins },
    ...(embeddedEvents === undefined ? {} : { events: embeddedEvents.gatewayHooks() }),
    // A hub's held calls may be decided on another hub: follow them through the team store.
    followOutcomes: team !== undefined,
    // A revocation committed on any hub: its sessions here are told the calls it ended (read in the team database).
    ...(team === undefined ? {} : { endedByRevocation: (agentId: string) => team.agents.endedByRevocation(agentId) }),
    // The active key and any key still in its rotation overlap window.
    // A team hub with a PKCS#11 key serves the team's published keys (a rotated-in key before any hub signs with it).
    jwks: () => ({ keys: teamKeys?.published(clock()) ?? signingKeys.published(config.domain, clock()) }),
    health: (): Record<string, unknown> => ({
      serverId: config.serverId,
      domain: config.domain,
      policyHash: policy.hash,
      policyEvaluator: policy.evaluatorState,
      custody: custody.status(),
      ...gateway.getStats(),
      ...auditHealth(tamperAlarm, auditVerifier),
      ...(team === undefined ? {} : { team: { hub: team.hub, database: team.store.config.display, auditLeader: team.leader.isLeader() } }),
    }),
  });
  // A revocation made here (the demo, the desk) reaches the agent at once; one made by the CLI in
  // another process is found by the gateway's once-a-second session sweep.
  registry.onRevoked((agentId, ended) => gateway.agentRevoked(agentId, ended));
  // A hub: a revocation committed on any hub ends the agent's sessions here as soon as the replica applies it.
  team?.directory.onRevoked((agentId) => gateway.checkSessions(agentId));
  let bound: { host: string; port: number };
  try {
    bound = await gateway.listen();
  } catch (error) {
    await closeTeam();
    await policy.close();
    await custody.close();
    db.close();
    throw error;
  }
  checkpoints.start();
  boundPort = bound.port;
  // Deliveries left from the last run (pending or backing off) go out now.
  webhooks.kick();
  // Over TLS agents must name the host the certificate names; on loopback the bound address is exact.
  url = edge.tls === undefined ? `ws://${bound.host === '::1' ? '[::1]' : bound.host}:${bound.port}` : edge.agentUrl(bound.port);
  const deskUrl = edge.origin(bound.port);
  appendAudit('server.started', {
    serverId: config.serverId,
    domain: config.domain,
    port: bound.port,
    signingKid: signer.keyId,
    custody: signer.custody,
    risk: riskEngine === undefined ? { enabled: false } : { enabled: true, settingsHash: riskEngine.settingsHash },
  });
  appendAudit('policy.loaded', policyLoadedEvent(policy));
  // The configuration in force, by hash: a change between starts shows as a new hash in the log.
  appendAudit('config.loaded', { configSha256: createHash('sha256').update(canonicalize(config)).digest('hex') });
  // A checkpoint right away: the file outside the database vouches for the log from the start,
  // and making it re-hashes every entry since the last trusted one from its record.
  try {
    await checkpoints.checkpoint();
  } catch (error) {
    if (isCountersignError(error) && error.code === 'audit_corrupt') {
      await gateway.close();
      await checkpoints.stop();
      await closeTeam();
      await policy.close();
      await custody.close();
      db.close();
      throw error;
    }
    log(`warning: the first audit checkpoint could not be signed: ${error instanceof Error ? error.message : String(error)}`);
  }
  // The whole log re-verified in the background now and on a schedule (never on the decision path).
  auditVerifier.start();
  // WAL checkpoints in a worker thread from here on, never inside a decision's COMMIT (ADR 0003).
  const walCheckpointer = WalCheckpointer.start(db, { onError: log });
  const openAlarm = tamperAlarm.current();
  if (openAlarm !== undefined)
    log(
      `TAMPER ALARM ${openAlarm.id} is open (raised ${new Date(openAlarm.raisedAt).toISOString()}): high-impact calls wait for approvers until an admin acknowledges it`,
    );
  log(
    `countersign listening on ${edge.tls === undefined ? 'ws' : 'wss'}://${bound.host}:${bound.port} (policy ${policy.hash.slice(0, 19)}…, ${config.domain} domain)`,
  );
  if (edge.tls !== undefined) for (const line of describeTls(edge.tls, edge.hostName)) log(line);

  const stopWatching = policy.watch((result) => {
    policyReloads.record(result);
    if (result.ok) {
      if (!result.changed) return;
      appendAudit('policy.loaded', policyLoadedEvent(policy));
      log(`policy reloaded: ${result.hash}`);
    } else {
      appendAudit('policy.reload_failed', { error: result.error.message.slice(0, 2000), keptPolicyHash: policy.hash });
      log(`policy reload failed, keeping ${policy.hash}: ${result.error.message}`);
    }
  });

  // Baselines forget amounts and per-minute/hour counters past their lookback window.
  const riskPruning =
    riskEngine === undefined
      ? undefined
      : setInterval(
          () => {
            try {
              riskEngine.prune(clock());
            } catch (error) {
              log(`risk baseline pruning failed: ${error instanceof Error ? error.message : String(error)}`);
            }
          },
          10 * 60 * 1000,
        );
  riskPruning?.unref();

  // Idle servers adopt a rotation within a second too, and keys past their overlap are retired (audited).
  const keyWatch = setInterval(() => {
    // A team hub moves the team's key set on in time (activation after the publish lead, retirement).
    teamKeys
      ?.advance()
      .catch((error: unknown) => log(`advancing the team signing keys failed: ${error instanceof Error ? error.message : String(error)}`));
    void custody.refresh();
    try {
      signingKeys.retireExpired(clock());
    } catch (error) {
      log(`retiring signing keys failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }, 1_000);
  keyWatch.unref();

  let closed = false;
  return {
    config,
    dataDir,
    url,
    deskUrl,
    edge,
    port: bound.port,
    db,
    audit,
    registry,
    policy,
    decisions,
    gateway,
    signer,
    custody,
    signingKeys,
    issuer,
    get uiSessionSecret() {
      return uiSessionSecret();
    },
    deskSessions,
    approvers,
    approvals,
    checkpoints,
    tamperAlarm,
    auditVerifier,
    ui,
    bridgeEvents,
    webhookOutbox,
    webhooks,
    ...(virtualApprovers === undefined ? {} : { virtualApprovers }),
    ...(riskEngine === undefined ? {} : { riskEngine }),
    ...(team === undefined ? {} : { team }),
    ...(teamKeys === undefined ? {} : { teamKeys }),
    async close() {
      if (closed) return;
      closed = true;
      if (riskPruning) clearInterval(riskPruning);
      clearInterval(keyWatch);
      stopWatching();
      stopObserving();
      await webhooks.stop();
      await auditVerifier.stop();
      await gateway.close();
      await policy.close();
      await checkpoints.stop();
      // The gateway is closed: no new decision reaches the team store; the audit leadership passes on.
      await closeTeam();
      appendAudit('server.stopped', { serverId: config.serverId });
      // The last checkpoint covers the shutdown itself; it needs the signer, so custody closes after.
      try {
        await checkpoints.checkpoint();
      } catch (error) {
        log(`audit checkpoint at shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
      }
      await custody.close();
      searchIndex.stop();
      try {
        searchIndex.catchUp(); // what the timer had not indexed yet (the next start would, too)
      } catch (error) {
        log(`request search indexing at shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
      }
      await walCheckpointer?.stop();
      await committer.close();
      db.close();
    },
  };
}

/** What /healthz says about the audit log: the open tamper alarm (status `tamper_alarm`) and the last full verification. */
function auditHealth(alarm: TamperAlarm, verifier: AuditVerifier): Record<string, unknown> {
  const open = alarm.current();
  const last = verifier.lastReport();
  return {
    ...(open === undefined ? {} : { status: 'tamper_alarm' }),
    auditAlarm:
      open === undefined
        ? null
        : {
            id: open.id,
            raisedAt: open.raisedAt,
            source: open.source,
            firstBadSeq: open.firstBadSeq,
            findings: open.findings.length,
            reason: open.findings[0]?.reason ?? '',
          },
    auditVerification: last === undefined ? null : { at: last.finishedAt, entries: last.entries, findings: last.findings.length },
  };
}

/** The policy.loaded event: the set in force, and why its per-tool policy subsets are off, if they are. */
function policyLoadedEvent(policy: PolicyEngine): AuditEventFields<'policy.loaded'> {
  const event: AuditEventFields<'policy.loaded'> = { policyHash: policy.hash, policyDir: policy.dir };
  const fallback = policy.fastPath.fallback;
  if (fallback !== undefined) event.fastPathFallback = fallback;
  // A set the fast evaluator does not support (known at load); a load check's disagreement comes later, as policy.evaluator_disagreed.
  const evaluatorFallback = policy.evaluatorState.fallback;
  if (evaluatorFallback !== undefined) event.evaluatorFallback = evaluatorFallback;
  return event;
}

/** What a hub's request views show of an agent, from this hub's directory. */
function agentColumns(registry: AgentRegistry, agentId: string): AgentColumns | undefined {
  const agent = registry.getAgent(agentId);
  return agent && { displayName: agent.displayName, owner: agent.owner ?? null, ownerState: agent.ownerState };
}

/** A team hub's share of the engine (docs/team-mode.md): the PostgreSQL store and the audit leader campaign. */
export interface TeamHub {
  hub: string;
  store: PgDecisionStore;
  leader: PgAuditLeader;
  /** The team directory (ADR 0013): this hub's agents and approvers are its replica. */
  directory: PgDirectory;
  /** Enroll, rotate and revoke agents for every hub. */
  agents: TeamAgents;
  /** Add, remove and regroup approvers, issue codes and register keys for every hub. */
  approvers: TeamApprovers;
  /** Admin quorum proposals of the team. */
  proposals: PgAdminProposals;
  /** The desks' push events of every hub (store/pg/pg-desk-events.ts), started once the bridge's event hub exists. */
  deskEvents: PgDeskEvents;
  /**
   * The desk's bearer secret and sign-in key, one each for the team (PG migrations 14, 15), kept
   * current on this hub when a command rotates them (store/pg/pg-team-secrets.ts).
   */
  secrets: TeamSecrets;
  /** Desk sessions for every hub (store/pg/pg-desk-sessions.ts). */
  deskSessions: PgDeskSessions;
  close(): Promise<void>;
}

/**
 * Open the team database (migrating it once, whichever hub comes first) and campaign for audit
 * leadership with this hub's custody key: the leader sequences every hub's audit submissions and
 * signs the team checkpoints (ADR 0012). The database must answer now, or the hub does not start.
 */
async function openTeamHub(
  config: CountersignConfig,
  options: NonNullable<StartOptions['team']>,
  signer: Signer,
  log: (message: string) => void,
  now: () => number,
  local: { db: Db; registry: AgentRegistry; riskEngine: RiskEngine | undefined },
): Promise<Omit<TeamHub, 'approvers'>> {
  const url = options.databaseUrl ?? config.team.database.url;
  if (url === undefined)
    throw new CountersignError('config_invalid', 'a hub needs its database: --database postgres://... or team.database.url in the config');
  const hub = options.hub ?? config.team.hub ?? config.serverId;
  const store = await PgDecisionStore.open({ ...config.team.database, url, hub, onError: log });
  const leader = new PgAuditLeader({
    config: store.config,
    hub,
    signer,
    origin: config.team.auditOrigin,
    checkpointEveryMs: config.team.checkpointEveryMs,
    onError: log,
    onLeadership: (leads) => log(leads ? `hub ${hub} leads the team audit log` : `hub ${hub} no longer leads the team audit log`),
    now,
  });
  // The directory replica catches up before the hub serves anyone; decisions check the agent in PostgreSQL.
  let directory: PgDirectory;
  try {
    directory = await PgDirectory.open(store, local.db, log);
  } catch (error) {
    await store.close();
    throw error;
  }
  // One desk link for the team: the first hub makes the secret, every other reads it; likewise the
  // key that tags the team's stateless sign-in challenges (ADR 0019). Both followed while the hub runs.
  let secrets: TeamSecrets | undefined;
  try {
    secrets = await TeamSecrets.open(store.pool, hub, now());
    await secrets.start(store.config.pool, log);
  } catch (error) {
    await secrets?.close();
    await directory.close();
    await store.close();
    throw error;
  }
  store.checkAgentsWith((row, agentId, at) => PgDirectory.verifyAgent(row, agentId, at));
  // Risk baselines are the team's: learned in each decision's transaction, read by every hub.
  if (local.riskEngine !== undefined) {
    const riskLog = new PgRiskLog(store.pool, hub);
    store.riskLog = riskLog;
    // What this hub learned in its SQLite before baselines were the team's is carried over, once.
    const engine = local.riskEngine;
    try {
      const imported = await riskLog.importBaselines(() => engine.sqliteBaselines(now()));
      if (imported > 0) log(`hub ${hub} imported the risk baselines of ${imported} agents from its SQLite into the team's`);
    } catch (error) {
      await secrets.close();
      await directory.close();
      await store.close();
      throw error;
    }
    engine.useEventLog(riskLog);
  }
  local.registry.useTeamDirectory();
  leader.start();
  log(`hub ${hub} on ${store.config.display}`);
  const proposals = new PgAdminProposals(store);
  const deskEvents = new PgDeskEvents({
    pool: store.pool,
    connection: store.config.pool,
    maxEventsPerRead: DEFAULT_REPLAY_LIMIT,
    onError: log,
  });
  let closing: Promise<void> | undefined;
  return {
    hub,
    store,
    leader,
    directory,
    agents: new TeamAgents(local.registry, directory, hub),
    proposals,
    deskEvents,
    secrets,
    deskSessions: new PgDeskSessions(store.pool, hub, () => secrets.signInKey),
    close: () =>
      (closing ??= (async () => {
        await secrets.close();
        await deskEvents.close();
        await leader.stop();
        await directory.close();
        await store.close();
      })()),
  };
}
