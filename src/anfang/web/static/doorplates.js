/* door-plate pages: fill the position fields from the phone's location. The forms work without this file. */
(function () {
  "use strict";
  function fill(form, done) {
    if (!navigator.geolocation) { done(); return; }
    navigator.geolocation.getCurrentPosition(function (pos) {
      form.querySelector("[name=lon]").value = pos.coords.longitude.toFixed(6);
      form.querySelector("[name=lat]").value = pos.coords.latitude.toFixed(6);
      done();
    }, function () { done(); }, { enableHighAccuracy: true, timeout: 8000, maximumAge: 30000 });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-geo]").forEach(function (form) {
      fill(form, function () {});
      var btn = form.querySelector("[data-locate]");
      if (btn) { btn.addEventListener("click", function () { fill(form, function () {}); }); }
    });
  });
})();
