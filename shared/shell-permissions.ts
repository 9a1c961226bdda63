/**
 * The Electron shell's permission rule, pure so tests can run it (tests never import the shell):
 * every permission is denied except desktop notifications for the app's own origin. WebAuthn
 * (security keys) does not pass through Electron's permission handlers, so it needs no entry;
 * media, geolocation, clipboard, HID/USB/serial, pointer lock, fullscreen, external protocols
 * and the rest are refused.
 */

/** Permissions the desk may use, each only for the app's own origin. */
export const SHELL_ALLOWED_PERMISSIONS: readonly string[] = ['notifications'];

/** Whether the shell grants `permission` to a page at `requestingUrl` when the app lives at `appOrigin`. */
export function shellAllowsPermission(permission: string, requestingUrl: string | undefined, appOrigin: string | undefined): boolean {
  if (appOrigin === undefined || requestingUrl === undefined) return false;
  if (!SHELL_ALLOWED_PERMISSIONS.includes(permission)) return false;
  try {
    return new URL(requestingUrl).origin === appOrigin;
  } catch {
    return false;
  }
}

/** The pending count the desk puts in front of its title ("(3) Countersign" -> 3; "(99+) …" -> 99). */
export function pendingCountFromTitle(title: string): number {
  const match = /^\((\d{1,2})\+?\) /.exec(title);
  return match === null ? 0 : Number(match[1]);
}
