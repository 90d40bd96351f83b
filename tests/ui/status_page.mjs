// Load the router's /ui status page in headless Chromium, log in with the admin key, and
// check that the charts and tables show live data; save a screenshot.
//
// usage: node status_page.mjs ROUTER_URL ADMIN_KEY SCREENSHOT_PATH
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, key, shot] = process.argv.slice(2);
if (!base || !key || !shot) {
  console.error("usage: node status_page.mjs ROUTER_URL ADMIN_KEY SCREENSHOT_PATH");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "switchyard-ui-"));

function fail(msg) {
  console.error("FAIL: " + msg);
  process.exitCode = 1;
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  await page.goto(base + "/ui", { waitUntil: "load" });
  // Without a key the page asks for one.
  await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
  await page.fill("#key", key);
  await page.click("#login button");
  await page.waitForSelector("#dashboard:not([hidden])", { timeout: 10000 });
  // Wait for a refresh cycle with traffic in the charts.
  await page.waitForFunction(() => {
    const p = document.querySelector("#rate-chart path.line");
    return p && Number(p.getAttribute("data-points")) > 0 && Number(document.getElementById("total-requests").textContent.replace(/\D/g, "")) > 0;
  }, null, { timeout: 15000 });
  // A second refresh must happen on its own (the page polls).
  const first = await page.textContent("#updated");
  await page.waitForFunction((f) => document.getElementById("updated").textContent !== f, first, { timeout: 10000 });

  const facts = await page.evaluate(() => {
    const rate = document.querySelector("#rate-chart path.line");
    const lat = [...document.querySelectorAll("#latency-chart path.line")];
    const rows = [...document.querySelectorAll("#endpoints tbody tr")];
    return {
      rateD: rate ? rate.getAttribute("d") : "",
      ratePoints: rate ? Number(rate.getAttribute("data-points")) : 0,
      latencyPoints: lat.map((p) => Number(p.getAttribute("data-points"))),
      totalRequests: Number(document.getElementById("total-requests").textContent.replace(/\D/g, "")),
      endpoints: rows.map((r) => ({ name: r.cells[0].textContent, health: r.cells[1].textContent, requests: Number(r.querySelector(".requests").textContent.replace(/\D/g, "")) })),
      noJobs: !document.getElementById("no-video-jobs").hidden,
      state: document.getElementById("state").textContent,
    };
  });
  console.log(JSON.stringify(facts));
  if (!facts.rateD || !facts.rateD.startsWith("M") || facts.ratePoints < 2) fail("request-rate chart has no line: " + facts.rateD);
  if (!(facts.latencyPoints.length === 2 && facts.latencyPoints[0] > 0)) fail("latency chart has no data");
  if (!(facts.totalRequests > 0)) fail("no requests counted");
  if (facts.endpoints.length < 1) fail("no endpoints listed");
  if (!facts.endpoints.some((e) => e.health === "ready" && e.requests > 0)) fail("no ready endpoint with traffic");
  if (!facts.noJobs) fail("video jobs panel should say there are none");
  if (facts.state !== "live") fail("page not live: " + facts.state);
  if (consoleErrors.length) fail("console errors: " + consoleErrors.join(" | "));
  await page.screenshot({ path: shot, fullPage: true });
  console.log("screenshot: " + shot);
} catch (e) {
  fail(String(e && e.stack || e));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
