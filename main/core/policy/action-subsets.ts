/**
 * Per-action policy subsets. Cedar evaluates every policy of the set it is handed; a call to
 * `payments.transfer` in a pack that also governs deploys would evaluate every deploy policy only
 * to find that its action scope does not match. Each tool instead gets the policies whose action
 * scope can match a call to it, derived from Cedar's own parse (policyToJson):
 *
 * - `action` (no constraint): every tool;
 * - `action == A`: the tool A;
 * - `action in A` / `action in [A, B]`: A, B and every action that is a member of them (action
 *   groups, transitively, from the schema's `memberOf`).
 *
 * Anything else (a shape this module does not know, a parse failure) keeps the policy in every
 * subset: a subset may hold too much, never too little. Leaving a policy out cannot change a
 * decision: Cedar evaluates a policy as `principal && action && resource && conditions` from the
 * left, so a policy whose action constraint is false is neither satisfied nor in error. The
 * engine still checks every subset against the full set at load (policy-engine.ts, fastPathCheck)
 * and test/unit/policy-subsets.test.ts holds the two equal on thousands of generated calls.
 * Action ids are compared without their type: an over-match only makes a subset bigger.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

type ActionScope = { kind: 'all' } | { kind: 'ids'; ids: ReadonlySet<string> };

/** The action ids a policy's scope names, or `all` when it can match any action (or is not understood). */
export function actionScopeOf(policyText: string): ActionScope {
  const parsed = cedar.policyToJson(policyText);
  if (parsed.type !== 'success') return { kind: 'all' };
  const action = (parsed.json as { action?: unknown }).action as
    { op?: unknown; entity?: { id?: unknown }; entities?: Array<{ id?: unknown }> } | undefined;
  if (action === undefined || action.op === 'All') return { kind: 'all' };
  const named =
    action.op === '==' || action.op === 'in' ? [...(action.entities ?? []), ...(action.entity ? [action.entity] : [])] : undefined;
  if (named === undefined || named.length === 0 || named.some((uid) => typeof uid.id !== 'string')) return { kind: 'all' };
  return { kind: 'ids', ids: new Set(named.map((uid) => uid.id as string)) };
}

/** Per tool, the action ids a call to it is `in`: itself and its action groups (transitively). */
function actionAncestors(schemaJson: unknown, tools: Iterable<string>): Map<string, Set<string>> {
  const memberOf = new Map<string, Set<string>>();
  for (const body of Object.values(
    (schemaJson ?? {}) as Record<string, { actions?: Record<string, { memberOf?: Array<{ id?: unknown }> }> }>,
  )) {
    for (const [name, action] of Object.entries(body.actions ?? {})) {
      const parents = memberOf.get(name) ?? new Set<string>();
      for (const parent of action.memberOf ?? []) if (typeof parent.id === 'string') parents.add(parent.id);
      memberOf.set(name, parents);
    }
  }
  const out = new Map<string, Set<string>>();
  for (const tool of tools) {
    const seen = new Set<string>([tool]);
    const stack = [tool];
    while (stack.length > 0) {
      for (const parent of memberOf.get(stack.pop()!) ?? []) {
        if (seen.has(parent)) continue;
        seen.add(parent);
        stack.push(parent);
      }
    }
    out.set(tool, seen);
  }
  return out;
}

/**
 * For each tool, the ids of the policies whose action scope can match a call to it (in the
 * order of `policyTexts`).
 */
export function actionSubsets(
  schemaJson: unknown,
  policyTexts: Readonly<Record<string, string>>,
  tools: Iterable<string>,
): Map<string, string[]> {
  const scopes = Object.entries(policyTexts).map(([id, text]) => [id, actionScopeOf(text)] as const);
  const out = new Map<string, string[]>();
  for (const [tool, ancestors] of actionAncestors(schemaJson, tools)) {
    out.set(
      tool,
      scopes.filter(([, scope]) => scope.kind === 'all' || [...scope.ids].some((id) => ancestors.has(id))).map(([id]) => id),
    );
  }
  return out;
}
