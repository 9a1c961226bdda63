/**
 * The HTTP status of an error code, as the edge's error mapper (http-edge.ts `sendError`) uses
 * it: read from the code's record in shared/errors.ts, the one table every transport and
 * docs/errors.md come from (a server fault is 5xx, a refusal of the input 4xx).
 */
export { httpStatusFor } from '../../../shared/errors.js';
