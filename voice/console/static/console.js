// The console's own script: running durations of live calls, and the overview's charts.
// Pages work without it; it only adds what changes by the second.
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function clock(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) { el.textContent = clock(Math.max(0, Math.round((now - since) / 1000))); }
    });
  }

  function charts() {
    var source = document.getElementById("chart-data");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var made = [];
    var calls = document.getElementById("chart-calls");
    made.push(new Chart(calls, {
      type: "bar",
      data: { labels: data.buckets.labels, datasets: [
        { label: "Calls", data: data.buckets.calls, backgroundColor: "#3b6fd8" },
        { label: "Answered", data: data.buckets.answered, backgroundColor: "#2e9e5b" }] },
      options: { animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    }));
    var causes = Object.keys(data.causes);
    made.push(new Chart(document.getElementById("chart-causes"), {
      type: "doughnut",
      data: { labels: causes, datasets: [{ data: causes.map(function (k) { return data.causes[k]; }) }] },
      options: { animation: false }
    }));
    var currencies = Object.keys(data.costs);
    made.push(new Chart(document.getElementById("chart-costs"), {
      type: "bar",
      data: { labels: currencies, datasets: [{ label: "Cost", data: currencies.map(function (k) { return data.costs[k]; }),
                                               backgroundColor: "#c7842d" }] },
      options: { animation: false, scales: { y: { beginAtZero: true } } }
    }));
    document.body.setAttribute("data-charts", String(made.length));
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    charts();
  });
  document.addEventListener("htmx:afterSwap", tick);
}());
