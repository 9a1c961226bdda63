/**
 * The listening options shared by `countersign start` and `countersign hub`: bind address, public
 * host name, TLS certificate and key (or a development certificate), extra allowed origins. One
 * option table, one parser to ConfigOverrides and one description of what is served, so both
 * commands spell and check them alike (docs/team-mode.md, "Hubs on a host name").
 */
import type { ParseArgsConfig } from 'node:util';
import type { ConfigOverrides } from '../core/config.js';
import type { RunningCountersign } from '../core/app.js';
import { CountersignError } from '../../shared/errors.js';

/** Spread into a command's parseArgs options. */
export const LISTEN_OPTIONS = {
  host: { type: 'string' },
  'public-host': { type: 'string' },
  tls: { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'allowed-origin': { type: 'string', multiple: true },
} satisfies ParseArgsConfig['options'];

export const LISTEN_USAGE = `listening (start, hub):
  --host ADDR               bind address (default 127.0.0.1); anything but loopback needs TLS
  --public-host NAME        the host name desks and agents use: WebAuthn relying party id, certificate
                            name, allowed Host; anything but localhost needs TLS
  --tls-cert FILE --tls-key FILE
                            serve https and wss with this PEM certificate (chain) and key
  --tls                     serve https and wss with a development certificate made in the data
                            directory on first run (its SHA-256 fingerprint is printed at start)
  --allowed-origin ORIGIN   another origin desks may call from and ceremonies may come from (repeatable)`;

export interface ListenValues {
  host?: string | undefined;
  'public-host'?: string | undefined;
  tls?: boolean | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'allowed-origin'?: string[] | undefined;
}

/** The overrides these options make (the config schema checks the values; `config_invalid` names the option). */
export function listenOverrides(values: ListenValues): Pick<ConfigOverrides, 'host' | 'publicHost' | 'tls' | 'extraOrigins'> {
  const certFile = values['tls-cert'];
  const keyFile = values['tls-key'];
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new CountersignError('config_invalid', 'give --tls-cert and --tls-key together');
  if (values.tls === true && certFile !== undefined)
    throw new CountersignError(
      'config_invalid',
      '--tls makes a development certificate; leave it out when giving --tls-cert and --tls-key',
    );
  const tls = certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : values.tls === true ? {} : undefined;
  return {
    ...(values.host === undefined ? {} : { host: values.host }),
    ...(values['public-host'] === undefined ? {} : { publicHost: values['public-host'] }),
    ...(tls === undefined ? {} : { tls }),
    ...(values['allowed-origin'] === undefined ? {} : { extraOrigins: values['allowed-origin'] }),
  };
}

/** What a terminal shows about where the server is reached (the desk link with its secret is printed by the caller). */
export function describeListening(app: Pick<RunningCountersign, 'url' | 'deskUrl' | 'edge'>): string[] {
  const tls = app.edge.tls;
  if (tls === undefined) return [];
  return [
    `agents connect to: ${app.url}`,
    `desks open: ${app.deskUrl}/ui/`,
    `tls certificate SHA-256 fingerprint: ${tls.fingerprint256}${tls.source === 'development' ? ' (development certificate: compare it with what the browser shows; agents pin it)' : ''}`,
  ];
}

/** The command's values without the one list-valued listening option, for subcommands that take scalar options only. */
export function scalarValues<T extends { 'allowed-origin'?: string[] | undefined }>(values: T): Omit<T, 'allowed-origin'> {
  const copy: Partial<T> = { ...values };
  delete copy['allowed-origin'];
  return copy as Omit<T, 'allowed-origin'>;
}
