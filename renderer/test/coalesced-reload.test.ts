/**
 * coalescedReload: a burst of push events costs a view one reload (two when the burst straddles
 * one already running), never one per event; a cancelled view reloads no more.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { coalescedReload } from '../src/desk/coalesced-reload.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

/** A reload that stays in flight until `finish` is called, counting how often it started. */
function slowReload() {
  let finish: () => void = () => undefined;
  const reload = vi.fn(
    () =>
      new Promise<void>((resolve) => {
        finish = resolve;
      }),
  );
  return { reload, finish: () => finish() };
}

describe('coalescedReload', () => {
  it('runs one reload for a burst of 200 requests made in one turn', async () => {
    const reload = vi.fn(() => Promise.resolve());
    const coalesced = coalescedReload(reload);
    for (let i = 0; i < 200; i += 1) coalesced.request();
    expect(reload).not.toHaveBeenCalled();
    await vi.runAllTimersAsync();
    expect(reload).toHaveBeenCalledTimes(1);
  });

  it('runs exactly one more reload after the running one for every request made while it runs', async () => {
    const slow = slowReload();
    const coalesced = coalescedReload(slow.reload);
    coalesced.request();
    await vi.runAllTimersAsync();
    expect(slow.reload).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 50; i += 1) coalesced.request();
    await vi.runAllTimersAsync();
    expect(slow.reload).toHaveBeenCalledTimes(1);
    slow.finish();
    await vi.runAllTimersAsync();
    expect(slow.reload).toHaveBeenCalledTimes(2);
    slow.finish();
    await vi.runAllTimersAsync();
    expect(slow.reload).toHaveBeenCalledTimes(2);
  });

  it('reloads again on a later request once the last reload ended, and after a reload that failed', async () => {
    let calls = 0;
    const coalesced = coalescedReload(() => {
      calls += 1;
      return calls === 1 ? Promise.reject(new Error('bridge down')) : Promise.resolve();
    });
    coalesced.request();
    await vi.runAllTimersAsync();
    coalesced.request();
    await vi.runAllTimersAsync();
    expect(calls).toBe(2);
  });

  it('runs nothing scheduled or pending once cancelled', async () => {
    const slow = slowReload();
    const coalesced = coalescedReload(slow.reload);
    coalesced.request();
    await vi.runAllTimersAsync();
    coalesced.request();
    coalesced.cancel();
    slow.finish();
    coalesced.request();
    await vi.runAllTimersAsync();
    expect(slow.reload).toHaveBeenCalledTimes(1);
    const idle = vi.fn(() => Promise.resolve());
    const other = coalescedReload(idle);
    other.request();
    other.cancel();
    await vi.runAllTimersAsync();
    expect(idle).not.toHaveBeenCalled();
  });
});
