/**
 * What the risk scorer reads from one call: its amount series, destinations, the digests that
 * make two calls identical or near-identical, and its session. Extracted once per call from the
 * tool's entry in the risk settings.
 */
import { createHash } from 'node:crypto';
import type { ToolCall } from '../../../shared/protocol.js';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import type { RiskConfig } from './risk-config.js';

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
}

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
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d{1,15}(\.\d{1,8})?$/.test(value.trim()) ? Number(value) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export function callFeatures(config: RiskConfig, call: ToolCall, digest: string): CallFeatures {
  const toolConfig = config.tools[call.tool];
  const params = call.params;
  let shape = digest;
  const destinations: CallFeatures['destinations'] = [];
  let amount: number | undefined;
  let currency: string | undefined;
  if (toolConfig) {
    if (toolConfig.volatile.length > 0) {
      const stable: JsonObject = {};
      for (const [k, v] of Object.entries(params)) if (!toolConfig.volatile.includes(k)) stable[k] = v;
      shape = createHash('sha256').update(canonicalize({ tool: call.tool, params: stable })).digest('base64url');
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
  };
}
