/**
 * `countersign keys ...`: the key ceremony for the custody signing key of a key domain.
 * Keys are generated inside the PKCS#11 token (sensitive, never extractable), pinned in the
 * store by their public-key thumbprint, self-tested (sign, verify against the pin) before
 * they become active, and rotated with an overlap window during which the old key stays in
 * the published JWKS.
 */
import { createPublicKey } from 'node:crypto';
import { loadConfig, type CountersignConfig } from '../core/config.js';
import { openDataDir } from '../core/app.js';
import { defaultOpenToken, newPkcs11KeyName, pkcs11RefOf } from '../core/keys/open-custody.js';
import { minimumOverlapMs, type SigningKeyRegistry } from '../core/keys/signing-keys.js';
import { verifyWithJwk } from '../core/custody/signer.js';
import { TeamKeySet, rotateTeamKey } from '../core/keys/team-key-set.js';
import { resolveDatabaseConfig } from '../core/store/pg/pg-config.js';
import { CountersignError, isCountersignError, quote } from '../../shared/errors.js';
import type { TokenDomain } from '../../shared/approval-token.js';
import { parseDuration } from './durations.js';
import { formatTime, print, printListing } from './print.js';

export interface KeysOptions {
  config?: string | undefined;
  domain?: string | undefined;
  alg?: string | undefined;
  overlap?: string | undefined;
  format?: string | undefined;
  json?: boolean | undefined;
  /** Team mode: rotate the team's one key in the shared database (keys rotate --database URL). */
  database?: string | undefined;
  name?: string | undefined;
}

export function domainOption(value: string | undefined): TokenDomain | undefined {
  if (value === undefined) return undefined;
  if (value !== 'production' && value !== 'test') throw new CountersignError('config_invalid', '--domain must be production or test');
  return value;
}

const log = (message: string) => console.error(message);

export async function keysCommand(sub: string | undefined, values: KeysOptions, dataDir: string): Promise<number> {
  const config = loadConfig(dataDir, values.config, { domain: domainOption(values.domain) });
  const { signingKeys, db } = openDataDir(dataDir);
  try {
    switch (sub) {
      case 'rotate':
        if (values.database !== undefined) {
          print(await rotateForTeam(config, values.database, values.name, values.alg));
          return 0;
        }
        print(await generate(sub, config, signingKeys, values));
        return 0;
      case 'init':
        print(await generate(sub, config, signingKeys, values));
        return 0;
      case 'list':
        printListing(
          signingKeys.list(config.domain).map((k) => ({ ...k, lastSignatureAt: signingKeys.lastSignatureAt(k.kid) ?? null })),
          [
            { header: 'kid', value: (k) => k.kid },
            { header: 'status', value: (k) => k.status },
            { header: 'custody', value: (k) => (k.custody === 'pkcs11' ? `pkcs11 ${k.tokenLabel ?? ''}/${k.keyLabel ?? ''}` : 'software') },
            { header: 'alg', value: (k) => k.algorithm },
            { header: 'created', value: (k) => formatTime(k.createdAt) },
            { header: 'published until', value: (k) => (k.status === 'retiring' ? formatTime(k.notAfter) : '') },
            { header: 'last signature', value: (k) => formatTime(k.lastSignatureAt) },
          ],
          { json: values.json, empty: `no signing key is pinned for the ${config.domain} domain yet` },
        );
        return 0;
      case 'export-public':
        return exportPublic(signingKeys, config.domain, values.format ?? 'jwks');
      case 'status':
        return status(config, signingKeys);
      default:
        throw new CountersignError(
          'config_invalid',
          `unknown keys command ${quote(sub ?? '')}; one of init, rotate, list, export-public, status`,
        );
    }
  } finally {
    db.close();
  }
}

async function generate(mode: 'init' | 'rotate', config: CountersignConfig, keys: SigningKeyRegistry, values: KeysOptions) {
  const pkcs11 = config.custody.pkcs11;
  if (pkcs11 === undefined) {
    throw new CountersignError(
      'config_invalid',
      `keys ${mode} needs a PKCS#11 token: set custody.pkcs11 in the configuration (docs/custody.md)`,
    );
  }
  const algorithm = values.alg ?? 'ES256';
  if (algorithm !== 'ES256' && algorithm !== 'EdDSA') throw new CountersignError('config_invalid', '--alg must be ES256 or EdDSA');
  const domain = config.domain;
  const active = keys.active(domain);
  if (mode === 'init' && active?.custody === 'pkcs11') {
    throw new CountersignError(
      'config_invalid',
      `the ${domain} domain already has PKCS#11 key ${quote(active.kid)}; use keys rotate to replace it`,
    );
  }
  if (mode === 'rotate' && active?.custody !== 'pkcs11') {
    throw new CountersignError('hsm_key_not_found', `the ${domain} domain has no PKCS#11 key to rotate; use keys init`);
  }
  // The old key stays in the JWKS at least as long as a token it signed just before can be
  // presented (the token lifetime, plus a minute for clocks and cached JWKS).
  const overlapMs = Math.max(parseDuration(values.overlap ?? '24h'), minimumOverlapMs(config.tokens.ttlSeconds));
  const now = Date.now();
  const token = await defaultOpenToken(pkcs11, log);
  try {
    const name = newPkcs11KeyName(domain, now);
    const publicJwk = await token.generateSigningKey({ label: name.label, id: name.id, algorithm });
    // Self-test through the same checks start-up runs: found by label+id, matches the pin,
    // not extractable; then a signature over a ceremony message must verify.
    const signer = await token.openSigner({ label: name.label, id: name.id, algorithm, pinnedKid: publicJwk.kid });
    const probe = new TextEncoder().encode(`countersign key ceremony ${domain} ${publicJwk.kid} ${now}`);
    if (!verifyWithJwk(publicJwk, probe, await signer.sign(probe))) {
      throw new CountersignError('signer_failed', 'the new key did not produce a signature that verifies; it was not activated');
    }
    const tokenLabel = pkcs11.tokenLabel ?? `slot ${pkcs11.slot ?? ''}`;
    const record = keys.activate(
      { domain, custody: 'pkcs11', publicJwk, tokenLabel, keyLabel: name.label, keyId: name.id },
      now,
      overlapMs,
    );
    const previous =
      active === undefined
        ? undefined
        : { kid: active.kid, custody: active.custody, publishedUntil: new Date(now + overlapMs).toISOString() };
    // A running server adopts the new key on its next signature (docs/custody.md, rotation).
    return {
      domain,
      kid: record.kid,
      alg: record.algorithm,
      token: tokenLabel,
      label: name.label,
      id: name.id,
      overlapMs,
      previous: previous ?? null,
    };
  } finally {
    await token.close();
  }
}

/**
 * Rotate a team's custody key (ADR 0014): generated in the shared HSM through this data
 * directory's custody.pkcs11, published to the team's key set at once; every hub serves it now and
 * signs with it once team.keyPublishLeadMs has passed. The hubs need no restart.
 */
async function rotateForTeam(config: CountersignConfig, url: string, hub: string | undefined, alg: string | undefined) {
  const pkcs11 = config.custody.pkcs11;
  if (pkcs11 === undefined)
    throw new CountersignError('config_invalid', 'keys rotate --database needs the team HSM: set custody.pkcs11 in the configuration');
  if (alg !== undefined && alg !== 'ES256' && alg !== 'EdDSA') throw new CountersignError('config_invalid', '--alg must be ES256 or EdDSA');
  const set = await TeamKeySet.open({
    database: resolveDatabaseConfig({ ...config.team.database, url }),
    hub: hub ?? config.team.hub ?? config.serverId,
    domain: config.domain,
    now: Date.now,
    publishLeadMs: config.team.keyPublishLeadMs,
    retireOverlapMs: minimumOverlapMs(config.tokens.ttlSeconds),
    onError: log,
  });
  try {
    const previous = set.active();
    const key = await rotateTeamKey(set, pkcs11, {
      domain: config.domain,
      ...(alg === undefined ? {} : { algorithm: alg }),
      now: Date.now,
      log,
    });
    return {
      domain: config.domain,
      kid: key.kid,
      alg: key.algorithm,
      state: key.state,
      token: key.tokenLabel,
      label: key.keyLabel,
      id: key.keyId,
      publishedBy: key.publishedBy,
      signFrom: new Date(key.signFrom).toISOString(),
      replaces: previous?.kid ?? null,
    };
  } finally {
    await set.close();
  }
}

function exportPublic(keys: SigningKeyRegistry, domain: TokenDomain, format: string): number {
  const published = keys.published(domain, Date.now());
  if (published.length === 0) throw new CountersignError('hsm_key_not_found', `no signing key is pinned for the ${domain} domain`);
  if (format === 'jwks') {
    print({ keys: published });
    return 0;
  }
  if (format !== 'pem') throw new CountersignError('config_invalid', '--format must be jwks or pem');
  for (const jwk of published) {
    const members = jwk.y === undefined ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
    const pem = createPublicKey({ key: members, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
    process.stdout.write(`# kid ${jwk.kid} alg ${jwk.alg}\n${pem}`);
  }
  return 0;
}

async function status(config: CountersignConfig, keys: SigningKeyRegistry): Promise<number> {
  const active = keys.active(config.domain);
  if (active === undefined) {
    print({ domain: config.domain, ok: false, code: 'hsm_key_not_found', message: 'no signing key is pinned for this domain yet' });
    return 1;
  }
  const base = {
    domain: config.domain,
    kid: active.kid,
    alg: active.algorithm,
    custody: active.custody,
    lastSignatureAt: keys.lastSignatureAt(active.kid) ?? null,
  };
  if (active.custody === 'software') {
    print({
      ...base,
      ok: !config.custody.requireHardware,
      hardwareBacked: false,
      note: 'the signing key is held in software: tokens are not hardware-backed',
    });
    return config.custody.requireHardware ? 1 : 0;
  }
  const pkcs11 = config.custody.pkcs11;
  if (pkcs11 === undefined) {
    print({
      ...base,
      ok: false,
      code: 'hardware_custody_required',
      message: 'the active key is on a PKCS#11 token but custody.pkcs11 is not configured',
    });
    return 1;
  }
  try {
    const token = await defaultOpenToken(pkcs11, log);
    try {
      await token.openSigner(pkcs11RefOf(active));
      const live = token.status();
      print({
        ...base,
        ok: true,
        token: active.tokenLabel ?? null,
        label: active.keyLabel ?? null,
        tokenPresent: live.tokenPresent,
        loggedIn: live.loggedIn,
        keyMatchesPin: true,
        extractable: false,
      });
      return 0;
    } finally {
      await token.close();
    }
  } catch (error) {
    if (!isCountersignError(error)) throw error;
    print({ ...base, ok: false, token: active.tokenLabel ?? null, code: error.code, message: error.message });
    return 1;
  }
}
