// switchyard status page: polls /admin/status every 2 s and draws it. No dependencies.
"use strict";

const REFRESH_MS = 2000;
const WINDOW_MINUTES = 5;
const STORE_KEY = "switchyard.adminKey";
const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

// A key may come in the URL fragment (#key=…): the fragment never reaches the server.
(function keyFromFragment() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    sessionStorage.setItem(STORE_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
})();

function adminKey() { return sessionStorage.getItem(STORE_KEY) || ""; }

function showLogin(message) {
  $("login").hidden = false;
  $("dashboard").hidden = true;
  $("login-error").textContent = message || "";
  setState("locked", "");
}

function setState(text, cls) {
  const s = $("state");
  s.textContent = text;
  s.className = "pill " + (cls || "");
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(STORE_KEY, $("key").value.trim());
  $("key").value = "";
  refresh();
});

function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// Draw series (arrays of numbers or null) as lines over a shared x axis.
function drawChart(svg, series, opts) {
  const W = 600, H = 180, padL = 40, padB = 18, padT = 8;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const values = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(opts.minMax || 1, ...values) * 1.1;
  const n = Math.max(1, ...series.map((s) => s.values.length));
  const x = (i) => padL + (i / Math.max(1, n - 1)) * (W - padL - 4);
  const y = (v) => padT + (1 - v / max) * (H - padT - padB);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.appendChild(svgEl("line", { class: "grid", x1: padL, x2: W, y1: y(v), y2: y(v) }));
    const label = svgEl("text", { class: "axis", x: 2, y: y(v) + 4 });
    label.textContent = fmt(v, v < 10 ? 1 : 0);
    svg.appendChild(label);
  }
  const minutes = Math.round((n * 5) / 60);
  const tl = svgEl("text", { class: "axis", x: padL, y: H - 3 });
  tl.textContent = "-" + minutes + " min";
  svg.appendChild(tl);
  const tr = svgEl("text", { class: "axis", x: W - 30, y: H - 3 });
  tr.textContent = "now";
  svg.appendChild(tr);
  for (const s of series) {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
    });
    if (s.area && d) {
      const first = s.values.findIndex((v) => v !== null);
      const area = d + "L" + x(n - 1).toFixed(1) + "," + y(0) + "L" + x(first).toFixed(1) + "," + y(0) + "Z";
      svg.appendChild(svgEl("path", { class: "area", d: area }));
    }
    const path = svgEl("path", { class: "line " + (s.cls || ""), d: d, "data-points": String(s.values.filter((v) => v !== null).length) });
    svg.appendChild(path);
  }
}

function bucketCell(b) {
  const td = el("td");
  if (!b) { td.textContent = "–"; return td; }
  const pct = b.capacity > 0 ? Math.max(0, Math.min(100, (100 * b.available) / b.capacity)) : 0;
  const bar = el("span", { class: "bar" });
  const fill = el("span");
  fill.style.width = pct.toFixed(0) + "%"; // CSSOM, not a style attribute: allowed by the CSP
  bar.appendChild(fill);
  td.appendChild(bar);
  td.appendChild(document.createTextNode(fmt(b.available, 0) + "/" + fmt(b.capacity, 0)));
  return td;
}

// A provider endpoint's last /v1/models query (seed 004's row); "–" for other endpoints.
function probeText(p) {
  if (!p) return "–";
  const yesNo = (v) => (v === null || v === undefined ? "?" : v ? "yes" : "no");
  return "reachable " + yesNo(p.reachable) + " · auth ok " + yesNo(p.auth_ok) +
    " · models " + p.models_discovered + " · private network " + (p.private_network_approved ? "approved" : "not approved");
}

// The engine's own view of its load (running + queued, KV cache), while the reading is fresh.
function engineLoadCell(load) {
  if (!load) return el("td", { class: "engine-load" }, "–");
  const kv = load.kv_cache_usage === null || load.kv_cache_usage === undefined ? "" : " · kv " + fmt(100 * load.kv_cache_usage, 0) + "%";
  const text = load.running + " run · " + load.waiting + " queued" + kv + " (" + fmt(load.age_ms / 1000, 1) + " s ago)";
  return el("td", { class: "engine-load" }, text);
}

function renderEndpoints(endpoints) {
  const body = $("endpoints").querySelector("tbody");
  body.textContent = "";
  for (const e of endpoints) {
    const tr = el("tr", { "data-endpoint": e.name });
    tr.appendChild(el("td", {}, e.name));
    tr.appendChild(el("td", { class: "health-" + e.health }, e.health));
    tr.appendChild(el("td", { class: "circuit-" + e.circuit }, e.circuit));
    const cap = e.max_in_flight ? "/" + e.max_in_flight : "";
    tr.appendChild(el("td", { class: "in-flight" }, e.in_flight + cap));
    tr.appendChild(engineLoadCell(e.engine_load));
    tr.appendChild(bucketCell(e.rpm));
    tr.appendChild(bucketCell(e.tpm));
    tr.appendChild(el("td", {}, fmt(e.latency_ewma_ms) + " ms"));
    tr.appendChild(el("td", { class: "requests" }, fmt(e.requests_total, 0)));
    tr.appendChild(el("td", {}, fmt(e.failures_total, 0)));
    tr.appendChild(el("td", {}, (e.routes || []).map((r) => r.model + "/" + r.route + " ×" + r.weight + " " + r.policy + (r.priority ? " p" + r.priority : "")).join(", ")));
    tr.appendChild(el("td", { class: "probe" }, probeText(e.probe)));
    body.appendChild(tr);
  }
}

function renderJobs(jobs) {
  const body = $("video-jobs").querySelector("tbody");
  body.textContent = "";
  $("no-video-jobs").hidden = jobs.length > 0;
  for (const j of jobs) {
    const tr = el("tr");
    const created = j.created_at ? new Date((j.created_at > 1e12 ? j.created_at : j.created_at * 1000)).toLocaleTimeString() : "–";
    for (const v of [j.id, j.model || j.model_id, j.status, j.progress !== undefined && j.progress !== null ? j.progress + "%" : "–", created]) {
      tr.appendChild(el("td", {}, v === undefined || v === null ? "–" : String(v)));
    }
    body.appendChild(tr);
  }
}

function render(s) {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("version").textContent = "v" + s.version + " · up " + fmt(s.uptime_seconds / 60, 0) + " min";
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  setState("live", "live");
  const pts = s.timeline.points;
  const total = pts.reduce((a, p) => a + p.requests, 0);
  const errors = pts.reduce((a, p) => a + p.errors, 0);
  const last = pts[pts.length - 1] || {};
  const prev = pts[pts.length - 2] || {};
  $("total-requests").textContent = fmt(total, 0);
  $("total-errors").textContent = fmt(errors, 0);
  $("current-rps").textContent = fmt(Math.max(last.rps || 0, prev.rps || 0));
  $("in-flight").textContent = fmt(s.in_flight, 0);
  const p95 = last.p95_ms ?? prev.p95_ms;
  $("current-p95").textContent = p95 === null || p95 === undefined ? "–" : fmt(p95) + " ms";
  $("rows-written").textContent = s.request_log ? fmt(s.request_log.rows_written, 0) : "off";
  document.querySelectorAll(".window").forEach((w) => { w.textContent = String(Math.round(pts.length * 5 / 60)); });
  drawChart($("rate-chart"), [{ values: pts.map((p) => p.rps), area: true }], { minMax: 1 });
  drawChart($("latency-chart"), [
    { values: pts.map((p) => p.p50_ms), cls: "p50" },
    { values: pts.map((p) => p.p95_ms), cls: "p95" },
  ], { minMax: 10 });
  renderEndpoints(s.endpoints || []);
  renderJobs(s.video_jobs || []);
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const key = adminKey();
  if (!key) { showLogin(""); return; }
  try {
    const resp = await fetch("/admin/status?minutes=" + WINDOW_MINUTES, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      const body = await resp.json().catch(() => ({}));
      sessionStorage.removeItem(STORE_KEY);
      showLogin((body.error && body.error.message) || "Not authorized.");
      return;
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
  } catch (e) {
    setState("unreachable: " + e.message, "down");
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

refresh();
