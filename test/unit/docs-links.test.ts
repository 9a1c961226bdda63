/**
 * Links in README.md and docs/ stay inside the repository: every relative link resolves to a file
 * or folder of this repository (no ../ escaping it, no absolute filesystem paths); links to public
 * specs (http/https) are not checked here. They also hold no merge-conflict markers.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('../../', import.meta.url)));

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? markdownFiles(path) : name.endsWith('.md') ? [path] : [];
  });
}

/** Inline `[text](target)` and reference `[name]: target` link targets. */
function linkTargets(markdown: string): string[] {
  const inline = [...markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? '');
  const reference = [...markdown.matchAll(/^\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1] ?? '');
  return [...inline, ...reference];
}

describe('documentation links', () => {
  it('point only at files inside the repository or at public URLs', () => {
    const files = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))];
    const bad: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const target of linkTargets(readFileSync(file, 'utf8'))) {
        if (/^(https?:|mailto:|#)/.test(target)) continue;
        checked++;
        const path = decodeURIComponent(target.split('#')[0] ?? '');
        const full = resolve(dirname(file), path);
        const inside = full === root || full.startsWith(root + sep);
        if (path.startsWith('/') || /^[a-z]+:/i.test(path) || !inside || !existsSync(full)) bad.push(`${relative(root, file)}: ${target}`);
      }
    }
    expect(checked).toBeGreaterThan(0);
    expect(bad).toEqual([]);
  });

  it('hold no merge-conflict markers (one was once landed in docs/team-mode.md)', () => {
    const files = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))];
    const marked = files.flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, i) => (/^(<{7} |={7}$|>{7} )/.test(line) ? [`${relative(root, file)}:${i + 1}`] : [])),
    );
    expect(files.length).toBeGreaterThan(1);
    expect(marked).toEqual([]);
  });
});
