/**
 * newestAnswer: answers that arrive out of order are shown only when nothing newer has been
 * shown, so a view never goes back to an older state and every newer answer is still shown.
 */
import { describe, expect, it } from 'vitest';
import { newestAnswer } from '../src/desk/newest-answer.js';

describe('newestAnswer', () => {
  it('drops an answer that arrives after a later read was shown', () => {
    const answers = newestAnswer();
    const first = answers.begin();
    const second = answers.begin();
    expect(second()).toBe(true);
    expect(first()).toBe(false);
  });

  it('shows answers arriving in order, and a later one after an earlier was shown', () => {
    const answers = newestAnswer();
    const first = answers.begin();
    const second = answers.begin();
    expect(first()).toBe(true);
    expect(second()).toBe(true);
    const third = answers.begin();
    expect(third()).toBe(true);
  });

  it('never starves: among overlapping reads the newest to arrive after the last shown is shown', () => {
    const answers = newestAnswer();
    const reads = [answers.begin(), answers.begin(), answers.begin()];
    expect(reads[1]!()).toBe(true);
    expect(reads[0]!()).toBe(false);
    expect(reads[2]!()).toBe(true);
  });
});
