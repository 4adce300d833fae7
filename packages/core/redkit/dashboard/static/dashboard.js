// redkit dashboard: live counts and the job in view, from one Server-Sent Events stream per tab
// (the server reads Redis once per process, whatever the number of tabs). Without JavaScript
// every page still works: this only updates what is on screen.
"use strict";
(function () {
  function stream(params, onMessage) {
    if (!window.EventSource) { return; }
    var source = new EventSource("live?" + params.toString());
    source.addEventListener("counts", function (e) { onMessage("counts", JSON.parse(e.data)); });
    source.addEventListener("job", function (e) { onMessage("job", JSON.parse(e.data)); });
    source.addEventListener("bye", function () { source.close(); });
  }
  function updateCounts(data) {
    Object.keys(data).forEach(function (queue) {
      var counts = data[queue];
      Object.keys(counts).forEach(function (state) {
        document.querySelectorAll("[data-count]").forEach(function (cell) {
          if (cell.getAttribute("data-queue") === queue && cell.getAttribute("data-state") === state) {
            cell.textContent = String(counts[state]);
          }
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var queues = [];
    document.querySelectorAll("[data-count]").forEach(function (cell) {
      var q = cell.getAttribute("data-queue");
      if (queues.indexOf(q) < 0) { queues.push(q); }
    });
    var job = document.querySelector("[data-live='job']");
    if (!queues.length && !job) { return; }
    var params = new URLSearchParams();
    queues.forEach(function (q) { params.append("q", q); });
    if (job) { params.append("queue", job.getAttribute("data-queue")); params.append("job", job.getAttribute("data-job")); }
    stream(params, function (kind, data) {
      if (kind === "counts") { updateCounts(data); }
      if (kind === "job" && job) {
        var state = document.querySelector("[data-field='state']");
        if (state && data.state && state.textContent !== data.state) {
          state.textContent = data.state;
          state.className = "badge " + data.state;
          if (["completed", "failed", "cancelled"].indexOf(data.state) >= 0) { window.location.reload(); }
        }
        var progress = document.querySelector("[data-field='progress']");
        if (progress && data.progress !== undefined) { progress.textContent = JSON.stringify(data.progress, null, 2); }
      }
    });
  });
})();
