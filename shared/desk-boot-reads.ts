/**
 * The desk's boot reads: the first GETs a headless desk needs (who is signed in; when it opens on
 * the queue, the queue's first page and the approvers), sent by the renderer's boot script
 * (renderer/src/boot.ts) before React, zod and the bridge's schemas have loaded and run, and
 * handed to the HTTP bridge (createHttpBridge's `prefetched`), which checks each answer as it
 * checks any other. With 1,000 pending those modules took most of a fresh desk's first second
 * (bench desk-paint), and the reads used to start only after them.
 *
 * Pure and schema-free on purpose: nothing here may pull zod into the boot script.
 */
import { SESSION_SECRET_PATTERN } from './ui-address.js';

/** The queue's page size (renderer/src/desk/first-paint.ts reads pages of this size). */
export const DESK_QUEUE_PAGE = 50;

/**
 * Exactly what the HTTP bridge requests for getSession(), and for listQueue(DESK_QUEUE_PAGE) and
 * listApprovers() (test/integration/desk-boot-reads.test.ts holds them equal).
 */
export const BOOT_SESSION_PATH = '/api/session';
export const BOOT_QUEUE_PATHS: readonly string[] = [`/api/ui/queue?limit=${DESK_QUEUE_PAGE}`, '/api/approvers'];
/** The HTTP bridge's own per-request timeout. */
const BOOT_TIMEOUT_MS = 10_000;

// `cache` is a browser fetch option: Node's RequestInit type lacks it (as in bridge-http-client.ts).
export type BootFetch = (input: string, init: RequestInit & { cache?: 'no-store' }) => Promise<Response>;

export interface BootReads {
  /** The request for `path` when it was sent with this `secret`, taken once; undefined otherwise (send your own). */
  take(secret: string, path: string): Promise<Response> | undefined;
  /** Drop what was not taken, so no later call ever gets an old answer. */
  forget(): void;
  /** How many are still untaken. */
  readonly left: number;
}

/**
 * Send the boot reads to `origin` with `secret` (nothing is sent for a secret the HTTP bridge
 * would refuse). `withQueue`: the desk opens on the queue, so its first page and the approvers too.
 */
export function sendBootReads(options: { origin: string; secret: string; withQueue: boolean; fetch?: BootFetch }): BootReads {
  const reads = new Map<string, Promise<Response>>();
  const { secret } = options;
  if (SESSION_SECRET_PATTERN.test(secret)) {
    const doFetch: BootFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    for (const path of options.withQueue ? [BOOT_SESSION_PATH, ...BOOT_QUEUE_PATHS] : [BOOT_SESSION_PATH]) {
      // The request the HTTP bridge sends (shared/bridge-http-client.ts).
      const read = doFetch(`${options.origin}${path}`, {
        method: 'GET',
        headers: { authorization: `Bearer ${secret}`, accept: 'application/json' },
        cache: 'no-store',
        credentials: 'same-origin',
        redirect: 'error',
        signal: AbortSignal.timeout(BOOT_TIMEOUT_MS),
      });
      // Not an unhandled rejection meanwhile: the bridge that takes this read reports its failure.
      read.catch(() => undefined);
      reads.set(path, read);
    }
  }
  return {
    take(takerSecret, path) {
      if (takerSecret !== secret) return undefined;
      const read = reads.get(path);
      reads.delete(path);
      return read;
    },
    forget: () => reads.clear(),
    get left() {
      return reads.size;
    },
  };
}
