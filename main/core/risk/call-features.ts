/**
 * What the risk scorer reads from one call: its amount series, destinations, the digests that
 * make two calls identical or near-identical, and its session. Extracted once per call from the
 * tool's entry in the risk settings.
 */
import { createHash } from 'node:crypto';
import type { ToolCall } from '../../../shared/protocol.js';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import { SIDE_EFFECTS, type EffectClass, type RiskConfig } from './risk-config.js';
import { recipientOf } from './data-flow.js';

export interface CallFeatures {
  tool: string;
  /** The call digest (tool and parameters): equal digests are identical calls. */
  digest: string;
  /** Digest of the tool and parameters without the tool's volatile parameters. */
  shape: string;
  /** `tool|currency` when the call carries an amount. */
  series?: string | undefined;
  amount?: number | undefined;
  currency?: string | undefined;
  destinations: Array<{ kind: string; value: string }>;
  sessionId?: string | undefined;
  depth?: number | undefined;
  dataClass: string;
  jurisdiction: string;
  /** The tool's declared effect classes, and whether any of them changes something. */
  effects: readonly EffectClass[];
  sideEffect: boolean;
  /** Recipient values (normalized) and whether each is outside the organization. */
  recipients: Array<{ key: string; external: boolean; value: string }>;
  /** The free-text parameters' values (memo, subject, body). */
  freeText: string[];
  /** How many items the call acts on (the tool's `itemCount` parameter), when declared. */
  items?: number | undefined;
}

const MAX_RECIPIENTS = 256;

const MAX_DESTINATION_CHARS = 256;

/**
 * At most `max` UTF-16 units, never splitting a surrogate pair (a lone surrogate would make the
 * audit record invalid JSON). `mark` is appended when something was cut.
 */
export function clip(s: string, max: number, mark = ''): string {
  if (s.length <= max) return s;
  let cut = max;
  const last = s.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut -= 1;
  return s.slice(0, cut) + mark;
}

function paramText(value: unknown): string | undefined {
  if (typeof value === 'string') return clip(value, MAX_DESTINATION_CHARS);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** A positive finite amount from a decimal string ("48000.00") or a number; otherwise none. */
export function parseAmount(value: unknown): number | undefined {
  const n =
    typeof value === 'number' ? value : typeof value === 'string' && /^-?\d{1,15}(\.\d{1,8})?$/.test(value.trim()) ? Number(value) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export function callFeatures(config: RiskConfig, call: ToolCall, digest: string): CallFeatures {
  const toolConfig = config.tools[call.tool];
  const params = call.params;
  let shape = digest;
  const destinations: CallFeatures['destinations'] = [];
  let amount: number | undefined;
  let currency: string | undefined;
  const recipients: CallFeatures['recipients'] = [];
  const freeText: string[] = [];
  let items: number | undefined;
  if (toolConfig) {
    for (const param of toolConfig.recipients) {
      const v = params[param];
      for (const one of Array.isArray(v) ? v : [v]) {
        if (typeof one !== 'string' || one.trim() === '' || recipients.length >= MAX_RECIPIENTS) continue;
        const r = recipientOf(clip(one, MAX_DESTINATION_CHARS), config.internalDomains);
        if (!recipients.some((x) => x.key === r.key)) recipients.push({ ...r, value: clip(one, MAX_DESTINATION_CHARS) });
      }
    }
    for (const param of toolConfig.freeText) {
      const v = params[param];
      if (typeof v === 'string' && v !== '') freeText.push(clip(v, 8_192));
    }
    if (toolConfig.itemCount !== undefined) {
      const v = params[toolConfig.itemCount];
      items = Array.isArray(v) ? v.length : typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
    }
    if (toolConfig.volatile.length > 0) {
      const stable: JsonObject = {};
      for (const [k, v] of Object.entries(params)) if (!toolConfig.volatile.includes(k)) stable[k] = v;
      shape = createHash('sha256')
        .update(canonicalize({ tool: call.tool, params: stable }))
        .digest('base64url');
    }
    for (const [kind, param] of Object.entries(toolConfig.destinations)) {
      const value = paramText(params[param]);
      if (value !== undefined && value !== '') destinations.push({ kind, value });
    }
    if (toolConfig.amount !== undefined) amount = parseAmount(params[toolConfig.amount]);
    if (toolConfig.currency !== undefined) {
      const text = paramText(params[toolConfig.currency]);
      currency = text === undefined ? undefined : clip(text, 16);
    }
  }
  return {
    tool: call.tool,
    digest,
    shape,
    series: amount === undefined ? undefined : `${call.tool}|${currency ?? ''}`,
    amount,
    currency,
    destinations,
    sessionId: call.session?.id,
    depth: call.session?.depth,
    dataClass: call.dataClass,
    jurisdiction: call.jurisdiction,
    effects: toolConfig?.effects ?? [],
    sideEffect: (toolConfig?.effects ?? []).some((e) => SIDE_EFFECTS.has(e)),
    recipients,
    freeText,
    items,
  };
}

/** The amount series that holds a tool's item counts (kept beside the money amounts). */
export const itemSeries = (tool: string) => `#items|${tool}`;
