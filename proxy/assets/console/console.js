// llmselect-edge admin console. No framework and no build step: plain DOM and fetch().
// The admin token lives in sessionStorage (this tab only) and is sent as a Bearer header;
// it never goes into a URL or a cookie.
"use strict";

const TOKEN_KEY = "llmselect-admin-token";
const POLL_MS = 2000;
const HISTORY = 150; // samples in the chart: 5 minutes at POLL_MS

const $ = (id) => document.getElementById(id);
let timer = null;
let previous = null; // the last /stats snapshot and its time
const history = [];  // {rate, ratio}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { logout("The token was refused."); throw new Error("unauthorized"); }
  if (!resp.ok) throw new Error((data.error && data.error.message) || resp.statusText);
  return data;
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearInterval(timer);
  timer = null; previous = null; history.length = 0;
  $("app").hidden = true; $("session").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function login(t) {
  sessionStorage.setItem(TOKEN_KEY, t);
  try { await api("GET", "/stats"); } catch (e) {
    if (e.message !== "unauthorized") $("login-error").textContent = e.message;
    return;
  }
  $("login").hidden = true; $("app").hidden = false; $("session").hidden = false;
  $("login-error").textContent = "";
  await refresh();
  timer = setInterval(refresh, POLL_MS);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function pct(x) { return (100 * x).toFixed(1) + " %"; }

function lookups(s) { return s.hits + s.stale + s.revalidated + s.misses + s.bypass; }
function served(s) { return s.hits + s.stale + s.revalidated; }
function requests(s) { return lookups(s) + s.pass + s.errors; }

function showStats(s) {
  const now = performance.now();
  $("stat-hits").textContent = s.hits;
  $("stat-misses").textContent = s.misses;
  $("stat-entries").textContent = s.entries;
  $("stat-bytes").textContent = bytes(s.bytes);
  $("stat-capacity").textContent = "of " + bytes(s.capacity);
  $("stat-evictions").textContent = s.evictions;
  $("stat-errors").textContent = s.errors;
  if (previous) {
    const dt = (now - previous.at) / 1000;
    const p = previous.stats;
    const rate = dt > 0 ? (requests(s) - requests(p)) / dt : 0;
    const dl = lookups(s) - lookups(p);
    const ratio = dl > 0 ? (served(s) - served(p)) / dl : null;
    const fetches = s.origin_fetches - p.origin_fetches;
    $("stat-rate").textContent = rate.toFixed(1);
    $("stat-origin-latency").textContent = fetches > 0
      ? ((s.origin_fetch_micros - p.origin_fetch_micros) / fetches / 1000).toFixed(1) + " ms" : "–";
    $("stat-hit-ratio-window").textContent =
      "since start" + (ratio === null ? "" : "; last " + dt.toFixed(0) + " s: " + pct(ratio));
    history.push({ rate, ratio });
    if (history.length > HISTORY) history.shift();
    draw();
  }
  $("stat-hit-ratio").textContent = lookups(s) > 0 ? pct(s.hit_ratio) : "–";
  if (!previous) $("stat-hit-ratio-window").textContent = "since start";
  previous = { stats: s, at: now };
}

function draw() {
  const c = $("chart"), g = c.getContext("2d");
  const w = c.width, h = c.height, pad = 20;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#e5e7eb"; g.beginPath();
  for (let i = 0; i <= 4; i++) { const y = pad + (h - 2 * pad) * i / 4; g.moveTo(0, y); g.lineTo(w, y); }
  g.stroke();
  const max = Math.max(1, ...history.map((p) => p.rate));
  const x = (i) => (w - 6) - (history.length - 1 - i) * ((w - 12) / (HISTORY - 1));
  const line = (color, value) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    let started = false;
    history.forEach((p, i) => {
      const v = value(p);
      if (v === null) { started = false; return; }
      const y = h - pad - v * (h - 2 * pad);
      if (started) g.lineTo(x(i), y); else { g.moveTo(x(i), y); started = true; }
    });
    g.stroke();
    // a dot per sample, so a single one shows too
    g.fillStyle = color;
    history.forEach((p, i) => {
      const v = value(p);
      if (v !== null) g.fillRect(x(i) - 2, h - pad - v * (h - 2 * pad) - 2, 4, 4);
    });
  };
  line("#2563eb", (p) => p.rate / max);
  line("#15803d", (p) => p.ratio);
  g.fillStyle = "#6b7280"; g.font = "11px system-ui";
  g.fillText(max.toFixed(1) + " req/s", 4, pad - 6);
}

function showHealth(hl) {
  const badge = $("health-badge");
  badge.textContent = hl.status; badge.className = "badge " + hl.status;
  const ul = $("health"); ul.replaceChildren();
  for (const u of hl.upstreams) {
    const li = document.createElement("li");
    li.textContent = "origin " + u.address + ": " +
      (!u.checked ? "in use (one origin: not health-checked)" : u.healthy ? "healthy" : "down");
    li.className = u.healthy ? "healthy" : "unhealthy";
    ul.append(li);
  }
  const li = document.createElement("li");
  li.textContent = "invalidation bus: " + (hl.bus === null ? "none (single node)" : hl.bus);
  li.className = hl.bus === null || hl.bus === "connected" ? "healthy" : "unhealthy";
  ul.append(li);
}

function showPurges(list) {
  const tb = $("purges"); tb.replaceChildren();
  for (const p of list.slice(0, 20)) {
    const tr = document.createElement("tr");
    for (const v of [new Date(p.at_ms).toLocaleTimeString(), p.source, p.scopes.join(", "),
                     p.soft ? "soft" : "hard", p.entries]) {
      const td = document.createElement("td"); td.textContent = String(v); tr.append(td);
    }
    tb.append(tr);
  }
}

async function refresh() {
  try {
    const [s, hl, pu] = await Promise.all([
      api("GET", "/stats"), api("GET", "/health"), api("GET", "/purges"),
    ]);
    showStats(s); showHealth(hl); showPurges(pu.purges);
  } catch (e) {
    if (e.message !== "unauthorized") $("health-badge").textContent = "unreachable";
  }
}

async function purge(ev) {
  ev.preventDefault();
  const kind = $("purge-kind").value, value = $("purge-value").value.trim();
  const body = { soft: $("purge-soft").checked };
  if (kind === "all") body.all = true;
  else if (!value) { $("purge-result").textContent = "Name what to purge."; return; }
  else if (kind === "prefix") body.prefix = value;
  else body[kind] = value.split(/[\s,]+/).filter(Boolean);
  if (kind === "all" && !confirm("Purge the whole cache?")) return;
  try {
    const r = await api("POST", "/purge", body);
    $("purge-result").textContent = "Purged " + r.purged + (r.purged === 1 ? " entry (" : " entries (") + r.kind +
      (r.soft ? ", soft" : "") + (r.fleet ? ", published to the fleet" : "") + ").";
    refresh();
  } catch (e) { $("purge-result").textContent = "Purge failed: " + e.message; }
}

async function explain(ev) {
  ev.preventDefault();
  const headers = $("explain-headers").value.split("\n").map((l) => l.trim()).filter(Boolean)
    .map((l) => { const i = l.indexOf(":"); return [l.slice(0, i), l.slice(i + 1)]; });
  try {
    const r = await api("POST", "/explain", { url: $("explain-url").value.trim(), headers });
    $("explain-verdict").textContent = r.verdict.toUpperCase();
    $("explain-why").textContent = r.why;
    $("explain-output").textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    $("explain-verdict").textContent = "ERROR"; $("explain-why").textContent = e.message;
    $("explain-output").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); const t = $("token-input").value.trim(); $("token-input").value = "";
    if (t) login(t);
  });
  $("token-forget").addEventListener("click", () => logout(""));
  $("purge-form").addEventListener("submit", purge);
  $("explain-form").addEventListener("submit", explain);
  if (token()) login(token());
});
