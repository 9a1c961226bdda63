/**
 * How Node clients of a hub (agent hosts using the SDK, the MCP proxy, the CLI) trust its TLS
 * certificate: a CA (or the hub's own certificate) from a PEM file, checked by OpenSSL with the
 * host name as usual, and/or a pinned SHA-256 certificate fingerprint — the one the hub prints at
 * start. A pin is checked when the TLS handshake completes, before the WebSocket upgrade is read
 * and long before the agent signs anything; a mismatch destroys the connection with
 * `tls_certificate_invalid`. With neither, Node's default CA store applies (a hub with a public
 * certificate needs nothing).
 */
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { WebSocket, type ClientOptions } from 'ws';
import { CountersignError, quote } from '../../shared/errors.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import type { WebSocketFactory, WebSocketLike } from '../../shared/agent-client.js';

export interface TlsTrustOptions {
  /** A PEM file of the CA(s) to trust, or of the hub's own (development) certificate. */
  caFile?: string | undefined;
  /** The hub certificate's SHA-256 fingerprint: hex, with or without colons, any case. */
  fingerprint256?: string | undefined;
}

export interface TlsTrust {
  /** PEM text of the trusted CA(s); undefined: Node's default store (unless pinned). */
  readonly ca: string | undefined;
  /** The pinned fingerprint as Node prints it (`AB:CD:…`, 32 bytes). */
  readonly pin: string | undefined;
}

const FINGERPRINT = /^(?:[0-9a-f]{2}:){31}[0-9a-f]{2}$|^[0-9a-f]{64}$/i;

/** Read the CA file and normalise the pin (`config_invalid` for a malformed fingerprint, `file_not_found` for a missing file). */
export function readTlsTrust(options: TlsTrustOptions): TlsTrust {
  let pin: string | undefined;
  if (options.fingerprint256 !== undefined) {
    const given = options.fingerprint256.trim();
    if (!FINGERPRINT.test(given))
      throw new CountersignError(
        'config_invalid',
        `the fingerprint ${quote(given)} is not a SHA-256 fingerprint (64 hex digits, colons optional)`,
      );
    const hex = given.replaceAll(':', '').toUpperCase();
    pin = hex.match(/../g)!.join(':');
  }
  const ca = options.caFile === undefined ? undefined : readCaFile(options.caFile);
  return { ca, pin };
}

/**
 * TLS connect options that enforce `trust`: the CA for OpenSSL's verification; with a pin, a
 * `createConnection` that checks the peer certificate's fingerprint at `secureConnect` and
 * destroys the socket on a mismatch (without a CA, the pin alone decides: chain and host name
 * are not checked, because the pinned certificate is what is trusted).
 */
export function tlsConnectOptions(
  trust: TlsTrust,
  onRefused?: (error: CountersignError) => void,
): Pick<ConnectionOptions, 'ca' | 'rejectUnauthorized'> & { createConnection?: (options: ConnectionOptions) => TLSSocket } {
  if (trust.pin === undefined) return trust.ca === undefined ? {} : { ca: trust.ca };
  const pin = trust.pin;
  return {
    ...(trust.ca === undefined ? {} : { ca: trust.ca }),
    rejectUnauthorized: trust.ca !== undefined,
    createConnection: (options) => {
      const host = options.host ?? 'localhost';
      const socket = tlsConnect({
        ...options,
        // As ws and https do: SNI for a name, none for an IP literal.
        servername: options.servername ?? (isIP(host) === 0 ? host : ''),
        ...(trust.ca === undefined ? { rejectUnauthorized: false } : {}),
      });
      socket.once('secureConnect', () => {
        const seen = socket.getPeerCertificate().fingerprint256;
        if (seen === pin) return;
        const error = new CountersignError(
          'tls_certificate_invalid',
          `the server's certificate fingerprint ${quote(seen ?? 'none', 95)} is not the pinned ${quote(pin, 95)}`,
          { details: { expected: pin, seen: seen ?? null } },
        );
        onRefused?.(error);
        socket.destroy(error);
      });
      return socket;
    },
  };
}

/**
 * A WebSocket factory for the agent SDK (`AgentClient`'s `webSocket`) that connects to `wss://`
 * with `trust` (and to `ws://` as before). `extra` reaches `ws` as it is (e.g. `lookup`).
 */
export function tlsWebSocketFactory(
  trust: TlsTrust,
  extra: ClientOptions & Pick<ConnectionOptions, 'lookup'> & { onRefused?: (error: CountersignError) => void } = {},
): WebSocketFactory {
  const { onRefused, ...clientOptions } = extra;
  return (url: string, protocols: string[]): WebSocketLike => {
    const secure = url.startsWith('wss:');
    const options: ClientOptions = {
      perMessageDeflate: false,
      ...clientOptions,
      ...(secure ? (tlsConnectOptions(trust, onRefused) as ClientOptions) : {}),
    };
    return new WebSocket(url, protocols, options) as unknown as WebSocketLike;
  };
}

/** GET a JSON document (the hub's JWKS) over http(s) with `trust`; `connection_closed` when it cannot be read. */
export function getJson(url: string, trust: TlsTrust, timeoutMs = 5_000): Promise<{ status: number; body: unknown }> {
  const secure = url.startsWith('https:');
  return new Promise((resolve, reject) => {
    const failed = (cause: unknown) =>
      reject(
        cause instanceof CountersignError ? cause : new CountersignError('connection_closed', `${quote(url)} could not be read`, { cause }),
      );
    const options: RequestOptions = {
      timeout: timeoutMs,
      headers: { accept: 'application/json' },
      ...(secure ? { ...(tlsConnectOptions(trust) as RequestOptions), agent: false } : {}),
    };
    const req = (secure ? httpsRequest : httpRequest)(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > 1024 * 1024) req.destroy(new CountersignError('frame_too_large', `${quote(url)} answered more than 1 MiB`));
        else chunks.push(chunk);
      });
      res.on('error', failed);
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: parseStrictJson(Buffer.concat(chunks).toString('utf8')) });
        } catch (cause) {
          failed(cause);
        }
      });
    });
    req.on('timeout', () => req.destroy(new CountersignError('connection_closed', `${quote(url)} did not answer within ${timeoutMs} ms`)));
    req.on('error', failed);
    req.end();
  });
}

function readCaFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CountersignError(missing ? 'file_not_found' : 'tls_certificate_invalid', `the tls ca file ${quote(file)} cannot be read`, {
      cause,
      details: { path: file },
    });
  }
}
