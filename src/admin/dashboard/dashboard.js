// cuttle dashboard: polls /status every 2 s and renders it. No dependencies, no build step.
//
// Key figures have stable ids and exact forms (tests compare them with /status):
//   #requests-total  requests.total as a decimal integer, no separators ("1234")
//   #hit-ratio       cache.hits / cache.lookups as a percentage with one decimal and "%",
//                    rounded half up on the permille ("56.3%"); "n/a" when lookups is 0
//   #cache-hits, #cache-lookups, #log-dropped, #config-generation, #clients-open,
//   #upstream-open   decimal integers, no separators
//   #bytes-saved-ratio  bytes.saved / bytes.to_clients, same form as #hit-ratio
// Everything else is for people (grouped digits, KiB/MiB, "3m 12s").
"use strict";

const POLL_MS = 2000;
const WINDOW_S = 600;
const SVG = "http://www.w3.org/2000/svg";

const RESULTS = [
  ["memory_hit", "memory hit", "bg1"],
  ["disk_hit", "disk hit", "bg2"],
  ["hot_copy_hit", "cluster hot copy", "bg1"],
  ["refresh_unmodified", "revalidated", "bg3"],
  ["collapsed", "collapsed", "bg7"],
  ["stale_served", "stale served", "bg4"],
  ["miss", "miss", "bg5"],
  ["refresh_modified", "refetched", "bg9"],
  ["bypass", "bypass", "bg8"],
  ["purge", "purge", "bg6"],
];
const STATUS_COLOURS = { "1xx": "bg8", "2xx": "bg2", "3xx": "bg3", "4xx": "bg5", "5xx": "bg6" };

let last = null;      // the last /status document
let previous = null;  // the one before, for the instantaneous rate

// === formatting ===

function int(n) {
  return Number.isFinite(n) ? String(Math.trunc(n)) : "n/a";
}

function grouped(n) {
  if (!Number.isFinite(n)) return "n/a";
  return Math.trunc(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// num/den as a percentage with one decimal, rounded half up on the permille.
function percent(num, den) {
  if (!(den > 0) || !Number.isFinite(num)) return "n/a";
  const permille = Math.round((num * 1000) / den);
  const sign = permille < 0 ? "-" : "";
  const p = Math.abs(permille);
  return sign + Math.floor(p / 10) + "." + (p % 10) + "%";
}

function bytes(n) {
  if (!Number.isFinite(n)) return "n/a";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  const digits = i === 0 ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return (n < 0 ? "-" : "") + v.toFixed(digits) + " " + units[i];
}

function rate(v) {
  if (!Number.isFinite(v)) return "n/a";
  return v < 100 ? v.toFixed(1) : grouped(Math.round(v));
}

function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  if (d > 0) return d + "d " + h + "h";
  if (h > 0) return h + "h " + two(m) + "m";
  if (m > 0) return m + "m " + two(sec) + "s";
  return sec + "s";
}

function clock(unix) {
  const t = new Date(unix * 1000);
  const two = (x) => String(x).padStart(2, "0");
  return two(t.getHours()) + ":" + two(t.getMinutes()) + ":" + two(t.getSeconds());
}

// === DOM helpers (textContent only: URLs and names come from the network) ===

function $(id) { return document.getElementById(id); }

function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== text) el.textContent = text;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function num(v) { return typeof v === "number" && Number.isFinite(v) ? v : 0; }

function emptyRow(cols, text) {
  return el("tr", {}, el("td", { class: "empty", colspan: String(cols), text }));
}

// === charts (hand-written SVG) ===

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// A round maximum in the unit bytes() will print it in (so labels read "2.00 MiB").
function niceBytes(v) {
  let unit = 1;
  while (v >= unit * 1024 && unit < Math.pow(1024, 5)) unit *= 1024;
  return niceMax(v / unit) * unit;
}

// series: [{cls, pts: [[t, v or null]]}]; opts: {fmt, max, area}
function chart(node, series, t0, t1, opts) {
  const width = Math.max(200, node.clientWidth || node.getBoundingClientRect().width || 400);
  const height = Math.max(120, node.clientHeight || 170);
  const left = 52, right = 10, top = 8, bottom = 22;
  const w = width - left - right, h = height - top - bottom;
  node.setAttribute("viewBox", "0 0 " + width + " " + height);
  let peak = 0, any = false;
  for (const s of series) for (const [, v] of s.pts) if (v !== null) { peak = Math.max(peak, v); any = true; }
  const max = opts.max || (opts.nice || niceMax)(peak * 1.08);
  const x = (t) => left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * w : w);
  const y = (v) => top + h - (Math.min(v, max) / max) * h;
  const parts = [];
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4, yy = y(v);
    parts.push(svg("line", { class: "gridline", x1: left, x2: left + w, y1: yy, y2: yy }));
    if (i % 2 === 0) {
      const label = svg("text", { class: "axis", x: left - 8, y: yy + 4, "text-anchor": "end" });
      label.textContent = opts.fmt(v);
      parts.push(label);
    }
  }
  const span = t1 - t0;
  const step = span > 300 ? 120 : span > 120 ? 60 : span > 60 ? 30 : 15;
  for (let back = 0; back <= span + 0.001; back += step) {
    const label = svg("text", { class: "axis", x: x(t1 - back), y: height - 5,
      "text-anchor": back === 0 ? "end" : "middle" });
    label.textContent = back === 0 ? "now" : back % 60 === 0 ? "-" + back / 60 + "m" : "-" + back + "s";
    parts.push(label);
  }
  if (!any) {
    const t = svg("text", { class: "empty", x: left + w / 2, y: top + h / 2, "text-anchor": "middle" });
    t.textContent = "collecting samples…";
    parts.push(t);
  }
  for (const s of series) {
    // Split at gaps (null: nothing to divide by in that interval).
    const runs = [];
    let run = [];
    for (const [t, v] of s.pts) {
      if (v === null || t < t0) { if (run.length) runs.push(run); run = []; continue; }
      run.push([x(t), y(v)]);
    }
    if (run.length) runs.push(run);
    for (const r of runs) {
      const line = r.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
      if (opts.area) {
        const base = (top + h).toFixed(1);
        const area = line + " L" + r[r.length - 1][0].toFixed(1) + " " + base + " L" + r[0][0].toFixed(1) + " " + base + " Z";
        parts.push(svg("path", { class: "area " + s.cls, d: area }));
      }
      parts.push(svg("path", { class: "line " + s.cls, d: line }));
      if (r.length === 1) parts.push(svg("circle", { class: "dot " + s.cls, cx: r[0][0], cy: r[0][1], r: 3.5 }));
    }
    if (runs.length) {
      const end = runs[runs.length - 1];
      const p = end[end.length - 1];
      parts.push(svg("circle", { class: "dot " + s.cls, cx: p[0], cy: p[1], r: 3.5 }));
    }
  }
  node.replaceChildren(...parts);
}

// Cumulative samples: the history plus the current document as the newest point.
function samples(status) {
  const out = (Array.isArray(status.history) ? status.history : [])
    .filter((s) => s && Number.isFinite(s.t))
    .map((s) => ({ t: s.t, requests: num(s.requests), hits: num(s.hits), lookups: num(s.lookups),
      to_clients: num(s.to_clients), from_upstream: num(s.from_upstream) }));
  out.sort((a, b) => a.t - b.t);
  const now = num(status.now);
  const cur = { t: now, requests: num(status.requests && status.requests.total),
    hits: num(status.cache && status.cache.hits), lookups: num(status.cache && status.cache.lookups),
    to_clients: num(status.bytes && status.bytes.to_clients),
    from_upstream: num(status.bytes && status.bytes.from_upstream) };
  if (!out.length || now - out[out.length - 1].t > 1) out.push(cur);
  return out;
}

// Per-interval rates from consecutive cumulative samples; a counter going down (a restart)
// starts a gap.
function deltas(list, f) {
  const pts = [];
  for (let i = 1; i < list.length; i += 1) {
    const a = list[i - 1], b = list[i], dt = b.t - a.t;
    if (!(dt > 0)) continue;
    pts.push([b.t, f(a, b, dt)]);
  }
  return pts;
}

function renderCharts(status) {
  const list = samples(status);
  const t1 = num(status.now);
  const first = list.length ? list[0].t : t1;
  const t0 = Math.max(t1 - WINDOW_S, Math.min(first, t1 - 60));
  const d = (k) => (a, b, dt) => (b[k] >= a[k] ? (b[k] - a[k]) / dt : null);
  chart($("chart-rate"), [{ cls: "s1", pts: deltas(list, d("requests")) }], t0, t1,
    { fmt: (v) => (v === 0 ? "0" : v >= 10 ? grouped(v) : v.toFixed(1)), area: true });
  chart($("chart-hits"), [{ cls: "s2", pts: deltas(list, (a, b) => {
    const dl = b.lookups - a.lookups, dh = b.hits - a.hits;
    return dl > 0 && dh >= 0 ? (100 * dh) / dl : null;
  }) }], t0, t1, { fmt: (v) => v.toFixed(0) + "%", max: 100, area: true });
  chart($("chart-bytes"), [
    { cls: "s1", pts: deltas(list, d("to_clients")) },
    { cls: "s3", pts: deltas(list, d("from_upstream")) },
  ], t0, t1, { fmt: (v) => bytes(v), nice: niceBytes, area: true });
}

// === cards ===

function renderHeader(s) {
  setText("version", "v" + (s.version || "?"));
  setText("uptime", duration(num(s.uptime_seconds)));
  const c = s.config || {};
  setText("config-generation", int(num(c.generation)));
  setText("reloads-ok", int(num(c.reloads_ok)));
  setText("reloads-failed", int(num(c.reloads_failed)));
  setText("log-dropped", int(num(s.access_log && s.access_log.dropped)));
  const live = $("live");
  live.dataset.state = "ok";
  live.textContent = "live · " + clock(num(s.now));
}

function renderKpis(s) {
  const req = s.requests || {}, cache = s.cache || {}, b = s.bytes || {}, conn = s.connections || {};
  setText("requests-total", int(num(req.total)));
  const base = previous && num(s.now) > num(previous.now) ? previous : null;
  let r = NaN;
  if (base) {
    r = (num(req.total) - num(base.requests && base.requests.total)) / (num(s.now) - num(base.now));
  } else {
    const list = samples(s);
    if (list.length >= 2) {
      const a = list[list.length - 2], z = list[list.length - 1];
      r = (z.requests - a.requests) / (z.t - a.t);
    }
  }
  setText("request-rate", Number.isFinite(r) && r >= 0 ? rate(r) : "n/a");
  setText("hit-ratio", percent(num(cache.hits), num(cache.lookups)));
  setText("cache-hits", int(num(cache.hits)));
  setText("cache-lookups", int(num(cache.lookups)));
  setText("bytes-saved", bytes(num(b.saved)));
  setText("bytes-saved-ratio", percent(num(b.saved), num(b.to_clients)));
  setText("bytes-to-clients", bytes(num(b.to_clients)));
  setText("clients-open", int(num(conn.clients_open)));
  setText("upstream-open", int(num(conn.upstream_open)));
}

function renderResults(s) {
  const results = (s.cache && s.cache.results) || {};
  const known = new Set(RESULTS.map((r) => r[0]));
  const rows = RESULTS.concat(Object.keys(results).filter((k) => !known.has(k))
    .map((k) => [k, k.replace(/_/g, " "), "bgx"]));
  const total = rows.reduce((sum, [k]) => sum + num(results[k]), 0);
  setText("results-total", grouped(total) + " results");
  const bar = [], legend = [];
  for (const [key, label, colour] of rows) {
    const n = num(results[key]);
    if (n > 0) {
      const seg = el("span", { class: colour, title: label + ": " + grouped(n) + " (" + percent(n, total) + ")" });
      seg.style.width = ((100 * n) / total).toFixed(3) + "%";
      bar.push(seg);
    }
    legend.push(el("li", { class: n > 0 ? "" : "zero", title: percent(n, total) },
      el("span", { class: "sw " + colour }), el("span", { class: "label", text: label }),
      el("span", { class: "num", text: grouped(n) })));
  }
  $("results-bar").replaceChildren(...bar);
  $("results").replaceChildren(...legend);
}

function tierBlock(name, t) {
  if (!t) {
    return el("div", { class: "tier" }, el("div", { class: "tier-head" }, el("b", { text: name }),
      el("span", { class: "num", text: "off" })),
    el("div", { class: "meter" }), el("div", { class: "tier-foot muted", text: "not configured" }));
  }
  const used = num(t.bytes), max = num(t.max_bytes);
  const share = max > 0 ? Math.min(1, used / max) : 0;
  const fill = el("span");
  fill.style.width = (share * 100).toFixed(2) + "%";
  return el("div", { class: "tier" },
    el("div", { class: "tier-head" }, el("b", { text: name }),
      el("span", { class: "num", text: bytes(used) + " / " + bytes(max) + " · " + percent(used, max) })),
    el("div", { class: "meter" + (share > 0.9 ? " warn" : "") }, fill),
    el("div", { class: "tier-foot" },
      el("span", { text: grouped(num(t.objects)) + " objects · " + grouped(num(t.evictions)) + " evictions" }),
      el("span", { class: "path mono", text: t.path || "" })));
}

function renderTiers(s) {
  const tiers = (s.cache && s.cache.tiers) || {};
  $("tiers").replaceChildren(tierBlock("Memory", tiers.memory), tierBlock("Disk", tiers.disk));
}

function renderResponses(s) {
  const req = s.requests || {};
  const classes = req.by_status_class || {};
  const total = Object.values(classes).reduce((a, b) => a + num(b), 0);
  $("status-classes").replaceChildren(...Object.keys(classes).sort().map((k) => {
    const n = num(classes[k]);
    return el("li", { class: n > 0 ? "" : "zero", title: percent(n, total) },
      el("span", { class: "sw " + (STATUS_COLOURS[k] || "bgx") }), el("span", { class: "label", text: k }),
      el("span", { class: "num", text: grouped(n) }));
  }));
  const extra = [];
  for (const group of [req.by_mode || {}, req.by_method_class || {}]) {
    for (const k of Object.keys(group)) {
      const n = num(group[k]);
      extra.push(el("li", { class: n > 0 ? "" : "zero" }, el("span", { class: "label", text: k }),
        el("span", { class: "num", text: grouped(n) })));
    }
  }
  $("modes").replaceChildren(...extra);
}

function badge(up) {
  return el("span", { class: "badge " + (up ? "up" : "down"), text: up ? "UP" : "DOWN" });
}

function renderUpstreams(s) {
  const list = Array.isArray(s.upstreams) ? s.upstreams : [];
  const up = list.filter((u) => u && u.up).length;
  setText("upstreams-summary", list.length ? up + " of " + list.length + " up" : "");
  $("upstreams").replaceChildren(...(list.length ? list.map((u) => el("tr", {},
    el("td", { text: String(u.group || "") }),
    el("td", { class: "mono", text: String(u.server || "") }),
    el("td", {}, badge(!!u.up)),
    el("td", { class: "n", text: grouped(num(u.requests)) }),
    el("td", { class: "n" + (num(u.failures) > 0 ? " fail" : ""), text: grouped(num(u.failures)) }),
    el("td", { class: "n", text: num(u.requests) > num(u.failures) && Number.isFinite(u.latency_ms_avg)
      ? u.latency_ms_avg.toFixed(1) + " ms" : "n/a" }))) : [emptyRow(6, "no upstream groups")]));
}

function renderPeers(s) {
  const list = Array.isArray(s.peers) ? s.peers : [];
  const up = list.filter((p) => p && p.up).length;
  setText("peers-summary", list.length ? up + " of " + list.length + " up" : "");
  $("peers").replaceChildren(...(list.length ? list.map((p) => el("tr", {},
    el("td", { text: String(p.name || "") }),
    el("td", { text: String(p.kind || "") }),
    el("td", {}, badge(!!p.up)),
    el("td", { class: "n", text: grouped(num(p.requests)) }),
    el("td", { class: "n" + (num(p.failures) > 0 ? " fail" : ""), text: grouped(num(p.failures)) })))
    : [emptyRow(5, "no cache_peer configured")]));
}

function renderTop(s) {
  const list = Array.isArray(s.top_urls) ? s.top_urls : [];
  const max = list.reduce((m, u) => Math.max(m, num(u.bytes)), 0);
  $("top-urls").replaceChildren(...(list.length ? list.map((u) => {
    const bar = el("div", { class: "bar" });
    bar.style.width = (max > 0 ? (100 * num(u.bytes)) / max : 0).toFixed(1) + "%";
    return el("tr", {},
      el("td", { class: "url mono", title: String(u.url || "") }, el("div", { text: String(u.url || "") }), bar),
      el("td", { class: "n", text: bytes(num(u.bytes)) }),
      el("td", { class: "n", text: grouped(num(u.requests)) }));
  }) : [emptyRow(3, "no traffic yet")]));
}

function renderSites(s) {
  const list = (s.bytes && Array.isArray(s.bytes.by_site)) ? s.bytes.by_site.slice() : [];
  list.sort((a, b) => num(b.to_clients) - num(a.to_clients));
  $("sites").replaceChildren(...(list.length ? list.map((site) => {
    const to = num(site.to_clients), from = num(site.from_upstream);
    return el("tr", {},
      el("td", { text: String(site.site || "") }),
      el("td", { class: "n", text: bytes(to) }),
      el("td", { class: "n", text: bytes(from) }),
      el("td", { class: "n", text: percent(Math.max(0, to - from), to) }));
  }) : [emptyRow(4, "no reverse-mode sites")]));
}

function render(s) {
  renderHeader(s);
  renderKpis(s);
  renderCharts(s);
  renderResults(s);
  renderTiers(s);
  renderResponses(s);
  renderUpstreams(s);
  renderPeers(s);
  renderTop(s);
  renderSites(s);
}

// === polling ===

async function poll() {
  try {
    const response = await fetch("/status", { cache: "no-store", headers: { accept: "application/json" } });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const status = await response.json();
    previous = last;
    last = status;
    render(status);
  } catch (e) {
    const live = $("live");
    live.dataset.state = "error";
    live.textContent = "offline (" + (e && e.message ? e.message : "error") + "), retrying";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

let resizeQueued = false;
window.addEventListener("resize", () => {
  if (resizeQueued || !last) return;
  resizeQueued = true;
  requestAnimationFrame(() => { resizeQueued = false; renderCharts(last); });
});

poll();
