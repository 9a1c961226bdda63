/**
 * The MCP proxy's durable record of calls it has submitted, keyed by the call digest and the
 * agent: a host that times out or reconnects and retries the same call finds the request it
 * already made (one request), and an approval is used at most once (one execution). A small
 * JSON file, rewritten atomically (temp file + rename) on every change; entries age out.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CountersignError } from '../../shared/errors.js';
import type { JsonObject } from '../../shared/canonical-json.js';

/**
 * `held`: submitted, waiting for approvers. `executing`: forwarded with a token (if the proxy
 * stops now, the approval counts as used). `done`: executed; the result is kept for retries.
 * `denied`: an approver declined it; retries get the denial. `done` and `denied` are kept for
 * `doneRetentionMs`.
 */
export type HoldState = 'held' | 'executing' | 'done' | 'denied';

export interface HoldEntry {
  key: string;
  requestId: string;
  state: HoldState;
  createdAt: number;
  updatedAt: number;
  /** The downstream result, kept (up to a size cap) so a retried call gets it instead of a second run. */
  result?: JsonObject;
}

export interface HoldStoreOptions {
  /** The file; undefined keeps entries in memory only (one proxy process). */
  file?: string;
  /** How long a finished call's result, or an approver's denial, answers identical retries (default 10 minutes). */
  doneRetentionMs?: number;
  /** How long a held entry is kept at most (default 24 hours; approvals expire sooner). */
  heldRetentionMs?: number;
  /** Results larger than this (as JSON text) are not kept; a retry is told the call already ran. */
  maxResultBytes?: number;
  clock?: () => number;
}

export class HoldStore {
  private readonly entries = new Map<string, HoldEntry>();
  private readonly clock: () => number;
  private session: string | undefined;

  constructor(private readonly options: HoldStoreOptions = {}) {
    this.clock = options.clock ?? Date.now;
    if (options.file) this.load(options.file);
  }

  /**
   * The MCP session id a stdio host's calls are signed with, made once and kept in the file: a
   * proxy restarted by its host signs a retried call byte-equal to the first attempt, so when the
   * first proxy died before it learned its request id, Countersign holds the retry in the same
   * group (one prompt) instead of a second request (docs/mcp.md, "Denials, holds and retries").
   */
  sessionId(): string {
    if (this.session === undefined) {
      this.session = `mcp-${randomBytes(8).toString('hex')}`;
      this.save();
    }
    return this.session;
  }

  get(key: string): HoldEntry | undefined {
    this.prune();
    return this.entries.get(key);
  }

  set(key: string, requestId: string, state: HoldState, result?: JsonObject): void {
    const now = this.clock();
    const entry: HoldEntry = { key, requestId, state, createdAt: this.entries.get(key)?.createdAt ?? now, updatedAt: now };
    if (result !== undefined && JSON.stringify(result).length <= (this.options.maxResultBytes ?? 1024 * 1024)) entry.result = result;
    this.entries.set(key, entry);
    this.save();
  }

  delete(key: string): void {
    if (this.entries.delete(key)) this.save();
  }

  private prune(): void {
    const now = this.clock();
    const done = this.options.doneRetentionMs ?? 10 * 60_000;
    const held = this.options.heldRetentionMs ?? 24 * 3600_000;
    let changed = false;
    for (const [key, entry] of this.entries) {
      const age = now - entry.updatedAt;
      const settled = entry.state === 'done' || entry.state === 'denied';
      if ((settled && age > done) || (!settled && age > held)) {
        this.entries.delete(key);
        changed = true;
      }
    }
    if (changed) this.save();
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new CountersignError('config_invalid', `the proxy state file ${JSON.stringify(file)} cannot be read`, { cause: error });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new CountersignError(
        'config_invalid',
        `the proxy state file ${JSON.stringify(file)} is not valid JSON; move it away to start afresh`,
        { cause: error },
      );
    }
    const session = (parsed as { session?: unknown }).session;
    if (typeof session === 'string' && /^mcp-[0-9a-f]{16}$/.test(session)) this.session = session;
    const list = (parsed as { entries?: unknown }).entries;
    if (!Array.isArray(list))
      throw new CountersignError('config_invalid', `the proxy state file ${JSON.stringify(file)} has no entries list`);
    for (const item of list as HoldEntry[]) {
      if (
        typeof item?.key !== 'string' ||
        typeof item.requestId !== 'string' ||
        !['held', 'executing', 'done', 'denied'].includes(item.state)
      )
        continue;
      this.entries.set(item.key, item);
    }
    this.prune();
  }

  private save(): void {
    const file = this.options.file;
    if (!file) return;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(
      tmp,
      JSON.stringify({ version: 1, ...(this.session === undefined ? {} : { session: this.session }), entries: [...this.entries.values()] }),
      { mode: 0o600 },
    );
    renameSync(tmp, file);
  }
}
