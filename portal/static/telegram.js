// Telegram connect page: ask the server whether the /connect message has arrived, and copy buttons.
// No inline script (the CSP allows only files from this origin); without JavaScript the page's
// "check now" button does the same.
(function () {
  "use strict";
  var box = document.getElementById("tg-status");
  if (!box || !window.fetch) return;
  var url = box.getAttribute("data-status-url");
  var BASE_DELAY = 4000, MAX_DELAY = 30000;
  var delay = BASE_DELAY;
  var problems = ["action_needed", "unavailable", "failed", "expired"];

  function show(state, message) {
    if (typeof message === "string" && message) box.textContent = message;
    box.className = "flash" + (problems.indexOf(state) >= 0 ? " flash-error" : "");
  }

  function later(ms) { setTimeout(poll, ms); }

  function poll() {
    if (document.hidden) { later(delay); return; }
    fetch(url, { credentials: "omit", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data.state === "connected" && typeof data.next === "string" && /^\/c\/[^/]+\/done\/[^/]+$/.test(data.next)) {
          window.location.assign(data.next);
          return;
        }
        show(data.state, data.message);
        if (data.final) {  // expired or failed: offer a new code
          var again = document.getElementById("tg-new-code");
          if (again) again.hidden = false;
          var check = document.querySelector("form.actions button[type=submit]");
          if (check) check.disabled = true;
          return;
        }
        delay = BASE_DELAY;
        var wait = typeof data.retry_after === "number" ? Math.min(data.retry_after * 1000, MAX_DELAY) : 0;
        later(Math.max(delay, wait));
      })
      .catch(function () {
        delay = Math.min(delay * 2, MAX_DELAY);
        later(delay);
      });
  }

  later(delay);

  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    if (!navigator.clipboard || !window.isSecureContext) return;
    button.parentElement.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  });
})();
