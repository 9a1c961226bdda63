/**
 * The main-thread side of cedar-worker.mjs: prepares policy sets in the worker and sends it
 * authorization calls. Fails closed: a call that times out, or is in flight when the worker
 * dies, rejects (the engine turns that into a deny), and a dead worker is replaced and given
 * every set it held, in order, before it takes new calls.
 */
import { Worker } from 'node:worker_threads';
import type * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { CountersignError } from '../../../shared/errors.js';

export interface PreparedSet {
  schemaName: string;
  schemaText: string;
  schemaJson: unknown;
  policySetId: string;
  policies: Record<string, string>;
  /** Per-tool policy subsets (preparsed id -> policies), prepared beside the whole set. */
  subsets?: Record<string, Record<string, string>>;
}

export interface WorkerAnswer {
  answer: cedar.AuthorizationAnswer;
  /** Present when `answer` failed: whether the context alone is rejected by the schema. */
  contextCheck?: cedar.CheckParseAnswer;
}

interface InFlight {
  resolve: (value: WorkerAnswer) => void;
  reject: (error: CountersignError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface AnswerMessage {
  type: 'answer';
  id: number;
  answer: cedar.AuthorizationAnswer;
  contextCheck?: cedar.CheckParseAnswer;
}

type WorkerMessage = { type: 'prepared'; policySetId: string; ok: boolean; error?: string } | { type: 'answers'; answers: AnswerMessage[] };

interface AuthorizeMessage {
  type: 'authorize';
  id: number;
  schemaName: string;
  action: cedar.EntityUid;
  call: cedar.StatefulAuthorizationCall;
}

export interface CedarWorkerOptions {
  /** Per-call limit; a call past it is answered as a failure (default 2 s). */
  timeoutMs?: number;
  /** Sets kept for replay into a replacement worker (the active one and its predecessor). */
  keepSets?: number;
}

const WORKER_URL = new URL('./cedar-worker.mjs', import.meta.url);

export class CedarWorkerClient {
  private worker: Worker;
  private nextId = 1;
  private readonly inFlight = new Map<number, InFlight>();
  private readonly sets: PreparedSet[] = [];
  private closed = false;
  /** Calls made in this event-loop turn, sent as one message (one thread wake-up, not one per call). */
  private outbox: AuthorizeMessage[] = [];
  private readonly timeoutMs: number;
  private readonly keepSets: number;
  /** Restarts so far (exposed for health reporting and tests). */
  restarts = 0;

  constructor(options: CedarWorkerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.keepSets = Math.max(1, options.keepSets ?? 2);
    this.worker = this.spawn();
  }

  /** Prepare a set in the worker. Messages are handled in order, so later calls see it. */
  prepare(set: PreparedSet): void {
    this.sets.push(set);
    while (this.sets.length > this.keepSets) this.sets.shift();
    this.worker.postMessage({ type: 'prepare', ...set });
  }

  /**
   * Open, with nothing in flight or waiting to be sent: the worker has no work from this client.
   * A closed client is never idle, so a caller that would evaluate in its own thread instead
   * still gets the closed evaluator's deny.
   */
  get idle(): boolean {
    return !this.closed && this.inFlight.size === 0 && this.outbox.length === 0;
  }

  authorize(schemaName: string, action: cedar.EntityUid, call: cedar.StatefulAuthorizationCall): Promise<WorkerAnswer> {
    if (this.closed) return Promise.reject(new CountersignError('internal_error', 'the policy evaluator is closed'));
    const id = this.nextId++;
    return new Promise<WorkerAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.inFlight.delete(id);
        reject(new CountersignError('timeout', 'the policy evaluation did not finish in time'));
      }, this.timeoutMs);
      this.inFlight.set(id, { resolve, reject, timer });
      if (this.outbox.length === 0) queueMicrotask(() => this.flush());
      this.outbox.push({ type: 'authorize', id, schemaName, action, call });
    });
  }

  private flush(): void {
    const batch = this.outbox;
    this.outbox = [];
    if (batch.length > 0) this.worker.postMessage({ type: 'authorize-batch', calls: batch });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failAll('the policy evaluator is closed');
    await this.worker.terminate();
  }

  /** For fault tests: end the worker as a crash would. */
  async crashForTest(): Promise<void> {
    await this.worker.terminate();
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_URL);
    worker.unref();
    worker.on('message', (message: WorkerMessage) => {
      if (message.type !== 'answers') return;
      for (const answer of message.answers) {
        const pending = this.inFlight.get(answer.id);
        if (pending === undefined) continue; // timed out already
        this.inFlight.delete(answer.id);
        clearTimeout(pending.timer);
        pending.resolve(
          answer.contextCheck === undefined ? { answer: answer.answer } : { answer: answer.answer, contextCheck: answer.contextCheck },
        );
      }
    });
    worker.on('error', () => undefined); // 'exit' follows and handles it
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      this.failAll('the policy evaluator stopped');
      if (this.closed) return;
      this.restarts++;
      this.worker = this.spawn();
      for (const set of this.sets) this.worker.postMessage({ type: 'prepare', ...set });
    });
    return worker;
  }

  private failAll(message: string): void {
    for (const [id, pending] of this.inFlight) {
      clearTimeout(pending.timer);
      pending.reject(new CountersignError('internal_error', message));
      this.inFlight.delete(id);
    }
  }
}
