/**
 * Real SoftHSM2 tokens for tests, in a temp token directory.
 *
 * SoftHSM reads SOFTHSM2_CONF, and scans its token directory, only when the module is
 * initialized (the first load in the process). So:
 * - one test file uses one SOFTHSM2_CONF: the first call here creates a temp directory, writes
 *   the conf and sets process.env.SOFTHSM2_CONF; later calls in the same process add tokens to
 *   the same token directory (vitest runs each test file in its own fork, so files never share);
 * - create every token a file needs (e.g. in beforeAll) BEFORE the module is first loaded:
 *   a token initialized while the module is loaded stays invisible until the last reference
 *   closes and the module is initialized again. This helper refuses to do that.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pkcs11ModuleReferences } from '../../main/core/custody/pkcs11-api.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  label: string;
  pin: string;
  soPin: string;
  /** The shared SoftHSM directory (conf + tokens/) of this process. */
  dir: string;
  confPath: string;
  module: typeof SOFTHSM_MODULE;
  /** Forget this token; the directory goes when the last token of the process is cleaned up. */
  cleanup(): void;
}

interface SharedDir {
  dir: string;
  confPath: string;
  live: number;
}

let shared: SharedDir | undefined;

function sharedDir(): SharedDir {
  if (shared !== undefined) return shared;
  const dir = mkdtempSync(join(tmpdir(), 'countersign-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir, { mode: 0o700 });
  const confPath = join(dir, 'softhsm2.conf');
  writeFileSync(
    confPath,
    [
      `directories.tokendir = ${tokenDir}`,
      'objectstore.backend = file',
      'objectstore.umask = 0077',
      'log.level = ERROR',
      'slots.removable = false',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  process.env.SOFTHSM2_CONF = confPath;
  shared = { dir, confPath, live: 0 };
  return shared;
}

/** Initialize a fresh SoftHSM token with `softhsm2-util --init-token --free`. */
export function createSoftHsmToken(options: { label: string; pin: string; soPin: string }): SoftHsmToken {
  if (pkcs11ModuleReferences(SOFTHSM_MODULE) > 0) {
    throw new Error('create every SoftHSM token before the module is loaded: SoftHSM only scans its token directory at initialization');
  }
  const target = sharedDir();
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', options.label, '--pin', options.pin, '--so-pin', options.soPin], {
    env: { ...process.env, SOFTHSM2_CONF: target.confPath },
    stdio: 'pipe',
  });
  target.live += 1;
  let cleaned = false;
  return {
    label: options.label,
    pin: options.pin,
    soPin: options.soPin,
    dir: target.dir,
    confPath: target.confPath,
    module: SOFTHSM_MODULE,
    cleanup(): void {
      if (cleaned) return;
      cleaned = true;
      target.live -= 1;
      if (target.live > 0) return;
      rmSync(target.dir, { recursive: true, force: true });
      if (shared === target) shared = undefined;
    },
  };
}
