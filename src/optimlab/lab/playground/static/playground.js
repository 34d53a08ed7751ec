// optimlab playground: the page. Every number drawn here comes from the server (/api/...),
// which computes it with optimlab; this script only keeps the page's state, asks and draws.
// The state lives in the URL's hash, so a link reproduces the exact picture.
"use strict";

const COLOURS = ["#2c5fb8", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa3", "#3d405b", "#8ab17d", "#c06c84"];
const NOTES_SET = ["sgd", "momentum", "rmsprop", "adam"];
const SCHEDULE_PRESETS = {
  "step decay": "step_decay:lr=0.1,gamma=0.5,step_size=200",
  "exponential": "exponential_decay:lr=0.1,decay_rate=0.95,decay_steps=20",
  "1/t": "inverse_time_decay:lr=0.1,decay_rate=1,decay_steps=50",
  "scheduled (piecewise)": "piecewise_constant:boundaries=300/600,values=0.1/0.01/0.001",
  "cosine": "cosine_decay:lr=0.1,decay_steps=1000",
  "warm restarts": "warm_restarts:lr=0.1,first_period=250",
  "one cycle": "one_cycle:max_lr=0.1,total_steps=1000",
};

const defaults = () => ({
  tab: "paths",
  paths: {
    function: "quadratic_bowl", start: null, steps: 300, log: true,
    optimizers: [
      { name: "sgd", settings: { lr: 0.45 } },
      { name: "momentum", settings: { lr: 0.45 } },
      { name: "rmsprop", settings: { lr: 0.1 } },
    ],
  },
  ewa: { betas: [0.5, 0.9, 0.98], corrected: false, days: 180, seed: 0, column: "" },
  schedules: { specs: [SCHEDULE_PRESETS["step decay"], SCHEDULE_PRESETS["exponential"], SCHEDULE_PRESETS["1/t"]], steps: 1000, log: false },
  batch: { dataset: "breast_cancer", size: 16, stochastic: true, whole: true, epochs: 3, optimizer: "sgd", lr: 0.05 },
});

const $ = (id) => document.getElementById(id);
let catalog = null;
let state = defaults();
let csvText = null;       // a dropped CSV stays in the page (not in the link)
let pending = 0;          // requests in flight (the tests wait for 0)
const lastReply = {};     // the latest reply of each view, for the tests and the animation
const sequence = {};      // the latest request of each view: older replies are dropped

// --- talking to the server --------------------------------------------------------------------

function showError(message) {
  const bar = $("error");
  bar.textContent = message || "";
  bar.hidden = !message;
}

async function ask(view, path, body) {
  const mine = (sequence[view] = (sequence[view] || 0) + 1);
  pending += 1;
  try {
    const response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const reply = await response.json();
    if (mine !== sequence[view]) return null;  // a newer request of this view is on its way
    if (!response.ok) { showError(reply.error || `${response.status} ${response.statusText}`); return null; }
    showError("");
    lastReply[view] = reply;
    return reply;
  } catch (error) {
    if (mine === sequence[view]) showError(`the server did not answer (${error.message})`);
    return null;
  } finally {
    pending -= 1;
  }
}

const timers = {};
const scheduled = new Set();
function soon(view, run, wait = 25) {  // coalesce a burst of slider events into one request
  clearTimeout(timers[view]);
  scheduled.add(view);
  timers[view] = setTimeout(() => { scheduled.delete(view); run(); }, wait);
}

// A refresh counts as work in flight from its start to its last drawing (the tests wait for
// the page to be idle before they read it).
function busy(refresh) {
  return async (...args) => {
    pending += 1;
    try { return await refresh(...args); } finally { pending -= 1; }
  };
}

// --- the state in the link ---------------------------------------------------------------------

function saveState() {
  history.replaceState(null, "", "#" + encodeURIComponent(JSON.stringify(state)));
}

function loadState() {
  const hash = location.hash.slice(1);
  if (!hash) return;
  try {
    const saved = JSON.parse(decodeURIComponent(hash));
    const base = defaults();
    state = { ...base, ...saved };
    for (const key of ["paths", "ewa", "schedules", "batch"]) state[key] = { ...base[key], ...(saved[key] || {}) };
  } catch (error) {
    showError("the link's state could not be read; showing the defaults");
    state = defaults();
  }
}

// --- formatting -----------------------------------------------------------------------------

const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : (+v.toPrecision(4)).toString());
const optimizerInfo = (name) => catalog.optimizers.find((o) => o.name === name);
const functionInfo = () => catalog.functions.find((f) => f.name === state.paths.function);
function tex(element, lines) {
  element.innerHTML = "";
  for (const line of lines) {
    const div = document.createElement("div");
    katex.render(line, div, { throwOnError: false, displayMode: true });
    element.appendChild(div);
  }
}

// --- tabs -------------------------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== `tab-${tab}`;
  saveState();
  if (tab === "paths") { refreshPaths(); }
  if (tab === "ewa") refreshEWA();
  if (tab === "schedules") refreshSchedules();
  if (tab === "batch") { if (lastReply.batch) drawBatch(lastReply.batch); else refreshBatch(); }
  window.dispatchEvent(new Event("resize"));
}

// --- paths ------------------------------------------------------------------------------------

let surfaceOf = null;

function knobControl(knob, optimizer, index) {
  const value = optimizer.settings[knob.key] ?? optimizerInfo(optimizer.name).defaults[knob.key];
  const set = (v) => { optimizer.settings[knob.key] = v; saveState(); soon("paths", refreshPaths); };
  if (knob.kind === "toggle") {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = !!value; box.dataset.key = knob.key;
    box.addEventListener("change", () => set(box.checked));
    label.append(box, " " + knob.label);
    return label;
  }
  const row = document.createElement("div");
  row.className = "knob";
  const name = document.createElement("span");
  name.textContent = knob.label;
  const out = document.createElement("output");
  let input;
  if (knob.kind === "choice") {
    input = document.createElement("select");
    for (const choice of knob.choices) input.add(new Option(choice, choice, false, choice === value));
    input.addEventListener("change", () => set(input.value));
  } else {
    input = document.createElement("input");
    input.type = "range";
    const log = knob.kind === "log";
    const toSlider = (v) => (log ? Math.log10(v) : v);
    const fromSlider = (s) => (log ? +Math.pow(10, s).toPrecision(3) : +(+s).toPrecision(4));
    input.min = toSlider(knob.low); input.max = toSlider(knob.high);
    input.step = log ? 0.05 : (knob.high - knob.low) / 1000;
    input.value = toSlider(Math.min(Math.max(value, knob.low), knob.high));
    out.textContent = fmt(value);
    input.addEventListener("input", () => { const v = fromSlider(input.value); out.textContent = fmt(v); set(v); });
  }
  input.dataset.key = knob.key;
  input.id = `knob-${index}-${knob.key.replace(".", "-")}`;
  row.append(name, input, out);
  return row;
}

function buildOptimizerCards() {
  const box = $("optimizers");
  box.innerHTML = "";
  state.paths.optimizers.forEach((optimizer, index) => {
    const info = optimizerInfo(optimizer.name);
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.optimizer = optimizer.name;
    card.id = `card-${index}`;
    card.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
    const title = document.createElement("h4");
    const remove = document.createElement("button");
    remove.className = "small"; remove.textContent = "remove"; remove.title = `remove ${info.title}`;
    remove.addEventListener("click", () => { state.paths.optimizers.splice(index, 1); saveState(); buildOptimizerCards(); refreshPaths(); });
    title.append(`${info.title}`, remove);
    card.append(title);
    const about = document.createElement("div"); about.className = "about"; about.textContent = info.about; card.append(about);
    const toggles = document.createElement("div"); toggles.className = "toggles";
    for (const knob of info.knobs) {
      const control = knobControl(knob, optimizer, index);
      (knob.kind === "toggle" ? toggles : card).append(control);
    }
    card.append(toggles);
    for (const cls of ["note", "rule", "code"]) {
      const element = document.createElement(cls === "code" ? "pre" : "div");
      element.className = cls;
      card.append(element);
    }
    box.append(card);
  });
}

async function refreshSurface() {
  const reply = await ask("surface", "/api/surface", { function: state.paths.function });
  if (reply) { surfaceOf = reply; }
  return reply;
}

function startPoint() { return state.paths.start || functionInfo().start; }

const refreshPaths = busy(async () => {
  if (state.tab !== "paths") return;
  if (!surfaceOf || surfaceOf.function !== state.paths.function) await refreshSurface();
  $("start-out").textContent = `(${startPoint().map((v) => fmt(v)).join(", ")})`;
  if (!state.paths.optimizers.length) { lastReply.paths = { paths: [] }; drawPaths(); return; }
  const reply = await ask("paths", "/api/paths", {
    function: state.paths.function, start: startPoint(), steps: state.paths.steps, optimizers: state.paths.optimizers,
  });
  if (reply) drawPaths(reply);
});

function pathTraces(reply, upto) {
  return reply.paths.map((p, i) => {
    const n = upto === undefined ? p.x.length : Math.min(upto + 1, p.x.length);
    const info = optimizerInfo(p.name);
    return {
      type: "scatter", mode: "lines+markers", name: info.title, x: p.x.slice(0, n), y: p.y.slice(0, n),
      line: { color: COLOURS[i % COLOURS.length], width: 2 }, marker: { size: 3 },
      hovertemplate: `${info.title}<br>step %{pointNumber}<br>(%{x:.4g}, %{y:.4g})<extra></extra>`,
    };
  });
}

function drawPaths(reply = lastReply.paths) {
  if (!surfaceOf || !reply) return;
  const f = functionInfo();
  const [[x0, x1], [y0, y1]] = f.bounds;
  const start = startPoint();
  const traces = [
    { type: "contour", x: surfaceOf.x, y: surfaceOf.y, z: surfaceOf.level, showscale: false, hoverinfo: "skip",
      contours: { start: 0, end: surfaceOf.levels - 1, size: 1, coloring: "fill" },
      colorscale: [[0, "#e8eef8"], [1, "#fdf6ec"]], line: { color: "#9aa6bb", width: 0.8 } },
    ...pathTraces(reply),
    { type: "scatter", mode: "markers", name: "minimum", x: f.minima.map((m) => m[0]), y: f.minima.map((m) => m[1]),
      marker: { symbol: "star", size: 13, color: "#222" }, hoverinfo: "skip" },
    { type: "scatter", mode: "markers", name: "saddle", x: f.critical_points.map((m) => m[0]), y: f.critical_points.map((m) => m[1]),
      marker: { symbol: "x", size: 11, color: "#222" }, hoverinfo: "skip" },
    { type: "scatter", mode: "markers", name: "start", x: [start[0]], y: [start[1]],
      marker: { symbol: "circle-open", size: 12, color: "#222", line: { width: 2 } }, hoverinfo: "skip" },
  ];
  Plotly.react("contour", traces, {
    margin: { l: 45, r: 10, t: 30, b: 35 }, title: { text: `${f.title}: ${f.formula}`, font: { size: 14 } },
    xaxis: { range: [x0, x1], title: { text: "x" } }, yaxis: { range: [y0, y1], title: { text: "y" } },
    legend: { orientation: "h", y: -0.12 }, showlegend: true, uirevision: f.name,
  }, { displaylogo: false, responsive: true });
  const hasMinimum = f.minimum_value !== null;
  Plotly.react("gap", reply.paths.map((p, i) => ({
    type: "scatter", mode: "lines", name: optimizerInfo(p.name).title, y: hasMinimum ? p.gap : p.f,
    line: { color: COLOURS[i % COLOURS.length], width: 2 },
  })), {
    margin: { l: 55, r: 10, t: 10, b: 40 }, showlegend: false,
    xaxis: { title: { text: "step" } },
    yaxis: { title: { text: hasMinimum ? "f − f*" : "f" }, type: hasMinimum && state.paths.log ? "log" : "linear", exponentformat: "power" },
  }, { displaylogo: false, responsive: true });
  reply.paths.forEach((p, i) => {
    const card = $(`card-${i}`);
    if (!card) return;
    tex(card.querySelector(".rule"), p.rule);
    card.querySelector(".code").textContent = p.code;
    card.querySelector(".note").textContent = p.diverged_at === null ? "" : `left the plot far behind (diverged) at step ${p.diverged_at}`;
  });
}

let animation = null;
function animate() {
  const reply = lastReply.paths;
  if (!reply || !reply.paths.length) return;
  if (animation) cancelAnimationFrame(animation);
  const longest = Math.max(...reply.paths.map((p) => p.x.length));
  const frames = Math.min(longest, 240);
  let frame = 0;
  const indices = reply.paths.map((_, i) => i + 1);
  const tick = () => {
    frame += 1;
    const upto = Math.round((frame / frames) * longest);
    const traces = pathTraces(reply, upto);
    Plotly.restyle("contour", { x: traces.map((t) => t.x), y: traces.map((t) => t.y) }, indices);
    animation = frame < frames ? requestAnimationFrame(tick) : null;
  };
  animation = requestAnimationFrame(tick);
}

function setUpPaths() {
  const select = $("function");
  for (const f of catalog.functions) select.add(new Option(f.title, f.name));
  select.value = state.paths.function;
  const describe = () => { const f = functionInfo(); $("function-about").textContent = `${f.formula}: ${f.about}`; };
  describe();
  select.addEventListener("change", () => { state.paths.function = select.value; state.paths.start = null; describe(); saveState(); refreshPaths(); });
  const steps = $("steps");
  steps.value = state.paths.steps; $("steps-out").textContent = state.paths.steps;
  steps.addEventListener("input", () => { state.paths.steps = +steps.value; $("steps-out").textContent = steps.value; saveState(); soon("paths", refreshPaths); });
  const add = $("add-optimizer");
  for (const o of catalog.optimizers) add.add(new Option(`${o.title}${o.family === "notes" ? "" : " (beyond the notes)"}`, o.name));
  $("add").addEventListener("click", () => {
    if (state.paths.optimizers.length >= catalog.limits.optimizers) { showError(`at most ${catalog.limits.optimizers} optimizers at once`); return; }
    state.paths.optimizers.push({ name: add.value, settings: {} });
    saveState(); buildOptimizerCards(); refreshPaths();
  });
  $("start-reset").addEventListener("click", () => { state.paths.start = null; saveState(); refreshPaths(); });
  $("animate").addEventListener("click", animate);
  $("log-gap").checked = state.paths.log;
  $("log-gap").addEventListener("change", () => { state.paths.log = $("log-gap").checked; saveState(); drawPaths(); });
  const plot = $("contour");
  plot.addEventListener("click", (event) => {  // a click on the plot area moves the start point
    const layout = plot._fullLayout;
    if (!layout) return;
    const box = plot.getBoundingClientRect();
    const px = event.clientX - box.left - layout.xaxis._offset, py = event.clientY - box.top - layout.yaxis._offset;
    if (px < 0 || py < 0 || px > layout.xaxis._length || py > layout.yaxis._length) return;
    state.paths.start = [+layout.xaxis.p2l(px).toPrecision(4), +layout.yaxis.p2l(py).toPrecision(4)];
    saveState(); refreshPaths();
  });
  buildOptimizerCards();
}

// --- exponentially weighted averages -----------------------------------------------------------

function parseBetas(text) {
  return text.split(/[ ,;]+/).filter(Boolean).map(Number);
}

const refreshEWA = busy(async () => {
  if (state.tab !== "ewa") return;
  const body = { betas: state.ewa.betas };
  if (csvText !== null) { body.csv = csvText; if (state.ewa.column) body.column = state.ewa.column; }
  else { body.days = state.ewa.days; body.seed = state.ewa.seed; }
  const reply = await ask("ewa", "/api/ewa", body);
  if (!reply) return;
  const days = reply.series.map((_, i) => i + 1);
  const traces = [{ type: "scatter", mode: "markers", name: reply.name, x: days, y: reply.series, marker: { size: 4, color: "#9aa6bb" } }];
  reply.averages.forEach((a, i) => traces.push({
    type: "scatter", mode: "lines", name: `β = ${a.beta}${state.ewa.corrected ? ", corrected" : ""}`, x: days,
    y: state.ewa.corrected ? a.corrected : a.plain, line: { color: COLOURS[i % COLOURS.length], width: 2 },
  }));
  Plotly.react("ewa-plot", traces, {
    margin: { l: 50, r: 10, t: 30, b: 40 }, title: { text: `Exponentially weighted averages of ${reply.name}`, font: { size: 14 } },
    xaxis: { title: { text: "day t" } }, yaxis: { title: { text: reply.name } }, legend: { orientation: "h", y: -0.15 },
  }, { displaylogo: false, responsive: true });
  $("windows").tBodies[0].innerHTML = reply.averages.map((a) => `<tr><td>${a.beta}</td><td>${fmt(a.window)}</td></tr>`).join("");
  const ex = reply.example;
  $("example-caption").textContent = `β = ${ex.beta} over the temperatures ${ex.temperatures.join(", ")}: ` +
    "computed now by optimlab.ewa, as the notes work them out by hand.";
  $("ewa-example").tBodies[0].innerHTML = ex.temperatures.map((x, i) =>
    `<tr><td>${i + 1}</td><td>${x}</td><td>${+ex.plain[i].toPrecision(4)}</td><td>${+ex.corrected[i].toPrecision(4)}</td></tr>`).join("");
});

function setUpEWA() {
  $("betas").value = state.ewa.betas.join(", ");
  $("corrected").checked = state.ewa.corrected;
  $("days").value = state.ewa.days; $("seed").value = state.ewa.seed; $("column").value = state.ewa.column;
  $("betas").addEventListener("input", () => { state.ewa.betas = parseBetas($("betas").value); saveState(); soon("ewa", refreshEWA, 250); });
  $("corrected").addEventListener("change", () => { state.ewa.corrected = $("corrected").checked; saveState(); refreshEWA(); });
  for (const key of ["days", "seed"]) $(key).addEventListener("change", () => { state.ewa[key] = Math.round(+$(key).value); saveState(); refreshEWA(); });
  $("column").addEventListener("change", () => { state.ewa.column = $("column").value.trim(); saveState(); refreshEWA(); });
  tex($("ewa-rule"), ["v_t = \\beta v_{t-1} + (1 - \\beta)\\, x_t,\\quad v_0 = 0", "\\hat v_t = \\frac{v_t}{1 - \\beta^t}\\quad\\text{(bias correction)}"]);
  const take = (file) => {
    if (!file) return;
    if (file.size > catalog.limits.body_bytes) { showError(`${file.name}: over ${catalog.limits.body_bytes / 1024} KB; the playground takes up to that`); return; }
    file.text().then((text) => { csvText = text; $("csv-name").textContent = file.name; $("csv-clear").hidden = false; refreshEWA(); });
  };
  $("csv").addEventListener("change", () => take($("csv").files[0]));
  $("csv-clear").addEventListener("click", () => { csvText = null; $("csv-name").textContent = ""; $("csv-clear").hidden = true; $("csv").value = ""; refreshEWA(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files[0]); });
}

// --- schedules --------------------------------------------------------------------------------

const refreshSchedules = busy(async () => {
  if (state.tab !== "schedules") return;
  const specs = state.schedules.specs.filter((s) => s.trim());
  if (!specs.length) { showError("write at least one schedule spec"); return; }
  const reply = await ask("schedules", "/api/schedules", { specs, steps: state.schedules.steps });
  if (!reply) return;
  Plotly.react("schedule-plot", reply.schedules.map((s, i) => ({
    type: "scatter", mode: "lines", name: s.spec, x: s.steps, y: s.lr, line: { shape: "hv", color: COLOURS[i % COLOURS.length], width: 2 },
  })), {
    margin: { l: 60, r: 10, t: 30, b: 40 }, title: { text: "Learning rate against the step", font: { size: 14 } },
    xaxis: { title: { text: "step" } }, yaxis: { title: { text: "lr" }, type: state.schedules.log ? "log" : "linear", exponentformat: "power" },
    legend: { orientation: "h", y: -0.18 },
  }, { displaylogo: false, responsive: true });
});

function setUpSchedules() {
  $("specs").value = state.schedules.specs.join("\n");
  $("schedule-steps").value = state.schedules.steps;
  $("schedule-log").checked = state.schedules.log;
  $("specs").addEventListener("input", () => { state.schedules.specs = $("specs").value.split("\n"); saveState(); soon("schedules", refreshSchedules, 300); });
  $("schedule-steps").addEventListener("change", () => { state.schedules.steps = Math.round(+$("schedule-steps").value); saveState(); refreshSchedules(); });
  $("schedule-log").addEventListener("change", () => { state.schedules.log = $("schedule-log").checked; saveState(); refreshSchedules(); });
  for (const [name, spec] of Object.entries(SCHEDULE_PRESETS)) {
    const button = document.createElement("button");
    button.textContent = `+ ${name}`;
    button.addEventListener("click", () => {
      state.schedules.specs = [...state.schedules.specs.filter((s) => s.trim()), spec];
      $("specs").value = state.schedules.specs.join("\n"); saveState(); refreshSchedules();
    });
    $("presets").append(button);
  }
}

// --- batch, mini-batch and stochastic descent ---------------------------------------------------

// The slider's batch size, beside stochastic (1) and batch (all m) descent when those are ticked.
function batchSizes() {
  const sizes = [];
  if (state.batch.stochastic) sizes.push(1);
  if (!sizes.includes(state.batch.size)) sizes.push(state.batch.size);
  if (state.batch.whole) sizes.push(null);
  return sizes;
}

const refreshBatch = busy(async () => {
  $("batch-status").textContent = "training on the server…";
  const reply = await ask("batch", "/api/batch", {
    dataset: state.batch.dataset, batch_sizes: batchSizes(), epochs: state.batch.epochs,
    optimizer: { name: state.batch.optimizer, settings: { lr: state.batch.lr } },
  });
  $("batch-status").textContent = "";
  if (reply) drawBatch(reply);
});

function drawBatch(reply) {
  if (!reply) return;
  const line = (run, i, x) => ({ type: "scatter", mode: "lines+markers", name: run.label, x: run[x], y: run.train_loss,
    line: { color: COLOURS[i % COLOURS.length], width: 2 }, marker: { size: 4 } });
  const layout = (title) => ({ margin: { l: 55, r: 10, t: 10, b: 40 }, xaxis: { title: { text: title } },
    yaxis: { title: { text: "training loss" }, type: "log" }, legend: { orientation: "h", y: -0.25 } });
  Plotly.react("batch-steps", reply.runs.map((r, i) => line(r, i, "step")), layout("steps"), { displaylogo: false, responsive: true });
  Plotly.react("batch-seconds", reply.runs.map((r, i) => line(r, i, "seconds")), layout("seconds (measured on the server)"), { displaylogo: false, responsive: true });
}

function setUpBatch() {
  for (const name of catalog.datasets) $("dataset").add(new Option(name.replace("_", " "), name));
  const retrain = () => { saveState(); soon("batch", refreshBatch, 400); };
  $("dataset").value = state.batch.dataset;
  $("batch-size").value = Math.log2(state.batch.size); $("batch-size-out").textContent = state.batch.size;
  $("stochastic").checked = state.batch.stochastic; $("whole").checked = state.batch.whole;
  for (const o of catalog.optimizers) $("batch-optimizer").add(new Option(o.title, o.name));
  $("batch-optimizer").value = state.batch.optimizer;
  $("epochs").value = state.batch.epochs; $("epochs-out").textContent = state.batch.epochs;
  $("batch-lr").value = Math.log10(state.batch.lr); $("batch-lr-out").textContent = fmt(state.batch.lr);
  $("dataset").addEventListener("change", () => { state.batch.dataset = $("dataset").value; retrain(); });
  $("batch-size").addEventListener("input", () => { state.batch.size = 2 ** +$("batch-size").value; $("batch-size-out").textContent = state.batch.size; retrain(); });
  for (const key of ["stochastic", "whole"]) $(key).addEventListener("change", () => { state.batch[key] = $(key).checked; retrain(); });
  $("batch-optimizer").addEventListener("change", () => { state.batch.optimizer = $("batch-optimizer").value; retrain(); });
  $("epochs").addEventListener("input", () => { state.batch.epochs = +$("epochs").value; $("epochs-out").textContent = $("epochs").value; retrain(); });
  $("batch-lr").addEventListener("input", () => { state.batch.lr = +Math.pow(10, +$("batch-lr").value).toPrecision(3); $("batch-lr-out").textContent = fmt(state.batch.lr); retrain(); });
  $("train").addEventListener("click", refreshBatch);
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  loadState();
  catalog = await ask("catalog", "/api/catalog");
  if (!catalog) return;
  const known = new Set(catalog.optimizers.map((o) => o.name));
  state.paths.optimizers = state.paths.optimizers.filter((o) => known.has(o.name)).map((o) => ({ name: o.name, settings: { ...(o.settings || {}) } }));
  setUpPaths(); setUpEWA(); setUpSchedules(); setUpBatch();
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("permalink").addEventListener("click", async () => {
    saveState();
    try { await navigator.clipboard.writeText(location.href); $("permalink").textContent = "Link copied"; }
    catch (error) { $("permalink").textContent = "Link in the address bar"; }
    setTimeout(() => { $("permalink").textContent = "Copy permalink"; }, 1500);
  });
  showTab(state.tab);
}

window.playground = {
  get state() { return state; },
  get reply() { return lastReply; },
  idle: () => pending === 0 && scheduled.size === 0,
  pending: () => pending,
  notesSet: NOTES_SET,
};
start();
