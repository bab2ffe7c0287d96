/* anfang console: small progressive enhancements; every page works without this file. */
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); return; }
    var button = form.querySelector("button[type=submit]");
    if (button) { window.setTimeout(function () { button.disabled = true; }, 0); }
  });
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a[data-back]") : null;
    if (link && window.history.length > 1) { ev.preventDefault(); window.history.back(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
      sel.addEventListener("change", function () { sel.form.submit(); });
    });
  });
})();
