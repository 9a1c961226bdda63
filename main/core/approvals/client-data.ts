/**
 * The challenge a WebAuthn response answers, read from its clientDataJSON (strict JSON). Used
 * to find the server-side ceremony record before any verification runs; the signature check
 * later proves the client data is genuine.
 */
import { CountersignError } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';

export function clientDataChallenge(clientDataJSON: unknown, expectedLength?: number): string {
  let challenge: unknown;
  try {
    const clientData =
      typeof clientDataJSON === 'string' ? parseStrictJson(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) : undefined;
    challenge = typeof clientData === 'object' && clientData !== null && !Array.isArray(clientData) ? clientData.challenge : undefined;
  } catch {
    challenge = undefined;
  }
  if (
    typeof challenge !== 'string' ||
    !/^[A-Za-z0-9_-]{1,512}$/.test(challenge) ||
    (expectedLength !== undefined && challenge.length !== expectedLength)
  ) {
    throw new CountersignError('assertion_invalid', 'the security key response has no readable challenge');
  }
  return challenge;
}
