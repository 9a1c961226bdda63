/**
 * Where the one HTTP edge and the agent socket are reached from: the public host name (the
 * WebAuthn relying party id), the scheme (http on loopback, https/wss for a hub), the TLS
 * certificate and key, and what follows from them — the Host allowlist, the server's own origin,
 * the origins ceremonies may come from, the URLs printed for desks and agents. `countersign
 * start` and `countersign hub` both resolve it once at start (`resolvePublicEdge`).
 *
 * The rule that makes a hub safe to expose: a non-loopback bind address or a public host name
 * other than localhost is refused without TLS (`tls_required`), before anything listens.
 */
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { CountersignConfig } from '../config.js';
import { readUserFile } from '../user-files.js';
import { loadOrCreateDevCertificate, DEV_CERT_DIR } from './dev-certificate.js';
import { tlsMaterialOf, type TlsMaterial } from './tls-material.js';

export type { TlsMaterial } from './tls-material.js';

export interface PublicEdge {
  /** `gateway.publicHost`, or `localhost`. */
  readonly hostName: string;
  readonly scheme: 'http' | 'https';
  readonly tls: TlsMaterial | undefined;
  /** The WebAuthn relying party id: `approvals.rpId`, else the host name. */
  readonly rpId: string;
  /** The server's own origin once bound: `https://countersign.example:7345` (no port for 443/80). */
  origin(port: number): string;
  /** The agent endpoint base: `wss://countersign.example:7345` (ws:// without TLS). */
  agentUrl(port: number): string;
  /** Host header values the edge and the socket accept: loopback names, the host name, `gateway.allowedHosts`, each with the port. */
  allowedHosts(port: number): string[];
  /** Origins a browser may call the HTTP edge from besides the page's own: the ceremony origins. */
  approvalOrigins(port: number): string[];
}

/** A loopback bind address: 127.0.0.0/8, ::1 or the name localhost. `0.0.0.0` and `::` are every interface. */
export function isLoopbackAddress(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare.toLowerCase() === 'localhost') return true;
  if (isIP(bare) === 4) return bare.split('.')[0] === '127';
  if (isIP(bare) === 6) return bare === '::1' || bare === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Refuse to serve beyond this machine in clear text: a non-loopback bind address, or a public
 * host name other than localhost, without `gateway.tls` is `tls_required`.
 */
export function assertSecureBinding(config: CountersignConfig): void {
  const { host, publicHost, tls } = config.gateway;
  if (tls !== undefined) return;
  if (!isLoopbackAddress(host)) {
    throw new CountersignError(
      'tls_required',
      `binding to ${quote(host)} (not a loopback address) needs tls: give --tls-cert and --tls-key (gateway.tls.certFile and keyFile), --tls for a development certificate, or bind 127.0.0.1`,
      { details: { host } },
    );
  }
  if (publicHost !== undefined && publicHost !== 'localhost') {
    throw new CountersignError(
      'tls_required',
      `serving the host name ${quote(publicHost)} needs tls (browsers allow security keys over plain http only on localhost): give --tls-cert and --tls-key, or --tls for a development certificate`,
      { details: { host: publicHost } },
    );
  }
}

/** The WebAuthn relying party id this configuration uses (also for CLI commands that run without the server). */
export function relyingPartyId(config: CountersignConfig): string {
  return config.approvals.rpId ?? config.gateway.publicHost ?? 'localhost';
}

/** `scheme://host[:port]`, without the port when it is the scheme's default (as browsers send Origin). */
export function originOf(scheme: 'http' | 'https', hostName: string, port: number): string {
  const defaultPort = scheme === 'https' ? 443 : 80;
  return port === defaultPort ? `${scheme}://${hostName}` : `${scheme}://${hostName}:${port}`;
}

/**
 * The public edge of a configuration without its TLS material (CLI commands that print or store
 * origins, such as `approvers`): same host name, scheme and origins as the running server.
 */
export function publicEdgeOf(config: CountersignConfig, tls?: TlsMaterial): PublicEdge {
  const hostName = config.gateway.publicHost ?? 'localhost';
  const scheme = config.gateway.tls === undefined ? 'http' : 'https';
  const origin = (port: number) => originOf(scheme, hostName, port);
  return {
    hostName,
    scheme,
    tls,
    rpId: relyingPartyId(config),
    origin,
    agentUrl: (port) => origin(port).replace(/^http/, 'ws'),
    allowedHosts(port) {
      const names = ['127.0.0.1', 'localhost', '[::1]', hostName, ...config.gateway.allowedHosts].map((h) => h.toLowerCase());
      const hosts = new Set(names.map((h) => hostWithPort(h, port)));
      // Browsers leave the port out of Host when it is the scheme's default.
      if (port === (scheme === 'https' ? 443 : 80)) for (const h of names) if (!hasPort(h)) hosts.add(h);
      return [...hosts];
    },
    approvalOrigins: (port) => config.approvals.origins ?? [origin(port), ...config.gateway.extraOrigins],
  };
}

/**
 * Resolve the public edge at start: check the binding rule, then read the configured certificate
 * and key (or make / reuse the development certificate in `<dataDir>/tls/`).
 */
export async function resolvePublicEdge(config: CountersignConfig, dataDir: string, log?: (message: string) => void): Promise<PublicEdge> {
  assertSecureBinding(config);
  const tls = config.gateway.tls;
  if (tls === undefined) return publicEdgeOf(config);
  const hostName = config.gateway.publicHost ?? 'localhost';
  const material =
    tls.certFile !== undefined && tls.keyFile !== undefined
      ? readTlsFiles(resolve(dataDir, tls.certFile), resolve(dataDir, tls.keyFile), hostName, Date.now())
      : await loadOrCreateDevCertificate(join(dataDir, DEV_CERT_DIR), hostName, log === undefined ? {} : { log });
  return publicEdgeOf(config, material);
}

/** Describe TLS material for a terminal or a log: what is served, and the fingerprint a desk user compares. */
export function describeTls(material: TlsMaterial, hostName: string): string[] {
  return [
    material.source === 'development'
      ? `tls: DEVELOPMENT certificate for ${hostName} (${material.certFile}); browsers will warn until it is trusted — compare this fingerprint:`
      : `tls: certificate ${material.certFile} for ${hostName}`,
    `tls: SHA-256 fingerprint ${material.fingerprint256}`,
  ];
}

function readTlsFiles(certFile: string, keyFile: string, hostName: string, now: number): TlsMaterial {
  const cert = readUserFile('the tls certificate file', certFile);
  const key = readUserFile('the tls key file', keyFile);
  return tlsMaterialOf(cert, key, hostName, now, { source: 'files', certFile, keyFile });
}

function hasPort(entry: string): boolean {
  return entry.startsWith('[') ? /\]:\d+$/.test(entry) : entry.includes(':');
}

/**
 * An allowlist entry as the Host header carries it: "name:port" or "[v6]:port". An entry without
 * a port means the gateway's own port; an entry with its own port (a proxy's) keeps it.
 */
export function hostWithPort(entry: string, port: number): string {
  return hasPort(entry) ? entry : `${entry}:${port}`;
}
