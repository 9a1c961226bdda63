/**
 * What the audit log keeps of a call's parameters. For most data classes, the parameters as
 * submitted. For the data classes configured in `audit.redactDataClasses` (PHI, personal
 * data), only a redacted view — each parameter's name and type, never its value — beside the
 * call digest (`callSha256`, which every entry carries): the digest still proves exactly what
 * was decided and approved, and whoever holds the original call can show it matches.
 */
import type { JsonObject, JsonValue } from '../../../shared/canonical-json.js';
import type { RiskAssessment } from '../../../shared/risk.js';

function shape(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array of ${value.length}`;
  if (typeof value === 'object') return 'object';
  if (typeof value === 'string') return 'string';
  return typeof value;
}

export function auditedParams(params: JsonObject, dataClass: string, redactDataClasses: readonly string[]): JsonObject {
  if (!redactDataClasses.includes(dataClass)) return { params };
  const view: JsonObject = {};
  for (const [k, v] of Object.entries(params)) view[k] = `[redacted ${shape(v)}]`;
  return { paramsRedacted: view };
}

/** Risk factors quote parameter values (payees, repositories): for redacted classes, names and points only. */
export function auditedRisk(risk: RiskAssessment, dataClass: string, redactDataClasses: readonly string[]): JsonObject {
  if (!redactDataClasses.includes(dataClass)) return risk as unknown as JsonObject;
  return { score: risk.score, factors: risk.factors.map((f) => ({ name: f.name, points: f.points, weight: f.weight })) };
}
