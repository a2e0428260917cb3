// Live updates: every element with data-live="URL" is refreshed from URL (an HTML
// fragment the server renders) every few seconds, while the page is visible.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null && el.innerHTML !== html) el.innerHTML = html; })
      .catch(function () { /* the next tick tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    live.forEach(function (el) {
      if (el.id === "lag") refresh(el);
      setInterval(function () { refresh(el); }, PERIOD_MS);
    });
  });
})();
