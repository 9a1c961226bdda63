/**
 * Reaching the desk as a person in a real browser, for the desk's browser tests. Every desk test
 * goes through these two functions, so how a person proves who they are (today: the temporary
 * "acting as" choice; with sign-in: a security-key ceremony) changes in one place.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { REPO_ROOT } from '../../main/core/app.js';

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

/**
 * Screenshot the page in light and dark (prefers-color-scheme) as `<name>-light.png` and
 * `<name>-dark.png`: always into test-results/screenshots/ (not committed), and into
 * docs/screenshots/ (committed, shown in the README) when UPDATE_SCREENSHOTS=1.
 */
export async function saveScreenshots(page: Page, name: string): Promise<void> {
  const dirs = [join(REPO_ROOT, 'test-results', 'screenshots')];
  if (process.env.UPDATE_SCREENSHOTS === '1') dirs.push(join(REPO_ROOT, 'docs', 'screenshots'));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    const image = await page.screenshot({ fullPage: true });
    for (const dir of dirs) writeFileSync(join(dir, `${name}-${colorScheme}.png`), image);
  }
  await page.emulateMedia({ colorScheme: null });
}
