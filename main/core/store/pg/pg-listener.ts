/**
 * One LISTEN connection to the team database that survives a database restart: the outcome
 * listener (pg-decision-store.ts), the directory's (pg-directory.ts) and the team key set's
 * (keys/team-key-set.ts) are each one of these.
 *  - `onNotify` gets every notification on the channel.
 *  - `onConnected` catches up on what the owner may have missed: it runs after every connect
 *    (notifications sent while no listener was connected are lost), and whenever the owner calls
 *    `catchUp()` (on a notification, after its own write). A catch-up that fails (a read timed
 *    out, the local file busy) is tried again with backoff until one succeeds, one timer at a
 *    time: no later notification may come for a change already committed.
 *  - A lost connection is re-established with backoff; its catch-up follows.
 */
import pg from 'pg';
import { storeError } from './pg-errors.js';

const RECONNECT_MS = 250;
const RECONNECT_MAX_MS = 2_000;
const CATCH_UP_RETRY_MS = 250;
const CATCH_UP_RETRY_MAX_MS = 5_000;

export interface PgListenerOptions {
  /** Connection settings (the resolved team database config's `pool`). */
  connection: pg.ClientConfig;
  channel: string;
  /** What the owner keeps up to date, for log lines: "the directory replica". */
  name: string;
  onNotify: (payload: string) => void;
  /** Catch up on what no notification may tell any more; a rejection is retried with backoff. */
  onConnected: () => Promise<unknown> | void;
  onError: (message: string) => void;
}

export class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private closed = false;
  private retryDelayMs = CATCH_UP_RETRY_MS;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: PgListenerOptions) {}

  /** Connect, LISTEN, and run the first catch-up: any failure rejects (the owner fails to open). */
  async start(): Promise<void> {
    await this.listen();
    await this.options.onConnected();
  }

  /**
   * Run the catch-up now. Resolves true once it succeeded; false if it failed, in which case it
   * is tried again with backoff (never rejects).
   */
  catchUp(): Promise<boolean> {
    return Promise.resolve()
      .then(() => this.options.onConnected())
      .then(
        () => {
          this.retryDelayMs = CATCH_UP_RETRY_MS;
          return true;
        },
        (error: unknown) => {
          if (this.closed || this.retryTimer !== undefined) return false;
          const delay = this.retryDelayMs;
          this.retryDelayMs = Math.min(delay * 2, CATCH_UP_RETRY_MAX_MS);
          this.options.onError(`${this.options.name} could not catch up (trying again in ${delay} ms): ${messageOf(error)}`);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            if (!this.closed) void this.catchUp();
          }, delay);
          this.retryTimer.unref();
          return false;
        },
      );
  }

  private listen(): Promise<void> {
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<void> {
    // LISTEN holds the connection idle for as long as the hub runs: no statement timeout.
    const client = new pg.Client({ ...this.options.connection, statement_timeout: 0 });
    client.on('notification', (message) => {
      if (message.channel === this.options.channel) this.options.onNotify(message.payload ?? '');
    });
    const lost = () => {
      if (this.client !== client) return;
      this.client = undefined;
      client.end().catch(() => undefined);
      if (!this.closed) this.reconnect(RECONNECT_MS);
    };
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
      await client.query(`LISTEN ${this.options.channel}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw storeError(error, `listening for changes to ${this.options.name}`);
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
  }

  private reconnect(delayMs: number): void {
    setTimeout(() => {
      if (this.closed || this.client) return;
      this.listen().then(
        () => void this.catchUp(),
        (error: unknown) => {
          this.options.onError(`the listener for ${this.options.name} cannot reconnect yet: ${messageOf(error)}`);
          this.reconnect(Math.min(delayMs * 2, RECONNECT_MAX_MS));
        },
      );
    }, delayMs).unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
