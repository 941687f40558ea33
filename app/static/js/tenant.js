/* The Primary Domain Name field: format rules at once (the server's own definition, from data-rules), then the
   live availability check, debounced. A verdict is shown only for the value still in the field. */
(function () {
  "use strict";
  var container = document.getElementById("domain-field");
  if (!container) { return; }
  var input = document.getElementById("domain_prefix");
  var status = document.getElementById("domain-status");
  var rules = JSON.parse(container.getAttribute("data-rules"));
  var checkUrl = container.getAttribute("data-check-url");
  var pattern = new RegExp(rules.pattern);
  var timer = null;
  var asked = 0;

  function normalise(text) {
    var value = text.trim().toLowerCase();
    if (value.slice(-rules.suffix.length) === rules.suffix) { value = value.slice(0, -rules.suffix.length); }
    return value;
  }

  function problem(prefix) {
    if (!prefix) { return rules.messages.required; }
    if (prefix.length > rules.maxLength) { return rules.messages.length; }
    if (!pattern.test(prefix)) { return rules.messages.characters; }
    return null;
  }

  function show(state, text) {
    status.setAttribute("data-state", state);
    status.className = "help-block domain-status " + ({
      available: "text-success", taken: "text-danger", invalid: "text-danger", error: "text-warning"
    }[state] || "text-muted");
    // The verdict's icon from the app's own icon font (Font Awesome, served by the portal), never a system glyph;
    // the words carry the meaning, so the icon is hidden from screen readers.
    var icon = {
      available: "fa-check-circle", taken: "fa-exclamation-circle", invalid: "fa-exclamation-circle",
      error: "fa-exclamation-triangle", validating: "fa-circle-o"
    }[state];
    status.textContent = "";
    if (icon && text) {
      var mark = document.createElement("span");
      mark.className = "fa " + icon + " status-icon";
      mark.setAttribute("aria-hidden", "true");
      status.appendChild(mark);
    }
    status.appendChild(document.createTextNode(text));
    container.classList.toggle("has-error", state === "taken" || state === "invalid");
    container.classList.toggle("has-success", state === "available");
  }

  function verdict(data) {
    if (data.state === "available") { return data.domain + " is available"; }
    if (data.state === "taken") { return data.domain + " is not available"; }
    if (data.state === "invalid") { return data.message; }
    return data.message || "Couldn't check availability \u2014 try again";
  }

  function check() {
    var prefix = normalise(input.value);
    var mine = ++asked;
    fetch(checkUrl + "?prefix=" + encodeURIComponent(prefix), {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) { throw new Error(response.status); }
      return response.json();
    }).then(function (data) {
      if (mine === asked && normalise(input.value) === data.prefix) { show(data.state, verdict(data)); }
    }).catch(function () {
      if (mine === asked) { show("error", "Couldn't check availability \u2014 try again"); }
    });
  }

  function changed() {
    window.clearTimeout(timer);
    asked++;  // whatever is on its way is about a value no longer in the field
    var prefix = normalise(input.value);
    var broken = problem(prefix);
    if (broken) {
      show(input.value ? "invalid" : "", input.value ? broken : "");
      return;
    }
    show("validating", "validating...");
    timer = window.setTimeout(check, 400);
  }

  input.addEventListener("input", changed);
  input.addEventListener("blur", function () {
    var prefix = normalise(input.value);
    if (prefix !== input.value) { input.value = prefix; }
  });
  if (input.value) { changed(); }

  var form = document.getElementById("new-tenant-form");
  form.addEventListener("submit", function () {
    var button = form.querySelector("[data-once]");
    if (button) { window.setTimeout(function () { button.disabled = true; }, 0); }  // one click, one request
  });
})();
