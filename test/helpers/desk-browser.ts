/**
 * Reaching the desk as a person in a real browser, for the desk's browser tests. Every desk test
 * goes through these two functions, so how a person proves who they are (today: the temporary
 * "acting as" choice; with sign-in: a security-key ceremony) changes in one place.
 */
import type { Page } from 'playwright-core';

export interface DeskAddress {
  readonly port: number;
  readonly uiSessionSecret: string;
}

/** Open the desk (optionally at a deep link such as `request=<id>`), with the session secret in the fragment. */
export async function openDesk(page: Page, app: DeskAddress, fragment = ''): Promise<void> {
  const extra = fragment.length > 0 ? `&${fragment}` : '';
  await page.goto(`http://localhost:${app.port}/ui/#secret=${encodeURIComponent(app.uiSessionSecret)}${extra}`);
}

/** Act at the open desk as `approverId` (their security key is in this page's virtual authenticator when they need to sign). */
export async function actAs(page: Page, approverId: string): Promise<void> {
  await page.getByTestId('desk-act-as').selectOption(approverId);
}
