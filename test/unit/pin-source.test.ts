import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPin } from '../../main/core/custody/pin-source.js';
import type { PinTerminal } from '../../main/core/custody/pin-source.js';
import { CountersignError } from '../../shared/errors.js';

const PIN = 'pin-0f3a9c';

async function failure(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CountersignError);
    const error = err as CountersignError;
    // Whatever went wrong, the PIN never appears in what is reported.
    expect(error.message).not.toContain(PIN);
    expect(JSON.stringify(error.details ?? {})).not.toContain(PIN);
    return error;
  }
  throw new Error('expected a failure');
}

let dir: string;

function pinFile(name: string, content: string, mode: number): string {
  const file = join(dir, name);
  writeFileSync(file, content, { mode });
  chmodSync(file, mode); // independent of the umask
  return file;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-pin-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('PIN from an environment variable', () => {
  it('reads the named variable', async () => {
    await expect(readPin({ env: 'HSM_PIN' }, { env: { HSM_PIN: PIN } })).resolves.toBe(PIN);
  });

  it('a missing or empty variable is config_invalid naming the variable, not a value', async () => {
    const missing = await failure(readPin({ env: 'HSM_PIN' }, { env: {} }));
    expect(missing.code).toBe('config_invalid');
    expect(missing.message).toContain('"HSM_PIN"');
    expect(missing.details).toEqual({ variable: 'HSM_PIN' });
    const empty = await failure(readPin({ env: 'HSM_PIN' }, { env: { HSM_PIN: '' } }));
    expect(empty.code).toBe('config_invalid');
    expect(empty.message).toContain('"HSM_PIN"');
  });
});

describe('PIN from a file', () => {
  it('reads a 0600 file owned by this user and trims one trailing newline', async () => {
    await expect(readPin({ file: pinFile('lf', `${PIN}\n`, 0o600) })).resolves.toBe(PIN);
    await expect(readPin({ file: pinFile('crlf', `${PIN}\r\n`, 0o600) })).resolves.toBe(PIN);
    await expect(readPin({ file: pinFile('none', PIN, 0o400) })).resolves.toBe(PIN);
    // Only the line ending goes: spaces are part of a PIN, and so is a second newline.
    await expect(readPin({ file: pinFile('spaces', ` ${PIN} \n`, 0o600) })).resolves.toBe(` ${PIN} `);
    await expect(readPin({ file: pinFile('two', `${PIN}\n\n`, 0o600) })).resolves.toBe(`${PIN}\n`);
  });

  it('refuses a file other users can read (0644) or that the group can read (0640)', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const error = await failure(readPin({ file: pinFile(`open-${mode.toString(8)}`, `${PIN}\n`, mode) }));
      expect(error.code).toBe('config_invalid');
      expect(error.message).toContain(`mode 0${mode.toString(8)}`);
      expect(error.message).toContain('chmod 600');
    }
  });

  it('refuses a symbolic link, even to a private file', async () => {
    const target = pinFile('target', `${PIN}\n`, 0o600);
    const link = join(dir, 'link');
    symlinkSync(target, link);
    const error = await failure(readPin({ file: link }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('symbolic link');
  });

  it('refuses a missing file, a directory and an empty file', async () => {
    expect((await failure(readPin({ file: join(dir, 'absent') }))).message).toContain('does not exist');
    const sub = join(dir, 'sub');
    mkdirSync(sub, { mode: 0o700 });
    expect((await failure(readPin({ file: sub }))).code).toBe('config_invalid');
    expect((await failure(readPin({ file: pinFile('empty', '\n', 0o600) }))).message).toContain('is empty');
  });

  it.skipIf(typeof process.getuid !== 'function' || process.getuid() !== 0)('refuses a file owned by another user', async () => {
    const file = pinFile('foreign', `${PIN}\n`, 0o600);
    chownSync(file, 65534, 65534);
    const error = await failure(readPin({ file }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('owned by another user');
  });
});

describe('PIN from a prompt', () => {
  it('uses the injected prompt when there is one', async () => {
    const questions: string[] = [];
    const pin = await readPin({ prompt: true }, { prompt: (question) => (questions.push(question), Promise.resolve(PIN)) });
    expect(pin).toBe(PIN);
    expect(questions).toEqual(['PKCS#11 token PIN: ']);
    expect((await failure(readPin({ prompt: true }, { prompt: () => Promise.resolve('') }))).code).toBe('config_invalid');
  });

  it('without an interactive terminal the prompt is refused (config_invalid)', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const error = await failure(readPin({ prompt: true }, { terminal: { input, output } }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('no interactive terminal');
  });

  it('on a terminal, asks on the output and does not echo what is typed', async () => {
    const rawModes: boolean[] = [];
    const input = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode: (mode: boolean) => {
        rawModes.push(mode);
        return input;
      },
    });
    const output = new PassThrough();
    const written: Buffer[] = [];
    output.on('data', (chunk: Buffer) => written.push(chunk));
    const terminal: PinTerminal = { input, output };
    const pending = readPin({ prompt: true }, { terminal });
    input.write(`${PIN}\r`);
    await expect(pending).resolves.toBe(PIN);
    const shown = Buffer.concat(written).toString('utf8');
    expect(shown).toContain('PKCS#11 token PIN: ');
    expect(shown).not.toContain(PIN);
    expect(rawModes[0]).toBe(true); // keys are read raw: the terminal does not echo them either
  });

  it('a closed terminal before any answer is config_invalid', async () => {
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => input });
    const pending = readPin({ prompt: true }, { terminal: { input, output: new PassThrough() } });
    input.end();
    expect((await failure(pending)).message).toContain('terminal closed');
  });
});
