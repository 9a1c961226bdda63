/** The HTTP edge's route table: a table where two rows answer the same verb and path is refused when the edge is built. */
import { describe, expect, it } from 'vitest';
import { createHttpEdge, type HttpRoute } from '../../main/core/http/http-edge.js';

const edge = (routes: HttpRoute[]) => createHttpEdge({ routes, sessionSecret: 'S'.repeat(43), hostAllowed: () => true, origins: () => [] });
const row = (verb: 'GET' | 'POST', path: string): HttpRoute => ({ verb, path, access: 'session', handle: () => ({ path }) });

describe('the HTTP edge route table', () => {
  it('refuses two routes with the same verb and path', () => {
    expect(() => edge([row('GET', '/api/x'), row('GET', '/api/x')])).toThrow(/two routes answer GET \/api\/x/);
  });

  it('refuses two routes that differ only in the name of a parameter', () => {
    expect(() => edge([row('POST', '/api/r/{id}/go'), row('POST', '/api/r/{requestId}/go')])).toThrow(/two routes answer POST/);
  });

  it('accepts the same path under two verbs and distinct paths', () => {
    expect(() => edge([row('GET', '/api/x'), row('POST', '/api/x'), row('GET', '/api/y'), row('GET', '/ui/*')])).not.toThrow();
  });
});
