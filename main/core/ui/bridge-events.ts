/**
 * The push events of the bridge table (shared/bridge-table.ts BRIDGE_EVENTS) inside the core:
 * the gateway emits `pending` and `decided`, and each transport subscribes once (the HTTP edge's
 * Server-Sent Events route, the Electron shell's one IPC channel to the window).
 */
import type { BridgeEvent, BridgeListener } from '../../../shared/bridge-table.js';
import type { DecisionResult } from '../../../shared/protocol.js';

export class BridgeEventHub {
  private readonly listeners = new Set<BridgeListener>();

  /** Deliver to every subscriber; one that throws never stops the others or the caller. */
  emit(event: BridgeEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A subscriber's fault is its own (a closed stream, a destroyed window).
      }
    }
  }

  subscribe(listener: BridgeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** The gateway's `events` hooks (GatewayDeps.events) feeding this hub. */
  gatewayHooks(): { pending(agentId: string, result: DecisionResult): void; decided(agentId: string, result: DecisionResult): void } {
    return {
      pending: (agentId, result) => this.emit({ name: 'pending', data: { requestId: result.requestId, agentId } }),
      decided: (_agentId, result) => this.emit({ name: 'decided', data: { requestId: result.requestId, state: result.state } }),
    };
  }
}
