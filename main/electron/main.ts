/**
 * The Electron shell: a thin wire around the headless core. It starts the core in-process,
 * opens ONE hardened window on http://localhost:<port>/ui/ (WebAuthn needs a secure origin:
 * localhost qualifies, file:// and custom schemes do not), and answers the bridge's IPC channels
 * (one per row of shared/bridge-table.ts, derived) from the core's one bridge implementation
 * after checking who is asking, and sends the table's push events to the window. IPC arguments
 * are untrusted input: each is checked against the table before the core sees it. Everything else the app
 * does lives in main/core and is tested headless; this file is only typechecked (the Electron
 * binary cannot run on CI machines). See docs/desktop.md.
 */
// First: a V8 setting that must precede the first WebAssembly compile (Cedar's; ADR 0021).
import '../core/policy/wasm-compile-flags.mjs';
import { app, BrowserWindow, ipcMain, Menu, nativeImage, session, Tray, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { fileURLToPath } from 'node:url';
import { startCountersign, type RunningCountersign } from '../core/app.js';
import { defaultDataDir } from '../core/config.js';
import { callBridgeMethod, type BridgeServer } from '../core/ui/bridge-routes.js';
import { windowCaller, type BridgeCaller } from '../core/ui/bridge-caller.js';
import type { BridgeEventHub } from '../core/ui/bridge-events.js';
import { UI_BASE_PATH, toBridgeError, type BridgeAnswer } from '../../shared/bridge.js';
import { BRIDGE_EVENT_CHANNEL, BRIDGE_METHODS, BRIDGE_METHOD_NAMES } from '../../shared/bridge-table.js';
import { CountersignError } from '../../shared/errors.js';
import { pendingCountFromTitle, shellAllowsPermission } from '../../shared/shell-permissions.js';
import { TRAY_ICON_PNG_BASE64 } from './tray-icon.js';

/** The preload is bundled to one CommonJS file next to the built shell (sandboxed preloads cannot import). */
const PRELOAD_PATH = fileURLToPath(new URL('../preload/preload.cjs', import.meta.url));
/** An in-memory session of our own: no persisted cookies or storage, our permission handlers. */
const SESSION_PARTITION = 'countersign';

let core: RunningCountersign | undefined;
let mainWindow: BrowserWindow | undefined;
let tray: Tray | undefined;
/** `http://localhost:<port>` once the core listens; until then nothing is same-origin. */
let appOrigin: string | undefined;

const log = (message: string) => console.error(`[countersign] ${message}`);

function isAppUrl(url: string): boolean {
  if (appOrigin === undefined) return false;
  try {
    return new URL(url).origin === appOrigin;
  } catch {
    return false;
  }
}

// ---- process-wide hardening (before anything else) ----

app.enableSandbox();

// Every webContents ever created (including any a page might try to open) gets the same rules.
app.on('web-contents-created', (_event, contents: WebContents) => {
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.on('will-navigate', (event) => {
    if (!isAppUrl(event.url)) event.preventDefault();
  });
  contents.on('will-redirect', (event) => {
    if (!isAppUrl(event.url)) event.preventDefault();
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
});

// ---- IPC: the bridge, answered only for our window's top frame on our origin ----

function senderAllowed(event: IpcMainInvokeEvent): boolean {
  if (mainWindow === undefined || mainWindow.isDestroyed()) return false;
  if (event.sender !== mainWindow.webContents) return false;
  const frame = event.senderFrame;
  if (frame === null || frame.parent !== null) return false;
  return isAppUrl(frame.url);
}

async function answer<T>(event: IpcMainInvokeEvent, work: () => Promise<T>): Promise<BridgeAnswer<T>> {
  if (!senderAllowed(event)) {
    log('refused a bridge call from an unexpected sender');
    return { ok: false, error: toBridgeError(new CountersignError('not_authenticated', 'the bridge only answers the Countersign window')) };
  }
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    if (!(error instanceof CountersignError)) log(`bridge call failed: ${error instanceof Error ? error.message : String(error)}`);
    return { ok: false, error: toBridgeError(error) };
  }
}

/**
 * The desk session of each window: its token is kept here in the main process (the renderer
 * never sees it, like an HttpOnly cookie) and dropped with the window (ADR 0010).
 */
const windowSessions = new Map<number, BridgeCaller>();
function callerOf(contents: WebContents): BridgeCaller {
  let caller = windowSessions.get(contents.id);
  if (caller === undefined) {
    caller = windowCaller();
    windowSessions.set(contents.id, caller);
    const id = contents.id;
    contents.once('destroyed', () => windowSessions.delete(id));
  }
  return caller;
}

/**
 * Every row of the bridge table becomes one IPC handler (derived, nothing per method): the
 * arguments are checked against the row by callBridgeMethod before the core's one server
 * implementation sees them. Push events go to our window only, on the one event channel.
 */
function registerBridge(service: BridgeServer, events: BridgeEventHub): void {
  for (const name of BRIDGE_METHOD_NAMES) {
    ipcMain.handle(BRIDGE_METHODS[name].channel, (event, ...args: unknown[]) =>
      answer(event, () => callBridgeMethod(service, name, args, callerOf(event.sender))),
    );
  }
  events.subscribe((pushed) => {
    if (mainWindow === undefined || mainWindow.isDestroyed()) return;
    mainWindow.webContents.send(BRIDGE_EVENT_CHANNEL, pushed.name, pushed.data);
  });
}

// ---- the window ----

function createWindow(origin: string): BrowserWindow {
  const ses = session.fromPartition(SESSION_PARTITION);
  // Deny every permission request and check except desktop notifications for our own origin
  // (shared/shell-permissions.ts). WebAuthn (security keys) does not go through these handlers
  // in Electron, so it needs nothing here; add an entry only when a feature does.
  ses.setPermissionRequestHandler((contents, permission, callback, details) =>
    callback(shellAllowsPermission(permission, details.requestingUrl ?? contents.getURL(), appOrigin)),
  );
  ses.setPermissionCheckHandler((_contents, permission, requestingOrigin) =>
    shellAllowsPermission(permission, requestingOrigin, appOrigin),
  );

  const win = new BrowserWindow({
    width: 1280,
    height: 860,
    show: false,
    title: 'Countersign',
    webPreferences: {
      session: ses,
      preload: PRELOAD_PATH,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      experimentalFeatures: false,
      navigateOnDragDrop: false,
      // A middle click must not open a link in a new window (electronegativity AUXCLICK_JS_CHECK).
      disableBlinkFeatures: 'Auxclick',
      spellcheck: false,
      safeDialogs: true,
      devTools: !app.isPackaged,
    },
  });
  win.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  win.webContents.on('will-navigate', (event) => {
    if (!isAppUrl(event.url)) event.preventDefault();
  });
  win.webContents.on('will-redirect', (event) => {
    if (!isAppUrl(event.url)) event.preventDefault();
  });
  win.webContents.on('render-process-gone', (_event, details) => log(`renderer exited: ${details.reason}`));
  win.once('ready-to-show', () => win.show());
  // The desk writes its pending count into the title ("(3) Countersign"): mirror it in the tray.
  win.on('page-title-updated', (_event, title) => updateTray(title));
  win.on('closed', () => {
    mainWindow = undefined;
  });
  win
    .loadURL(`${origin}${UI_BASE_PATH}`)
    .catch((error: unknown) => log(`could not load the UI: ${error instanceof Error ? error.message : String(error)}`));
  return win;
}

// ---- the tray: the pending count, and a way back to the window ----

function showWindow(): void {
  if (mainWindow === undefined || mainWindow.isDestroyed()) return;
  if (mainWindow.isMinimized()) mainWindow.restore();
  mainWindow.show();
  mainWindow.focus();
}

function createTray(): Tray {
  const created = new Tray(nativeImage.createFromDataURL(`data:image/png;base64,${TRAY_ICON_PNG_BASE64}`));
  created.setToolTip('Countersign');
  created.setContextMenu(
    Menu.buildFromTemplate([
      { label: 'Open Countersign', click: showWindow },
      { type: 'separator' },
      { label: 'Quit', click: () => app.quit() },
    ]),
  );
  created.on('click', showWindow);
  return created;
}

function updateTray(title: string): void {
  const count = pendingCountFromTitle(title);
  const text = count === 0 ? 'Countersign: nothing waits for you' : `Countersign: ${count} request${count === 1 ? '' : 's'} wait for you`;
  tray?.setToolTip(text);
  // macOS shows text beside the tray icon; elsewhere the tooltip and the badge carry the count.
  if (process.platform === 'darwin') tray?.setTitle(count === 0 ? '' : String(count));
  app.setBadgeCount(count);
}

// ---- lifecycle ----

async function start(): Promise<void> {
  await app.whenReady();
  const running = await startCountersign({ dataDir: defaultDataDir(), log, command: 'countersign desktop app' });
  core = running;
  // localhost, not 127.0.0.1: WebAuthn accepts http only on localhost (and 127.0.0.1 is not a valid rpId).
  appOrigin = `http://localhost:${running.port}`;
  // The same server implementation the headless HTTP routes use.
  registerBridge(running.ui, running.bridgeEvents);
  mainWindow = createWindow(appOrigin);
  tray = createTray();
}

let shuttingDown = false;
let shutDown = false;

app.on('before-quit', (event) => {
  if (shutDown || core === undefined) return;
  // Close the core (gateway, audit record, database) before the process goes away.
  event.preventDefault();
  if (shuttingDown) return;
  shuttingDown = true;
  const running = core;
  const finish = () => {
    shutDown = true;
    core = undefined;
    app.quit();
  };
  running.close().then(finish, (error: unknown) => {
    log(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
    finish();
  });
});

app.on('window-all-closed', () => app.quit());

if (!app.requestSingleInstanceLock()) {
  // Another Countersign owns the data directory and the port: hand over to it.
  app.quit();
} else {
  app.on('second-instance', showWindow);
  process.once('SIGINT', () => app.quit());
  process.once('SIGTERM', () => app.quit());
  start().catch((error: unknown) => {
    log(`could not start: ${error instanceof Error ? error.message : String(error)}`);
    app.exit(1);
  });
}
