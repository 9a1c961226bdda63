/**
 * Renderer entry: pick the bridge, then render. In Electron the preload provides
 * `window.countersign` (IPC); in headless mode the page talks HTTP to the same server with
 * the session secret handed over in the URL fragment (`/ui/#secret=...`), which is removed
 * from the address bar and history at once and kept only in memory.
 */
// First: boot.ts sends the desk's first reads before the modules below are evaluated.
import { forgetBootReads, takeBootRead } from './boot.js';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { createDeferredBridge, type DeferredBridgeParts } from '../../shared/bridge-deferred.js';
import { createHttpTransport, routeRequest } from '../../shared/bridge-http-transport.js';
import type { CountersignBridge } from '../../shared/bridge-table.js';
import { FIRST_ANSWER_ROUTES } from '../../shared/desk-first-answers.js';
import { UI_SECRET_FRAGMENT_PARAM } from '../../shared/ui-address.js';
import { App, type BridgeChoice } from './App.js';
import { targetFromFragment } from './desk/desk-view.js';
import { afterQueueShown, prefetchQueue, prefetchSession, readSession } from './desk/first-paint.js';
import type { DeskSessionView } from '../../shared/desk-session.js';
import './styles.css';

declare global {
  interface Window {
    /** Set by the Electron preload; absent in a plain browser. */
    countersign?: CountersignBridge;
  }
}

/**
 * When the full bridge (zod and the table's schemas, ./full-bridge.ts) may load: once the queue
 * has shown its first answer and that frame has been painted (two animation frames), or a second
 * after it shows in a tab that does not paint (a background tab runs no animation frames).
 */
const fullBridgeReady = new Promise<void>((resolve) => {
  afterQueueShown(() => {
    window.setTimeout(resolve, 1_000);
    requestAnimationFrame(() => requestAnimationFrame(() => window.setTimeout(resolve, 0)));
  });
});

/** How long the first render waits for the session's first answer before rendering without it. */
const FIRST_SESSION_WAIT_MS = 1_500;

/** The first paint's three reads need no path argument (FIRST_ANSWER_ROUTES): none is ever filled. */
const noPathArguments = (template: string) => template;

function takeSecretFromFragment(): string | undefined {
  if (window.location.hash.length <= 1) return undefined;
  const secret = new URLSearchParams(window.location.hash.slice(1)).get(UI_SECRET_FRAGMENT_PARAM) ?? undefined;
  window.history.replaceState(window.history.state, '', `${window.location.pathname}${window.location.search}`);
  return secret;
}

function chooseBridge(): BridgeChoice {
  const secret = takeSecretFromFragment();
  const inner = window.countersign;
  if (inner !== undefined) {
    // Electron: the preload's bridge, whose answers are checked here again (the renderer trusts no transport).
    const parts: DeferredBridgeParts = {
      first: (method, args) => (inner[method] as (...a: readonly unknown[]) => Promise<unknown>)(...args),
      events: (listener) =>
        inner.subscribe((event: unknown) => listener((event as { name?: unknown })?.name, (event as { data?: unknown })?.data)),
      loadFull: async () => (await import('./full-bridge.js')).fullIpcBridge(inner),
      ready: fullBridgeReady,
    };
    return { kind: 'ready', transport: 'ipc', bridge: createDeferredBridge(parts) };
  }
  if (secret === undefined) return { kind: 'no-secret' };
  try {
    const options = {
      baseUrl: window.location.origin,
      sessionSecret: secret,
      prefetched: (path: string) => takeBootRead(secret, path),
    };
    const transport = createHttpTransport(options);
    const parts: DeferredBridgeParts = {
      first: (method, args) => {
        const request = routeRequest(FIRST_ANSWER_ROUTES[method], args, noPathArguments);
        return transport.call(request.verb, request.path, request.body);
      },
      events: (listener) => transport.events(listener),
      loadFull: async () => (await import('./full-bridge.js')).fullHttpBridge(options),
      ready: fullBridgeReady,
    };
    return { kind: 'ready', transport: 'http', bridge: createDeferredBridge(parts) };
  } catch {
    return { kind: 'no-secret' };
  }
}

// A deep link (`#request=<id>`, from the MCP proxy or a notification) is read before the fragment is cleared.
const initialTarget = targetFromFragment(window.location.hash);
const choice = chooseBridge();
// Every desk reads its session first; a desk that opens on the queue reads the queue beside it.
// Both start now, before React renders, not after its first commit.
if (choice.kind === 'ready') {
  prefetchSession(choice.bridge);
  if (initialTarget === undefined || initialTarget.view === 'queue') prefetchQueue(choice.bridge);
}
// Both prefetches took their boot reads synchronously (boot.ts); anything left is never used.
forgetBootReads();
const container = document.getElementById('root');
if (container === null) throw new Error('the page has no #root element');
const render = (initialSession?: DeskSessionView | null) =>
  createRoot(container).render(
    <StrictMode>
      <App choice={choice} initialTarget={initialTarget} initialSession={initialSession} />
    </StrictMode>,
  );
if (choice.kind === 'ready') {
  // The first render waits for the session's first answer (which waits for the queue's prefetch,
  // first-paint.ts), so the desk renders once, with the queue's rows, instead of rendering
  // "Checking the session…" and then everything again. Not for long: past FIRST_SESSION_WAIT_MS,
  // or on a failed read, it renders without and reads the session itself, as before.
  let rendered = false;
  const once = (session?: DeskSessionView | null) => {
    if (rendered) return;
    rendered = true;
    render(session);
  };
  window.setTimeout(() => once(), FIRST_SESSION_WAIT_MS);
  readSession(choice.bridge).then(
    (answer) => once(answer.session),
    () => once(),
  );
} else render();
