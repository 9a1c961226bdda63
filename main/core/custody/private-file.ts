/**
 * Reading a secret from a file the way every secret file here is read (signing key, PIN, agent
 * key): a symlink planted at the path is refused (O_NOFOLLOW), the file must be a regular file
 * owned by this user and not readable or writable by group or others (0600 or stricter), and it
 * must be small. Returns undefined when the file does not exist; the caller decides what that means.
 */
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { CountersignError, quote } from '../../../shared/errors.js';

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** `what` names the file in messages, e.g. "signing key" or "PIN". */
export async function readPrivateFile(file: string, what: string, maxBytes = 1024 * 1024): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    if (isErrno(err, 'ELOOP'))
      throw new CountersignError('config_invalid', `the ${what} file path ${quote(file, 200)} is a symbolic link; refusing to use it`);
    throw new CountersignError('config_invalid', `the ${what} file ${quote(file, 200)} cannot be opened`, { cause: err });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new CountersignError('config_invalid', `the ${what} file path ${quote(file, 200)} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new CountersignError(
        'config_invalid',
        `the ${what} file ${quote(file, 200)} has mode ${mode}, which lets other users read or change it; ` +
          `refusing to use it. restrict it with: chmod 600 ${file}`,
        { details: { mode } },
      );
    }
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    if (uid !== undefined && stat.uid !== uid) {
      throw new CountersignError('config_invalid', `the ${what} file ${quote(file, 200)} is owned by another user; refusing to use it`);
    }
    if (stat.size > maxBytes) throw new CountersignError('config_invalid', `the ${what} file ${quote(file, 200)} is too large`);
    return await handle.readFile({ encoding: 'utf8' });
  } finally {
    await handle.close();
  }
}
