/**
 * Sends the webhook outbox: each due row is POSTed to its webhook with a fresh signature
 * (shared/webhook-signature.ts), a bounded wait, and exponential backoff after a failure; after
 * the last attempt the row is dead-lettered (the desk lists it and can retry it). Woken right
 * after something is queued and at the next row's due time; no busy polling. A row is sent only
 * once the commit that queued it is durable (its write-ahead log synced). Logs name the
 * webhook id and the delivery id only: never the URL (chat webhook URLs carry their own tokens)
 * and never the secret.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { signWebhook, WEBHOOK_SIGNATURE_HEADER } from '../../../shared/webhook-signature.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { CountersignConfig, WebhookConfig } from '../config.js';
import type { OutboxRow, WebhookOutbox } from './webhook-outbox.js';

export interface WebhookTarget {
  readonly id: string;
  readonly url: string;
  readonly secret: string;
}

/** Read each webhook's secret (file relative to the data directory, or environment); fail closed when one is missing. */
export function resolveWebhookTargets(webhooks: readonly WebhookConfig[], dataDir: string, env = process.env): WebhookTarget[] {
  return webhooks.map((hook) => {
    let secret: string | undefined;
    if (hook.secretEnv !== undefined) {
      secret = env[hook.secretEnv];
      if (secret === undefined || secret.length === 0)
        throw new CountersignError(
          'webhook_secret_unavailable',
          `the webhook ${quote(hook.id)} needs its secret in the environment variable ${quote(hook.secretEnv)}, which is unset or empty`,
        );
    } else {
      const file = resolve(dataDir, hook.secretFile ?? '');
      try {
        secret = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (cause) {
        throw new CountersignError(
          'webhook_secret_unavailable',
          `the webhook ${quote(hook.id)}'s secret file ${quote(file)} cannot be read`,
          {
            cause,
          },
        );
      }
      if (secret.length === 0)
        throw new CountersignError('webhook_secret_unavailable', `the webhook ${quote(hook.id)}'s secret file ${quote(file)} is empty`);
    }
    return { id: hook.id, url: hook.url, secret };
  });
}

export type DeliverySettings = Pick<CountersignConfig['notifications'], 'maxAttempts' | 'initialBackoffMs' | 'maxBackoffMs' | 'timeoutMs'>;

/** The wait before attempt `attempts + 1` after `attempts` failures: initial, doubled each time, capped. */
export function backoffMs(settings: DeliverySettings, attempts: number): number {
  return Math.min(settings.maxBackoffMs, settings.initialBackoffMs * 2 ** Math.max(0, attempts - 1));
}

const BATCH = 16;

export class WebhookDelivery {
  private readonly targets: Map<string, WebhookTarget>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly outbox: WebhookOutbox,
    targets: readonly WebhookTarget[],
    private readonly settings: DeliverySettings,
    private readonly options: {
      now: () => number;
      log: (message: string) => void;
      userAgent?: string;
      /**
       * Resolves once every row committed so far is on stable storage (the decision store's group
       * commit syncs its write-ahead log after COMMIT, ADR 0003): rows are read, then this is
       * awaited before any is sent, so no receiver hears of a request a power loss could undo.
       */
      durable?: () => Promise<void>;
    },
  ) {
    this.targets = new Map(targets.map((t) => [t.id, t]));
  }

  /** Deliver what is due now (after the current transaction has committed), then sleep until the next due row. */
  kick(): void {
    if (this.stopped) return;
    setImmediate(() => this.runSoon());
  }

  private runSoon(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((error: unknown) => this.options.log(`webhook delivery failed: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.runSoon();
        } else {
          this.schedule();
        }
      });
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const next = this.outbox.nextDueAt();
    if (next === undefined) return;
    this.timer = setTimeout(() => this.runSoon(), Math.max(0, next - this.options.now()) + 5);
    this.timer.unref();
  }

  private async drain(): Promise<void> {
    for (;;) {
      const rows = this.outbox.due(this.options.now(), BATCH);
      if (rows.length > 0) {
        try {
          await this.options.durable?.();
        } catch (error) {
          // The store failed to make a commit durable (store_failed): it acknowledges nothing more
          // until a restart, so neither is anything sent; retrying would spin on the same due rows.
          this.stopped = true;
          if (this.timer !== undefined) clearTimeout(this.timer);
          this.timer = undefined;
          this.options.log(
            `webhook delivery stopped until countersign restarts (the queued rows are sent then): ${error instanceof Error ? error.message : String(error)}`,
          );
          return;
        }
      }
      await Promise.all(rows.map((row) => this.attempt(row)));
      if (rows.length < BATCH || this.stopped) return;
    }
  }

  private async attempt(row: OutboxRow): Promise<void> {
    const target = this.targets.get(row.webhookId);
    const attempt = row.attempts + 1;
    let failure: string;
    if (target === undefined) {
      failure = 'the webhook is no longer configured';
    } else {
      failure = await this.post(target, row);
      if (failure === '') {
        this.outbox.markDelivered(row.id, this.options.now());
        return;
      }
    }
    const now = this.options.now();
    const last = attempt >= this.settings.maxAttempts || target === undefined;
    const retryAt = last ? undefined : now + backoffMs(this.settings, attempt);
    this.outbox.markFailed(row.id, failure, now, retryAt);
    this.options.log(
      `webhook ${row.webhookId}: delivery ${row.deliveryId} (${row.event}) failed on attempt ${attempt} of ${this.settings.maxAttempts}: ${failure}; ${
        retryAt === undefined ? 'dead-lettered (retry it from the desk)' : `retrying in ${Math.round((retryAt - now) / 1000)} s`
      }`,
    );
  }

  /** One POST; '' when the receiver took it (2xx), else why not (no URL, no secret in it). */
  private async post(target: WebhookTarget, row: OutboxRow): Promise<string> {
    const timestamp = Math.floor(this.options.now() / 1000);
    const signature = await signWebhook(target.secret, timestamp, row.body);
    try {
      const response = await fetch(target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': this.options.userAgent ?? 'countersign-webhooks',
          [WEBHOOK_SIGNATURE_HEADER]: signature,
          'countersign-delivery': row.deliveryId,
          'countersign-event': row.event,
        },
        body: row.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      await response.body?.cancel().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return '';
      return `the receiver answered HTTP ${response.status}`;
    } catch (error) {
      const name = error instanceof Error ? error.name : '';
      if (name === 'TimeoutError' || name === 'AbortError') return `no answer within ${this.settings.timeoutMs} ms`;
      const cause = error instanceof Error && error.cause instanceof Error ? (error.cause as NodeJS.ErrnoException).code : undefined;
      return `could not reach the receiver${cause === undefined ? '' : ` (${cause})`}`;
    }
  }

  /** Stop waking and wait for attempts in flight (their outcome is stored). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
  }
}
