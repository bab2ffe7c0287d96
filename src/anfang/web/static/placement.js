/* 待安置: pick a point (or an address dot) on the map for the device whose "地图选点" button was pressed last. */
(function () {
  "use strict";
  var svg = document.querySelector("[data-testid=place-map]");
  if (!svg) { return; }
  var row = null;
  document.querySelectorAll("[data-pick]").forEach(function (b) {
    b.addEventListener("click", function () {
      row = b.closest("form");
      document.querySelectorAll("form.picking").forEach(function (f) { f.classList.remove("picking"); });
      row.classList.add("picking");
      svg.scrollIntoView({behavior: "smooth", block: "center"});
    });
  });
  svg.addEventListener("click", function (ev) {
    if (!row) { return; }
    var pt = svg.createSVGPoint(); pt.x = ev.clientX; pt.y = ev.clientY;
    var p = pt.matrixTransform(svg.getScreenCTM().inverse());
    var k = parseFloat(svg.dataset.k), s = parseFloat(svg.dataset.scale);
    var lon = parseFloat(svg.dataset.lon0) + p.x / (k * s), lat = parseFloat(svg.dataset.lat1) - p.y / s;
    var mark = document.getElementById("map-pick");
    mark.setAttribute("cx", p.x); mark.setAttribute("cy", p.y);
    var code = ev.target.dataset ? ev.target.dataset.code : null;
    row.querySelector("[name=address_code]").value = code || "";
    row.querySelector("[name=longitude]").value = code ? "" : lon.toFixed(6);
    row.querySelector("[name=latitude]").value = code ? "" : lat.toFixed(6);
  });
})();
