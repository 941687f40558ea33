/* Export jobs on the CSP Report: their progress bars follow the job until it is done (or failed). */
(function () {
  "use strict";
  function follow(row) {
    fetch(row.getAttribute("data-status-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (job) {
        var bar = row.querySelector(".progress-bar");
        var pct = job.rows_total ? Math.round(100 * job.rows_done / job.rows_total) : 0;
        bar.style.width = pct + "%";
        bar.setAttribute("aria-valuenow", pct);
        bar.textContent = job.rows_done + "/" + (job.rows_total === null ? "?" : job.rows_total);
        row.setAttribute("data-status", job.status);
        var action = row.querySelector(".job-action");
        if (job.status === "done") {
          // A download is audited, so it is a POST with the page's CSRF token (as the server draws it).
          action.innerHTML = "";
          var form = document.createElement("form");
          form.method = "post";
          form.action = job.download_url;
          form.className = "inline-form";
          var token = document.createElement("input");
          token.type = "hidden";
          token.name = "csrf_token";
          token.value = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
          var button = document.createElement("button");
          button.type = "submit";
          button.className = "btn btn-xs btn-link";
          button.setAttribute("data-test", "job-download");
          button.textContent = "Download " + job.file_name;
          form.appendChild(token);
          form.appendChild(button);
          action.appendChild(form);
        } else if (job.status === "failed") {
          window.location.reload();  // shows the error and the Retry button
        } else {
          window.setTimeout(function () { follow(row); }, 1000);
        }
      })
      .catch(function () { window.setTimeout(function () { follow(row); }, 3000); });
  }
  document.querySelectorAll('tr[data-job][data-status="queued"], tr[data-job][data-status="running"]').forEach(follow);
})();
