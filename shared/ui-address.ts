/**
 * Where the desk lives and how its headless session secret travels, without a schema library:
 * the renderer's boot script (renderer/src/boot.ts) reads them before zod or React have loaded.
 * shared/bridge.ts re-exports them and builds its schemas from them.
 */

/** Where the built renderer is served, in both Electron and headless mode. */
export const UI_BASE_PATH = '/ui/';
/** The URL fragment parameter carrying the headless session secret (`/ui/#secret=...`). */
export const UI_SECRET_FRAGMENT_PARAM = 'secret';
/** Session secrets are 32 random bytes, base64url (up to 256 characters accepted). */
export const SESSION_SECRET_PATTERN = /^[A-Za-z0-9_-]{32,256}$/;
/** The HttpOnly, SameSite=Strict session cookie of the headless desk (never readable by the page). */
export const DESK_SESSION_COOKIE = 'countersign_session';
