/**
 * A SoftHSM2 token with pinned ES256 keys for the benchmarks: created before the module is
 * loaded in this process (SoftHSM scans its token directory once), and the SOFTHSM2_CONF it
 * sets is inherited by the benchmark's child servers.
 */
import { createSoftHsmToken, type SoftHsmToken } from '../test/helpers/softhsm.js';
import type { Pkcs11Config } from '../main/core/config.js';

export const BENCH_PIN_ENV = 'COUNTERSIGN_BENCH_HSM_PIN';

let shared: { token: SoftHsmToken; config: Pkcs11Config } | undefined;

export function benchToken(): { token: SoftHsmToken; config: Pkcs11Config } {
  if (shared !== undefined) return shared;
  const token = createSoftHsmToken({ label: 'cs-bench', pin: '123456', soPin: '12345678' });
  process.env[BENCH_PIN_ENV] = token.pin;
  shared = {
    token,
    config: {
      module: token.module,
      tokenLabel: token.label,
      pin: { env: BENCH_PIN_ENV },
      callTimeoutMs: 5_000,
      reconnectAttempts: 3,
      reconnectDelayMs: 250,
      sessions: 4,
    },
  };
  return shared;
}
