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
import { z } from 'zod';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { UI_SECRET_FRAGMENT_PARAM } from '../../shared/bridge.js';
import { validatingBridge, type CountersignBridge } from '../../shared/bridge-table.js';
import { App, type BridgeChoice } from './App.js';
import { targetFromFragment } from './desk/desk-view.js';
import { prefetchQueue, prefetchSession } from './desk/first-paint.js';
import './styles.css';

declare global {
  interface Window {
    /** Set by the Electron preload; absent in a plain browser. */
    countersign?: CountersignBridge;
  }
}

// The CSP forbids eval: tell zod not to probe for it (the probe would log a CSP violation).
z.config({ jitless: true });

function takeSecretFromFragment(): string | undefined {
  if (window.location.hash.length <= 1) return undefined;
  const secret = new URLSearchParams(window.location.hash.slice(1)).get(UI_SECRET_FRAGMENT_PARAM) ?? undefined;
  window.history.replaceState(window.history.state, '', `${window.location.pathname}${window.location.search}`);
  return secret;
}

function chooseBridge(): BridgeChoice {
  const secret = takeSecretFromFragment();
  // The preload's bridge is validated again here: the renderer trusts no transport.
  if (window.countersign !== undefined) return { kind: 'ready', transport: 'ipc', bridge: validatingBridge(window.countersign) };
  if (secret === undefined) return { kind: 'no-secret' };
  try {
    const bridge = createHttpBridge({
      baseUrl: window.location.origin,
      sessionSecret: secret,
      prefetched: (path) => takeBootRead(secret, path),
    });
    return { kind: 'ready', transport: 'http', bridge };
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
createRoot(container).render(
  <StrictMode>
    <App choice={choice} initialTarget={initialTarget} />
  </StrictMode>,
);
