/**
 * `countersign hub rotate-desk-secret` and `countersign hub rotate-sign-in-key`: replace one of
 * the team's desk secrets while every hub runs (docs/team-mode.md, store/pg/pg-team-secrets.ts).
 * One transaction replaces the row (the desk secret's also ends every desk session) and tells
 * every hub, which takes the new one without a restart. The secret is never printed or logged:
 * `--ui-secret-file PATH` writes the new desk secret there, mode 0600.
 */
import pg from 'pg';
import type { CountersignConfig } from '../core/config.js';
import { resolveDatabaseConfig } from '../core/store/pg/pg-config.js';
import { newDeskSecret, rotateTeamDeskSecret, rotateTeamSignInKey } from '../core/store/pg/pg-team-secrets.js';
import { CountersignError, quote } from '../../shared/errors.js';
import { writeUiSecretFile } from './ui-secret-file.js';
import { print } from './print.js';

export async function hubSecretsCommand(
  sub: string,
  config: CountersignConfig,
  options: { database?: string | undefined; name?: string | undefined; uiSecretFile?: string | undefined },
): Promise<number> {
  if (sub !== 'rotate-desk-secret' && sub !== 'rotate-sign-in-key')
    throw new CountersignError('config_invalid', `unknown hub command ${quote(sub)} (rotate-desk-secret or rotate-sign-in-key)`);
  if (sub === 'rotate-sign-in-key' && options.uiSecretFile !== undefined)
    throw new CountersignError(
      'config_invalid',
      '--ui-secret-file goes with rotate-desk-secret (the sign-in key is never written anywhere)',
    );
  const url = options.database ?? config.team.database.url;
  if (url === undefined)
    throw new CountersignError('config_invalid', `hub ${sub} needs the team database: --database postgres://... or team.database.url`);
  const database = resolveDatabaseConfig({ ...config.team.database, url });
  const pool = new pg.Pool({ ...database.pool, max: 1 });
  pool.on('error', () => undefined); // an idle connection ended by the server; the next query reports it
  const by = options.name ?? config.team.hub ?? config.serverId;
  try {
    if (sub === 'rotate-sign-in-key') {
      await rotateTeamSignInKey(pool, by, Date.now());
      print({ rotated: 'sign-in key', database: database.display, note: 'sign-ins begun before now are refused; begin them again' });
      return 0;
    }
    // The file first: a secret no one can read is never made the team's (if the rotation then
    // fails, the file is removed and the old secret stays).
    const secret = newDeskSecret();
    const removeFile = options.uiSecretFile === undefined ? undefined : writeUiSecretFile(options.uiSecretFile, secret);
    let sessionsEnded: number;
    try {
      ({ sessionsEnded } = await rotateTeamDeskSecret(pool, secret, by, Date.now()));
    } catch (error) {
      removeFile?.();
      throw error;
    }
    print({
      rotated: 'desk secret',
      database: database.display,
      sessionsEnded,
      secretFile: options.uiSecretFile ?? null,
      note:
        options.uiSecretFile === undefined
          ? 'every hub takes the new secret now; read it with --ui-secret-file PATH or from a hub started with --ui-secret-file'
          : 'every hub takes the new secret now',
    });
    return 0;
  } finally {
    await pool.end();
  }
}
