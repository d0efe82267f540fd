// A campaign's charts: contacts per status, attempts over time, answers per question. The data is JSON in the
// data-chart attribute of the page's live part and of its attempts-over-time part (parsed, never run); while the
// campaign runs, htmx replaces those parts every few seconds, and the charts take the new data from them. Labels that came
// from callers or lists are drawn on canvas or set with textContent, never parsed as markup.
(function () {
  "use strict";

  var charts = {};
  var COLOURS = ["#3b6fd8", "#2e9e5b", "#c7842d", "#9b59b6", "#d64545", "#1b9aaa", "#8a8f99", "#e0b339",
                 "#5c7c3b", "#b04a7a", "#4a4a8a", "#6b7385", "#2d6a8f"];

  function data(id) {
    var source = document.getElementById(id);
    return source && source.hasAttribute("data-chart") ? JSON.parse(source.getAttribute("data-chart")) : null;
  }

  function bars(canvas, labels, datasets, horizontal) {
    return new Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: { animation: false, indexAxis: horizontal ? "y" : "x",
                 plugins: { legend: { display: datasets.length > 1 } },
                 scales: { x: { beginAtZero: true, ticks: { precision: 0, autoSkip: !horizontal } },
                           y: { beginAtZero: true, ticks: { precision: 0, autoSkip: horizontal ? false : true } } } }
    });
  }

  function answerCanvas(key) {
    var found = null;
    document.querySelectorAll("canvas[data-question]").forEach(function (canvas) {
      if (canvas.getAttribute("data-question") === key) { found = canvas; }
    });
    if (found) { return found; }
    // A question first answered while the page is open gets its figure now.
    var figure = document.createElement("figure");
    figure.className = "answer-chart";
    var caption = document.createElement("figcaption");
    caption.textContent = "Answers to " + key;
    found = document.createElement("canvas");
    found.setAttribute("data-question", key);
    found.setAttribute("role", "img");
    found.setAttribute("aria-label", "Answers to " + key);
    figure.appendChild(caption);
    figure.appendChild(found);
    document.getElementById("campaign-charts").appendChild(figure);
    return found;
  }

  function draw() {
    var d = data("campaign-live");
    if (!d || typeof Chart === "undefined" || !document.getElementById("chart-statuses")) { return; }
    var statusColours = d.statuses.labels.map(function (_, i) { return COLOURS[i % COLOURS.length]; });
    var wanted = {
      statuses: [document.getElementById("chart-statuses"), d.statuses.labels,
                 [{ label: "Contacts", data: d.statuses.counts, backgroundColor: statusColours }], true]
    };
    // Attempts over time come in a part of their own, fetched after the page (campaign-over-time).
    var overTime = data("campaign-over-time");
    if (overTime) {
      wanted.attempts = [document.getElementById("chart-attempts"), overTime.labels,
                         [{ label: "Attempts", data: overTime.attempts, backgroundColor: "#3b6fd8" },
                          { label: "Answered", data: overTime.answered, backgroundColor: "#2e9e5b" }], false];
    }
    Object.keys(d.answers).forEach(function (key) {
      wanted["answer:" + key] = [answerCanvas(key), d.answers[key].labels,
                                 [{ label: "Contacts", data: d.answers[key].counts, backgroundColor: "#c7842d" }], false];
    });
    Object.keys(wanted).forEach(function (name) {
      var w = wanted[name];
      var chart = charts[name];
      if (chart) {
        chart.data.labels = w[1];
        w[2].forEach(function (set, i) { chart.data.datasets[i].data = set.data; });
        chart.update();
      } else {
        charts[name] = bars(w[0], w[1], w[2], w[3]);
      }
    });
    document.body.setAttribute("data-charts", String(Object.keys(charts).length));
  }

  document.addEventListener("DOMContentLoaded", draw);
  // The live part was replaced (outerHTML): htmx says so with htmx:load on the new element, in the page.
  document.addEventListener("htmx:load", draw);
}());
