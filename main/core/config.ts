/**
 * Configuration: embedded defaults, overridden by `<data-dir>/config.json` (or --config), then
 * by command-line options. Validated strictly at load; an unknown key is an error, not a typo
 * silently ignored.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileNotFound } from './user-files.js';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { CountersignError } from '../../shared/errors.js';
import { parseStrictJson } from '../../shared/canonical-json.js';

export const DEFAULT_PORT = 7345;

/** A DNS host name as the Host header and a certificate carry it (lowercase; no port, no IP literal). */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Where the PKCS#11 PIN comes from. Never a command-line argument, never logged. */
const pinSourceSchema = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Z_][A-Z0-9_]{0,63}$/, 'must be an environment variable name') }),
  z.strictObject({ file: z.string().min(1) }),
  z.strictObject({ prompt: z.literal(true) }),
]);

const pkcs11Schema = z
  .strictObject({
    /** The vendor's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
    module: z.string().min(1),
    /** The token, by label (preferred: slot ids change when tokens are re-initialized) or slot id. */
    tokenLabel: z.string().min(1).max(32).optional(),
    slot: z.int().min(0).optional(),
    pin: pinSourceSchema,
    /** Limit for each PKCS#11 call, so a hung module cannot hang the app. */
    callTimeoutMs: z.int().min(100).max(60_000).default(5_000),
    /** Bounded reconnection when the session or token goes away (sleep/resume, unplugged). */
    reconnectAttempts: z.int().min(0).max(10).default(3),
    reconnectDelayMs: z.int().min(10).max(10_000).default(250),
    /**
     * Logged-in sessions signing in parallel. A session does one operation at a time, and each
     * signature waits for an event-loop turn to come back, so one session caps signing at about
     * one signature per turn under load.
     */
    sessions: z.int().min(1).max(32).default(4),
  })
  .refine((p) => (p.tokenLabel === undefined) !== (p.slot === undefined), { message: 'set exactly one of tokenLabel and slot' });

export type Pkcs11Config = z.infer<typeof pkcs11Schema>;

/** The events a webhook can subscribe to (docs/notifications.md). */
export const WEBHOOK_EVENTS = ['approval.pending', 'approval.approved', 'approval.denied', 'approval.expired'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** One webhook: where, the shared secret (from a file or the environment, never inline), which events. */
const webhookSchema = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1..64 letters, digits, dots, dashes or underscores'),
    url: z
      .string()
      .url()
      .regex(/^https?:\/\//, 'must be an http(s) URL'),
    secretFile: z.string().min(1).optional(),
    secretEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]{0,63}$/, 'must be an environment variable name')
      .optional(),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default(['approval.pending']),
  })
  .refine((w) => (w.secretFile === undefined) !== (w.secretEnv === undefined), { message: 'set exactly one of secretFile and secretEnv' });
export type WebhookConfig = z.infer<typeof webhookSchema>;
export type PinSourceConfig = z.infer<typeof pinSourceSchema>;

const configSchema = z.strictObject({
  serverId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/)
    .default('countersign-local'),
  /** `test` is the headless key domain: its tokens never verify where production is expected. */
  domain: z.enum(['production', 'test']).default('production'),
  policyDir: z.string().min(1).optional(),
  gateway: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.int().min(0).max(65535).default(DEFAULT_PORT),
      /** Extra Host header values accepted besides 127.0.0.1/localhost/[::1] with the port. */
      allowedHosts: z.array(z.string().min(1)).default([]),
      /** Origins allowed to open the agent socket. Agent hosts send none; browsers always do. */
      allowedOrigins: z.array(z.string().min(1)).default([]),
      /**
       * The host name desks and agents reach this server by (a hub in team mode): the WebAuthn
       * relying party id, the name on the certificate, and an allowed Host. Anything but
       * `localhost` needs `tls` (docs/team-mode.md). Default: localhost.
       */
      publicHost: z.string().max(253).regex(HOST_NAME, 'must be a DNS host name (lowercase letters, digits, dots and dashes)').optional(),
      /**
       * Serve the desk over HTTPS and the agent socket over WSS. With `certFile` and `keyFile`
       * (PEM) from those files; `{}` makes a development certificate in the data directory on
       * the first run (its SHA-256 fingerprint is printed at every start). Binding a
       * non-loopback address needs it.
       */
      tls: z
        .strictObject({ certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional() })
        .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), {
          message: 'set both certFile and keyFile, or neither (a development certificate)',
        })
        .optional(),
      /**
       * Origins besides the server's own (`https://<publicHost>:<port>`) desks may call from: the
       * HTTP edge's Origin check and the origins WebAuthn ceremonies may come from (e.g. the name
       * a reverse proxy serves on port 443). `approvals.origins`, when set, replaces the latter.
       */
      extraOrigins: z
        .array(
          z
            .string()
            .url()
            .regex(/^https?:\/\/[^/]+$/, 'must be an origin: scheme, host and optional port, no path'),
        )
        .max(16)
        .default([]),
      maxMessageBytes: z
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(64 * 1024),
      maxConnections: z.int().min(1).max(100_000).default(2_000),
      maxUnauthenticated: z.int().min(1).max(100_000).default(256),
      handshakeTimeoutMs: z.int().min(100).max(120_000).default(10_000),
      /** Token bucket per agent (across its connections): sustained rate and burst. */
      ratePerSecond: z.number().positive().max(100_000).default(100),
      rateBurst: z.int().min(1).max(100_000).default(200),
      /**
       * No longer used: the first frame must be session.authenticate and anything else closes the
       * connection, so there is nothing left to meter before authentication. Still accepted so
       * existing configuration files load.
       */
      preAuthMessages: z.int().min(1).max(100).default(4),
      /** The HTTP request line and headers (including a WebSocket upgrade) must arrive within this. */
      headersTimeoutMs: z.int().min(100).max(60_000).default(5_000),
      maxPendingPerAgent: z.int().min(1).max(100_000).default(100),
      /** Close a connection whose unsent output exceeds this many bytes (a client not reading). */
      maxBufferedBytes: z
        .int()
        .min(64 * 1024)
        .default(4 * 1024 * 1024),
    })
    .prefault({}),
  envelope: z
    .strictObject({
      /** How old a signed envelope may be when it arrives. */
      maxAgeMs: z.int().min(1_000).max(600_000).default(60_000),
      /** How far in the future an envelope may be dated (clock skew). */
      maxFutureMs: z.int().min(0).max(600_000).default(5_000),
    })
    .prefault({}),
  tokens: z
    .strictObject({
      ttlSeconds: z.int().min(5).max(900).default(60),
    })
    .prefault({}),
  approvals: z
    .strictObject({
      /**
       * WebAuthn relying party id; default `gateway.publicHost`, else "localhost" for the local app
       * (127.0.0.1 is not a valid RP id).
       */
      rpId: z.string().min(1).max(253).optional(),
      /** Exact origins ceremonies may come from; default the server's own origin (http://localhost:<port> or https://<publicHost>:<port>) plus `gateway.extraOrigins`. */
      origins: z.array(z.string().url()).max(16).optional(),
      /** Accept only authenticators with these AAGUIDs (empty: any attested authenticator). */
      requireAaguids: z
        .array(z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i))
        .max(256)
        .default([]),
      /** How long an approver has to complete one ceremony. */
      ceremonyTimeoutMs: z.int().min(5_000).max(600_000).default(120_000),
      /** A desk session (sign-in with a security key) ends after this long without a call (default 30 min). */
      sessionIdleMs: z
        .int()
        .min(60_000)
        .max(24 * 3600_000)
        .default(30 * 60_000),
      /**
       * Admin quorum: how many distinct admins' key taps an admin action needs (1: the admin's own
       * tap; 2: a second admin confirms the first one's proposal). docs/approvals.md says why it
       * lives here and not in the Cedar policies.
       */
      adminQuorum: z.union([z.literal(1), z.literal(2)]).default(1),
      /** How long a proposed admin action waits for the second admin (default 24 h). */
      adminProposalTtlMs: z
        .int()
        .min(60_000)
        .max(30 * 24 * 3600_000)
        .default(24 * 3600_000),
      /** …and this long after sign-in, whatever the activity (default 12 h). */
      sessionLifetimeMs: z
        .int()
        .min(60_000)
        .max(7 * 24 * 3600_000)
        .default(12 * 3600_000),
    })
    .prefault({}),
  audit: z
    .strictObject({
      /** Sign a checkpoint after this many new entries… */
      checkpointEveryEntries: z.int().min(1).max(1_000_000).default(1_000),
      /** …or this long after the last one, if the log grew (and always at shutdown). */
      checkpointEveryMs: z
        .int()
        .min(100)
        .max(24 * 3600 * 1000)
        .default(60_000),
      /** A second directory that also receives the latest checkpoint (another disk, a sync folder). */
      mirrorDir: z.string().min(1).optional(),
      /** Data classes whose call parameters the log keeps only as a digest and a redacted view. */
      redactDataClasses: z.array(z.string().min(1).max(128)).max(64).default([]),
      /** A full background re-verification of the log runs at start and then this often. */
      verifyEveryMs: z
        .int()
        .min(1_000)
        .max(7 * 24 * 3600 * 1000)
        .default(3_600_000),
      /**
       * While a tamper alarm is open, a high-impact call the policy would allow automatically waits
       * for this approval instead (docs/audit.md). Empty `approverGroups`: any approver.
       */
      tamperHold: z
        .strictObject({
          approvals: z.int().min(1).max(10).default(1),
          approverGroups: z.array(z.string().min(1).max(128)).max(16).default([]),
          ttlSeconds: z
            .int()
            .min(60)
            .max(24 * 3600)
            .default(900),
          userVerification: z.enum(['required', 'preferred']).default('required'),
        })
        .prefault({}),
    })
    .prefault({}),
  risk: z
    .strictObject({
      /** Score calls against each agent's learned baseline (false: every call scores 0, `unscored`). */
      enabled: z.boolean().default(true),
      /** Risk settings file; default `risk.json` in the policy directory, else built-in defaults. */
      file: z.string().min(1).optional(),
    })
    .prefault({}),
  custody: z
    .strictObject({
      /** Refuse to start unless tokens are signed by a PKCS#11-held key: no software fallback. */
      requireHardware: z.boolean().default(false),
      pkcs11: pkcs11Schema.optional(),
    })
    .prefault({}),
  /** Signed webhooks (docs/notifications.md): they link to the desk, never approve. */
  notifications: z
    .strictObject({
      /** The desk's base URL in webhook links (default http://localhost:<gateway port>). */
      deskUrl: z
        .string()
        .url()
        .regex(/^https?:\/\//, 'must be an http(s) URL')
        .optional(),
      webhooks: z.array(webhookSchema).max(16).default([]),
      /** Attempts per delivery before it is dead-lettered (the desk can retry it). */
      maxAttempts: z.int().min(1).max(20).default(6),
      /** Backoff: initialBackoffMs, doubled after each failure, at most maxBackoffMs. */
      initialBackoffMs: z.int().min(10).max(600_000).default(2_000),
      maxBackoffMs: z
        .int()
        .min(10)
        .max(24 * 3600 * 1000)
        .default(300_000),
      /** A receiver that has not answered by then counts as a failed attempt. */
      timeoutMs: z.int().min(100).max(60_000).default(10_000),
    })
    .refine((n) => new Set(n.webhooks.map((w) => w.id)).size === n.webhooks.length, { message: 'webhook ids must be unique' })
    .prefault({}),
  /** Team mode (`countersign hub`, docs/team-mode.md): the shared PostgreSQL database and this hub's name in it. */
  team: z
    .strictObject({
      /** This hub's name (recorded with what it decides, sequences and signs); default the serverId. Unique per hub. */
      hub: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/)
        .optional(),
      /** The team audit log's origin line: the same on every hub of one database. */
      auditOrigin: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/)
        .default('countersign/team'),
      /** Sign a team checkpoint at least this often while the log grows (the audit leader). */
      checkpointEveryMs: z.int().min(100).max(3_600_000).default(10_000),
      /**
       * With custody.pkcs11: how long a rotated-in team key is published in every hub's JWKS before
       * any hub signs with it (tool servers cache the JWKS for up to a minute). ADR 0014.
       */
      keyPublishLeadMs: z
        .int()
        .min(1_000)
        .max(7 * 24 * 3_600_000)
        .default(120_000),
      database: z
        .strictObject({
          /** postgres://user:password@host:port/database[?sslmode=verify-full&sslrootcert=ca.pem]; --database overrides. */
          url: z.string().min(1).optional(),
          poolSize: z.int().min(1).max(200).optional(),
          statementTimeoutMs: z.int().min(1).max(600_000).optional(),
          connectTimeoutMs: z.int().min(1).max(600_000).optional(),
          idleInTransactionTimeoutMs: z.int().min(1).max(600_000).optional(),
          maxBatch: z.int().min(1).max(10_000).optional(),
          deadlockAttempts: z.int().min(1).max(10).optional(),
        })
        .prefault({}),
    })
    .prefault({}),
});

export type CountersignConfig = z.infer<typeof configSchema>;

export interface ConfigOverrides {
  port?: number | undefined;
  /** The bind address (`gateway.host`). */
  host?: string | undefined;
  /** `gateway.publicHost`. */
  publicHost?: string | undefined;
  /** `gateway.tls`: files, or `{}` for a development certificate. */
  tls?: { certFile?: string | undefined; keyFile?: string | undefined } | undefined;
  /** Appended to `gateway.extraOrigins`. */
  extraOrigins?: readonly string[] | undefined;
  policyDir?: string | undefined;
  domain?: 'production' | 'test' | undefined;
}

export function defaultDataDir(): string {
  const fromEnv = process.env.COUNTERSIGN_DATA_DIR;
  if (fromEnv) return resolve(fromEnv);
  const xdg = process.env.XDG_DATA_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.local', 'share'), 'countersign');
}

export function parseConfig(value: unknown): CountersignConfig {
  const parsed = configSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError(
      'config_invalid',
      `configuration error at ${JSON.stringify(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

export function loadConfig(dataDir: string, configFile?: string, overrides: ConfigOverrides = {}): CountersignConfig {
  const file = configFile ?? join(dataDir, 'config.json');
  let raw: unknown = {};
  if (existsSync(file)) {
    raw = parseStrictJson(readFileSync(file, 'utf8'));
  } else if (configFile !== undefined) {
    throw fileNotFound('the configuration file', configFile);
  }
  const config = parseConfig(raw);
  if (overrides.port !== undefined) config.gateway.port = overrides.port;
  if (overrides.host !== undefined) config.gateway.host = overrides.host;
  if (overrides.policyDir !== undefined) config.policyDir = overrides.policyDir;
  if (overrides.domain !== undefined) config.domain = overrides.domain;
  const { publicHost, tls, extraOrigins } = overrides;
  if (publicHost === undefined && tls === undefined && (extraOrigins ?? []).length === 0) return config;
  // The listening overrides go through the schema again, so a command-line value meets the same checks as config.json.
  return parseConfig({
    ...config,
    gateway: {
      ...config.gateway,
      ...(publicHost === undefined ? {} : { publicHost }),
      ...(tls === undefined ? {} : { tls: tls.certFile === undefined && tls.keyFile === undefined ? {} : tls }),
      extraOrigins: [...config.gateway.extraOrigins, ...(extraOrigins ?? [])],
    },
  });
}
