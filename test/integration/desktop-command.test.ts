/**
 * `countersign desktop`: finding an Electron binary without requiring the electron package (which
 * would try to download it), and the fallback when there is none: a real core starts and the
 * injected opener (standing in for xdg-open/open/start, which would open a real browser) receives
 * the desk URL whose fragment secret the core accepts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findElectronBinary, runDesktop, type DesktopCore } from '../../main/cli/desktop-command.js';
import { startCountersign } from '../../main/core/app.js';
import { DEMO_POLICY_DIR, tempDir } from '../helpers/harness.js';

let core: DesktopCore | undefined;
afterEach(async () => {
  await core?.close();
  core = undefined;
});

describe('finding Electron', () => {
  it('finds nothing when the package has no downloaded binary (as on these machines)', () => {
    const dir = tempDir('electron-pkg-');
    expect(findElectronBinary(dir, {})).toBeUndefined();
    writeFileSync(join(dir, 'path.txt'), 'electron');
    expect(findElectronBinary(dir, {})).toBeUndefined();
  });

  it('finds the binary named by path.txt under dist/ (or ELECTRON_OVERRIDE_DIST_PATH)', () => {
    const dir = tempDir('electron-pkg-');
    writeFileSync(join(dir, 'path.txt'), 'electron');
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'electron'), '');
    expect(findElectronBinary(dir, {})).toBe(join(dir, 'dist', 'electron'));
    const other = tempDir('electron-dist-');
    expect(findElectronBinary(dir, { ELECTRON_OVERRIDE_DIST_PATH: other })).toBeUndefined();
    writeFileSync(join(other, 'electron'), '');
    expect(findElectronBinary(dir, { ELECTRON_OVERRIDE_DIST_PATH: other })).toBe(join(other, 'electron'));
  });
});

describe('npm run desktop without Electron', () => {
  it('says so, starts the core and opens the desk in the system browser with a working session link', async () => {
    const lines: string[] = [];
    const opened: string[] = [];
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const outcome = await runDesktop({
      findElectron: () => undefined,
      shellEntry: () => undefined,
      runElectron: () => Promise.reject(new Error('must not run Electron')),
      startCore: () => startCountersign({ dataDir, log: () => undefined }),
      open: (url) => {
        opened.push(url);
        return Promise.resolve();
      },
      write: (line) => lines.push(line),
    });
    expect(outcome.kind).toBe('browser');
    if (outcome.kind !== 'browser') return;
    core = outcome.core;
    expect(lines[0]).toContain('no Electron binary is installed here');
    expect(opened).toEqual([`http://localhost:${core.port}/ui/#secret=${core.uiSessionSecret}`]);
    const secret = new URLSearchParams(new URL(opened[0]!).hash.slice(1)).get('secret');
    const status = await fetch(`http://127.0.0.1:${core.port}/api/ui/status`, { headers: { authorization: `Bearer ${secret}` } });
    expect(status.status).toBe(200);
  }, 60_000);

  it('prints the link when the system browser cannot be started', async () => {
    const lines: string[] = [];
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const outcome = await runDesktop({
      findElectron: () => '/opt/electron/electron',
      shellEntry: () => undefined,
      runElectron: () => Promise.reject(new Error('must not run Electron')),
      startCore: () => startCountersign({ dataDir, log: () => undefined }),
      open: () => Promise.reject(new Error('spawn xdg-open ENOENT')),
      write: (line) => lines.push(line),
    });
    if (outcome.kind === 'browser') core = outcome.core;
    expect(lines[0]).toContain('the Electron shell is not built');
    expect(lines.at(-1)).toMatch(/^could not start the system browser; open: http:\/\/localhost:\d+\/ui\/#secret=/);
  }, 60_000);

  it('runs Electron on the built shell when both exist', async () => {
    const ran: string[][] = [];
    const outcome = await runDesktop({
      findElectron: () => '/opt/electron/electron',
      shellEntry: () => '/app/dist/main/electron/main.js',
      runElectron: (binary, entry) => {
        ran.push([binary, entry]);
        return Promise.resolve(0);
      },
      startCore: () => Promise.reject(new Error('the shell starts its own core')),
      open: () => Promise.reject(new Error('no browser with Electron')),
      write: () => undefined,
    });
    expect(outcome).toEqual({ kind: 'electron', exitCode: 0 });
    expect(ran).toEqual([['/opt/electron/electron', '/app/dist/main/electron/main.js']]);
  });
});
