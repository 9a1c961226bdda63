/**
 * Data-flow provenance for the risk scorer: the values (e-mail addresses, web hosts, account and
 * other identifiers, proper names) found in what an agent session read, kept only as short
 * digests, per session and trust, with the time each was first seen. A later call's parameter
 * value that was read in untrusted content and never in trusted input is the strongest sign
 * that an injected instruction chose it. docs/risk.md ("Data flow") explains the matching.
 */
import { createHash } from 'node:crypto';

/** When a value was first and last read. */
export interface Seen {
  first: number;
  last: number;
}

/**
 * Per session: digest → when it was read (trusted and untrusted kept apart). A read counts for
 * a call at `now` when it happened before `now` and within the recent window: first ≤ now and
 * last ≥ now − window. Memory and the database (which reloads the rows inside the window) agree.
 */
export interface SessionFlow {
  untrusted: Map<string, Seen>;
  trusted: Map<string, Seen>;
  /** When the session read something untrusted, first and last (host reports only). */
  untrustedAt?: Seen | undefined;
  /** When the host reported anything for the session, first and last. */
  reportAt: Seen;
  /** The last few distinct untrusted sources, for the sentence ("email \"x@y\""). */
  sources: Array<{ at: number; what: string }>;
}

/** Whether something seen at `seen` counts for a call at `now`. */
export const within = (seen: Seen | undefined, now: number, windowMs: number): boolean =>
  seen !== undefined && seen.first <= now && seen.last >= now - windowMs;

export const MAX_FLOW_SESSIONS = 2_000;
export const MAX_VALUES_PER_SESSION = 20_000;
export const MAX_VALUES_PER_READ = 4_000;

const EMAIL = /[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+/gi;
const HOST = /\b(?:https?:\/\/)?((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24})(?=[/:?#\s"'<>)\],;!]|\.(?:\s|$)|$)/gi;
const IDENTIFIER = /\+?[A-Za-z0-9][A-Za-z0-9_-]*[A-Za-z0-9]/g;
const NAME_RUN = /\b[A-Z][a-z][A-Za-z'’-]*(?:\s+[A-Z][a-z][A-Za-z'’-]*){0,5}/g;

/** A host without `www.`, lowercase. */
export function normalizeHost(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h.startsWith('www.') ? h.slice(4) : h;
}

const DATE_OR_TIME = /^(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{2,4}|\d{1,2}[:h]\d{2})$/;

function identifierKey(token: string): string | undefined {
  if (DATE_OR_TIME.test(token)) return undefined;
  let digits = 0;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c >= 48 && c <= 57) digits += 1;
  }
  const compact = token.replace(/[-\s]/g, '').toUpperCase();
  // Account numbers, IBANs, phone numbers, user ids: long enough and carrying digits.
  return compact.length >= 6 && digits >= 2 ? `id:${compact}` : undefined;
}

/**
 * The values a text carries, as match keys: `email:`, `host:`, `id:` (identifiers with digits,
 * separators removed) and, when `names` is set, `name:` (runs of capitalized words).
 */
export function valueKeys(text: string, names: boolean): string[] {
  const keys = new Set<string>();
  for (const m of text.matchAll(EMAIL)) keys.add(`email:${m[0].toLowerCase()}`);
  const withoutEmails = text.replace(EMAIL, ' ');
  for (const m of withoutEmails.matchAll(HOST)) {
    const host = m[1]!;
    // "file.txt" or "e.g." are not hosts: require a letter-only top-level label of 2+ and a dot-separated name.
    if (/\.(txt|docx?|xlsx?|pdf|png|jpe?g|csv|json|eml)$/i.test(host)) continue;
    keys.add(`host:${normalizeHost(host)}`);
  }
  for (const m of withoutEmails.matchAll(IDENTIFIER)) {
    const key = identifierKey(m[0]);
    if (key) keys.add(key);
  }
  if (names) {
    for (const m of text.matchAll(NAME_RUN)) {
      const run = m[0].replace(/\s+/g, ' ').toLowerCase();
      if (run.length >= 3) keys.add(`name:${run}`);
    }
  }
  return [...keys];
}

/**
 * The match keys of one parameter value used as a destination or recipient: the whole value
 * (an address, a host, an identifier, or a name) plus what it carries.
 */
export function destinationKeys(value: string): string[] {
  const v = value.trim();
  const keys = new Set(valueKeys(v, false));
  if (keys.size === 0) keys.add(`name:${v.replace(/\s+/g, ' ').toLowerCase()}`);
  return [...keys];
}

/** A short digest of a match key: what the database and memory keep instead of the value. */
export function digestKey(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 16);
}

/**
 * Where a recipient is: `internal` when it is an e-mail address or URL on one of the
 * organization's domains (or a bare name such as a chat handle), `external` otherwise (other
 * domains, phone numbers, account numbers). Also its normalized form, as learned.
 */
export function recipientOf(value: string, internalDomains: readonly string[]): { key: string; external: boolean } {
  const v = value.trim().toLowerCase();
  const inside = (domain: string) => internalDomains.some((d) => domain === d || domain.endsWith(`.${d}`));
  const at = v.lastIndexOf('@');
  if (at > 0 && !v.includes('/')) return { key: v, external: !inside(normalizeHost(v.slice(at + 1))) };
  const host = /^(?:https?:\/\/)?((?:[a-z0-9-]+\.)+[a-z]{2,24})(?:[/:?#]|$)/.exec(v);
  if (host) {
    const h = normalizeHost(host[1]!);
    return { key: h, external: !inside(h) };
  }
  const digits = v.replace(/[^0-9]/g, '').length;
  return { key: v.replace(/\s+/g, ' '), external: digits >= 4 };
}

export function emptyFlow(at: number): SessionFlow {
  return { untrusted: new Map(), trusted: new Map(), reportAt: { first: at, last: at }, sources: [] };
}

const widen = (seen: Seen | undefined, at: number): Seen =>
  seen === undefined ? { first: at, last: at } : { first: Math.min(seen.first, at), last: Math.max(seen.last, at) };

/** Add one read's digests to a session's flow (reads arrive in time order, from memory or the database). */
export function addRead(flow: SessionFlow, trusted: boolean, digests: readonly string[], at: number, what: string): void {
  const into = trusted ? flow.trusted : flow.untrusted;
  for (const d of digests) {
    const seen = into.get(d);
    if (seen === undefined && flow.untrusted.size + flow.trusted.size >= MAX_VALUES_PER_SESSION) break;
    into.set(d, widen(seen, at));
  }
  if (!trusted) {
    flow.untrustedAt = widen(flow.untrustedAt, at);
    const i = flow.sources.findIndex((s) => s.what === what);
    if (i >= 0) flow.sources.splice(i, 1);
    flow.sources.push({ at, what });
    if (flow.sources.length > 4) flow.sources.shift();
  }
  flow.reportAt = widen(flow.reportAt, at);
}
