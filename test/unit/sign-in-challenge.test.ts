/**
 * Stateless desk sign-in challenges (main/core/ui/sign-in-challenge.ts, ADR 0019): a challenge is
 * accepted only by the key that made it, for the person it was made for, on the same relying
 * party, before its expiry, and spelled exactly as issued; any changed byte is refused with
 * challenge_invalid. The integration tests (desk-sessions, team-desk-anywhere) cover the finish.
 */
import { describe, expect, it } from 'vitest';
import { SIGN_IN_CHALLENGE_LENGTH, SignInChallenges, newSignInKeyBytes } from '../../main/core/ui/sign-in-challenge.js';

const NOW = Date.UTC(2026, 11, 5, 8, 0, 0);
const key = newSignInKeyBytes();
const challenges = new SignInChallenges(key, 'localhost');

describe('stateless sign-in challenges', () => {
  it('accepts its own challenge for the person and before the expiry, and gives a stable digest', () => {
    const challenge = challenges.issue('alice', NOW + 60_000);
    expect(challenge).toMatch(new RegExp(`^[A-Za-z0-9_-]{${SIGN_IN_CHALLENGE_LENGTH}}$`));
    expect(challenges.issue('alice', NOW + 60_000)).not.toBe(challenge); // fresh random bytes each time
    const checked = challenges.check(challenge, 'alice', NOW + 59_999);
    expect(checked.expiresAt).toBe(NOW + 60_000);
    expect(new SignInChallenges(key, 'localhost').check(challenge, 'alice', NOW).digest).toBe(checked.digest);
  });

  it('refuses it expired, for another person, under another key or relying party (challenge_invalid)', () => {
    const challenge = challenges.issue('alice', NOW + 60_000);
    const refusals = [
      () => challenges.check(challenge, 'alice', NOW + 60_000),
      () => challenges.check(challenge, 'bob', NOW),
      () => challenges.check(challenge, 'alice\u0000', NOW),
      () => new SignInChallenges(newSignInKeyBytes(), 'localhost').check(challenge, 'alice', NOW),
      () => new SignInChallenges(key, 'example.com').check(challenge, 'alice', NOW),
    ];
    for (const refused of refusals) expect(refused).toThrow(expect.objectContaining({ code: 'challenge_invalid' }));
  });

  it('refuses any one character changed (random part, expiry, tag), and other lengths', () => {
    const challenge = challenges.issue('alice', NOW + 60_000);
    for (let at = 0; at < challenge.length; at++) {
      const swapped = challenge[at] === 'A' ? 'B' : 'A';
      const altered = `${challenge.slice(0, at)}${swapped}${challenge.slice(at + 1)}`;
      expect(() => challenges.check(altered, 'alice', NOW), `character ${at}`).toThrow(
        expect.objectContaining({ code: 'challenge_invalid' }),
      );
    }
    for (const wrong of [challenge.slice(1), `${challenge}A`, '', `${challenge.slice(0, -1)}=`])
      expect(() => challenges.check(wrong, 'alice', NOW)).toThrow(expect.objectContaining({ code: 'challenge_invalid' }));
  });
});
