// The router explorer: four tabs over the /explore endpoints. Plain ES module, no build
// step; charts are hand-written SVG. Every text from the server goes in as textContent.
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { info: null, timer: null, sweepSeq: 0, cmpSeq: 0, routeSeq: 0 };

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const pct = (x, d = 1) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(d)}%`);
const usd = (x) => (x >= 100 ? `$${x.toLocaleString("en-US", { maximumFractionDigits: 0 })}` : `$${x.toPrecision(3)}`);
const num = (x, d = 3) => (x === null || x === undefined ? "off" : Number(x).toFixed(d));

// With API keys on the server, the key typed in the Thresholds tab goes with every call
// (an admin key also passes the route endpoints).
function keyHeaders() {
  const key = $("admin-key") ? $("admin-key").value.trim() : "";
  return key ? { authorization: `Bearer ${key}` } : {};
}
async function api(path, body, headers = {}) {
  const init = body === undefined ? { headers: { ...keyHeaders(), ...headers } } : {
    method: "POST", body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...keyHeaders(), ...headers } };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ") : data.detail;
    const err = new Error(detail || `HTTP ${res.status}`); err.status = res.status; throw err;
  }
  return data;
}
function setStatus(id, text, error = false) { const s = $(id); s.textContent = text; s.classList.toggle("error", error); }
// Charts are drawn at their container's width, so text keeps its size on a phone.
const widthOf = (id, lo = 300, hi = 900) => Math.max(lo, Math.min(hi, $(id).clientWidth || 600));
const debounce = (fn, ms) => { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; };

// ---- tabs: arrow keys move between them, as the ARIA tabs pattern says -------------
const tabs = [...document.querySelectorAll("[role=tab]")];
function select(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on)); t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
  redraw();
  if (tab.id === "tab-compare") runCompare();
  if (tab.id === "tab-log") loadLog();
}
tabs.forEach((t, i) => {
  t.addEventListener("click", () => select(t));
  t.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i }[e.key];
    if (step !== undefined) { e.preventDefault(); select(tabs[(i + step + tabs.length) % tabs.length]); }
  });
});

function redraw() {
  const r = state.lastSweep;
  if (r && !$("panel-thresholds").hidden) {
    $("th-tiers").replaceChildren(tierBars("share per tier, first answer", r.routed_tier_share), tierBars("share per tier, plans escalated (as tune counts)", r.tier_share));
    $("th-curve").replaceChildren(curveChart(r));
  }
  if (state.lastCompare && !$("panel-compare").hidden) $("cmp-chart").replaceChildren(costChart(state.lastCompare.strategies));
}
window.addEventListener("resize", debounce(redraw, 150));

// ---- Route ----------------------------------------------------------------------
function gauge(label, value, marks, lo, hi) {
  const W = Math.min(480, widthOf("decision-gauges") - 30), H = 84, x0 = 10, x1 = W - 10, y = 46;
  const sx = (v) => x0 + ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (x1 - x0);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${label} ${value === null ? "none" : value.toFixed(3)}` });
  svg.append(el("svg:text", { x: x0, y: 12, text: `${label}: ${value === null ? "–" : value.toFixed(3)}` }));
  svg.append(el("svg:rect", { x: x0, y: y - 6, width: x1 - x0, height: 12, fill: "#eceff4", rx: 3 }));
  if (value !== null) svg.append(el("svg:rect", { x: x0, y: y - 6, width: sx(value) - x0, height: 12, fill: "#2457c5", rx: 3 }));
  marks.forEach(([name, v, color], i) => {
    if (v === null || v === undefined) return;
    // Alternate labels below and above the bar, so two close thresholds stay legible.
    const anchor = sx(v) < x0 + 40 ? "start" : sx(v) > x1 - 40 ? "end" : "middle";
    svg.append(el("svg:line", { x1: sx(v), x2: sx(v), y1: y - 10, y2: y + 10, stroke: color, "stroke-width": 2 }));
    svg.append(el("svg:text", { x: sx(v), y: i % 2 ? y - 14 : y + 24, "text-anchor": anchor, fill: color, text: `${name} ${v}` }));
  });
  svg.append(el("svg:text", { x: x0, y: H - 4, "font-size": 11, text: String(lo) }));
  svg.append(el("svg:text", { x: x1, y: H - 4, "font-size": 11, "text-anchor": "end", text: String(hi) }));
  return svg;
}
function showDecision(d) {
  const th = state.info.thresholds;
  const plan = d.cascade ? `try ${d.model}, escalate to ${d.cascade.escalate_to} (${d.cascade.tier}) if the answer fails the check` : "none";
  const rows = [["intent", d.intent ?? "none (no match)"], ["runner-up", d.runner_up ?? "–"], ["difficulty", d.difficulty ?? "–"],
    ["tier", el("span", { class: `pill ${d.tier}`, text: d.tier })], ["reason", d.reason], ["cascade plan", plan],
    ["estimated cost", `$${d.estimated_cost_usd.toPrecision(3)} (${d.input_tokens} input tokens)`]];
  const card = $("decision-card"); card.replaceChildren(el("h2", { text: "Decision" }),
    el("p", { class: "model", "data-testid": "model", text: d.model }),
    el("dl", { class: "decision" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-field": k }, v)])),
    el("p", { class: "explanation", "data-field": "explanation", text: d.explanation }));
  card.hidden = false;
  const [lo, hi] = state.info.margin_range;
  $("decision-gauges").hidden = false;
  $("decision-gauges").replaceChildren(el("h2", { text: "Against the thresholds" }),
    gauge("margin", d.margin, [["margin", th.margin, "#c2493d"], ["cascade", th.cascade_margin, "#b07a00"]], lo, hi),
    gauge("top similarity", d.confidence, [["min_similarity", th.min_similarity, "#c2493d"]], 0, 1));
  $("decision-gauges").hidden = false;
  const body = el("tbody", {}, ...d.neighbours.map((n) => el("tr", {}, el("td", { text: n.intent }), el("td", { text: n.difficulty }),
    el("td", { class: "num", text: n.similarity.toFixed(3) }), el("td", { text: n.text }))));
  $("neighbours").replaceChildren(el("h2", { text: "Nearest exemplars" }), el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", { text: "intent" }), el("th", { text: "difficulty" }), el("th", { class: "num", text: "similarity" }), el("th", { text: "exemplar" }))), body)));
  $("neighbours").hidden = false;
}
async function route() {
  const text = $("route-text").value;
  if (!text.trim()) { setStatus("route-status", "Type a request to see its decision."); return; }
  const seq = ++state.routeSeq;
  try {
    const d = await api("/explore/route", { text });
    if (seq !== state.routeSeq) return;
    setStatus("route-status", `routed in ${d.latency_ms} ms (not logged)`); showDecision(d);
  } catch (e) { if (seq === state.routeSeq) setStatus("route-status", e.message, true); }
}
$("route-text").addEventListener("input", debounce(route, 250));
$("route-sample").addEventListener("change", (e) => { if (e.target.value) { $("route-text").value = e.target.value; route(); } });

// ---- Thresholds -----------------------------------------------------------------
const sliders = { margin: "th-margin", cascade_margin: "th-cascade", min_similarity: "th-minsim", difficulty_confidence: "th-dconf" };
function settings() {
  const v = (id) => Number($(id).value);
  return { margin: v("th-margin"), cascade_margin: $("th-cascade-on").checked ? v("th-cascade") : null,
    min_similarity: v("th-minsim"), difficulty_confidence: state.info.difficulty_confidence_used ? v("th-dconf") : null };
}
function sampleBody() {
  const sample = $("th-sample").value;
  return { sample, last: Number($("th-last").value) || 1000, requests_per_day: Math.max(1, Math.round(Number($("th-rpd").value) || 1)) };
}
function syncOutputs() {
  for (const id of Object.values(sliders)) $(`${id}-out`).textContent = Number($(id).value).toFixed(2);
  $("th-cascade").disabled = !$("th-cascade-on").checked;
  $("th-cascade-out").textContent = $("th-cascade-on").checked ? Number($("th-cascade").value).toFixed(2) : "off";
}
function keepOrder(moved) {
  // cascade_margin must stay above margin: the router refuses anything else.
  if (!$("th-cascade-on").checked) return;
  const m = $("th-margin"), c = $("th-cascade");
  if (Number(c.value) <= Number(m.value)) {
    if (moved === "th-margin") c.value = Math.min(Number(c.max), Number(m.value) + 0.01).toFixed(2);
    else m.value = Math.max(0, Number(c.value) - 0.01).toFixed(2);
  }
}
function figure(dl, label, text, value) {
  dl.append(el("dt", { text: label }), el("dd", { "data-figure": label, "data-value": value === null || value === undefined ? "" : String(value), text }));
}
function tierBars(title, shares) {
  const tiers = state.info.tiers, W = Math.min(520, widthOf("th-tiers")), H = 22 * tiers.length + 30, x0 = 70, x1 = W - 50;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ` + tiers.map((t) => `${t} ${pct(shares[t] ?? 0)}`).join(", ") });
  svg.append(el("svg:text", { x: 0, y: 12, "font-weight": 600, text: title }));
  tiers.forEach((t, i) => {
    const y = 22 + i * 22, w = (shares[t] ?? 0) * (x1 - x0);
    svg.append(el("svg:text", { x: x0 - 6, y: y + 12, "text-anchor": "end", text: t }));
    svg.append(el("svg:rect", { x: x0, y, width: x1 - x0, height: 16, fill: "#eceff4" }));
    svg.append(el("svg:rect", { x: x0, y, width: w, height: 16, fill: `var(--${t}, #2457c5)` }));
    svg.append(el("svg:text", { x: x0 + w + 4, y: y + 12, text: pct(shares[t] ?? 0) }));
  });
  return svg;
}
function curveChart(r) {
  const W = widthOf("th-curve", 300, 1100), H = W < 560 ? 300 : 360, L = 56, R = 16, T = 16, B = 74;
  const pts = r.curve.filter((p) => p.quality !== null);
  if (!pts.length) return el("p", { class: "hint", text: "No quality estimate: this sample has no labels or feedback." });
  const xs = [...pts.map((p) => 1 - p.savings), 1 - r.savings, 1], ys = [...pts.map((p) => p.quality), r.quality ?? 1, r.flagship_quality ?? 1];
  const xmin = 0, xmax = Math.ceil(Math.max(1.05, ...xs) * 10) / 10, ymin = Math.max(0, Math.floor(Math.min(...ys) * 20) / 20), ymax = 1;
  const sx = (x) => L + ((x - xmin) / (xmax - xmin)) * (W - L - R), sy = (y) => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Cost relative to always-flagship against quality, over tune's grid; the current setting is marked" });
  const xstep = W < 560 ? 0.4 : 0.2, ystep = (ymax - ymin) > 0.2 ? 0.1 : (ymax - ymin) > 0.1 ? 0.02 : 0.01;
  for (let x = 0; x <= xmax + 1e-9; x += xstep) {
    svg.append(el("svg:line", { class: "gridline", x1: sx(x), x2: sx(x), y1: T, y2: H - B }));
    svg.append(el("svg:text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", text: x.toFixed(1) }));
  }
  for (let y = ymin; y <= ymax + 1e-9; y += ystep) {
    svg.append(el("svg:line", { class: "gridline", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
    svg.append(el("svg:text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", text: y.toFixed(2) }));
  }
  svg.append(el("svg:line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }), el("svg:line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  svg.append(el("svg:text", { x: (L + W - R) / 2, y: H - B + 34, "text-anchor": "middle", text: W < 560 ? "cost relative to always-flagship" : "cost relative to always-flagship (plans counted as escalated)" }));
  svg.append(el("svg:text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(T + H - B) / 2})`, text: "quality" }));
  for (const p of pts) svg.append(el("svg:circle", { cx: sx(1 - p.savings), cy: sy(p.quality), r: 2.5, fill: "#b9c0cc" }, el("svg:title", { text: `margin ${num(p.margin, 2)}, min_similarity ${num(p.min_similarity, 2)}` })));
  const front = r.frontier.filter((p) => p.quality !== null);
  svg.append(el("svg:polyline", { points: front.map((p) => `${sx(1 - p.savings)},${sy(p.quality)}`).join(" "), fill: "none", stroke: "#2457c5", "stroke-width": 2 }));
  if (r.flagship_quality !== null) svg.append(el("svg:rect", { x: sx(1) - 5, y: sy(r.flagship_quality) - 5, width: 10, height: 10, fill: "#1d2330" }, el("svg:title", { text: "always flagship" })));
  if (r.quality !== null) svg.append(el("svg:circle", { cx: sx(1 - r.savings), cy: sy(r.quality), r: 8, fill: "none", stroke: "#c2493d", "stroke-width": 3, "data-testid": "current-point" }, el("svg:title", { text: "current setting" })));
  const legend = [["#b9c0cc", "grid points"], ["#2457c5", "frontier"], ["#1d2330", "always flagship"], ["#c2493d", "current setting"]];
  const per = W < 560 ? 2 : 4, col = (W - L - R) / per;
  legend.forEach(([c, t], i) => {
    const x = L + (i % per) * col, y = H - B + 48 + Math.floor(i / per) * 16;
    svg.append(el("svg:rect", { x, y: y - 9, width: 10, height: 10, fill: c }), el("svg:text", { x: x + 14, y, text: t }));
  });
  return svg;
}
async function sweep() {
  syncOutputs();
  const seq = ++state.sweepSeq;
  setStatus("th-status", "computing…");
  try {
    const r = await api("/explore/sweep", { ...sampleBody(), thresholds: settings() });
    if (seq !== state.sweepSeq) return;
    setStatus("th-status", `${r.cases} requests of ${r.sample}; recomputed in ${r.elapsed_ms.toFixed(1)} ms. ${r.source}.`);
    const dl = $("th-figures"); dl.replaceChildren();
    dl.dataset.margin = String(r.thresholds.margin);  // which setting the figures are for
    figure(dl, "savings", `${pct(r.savings)} if every plan escalates, ${pct(r.savings_no_escalation)} if none does`, r.savings);
    figure(dl, "cost per day", `${usd(r.cost_per_day_usd)} (${usd(r.cost_per_day_no_escalation_usd)} if no plan escalates) vs ${usd(r.flagship_cost_per_day_usd)} all-flagship`, r.cost_per_day_usd);
    figure(dl, "quality", r.quality === null ? "no labels or feedback" : `${r.quality.toFixed(3)} (always-flagship ${num(r.flagship_quality)})`, r.quality);
    figure(dl, "cascade rate", `${pct(r.cascade_rate)} straight to a stronger tier`, r.cascade_rate);
    figure(dl, "planned cascades", `${pct(r.planned_share)} answer first with a plan`, r.planned_share);
    state.lastSweep = r;
    $("th-tiers").replaceChildren(tierBars("share per tier, first answer", r.routed_tier_share), tierBars("share per tier, plans escalated (as tune counts)", r.tier_share));
    $("th-curve").replaceChildren(curveChart(r));
  } catch (e) { if (seq === state.sweepSeq) setStatus("th-status", e.message, true); }
}
const sweepSoon = debounce(sweep, 60);
for (const id of Object.values(sliders)) $(id).addEventListener("input", () => { keepOrder(id); syncOutputs(); sweepSoon(); });
$("th-cascade-on").addEventListener("change", () => { keepOrder("th-cascade"); sweepSoon(); });
$("th-rpd").addEventListener("input", sweepSoon);
$("th-last").addEventListener("input", sweepSoon);
$("th-sample").addEventListener("change", () => { $("th-last").disabled = $("th-sample").value !== "log"; sweep(); });

async function apply() {
  const body = { thresholds: settings() };
  const key = $("admin-key").value.trim();
  $("apply-yaml").hidden = true;
  if (!key) {
    // Nothing to send: writing router.yaml needs an admin key, so offer the YAML instead.
    setStatus("apply-status", "Not applied: writing router.yaml needs an admin key (MODELTRIAGE_ADMIN_KEYS on the server). Paste this into router.yaml instead:", true);
    try { $("apply-yaml").textContent = (await api("/explore/yaml", body)).yaml; $("apply-yaml").hidden = false; } catch (e) { setStatus("apply-status", e.message, true); }
    return;
  }
  try {
    const r = await api("/explore/apply", body, key ? { authorization: `Bearer ${key}` } : {});
    setStatus("apply-status", `Written to ${r.path}; previous version kept as ${r.backup}. ${r.note}.`);
    $("apply-yaml").textContent = r.yaml; $("apply-yaml").hidden = false;
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) { setStatus("apply-status", e.message, true); return; }
    setStatus("apply-status", `Not applied: ${e.message}. Paste this into router.yaml instead:`, true);
    try { $("apply-yaml").textContent = (await api("/explore/yaml", body)).yaml; $("apply-yaml").hidden = false; } catch (e2) { setStatus("apply-status", e2.message, true); }
  }
}
$("apply").addEventListener("click", apply);

// ---- Compare --------------------------------------------------------------------
function costChart(strategies) {
  const W = Math.min(560, widthOf("cmp-chart")), row = 46, L = 120, R = 90, H = strategies.length * row + 40;
  const max = Math.max(...strategies.map((s) => s.cost_per_day_usd), 1e-9);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": strategies.map((s) => `${s.name} ${usd(s.cost_per_day_usd)} per day`).join(", ") });
  strategies.forEach((s, i) => {
    const y = 8 + i * row, w = (s.cost_per_day_usd / max) * (W - L - R);
    svg.append(el("svg:text", { x: L - 8, y: y + 17, "text-anchor": "end", text: s.name }));
    svg.append(el("svg:rect", { x: L, y, width: Math.max(1, w), height: 26, fill: s.name === "routed" ? "#2457c5" : "#9aa3b2" }));
    svg.append(el("svg:text", { x: L + w + 6, y: y + 17, text: `${usd(s.cost_per_day_usd)}/day` }));
  });
  svg.append(el("svg:line", { class: "axis", x1: L, x2: L, y1: 4, y2: H - 30 }));
  svg.append(el("svg:text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", text: "estimated cost per day (USD)" }));
  return svg;
}
async function runCompare() {
  $("cmp-rate-out").textContent = Number($("cmp-rate").value).toFixed(2);
  $("cmp-rate").disabled = !$("cmp-plans").checked;
  const seq = ++state.cmpSeq;
  setStatus("cmp-status", "computing…");
  try {
    const r = await api("/explore/compare", { ...sampleBody(), thresholds: settings(), plans: $("cmp-plans").checked, escalation_rate: Number($("cmp-rate").value) });
    if (seq !== state.cmpSeq) return;
    setStatus("cmp-status", `${r.sample}: savings ${pct(r.savings)}; cascade rate ${pct(r.cascade_rate)}; plans ${pct(r.planned_rate)} escalating at ${pct(r.escalation_rate, 0)}. ${r.oracle}.`);
    state.lastCompare = r;
    $("cmp-chart").replaceChildren(costChart(r.strategies));
    const head = el("tr", {}, el("th", { text: "strategy" }), el("th", { class: "num", text: "cost/day" }), el("th", { class: "num", text: "quality" }), ...state.info.tiers.map((t) => el("th", { class: "num", text: t })));
    const rows = r.strategies.map((s) => el("tr", { "data-strategy": s.name }, el("td", { text: s.name }), el("td", { class: "num", "data-value": String(s.cost_per_day_usd), text: usd(s.cost_per_day_usd) }),
      el("td", { class: "num", text: s.quality === null ? "–" : s.quality_low !== null ? `${s.quality_low.toFixed(3)}–${s.quality.toFixed(3)}` : s.quality.toFixed(3) }),
      ...state.info.tiers.map((t) => el("td", { class: "num", text: pct(s.tier_share[t] ?? 0) }))));
    $("cmp-table").replaceChildren(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))),
      el("p", { class: "hint", text: "Routed quality runs from no plan escalating to every plan escalating." }));
  } catch (e) { if (seq === state.cmpSeq) setStatus("cmp-status", e.message, true); }
}
$("cmp-plans").addEventListener("change", runCompare);
$("cmp-rate").addEventListener("input", debounce(runCompare, 80));

// ---- Log ------------------------------------------------------------------------
async function openDecision(id, tr) {
  for (const r of document.querySelectorAll("#log-list tr.open")) r.classList.remove("open");
  tr.classList.add("open");
  const box = $("log-detail");
  try {
    const r = await api(`/decisions/${encodeURIComponent(id)}`);
    const d = r.decision;
    const fields = [["id", d.decision_id], ["time", d.created_at], ["text", d.text ?? "(hash only)"], ["intent", d.intent ?? "none"], ["tier", d.tier], ["model", d.model],
      ["fallbacks", (d.fallbacks || []).join(", ") || "–"], ["cascade to", d.cascade_to ?? "–"], ["reason", d.reason], ["estimated cost", `$${d.estimated_cost_usd.toPrecision(3)}`]];
    const events = r.events.length ? el("ul", {}, ...r.events.map((e) => el("li", { text: `${e.created_at.replace("T", " ").slice(0, 19)} ${e.kind}: ${e.model}${e.to_model ? ` → ${e.to_model}` : ""}; ${e.detail}` })))
      : el("p", { class: "hint", text: "No failovers or answer checks." });
    const feedback = r.feedback.length ? el("ul", {}, ...r.feedback.map((f) => el("li", { text: `${f.quality} from ${f.source}${f.model ? ` for ${f.model}` : ""}` })))
      : el("p", { class: "hint", text: "No feedback." });
    box.replaceChildren(el("h2", { text: "Decision" }), el("dl", { class: "decision" }, ...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-field": k, text: v })])),
      el("h2", { text: "Events" }), events, el("h2", { text: "Feedback" }), feedback);
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  } catch (e) { setStatus("log-status", e.message, true); }
}
async function loadLog() {
  if (!state.info.log) { setStatus("log-status", "Decision logging is off (no log.url in router.yaml): there is nothing to list."); return; }
  const q = new URLSearchParams();
  for (const [k, id] of [["reason", "log-reason"], ["tier", "log-tier"], ["intent", "log-intent"]]) if ($(id).value) q.set(k, $(id).value);
  try {
    const r = await api(`/explore/decisions?${q}`);
    setStatus("log-status", r.decisions.length ? `${r.decisions.length} most recent decisions` : "No logged decision matches. Route requests with POST /route to fill the log.");
    const rows = r.decisions.map((d) => {
      const tr = el("tr", {}, el("td", { text: d.created_at.replace("T", " ").slice(0, 19) }), el("td", { text: d.text ?? "(hash only)" }), el("td", { text: d.intent ?? "–" }),
        el("td", {}, el("span", { class: `pill ${d.tier}`, text: d.tier })), el("td", { text: d.reason }));
      tr.append(el("td", {}, el("button", { type: "button", "aria-label": `Open decision ${d.decision_id}`, text: "Open" })));
      tr.querySelector("button").addEventListener("click", () => openDecision(d.decision_id, tr));
      return tr;
    });
    $("log-list").replaceChildren(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ...["time", "request", "intent", "tier", "reason", ""].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows))));
  } catch (e) { setStatus("log-status", e.message, true); $("log-list").replaceChildren(); }
}
for (const id of ["log-reason", "log-tier", "log-intent"]) $(id).addEventListener("change", loadLog);
$("log-refresh").addEventListener("click", loadLog);

// ---- start ----------------------------------------------------------------------
async function start() {
  const info = state.info = await api("/explore/samples");
  for (const t of info.examples) $("route-sample").append(el("option", { value: t, text: t }));
  for (const s of info.samples) $("th-sample").append(el("option", { value: s.name, text: s.name }));
  if (info.log) $("th-sample").append(el("option", { value: "log", text: "last N logged decisions" }));
  if (info.default_sample) $("th-sample").value = info.default_sample;
  $("th-last").disabled = $("th-sample").value !== "log";
  const [lo, hi] = info.margin_range;
  for (const id of ["th-margin", "th-cascade"]) { $(id).min = lo; $(id).max = hi; $(id).step = hi > 1 ? 0.02 : 0.01; }
  const th = info.thresholds;
  $("th-margin").value = th.margin ?? 0;
  $("th-cascade-on").checked = th.cascade_margin !== null;
  $("th-cascade").value = th.cascade_margin ?? Math.min(hi, (th.margin ?? 0) + 0.2);
  $("th-minsim").value = th.min_similarity ?? 0;
  $("th-dconf-box").hidden = !info.difficulty_confidence_used;
  $("th-dconf").value = th.difficulty_confidence ?? 0.5;
  for (const [id, values] of [["log-reason", info.reasons], ["log-tier", info.tiers], ["log-intent", info.intents]]) for (const v of values) $(id).append(el("option", { value: v, text: v }));
  syncOutputs();
  document.body.dataset.ready = "true";
  sweep();
}
start().catch((e) => setStatus("route-status", `The explorer could not start: ${e.message}`, true));
