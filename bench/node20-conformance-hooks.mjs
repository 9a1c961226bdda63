// Module hooks so `@modelcontextprotocol/conformance` (written for Node 22) loads on Node 20: its
// bundle imports fs.globSync, which Node 20 lacks and which only its `tier-check` command uses.
// The server command we run never calls it; the shim returns no matches.
/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-call -- Node's loader hooks are untyped in a plain .mjs file */
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.includes('/@modelcontextprotocol/conformance/dist/') || result.format !== 'module') return result;
  const source = String(result.source);
  const named = /globSync as ([A-Za-z_$][\w$]*),/.exec(source)?.[1];
  if (!named) return result;
  return { ...result, source: `${source.replace(`globSync as ${named},`, '')}\nfunction ${named}() { return []; }\n` };
}
