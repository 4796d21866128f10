// The sensormesh dashboard: one Server-Sent Events stream (/events) carries the controller's
// view of the running pipeline; this script writes it into the page and the Plotly charts.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

function num(v, unit) {
  if (v === null || v === undefined) return "-";
  const a = Math.abs(v);
  unit = unit || "";
  for (const [scale, p] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= scale) return (v / scale).toPrecision(4).replace(/\.?0+$/, "") + " " + p + unit;
  }
  const s = a >= 100 ? v.toFixed(1) : v.toPrecision(4);
  return (s.indexOf(".") >= 0 ? s.replace(/\.?0+$/, "") : s) + (unit ? " " + unit : "");
}
function secs(v) {
  if (v === null || v === undefined) return "-";
  const a = Math.abs(v);
  if (a < 1e-3) return (v * 1e6).toFixed(0) + " µs";
  if (a < 1) return (v * 1e3).toPrecision(3) + " ms";
  return v.toPrecision(3) + " s";
}
const pct = (v) => (v === null || v === undefined) ? "-" : (100 * v).toFixed(1) + "%";

let placementKey = null;
let started = null;

function loadGraph() {
  fetch("/graph.svg").then((r) => r.text()).then((svg) => { $("graph").innerHTML = svg; updateGraphLabels(lastView); });
}

function updateGraphLabels(view) {
  if (!view) return;
  const byEdge = {};
  for (const p of view.pipes) if (p.dir !== "in" || !byEdge[p.edge]) byEdge[p.edge] = p;
  for (const g of document.querySelectorAll("#graph g.edge")) {
    if (!g.id || !g.id.startsWith("pipe:")) continue;
    const p = byEdge[g.id.slice(5)];
    const t = g.querySelector("text");
    if (!p || !t) continue;
    t.classList.add("live-label");
    t.textContent = num(p.values_per_s) + "/s" + (p.delay_s !== null ? " · " + secs(p.delay_s) : "");
  }
}

function row(cells) {
  return "<tr>" + cells.map(([cls, text]) => `<td class="${cls}">${esc(text)}</td>`).join("") + "</tr>";
}

function memory(d) {
  if (d.heap_free !== null && d.heap_free !== undefined)
    return `heap <b>${num(d.heap_free, "B")}</b> free` + (d.heap_largest != null ? `, largest <b>${num(d.heap_largest, "B")}</b>` : "");
  if (d.rss !== null && d.rss !== undefined) return `RSS <b>${num(d.rss, "B")}</b>`;
  return "memory -";
}

function renderDevices(view) {
  const pl = view.info.placement || {};
  const names = Array.from(new Set([...(pl.devices || []), ...Object.keys(view.devices)])).sort();
  const stepsOf = {};
  for (const [sid, d] of Object.entries(pl.device_of || {})) (stepsOf[d] = stepsOf[d] || []).push(sid);
  const isPipe = (sid) => sid.startsWith("out:") || sid.startsWith("in:");   // pipe ends, shown as pipes
  for (const [sid, s] of Object.entries(view.steps))
    if (!isPipe(sid) && (!pl.device_of || !pl.device_of[sid])) (stepsOf[s.device] = stepsOf[s.device] || []).push(sid);
  $("devices").innerHTML = names.map((n) => {
    const d = view.devices[n] || {};
    const interp = d.interp || (pl.interp || {})[n] || "";
    const load = d.busy !== null && d.busy !== undefined ? d.busy : d.cpu;
    const off = d.offset !== null && d.offset !== undefined ? `clock offset <b>${secs(d.offset)}</b> ± ${secs(d.offset_bound)}` : "clock offset -";
    const age = d.t ? Math.max(0, view.now - d.t) : null;
    return `<div class="device" data-device="${esc(n)}"><span class="name">${esc(n)}</span><span class="badge ${esc(interp)}">${esc(interp)}</span>
      <div class="bar"><div style="width:${load ? Math.min(100, 100 * load).toFixed(1) : 0}%"></div></div>
      <div class="line">load <b>${pct(load)}</b>${d.resets ? ` · ${d.resets} counter reset(s)` : ""}</div>
      <div class="line">${memory(d)}</div><div class="line">${off}</div>
      <div class="line">steps <b>${esc((stepsOf[n] || []).sort().join(", ") || "relays only")}</b></div>
      ${d.down ? `<div class="line down">${esc(n)} is ${esc(d.down)}: no current figures</div>` : ""}
      <div class="line">${age === null ? "no metrics yet" : "updated " + age.toFixed(1) + " s ago"}</div></div>`;
  }).join("");
}

function renderTables(view) {
  $("pipes-table").querySelector("tbody").innerHTML = view.pipes.map((p) => row([
    ["name", p.edge], ["name", p.device], ["", p.dir === "in" ? "in ←" : "out →"], ["rate", num(p.values_per_s)],
    ["", num(p.bytes_per_s, "B")], ["", secs(p.delay_s)], ["", p.queue === null ? "-" : p.queue], ["", p.reconnects || 0]])).join("");
  const steps = Object.entries(view.steps).sort((a, b) => (a[1].device + a[0]).localeCompare(b[1].device + b[0]));
  $("steps-table").querySelector("tbody").innerHTML = steps.map(([sid, s]) => row([
    ["name", sid], ["", s.device], ["rate", num(s.in_per_s)], ["rate", num(s.out_per_s)], ["", secs(s.time_per_value_s)],
    ["", s.in === null ? "-" : s.in], ["", s.out === null ? "-" : s.out]])).join("");
  $("latency-table").querySelector("tbody").innerHTML = Object.entries(view.latency).sort().map(([k, l]) => row([
    ["name", k], ["", secs(l.p50)], ["", secs(l.p99)], ["", secs(l.bound)], ["", l.n]])).join("")
    || `<tr><td colspan="5" class="name" style="font-weight:400;color:#64748b">no latency samples in the last minute</td></tr>`;
  $("sinks-table").querySelector("tbody").innerHTML = Object.entries(view.sinks).sort().map(([k, s]) => row([
    ["name", k], ["value", JSON.stringify(s.value) + (s.unit ? " " + esc(s.unit) : "")],
    ["", (Math.max(0, view.now - s.t)).toFixed(1) + " s"]])).join("")
    || `<tr><td colspan="3" class="name" style="font-weight:400;color:#64748b">no callback-sink values yet</td></tr>`;
  $("events").innerHTML = view.events.slice().reverse().map(([t, text]) =>
    `<li>${new Date(t * 1000).toLocaleTimeString()} ${esc(text)}</li>`).join("") || "<li>none</li>";
}

const LAYOUT = { margin: { l: 50, r: 10, t: 8, b: 30 }, font: { family: "DejaVu Sans, sans-serif", size: 11 },
  legend: { orientation: "h", y: -0.2 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fbfcfe",
  xaxis: { type: "date", gridcolor: "#eef2f7" } };
const CONFIG = { displayModeBar: false, responsive: true };

const EMPTY = {
  "load-chart": "no load figures yet: devices report their loop's busy time with their metrics",
  "pipes-chart": "no pipe rates yet (two polls are needed for a rate)",
  "latency-chart": "no latency samples yet: sinks report them once values carry their read time",
};

function chart(id, traces, ytitle, yfmt) {
  if (typeof Plotly === "undefined") return;
  if (!traces.some((t) => t.x.length)) {
    if (!$(id).querySelector(".empty")) { Plotly.purge($(id)); $(id).innerHTML = `<div class="empty">${esc(EMPTY[id])}</div>`; }
    return;
  }
  const placeholder = $(id).querySelector(".empty");
  if (placeholder) placeholder.remove();
  const layout = Object.assign({}, LAYOUT, { yaxis: { title: { text: ytitle }, gridcolor: "#eef2f7", rangemode: "tozero", tickformat: yfmt } });
  Plotly.react($(id), traces, layout, CONFIG);
}
const ts = (pts) => pts.map((p) => new Date(p[0] * 1000));

function renderCharts(view) {
  const h = view.history;
  chart("load-chart", Object.entries(h.load).map(([n, pts]) => ({ name: n, x: ts(pts), y: pts.map((p) => p[1]), mode: "lines", line: { width: 2 } })), "load", ".1%");
  chart("pipes-chart", Object.entries(h.pipes).map(([e, pts]) => ({ name: e, x: ts(pts), y: pts.map((p) => p[1]), mode: "lines", line: { width: 2, shape: "hv" } })), "values/s");
  chart("latency-chart", Object.entries(h.latency).map(([s, pts]) => ({ name: s, x: ts(pts), y: pts.map((p) => p[1] * 1e3), mode: "markers", marker: { size: 4 },
    error_y: { type: "data", array: pts.map((p) => (p[2] || 0) * 1e3), visible: true, thickness: 0.8, width: 0 } })), "ms");
}

let lastView = null;
function update(view) {
  lastView = view;
  const info = view.info || {};
  $("pipeline").textContent = info.pipeline || "";
  $("strategy").textContent = info.placement && info.placement.strategy ? "placement: " + info.placement.strategy : "";
  if (info.started) $("uptime").textContent = "running " + Math.round(view.now - info.started) + " s";
  $("file").textContent = info.file || "none (in memory only)";
  const key = JSON.stringify([info.placement, Object.keys(view.steps).sort()]);
  if (key !== placementKey) { placementKey = key; loadGraph(); }
  renderDevices(view);
  renderTables(view);
  renderCharts(view);
  updateGraphLabels(view);
  $("live").textContent = "live · " + new Date(view.now * 1000).toLocaleTimeString();
}

function connect() {
  const es = new EventSource("/events");
  es.onopen = () => { $("live").className = "live on"; };
  es.onmessage = (ev) => { $("live").className = "live on"; update(JSON.parse(ev.data)); };
  es.onerror = () => { $("live").className = "live off"; $("live").textContent = "disconnected (retrying)"; };
}
fetch("/api/view").then((r) => r.json()).then(update).catch(() => {});
connect();
