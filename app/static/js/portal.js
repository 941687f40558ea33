/* Partner Portal: the account search box's suggestions, and buttons that ask before they act. No libraries. */
(function () {
  "use strict";

  // A button with data-confirm asks in a dialog; on OK the form carries confirmed=yes, so the server (which asks on
  // a page of its own when the answer is missing: views/base.py confirmation()) goes ahead at once.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !button.getAttribute("data-confirm")) { return; }
    if (!window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    var form = event.target;
    if (!form.querySelector("input[name=confirmed]")) {
      var answer = document.createElement("input");
      answer.type = "hidden";
      answer.name = "confirmed";
      answer.value = "yes";
      form.appendChild(answer);
    }
  });

  var input = document.getElementById("account-search");
  if (!input) { return; }
  var list = document.getElementById("account-search-list");
  var suggestUrl = input.getAttribute("data-suggest-url");
  var timer = null;
  var asked = 0;        // the number of the newest request: older answers are ignored
  var active = -1;

  function entries() { return list.querySelectorAll("li[data-url]"); }

  function hide() {
    list.style.display = "none";
    list.innerHTML = "";
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    var items = entries();
    if (!items.length) { return; }
    active = (index + items.length) % items.length;
    items.forEach(function (item, i) {
      item.classList.toggle("active", i === active);
      item.setAttribute("aria-selected", i === active ? "true" : "false");
    });
    input.setAttribute("aria-activedescendant", items[active].id);
  }

  function show(accounts) {
    list.innerHTML = "";
    active = -1;
    if (!accounts.length) {
      var none = document.createElement("li");
      none.className = "disabled no-match";
      none.setAttribute("data-test", "no-match");
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      none.innerHTML = "<a>No accounts match</a>";
      list.appendChild(none);
    }
    accounts.forEach(function (account, index) {
      var item = document.createElement("li");
      item.id = "account-suggestion-" + index;
      item.setAttribute("role", "option");
      item.setAttribute("data-url", account.url);
      var link = document.createElement("a");
      link.textContent = account.name;  // no href: the option is the control (arrow keys, Enter or a click)
      var detail = document.createElement("small");
      detail.className = "text-muted";
      detail.textContent = " " + account.kind + (account.domain ? " · " + account.domain : "");
      link.appendChild(detail);
      item.appendChild(link);
      list.appendChild(item);
    });
    list.style.display = "block";
    input.setAttribute("aria-expanded", "true");
  }

  function suggest() {
    var query = input.value.trim();
    if (!query) { hide(); return; }
    var mine = ++asked;
    fetch(suggestUrl + "?q=" + encodeURIComponent(query), {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) { throw new Error(response.status); }
      return response.json();
    }).then(function (data) {
      if (mine === asked && input.value.trim() === query) { show(data.accounts); }
    }).catch(function () {
      if (mine === asked) { hide(); }
    });
  }

  input.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(suggest, 200);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown") { highlight(active + 1); event.preventDefault(); }
    else if (event.key === "ArrowUp") { highlight(active - 1); event.preventDefault(); }
    else if (event.key === "Escape") { hide(); }
    else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      window.location.href = entries()[active].getAttribute("data-url");
    }
  });
  list.addEventListener("click", function (event) {
    var item = event.target.closest("li[data-url]");
    if (item) { window.location.href = item.getAttribute("data-url"); }
  });
  document.addEventListener("click", function (event) {
    if (!list.contains(event.target) && event.target !== input) { hide(); }
  });
})();

/* The info icon beside a product: its SKU and billing cycle on hover and keyboard focus (Bootstrap's tooltip). */
(function () {
  "use strict";
  if (window.jQuery && window.jQuery.fn.tooltip) {
    window.jQuery(function ($) { $('[data-toggle="tooltip"]').tooltip({container: "body"}); });
  }
})();

/* A table wider than its panel scrolls inside it: the scroller takes keyboard focus then, so arrow keys scroll it. */
(function () {
  "use strict";
  function focusableWhenScrolling() {
    document.querySelectorAll(".table-responsive").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) { box.setAttribute("tabindex", "0"); }
      else { box.removeAttribute("tabindex"); }
    });
  }
  document.addEventListener("DOMContentLoaded", focusableWhenScrolling);
  window.addEventListener("resize", focusableWhenScrolling);
})();
