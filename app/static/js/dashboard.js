/* The customer dashboard: each widget loads its own content (a failure stays inside its frame); widgets reorder
   by drag and drop or by their arrow buttons, and the order is saved at once. */
(function () {
  "use strict";
  var board = document.getElementById("widget-board");
  if (!board) { return; }
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

  function load(body) {
    fetch(body.getAttribute("data-src"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        body.innerHTML = html;
        window.PortalCharts.draw(body);
      })
      .catch(function () {
        body.innerHTML = '<p class="text-danger widget-error">This widget could not load. ' +
          '<button type="button" class="btn btn-link btn-xs" data-retry>Try again</button></p>';
      });
  }

  board.querySelectorAll(".widget-body").forEach(load);
  board.addEventListener("click", function (event) {
    var retry = event.target.closest("[data-retry]");
    if (retry) { load(retry.closest(".widget-body")); return; }
    var move = event.target.closest("[data-move]");
    if (!move) { return; }
    var item = move.closest(".widget");
    if (move.getAttribute("data-move") === "up" && item.previousElementSibling) {
      board.insertBefore(item, item.previousElementSibling);
    } else if (move.getAttribute("data-move") === "down" && item.nextElementSibling) {
      board.insertBefore(item.nextElementSibling, item);
    } else {
      return;
    }
    move.focus();
    save();
  });

  function save() {
    var order = Array.prototype.map.call(board.querySelectorAll(".widget"), function (item) {
      return parseInt(item.getAttribute("data-widget-id"), 10);
    });
    board.setAttribute("data-saving", "true");
    fetch(board.getAttribute("data-order-url"), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": token},
      body: JSON.stringify({order: order})
    }).then(function (response) {
      board.setAttribute("data-saving", response.ok ? "done" : "failed");
    }).catch(function () { board.setAttribute("data-saving", "failed"); });
  }

  var dragged = null;
  board.addEventListener("dragstart", function (event) {
    dragged = event.target.closest(".widget");
    if (dragged) { dragged.classList.add("dragging"); event.dataTransfer.effectAllowed = "move"; }
  });
  board.addEventListener("dragover", function (event) {
    var over = event.target.closest(".widget");
    if (!dragged || !over || over === dragged) { return; }
    event.preventDefault();
    var rect = over.getBoundingClientRect();
    var after = (event.clientY - rect.top) > rect.height / 2;
    board.insertBefore(dragged, after ? over.nextElementSibling : over);
  });
  board.addEventListener("drop", function (event) { event.preventDefault(); });
  board.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("dragging"); dragged = null; save(); }
  });
})();
