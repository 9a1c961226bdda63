/**
 * Loads and validates a policy directory (docs/policy.md):
 *
 *   schema.cedarschema   Cedar schema, namespace `Countersign`
 *   *.cedar              one or more policy files; every policy carries a unique @id
 *   entities.json        static entities: one `Countersign::Tool` per tool + lookup entities
 *
 * Nothing here touches Cedar's preparsed (thread-local) state: the engine preparses a set only
 * after this module accepted it, so a bad directory can never replace a good set.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { z } from 'zod';
import { canonicalize, parseStrictJson, type JsonValue } from '../../../shared/canonical-json.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { fileNotFound } from '../user-files.js';
import { LookupEntities } from './lookup-entities.js';

export const NAMESPACE = 'Countersign';
export const AGENT_TYPE = `${NAMESPACE}::Agent`;
export const AGENT_GROUP_TYPE = `${NAMESPACE}::AgentGroup`;
export const TOOL_TYPE = `${NAMESPACE}::Tool`;
export const ACTION_TYPE = `${NAMESPACE}::Action`;

export const SCHEMA_FILE = 'schema.cedarschema';
export const ENTITIES_FILE = 'entities.json';
export const POLICY_FILE_EXTENSION = '.cedar';

/** Default obligation values when a permit asks for approvals but leaves these out. */
export const DEFAULT_APPROVAL_TTL_SECONDS = 15 * 60;
export const MAX_APPROVAL_TTL_SECONDS = 24 * 60 * 60;
export const MAX_APPROVALS = 10;

/** Annotations a policy may carry; anything else (a typo such as @approval) is rejected. */
export const KNOWN_ANNOTATIONS = [
  'id',
  'reason',
  'description',
  'approvals',
  'approver_groups',
  'approval_ttl',
  'user_verification',
  'conflicted_approvers',
] as const;
const OBLIGATION_ANNOTATIONS = ['approvals', 'approver_groups', 'approval_ttl', 'user_verification', 'conflicted_approvers'] as const;

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const FILE_STEM_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const GROUP_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const TTL_PATTERN = /^([1-9][0-9]{0,5})(s|m|h)$/;
const MAX_REASON_LENGTH = 500;
const MAX_REPORTED_PROBLEMS = 25;

export type UserVerification = 'required' | 'preferred';

/** The approval requirement one permit policy declares through its annotations. */
export interface PermitApprovalRequirement {
  approvals: number;
  /** Any one of these groups satisfies the requirement; undefined = any approver. */
  groups: string[] | undefined;
  ttlSeconds: number;
  userVerification: UserVerification;
  /** Approver ids that may not approve calls this permit holds (separation of duties). */
  conflicted: string[];
}

export interface LoadedPolicy {
  /** Stable id `<file stem>:<@id>`, e.g. `transfers:two-approvers`. */
  id: string;
  /** The policy file name, e.g. `transfers.cedar`. */
  file: string;
  /** 1-based line of the policy in its file. */
  line: number;
  effect: 'permit' | 'forbid';
  text: string;
  reason: string | undefined;
  /** Present on permits with @approvals >= 1. */
  obligation: PermitApprovalRequirement | undefined;
}

/** A static Cedar entity as written in entities.json (JSON entity format). */
export type StaticEntity = cedar.EntityJson;

export interface ToolInfo {
  name: string;
  audience: string;
  impact: string;
  /** Every attribute of the Tool entity (including audience and impact), as written. */
  attributes: Readonly<Record<string, JsonValue>>;
}

export interface LoadedPolicySet {
  /** Absolute path of the directory. */
  dir: string;
  /** `sha256:` + hex over the JCS form of {schema, policies, entities}. */
  hash: string;
  schemaText: string;
  /** The schema in Cedar's JSON form (used to explain rejected contexts). */
  schemaJson: cedar.SchemaJson<string>;
  /** id -> policy text, exactly what is handed to Cedar and hashed. */
  policyTexts: Readonly<Record<string, string>>;
  policies: ReadonlyMap<string, LoadedPolicy>;
  tools: ReadonlyMap<string, ToolInfo>;
  /** Tool name -> its Tool entity. */
  toolEntities: ReadonlyMap<string, StaticEntity>;
  /** Every static entity that is not a Tool (lists, switches, directory entries), held compactly (lookup-entities.ts). */
  lookupEntities: LookupEntities;
  /** Cedar validation warnings and notes that do not make the set invalid. */
  warnings: string[];
  /** What an agent may be enrolled with under this set (groups, tools, data classes, jurisdictions). */
  vocabulary: EnrollmentVocabulary;
}

/**
 * The names enrollment accepts, taken from the active set so a typo is refused at enrollment
 * instead of silently scoping an agent to something no policy knows:
 * - groups: every `AgentGroup::"name"` the policies mention (agent groups come from enrollment,
 *   so the policies are where a group is declared);
 * - tools: the Tool entities (each one an action of the schema);
 * - data classes and jurisdictions: the schema's enumerated entity types
 *   `entity DataClass enum [...]` and `entity Jurisdiction enum [...]` (undefined when the schema
 *   declares none: enrollment then refuses every value and says how to declare them).
 */
export interface EnrollmentVocabulary {
  groups: ReadonlySet<string>;
  tools: ReadonlySet<string>;
  dataClasses: ReadonlySet<string> | undefined;
  jurisdictions: ReadonlySet<string> | undefined;
}

export const DATA_CLASS_TYPE_NAME = 'DataClass';
export const JURISDICTION_TYPE_NAME = 'Jurisdiction';
const GROUP_REFERENCE = /AgentGroup::"((?:[^"\\]|\\.)*)"/g;

/** The enum of entity type `name` in the schema's namespace, if the schema declares one. */
function schemaEnum(schemaJson: cedar.SchemaJson<string>, name: string): ReadonlySet<string> | undefined {
  const namespace = (schemaJson as unknown as Record<string, { entityTypes?: Record<string, { enum?: unknown }> }>)[NAMESPACE];
  const values = namespace?.entityTypes?.[name]?.enum;
  return Array.isArray(values) && values.every((v) => typeof v === 'string') ? new Set(values) : undefined;
}

function enrollmentVocabulary(
  schemaJson: cedar.SchemaJson<string>,
  policyTexts: Readonly<Record<string, string>>,
  tools: ReadonlyMap<string, ToolInfo>,
): EnrollmentVocabulary {
  const groups = new Set<string>();
  for (const text of Object.values(policyTexts)) {
    for (const match of text.matchAll(GROUP_REFERENCE)) groups.add((match[1] ?? '').replace(/\\(.)/g, '$1'));
  }
  return {
    groups,
    tools: new Set(tools.keys()),
    dataClasses: schemaEnum(schemaJson, DATA_CLASS_TYPE_NAME),
    jurisdictions: schemaEnum(schemaJson, JURISDICTION_TYPE_NAME),
  };
}

// ---------------------------------------------------------------------------------------------
// Public entry point

/** Reads and fully validates a policy directory; throws CountersignError('policy_invalid'). */
export async function loadPolicyDirectory(dir: string): Promise<LoadedPolicySet> {
  const absDir = path.resolve(dir);
  const problems = new Problems(absDir);

  let names: string[];
  try {
    const info = await stat(absDir);
    if (!info.isDirectory()) throw new Error('not a directory');
    names = await readdir(absDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw fileNotFound('the policy directory', absDir, error);
    throw new CountersignError('policy_invalid', `policy directory ${quote(dir)} cannot be read: ${describe(error)}`, { cause: error });
  }

  const schemaText = await readText(absDir, SCHEMA_FILE, problems);
  const entitiesText = await readText(absDir, ENTITIES_FILE, problems);
  const policyFiles = names.filter((name) => name.endsWith(POLICY_FILE_EXTENSION)).sort();
  if (policyFiles.length === 0) problems.add(`no ${POLICY_FILE_EXTENSION} policy files`);

  // 1. Schema: parse, then check the Countersign conventions on its resolved JSON form.
  let schemaJson: cedar.SchemaJson<string> | undefined;
  let actions = new Set<string>();
  if (schemaText !== undefined) {
    const parsed = cedar.checkParseSchema(schemaText);
    if (parsed.type === 'failure') {
      for (const error of parsed.errors) problems.add(`${SCHEMA_FILE}${locate(schemaText, 0, error)}: ${detail(error)}`);
    } else {
      const resolved = cedar.schemaToJsonWithResolvedTypes(schemaText);
      const asJson = cedar.schemaToJson(schemaText);
      if (resolved.type === 'failure' || asJson.type === 'failure') {
        const errors = resolved.type === 'failure' ? resolved.errors : asJson.type === 'failure' ? asJson.errors : [];
        for (const error of errors) problems.add(`${SCHEMA_FILE}: ${detail(error)}`);
      } else {
        schemaJson = asJson.json;
        const conventions = checkSchemaConventions(resolved.json);
        for (const message of conventions.problems) problems.add(`${SCHEMA_FILE}: ${message}`);
        actions = conventions.tools;
      }
    }
  }

  // 2. Policies: split each file into policies, check ids and annotations.
  const policies = new Map<string, LoadedPolicy>();
  const policyTexts: Record<string, string> = {};
  const positions = new Map<string, { fileText: string; offset: number }>();
  for (const file of policyFiles) {
    const stem = file.slice(0, -POLICY_FILE_EXTENSION.length);
    if (!FILE_STEM_PATTERN.test(stem)) {
      problems.add(`${file}: policy file names may only use letters, digits, '.', '_' and '-'`);
      continue;
    }
    const fileText = await readText(absDir, file, problems);
    if (fileText === undefined) continue;
    const parts = cedar.policySetTextToParts(fileText);
    if (parts.type === 'failure') {
      for (const error of parts.errors) problems.add(`${file}${locate(fileText, 0, error)}: ${detail(error)}`);
      continue;
    }
    if (parts.policy_templates.length > 0) problems.add(`${file}: policy templates are not supported`);
    if (parts.policies.length === 0) problems.warn(`${file}: the file holds no policies`);
    for (const { text, offset } of locateParts(fileText, parts.policies)) {
      const line = lineColumn(fileText, offset).line;
      const policy = readPolicy(file, stem, line, text, problems);
      if (policy === undefined) continue;
      if (policies.has(policy.id)) {
        const first = policies.get(policy.id);
        problems.add(`${file}:${line}: duplicate @id ${quote(policy.id.slice(stem.length + 1))} (first at line ${first?.line ?? '?'})`);
        continue;
      }
      policies.set(policy.id, policy);
      policyTexts[policy.id] = text;
      positions.set(policy.id, { fileText, offset });
    }
  }

  // 3. Strict validation against the schema (only meaningful when both parsed).
  if (schemaText !== undefined && schemaJson !== undefined && !problems.hasErrors() && policies.size > 0) {
    const validation = cedar.validate({
      schema: schemaText,
      policies: { staticPolicies: policyTexts },
      validationSettings: { mode: 'strict' },
    });
    if (validation.type === 'failure') {
      for (const error of validation.errors) problems.add(`validation: ${detail(error)}`);
    } else {
      for (const { policyId, error } of validation.validationErrors) {
        problems.add(`${wherePolicy(policyId, policies, positions, error)}: policy ${quote(policyId)}: ${detail(error)}`);
      }
      for (const { policyId, error } of validation.validationWarnings) {
        problems.warn(`${wherePolicy(policyId, policies, positions, error)}: policy ${quote(policyId)}: ${detail(error)}`);
      }
      for (const warning of validation.otherWarnings) problems.warn(`validation: ${detail(warning)}`);
    }
  }

  // 4. Entities: shape, reserved types, duplicates, schema conformance, tools <-> actions.
  // Read an entity at a time (readEntities): each one is hashed and turned into its Cedar form as
  // it is read, and its parsed form is garbage at once; no tree of the whole file is ever built.
  let read = new EntityReader();
  if (entitiesText !== undefined) {
    const done = readEntities(entitiesText, problems, () => (read = new EntityReader()));
    if (done) {
      for (const problem of read.problems) problems.add(problem);
      if (schemaText !== undefined && schemaJson !== undefined) {
        const check = await checkEntitiesApart(read.cedarEntities, schemaText);
        if (check.type === 'failure') for (const error of check.errors) problems.add(`${ENTITIES_FILE}: ${detail(error)}`);
        for (const action of actions) {
          if (!read.tools.has(action))
            problems.add(`${ENTITIES_FILE}: action ${quote(action)} has no ${TOOL_TYPE} entity with the same id`);
        }
        for (const tool of read.tools.keys()) {
          if (!actions.has(tool))
            problems.add(`${ENTITIES_FILE}: ${TOOL_TYPE} ${quote(tool)} is not declared as an action in ${SCHEMA_FILE}`);
        }
      }
    }
  }
  const { tools, toolEntities, lookupEntities, hasher } = read;

  if (problems.hasErrors() || schemaText === undefined || schemaJson === undefined) {
    throw problems.toError();
  }

  const hash = hasher.finish(schemaText, policyTexts);
  return {
    dir: absDir,
    hash,
    schemaText,
    schemaJson,
    policyTexts,
    policies,
    tools,
    toolEntities,
    lookupEntities,
    warnings: problems.warnings,
    vocabulary: enrollmentVocabulary(schemaJson, policyTexts, tools),
  };
}

/**
 * `sha256:` + hex SHA-256 of the JCS (RFC 8785) JSON {schema, policies, entities}, fed to the hash
 * an entity at a time, in JCS member order ("entities" < "policies" < "schema"): a directory of
 * 100,000 entities never becomes one string of tens of megabytes, and each entity's parsed form
 * can go once hashed. The bytes hashed are exactly canonicalize({schema, policies, entities})
 * (test/unit/policy-hash.test.ts holds the two equal).
 */
export class PolicyHasher {
  private readonly hash = createHash('sha256').update('{"entities":[', 'utf8');
  private entities = 0;

  entity(entity: JsonValue): void {
    this.hash.update(this.entities++ === 0 ? canonicalize(entity) : `,${canonicalize(entity)}`, 'utf8');
  }

  finish(schemaText: string, policyTexts: Readonly<Record<string, string>>): string {
    this.hash.update(`],"policies":${canonicalize(policyTexts)},"schema":${canonicalize(schemaText)}}`, 'utf8');
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** The hash of a set whose entities are all at hand (PolicyHasher, in one call). */
export function policyHash(schemaText: string, policyTexts: Readonly<Record<string, string>>, entities: readonly JsonValue[]): string {
  const hasher = new PolicyHasher();
  for (const entity of entities) hasher.entity(entity);
  return hasher.finish(schemaText, policyTexts);
}

/** Parses an @approval_ttl value ("90s", "15m", "2h") into seconds; undefined when invalid. */
export function parseTtl(value: string): number | undefined {
  const match = TTL_PATTERN.exec(value);
  if (match === null) return undefined;
  const amount = Number(match[1]);
  const unit = match[2] === 'h' ? 3600 : match[2] === 'm' ? 60 : 1;
  const seconds = amount * unit;
  return seconds <= MAX_APPROVAL_TTL_SECONDS ? seconds : undefined;
}

// ---------------------------------------------------------------------------------------------
// Policies and annotations

function readPolicy(file: string, stem: string, line: number, text: string, problems: Problems): LoadedPolicy | undefined {
  const json = cedar.policyToJson(text);
  if (json.type === 'failure') {
    for (const error of json.errors) problems.add(`${file}:${line}: ${detail(error)}`);
    return undefined;
  }
  const annotations: Record<string, string | null> = json.json.annotations ?? {};
  const where = `${file}:${line}`;
  const idValue = annotations['id'];
  if (idValue === undefined) {
    problems.add(`${where}: policy has no @id("...") annotation`);
    return undefined;
  }
  if (typeof idValue !== 'string' || !ID_PATTERN.test(idValue)) {
    problems.add(`${where}: @id ${quote(idValue ?? '')} must be 1-128 letters, digits, '.', '_' or '-'`);
    return undefined;
  }
  const id = `${stem}:${idValue}`;
  const at = `${where}: policy ${quote(id)}`;
  const before = problems.errorCount();

  for (const [name, value] of Object.entries(annotations)) {
    if (!(KNOWN_ANNOTATIONS as readonly string[]).includes(name)) {
      problems.add(`${at}: unknown annotation @${name} (known: ${KNOWN_ANNOTATIONS.map((n) => `@${n}`).join(', ')})`);
    } else if (typeof value !== 'string') {
      problems.add(`${at}: @${name} needs a value, e.g. @${name}("...")`);
    }
  }
  const value = (name: string): string | undefined => {
    const v = annotations[name];
    return typeof v === 'string' ? v : undefined;
  };

  const reason = value('reason');
  if (reason !== undefined && (reason.trim() === '' || reason.length > MAX_REASON_LENGTH)) {
    problems.add(`${at}: @reason must be a non-empty sentence of at most ${MAX_REASON_LENGTH} characters`);
  }

  const effect = json.json.effect;
  let obligation: PermitApprovalRequirement | undefined;
  const present = OBLIGATION_ANNOTATIONS.filter((name) => annotations[name] !== undefined);
  if (effect === 'forbid') {
    if (present.length > 0)
      problems.add(`${at}: obligation annotations (${present.map((n) => `@${n}`).join(', ')}) only apply to permit policies`);
  } else if (present.length > 0) {
    obligation = readApprovalRequirement(at, value, problems);
  }

  if (problems.errorCount() > before) return undefined;
  return { id, file, line, effect, text, reason, obligation };
}

function readApprovalRequirement(
  at: string,
  value: (name: string) => string | undefined,
  problems: Problems,
): PermitApprovalRequirement | undefined {
  const approvalsText = value('approvals');
  const groupsText = value('approver_groups');
  const ttlText = value('approval_ttl');
  const uvText = value('user_verification');
  const conflictedText = value('conflicted_approvers');

  let approvals = 0;
  if (approvalsText === undefined) {
    problems.add(`${at}: @approver_groups, @approval_ttl, @user_verification and @conflicted_approvers need @approvals("n")`);
    return undefined;
  }
  if (!/^(0|[1-9][0-9]?)$/.test(approvalsText) || Number(approvalsText) > MAX_APPROVALS) {
    problems.add(`${at}: @approvals ${quote(approvalsText)} must be a whole number from 0 to ${MAX_APPROVALS}`);
  } else {
    approvals = Number(approvalsText);
  }
  if (approvals === 0) {
    if (groupsText !== undefined || ttlText !== undefined || uvText !== undefined || conflictedText !== undefined) {
      problems.add(`${at}: @approver_groups, @approval_ttl and @user_verification make no sense with @approvals("0")`);
    }
    return undefined;
  }

  let groups: string[] | undefined;
  if (groupsText !== undefined) {
    const list = groupsText.split(',').map((g) => g.trim());
    const bad = list.filter((g) => !GROUP_PATTERN.test(g));
    if (list.length === 0 || bad.length > 0) {
      problems.add(`${at}: @approver_groups ${quote(groupsText)} must be a comma-separated list of group names`);
    } else {
      groups = [...new Set(list)].sort();
    }
  }

  let ttlSeconds = DEFAULT_APPROVAL_TTL_SECONDS;
  if (ttlText !== undefined) {
    const parsed = parseTtl(ttlText);
    if (parsed === undefined) problems.add(`${at}: @approval_ttl ${quote(ttlText)} must look like "90s", "15m" or "2h" and be at most 24h`);
    else ttlSeconds = parsed;
  }

  let userVerification: UserVerification = 'required';
  if (uvText !== undefined) {
    if (uvText === 'required' || uvText === 'preferred') userVerification = uvText;
    else problems.add(`${at}: @user_verification ${quote(uvText)} must be "required" or "preferred"`);
  }
  let conflicted: string[] = [];
  if (conflictedText !== undefined) {
    const list = conflictedText.split(',').map((c) => c.trim());
    if (list.length === 0 || list.some((c) => !APPROVER_ID_PATTERN.test(c))) {
      problems.add(`${at}: @conflicted_approvers ${quote(conflictedText)} must be a comma-separated list of approver ids`);
    } else {
      conflicted = [...new Set(list.map((c) => c.toLowerCase()))].sort();
    }
  }
  return { approvals, groups, ttlSeconds, userVerification, conflicted };
}

const APPROVER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;

// ---------------------------------------------------------------------------------------------
// Schema conventions

type SchemaType = { type: string; name?: string; element?: unknown; attributes?: Record<string, unknown>; required?: boolean };

function asType(value: unknown): SchemaType | undefined {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
    ? (value as SchemaType)
    : undefined;
}

const BUILTIN_TYPES = new Set([
  'String',
  'Long',
  'Bool',
  'Boolean',
  'Set',
  'Record',
  'Entity',
  'Extension',
  'EntityOrCommon',
  'decimal',
  'datetime',
  'duration',
  'ipaddr',
]);

/**
 * Checks that the schema follows the Countersign conventions, so that every request the engine
 * builds is well-typed: Agent/AgentGroup/Tool shapes and, for every action with `appliesTo`,
 * principal Agent, resource Tool and the fixed context record around `params`.
 */
function checkSchemaConventions(schema: cedar.SchemaJson<string>): { problems: string[]; tools: Set<string> } {
  const problems: string[] = [];
  const tools = new Set<string>();
  const namespaces = Object.keys(schema);
  for (const ns of namespaces) {
    if (ns !== NAMESPACE) problems.push(`only the ${quote(NAMESPACE)} namespace is allowed, found ${quote(ns)}`);
  }
  const namespace = schema[NAMESPACE];
  if (namespace === undefined) {
    problems.push(`the schema must declare namespace ${NAMESPACE}`);
    return { problems, tools };
  }
  const commonTypes = (namespace.commonTypes ?? {}) as Record<string, unknown>;
  const resolve = (value: unknown, depth = 0): SchemaType | undefined => {
    const t = asType(value);
    if (t === undefined || depth > 16) return undefined;
    const name = t.type === 'EntityOrCommon' ? t.name : BUILTIN_TYPES.has(t.type) ? undefined : t.type;
    if (name === undefined) return t;
    const short = name.startsWith(`${NAMESPACE}::`) ? name.slice(NAMESPACE.length + 2) : name;
    const target = commonTypes[short];
    if (target === undefined) return t.type === 'EntityOrCommon' ? { type: 'Entity', name } : undefined;
    const resolved = resolve(target, depth + 1);
    return resolved === undefined ? undefined : { ...resolved, required: t.required };
  };
  const isString = (t: SchemaType | undefined): boolean => t?.type === 'String';
  const isLong = (t: SchemaType | undefined): boolean => t?.type === 'Long';
  const isSetOfString = (t: SchemaType | undefined): boolean => t?.type === 'Set' && isString(resolve(t.element));
  const isDatetime = (t: SchemaType | undefined): boolean => t?.type === 'datetime' || (t?.type === 'Extension' && t.name === 'datetime');
  const isRecord = (t: SchemaType | undefined): boolean => t?.type === 'Record' && typeof t.attributes === 'object';
  const attrs = (t: SchemaType | undefined): Record<string, unknown> => (t !== undefined && isRecord(t) ? (t.attributes ?? {}) : {});
  const required = (value: unknown): boolean => asType(value)?.required !== false;

  /** Checks a record against exact attribute rules; returns problems as text. */
  const exactRecord = (
    where: string,
    record: SchemaType | undefined,
    rules: Record<string, [(t: SchemaType | undefined) => boolean, string]>,
    allowExtra: boolean,
  ): void => {
    if (!isRecord(record)) {
      problems.push(`${where} must be a record`);
      return;
    }
    const fields = attrs(record);
    for (const [name, [check, description]] of Object.entries(rules)) {
      const field = fields[name];
      if (field === undefined) problems.push(`${where} must declare \`${name}: ${description}\``);
      else if (!check(resolve(field)) || !required(field)) problems.push(`${where}: \`${name}\` must be a required ${description}`);
    }
    if (!allowExtra) {
      for (const name of Object.keys(fields)) {
        if (!(name in rules)) problems.push(`${where}: unexpected attribute \`${name}\``);
      }
    }
  };

  const entityTypes = namespace.entityTypes as Record<string, { shape?: unknown; memberOfTypes?: string[]; enum?: unknown }>;
  const agent = entityTypes['Agent'];
  if (agent === undefined || agent.enum !== undefined) {
    problems.push(`the schema must declare \`entity Agent in [AgentGroup] { owner, group, dataClasses, jurisdictions }\``);
  } else {
    exactRecord(
      'entity Agent',
      resolve(agent.shape ?? { type: 'Record', attributes: {} }),
      {
        owner: [isString, 'String'],
        group: [isString, 'String'],
        dataClasses: [isSetOfString, 'Set<String>'],
        jurisdictions: [isSetOfString, 'Set<String>'],
      },
      false,
    );
    if (!(agent.memberOfTypes ?? []).includes(AGENT_GROUP_TYPE)) problems.push('entity Agent must be declared `in [AgentGroup]`');
  }
  const group = entityTypes['AgentGroup'];
  if (group === undefined || group.enum !== undefined) {
    problems.push('the schema must declare `entity AgentGroup;`');
  } else if (Object.values(attrs(resolve(group.shape ?? { type: 'Record', attributes: {} }))).some(required)) {
    problems.push('entity AgentGroup must not have required attributes');
  }
  const tool = entityTypes['Tool'];
  if (tool === undefined || tool.enum !== undefined) {
    problems.push('the schema must declare `entity Tool { audience: String, impact: String }`');
  } else {
    exactRecord(
      'entity Tool',
      resolve(tool.shape ?? { type: 'Record', attributes: {} }),
      {
        audience: [isString, 'String'],
        impact: [isString, 'String'],
      },
      true,
    );
  }

  for (const [name, action] of Object.entries(namespace.actions)) {
    const applies = action.appliesTo;
    if (applies === undefined) continue; // an action group, not a tool
    const where = `action ${quote(name)}`;
    tools.add(name);
    if (applies.principalTypes.length !== 1 || applies.principalTypes[0] !== AGENT_TYPE)
      problems.push(`${where}: principal must be [Agent]`);
    if (applies.resourceTypes.length !== 1 || applies.resourceTypes[0] !== TOOL_TYPE) problems.push(`${where}: resource must be [Tool]`);
    exactRecord(
      `${where}: context`,
      resolve(applies.context ?? { type: 'Record', attributes: {} }),
      {
        params: [isRecord, 'record of the tool parameters'],
        dataClass: [isString, 'String'],
        jurisdiction: [isString, 'String'],
        provenance: [isSetOfString, 'Set<String>'],
        risk: [isRecord, '{ score: Long, factors: Set<String> }'],
        now: [isDatetime, 'datetime'],
      },
      false,
    );
    const risk = resolve(attrs(resolve(applies.context))['risk']);
    if (isRecord(risk)) {
      exactRecord(`${where}: context.risk`, risk, { score: [isLong, 'Long'], factors: [isSetOfString, 'Set<String>'] }, false);
    }
  }
  return { problems, tools };
}

// ---------------------------------------------------------------------------------------------
// Entities

const uidSchema = z.strictObject({ type: z.string().min(1), id: z.string() });
const entitySchema = z.strictObject({
  uid: uidSchema,
  attrs: z.record(z.string(), z.unknown()).optional(),
  parents: z.array(uidSchema).optional(),
  tags: z.record(z.string(), z.unknown()).optional(),
});
const entitiesSchema = z.array(entitySchema);
type ParsedEntity = z.infer<typeof entitySchema>;

const ENTITY_KEYS = new Set(['uid', 'attrs', 'parents', 'tags']);

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{type, id}` exactly, `type` not empty: what uidSchema accepts. */
function plainUid(value: unknown): boolean {
  if (!isPlainRecord(value) || typeof value.type !== 'string' || value.type.length === 0 || typeof value.id !== 'string') return false;
  let keys = 0;
  for (const _ in value) keys++;
  return keys === 2;
}

/**
 * A quick yes for entities entitySchema accepts (it would copy each one): strictly fewer values
 * pass here than there, and everything else is decided, and explained, by the schema itself.
 */
function plainEntityShape(value: unknown): boolean {
  if (!isPlainRecord(value) || !plainUid(value.uid)) return false;
  for (const key of Object.keys(value)) if (!ENTITY_KEYS.has(key)) return false;
  if (value.attrs !== undefined && !isPlainRecord(value.attrs)) return false;
  if (value.tags !== undefined && !isPlainRecord(value.tags)) return false;
  if (value.parents !== undefined && !(Array.isArray(value.parents) && value.parents.every(plainUid))) return false;
  return true;
}

/**
 * What loading keeps of entities.json as it is read: the Cedar form of every entity (one object
 * each, shared by the index and the schema check), tools and lookup entities apart, the running
 * hash, and the problems found (reported only once every entity matched the entity schema).
 */
class EntityReader {
  readonly hasher = new PolicyHasher();
  readonly cedarEntities: StaticEntity[] = [];
  readonly toolEntities = new Map<string, StaticEntity>();
  readonly tools = new Map<string, ToolInfo>();
  readonly lookupEntities = new LookupEntities();
  readonly problems: string[] = [];
  /** Identical parent lists and empty attribute records are one frozen object each. */
  private readonly shared = new SharedParts();
  /** Entity ids seen, by type (no label string per entity unless one is reported). */
  private readonly seen = new Map<string, Set<string>>();

  add(entity: ParsedEntity): void {
    this.hasher.entity(entity as unknown as JsonValue);
    const cedarEntity = this.shared.entity(entity);
    this.cedarEntities.push(cedarEntity);
    const label = () => `${entity.uid.type}::${JSON.stringify(entity.uid.id)}`;
    let ids = this.seen.get(cedarEntity.uid.type);
    if (ids === undefined) this.seen.set(cedarEntity.uid.type, (ids = new Set<string>()));
    if (ids.has(cedarEntity.uid.id)) this.problems.push(`${ENTITIES_FILE}: duplicate entity ${label()}`);
    ids.add(cedarEntity.uid.id);
    if (entity.uid.type === AGENT_TYPE || entity.uid.type === AGENT_GROUP_TYPE) {
      this.problems.push(`${ENTITIES_FILE}: ${label()}: agents and agent groups come from enrollment, not from ${ENTITIES_FILE}`);
    } else if (entity.uid.type === ACTION_TYPE || entity.uid.type.endsWith('::Action')) {
      this.problems.push(`${ENTITIES_FILE}: ${label()}: actions come from the schema, not from ${ENTITIES_FILE}`);
    } else if (entity.uid.type === TOOL_TYPE) {
      // Read from the Cedar copy: its values are the entity's own, not slices of the file's text.
      const info = toolInfo({ uid: cedarEntity.uid, attrs: cedarEntity.attrs }, { add: (m: string) => this.problems.push(m) });
      if (info !== undefined) {
        this.tools.set(info.name, info);
        this.toolEntities.set(info.name, cedarEntity);
      }
    } else {
      this.lookupEntities.add(cedarEntity);
    }
  }
}

/**
 * Reads entities.json: strict JSON, an array of entities each matching the entity schema. Every
 * entity goes to the reader `fresh()` returns, in file order; returns false (the reasons in
 * `problems`) when the file is not valid, and then whatever the reader derived is not used.
 *
 * The array is read an element at a time (forEachStrictArrayElement, each element parsed with
 * the strict parser on its own), so no tree of the whole file is built. When that reader cannot
 * follow the text, the whole text goes through the strict parser, which decides and explains
 * (and a file it accepts is read from its tree, with a fresh reader).
 */
function readEntities(text: string, problems: Problems, fresh: () => EntityReader): boolean {
  const issues: Array<{ path: PropertyKey[]; message: string }> = [];
  const each = (reader: EntityReader) => (value: JsonValue, i: number) => {
    if (issues.length >= 5) return;
    if (!plainEntityShape(value)) {
      // Checked one at a time (the same schema and messages as the whole array).
      const parsed = entitySchema.safeParse(value);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) issues.push({ path: [i, ...issue.path], message: issue.message });
        return;
      }
    }
    // Validated: the parsed value has exactly the checked shape (strict objects, no unknown keys).
    if (issues.length === 0) reader.add(value as unknown as ParsedEntity);
  };
  if (!forEachStrictArrayElement(text, each(fresh()))) {
    issues.length = 0;
    let json: JsonValue;
    try {
      json = parseStrictJson(text);
    } catch (error) {
      problems.add(`${ENTITIES_FILE}: ${describe(error)}`);
      return false;
    }
    if (!Array.isArray(json)) {
      const parsed = entitiesSchema.safeParse(json);
      if (!parsed.success) for (const issue of parsed.error.issues) issues.push({ path: issue.path, message: issue.message });
    } else {
      const add = each(fresh());
      json.forEach((value, i) => add(value, i));
    }
  }
  if (issues.length > 0) {
    for (const { path, message } of issues.slice(0, 5)) {
      problems.add(`${ENTITIES_FILE}: at ${path.length === 0 ? 'top level' : path.map(String).join('.')}: ${message.toLowerCase()}`);
    }
    return false;
  }
  return true;
}

const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Calls `each` with every element of the JSON array `text`, each element parsed on its own by the
 * strict parser (at one level less deep than the array allows). Returns false, having stopped,
 * when the text is not an array this reader can follow (its top level is not an array, an element
 * does not parse, or something other than whitespace and single commas stands between elements);
 * then the caller parses the whole text, whose parser decides and explains. When every element
 * parses, the whole text is exactly that array: JSON has no rule across array elements, and the
 * text between them was checked to be whitespace and commas.
 */
export function forEachStrictArrayElement(text: string, each: (value: JsonValue, index: number) => void): boolean {
  const skip = (at: number): number => {
    while (at < text.length && isJsonSpace(text.charCodeAt(at))) at++;
    return at;
  };
  let i = skip(0);
  if (text.charCodeAt(i) !== 0x5b /* [ */) return false;
  i = skip(i + 1);
  if (text.charCodeAt(i) === 0x5d /* ] */) return skip(i + 1) === text.length;
  for (let index = 0; ; index++) {
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22 /* " */) inString = false;
      } else if (c === 0x22) inString = true;
      else if (c === 0x7b /* { */ || c === 0x5b) depth++;
      else if (c === 0x7d /* } */ || c === 0x5d) {
        if (depth === 0) break;
        depth--;
      } else if (c === 0x2c /* , */ && depth === 0) break;
    }
    if (i >= text.length) return false;
    let end = i;
    while (end > start && isJsonSpace(text.charCodeAt(end - 1))) end--;
    let value: JsonValue;
    try {
      value = parseStrictJson(text.slice(start, end), { maxDepth: ELEMENT_MAX_DEPTH });
    } catch {
      return false;
    }
    const stop = text.charCodeAt(i);
    // A closing brace at the array's own level is not JSON: the strict parser explains it.
    if (stop === 0x7d) return false;
    each(value, index);
    if (stop === 0x2c) {
      i = skip(i + 1);
      continue;
    }
    return skip(i + 1) === text.length;
  }
}

/** The strict parser's default depth, less the array the elements sit in. */
const ELEMENT_MAX_DEPTH = 63;

const ENTITY_CHECK = fileURLToPath(new URL('./entity-check.mjs', import.meta.url));

/**
 * From this many entities the check runs in a child process instead of a worker thread: a
 * process costs a few tens of milliseconds more to start, and gives back all the memory the
 * check grew (entity-check.mjs says why a thread does not).
 */
export const ENTITY_CHECK_IN_PROCESS_FROM = 1_000;

/**
 * Cedar's schema check of the entities, apart from this process's memory (entity-check.mjs):
 * a worker thread for a small directory, a child process for a large one. A check that fails to
 * answer is a failed check: the set is refused, never loaded unchecked.
 */
function checkEntitiesApart(entities: StaticEntity[], schema: string): Promise<cedar.CheckParseAnswer> {
  return new Promise((resolve) => {
    let answered = false;
    const answer = (result: cedar.CheckParseAnswer): void => {
      if (answered) return;
      answered = true;
      resolve(result);
    };
    const failed = (message: string): cedar.CheckParseAnswer => ({
      type: 'failure',
      errors: [{ message, help: null, code: null, url: null, severity: null }],
    });
    if (entities.length < ENTITY_CHECK_IN_PROCESS_FROM) {
      const worker = new Worker(ENTITY_CHECK, { workerData: { entities, schema } });
      worker.once('message', (result: cedar.CheckParseAnswer) => {
        answer(result);
        void worker.terminate();
      });
      worker.once('error', (error: Error) => answer(failed(`the entity check could not run: ${error.message.toLowerCase()}`)));
      worker.once('exit', (code) => answer(failed(`the entity check stopped before answering (exit code ${code})`)));
      return;
    }
    // execArgv []: the check is plain JavaScript and needs none of this process's loaders or flags.
    const child = fork(ENTITY_CHECK, [], { serialization: 'advanced', execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < 2_000) stderr += chunk;
    });
    child.once('message', (result: cedar.CheckParseAnswer) => answer(result));
    child.once('error', (error: Error) => answer(failed(`the entity check could not run: ${error.message.toLowerCase()}`)));
    child.once('exit', (code, signal) => {
      const last = stderr.trim().split('\n').pop();
      answer(
        failed(`the entity check stopped before answering (${signal ?? `exit code ${code}`})${last ? `: ${last.slice(0, 300)}` : ''}`),
      );
    });
    child.send({ entities, schema }, (error) => {
      if (error) {
        answer(failed(`the entity check could not be sent its entities: ${error.message.toLowerCase()}`));
        child.kill();
      }
    });
  });
}

/**
 * A string of its own. The strict parser returns longer strings as slices of the text they were
 * read from, and one slice kept keeps the whole text: entities.json (12 MB at 100,000 payees)
 * stayed in memory for as long as any of its names did.
 */
function ownCopy(text: string): string {
  // V8 copies slices shorter than 13 code units anyway.
  return text.length < 13 ? text : Buffer.from(text, 'utf8').toString('utf8');
}

/**
 * Builds the Cedar form of each entity, sharing what many entities have alike: one frozen empty
 * attribute record, and one frozen parent list per distinct list. Nothing on the decision path
 * mutates an entity (the slice hands them to Cedar, which reads them), and frozen parts make
 * sure of it.
 */
class SharedParts {
  private readonly emptyAttrs: Record<string, cedar.CedarValueJson> = Object.freeze({});
  private readonly parentLists = new Map<string, cedar.EntityUidJson[]>();
  private readonly singleParents = new Map<string, Map<string, cedar.EntityUidJson[]>>();
  private readonly noParents = Object.freeze([]) as unknown as cedar.EntityUidJson[];
  private readonly types = new Map<string, string>();

  entity(entity: ParsedEntity): StaticEntity & { uid: { type: string; id: string } } {
    const attrs = entity.attrs ?? {};
    const out: StaticEntity & { uid: { type: string; id: string } } = {
      uid: { type: this.type(entity.uid.type), id: ownCopy(entity.uid.id) },
      // structuredClone: attribute values of their own, not slices of the file's text.
      attrs: Object.keys(attrs).length === 0 ? this.emptyAttrs : (structuredClone(attrs) as Record<string, cedar.CedarValueJson>),
      parents: this.parents(entity.parents ?? []),
    };
    if (entity.tags !== undefined) out.tags = structuredClone(entity.tags) as Record<string, cedar.CedarValueJson>;
    return out;
  }

  /** One copy of each entity type name. */
  private type(name: string): string {
    let kept = this.types.get(name);
    if (kept === undefined) {
      kept = ownCopy(name);
      this.types.set(kept, kept);
    }
    return kept;
  }

  private parents(list: ReadonlyArray<{ type: string; id: string }>): cedar.EntityUidJson[] {
    if (list.length === 0) return this.noParents;
    if (list.length === 1) {
      // The common case (an entity in one list), looked up without building a key.
      const { type, id } = list[0]!;
      let byId = this.singleParents.get(type);
      if (byId === undefined) this.singleParents.set(type, (byId = new Map<string, cedar.EntityUidJson[]>()));
      let one = byId.get(id);
      if (one === undefined)
        byId.set(id, (one = Object.freeze([Object.freeze({ type: this.type(type), id: ownCopy(id) })]) as cedar.EntityUidJson[]));
      return one;
    }
    const key = JSON.stringify(list.map((p) => [p.type, p.id]));
    let kept = this.parentLists.get(key);
    if (kept === undefined) {
      kept = Object.freeze(list.map((p) => Object.freeze({ type: this.type(p.type), id: ownCopy(p.id) }))) as cedar.EntityUidJson[];
      this.parentLists.set(key, kept);
    }
    return kept;
  }
}

/** The values a Tool's `impact` may take; a typo must not silently make a tool low impact. */
export const IMPACT_LEVELS = ['low', 'medium', 'high', 'critical'] as const;

/**
 * Whether calls to `tool` are high impact: its Tool entity says `impact` "high" or "critical".
 * While a tamper alarm is open such calls are never allowed automatically (docs/audit.md).
 */
export function isHighImpact(tool: Pick<ToolInfo, 'impact'>): boolean {
  return tool.impact === 'high' || tool.impact === 'critical';
}

function toolInfo(entity: Pick<ParsedEntity, 'uid' | 'attrs'>, problems: Pick<Problems, 'add'>): ToolInfo | undefined {
  const attrs = (entity.attrs ?? {}) as Record<string, JsonValue>;
  const { audience, impact } = attrs;
  if (typeof audience !== 'string' || typeof impact !== 'string') {
    problems.add(`${ENTITIES_FILE}: ${TOOL_TYPE} ${quote(entity.uid.id)} needs string attributes audience and impact`);
    return undefined;
  }
  if (!(IMPACT_LEVELS as readonly string[]).includes(impact)) {
    problems.add(
      `${ENTITIES_FILE}: ${TOOL_TYPE} ${quote(entity.uid.id)} has impact ${quote(impact)}; it must be one of ${IMPACT_LEVELS.join(', ')}`,
    );
    return undefined;
  }
  return { name: entity.uid.id, audience, impact, attributes: attrs };
}

// ---------------------------------------------------------------------------------------------
// Helpers

class Problems {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  constructor(private readonly dir: string) {}
  add(message: string): void {
    this.errors.push(message);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
  hasErrors(): boolean {
    return this.errors.length > 0;
  }
  errorCount(): number {
    return this.errors.length;
  }
  toError(): CountersignError {
    const shown = this.errors.slice(0, MAX_REPORTED_PROBLEMS);
    const more = this.errors.length - shown.length;
    const list = shown.join('; ') + (more > 0 ? `; and ${more} more` : '');
    return new CountersignError('policy_invalid', `policy set in ${quote(this.dir, 200)} is invalid: ${list}`, {
      details: { problems: this.errors.length, first: this.errors[0] ?? '' },
    });
  }
}

async function readText(dir: string, file: string, problems: Problems): Promise<string | undefined> {
  try {
    return await readFile(path.join(dir, file), 'utf8');
  } catch (error) {
    problems.add(`${file}: cannot be read: ${describe(error)}`);
    return undefined;
  }
}

function describe(error: unknown): string {
  if (isCountersignError(error)) return error.message;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'file not found' : code !== undefined ? code.toLowerCase() : error.message;
  }
  return String(error);
}

/** Cedar's message plus its help text and source label. */
function detail(error: cedar.DetailedError): string {
  const label = error.sourceLocations?.find((l) => l.label !== null)?.label;
  let text = error.message;
  if (label !== undefined && label !== null) text += ` (${label})`;
  if (error.help !== null && error.help !== '') text += `; help: ${error.help}`;
  return text;
}

/** `:line:column` of a Cedar error (byte offsets relative to `base` in `text`), or ''. */
function locate(text: string, base: number, error: cedar.DetailedError, relativeTo?: string): string {
  const loc = error.sourceLocations?.[0];
  if (loc === undefined) return '';
  const source = relativeTo ?? text;
  const charOffset = Buffer.from(source, 'utf8').subarray(0, loc.start).toString('utf8').length;
  const { line, column } = lineColumn(text, base + charOffset);
  return `:${line}:${column}`;
}

function wherePolicy(
  policyId: string,
  policies: ReadonlyMap<string, LoadedPolicy>,
  positions: ReadonlyMap<string, { fileText: string; offset: number }>,
  error: cedar.DetailedError,
): string {
  const policy = policies.get(policyId);
  const position = positions.get(policyId);
  if (policy === undefined || position === undefined) return 'validation';
  const at = locate(position.fileText, position.offset, error, policy.text);
  return `${policy.file}${at === '' ? `:${policy.line}` : at}`;
}

/**
 * Finds each policy's offset in its file (for line numbers). Cedar returns the parts ordered by
 * generated id as text (policy0, policy1, policy10, policy2, ...); undo that, then walk the file
 * with a cursor so a policy whose text also occurs inside an earlier one is found at its own
 * place. Falls back to a plain search if the order assumption ever stops holding.
 */
function locateParts(fileText: string, parts: readonly string[]): Array<{ text: string; offset: number }> {
  const names = parts.map((_, i) => `policy${i}`).sort();
  const ordered: string[] = [];
  names.forEach((name, i) => {
    ordered[Number(name.slice('policy'.length))] = parts[i] ?? '';
  });
  const located: Array<{ text: string; offset: number }> = [];
  let cursor = 0;
  for (const text of ordered) {
    const found = fileText.indexOf(text, cursor);
    if (found < 0) return parts.map((part) => ({ text: part, offset: Math.max(0, fileText.indexOf(part)) }));
    located.push({ text, offset: found });
    cursor = found + text.length;
  }
  return located;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}
