/**
 * `--ui-secret-file <path>` for `countersign start` / `headless`: the per-start UI secret (the
 * bearer that gates the desk's HTTP API) written for CI and automation that cannot read it out of
 * the printed link. The file is created 0600 (a symlink planted at the path is refused,
 * O_NOFOLLOW), holds the secret and a newline, and is removed on a clean exit. The secret is only
 * the transport gate: acting for a person still needs that person's sign-in (ADR 0010). Also the
 * `approver console:` line a server prints at start.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CountersignError, quote } from '../../shared/errors.js';

/** Write the secret; returns the function that removes the file again. */
export function writeUiSecretFile(path: string, secret: string): () => void {
  const file = resolve(path);
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  } catch (cause) {
    throw new CountersignError('config_invalid', `the UI secret file ${quote(path)} cannot be written (a symlink, or no such directory)`, {
      cause,
    });
  }
  try {
    // An existing file keeps its mode on O_CREAT: tighten it before the secret goes in.
    fchmodSync(fd, 0o600);
    writeSync(fd, `${secret}\n`);
  } finally {
    closeSync(fd);
  }
  return () => rmSync(file, { force: true });
}

/**
 * A secret that becomes the file's content only if `publish` is called (after the change that
 * makes it the team's has committed): until then it waits in a file of its own beside `path`
 * (0600, created new, never through a symlink), so a rotation that fails leaves an existing file
 * at `path` exactly as it was. `discard` removes the waiting file.
 */
export function stageUiSecretFile(path: string, secret: string): { publish(): void; discard(): void } {
  const file = resolve(path);
  const staged = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.new`);
  let fd: number;
  try {
    fd = openSync(staged, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (cause) {
    throw new CountersignError(
      'config_invalid',
      `the UI secret file ${quote(path)} cannot be written (no such directory, or not writable)`,
      {
        cause,
      },
    );
  }
  try {
    writeSync(fd, `${secret}\n`);
    // On disk before the rename: a crash after it must not leave an empty file at `path`.
    fsyncSync(fd);
  } catch (cause) {
    closeSync(fd);
    rmSync(staged, { force: true });
    throw new CountersignError('config_invalid', `the UI secret file ${quote(path)} cannot be written`, { cause });
  }
  closeSync(fd);
  return {
    // One rename: a reader of `path` sees the old secret or the new one, never half of one.
    publish: () => {
      try {
        renameSync(staged, file);
      } catch (cause) {
        // Called after the commit: the new secret is the team's now, and only the staged file holds it.
        throw new CountersignError(
          'config_invalid',
          `the secret was replaced, but ${quote(path)} cannot be replaced (a directory?); the new secret is in ${quote(staged)}`,
          { cause },
        );
      }
    },
    discard: () => rmSync(staged, { force: true }),
  };
}

/**
 * The `approver console:` line printed at start. The link carries the bearer secret in the
 * fragment, which browsers never send to a server, so it never reaches a request line. `start` and
 * `headless` make a new secret at every start and print it. A hub's secret is the team's and
 * outlives this start, and a hub's output is usually its log (journald, a container), so a hub
 * prints it only to a terminal, and otherwise the bare link and where to get the secret.
 */
export function approverConsoleLine(input: {
  uiBuilt: boolean;
  deskUrl: string;
  secret: string;
  /** A team hub: the secret is the team's (team_desk_secret), not this start's. */
  teamSecret: boolean;
  toTerminal: boolean;
}): string {
  if (!input.uiBuilt) return 'approver console: not built (run npm run build:renderer, then restart)';
  if (input.teamSecret && !input.toTerminal)
    return `approver console: ${input.deskUrl}/ui/ (the team's desk secret is printed only to a terminal; --ui-secret-file PATH writes it, mode 0600)`;
  return `approver console: ${input.deskUrl}/ui/#secret=${input.secret}`;
}
