// reelscore admin: the panel's own glue code (third-party libraries come from /vendor).
// Charts read their data from JSON endpoints or <script type="application/json"> blocks the
// server rendered; nothing here computes a score or a normalization.
(function () {
  "use strict";
  const charts = {};
  window.reelscoreCharts = charts;
  const PALETTE = ["#2458c6", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d"];

  function jsonBlock(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function replaceChart(canvas, config) {
    if (charts[canvas.id]) { charts[canvas.id].destroy(); }
    charts[canvas.id] = new Chart(canvas, config);
    return charts[canvas.id];
  }

  async function drawCurve(canvas) {
    const res = await fetch(canvas.dataset.src, { headers: { "Accept": "application/json" } });
    const data = await res.json();
    canvas.dataset.points = JSON.stringify(data.points || []);
    canvas.dataset.loaded = "true";
    if (data.error) { canvas.parentElement.insertAdjacentHTML("beforeend", `<p class="error-box">${data.error}</p>`); }
    replaceChart(canvas, {
      type: "line",
      data: { datasets: [{ label: `${data.code} v${data.version}`, data: data.points || [], borderColor: PALETTE[0],
                           pointRadius: 0, borderWidth: 2, stepped: data.normalization_type === "custom" }] },
      options: { animation: false, maintainAspectRatio: false, parsing: false,
        scales: { x: data.xscale === "logarithmic"
                       ? { type: "logarithmic", min: 1, title: { display: true, text: "raw value (log scale)" } }
                       : { type: "linear", title: { display: true, text: "raw value" } },
                  y: { min: 0, max: 1, title: { display: true, text: "normalized" } } },
        plugins: { legend: { display: false } } }
    });
  }

  function drawPie(canvas) {
    const d = JSON.parse(canvas.dataset.weights);
    replaceChart(canvas, {
      type: "pie",
      data: { labels: Object.keys(d), datasets: [{ data: Object.values(d), backgroundColor: PALETTE }] },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { position: "right" } } }
    });
  }

  function drawSpark(canvas) {
    const pts = JSON.parse(canvas.dataset.points);
    replaceChart(canvas, {
      type: "line",
      data: { labels: pts.map(p => p.x), datasets: [{ data: pts.map(p => p.y), borderColor: PALETTE[0], pointRadius: 0, borderWidth: 1.5 }] },
      options: { animation: false, maintainAspectRatio: false, events: [],
        scales: { x: { display: false }, y: { display: false } }, plugins: { legend: { display: false }, tooltip: { enabled: false } } }
    });
  }

  function drawBars(canvas) {
    const d = JSON.parse(canvas.dataset.bars);
    replaceChart(canvas, {
      type: "bar",
      data: { labels: d.labels, datasets: d.datasets.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: PALETTE[i % PALETTE.length] })) },
      options: { animation: false, maintainAspectRatio: false, indexAxis: d.horizontal ? "y" : "x",
                 scales: { x: { beginAtZero: true } }, plugins: { legend: { display: d.datasets.length > 1 } } }
    });
  }

  function init(root) {
    if (typeof Chart === "undefined") { return; }
    root.querySelectorAll("canvas#curve, canvas[data-src]").forEach(drawCurve);
    root.querySelectorAll("canvas[data-weights]").forEach(drawPie);
    root.querySelectorAll("canvas[data-points]:not([data-src])").forEach(drawSpark);
    root.querySelectorAll("canvas[data-bars]").forEach(drawBars);
  }

  // Category sliders: labels, the sum and the pie follow the sliders (display only; the
  // preview request carries the raw values and the database does the scoring).
  function categorySliders() { return Array.from(document.querySelectorAll("input[type=range][name^=cat_]")); }
  function syncSliders() {
    const sliders = categorySliders();
    if (!sliders.length) { return; }
    let sum = 0;
    const weights = {};
    sliders.forEach((s) => {
      sum += Number(s.value);
      weights[s.name.slice(4)] = Number(s.value);
      const out = document.getElementById(s.id + "-value");
      if (out) { out.textContent = Number(s.value).toFixed(2); }
    });
    const total = document.getElementById("weights-sum");
    if (total) { total.textContent = sum.toFixed(2); }
    const pie = charts["pie-main"];
    if (pie) { pie.data.datasets[0].data = Object.values(weights); pie.update("none"); }
  }
  document.addEventListener("input", (ev) => {
    if (ev.target.matches("input[type=range]")) { syncSliders(); }
  });
  document.addEventListener("click", (ev) => {
    if (ev.target.id !== "rescale") { return; }
    const sliders = categorySliders();
    const sum = sliders.reduce((a, s) => a + Number(s.value), 0);
    if (sum <= 0) { return; }
    const scaled = sliders.map((s) => Math.round(100 * Number(s.value) / sum));
    const biggest = scaled.indexOf(Math.max(...scaled));
    scaled[biggest] += 100 - scaled.reduce((a, b) => a + b, 0);   // whole hundredths adding up to 1
    sliders.forEach((s, i) => { s.value = (scaled[i] / 100).toFixed(2); });
    syncSliders();
    sliders[0].dispatchEvent(new Event("input", { bubbles: true }));
  });
  document.addEventListener("DOMContentLoaded", syncSliders);

  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:afterSettle", (ev) => init(ev.detail.elt));
})();
