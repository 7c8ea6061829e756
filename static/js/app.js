// Small page behaviours that need no inline script (the CSP forbids inline scripts).
// Charts: any element with data-plotly="<id of a json_script element>" is drawn with plotly.js.
(function () {
  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-plotly]").forEach(function (el) {
      var src = document.getElementById(el.dataset.plotly);
      if (!src) return;
      var spec = JSON.parse(src.textContent);
      window.Plotly.react(el, spec.data, spec.layout || {}, Object.assign({responsive: true, displaylogo: false}, spec.config || {}));
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawCharts(e.target); });
})();
