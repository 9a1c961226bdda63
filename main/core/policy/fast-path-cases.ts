/**
 * The requests each policy load checks the per-tool policy subsets with (PolicyEngine
 * `fastPathCases`): the decision tests the pack ships in its own directory (`tests.json`, the
 * file `countersign policy test` runs). A pack without one, or with one that does not read, is
 * checked with none: the test file is the author's, and a broken one must not stop the policy
 * from loading (`countersign policy test` reports it).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PolicyRequest } from './policy-engine.js';
import { readPolicyTestFile } from './policy-tests.js';

export const PACK_TEST_FILE = 'tests.json';

export async function packTestRequests(dir: string): Promise<PolicyRequest[]> {
  const file = join(dir, PACK_TEST_FILE);
  if (!existsSync(file)) return [];
  try {
    return (await readPolicyTestFile(file)).map((test) => test.request);
  } catch {
    return [];
  }
}
