// @ts-check
/**
 * Cedar evaluation off the event loop. A Cedar call costs a few hundred microseconds (mostly
 * converting entities and context into the wasm module), which on the main thread would stall
 * every connection's I/O, signatures and commits; here it runs beside them. Plain JavaScript so
 * the worker starts the same way under tsx, vitest and a packaged build. Protocol (one message
 * per line of work, answered in order):
 *   {type:'prepare', schemaName, schemaText, schemaJson, policySetId, policies, subsets?}
 *      (subsets: preparsed id -> policies, the per-tool policy subsets of action-subsets.ts)
 *      -> {type:'prepared', policySetId, ok, error?}
 *   {type:'authorize-batch', calls: [{id, schemaName, action, call}, ...]}
 *      -> {type:'answers', answers: [{id, answer, contextCheck?}, ...]}
 *   (contextCheck only when the answer failed). Calls travel in batches so a burst of decisions
 *   costs one thread wake-up each way, not one per call.
 * The main thread validated and preparsed the same texts before sending them, so a prepare
 * failure here means the two threads disagree; every later call on that set then fails, which
 * the engine turns into a deny.
 */
import { parentPort } from 'node:worker_threads';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

if (parentPort === null) throw new Error('cedar-worker.mjs must run as a worker thread');
const port = parentPort;

/**
 * @typedef {{ type: 'prepare', schemaName: string, schemaText: string, schemaJson: cedar.Schema, policySetId: string, policies: Record<string, string>, subsets?: Record<string, Record<string, string>> }} PrepareMessage
 * @typedef {{ id: number, schemaName: string, action: cedar.EntityUid, call: cedar.StatefulAuthorizationCall }} AuthorizeCall
 * @typedef {{ type: 'authorize-batch', calls: AuthorizeCall[] }} AuthorizeMessage
 */

/** @type {Map<string, cedar.Schema>} Schema per preparsed schema name, to explain a failed call. */
const schemas = new Map();

port.on('message', (/** @type {PrepareMessage | AuthorizeMessage} */ message) => {
  if (message.type === 'prepare') {
    const schema = cedar.preparseSchema(message.schemaName, message.schemaText);
    let policies = schema.type === 'success' ? cedar.preparsePolicySet(message.policySetId, { staticPolicies: message.policies }) : schema;
    for (const [id, subset] of Object.entries(message.subsets ?? {})) {
      if (policies.type === 'success') policies = cedar.preparsePolicySet(id, { staticPolicies: subset });
    }
    if (policies.type === 'success') schemas.set(message.schemaName, message.schemaJson);
    port.postMessage({
      type: 'prepared',
      policySetId: message.policySetId,
      ok: policies.type === 'success',
      error: policies.type === 'success' ? undefined : policies.errors.map((e) => e.message).join('; '),
    });
    return;
  }
  if (message.type === 'authorize-batch') {
    port.postMessage({ type: 'answers', answers: message.calls.map(authorize) });
  }
});

/** @param {AuthorizeCall} request */
function authorize(request) {
  const answer = cedar.statefulIsAuthorized(request.call);
  /** @type {cedar.CheckParseAnswer | undefined} */
  let contextCheck;
  if (answer.type === 'failure') {
    const schema = schemas.get(request.schemaName);
    contextCheck =
      schema === undefined
        ? { type: 'failure', errors: [{ message: 'the policy set is not prepared in the evaluator' }] }
        : cedar.checkParseContext({ context: request.call.context, schema, action: request.action });
  }
  return { id: request.id, answer, contextCheck };
}
