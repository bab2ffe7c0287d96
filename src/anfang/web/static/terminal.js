/* Police terminal: live warnings over Server-Sent Events, an unread badge, one-tap acknowledge / handle.
   Built with the DOM API (textContent), never innerHTML, so nothing in a warning can inject markup. */
(function () {
  "use strict";
  var list = document.getElementById("warnings");
  if (!list || !window.EventSource) { return; }
  var L = JSON.parse(list.getAttribute("data-labels") || "{}");
  var csrf = list.getAttribute("data-csrf"), csrfField = list.getAttribute("data-csrf-field");
  var badge = document.getElementById("unread"), live = document.getElementById("live");
  var unread = 0, baseTitle = document.title;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function form(action, buttonText, testid, extra) {
    var f = el("form"); f.method = "post"; f.action = action;
    var t = el("input"); t.type = "hidden"; t.name = csrfField; t.value = csrf; f.appendChild(t);
    var b = el("input"); b.type = "hidden"; b.name = "back"; b.value = "/m/warnings"; f.appendChild(b);
    if (extra) { extra(f); }
    var btn = el("button", "btn" + (testid === "ack" ? " btn-primary" : ""), buttonText);
    btn.type = "submit"; btn.setAttribute("data-testid", testid); f.appendChild(btn);
    return f;
  }
  function card(w) {
    var a = el("article", "wcard fresh sev-" + w.severity + " st-" + w.state);
    a.setAttribute("data-testid", "warning"); a.setAttribute("data-id", w.id);
    var h = el("header");
    h.appendChild(el("span", "sev", L["severity_" + w.severity] || w.severity));
    h.appendChild(el("span", "cat", L[w.category] || w.category));
    h.appendChild(el("span", "state", w.state_label));
    a.appendChild(h);
    var t = el("h3", null, w.title); t.setAttribute("data-testid", "warning-title"); a.appendChild(t);
    var m = el("p", "meta", (L.place || "") + "：" + (w.place || "—"));
    m.appendChild(document.createElement("br"));
    m.appendChild(document.createTextNode((L.time || "") + "：" + (w.created_at_text || "")));
    a.appendChild(m);
    if (w.data && w.data.shot_at && String(w.data.shot_at).slice(0, 16) !== String(w.created_at).slice(0, 16)) {
      var st = el("p", "meta", (L.shot_at || "") + "：" + (w.shot_at_text || ""));  // labelled zone, from the server
      st.setAttribute("data-testid", "shot-at"); a.appendChild(st);
    }
    if (w.hits > 1) { var hp = el("p", null, (L.seen || "") + "：×" + w.hits); hp.setAttribute("data-testid", "hits"); a.appendChild(hp); }
    if (w.data && w.data.hit_list && w.data.hit_list.length > 1) {
      var ol = el("ol", "hit-list"), times = w.hit_times_text || []; ol.setAttribute("data-testid", "hit-list"); ol.reversed = true;
      for (var i = w.data.hit_list.length - 1; i >= 0; i--) {
        var hit = w.data.hit_list[i], li = el("li"), tm = el("time", null, times[i] || "");
        tm.setAttribute("datetime", hit.at || ""); li.appendChild(tm);
        if (hit.distance !== null && hit.distance !== undefined) { li.appendChild(document.createTextNode(" · " + (L.distance || "") + " " + hit.distance)); }
        if (typeof hit.image === "string" && hit.image.charAt(0) === "/") {
          li.appendChild(document.createTextNode(" · ")); var ha = el("a", null, L.photo || ""); ha.href = hit.image; li.appendChild(ha);
        }
        ol.appendChild(li);
      }
      a.appendChild(ol);
    }
    if (w.data && w.data.similarity) { a.appendChild(el("p", null, (L.similarity || "") + "：" + Math.round(100 * w.data.similarity) + "%")); }
    if (w.data && typeof w.data.image === "string" && w.data.image.charAt(0) === "/") {
      var ph = el("div", "wphotos"), cap = el("img"); cap.src = w.data.image; cap.alt = L.capture || ""; ph.appendChild(cap);
      if (w.category === "face") { var en = el("img"); en.src = "/api/warnings/" + w.id + "/enrolled-photo"; en.alt = L.watchlist || ""; ph.appendChild(en); }
      if (typeof w.data.plate_image === "string" && w.data.plate_image.charAt(0) === "/") {
        var pl = el("img"); pl.src = w.data.plate_image; pl.alt = L.plate || ""; ph.appendChild(pl);
      }
      a.appendChild(ph);
    }
    var acts = el("div", "wactions");
    acts.appendChild(form("/m/warnings/" + w.id + "/ack", L.ack, "ack"));
    acts.appendChild(form("/m/warnings/" + w.id + "/handle", L.handle, "handle", function (f) {
      var s = el("select"); s.name = "feedback";
      ["true", "false_alarm", "resolved"].forEach(function (k) { var o = el("option", null, L["feedback_" + k]); o.value = k; s.appendChild(o); });
      f.appendChild(s);
    }));
    a.appendChild(acts);
    return a;
  }
  function bump() {
    unread += 1;
    badge.textContent = String(unread); badge.hidden = false;
    document.title = "(" + unread + ") " + baseTitle;
    if (navigator.vibrate) { navigator.vibrate(200); }
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { unread = 0; badge.hidden = true; document.title = baseTitle; }
  });
  var es = new EventSource(list.getAttribute("data-stream"));
  es.onopen = function () { live.hidden = false; };
  es.onerror = function () { live.hidden = true; };
  es.addEventListener("warning", function (ev) {
    var msg = JSON.parse(ev.data), w = msg.warning;
    if (!w) { return; }
    var old = list.querySelector('[data-id="' + w.id + '"]');
    if (old) { old.parentNode.removeChild(old); }
    var empty = document.getElementById("empty");
    if (empty) { empty.parentNode.removeChild(empty); }
    list.insertBefore(card(w), list.firstChild);
    // a repeat sighting (a new photo of the same person or plate) is news for the officer too
    if (msg.step === "raised" || msg.step === "escalated" || msg.step === "updated") { bump(); }
  });
})();
