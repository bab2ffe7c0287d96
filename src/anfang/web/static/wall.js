/* 监控中心 wall: a channel tree on the left, 1/4/9/16 tiles; a click on a channel fills the selected (or the next
   free) tile; the wall remembers its channels per layout in this browser. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var wall = document.getElementById("wall");
    if (!wall || !window.AnfangPlayer) { return; }
    var L = JSON.parse(wall.getAttribute("data-labels") || "{}");
    var tiles = Array.prototype.slice.call(document.querySelectorAll("#tiles .tile"));
    var tree = document.getElementById("tree"), q = document.getElementById("tree-q");
    var storeKey = "anfang.wall." + wall.getAttribute("data-layout");
    var selected = 0;
    function save() {
      var chans = tiles.map(function (t) { return t.player && !t.player.stopped ? [t.player.channelId, t.player.name] : null; });
      try { localStorage.setItem(storeKey, JSON.stringify(chans)); } catch (e) { /* private mode */ }
    }
    function select(i) {
      selected = i;
      tiles.forEach(function (t, j) { t.classList.toggle("selected", j === i); });
    }
    function put(i, channelId, name) {
      var tile = tiles[i];
      if (!tile.player) {
        tile.player = new window.AnfangPlayer(tile, {labels: L, onClose: function () { save(); }});
      }
      tile.player.play(channelId, name);
      save();
    }
    tiles.forEach(function (t, i) { t.addEventListener("click", function () { select(i); }); });
    function freeTile() {
      if (tiles[selected] && (!tiles[selected].player || tiles[selected].player.stopped)) { return selected; }
      for (var i = 0; i < tiles.length; i++) { if (!tiles[i].player || tiles[i].player.stopped) { return i; } }
      return selected;
    }
    function render(data) {
      tree.innerHTML = "";
      if (!data.communities || !data.communities.length) {
        var p = document.createElement("p"); p.className = "muted"; p.textContent = L.no_channels; tree.appendChild(p); return;
      }
      data.communities.forEach(function (c) {
        var d = document.createElement("details"); d.open = true;
        var s = document.createElement("summary"); s.textContent = c.name; d.appendChild(s);
        c.places.forEach(function (place) {
          var pd = document.createElement("details"); pd.open = true; pd.className = "place";
          var ps = document.createElement("summary"); ps.textContent = place.name; pd.appendChild(ps);
          place.channels.forEach(function (ch) {
            var b = document.createElement("button");
            b.type = "button"; b.className = "chan st-" + ch.status; b.textContent = ch.name;
            b.title = ch.channel_id + " · " + (L[ch.status] || ch.status);
            b.setAttribute("data-testid", "tree-channel"); b.setAttribute("data-channel", ch.channel_id);
            b.addEventListener("click", function () { var i = freeTile(); put(i, ch.channel_id, ch.name); select((i + 1) % tiles.length); });
            pd.appendChild(b);
          });
          d.appendChild(pd);
        });
        tree.appendChild(d);
      });
    }
    function load() {
      fetch("/api/video/tree?q=" + encodeURIComponent(q.value || ""), {credentials: "same-origin"})
        .then(function (r) { return r.json(); }).then(render).catch(function () { /* the tree stays as it was */ });
    }
    var debounce = null;
    q.addEventListener("input", function () { window.clearTimeout(debounce); debounce = window.setTimeout(load, 250); });
    load();
    select(0);
    try {
      var saved = JSON.parse(localStorage.getItem(storeKey) || "[]");
      saved.forEach(function (c, i) { if (c && tiles[i]) { put(i, c[0], c[1]); } });
    } catch (e) { /* nothing saved */ }
  });
})();
