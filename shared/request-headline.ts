/**
 * The one-line headline the desk's queue shows for a held call: a transfer as its amount and
 * payee, a production change as its environment and change. One rule for the renderer (queue,
 * request view) and anything else that lists requests; test/vectors/request-headlines.json holds
 * its vectors (test/unit/request-headline.test.ts).
 */
import type { JsonObject, JsonValue } from './canonical-json.js';

export type HeadlineKind = 'transfer' | 'production_change' | 'other';

export interface RequestHeadline {
  readonly kind: HeadlineKind;
  readonly text: string;
}

/** A decimal amount as the policies read it (`48000.00`): digits, an optional fraction, an optional sign. */
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * A decimal amount with thousands separators (`48000.00` → `48,000.00`), digit for digit: never
 * through a float, so what the approver reads is exactly what the agent sent. Anything that is not
 * a plain decimal is returned unchanged (the request view flags and shows it raw).
 */
export function formatAmount(amount: string): string {
  const match = DECIMAL.exec(amount);
  if (match === null) return amount;
  const [, sign = '', whole = '', fraction] = match;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${grouped}${fraction === undefined ? '' : `.${fraction}`}`;
}

/** A parameter as headline text: strings as they are, anything else as its JSON. */
function shown(value: JsonValue | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function present(params: JsonObject, name: string): boolean {
  return Object.hasOwn(params, name) && params[name] !== null;
}

/** Whether a tool's parameters read as a money transfer (the demo's `payments.transfer` and alike). */
export function isTransfer(tool: string, params: JsonObject): boolean {
  return (tool === 'payments.transfer' || tool.endsWith('.transfer')) && present(params, 'amount') && present(params, 'payee');
}

/** Whether a tool's parameters read as a production change (a deploy naming its environment). */
export function isProductionChange(tool: string, params: JsonObject): boolean {
  return tool.startsWith('deploy.') && present(params, 'environment');
}

/** The headline of one call. Text only: the renderer shows it as text (never as HTML). */
export function requestHeadline(tool: string, params: JsonObject): RequestHeadline {
  if (isTransfer(tool, params)) {
    const amount = typeof params.amount === 'string' ? formatAmount(params.amount) : shown(params.amount);
    const currency = present(params, 'currency') ? ` ${shown(params.currency)}` : '';
    return { kind: 'transfer', text: `${amount}${currency} to ${shown(params.payee)}` };
  }
  if (isProductionChange(tool, params)) {
    const service = present(params, 'service') ? `${shown(params.service)} ` : '';
    const changeId = present(params, 'changeId') ? shown(params.changeId) : '';
    const change = changeId.length > 0 ? changeId : 'no change ticket';
    return { kind: 'production_change', text: `${shown(params.environment)}: ${service}(${change})` };
  }
  const names = Object.keys(params);
  return { kind: 'other', text: names.length === 0 ? tool : `${tool} (${names.length} parameter${names.length === 1 ? '' : 's'})` };
}
