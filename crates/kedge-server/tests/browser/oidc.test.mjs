// An OIDC login in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): Kedge's login page,
// "Log in with SSO", the provider's login and consent pages, and back to the page asked for, logged in. The provider
// is another site than Kedge (localhost against 127.0.0.1), so the browser applies its cross-site cookie rules as in
// a real setup. Started by crates/kedge-server/tests/oidc.rs, which runs the provider and Kedge and passes:
//   BASE_URL, USER_DATA_DIR, SCREENSHOT_DIR
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
const base = env("BASE_URL");
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });
const STEP = 40_000;

const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
  viewport: { width: 1280, height: 800 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(STEP);
let failed = false;
try {
  // An anonymous visit to a page goes to the login page, which offers SSO.
  await page.goto(`${base}/clusters`);
  await page.waitForURL(`${base}/login?next=/clusters`);
  await page.screenshot({ path: `${shots}/oidc-login.png` });
  await page.getByRole("link", { name: "Log in with SSO" }).click();

  // The provider's own pages: log in as alice, grant consent.
  await page.waitForURL((u) => u.hostname === "localhost");
  await page.locator('input[name="login"]').fill("alice");
  await page.locator('input[name="password"]').fill("any");
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.hostname === "localhost" && u.pathname.startsWith("/interaction/"));
  await page.locator('button[type="submit"]').click();

  // Back at Kedge on the page asked for, logged in (the session cookie goes with the first request after the login).
  await page.waitForURL(`${base}/clusters`);
  await page.locator("header .user").getByText("alice").waitFor();
  await page.screenshot({ path: `${shots}/oidc-logged-in.png` });
  const who = await page.evaluate(async () => (await fetch("/api/v1/session")).json());
  assert.equal(who.user, "alice");
  assert.equal(who.role, "none");
  assert.deepEqual(who.groups, ["team-a"]);
  console.log("ok - OIDC login in Chromium");
} catch (e) {
  failed = true;
  console.log(`not ok - OIDC login in Chromium at ${page.url()}: ${e.stack || e}`);
  await page.screenshot({ path: `${shots}/oidc-failure.png` }).catch(() => {});
} finally {
  await context.close();
}
process.exit(failed ? 1 : 0);
