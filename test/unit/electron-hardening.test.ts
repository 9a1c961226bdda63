/**
 * The Electron shell's hardening, checked as TEXT: the Electron binary cannot run on these
 * machines (see STACK.md), so this reads main/electron/main.ts and main/preload/preload.ts and
 * asserts that the hardening flags and handlers are written there. It cannot prove runtime
 * behaviour; it stops a refactor from silently dropping a flag.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../main/core/app.js';

const main = readFileSync(join(REPO_ROOT, 'main', 'electron', 'main.ts'), 'utf8');
const preload = readFileSync(join(REPO_ROOT, 'main', 'preload', 'preload.ts'), 'utf8');
/** The source without comments, so a flag mentioned only in a comment does not count. */
const code = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
const mainCode = code(main);
const preloadCode = code(preload);

describe('Electron shell hardening (static text check)', () => {
  it('sets the secure webPreferences and never the insecure ones', () => {
    expect(mainCode).toMatch(/contextIsolation:\s*true/);
    expect(mainCode).toMatch(/sandbox:\s*true/);
    expect(mainCode).toMatch(/nodeIntegration:\s*false/);
    expect(mainCode).toMatch(/webSecurity:\s*true/);
    expect(mainCode).toMatch(/webviewTag:\s*false/);
    expect(mainCode).not.toMatch(/contextIsolation:\s*false/);
    expect(mainCode).not.toMatch(/sandbox:\s*false/);
    expect(mainCode).not.toMatch(/nodeIntegration:\s*true/);
    expect(mainCode).not.toMatch(/webSecurity:\s*false/);
    expect(mainCode).not.toMatch(/webviewTag:\s*true/);
    expect(mainCode).not.toMatch(/allowRunningInsecureContent:\s*true/);
    expect(mainCode).toMatch(/app\.enableSandbox\(\)/);
  });

  it('denies new windows and foreign navigation', () => {
    expect(mainCode).toMatch(/setWindowOpenHandler\(\(\)\s*=>\s*\(\{\s*action:\s*'deny'\s*\}\)\)/);
    expect(mainCode).toMatch(/\.on\('will-navigate'/);
    expect(mainCode).toMatch(/\.on\('will-redirect'/);
    expect(mainCode).toMatch(/preventDefault\(\)/);
  });

  it('answers permission requests and checks only through the one rule (notifications for the app origin)', () => {
    expect(mainCode).toMatch(
      /setPermissionRequestHandler\(\(contents, permission, callback, details\) =>\s*callback\(shellAllowsPermission\(permission, details\.requestingUrl \?\? contents\.getURL\(\), appOrigin\)\)/,
    );
    expect(mainCode).toMatch(
      /setPermissionCheckHandler\(\(_contents, permission, requestingOrigin\) =>\s*shellAllowsPermission\(permission, requestingOrigin, appOrigin\),?\s*\)/,
    );
    expect(mainCode.match(/callback\(/g)).toHaveLength(1);
  });

  it('keeps a tray with the pending count read from the desk title, and one instance', () => {
    expect(mainCode).toMatch(/new Tray\(/);
    expect(mainCode).toMatch(/\.on\('page-title-updated', \(_event, title\) => updateTray\(title\)\)/);
    expect(mainCode).toMatch(/pendingCountFromTitle\(title\)/);
    expect(mainCode).toMatch(/if \(!app\.requestSingleInstanceLock\(\)\)/);
    expect(mainCode).toMatch(/app\.on\('second-instance', showWindow\)/);
  });

  it('loads the UI from http://localhost (a secure origin for WebAuthn), not file:// or a custom scheme', () => {
    expect(mainCode).toMatch(/`http:\/\/localhost:\$\{/);
    expect(mainCode).not.toMatch(/loadFile\(|file:\/\/|registerSchemesAsPrivileged|protocol\.handle/);
  });

  it('checks the IPC sender frame origin and webContents before answering', () => {
    expect(mainCode).toMatch(/event\.senderFrame/);
    expect(mainCode).toMatch(/event\.sender\s*!==\s*mainWindow\.webContents/);
    expect(mainCode).toMatch(/isAppUrl\(frame\.url\)/);
    // Every bridge table row gets its handler from one loop, each through the same sender check.
    expect(mainCode).toMatch(
      /for \(const name of BRIDGE_METHOD_NAMES\) \{\s*ipcMain\.handle\(BRIDGE_METHODS\[name\]\.channel, \(event, \.\.\.args: unknown\[\]\) =>\s*answer\(event, /,
    );
    expect(mainCode.match(/ipcMain\.handle\(/g)).toHaveLength(1);
    // Push events go to our window only, on the one event channel.
    expect(mainCode).toMatch(/mainWindow\.webContents\.send\(BRIDGE_EVENT_CHANNEL, /);
    expect(mainCode.match(/webContents\.send\(/g)).toHaveLength(1);
    expect(mainCode).toMatch(/requestSingleInstanceLock\(\)/);
  });

  it('exposes only the bridge from the preload, never ipcRenderer', () => {
    expect(preloadCode).toMatch(/contextBridge\.exposeInMainWorld\('countersign'/);
    expect(preloadCode.match(/exposeInMainWorld/g)).toHaveLength(1);
    expect(preloadCode).not.toMatch(/exposeInMainWorld\([^)]*ipcRenderer/);
    expect(preloadCode).not.toMatch(/ipcRenderer\.(send|sendSync|once|addListener|prependListener)\b/);
    // The one listener is on the event channel, and the IPC event object never reaches the page.
    expect(preloadCode.match(/ipcRenderer\.on\b/g)).toHaveLength(1);
    expect(preloadCode).toMatch(
      /ipcRenderer\.on\(BRIDGE_EVENT_CHANNEL, \(_event, name: unknown, data: unknown\) => \{\s*const checked = parseBridgeEvent\(name, data\);/,
    );
  });
});
