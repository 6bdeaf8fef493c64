// An edition's page while it is being sent: its figures, fetched every 2 seconds, replace
// the ones on the page; once it is done the page is loaded again to show its whole outcome.
// Without this script the page refreshes itself (a <noscript> refresh) and has a link.
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) {
    return;
  }
  var url = box.getAttribute("data-progress-url");
  var format = new Intl.NumberFormat("en-US");

  function show(data) {
    Object.keys(data.shown).forEach(function (name) {
      box.querySelectorAll('[data-figure="' + name + '"]').forEach(function (cell) {
        cell.textContent = format.format(data.shown[name]);
      });
    });
    var bar = box.querySelector("progress");
    if (bar) {
      bar.max = Math.max(data.total, 1);
      bar.value = data.finished;
    }
    var state = document.querySelector("[data-state]");
    if (state) {
      state.textContent = data.state;
    }
  }

  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("progress: HTTP " + answer.status);
        }
        return answer.json();
      })
      .then(function (data) {
        show(data);
        if (data.state === "done") {
          window.location.reload();
          return;
        }
        window.setTimeout(tick, 2000);
      })
      .catch(function () {
        // A lost connection or an expired session: try again, more slowly.
        window.setTimeout(tick, 5000);
      });
  }

  box.setAttribute("data-live", "");
  window.setTimeout(tick, 2000);
})();
