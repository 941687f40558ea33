/* Usage charts drawn with plotly.js (served by the app): licences used and bought per product, monthly spend. */
(function () {
  "use strict";
  function usage(element) {
    var series = JSON.parse(element.getAttribute("data-series"));
    var traces = [];
    Object.keys(series.products).forEach(function (name) {
      traces.push({x: series.months, y: series.products[name].used, name: name + " (used)", type: "scatter",
                   mode: "lines+markers"});
      traces.push({x: series.months, y: series.products[name].bought, name: name + " (bought)", type: "scatter",
                   mode: "lines", line: {dash: "dot"}});
    });
    window.Plotly.newPlot(element, traces, {margin: {t: 10, r: 10, b: 10, l: 10},
                                            height: parseInt(element.getAttribute("data-height") || "300", 10),
                                            legend: {orientation: "h", y: -0.35},
                                            xaxis: {automargin: true, tickangle: -45},
                                            yaxis: {title: {text: "Licences"}, automargin: true, rangemode: "tozero"}},
                          {displayModeBar: false, responsive: true});
  }
  function spend(element) {
    var series = JSON.parse(element.getAttribute("data-series"));
    window.Plotly.newPlot(element, [{x: series.months, y: series.spend, type: "bar", name: "Monthly spend"}],
                          {margin: {t: 10, r: 10, b: 10, l: 10}, height: 260,
                           xaxis: {automargin: true, tickangle: -45},
                           yaxis: {title: {text: "NZD"}, automargin: true, rangemode: "tozero"}},
                          {displayModeBar: false, responsive: true});
  }
  window.PortalCharts = {
    draw: function (root) {
      if (!window.Plotly) { return; }
      root.querySelectorAll(".usage-chart").forEach(usage);
      root.querySelectorAll(".spend-chart").forEach(spend);
    }
  };
  document.addEventListener("DOMContentLoaded", function () { window.PortalCharts.draw(document); });
})();
