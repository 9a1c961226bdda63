/**
 * Where the PKCS#11 user PIN comes from: an environment variable, a private file, or an
 * interactive prompt with echo off. Never a command-line argument. The PIN is returned to the
 * caller and never logged, quoted in an error, or put in error details.
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { PinSourceConfig } from '../config.js';
import { readPrivateFile } from './private-file.js';

/** The terminal the prompt uses: stdin for keys, stderr for the question (stdout stays clean). */
export interface PinTerminal {
  input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  output: NodeJS.WritableStream;
}

export interface ReadPinOptions {
  /** Environment to read `{ env }` sources from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Replaces the terminal prompt (e.g. a GUI dialog). Receives the question, returns the PIN. */
  prompt?: (question: string) => Promise<string>;
  /** The terminal for `{ prompt: true }` (default process.stdin / process.stderr). */
  terminal?: PinTerminal;
}

const PROMPT_QUESTION = 'PKCS#11 token PIN: ';
const MAX_PIN_FILE_BYTES = 4096;

function requireNonEmpty(pin: string, what: string): string {
  if (pin.length === 0) throw new CountersignError('config_invalid', `${what} is empty`);
  return pin;
}

function readEnvPin(name: string, env: NodeJS.ProcessEnv): string {
  const value = env[name];
  if (value === undefined || value.length === 0) {
    throw new CountersignError('config_invalid', `the PIN environment variable ${quote(name)} is not set or is empty`, {
      details: { variable: name },
    });
  }
  return value;
}

/** Drop one trailing line ending (what `echo PIN > file` adds); keep everything else. */
function trimLineEnding(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

async function readFilePin(file: string): Promise<string> {
  const text = await readPrivateFile(file, 'PIN', MAX_PIN_FILE_BYTES);
  if (text === undefined) throw new CountersignError('config_invalid', `the PIN file ${quote(file, 200)} does not exist`);
  return requireNonEmpty(trimLineEnding(text), `the PIN file ${quote(file, 200)}`);
}

/**
 * Ask on the terminal with echo off: readline owns the keys (raw mode), and everything it
 * would echo goes to a muted sink; only the question itself reaches the terminal.
 */
function promptTerminal(terminal: PinTerminal): Promise<string> {
  if (terminal.input.isTTY !== true) {
    return Promise.reject(
      new CountersignError(
        'config_invalid',
        'the PIN is configured to be asked on the terminal, but there is no interactive terminal; use an environment variable or a PIN file',
      ),
    );
  }
  return new Promise<string>((resolve, reject) => {
    const muted = new Writable({
      write(_chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
        callback(); // never echo what was typed
      },
    });
    const rl = createInterface({ input: terminal.input, output: muted, terminal: true, historySize: 0 });
    let answered = false;
    const finish = (error: CountersignError | undefined, pin?: string): void => {
      if (answered) return;
      answered = true;
      terminal.output.write('\n');
      rl.close();
      if (error !== undefined) reject(error);
      else resolve(pin ?? '');
    };
    rl.on('SIGINT', () => finish(new CountersignError('config_invalid', 'the PIN prompt was cancelled')));
    rl.on('close', () => finish(new CountersignError('config_invalid', 'the terminal closed before a PIN was entered')));
    terminal.output.write(PROMPT_QUESTION);
    rl.question('', (answer) => finish(undefined, answer));
  });
}

/** Read the PIN from its configured source. Errors name the source, never the value. */
export async function readPin(source: PinSourceConfig, options: ReadPinOptions = {}): Promise<string> {
  if ('env' in source) return readEnvPin(source.env, options.env ?? process.env);
  if ('file' in source) return readFilePin(source.file);
  if (options.prompt !== undefined) {
    const pin = await options.prompt(PROMPT_QUESTION);
    return requireNonEmpty(pin, 'the PIN that was entered');
  }
  const pin = await promptTerminal(options.terminal ?? { input: process.stdin, output: process.stderr });
  return requireNonEmpty(pin, 'the PIN that was entered');
}
