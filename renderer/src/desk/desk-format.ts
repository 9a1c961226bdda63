/**
 * Small display helpers the queue and request views share: countdowns, durations, errors as the
 * desk shows them (with their stable code), and how identical calls are merged in the queue.
 * Pure (no DOM, no React).
 */
import type { ApprovalRequest } from '../../../shared/bridge.js';
import { isCountersignError, toCountersignError } from '../../../shared/errors.js';

/** "4 min 10 s left", or "expired". */
export function formatRemaining(ms: number): string {
  if (ms <= 0) return 'expired';
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  if (hours > 0) return `${hours} h ${minutes % 60} min left`;
  if (minutes > 0) return `${minutes} min ${seconds % 60} s left`;
  return `${seconds} s left`;
}

export function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0 && seconds >= 3600) return `${seconds / 3600} h`;
  if (seconds % 60 === 0 && seconds >= 60) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** Under five minutes left: the queue marks it urgent. */
export const URGENT_MS = 5 * 60_000;

export interface ShownError {
  code: string;
  message: string;
}

/** Any thrown value as the desk shows it: a CountersignError's code, @simplewebauthn's code, or a DOMException's name. */
export function describeError(caught: unknown): ShownError {
  if (isCountersignError(caught)) return { code: caught.code, message: caught.message };
  if (caught instanceof Error && 'code' in caught && typeof caught.code === 'string' && /^ERROR_[A-Z_]{1,80}$/.test(caught.code))
    return { code: caught.code, message: caught.message };
  if (caught instanceof DOMException) return { code: caught.name, message: caught.message };
  const error = toCountersignError(caught);
  return { code: error.code, message: error.message };
}

/** One queue row: a prompt, or several prompts for the same call by the same agent shown once. */
export interface QueueRow {
  readonly key: string;
  /** The most urgent prompt of the row (the one the row opens). */
  readonly first: ApprovalRequest;
  readonly requests: readonly ApprovalRequest[];
  /** Calls the row stands for (each prompt's merged group counted in full). */
  readonly calls: number;
}

/**
 * Merge prompts for the identical call (same agent, same call digest) into one row with a count,
 * keeping the queue's order (the most urgent first). The core already merges identical calls into
 * one prompt while its window is open; this also folds prompts it kept apart (a new window).
 */
export function mergeIdentical(pending: readonly ApprovalRequest[]): QueueRow[] {
  const rows = new Map<string, { first: ApprovalRequest; requests: ApprovalRequest[]; calls: number }>();
  for (const request of pending) {
    const key = `${request.agentId}\u0000${request.callSha256}`;
    const row = rows.get(key);
    if (row === undefined) rows.set(key, { first: request, requests: [request], calls: request.count ?? 1 });
    else {
      row.requests.push(request);
      row.calls += request.count ?? 1;
    }
  }
  return [...rows].map(([key, row]) => ({ key, ...row }));
}
