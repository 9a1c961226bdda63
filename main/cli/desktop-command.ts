/**
 * `countersign desktop` (`npm run desktop`): the Electron shell where an Electron binary exists;
 * otherwise it says so, starts the same core as `countersign start`, and opens the same desk in
 * the system browser (xdg-open, open, or start). The Electron binary is found WITHOUT requiring
 * the `electron` package (its index tries to download the binary, which these machines cannot).
 * Everything that touches the outside (finding Electron, spawning, opening a browser, starting
 * the core) is injected, so the fallback path is tested with a real core and a recording opener.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface DesktopCore {
  readonly port: number;
  readonly uiSessionSecret: string;
  close(): Promise<void>;
}

export interface DesktopDeps {
  /** The Electron executable, if one is installed. */
  findElectron: () => string | undefined;
  /** The compiled shell (dist/main/electron/main.js), if built. */
  shellEntry: () => string | undefined;
  /** Run Electron on the shell; resolves with its exit code. */
  runElectron: (binary: string, entry: string) => Promise<number>;
  /** Start the core (as `countersign start`). */
  startCore: () => Promise<DesktopCore>;
  /** Open a URL in the system browser. */
  open: (url: string) => Promise<void>;
  write: (line: string) => void;
}

export type DesktopOutcome = { kind: 'electron'; exitCode: number } | { kind: 'browser'; core: DesktopCore; url: string };

/** Where the npm package keeps the binary's relative path (path.txt) and the binary (dist/). */
export function findElectronBinary(electronPackageDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const pathFile = join(electronPackageDir, 'path.txt');
  if (!existsSync(pathFile)) return undefined;
  const relative = readFileSync(pathFile, 'utf8').trim();
  if (relative.length === 0) return undefined;
  const dist = env.ELECTRON_OVERRIDE_DIST_PATH ?? join(electronPackageDir, 'dist');
  const binary = join(dist, relative);
  return existsSync(binary) ? binary : undefined;
}

/** The platform's "open this URL" command, detached from this process. */
export function systemOpener(platform: NodeJS.Platform = process.platform): (url: string) => Promise<void> {
  const [command, args]: [string, (url: string) => string[]] =
    platform === 'darwin'
      ? ['open', (url) => [url]]
      : platform === 'win32'
        ? ['cmd', (url) => ['/c', 'start', '""', url]]
        : ['xdg-open', (url) => [url]];
  return (url) =>
    new Promise((resolve, reject) => {
      const child = spawn(command, args(url), { stdio: 'ignore', detached: true });
      child.once('error', reject);
      child.once('spawn', () => {
        child.unref();
        resolve();
      });
    });
}

export async function runDesktop(deps: DesktopDeps): Promise<DesktopOutcome> {
  const binary = deps.findElectron();
  const entry = deps.shellEntry();
  if (binary !== undefined && entry !== undefined) {
    deps.write(`starting the Countersign desktop app (${binary})`);
    return { kind: 'electron', exitCode: await deps.runElectron(binary, entry) };
  }
  deps.write(
    binary === undefined
      ? 'no Electron binary is installed here (it cannot be downloaded on this machine); opening the desk in your system browser instead'
      : 'the Electron shell is not built (see docs/desktop.md); opening the desk in your system browser instead',
  );
  const core = await deps.startCore();
  // The session secret travels in the fragment, which the browser never sends to any server.
  const url = `http://localhost:${core.port}/ui/#secret=${core.uiSessionSecret}`;
  try {
    await deps.open(url);
    deps.write(`desk opened in the system browser; if it did not appear, open: ${url}`);
  } catch {
    deps.write(`could not start the system browser; open: ${url}`);
  }
  return { kind: 'browser', core, url };
}
