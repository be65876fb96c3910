// The explorer: plain JavaScript over the query API; plots with Plotly (served from the plotly Python package,
// /vendor/plotly.min.js). One file for every page: body[data-page] picks the page's init function.
"use strict";

const BAND_COLOURS = {
  g: "#2ca02c", r: "#d62728", i: "#ff7f0e", u: "#6a3d9a", z: "#8c564b", y: "#333333", c: "#17becf", o: "#e6550d",
};
const FID_BANDS = { 1: "g", 2: "r", 3: "i", 4: "u", 5: "g", 6: "r", 7: "i", 8: "z", 9: "y", 10: "c", 11: "o" };

async function api(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else url.searchParams.set(k, v);
  }
  const res = await fetch(url);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || `${res.status} ${res.statusText}`);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits ?? 4);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// Six significant digits, exponent for the very small and very large (features span 1e-8 to 1e5).
function significant(v) {
  if (v === null || v === undefined) return "";
  if (v === 0 || Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e6 ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

// "download CSV · VOTable": the same question as a file (format=csv / votable) for TOPCAT, pandas or astropy.
function downloadLinks(id, path, params) {
  const box = document.getElementById(id);
  if (!box) return;
  const href = (format) => {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries({ ...(params || {}), format })) {
      if (v === null || v === undefined || v === "" || v === false) continue;
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
      else url.searchParams.set(k, v);
    }
    return url.pathname + url.search;
  };
  box.replaceChildren("download ", el("a", { href: href("csv"), download: "", "data-format": "csv" }, "CSV"), " · ",
    el("a", { href: href("votable"), download: "", "data-format": "votable" }, "VOTable"));
}

function showError(where, err) {
  const box = document.getElementById(where);
  if (box) box.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
}

// A table of rows; columns are [key, title, render?]; clicking a sortable header re-sorts (rankable lists).
function table(rows, columns, opts) {
  opts = opts || {};
  const state = { key: opts.sortKey || null, desc: opts.sortDesc ?? true };
  const wrap = el("div", { class: "scroll" });
  const draw = () => {
    let data = rows.slice();
    if (state.key) {
      data.sort((a, b) => {
        const x = a[state.key], y = b[state.key];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (state.desc ? -1 : 1);
      });
    }
    const head = el("tr", {}, columns.map(([key, title]) => {
      const arrow = state.key === key ? (state.desc ? " ▼" : " ▲") : "";
      return el("th", opts.sortable ? { class: "sortable", "data-key": key, onclick: () => {
        state.desc = state.key === key ? !state.desc : true; state.key = key; draw();
      } } : {}, title + arrow);
    }));
    const body = data.map((r) => el("tr", {}, columns.map(([key, , render]) => {
      const v = render ? render(r) : fmt(r[key]);
      return el("td", { class: typeof r[key] === "number" && !render ? "num" : "" }, v);
    })));
    wrap.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
  };
  draw();
  return wrap;
}

function objectLink(oid) {
  return el("a", { href: `/object/${encodeURIComponent(oid)}`, class: "oid" }, oid);
}

function stampUrl(candid, kind, survey, format) {
  const q = new URLSearchParams();
  if (survey) q.set("survey", survey);
  if (format) q.set("format", format);
  const s = q.toString();
  return `/alerts/${candid}/stamps/${kind}${s ? "?" + s : ""}`;
}

function nav(active) {
  const links = [["/", "Search", "index"], ["/sn", "SN candidates", "sn"], ["/night", "Night dashboard", "night"],
    ["/xmatch", "Cross-match", "crossmatch"], ["/docs", "API docs", "docs"]];
  document.getElementById("nav").replaceChildren(...links.map(([href, text, key]) =>
    el("a", { href, class: key === active ? "active" : "" }, text)));
}

async function nightOptions(select, wanted) {
  const nights = await api("/nights");
  select.replaceChildren(...nights.map((n) =>
    el("option", { value: n.night }, `${n.night} (${n.alerts} alerts)`)));
  if (wanted) select.value = String(wanted);
  return nights;
}

// ------------------------------------------------------------------------------------------------ search page
async function initSearch() {
  nav("index");
  const form = document.getElementById("search");
  const params = new URLSearchParams(window.location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  let page = Number(params.get("page") || 1);
  const classifiers = await api("/classifiers").catch(() => []);
  const clfSelect = form.elements.classifier;
  const classSelect = form.elements["class"];
  // one entry per classifier (its latest version: a query without a version answers with each object's latest)
  const latestOf = new Map();
  for (const c of classifiers) {
    const seen = latestOf.get(c.classifier_name);
    if (!seen || versionCompare(seen, c.classifier_version) < 0) latestOf.set(c.classifier_name, c.classifier_version);
  }
  clfSelect.replaceChildren(el("option", { value: "" }, "any classifier"),
    ...[...latestOf].map(([name, version]) => el("option", { value: name }, `${name} ${version}`)));
  const fillClasses = () => {
    const names = new Set();
    classifiers.filter((c) => !clfSelect.value || c.classifier_name === clfSelect.value)
      .forEach((c) => c.classes.forEach((n) => names.add(n)));
    const keep = classSelect.value;
    classSelect.replaceChildren(el("option", { value: "" }, "any class"),
      ...[...names].map((n) => el("option", { value: n }, n)));
    classSelect.value = names.has(keep) ? keep : "";
  };
  clfSelect.value = params.get("classifier") || "";
  fillClasses();
  classSelect.value = params.get("class") || "";
  clfSelect.addEventListener("change", fillClasses);

  const run = async () => {
    const f = form.elements;
    const oid = f.oid.value.trim();
    if (oid) { window.location.href = `/object/${encodeURIComponent(oid)}`; return; }
    const q = {
      ra: f.ra.value, dec: f.dec.value, radius: f.ra.value || f.dec.value ? (f.radius.value || 5) : "",
      classifier: f.classifier.value, class: f["class"].value, probability: f.probability.value,
      survey: f.survey.value, ndet: f.ndet.value, page, page_size: 25, count: true,
    };
    const status = document.getElementById("status");
    status.textContent = "searching…";
    try {
      const res = await api("/objects", q);
      const hasClass = res.items.some((r) => r.class_name !== undefined);
      const hasDist = res.items.some((r) => r.dist_arcsec !== undefined);
      const cols = [["oid", "object", (r) => objectLink(r.oid)], ["survey", "survey"], ["ndet", "ndet"],
        ["firstmjd", "first MJD", (r) => fmt(r.firstmjd, 5)], ["lastmjd", "last MJD", (r) => fmt(r.lastmjd, 5)],
        ["meanra", "RA", (r) => fmt(r.meanra, 6)], ["meandec", "Dec", (r) => fmt(r.meandec, 6)]];
      if (hasClass) cols.push(["class_name", "class"], ["probability", "probability", (r) => fmt(r.probability, 3)],
        ["classifier_name", "classifier"]);
      if (hasDist) cols.push(["dist_arcsec", "distance (\")", (r) => fmt(r.dist_arcsec, 3)]);
      document.getElementById("results").replaceChildren(table(res.items, cols, { sortable: true }));
      downloadLinks("dl-objects", "/objects", { ...q, page: 1, page_size: 1000, count: false }); // the first 1000
      status.textContent = `${res.total ?? res.items.length} objects, page ${res.page}`;
      document.getElementById("prev").disabled = !res.prev;
      document.getElementById("next").disabled = !res.has_next;
    } catch (err) {
      status.textContent = "";
      showError("results", err);
    }
    document.body.dataset.ready = "yes";
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; run(); });
  document.getElementById("prev").addEventListener("click", () => { page = Math.max(1, page - 1); run(); });
  document.getElementById("next").addEventListener("click", () => { page += 1; run(); });
  await run();
}

// ------------------------------------------------------------------------------------------------ object page
function bandOf(row) { return row.band || FID_BANDS[row.fid] || String(row.fid); }

// Plotly traces of a light curve: one detection trace per (survey, band), non-detection limits as open
// triangles. ``mode``: "raw" (difference magnitude, every detection), "corrected" (apparent magnitude where the
// correction applies) or "flux" (difference flux in nJy, with forced photometry).
function lightcurveTraces(lc, mode, showLimits) {
  const groups = new Map();
  const key = (r) => `${r.survey}:${bandOf(r)}`;
  for (const r of lc.detections) {
    let y, e;
    if (mode === "corrected") { y = r.magpsf_corr; e = r.sigmapsf_corr_ext ?? r.sigmapsf_corr; if (!r.corrected || y === null || y >= 100) continue; }
    else if (mode === "flux") { y = r.flux; e = r.flux_err; }
    else { y = r.magpsf; e = r.sigmapsf; }
    if (y === null || y === undefined) continue;
    if (!groups.has(key(r))) groups.set(key(r), { x: [], y: [], e: [], text: [], candid: [], survey: r.survey, band: bandOf(r) });
    const g = groups.get(key(r));
    g.x.push(r.mjd); g.y.push(y); g.e.push(e ?? 0); g.candid.push(r.has_stamp ? r.candid : null);
    g.text.push(`${r.oid} ${bandOf(r)} candid ${r.candid}${r.dubious ? " (dubious)" : ""}`);
  }
  const traces = [];
  for (const g of groups.values()) {
    traces.push({
      type: "scatter", mode: "markers", name: `${g.band} (${g.survey})`, x: g.x, y: g.y, text: g.text,
      customdata: g.candid, meta: { kind: "detection", survey: g.survey },
      error_y: { type: "data", array: g.e, visible: true, thickness: 1 },
      marker: { color: BAND_COLOURS[g.band] || "#555", size: 7 }, hovertemplate: "%{text}<br>MJD %{x:.5f}<br>%{y:.3f}<extra></extra>",
    });
  }
  if (mode === "flux") {
    const fp = new Map();
    for (const r of lc.forced_photometry) {
      let f = r.psfFlux, e = r.psfFluxErr;
      if ((f === undefined || f === null) && r.forcediffimflux !== undefined && r.forcediffimflux !== null && r.magzpsci) {
        const k = Math.pow(10, -0.4 * (r.magzpsci - 31.4)); f = r.forcediffimflux * k; e = (r.forcediffimfluxunc ?? 0) * k;
      }
      if (f === undefined || f === null || f <= -99999) continue;
      const b = bandOf(r);
      if (!fp.has(b)) fp.set(b, { x: [], y: [], e: [] });
      const g = fp.get(b); g.x.push(r.mjd); g.y.push(f); g.e.push(e ?? 0);
    }
    for (const [b, g] of fp) traces.push({
      type: "scatter", mode: "markers", name: `${b} forced`, x: g.x, y: g.y, meta: { kind: "forced" },
      error_y: { type: "data", array: g.e, visible: true, thickness: 0.5 },
      marker: { color: BAND_COLOURS[b] || "#555", size: 4, symbol: "square-open", opacity: 0.6 },
    });
  } else if (showLimits) {
    const nd = new Map();
    for (const r of lc.non_detections) {
      if (r.diffmaglim === null || r.diffmaglim === undefined) continue;
      const b = bandOf(r);
      if (!nd.has(b)) nd.set(b, { x: [], y: [] });
      nd.get(b).x.push(r.mjd); nd.get(b).y.push(r.diffmaglim);
    }
    for (const [b, g] of nd) traces.push({
      type: "scatter", mode: "markers", name: `${b} limit`, x: g.x, y: g.y, meta: { kind: "limit" },
      marker: { color: BAND_COLOURS[b] || "#555", size: 7, symbol: "triangle-down-open", opacity: 0.55 },
      hovertemplate: "limit %{y:.2f}<br>MJD %{x:.5f}<extra></extra>",
    });
  }
  return traces;
}

// Two cycles of phase: each point at phase and phase + 1 (limits are left out: a fold of upper limits says little).
function foldTraces(traces, period) {
  const t0 = Math.min(...traces.filter((t) => t.meta.kind !== "limit").flatMap((t) => t.x));
  const two = (a) => (a ? a.concat(a) : a);
  return traces.filter((t) => t.meta.kind !== "limit").map((t) => {
    const phase = t.x.map((x) => (((x - t0) / period) % 1 + 1) % 1);
    const folded = { ...t, x: phase.concat(phase.map((p) => p + 1)), y: two(t.y), text: two(t.text), customdata: two(t.customdata) };
    if (t.error_y) folded.error_y = { ...t.error_y, array: two(t.error_y.array) };
    if (t.hovertemplate) folded.hovertemplate = t.hovertemplate.replace("MJD %{x:.5f}", "phase %{x:.3f}");
    return folded;
  });
}

function plotLightcurve(div, lc, mode, showLimits, period) {
  let traces = lightcurveTraces(lc, mode, showLimits);
  if (period) traces = foldTraces(traces, period);
  const yTitle = mode === "flux" ? "difference flux (nJy)" : mode === "corrected" ? "apparent magnitude" : "difference magnitude";
  const xTitle = period ? `phase (P = ${fmt(period, 6)} d, two cycles)` : "MJD";
  const layout = {
    margin: { l: 60, r: 10, t: 10, b: 45 }, xaxis: { title: { text: xTitle }, exponentformat: "none", separatethousands: false },
    yaxis: { title: { text: yTitle }, autorange: mode === "flux" ? true : "reversed" },
    legend: { orientation: "h" }, hovermode: "closest",
  };
  const points = traces.filter((t) => t.meta.kind === "detection").reduce((n, t) => n + t.x.length, 0);
  div.dataset.points = String(points);
  div.dataset.mode = mode;
  div.dataset.folded = period ? String(period) : "";
  return Plotly.react(div, traces, layout, { displaylogo: false, responsive: true });
}

function showStamps(container, alert) {
  if (!alert) { container.replaceChildren(el("p", { class: "muted" }, "no alert with stamps")); return; }
  const kinds = ["science", "template", "difference"];
  container.replaceChildren(
    el("p", {}, `alert ${alert.candid} · ${alert.survey} · MJD ${fmt(alert.mjd, 5)} · `,
      el("a", { href: `/alerts/${alert.candid}/raw?survey=${alert.survey}`, download: `${alert.candid}.avro` }, "raw packet (Avro)")),
    el("div", { class: "stamps" }, kinds.map((k) => el("figure", {},
      el("img", { src: stampUrl(alert.candid, k, alert.survey), alt: `${k} stamp of ${alert.candid}`, "data-kind": k,
        onerror: (ev) => stampMissing(ev.target) }),
      el("figcaption", {}, `${k} · `, el("a", { href: stampUrl(alert.candid, k, alert.survey, "fits") }, "FITS"))))));
}

// A stamp that did not load: the API's reason (e.g. 410, the packet removed by the archive's retention) in place
// of the three images.
async function stampMissing(img) {
  const box = img.closest(".stamps");
  if (!box || box.dataset.missing) return;
  box.dataset.missing = "yes";
  const res = await fetch(img.src).catch(() => null);
  const body = res ? await res.json().catch(() => ({})) : {};
  box.replaceWith(el("p", { class: "muted stamp-missing" }, body.detail || "stamps not available"));
}

// Classifier versions in the registry's order: numeric parts as numbers (1.10.0 after 1.9.0).
function versionCompare(a, b) {
  const pa = String(a).split(/[.\-+_]/), pb = String(b).split(/[.\-+_]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i += 1) {
    const x = pa[i] ?? "", y = pb[i] ?? "";
    const nx = /^\d+$/.test(x), ny = /^\d+$/.test(y);
    if (nx && ny && Number(x) !== Number(y)) return Number(x) - Number(y);
    if (nx !== ny) return nx ? -1 : 1;
    if (!nx && x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

// One plot per classifier, its latest version (what queries and the published tables answer with); the
// versions before it (nights run with other models, `broker reclassify`) as a line each: top class, probability.
function probabilityPlots(container, rows) {
  const byClf = new Map();
  for (const r of rows) {
    if (!byClf.has(r.classifier_name)) byClf.set(r.classifier_name, new Map());
    const versions = byClf.get(r.classifier_name);
    if (!versions.has(r.classifier_version)) versions.set(r.classifier_version, []);
    versions.get(r.classifier_version).push(r);
  }
  if (!byClf.size) { container.replaceChildren(el("p", { class: "muted" }, "not classified (yet)")); return; }
  container.replaceChildren();
  for (const [name, versions] of byClf) {
    const order = [...versions.keys()].sort(versionCompare);
    const latest = order[order.length - 1];
    const rs = versions.get(latest).sort((a, b) => a.probability - b.probability);
    const div = el("div", { class: "plot probs", style: `height:${Math.max(140, 22 * rs.length + 50)}px` });
    container.append(el("h2", {}, `${name} ${latest}`), div);
    Plotly.newPlot(div, [{
      type: "bar", orientation: "h", x: rs.map((r) => r.probability), y: rs.map((r) => r.class_name),
      marker: { color: rs.map((r) => (r.ranking === 1 ? "#2c5cc5" : "#a9b7da")) },
      hovertemplate: "%{y}: %{x:.3f}<extra></extra>",
    }], { margin: { l: 110, r: 10, t: 5, b: 30 }, xaxis: { range: [0, 1] } }, { displaylogo: false, responsive: true });
    const earlier = order.slice(0, -1).reverse();
    if (earlier.length) {
      container.append(el("details", { class: "earlier", "data-classifier": name },
        el("summary", {}, `earlier versions of ${name} (${earlier.length})`),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "version"), el("th", {}, "most probable class"),
          el("th", {}, "probability"))),
        el("tbody", {}, earlier.map((v) => {
          const top = versions.get(v).find((r) => r.ranking === 1) || {};
          return el("tr", {}, el("td", {}, v), el("td", {}, top.class_name ?? ""), el("td", {}, fmt(top.probability, 3)));
        })))));
    }
  }
}

async function initObject() {
  nav("");
  const oid = decodeURIComponent(window.location.pathname.split("/").pop());
  document.title = `${oid} — alert broker`;
  document.getElementById("oid").textContent = oid;
  let obj;
  try {
    obj = await api(`/objects/${encodeURIComponent(oid)}`);
  } catch (err) { showError("summary", err); document.body.dataset.ready = "error"; return; }
  const kv = [["survey", obj.survey], ["cross-survey id", obj.association.xid], ["RA, Dec (deg)", `${fmt(obj.meanra, 6)}, ${fmt(obj.meandec, 6)}`],
    ["detections", obj.ndet], ["first / last MJD", `${fmt(obj.firstmjd, 5)} / ${fmt(obj.lastmjd, 5)}`],
    ["stellar", fmt(obj.stellar)], ["corrected", fmt(obj.corrected)], ["last night", obj.night]];
  document.getElementById("summary").replaceChildren(el("dl", { class: "kv" }, kv.map(([k, v]) => [el("dt", {}, k), el("dd", {}, fmt(v))])));

  const lcDiv = document.getElementById("lc");
  const stampBox = document.getElementById("stamps");
  const modeInputs = document.querySelectorAll("input[name=mode]");
  const limits = document.getElementById("limits");
  const allSurveys = document.getElementById("allsurveys");
  let lc;
  const loadLc = async () => {
    lc = await api(`/objects/${encodeURIComponent(oid)}/lightcurve`, { all_surveys: allSurveys.checked });
    document.getElementById("lcinfo").textContent =
      `${lc.detections.length} detections, ${lc.non_detections.length} non-detections, ${lc.forced_photometry.length} forced-photometry points (${lc.source})`;
    lcDiv.dataset.detections = String(lc.detections.length);
    downloadLinks("dl-lc", `/objects/${encodeURIComponent(oid)}/lightcurve`, { all_surveys: allSurveys.checked });
  };
  const fold = document.getElementById("fold");
  let period = null;
  const redraw = () => plotLightcurve(lcDiv, lc, document.querySelector("input[name=mode]:checked").value, limits.checked,
    fold.checked ? period : null);
  try { await loadLc(); await redraw(); } catch (err) { showError("lcbox", err); }
  modeInputs.forEach((i) => i.addEventListener("change", redraw));
  limits.addEventListener("change", redraw);
  fold.addEventListener("change", redraw);
  try {
    period = await featureCard(oid);
    if (period) {
      fold.disabled = false;
      document.getElementById("foldlabel").textContent = `fold at the period (${fmt(period, 6)} d)`;
    }
  } catch (err) { showError("features", err); }
  allSurveys.addEventListener("change", async () => { await loadLc(); await redraw(); });
  lcDiv.on && lcDiv.on("plotly_click", (ev) => {
    const p = ev.points && ev.points[0];
    const candid = p && p.customdata;
    const a = candid && obj.alerts.find((x) => x.candid === candid);
    if (a) { document.getElementById("alertpick").value = a.candid; showStamps(stampBox, a); }
  });

  const pick = document.getElementById("alertpick");
  pick.replaceChildren(...obj.alerts.map((a) => el("option", { value: a.candid }, `${a.candid} (MJD ${fmt(a.mjd, 4)}, ${a.band || ""})`)));
  const last = obj.alerts[obj.alerts.length - 1];
  if (last) pick.value = last.candid;
  showStamps(stampBox, last);
  pick.addEventListener("change", () => showStamps(stampBox, obj.alerts.find((a) => a.candid === pick.value)));

  document.getElementById("alerts").replaceChildren(table(obj.alerts, [
    ["candid", "candid"], ["mjd", "MJD", (r) => fmt(r.mjd, 5)], ["band", "band"], ["magpsf", "magpsf", (r) => fmt(r.magpsf, 3)],
    ["flux", "flux (nJy)", (r) => fmt(r.flux, 1)],
    ["raw", "raw packet", (r) => el("a", { href: `/alerts/${r.candid}/raw?survey=${r.survey}`, class: "raw", download: `${r.candid}.avro` }, "Avro")],
    ["stamps", "stamps", (r) => el("a", { href: "#stamps", onclick: () => { pick.value = r.candid; showStamps(stampBox, r); } }, "show")],
  ]));
  if (obj.magstats.length) downloadLinks("dl-magstats", `/objects/${encodeURIComponent(oid)}/magstats`);
  document.getElementById("magstats").replaceChildren(obj.magstats.length ? table(obj.magstats, [
    ["band", "band", (r) => bandOf(r)], ["ndet", "ndet"], ["magmean", "mean", (r) => fmt(r.magmean, 3)], ["magmin", "min", (r) => fmt(r.magmin, 3)],
    ["magmax", "max", (r) => fmt(r.magmax, 3)], ["magmean_corr", "mean corr", (r) => fmt(r.magmean_corr, 3)],
    ["dmdt_first", "dm/dt first", (r) => fmt(r.dmdt_first, 3)], ["firstmjd", "first MJD", (r) => fmt(r.firstmjd, 4)],
  ]) : el("p", { class: "muted" }, "none"));
  const xm = obj.xmatch.map((r) => ({ ...r, source: "catalogue" })).concat(obj.neighbours.map((r) => ({
    catalog: r.catalog + (r.rank > 1 ? ` #${r.rank}` : ""), catalog_id: r.neighbour_id, dist_arcsec: r.dist_arcsec,
    properties: { mag: r.mag, gmag: r.gmag, rmag: r.rmag, sgscore: r.sgscore }, source: "alert",
  })));
  document.getElementById("xmatch").replaceChildren(xm.length ? table(xm, [["catalog", "catalogue"], ["catalog_id", "id"],
    ["dist_arcsec", "distance (\")", (r) => fmt(r.dist_arcsec, 3)], ["source", "from"],
    ["properties", "properties", (r) => Object.entries(r.properties || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(" ")]])
    : el("p", { class: "muted" }, "no cross-match"));
  document.getElementById("association").replaceChildren(table(obj.association.members, [
    ["oid", "object", (r) => objectLink(r.oid)], ["survey", "survey"], ["ndet", "ndet"],
    ["xid_distance_arcsec", "distance (\")", (r) => fmt(r.xid_distance_arcsec, 3)]]));
  try {
    const probs = await api(`/objects/${encodeURIComponent(oid)}/probabilities`);
    probabilityPlots(document.getElementById("probs"), probs);
    if (probs.length) downloadLinks("dl-probs", `/objects/${encodeURIComponent(oid)}/probabilities`);
  } catch (err) { showError("probs", err); }
  await catalogCone(obj);
  document.body.dataset.ready = "yes";
}

// The object's features (latest version first, a filter on names); returns the period to fold at, if any.
async function featureCard(oid) {
  const rows = await api(`/objects/${encodeURIComponent(oid)}/features`);
  const box = document.getElementById("features");
  const pick = document.getElementById("featversion");
  const filter = document.getElementById("featfilter");
  const versions = [...new Set(rows.map((r) => r.version))].sort(versionCompare).reverse();
  if (!versions.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no features (fewer than 6 detections in every band)"));
    return null;
  }
  pick.replaceChildren(...versions.map((v) => el("option", { value: v }, v)));
  const draw = () => {
    const words = filter.value.trim().toLowerCase();
    const shown = rows.filter((r) => r.version === pick.value && (!words || r.feature.toLowerCase().includes(words)));
    box.replaceChildren(table(shown, [["name", "feature"], ["band", "band"], ["value", "value", (r) => significant(r.value)]],
      { sortable: true }));
    box.dataset.rows = String(shown.length);
    downloadLinks("dl-features", `/objects/${encodeURIComponent(oid)}/features`, { version: pick.value });
  };
  pick.addEventListener("change", draw);
  filter.addEventListener("input", draw);
  draw();
  const latest = rows.filter((r) => r.version === versions[0]);
  const p = latest.find((r) => (r.feature === "Multiband_period" || r.feature === "Period_flux") && r.value > 0);
  return p ? p.value : null;
}

// The nearest source of every local catalogue within a radius set by the slider (ALeRCE's Cross Matches view).
async function catalogCone(obj) {
  const box = document.getElementById("catcone");
  const slider = document.getElementById("catradius");
  if (!box || !slider) return;
  const cats = await api("/catalogs").catch(() => []);
  if (!cats.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no local catalogue imported (broker catalog import)"));
    return;
  }
  const load = async () => {
    document.getElementById("catradiusvalue").textContent = `${slider.value}"`;
    try {
      const res = await api("/catalogs/cone", { ra: obj.meanra, dec: obj.meandec, radius: slider.value, limit: 1 });
      const rows = Object.entries(res.catalogs).map(([name, c]) => ({ catalog: name, total: c.total, ...(c.rows[0] || {}) }));
      box.replaceChildren(table(rows, [["catalog", "catalogue"], ["total", "sources within"],
        ["catalog_id", "nearest"], ["dist_arcsec", "distance (\")", (r) => fmt(r.dist_arcsec, 3)],
        ["columns", "columns", (r) => Object.entries(r).filter(([k, v]) => !["catalog", "total", "catalog_id", "dist_arcsec", "ra", "dec"].includes(k)
          && v !== null).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(" ")]]));
      box.dataset.catalogs = String(rows.filter((r) => r.total > 0).length);
      downloadLinks("dl-catcone", "/catalogs/cone", { ra: obj.meanra, dec: obj.meandec, radius: slider.value });
    } catch (err) { showError("catcone", err); }
  };
  slider.addEventListener("change", load);
  await load();
}

// ------------------------------------------------------------------------------------------------ SN candidates
async function initSn() {
  nav("sn");
  const params = new URLSearchParams(window.location.search);
  const form = document.getElementById("snform");
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  await nightOptions(form.elements.night, params.get("night"));
  const look = document.getElementById("quicklook");
  const quick = async (c) => {
    look.classList.add("open");
    look.replaceChildren(el("button", { class: "secondary", onclick: () => look.classList.remove("open") }, "close"),
      el("h2", {}, c.oid, " ", el("span", { class: "pill" }, `SN ${fmt(c.sn_probability, 3)}`)),
      el("p", {}, objectLink(c.oid), ` · ${fmt(c.meanra, 5)}, ${fmt(c.meandec, 5)} · age ${fmt(c.age_days, 2)} d · ndet ${c.ndet}`));
    const stamps = el("div", {});
    showStamps(stamps, { candid: c.first_candid, survey: c.first_survey, mjd: c.firstmjd });
    const plot = el("div", { class: "plot", id: "qlc" });
    look.append(stamps, plot);
    try {
      const lc = await api(`/objects/${encodeURIComponent(c.oid)}/lightcurve`);
      await plotLightcurve(plot, lc, "raw", true);
    } catch (err) { plot.replaceChildren(el("p", { class: "error" }, String(err.message))); }
  };
  const run = async () => {
    const f = form.elements;
    const status = document.getElementById("status");
    try {
      const query = { night: f.night.value, max_age_days: f.max_age_days.value, min_probability: f.min_probability.value };
      const res = await api("/sn-candidates", query);
      downloadLinks("dl-sn", "/sn-candidates", { ...query, night: res.night });
      const thumbs = (r) => el("span", {}, ["science", "template", "difference"].map((k) =>
        el("img", { class: "thumb", src: stampUrl(r.first_candid, k, r.first_survey), alt: k, title: k })));
      document.getElementById("candidates").replaceChildren(res.candidates.length ? table(res.candidates, [
        ["rank", "rank"], ["thumbs", "first alert (science, template, difference)", thumbs],
        ["oid", "object", (r) => objectLink(r.oid)], ["sn_probability", "SN probability", (r) => fmt(r.sn_probability, 3)],
        ["age_days", "age (d)", (r) => fmt(r.age_days, 2)], ["ndet", "ndet"], ["first_magpsf", "first mag", (r) => fmt(r.first_magpsf, 2)],
        ["last_magpsf", "last mag", (r) => fmt(r.last_magpsf, 2)], ["sgscore1", "sgscore1", (r) => fmt(r.sgscore1, 2)],
        ["distpsnr1", "distpsnr1 (\")", (r) => fmt(r.distpsnr1, 2)],
        ["look", "", (r) => el("button", { class: "secondary quick", onclick: () => quick(r) }, "quick look")],
      ], { sortable: true }) : el("p", { class: "muted" }, "no candidates this night"));
      status.textContent = `${res.candidates.length} candidates on night ${res.night}`;
    } catch (err) { showError("candidates", err); }
    document.body.dataset.ready = "yes";
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  await run();
}

// ------------------------------------------------------------------------------------------------ night dashboard
async function initNight() {
  nav("night");
  const params = new URLSearchParams(window.location.search);
  const select = document.getElementById("nightpick");
  await nightOptions(select, params.get("night"));
  const run = async () => {
    const s = await api("/stats", { night: select.value });
    const newObjects = s.surveys.reduce((n, r) => n + (r.new_objects || 0), 0);
    document.getElementById("cards").replaceChildren(...[["alerts", s.alerts], ["objects", s.objects],
      ["new objects", newObjects], ["dead letters", s.dead_letters]].map(([label, value]) =>
      el("div", { class: "stat" }, el("div", { class: "value" }, fmt(value)), el("div", { class: "label" }, label))));
    const surveys = [...new Set(s.alerts_per_hour.map((r) => r.survey))];
    await Plotly.react("hours", surveys.map((sv) => {
      const rows = s.alerts_per_hour.filter((r) => r.survey === sv);
      return { type: "bar", name: sv, x: rows.map((r) => r.hour_utc), y: rows.map((r) => r.alerts) };
    }), { barmode: "stack", margin: { l: 50, r: 10, t: 10, b: 40 }, xaxis: { title: { text: "hour (UTC)" }, dtick: 1 },
      yaxis: { title: { text: "alerts" } } }, { displaylogo: false, responsive: true });
    const clfs = [...new Set(s.classes.map((r) => r.classifier_name))];
    await Plotly.react("classes", clfs.map((c) => {
      const rows = s.classes.filter((r) => r.classifier_name === c);
      return { type: "bar", name: c, x: rows.map((r) => r.class_name), y: rows.map((r) => r.objects) };
    }), { margin: { l: 50, r: 10, t: 10, b: 80 }, yaxis: { title: { text: "objects (top class)" } } }, { displaylogo: false, responsive: true });
    document.getElementById("dead").replaceChildren(s.dead_letters_by_error.length ? table(s.dead_letters_by_error,
      [["error", "error"], ["dead_letters", "count"], ["example_reason", "example reason"]])
      : el("p", { class: "muted" }, `no dead letters this night (${s.dead_letters_all_nights} in all)`));
    document.getElementById("runs").replaceChildren(table(s.runs, [["run_id", "run"], ["status", "status"],
      ["started_at", "started"], ["finished_at", "finished"], ["source", "source"],
      ["counts", "counts", (r) => Object.entries(r.counts || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")]]));
    const hits = await api("/watchlists/hits", { night: select.value, limit: 1000 });
    if (hits.length) downloadLinks("dl-watchhits", "/watchlists/hits", { night: select.value, limit: 1000 });
    document.getElementById("watchhits").replaceChildren(hits.length ? table(hits, [["watchlist", "watch list"],
      ["name", "entry"], ["oid", "object", (r) => objectLink(r.oid)], ["mjd", "MJD", (r) => fmt(r.mjd, 5)],
      ["dist_arcsec", "distance (\")", (r) => fmt(r.dist_arcsec, 2)], ["magpsf", "mag", (r) => fmt(r.magpsf, 2)],
      ["band", "band"]], { sortable: true }) : el("p", { class: "muted" }, "no watch-list hit this night"));
    document.body.dataset.ready = "yes";
  };
  select.addEventListener("change", run);
  try { await run(); } catch (err) { showError("cards", err); }
}

// ------------------------------------------------------------------------------------------------ cross-match upload
async function initCrossmatch() {
  nav("crossmatch");
  const form = document.getElementById("xmform");
  const status = document.getElementById("status");
  const post = async (text, format) => {
    const f = form.elements;
    const url = new URL("/crossmatch", window.location.origin);
    url.searchParams.set("radius", f.radius.value || "2");
    if (f.all_matches.checked) url.searchParams.set("all_matches", "true");
    if (f.unmatched.checked) url.searchParams.set("unmatched", "true");
    url.searchParams.set("format", format);
    const res = await fetch(url, { method: "POST", headers: { "Content-Type": "text/csv" }, body: text });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.detail || `${res.status} ${res.statusText}`);
    }
    return format === "csv" ? res.text() : res.json();
  };
  const run = async () => {
    const file = form.elements.file.files[0];
    document.getElementById("download").replaceChildren();
    if (!file) { status.textContent = "choose a CSV file first"; document.body.dataset.ready = "yes"; return; }
    status.textContent = `matching ${file.name} ...`;
    try {
      const text = await file.text();
      const res = await post(text, "json");
      const own = res.rows.length ? Object.keys(res.rows[0]).filter((k) => k !== "line" && !k.endsWith("_probability")
        && !k.endsWith("_class") && !["dist_arcsec", "oid", "survey", "meanra", "meandec", "ndet", "firstmjd", "lastmjd"].includes(k)) : [];
      const classifiers = res.rows.length ? Object.keys(res.rows[0]).filter((k) => k.endsWith("_class")).map((k) => k.slice(0, -6)) : [];
      const columns = [["line", "line"], ...own.map((k) => [k, k]),
        ["oid", "object", (r) => (r.oid ? objectLink(r.oid) : "")], ["survey", "survey"],
        ["dist_arcsec", "distance (\")", (r) => fmt(r.dist_arcsec, 2)], ["ndet", "ndet"],
        ["lastmjd", "last MJD", (r) => fmt(r.lastmjd, 3)],
        ...classifiers.map((c) => [`${c}_class`, c, (r) => (r[`${c}_class`] ? `${r[`${c}_class`]} (${fmt(r[`${c}_probability`], 2)})` : "")])];
      document.getElementById("matches").replaceChildren(res.rows.length ? table(res.rows, columns, { sortable: true })
        : el("p", { class: "muted" }, "no broker object near any of the positions"));
      status.textContent = `${res.matched} of ${res.positions} positions matched within ${res.radius}" (columns ${res.ra_col}, ${res.dec_col})`;
      const csv = await post(text, "csv");
      const href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
      document.getElementById("download").replaceChildren(el("a", { href, download: "crossmatch.csv", id: "csvlink" }, "download as CSV"));
    } catch (err) {
      status.textContent = "";
      showError("matches", err);
    }
    document.body.dataset.ready = "yes";
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  document.body.dataset.ready = "yes";
}

const PAGES = { index: initSearch, object: initObject, sn: initSn, night: initNight, crossmatch: initCrossmatch };
window.addEventListener("DOMContentLoaded", () => {
  const init = PAGES[document.body.dataset.page];
  if (init) init().catch((err) => { console.warn(err); document.body.dataset.ready = "error"; });
});
