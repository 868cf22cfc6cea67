// IRAS console: the approval deadline counting down, and a page refresh while
// the incident moves. No build step, no dependencies; the pages work without it.
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function format(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ":" + pad(m) : m) + ":" + pad(sec);
  }

  function tick() {
    var nodes = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var deadline = Date.parse(node.getAttribute("data-deadline"));
      if (isNaN(deadline)) { continue; }
      var left = deadline - Date.now();
      if (left <= 0) {
        node.textContent = "deadline passed " + format(left) + " ago";
        node.classList.add("urgent");
      } else {
        node.textContent = format(left) + " left";
        node.classList.toggle("urgent", left < 5 * 60 * 1000);
      }
    }
  }

  // Reloading must never eat what the operator is typing (a rejection reason)
  // or yank a page they are reading in another tab out from under them.
  function busy() {
    var active = document.activeElement;
    if (active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    var fields = document.querySelectorAll("textarea, input[type=text], input:not([type])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value && fields[i].defaultValue !== fields[i].value) { return true; }
    }
    return false;
  }

  // Once the operator clicks through to an incident, a refresh firing before the
  // next page arrives would cancel that navigation: stop refreshing from then on.
  var leaving = false;

  function scheduleRefresh() {
    var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (!seconds) { return; }
    window.addEventListener("beforeunload", function () { leaving = true; });
    document.addEventListener("click", function (event) {
      var target = event.target;
      if (target && target.closest && target.closest("a[href], [data-href], button, form")) { leaving = true; }
    }, true);
    window.setInterval(function () {
      if (!leaving && !document.hidden && !busy()) { leaving = true; window.location.reload(); }
    }, seconds * 1000);
  }

  // Filters apply as soon as a select changes (the Filter button stays for no-JS).
  function autosubmit() {
    var forms = document.querySelectorAll("form[data-autosubmit]");
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        form.addEventListener("change", function () { form.submit(); });
      })(forms[i]);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    autosubmit();
    tick();
    window.setInterval(tick, 1000);
    scheduleRefresh();
  });
})();
