// Browser checks of the Kedge UI in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
// Started by crates/kedge-server/tests/browser.rs, which runs the controller and passes:
//   BASE_URL, PASSWORD, NAMESPACE, FIRST_SHA, WORK_DIR, REPO_URL, KUBECONFIG, SCREENSHOT_DIR, USER_DATA_DIR,
//   SECRET_MARKER (a value of the registered cluster's Secret, never to be shown)
// Applications: guestbook and backend in the cluster Kedge runs in, faraway on the registered cluster "far", whose
// server nobody answers for; at the end, the promotion stages dev and prod (paths stages/dev and stages/prod).
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
const base = env("BASE_URL");
const ns = env("NAMESPACE");
const first = env("FIRST_SHA");
let second = "";
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });
const STEP = 40_000;

let passed = 0;
let failed = 0;
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e.stack || e}`);
    const summary = await page.locator("#app-summary").innerText().catch(() => "");
    if (summary) console.log(`summary at failure:\n${summary}`);
    console.log(`flash at failure: ${await page.locator("#flash").innerText().catch(() => "")}`);
    console.log(`tab at failure: ${(await page.locator("#app-tab").innerText().catch(() => "")).slice(0, 800)}`);
    throw e;
  }
}

function kubectl(...args) {
  return execFileSync("kubectl", ["--kubeconfig", env("KUBECONFIG"), "-n", ns, ...args], { encoding: "utf8" });
}

function kubectlApply(manifest) {
  return execFileSync("kubectl", ["--kubeconfig", env("KUBECONFIG"), "-n", ns, "apply", "-f", "-"],
    { encoding: "utf8", input: manifest });
}

const rowCount = (n) => page.waitForFunction((n) => document.querySelectorAll("#app-list tbody tr").length === n, n);
const trimmed = async (locator) => (await locator.innerText()).trim();

const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1360, height: 900 },
});
context.setDefaultTimeout(STEP);
const page = context.pages()[0] || (await context.newPage());
page.on("dialog", (d) => d.accept());
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

try {
  await step("unauthenticated visit redirects to the login page", async () => {
    await page.goto(`${base}/applications`);
    assert.match(page.url(), /\/login\?next=/);
    await page.getByLabel("Password").fill("wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "invalid username or password" }).waitFor();
  });

  await step("log in and see the application list", async () => {
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(env("PASSWORD"));
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(/\/applications$/);
    await page.locator(`tr[data-app="${ns}/guestbook"]`).waitFor();
    await page.locator(`tr[data-app="${ns}/backend"]`).waitFor();
    await page.locator(`tr[data-app="${ns}/faraway"]`).waitFor();
    await page.locator("#live-status[data-state=live]").waitFor();
    await page.locator(`tr[data-app="${ns}/backend"] .sync .s-Synced`).waitFor();
    await page.screenshot({ path: `${shots}/applications.png` });
  });

  await step("filter by search, then by sync state", async () => {
    await page.locator("#search").fill("guest");
    await page.waitForFunction(() => document.querySelectorAll("#app-list tbody tr").length === 1);
    assert.match(page.url(), /q=guest/);
    await page.locator("#search").fill("");
    await rowCount(3);
    await page.locator("select[name=sync]").selectOption("Synced");
    await rowCount(1);
    await page.locator(`tr[data-app="${ns}/backend"]`).waitFor();
    await page.locator("select[name=sync]").selectOption("");
    await rowCount(3);
  });

  await step("the list shows each application's cluster and filters by it, live", async () => {
    assert.equal(await trimmed(page.locator(`tr[data-app="${ns}/guestbook"] td.cluster`)), "in-cluster");
    assert.equal(await trimmed(page.locator(`tr[data-app="${ns}/faraway"] td.cluster`)), "far");
    await page.locator("select[name=cluster]").selectOption("far");
    await rowCount(1);
    await page.locator(`tr[data-app="${ns}/faraway"]`).waitFor();
    assert.match(page.url(), /[?&]cluster=far(&|$)/);
    // A live update keeps the filter: a new application on far appears, and none of the others.
    kubectlApply(`apiVersion: kedge.dev/v1alpha1
kind: Application
metadata: {name: faraway-two, namespace: ${ns}}
spec:
  source: {repoURL: "${env("REPO_URL")}", targetRevision: main, path: backend}
  destination: {name: far, namespace: far}
`);
    await page.locator(`tr[data-app="${ns}/faraway-two"]`).waitFor();
    assert.equal(await page.locator("#app-list tbody tr").count(), 2);
    assert.equal(await page.locator(`#app-list tr[data-app="${ns}/guestbook"]`).count(), 0);
    // The filter is in the URL: opened again, the page applies it.
    await page.goto(`${base}/applications?cluster=in-cluster`);
    await rowCount(2);
    await page.locator(`tr[data-app="${ns}/guestbook"]`).waitFor();
    await page.locator(`tr[data-app="${ns}/backend"]`).waitFor();
    assert.equal(await page.locator("select[name=cluster]").inputValue(), "in-cluster");
    await page.locator("select[name=cluster]").selectOption("");
    await rowCount(4);
  });

  await step("the clusters page lists in-cluster and the registered cluster, not connected", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Clusters" }).click();
    await page.waitForURL(/\/clusters$/);
    const local = page.locator('tr[data-cluster="in-cluster"]');
    await local.waitFor();
    assert.equal(await trimmed(local.locator("td.apps")), "2");
    assert.equal(await trimmed(local.locator("td.status")), "Connected");
    assert.equal(await trimmed(local.locator("td.server")), "https://kubernetes.default.svc");
    assert.match(await trimmed(local.locator("td.version")), /^v1\.\d+/);
    const far = page.locator('tr[data-cluster="far"]');
    assert.equal(await trimmed(far.locator("td.server")), "https://127.0.0.1:1");
    assert.equal(await trimmed(far.locator("td.apps")), "2");
    assert.equal(await trimmed(far.locator("td.status .c-NotConnected")), "Unreachable");
    assert.match(await far.locator("td.status").innerText(), /cannot reach https:\/\/127\.0\.0\.1:1/);
    assert.equal(await trimmed(far.locator("td.version")), "—");
    assert.ok(!(await page.content()).includes(env("SECRET_MARKER")), "no Secret value on the page");
    await page.screenshot({ path: `${shots}/clusters.png`, fullPage: true });
    await far.locator("td.name a").click();
    await page.waitForURL(/\/applications\?cluster=far$/);
    await rowCount(2);
    await page.locator(`tr[data-app="${ns}/faraway-two"]`).waitFor();
    assert.equal(await page.locator("select[name=cluster]").inputValue(), "far");
    await page.goto(`${base}/applications`);
    await rowCount(4);
  });

  await step("open an application and view its diff", async () => {
    await page.locator(`tr[data-app="${ns}/guestbook"] a`).first().click();
    await page.waitForURL(new RegExp(`/applications/${ns}/guestbook$`));
    await page.locator("#app-summary .sync-status .s-OutOfSync").waitFor();
    assert.equal(await trimmed(page.locator('#app-summary .cluster a[href="/clusters"]')), "in-cluster");
    await page.getByRole("link", { name: "Diff" }).click();
    await page.locator("details.obj[data-name=settings] pre.diff .add").first().waitFor();
    const text = await page.locator("details.obj[data-name=settings]").innerText();
    assert.match(text, /color: blue/);
    await page.screenshot({ path: `${shots}/diff.png`, fullPage: true });
  });

  await step("sync and see the status change live", async () => {
    await page.getByRole("link", { name: "Resources" }).click();
    const marker = await page.evaluate(() => (window.__kedgeMarker = Math.random()));
    await page.locator("[data-action=sync-menu]").click();
    await page.locator("button[data-action=sync]").click();
    await page.locator("#flash .toast").filter({ hasText: "Sync requested" }).waitFor();
    await page.locator(`#app-summary .revision:text("${first}")`).waitFor();
    await page.locator("#app-summary .sync-status .s-Synced").waitFor();
    await page.locator("#app-summary .op-phase.p-Succeeded").waitFor();
    await page.locator(".node[data-kind=Deployment] .s-Synced").waitFor();
    assert.equal(await page.evaluate(() => window.__kedgeMarker), marker, "the page was not reloaded");
  });

  await step("a new commit shows as OutOfSync after Refresh; Sync applies it", async () => {
    const work = env("WORK_DIR");
    writeFileSync(`${work}/guestbook/settings.yaml`,
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: "green"\n');
    const git = (...a) => execFileSync("git", ["-C", work, "-c", "user.name=Kedge Test", "-c", "user.email=test@kedge.invalid", ...a], { encoding: "utf8" }).trim();
    git("commit", "-qam", "Switch the guestbook to green");
    second = git("rev-parse", "HEAD");
    git("push", "-q", env("REPO_URL"), "HEAD:main");
    await page.locator("button[data-action=refresh]").click();
    await page.locator("#app-summary .sync-status .s-OutOfSync").waitFor();
    await page.locator(`#app-summary .revision:text("${second}")`).waitFor();
    await page.locator("[data-action=sync-menu]").click();
    await page.locator("button[data-action=sync]").click();
    await page.locator("#app-summary .sync-status .s-Synced").waitFor();
    await page.locator("#app-summary .health-status .h-Healthy").waitFor();
    await page.screenshot({ path: `${shots}/application.png`, fullPage: true });
  });

  await step("a live edit appears as drift with attribution and is reverted by a sync", async () => {
    kubectl("patch", "configmap", "settings", "--field-manager=kubectl-edit", "-p", '{"data":{"color":"red"}}');
    await page.locator("#app-summary .sync-status .s-OutOfSync").waitFor();
    await page.locator(".node[data-name=settings] .s-OutOfSync").waitFor();
    await page.getByRole("link", { name: "Diff" }).click();
    await page.locator("details.obj[data-name=settings] .drift").filter({ hasText: "kubectl-edit" }).waitFor();
    await page.screenshot({ path: `${shots}/drift.png`, fullPage: true });
    await page.locator("[data-action=sync-menu]").click();
    await page.locator("button[data-action=sync]").click();
    await page.locator("#app-summary .sync-status .s-Synced").waitFor();
    await page.locator(".in-sync").waitFor();
    assert.equal(kubectl("get", "configmap", "settings", "-o", "jsonpath={.data.color}"), "green");
  });

  await step("roll back to the first commit from the history", async () => {
    await page.getByRole("link", { name: "History" }).click();
    const rows = page.locator("table.history tbody tr");
    await rows.nth(1).waitFor();
    const oldest = rows.filter({ hasText: first.slice(0, 10) }).last();
    await page.screenshot({ path: `${shots}/history.png`, fullPage: true });
    await oldest.locator("button[data-action=rollback]").click();
    await page.locator("#flash .toast").filter({ hasText: /Rollback to \d+ requested/ }).waitFor();
    await page.locator("table.history tbody tr").first().filter({ hasText: "rollback" }).filter({ hasText: first.slice(0, 10) }).waitFor();
    await page.locator("#app-summary .suspended").waitFor();
    const deadline = Date.now() + STEP;
    while (kubectl("get", "configmap", "settings", "-o", "jsonpath={.data.color}") !== "blue") {
      if (Date.now() > deadline) throw new Error("the ConfigMap did not return to blue");
      await page.waitForTimeout(100);
    }
  });

  await step("a promotion pipeline shows each stage live; Promote approves prod's pending candidate", async () => {
    const stageApp = (name, extra) => `apiVersion: kedge.dev/v1alpha1
kind: Application
metadata: {name: ${name}, namespace: ${ns}}
spec:
  source: {repoURL: "${env("REPO_URL")}", targetRevision: main, path: stages/${name}}
  destination: {namespace: ${ns}}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
${extra}`;
    await page.goto(`${base}/applications`);
    kubectlApply(stageApp("dev", ""));
    await page.locator(`tr[data-app="${ns}/dev"]`).waitFor();
    kubectlApply(stageApp("prod", "  promotion: {from: {name: dev}, approval: Manual}\n"));
    await page.locator(`tr[data-app="${ns}/prod"] a`).first().click();
    await page.waitForURL(new RegExp(`/applications/${ns}/prod$`));
    const marker = await page.evaluate(() => (window.__kedgeMarker = Math.random()));
    const dev = page.locator(`#app-promotion .stage[data-app="${ns}/dev"]`);
    const prod = page.locator(`#app-promotion .stage[data-app="${ns}/prod"]`);
    await prod.locator(".stage-mode").filter({ hasText: "Manual" }).waitFor();
    assert.equal(await prod.getAttribute("aria-current"), "page");
    // dev syncs and prod is offered its commit, on the page as it happens.
    await dev.locator(".s-Synced").waitFor();
    await prod.locator(".stage-pending").waitFor();
    const revision = await trimmed(dev.locator(".stage-revision"));
    assert.match(revision, /^[0-9a-f]{7}$/);
    assert.equal(await trimmed(prod.locator(".stage-pending")), revision);
    assert.equal(await trimmed(prod.locator(".stage-revision")), "—");
    assert.match(await prod.locator(".stage-waiting").innerText(), /waits for approval/);
    assert.equal(await dev.locator("a").first().getAttribute("href"), `/applications/${ns}/dev`);
    await page.screenshot({ path: `${shots}/promotion.png`, fullPage: true });
    await prod.locator("button[data-action=promote]").click();
    await page.locator("#promote-result .promote-ok").filter({ hasText: `Promotion of ${revision} to prod requested` }).waitFor();
    await prod.locator(".stage-revision").filter({ hasText: revision }).waitFor();
    await prod.locator(".stage-last").filter({ hasText: "approved by admin" }).waitFor();
    await prod.locator(".s-Synced").waitFor();
    assert.equal(await prod.locator("button[data-action=promote]").count(), 0, "nothing left to promote");
    assert.equal(kubectl("get", "configmap", "stage-prod", "-o", "jsonpath={.data.tier}"), "prod");
    assert.equal(await page.evaluate(() => window.__kedgeMarker), marker, "the page was not reloaded");
  });

  await step("no script errors on any page", async () => {
    assert.deepEqual(consoleErrors, []);
  });
} finally {
  await context.close();
  console.log(`${passed} passed, ${failed} failed`);
}
