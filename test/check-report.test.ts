// Goal: the HTML report is one self-contained page that really renders: a lane per process,
// a bar per operation coloured by how it ended, the unplaceable operation highlighted with
// hover text, and the latency and throughput plots. It is opened in headless Chromium
// (Debian's `chromium`) and a screenshot is taken; without Chromium that part skips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { parseJsonl } from '../src/check/formats.js';
import { checkHistory } from '../src/check/linearizability.js';
import { models } from '../src/check/models/index.js';
import { escapeHtml, renderReport } from '../src/check/report.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Two keys, four processes; key "b" has a stale get that cannot be placed. Times in ns. */
function sample(): string {
  const lines: object[] = [];
  let time = 1_000_000;
  const ev = (process: number, type: string, f: string, key: string, value: unknown): void => {
    time += 700_000 + ((lines.length * 7919) % 900_000);
    lines.push({ process, type, f, key, value, time });
  };
  for (let round = 0; round < 6; round++) {
    ev(0, 'invoke', 'append', 'a', `a${round}`);
    ev(1, 'invoke', 'get', 'a', null);
    ev(0, 'ok', 'append', 'a', `a${round}`);
    ev(1, 'ok', 'get', 'a', Array.from({ length: round + 1 }, (_, i) => `a${i}`).join(''));
    ev(2, 'invoke', 'put', 'b', `b${round}`);
    ev(2, round === 2 ? 'info' : 'ok', 'put', 'b', round === 2 ? null : `b${round}`);
    if (round === 2) ev(4, 'invoke', 'put', 'b', 'never');
    if (round === 2) ev(4, 'fail', 'put', 'b', null);
  }
  ev(3, 'invoke', 'get', 'b', null);
  ev(3, 'ok', 'get', 'b', 'b1');
  return lines.map((l) => JSON.stringify(l)).join('\n');
}

function render(): { html: string; operations: number } {
  const history = parseJsonl(sample(), 'sample <report>.jsonl');
  const result = checkHistory(history, models.kv);
  assert.equal(result.verdict, 'not-linearizable');
  const html = renderReport({
    result,
    model: models.kv,
    source: history.source,
    timeUnit: history.timeUnit,
  });
  return { html, operations: result.operations.length };
}

test('the report is self-contained and marks the failing partition', () => {
  const { html, operations } = render();
  assert.doesNotMatch(html, /<script|<link|src=|href=|url\(/i, 'no outside resources');
  assert.ok(html.includes(escapeHtml('sample <report>.jsonl')), 'the file name is escaped');
  assert.equal(html.match(/<g class="op /g)?.length, operations);
  assert.match(html, /class="op ok failing-partition unplaceable"/);
  assert.match(html, /class="op ok other-partition"/);
  assert.match(html, /class="op info failing-partition/);
  assert.match(html, /class="op fail failing-partition/);
  assert.match(
    html,
    /could not be placed: it returned &#34;b1&#34; but the key holds &#34;b5&#34;/,
  );
  assert.match(html, /Latency over time/);
  assert.match(html, /Throughput over time/);
});

const noChromium = existsSync(chromiumPath)
  ? false
  : `${chromiumPath} not found: install Debian's chromium package (apt-get install chromium) to render the report`;

test('the report renders in headless Chromium (screenshot)', { skip: noChromium }, async () => {
  const { html, operations } = render();
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('requestfailed', (r) => problems.push(`request ${r.url()}`));
    await page.setContent(html, { waitUntil: 'load' });
    assert.equal(await page.locator('svg.timeline g.op').count(), operations);
    assert.equal(await page.locator('svg.plot').count(), 2);
    const lanes = await page.locator('svg.timeline text.lane').allTextContents();
    assert.deepEqual(lanes, ['process 0', 'process 1', 'process 2', 'process 3', 'process 4']);
    const flagged = await page.locator('g.unplaceable rect').first().boundingBox();
    assert.ok(
      flagged !== null && flagged.width > 0 && flagged.height > 0,
      'the unplaceable bar is drawn',
    );
    const hover = await page.locator('g.unplaceable title').first().textContent();
    assert.match(hover ?? '', /could not be placed/);
    const verdict = await page.locator('.verdict').textContent();
    assert.equal(verdict, 'not linearizable');
    const outDir = path.join(repoRoot, 'dist', 'screenshots');
    mkdirSync(outDir, { recursive: true });
    const shot = await page.screenshot({
      path: path.join(outDir, 'check-report.png'),
      fullPage: true,
    });
    assert.ok(shot.length > 10_000, `a real image (${shot.length} bytes)`);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
