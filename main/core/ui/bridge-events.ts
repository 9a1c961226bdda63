/**
 * The push events of the bridge table (shared/bridge-table.ts BRIDGE_EVENTS) inside the core:
 * the gateway emits `pending` and `decided`, and each transport subscribes once (the HTTP edge's
 * Server-Sent Events route, the Electron shell's one IPC channel to the window).
 *
 * Every event gets a position (`<epoch>-<seq>`: a random epoch per hub, so a position from before
 * a restart is never mistaken for one of now) and the last `replayLimit` events stay in a ring,
 * so a Server-Sent Events client that reconnects with `Last-Event-ID` receives what it missed
 * while its stream was down (`since`); one whose position the ring no longer covers is told to
 * re-read everything (the `resync` event, sent by the stream).
 */
import { randomBytes } from 'node:crypto';
import type { BridgeEvent } from '../../../shared/bridge-table.js';
import type { DecisionResult } from '../../../shared/protocol.js';

/** An event with its position in this hub's stream. */
export interface PositionedEvent {
  seq: number;
  event: BridgeEvent;
}

/** What a reconnecting client missed: the events after its position, or `resync` when the ring cannot say. */
export type MissedEvents = { kind: 'replay'; events: readonly PositionedEvent[] } | { kind: 'resync' };

/** Events kept for replay: a few minutes of a busy desk; each is ~100 bytes. */
export const DEFAULT_REPLAY_LIMIT = 1024;

const POSITION = /^([0-9a-f]{16})-(\d{1,15})$/;

export class BridgeEventHub {
  private readonly listeners = new Set<(event: BridgeEvent, seq: number) => void>();
  /** How to end each open event stream (a rotated desk secret ends the streams opened with the old one). */
  private readonly streams = new Set<() => void>();
  /** The ring: the last `replayLimit` events, oldest first (`head` is the oldest slot once full). */
  private readonly ring: PositionedEvent[] = [];
  private head = 0;
  private seq = 0;
  /** This hub's epoch: positions from another hub instance (a restart) name another epoch. */
  readonly epoch = randomBytes(8).toString('hex');

  constructor(private readonly replayLimit = DEFAULT_REPLAY_LIMIT) {}

  /** Deliver to every subscriber; one that throws never stops the others or the caller. */
  emit(event: BridgeEvent): void {
    const seq = ++this.seq;
    const entry = { seq, event };
    if (this.replayLimit > 0) {
      if (this.ring.length < this.replayLimit) this.ring.push(entry);
      else {
        this.ring[this.head] = entry;
        this.head = (this.head + 1) % this.replayLimit;
      }
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(event, seq);
      } catch {
        // A subscriber's fault is its own (a closed stream, a destroyed window).
      }
    }
  }

  /** Listen from now on; the listener also gets each event's sequence number (see `position`). */
  subscribe(listener: (event: BridgeEvent, seq: number) => void): () => void {
    // A function reference added twice would be one Set entry: wrap it so each subscription is its own.
    const own = (event: BridgeEvent, seq: number) => listener(event, seq);
    this.listeners.add(own);
    return () => {
      this.listeners.delete(own);
    };
  }

  /** Register an open stream's end; returns the release the stream calls when it closes. */
  holdStream(end: () => void): () => void {
    const own = () => end();
    this.streams.add(own);
    return () => {
      this.streams.delete(own);
    };
  }

  /** End every open stream now (their clients reconnect and authenticate again). */
  endStreams(): void {
    for (const end of [...this.streams]) end();
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** The sequence number of the latest event (0 before the first). */
  get latest(): number {
    return this.seq;
  }

  /** The position after `seq` (default: the latest event) as sent in an SSE `id:` line. */
  position(seq = this.seq): string {
    return `${this.epoch}-${seq}`;
  }

  /**
   * What a client at `lastEventId` (an SSE `Last-Event-ID`) missed. `resync` when the position is
   * malformed, from another epoch, ahead of this hub, or older than the ring: the client must
   * then re-read its views, since no list of events can tell it what changed.
   */
  since(lastEventId: string): MissedEvents {
    const match = POSITION.exec(lastEventId);
    if (match === null || match[1] !== this.epoch) return { kind: 'resync' };
    const seen = Number(match[2]);
    if (seen > this.seq) return { kind: 'resync' };
    const ordered = [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
    const oldest = ordered[0]?.seq ?? this.seq + 1;
    // Events after `seen` that fell out of the ring are gone: a replay would skip them.
    if (seen + 1 < oldest && seen < this.seq) return { kind: 'resync' };
    return { kind: 'replay', events: ordered.filter((entry) => entry.seq > seen) };
  }

  /** The gateway's `events` hooks (GatewayDeps.events) feeding this hub. */
  gatewayHooks(): { pending(agentId: string, result: DecisionResult): void; decided(agentId: string, result: DecisionResult): void } {
    return {
      pending: (agentId, result) => this.emit({ name: 'pending', data: { requestId: result.requestId, agentId } }),
      decided: (_agentId, result) => this.emit({ name: 'decided', data: { requestId: result.requestId, state: result.state } }),
    };
  }
}
