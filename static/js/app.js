// Small page behaviours that need no inline script (the CSP forbids inline scripts).
// Charts: any element with data-plotly="<id of a json_script element>" is drawn with plotly.js.
// A null in an error-bar array means "no bar" (JSON has no NaN, and plotly.js would draw a
// null as a zero-length bar).
(function () {
  function noBarForNull(spec) {
    (spec.data || []).forEach(function (trace) {
      ["error_x", "error_y"].forEach(function (key) {
        var err = trace[key];
        if (err && Array.isArray(err.array)) {
          err.array = err.array.map(function (v) { return v === null ? NaN : v; });
        }
      });
    });
    return spec;
  }
  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-plotly]").forEach(function (el) {
      var src = document.getElementById(el.dataset.plotly);
      if (!src) return;
      var spec = noBarForNull(JSON.parse(src.textContent));
      window.Plotly.react(el, spec.data, spec.layout || {}, Object.assign({responsive: true, displaylogo: false}, spec.config || {}));
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawCharts(e.target); });
})();
