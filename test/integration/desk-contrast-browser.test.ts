/**
 * WCAG AA contrast of the desk's key text/background pairs (issue #13), light and dark: the
 * renderer's own stylesheet (renderer/src/styles.css) applied in Debian's Chromium with
 * prefers-color-scheme emulated each way; for each element the computed text colour is measured
 * against the first opaque background behind it (WCAG 2.x relative luminance), and must reach
 * 4.5:1 (normal text). A palette change that breaks a pair fails here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { REPO_ROOT } from '../../main/core/app.js';
import { launchChromium } from '../helpers/chromium.js';

let browser: Browser | undefined;
let page: Page;

/** The pairs that matter: every kind of button, body and muted text, badges, risk levels, alerts. */
const SAMPLE = `
<main class="app">
  <header class="header"><h1>Countersign</h1><span class="badge badge-test">TEST domain</span></header>
  <nav class="tabs"><button class="tab tab-active" data-pair="tab active">Queue</button><button class="tab" data-pair="tab">History</button></nav>
  <section class="panel">
    <p data-pair="body text">48,000.00 USD to Northwind Traders</p>
    <p class="muted" data-pair="muted text">2 min 30 s left</p>
    <button type="button" data-pair="primary button">Sign in</button>
    <button type="button" class="secondary" data-pair="secondary button">Refresh</button>
    <button type="button" class="approve" data-pair="approve button">Approve</button>
    <button type="button" class="deny" data-pair="deny button">Deny</button>
    <span class="risk-badge risk-low" data-pair="risk low">risk 10</span>
    <span class="risk-badge risk-medium" data-pair="risk medium">risk 40</span>
    <span class="risk-badge risk-high" data-pair="risk high">risk 80</span>
    <p class="error" role="alert" data-pair="error alert">the signature did not verify</p>
    <a href="#x" data-pair="link">change link</a>
  </section>
</main>`;

beforeAll(async () => {
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setContent(`<!doctype html><html><head></head><body>${SAMPLE}</body></html>`);
  await page.addStyleTag({ path: join(REPO_ROOT, 'renderer', 'src', 'styles.css') });
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

/** Contrast ratio of each [data-pair] element's text against the opaque background behind it. */
async function contrasts(scheme: 'light' | 'dark'): Promise<Record<string, number>> {
  await page.emulateMedia({ colorScheme: scheme });
  return page.evaluate(`(() => {
    const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return [0, 0, 0, 0];
      const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
    const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1); };
    const background = (el) => {
      const layers = [];
      for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor); if (c[3] > 0) layers.push(c); if (c[3] === 1) break; }
      let colour = [255, 255, 255, 1];
      if (layers.length === 0 || layers[layers.length - 1][3] < 1) colour = parse(getComputedStyle(document.documentElement).backgroundColor)[3] === 1 ? parse(getComputedStyle(document.documentElement).backgroundColor) : colour;
      for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
      return colour;
    };
    const out = {};
    for (const el of document.querySelectorAll('[data-pair]')) {
      const bg = background(el);
      const fg = over(parse(getComputedStyle(el).color), bg);
      const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
      out[el.getAttribute('data-pair')] = Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100;
    }
    return out;
  })()`);
}

describe('the desk palette', () => {
  for (const scheme of ['light', 'dark'] as const)
    it(`meets WCAG AA (4.5:1) for every key text/background pair in ${scheme} mode`, async () => {
      const ratios = await contrasts(scheme);
      expect(Object.keys(ratios).length).toBe(13);
      const failing = Object.entries(ratios).filter(([, ratio]) => ratio < 4.5);
      expect(failing, JSON.stringify(ratios)).toEqual([]);
    });

  it('answers a scheme change (the dark palette is really applied)', async () => {
    const light = await contrasts('light');
    const dark = await contrasts('dark');
    expect(light).not.toEqual(dark);
  });
});
