// The subscription page's seat windows: each open window's countdown ticks every second (the page's text says the
// same without JavaScript, as of when it was drawn). Served by the portal itself: no inline script, no CDN.
(function () {
  "use strict";
  function left(until, now) {
    var seconds = Math.floor((until - now) / 1000);
    if (seconds <= 0) { return "closed"; }
    var days = Math.floor(seconds / 86400); seconds -= days * 86400;
    var hours = Math.floor(seconds / 3600); seconds -= hours * 3600;
    var minutes = Math.floor(seconds / 60); seconds -= minutes * 60;
    return days + "d " + hours + "h " + minutes + "m " + seconds + "s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown-until]").forEach(function (el) {
      var text = left(Date.parse(el.getAttribute("data-countdown-until")), now);
      if (el.textContent !== text) { el.textContent = text; }
    });
  }
  if (document.querySelector("[data-countdown-until]")) {
    tick();
    window.setInterval(tick, 1000);
  }
})();
