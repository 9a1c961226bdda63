/**
 * The `approver console:` line a server prints at start: the desk link with its secret, except a
 * hub whose output is not a terminal (its log), which never prints the team's long-lived secret.
 */
import { describe, expect, it } from 'vitest';
import { approverConsoleLine } from '../../main/cli/ui-secret-file.js';

const base = { uiBuilt: true, deskUrl: 'https://countersign.test:7401', secret: 'S3cr3t-value', toTerminal: false };

describe('the approver console line', () => {
  it('prints the per-start secret of start and headless, to a terminal or a log', () => {
    for (const toTerminal of [true, false])
      expect(approverConsoleLine({ ...base, teamSecret: false, toTerminal })).toBe(
        'approver console: https://countersign.test:7401/ui/#secret=S3cr3t-value',
      );
  });

  it("prints a hub's team secret only to a terminal; to a log, the bare link and how to get the secret", () => {
    expect(approverConsoleLine({ ...base, teamSecret: true, toTerminal: true })).toContain('#secret=S3cr3t-value');
    const logged = approverConsoleLine({ ...base, teamSecret: true, toTerminal: false });
    expect(logged).not.toContain('S3cr3t-value');
    expect(logged).toContain('https://countersign.test:7401/ui/ ');
    expect(logged).toContain('--ui-secret-file');
  });

  it('says how to build the desk when it is not built, with no secret', () => {
    const line = approverConsoleLine({ ...base, uiBuilt: false, teamSecret: false });
    expect(line).toBe('approver console: not built (run npm run build:renderer, then restart)');
  });
});
