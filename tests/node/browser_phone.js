// A real browser phone: Debian's Chromium, driven by playwright-core, opens sipgrid's
// browser phone page (JsSIP over WSS), registers with an X-Connect-Token and calls
// TARGET with fake audio, holds the call HOLD_MS, hangs up, and prints one JSON line:
// the states it went through, the SDP it received and sent, and WebRTC's RTP counts.
//
//   node browser_phone.js PAGE_URL TOKEN TARGET HOLD_MS
//   node browser_phone.js PAGE_URL TOKEN --answer HOLD_MS   (waits for a call instead)

'use strict';

const { chromium } = require('playwright-core');

const [pageUrl, token, target, holdMs] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--ignore-certificate-errors', // the all-in-one's self-signed certificate
    ],
  });
  const out = { states: [] };
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') out.states.push(`console: ${m.text()}`); });
    const answering = target === '--answer';
    await page.goto(answering ? `${pageUrl}?autoanswer` : pageUrl);
    await page.fill('#token', token);
    await page.dispatchEvent('#token', 'input');
    await page.click('#register');
    await page.waitForFunction(() => ['registered', 'refused', 'disconnected'].includes(window.phone.state), null, { timeout: 15000 });
    out.registration = await page.evaluate(() => window.phone.log.slice(-1)[0]);
    if (window_state(out.registration) !== 'registered') return out;
    if (answering) {
      console.log(JSON.stringify({ ready: true })); // the test places its call now
    } else {
      await page.fill('#target', target);
      await page.click('#call');
    }
    await page.waitForFunction(() => ['in call', 'ended', 'failed'].includes(window.phone.state), null, { timeout: 30000 });
    out.call = await page.evaluate(() => window.phone.state);
    if (out.call === 'in call') {
      await page.waitForTimeout(Number(holdMs));
      out.rtp = await page.evaluate(() => window.phone.stats());
      if (!answering) {
        await page.click('#hangup');
      }
      await page.waitForFunction(() => ['ended', 'failed'].includes(window.phone.state), null, { timeout: 15000 });
    }
    Object.assign(out, await page.evaluate(() => ({
      log: window.phone.log, remoteSdp: window.phone.remoteSdp, localSdp: window.phone.localSdp,
    })));
    return out;
  } finally {
    await browser.close();
  }
}

function window_state(text) {
  return (text || '').split(':')[0];
}

main().then((out) => {
  console.log(JSON.stringify(out));
}).catch((error) => {
  console.error(`browser_phone failed: ${error && (error.stack || error.message || error)}`);
  process.exit(1);
});
