/**
 * The checkpoint file's atomic write, synchronous (CLI, reset-checkpoint) and asynchronous (the
 * running checkpointer): both take the same steps in the same crash-safe order on real files —
 * the content to a temporary file, fsynced and closed before the rename, then the directory
 * fsynced. The order is observed through a wrapper that records each step and passes it to the
 * real file system unchanged. The fault cases inject an error into one step (a fault injection: a
 * real disk cannot be made to fail one fsync on demand) and check that the old file is kept when
 * the new content may not be durable, and that every opened descriptor is closed.
 */
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  atomicWriteFs,
  atomicWriteFsAsync,
  writeFileAtomic,
  writeFileAtomicAsync,
  type AtomicWriteStep,
} from '../../main/core/audit/checkpoints.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-atomic-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A step as the tests read it: the operation and the base name of what it acts on. */
function recorder() {
  const names = new Map<unknown, string>();
  const seen: string[] = [];
  const name = (path: string) => (path === dir ? '<dir>' : basename(path).replace(/\.tmp-\d+$/, '.tmp'));
  const describe = (step: AtomicWriteStep): string => {
    switch (step.op) {
      case 'mkdir':
        return `mkdir ${name(step.path)}`;
      case 'open':
        return `open ${name(step.path)} ${step.flags}`;
      case 'rename':
        return `rename ${name(step.from)} -> ${name(step.to)}`;
      default:
        return `${step.op} ${names.get(step.handle)}`;
    }
  };
  return {
    seen,
    before: (step: AtomicWriteStep) => seen.push(describe(step)),
    opened: (step: AtomicWriteStep, handle: unknown) => {
      if (step.op === 'open') names.set(handle, name(step.path));
    },
  };
}

const runners = {
  sync: (file: string, data: string, fail?: (step: string) => boolean) => {
    const r = recorder();
    let error: unknown;
    try {
      writeFileAtomic(file, data, (step) => {
        r.before(step);
        if (fail?.(r.seen.at(-1)!)) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
        const result = atomicWriteFs(step);
        r.opened(step, result);
        return result;
      });
    } catch (e) {
      error = e;
    }
    return Promise.resolve({ seen: r.seen, error });
  },
  async: async (file: string, data: string, fail?: (step: string) => boolean) => {
    const r = recorder();
    let error: unknown;
    try {
      await writeFileAtomicAsync(file, data, async (step) => {
        r.before(step);
        if (fail?.(r.seen.at(-1)!)) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
        const result = await atomicWriteFsAsync(step);
        r.opened(step, result);
        return result;
      });
    } catch (e) {
      error = e;
    }
    return { seen: r.seen, error };
  },
};

const CRASH_SAFE_ORDER = [
  'mkdir <dir>',
  'open note.tmp w',
  'write note.tmp',
  'fsync note.tmp',
  'close note.tmp',
  'rename note.tmp -> note',
  'open <dir> r',
  'fsync <dir>',
  'close <dir>',
];

/** Descriptors this process holds open on the test directory or a file in it. */
function openInDir(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
    } catch {
      return false; // the listing's own descriptor, closed by now
    }
  }).length;
}

describe.each(Object.entries(runners))('atomic checkpoint file write (%s)', (_kind, run) => {
  it('writes the content to a temporary file, fsyncs and closes it, renames it over the file, then fsyncs the directory', async () => {
    const file = join(dir, 'note');
    writeFileSync(file, 'old checkpoint');
    const { seen, error } = await run(file, 'new checkpoint');
    expect(error).toBeUndefined();
    expect(seen).toEqual(CRASH_SAFE_ORDER);
    expect(readFileSync(file, 'utf8')).toBe('new checkpoint');
    expect(readdirSync(dir)).toEqual(['note']);
    expect(openInDir()).toBe(0);
  });

  it('creates a missing directory first', async () => {
    const file = join(dir, 'mirror', 'note');
    const { error } = await run(file, 'first checkpoint');
    expect(error).toBeUndefined();
    expect(readFileSync(file, 'utf8')).toBe('first checkpoint');
  });

  it.each(['write note.tmp', 'fsync note.tmp'])(
    'keeps the old file and closes the temporary one when "%s" fails (fault injection)',
    async (failing) => {
      const file = join(dir, 'note');
      writeFileSync(file, 'old checkpoint');
      const { seen, error } = await run(file, 'new checkpoint', (step) => step === failing);
      expect(error).toMatchObject({ code: 'EIO' });
      expect(seen).toEqual(CRASH_SAFE_ORDER.slice(0, CRASH_SAFE_ORDER.indexOf(failing) + 1).concat('close note.tmp'));
      expect(readFileSync(file, 'utf8')).toBe('old checkpoint');
      expect(openInDir()).toBe(0);
    },
  );

  it('reports a failed directory fsync after the rename and closes the directory (fault injection)', async () => {
    const file = join(dir, 'note');
    writeFileSync(file, 'old checkpoint');
    const { seen, error } = await run(file, 'new checkpoint', (step) => step === 'fsync <dir>');
    expect(error).toMatchObject({ code: 'EIO' });
    expect(seen).toEqual(CRASH_SAFE_ORDER);
    expect(readFileSync(file, 'utf8')).toBe('new checkpoint');
    expect(openInDir()).toBe(0);
  });
});
