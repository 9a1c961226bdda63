/**
 * The desk's boot module: main.tsx imports it first, so it runs before React DOM and the bridge's
 * zod schemas are evaluated (most of a fresh desk's script time) and sends the desk's first reads
 * (shared/desk-boot-reads.ts) while they are. main.tsx's HTTP bridge takes each answer once
 * and checks it like any other. The secret and the deep link stay in the fragment: main.tsx
 * takes them (and clears the fragment) as before. Nothing imported here builds a schema.
 */
import { UI_SECRET_FRAGMENT_PARAM } from '../../shared/ui-address.js';
import { sendBootReads, type BootReads } from '../../shared/desk-boot-reads.js';
import { targetFromFragment } from './desk/desk-view.js';

function start(): BootReads | undefined {
  // Electron: the preload's IPC bridge answers; nothing travels over HTTP.
  if (window.countersign !== undefined || window.location.hash.length <= 1) return undefined;
  const secret = new URLSearchParams(window.location.hash.slice(1)).get(UI_SECRET_FRAGMENT_PARAM);
  if (secret === null) return undefined;
  const target = targetFromFragment(window.location.hash);
  return sendBootReads({ origin: window.location.origin, secret, withQueue: target === undefined || target.view === 'queue' });
}

const reads = start();

/** The boot's request for `path` when it was sent with `secret`, taken once (see BootReads.take). */
export function takeBootRead(secret: string, path: string): Promise<Response> | undefined {
  return reads?.take(secret, path);
}

/** Drop what main.tsx did not take. */
export function forgetBootReads(): void {
  reads?.forget();
}
