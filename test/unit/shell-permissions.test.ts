/**
 * The Electron shell's permission rule (shared/shell-permissions.ts) and the tray count read from
 * the desk's title: only notifications, only for the app's own origin.
 */
import { describe, expect, it } from 'vitest';
import { pendingCountFromTitle, shellAllowsPermission } from '../../shared/shell-permissions.js';
import { titleWithCount } from '../../shared/desk-notifications.js';

const APP = 'http://localhost:7345';

describe('shell permissions', () => {
  it('allows notifications for the app origin only', () => {
    expect(shellAllowsPermission('notifications', `${APP}/ui/`, APP)).toBe(true);
    expect(shellAllowsPermission('notifications', 'http://localhost:7346/ui/', APP)).toBe(false);
    expect(shellAllowsPermission('notifications', 'https://evil.example/', APP)).toBe(false);
    expect(shellAllowsPermission('notifications', 'not a url', APP)).toBe(false);
    expect(shellAllowsPermission('notifications', `${APP}/ui/`, undefined)).toBe(false);
    expect(shellAllowsPermission('notifications', undefined, APP)).toBe(false);
  });

  it('denies everything else, even for the app origin', () => {
    for (const permission of [
      'media',
      'geolocation',
      'clipboard-read',
      'clipboard-sanitized-write',
      'hid',
      'usb',
      'serial',
      'openExternal',
      'fullscreen',
      'pointerLock',
      'unknown',
    ])
      expect(shellAllowsPermission(permission, `${APP}/ui/`, APP)).toBe(false);
  });
});

describe('tray count from the title', () => {
  it('reads the count the desk writes (titleWithCount), and 0 otherwise', () => {
    expect(pendingCountFromTitle(titleWithCount('Countersign', 0))).toBe(0);
    expect(pendingCountFromTitle(titleWithCount('Countersign', 7))).toBe(7);
    expect(pendingCountFromTitle(titleWithCount('Countersign', 500))).toBe(99);
    expect(pendingCountFromTitle('(x) Countersign')).toBe(0);
  });
});
