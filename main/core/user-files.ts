/**
 * Reading a file a person named (a --config, --policy-dir, risk settings, enrollment or test
 * file): a missing one is `file_not_found` naming the path, any other read failure is
 * `config_invalid` naming the path and the system's reason, so the CLI always ends with a code.
 */
import { readFileSync } from 'node:fs';
import { CountersignError, quote } from '../../shared/errors.js';

/** The error for a path that does not exist; `what` says what the file is for ("the configuration file"). */
export function fileNotFound(what: string, file: string, cause?: unknown): CountersignError {
  return new CountersignError('file_not_found', `${what} ${quote(file, 200)} does not exist`, { cause, details: { path: file } });
}

/** The CountersignError for a failed read of `file`: file_not_found for ENOENT, else config_invalid. */
export function fileReadError(what: string, file: string, error: unknown): CountersignError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return fileNotFound(what, file, error);
  return new CountersignError(
    'config_invalid',
    `${what} ${quote(file, 200)} cannot be read: ${code !== undefined ? code.toLowerCase() : String(error)}`,
    { cause: error, details: { path: file } },
  );
}

/** The text of a file a person named, or a CountersignError saying which file and why not. */
export function readUserFile(what: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw fileReadError(what, file, error);
  }
}
