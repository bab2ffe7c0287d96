/* 录像回放: a day's recordings as a 24-hour timeline (Beijing time), alarms marked on it; a click plays from that
   moment (or seeks an open playback); pause / resume / speed; downloads with their progress. */
(function () {
  "use strict";
  var DAY = 86400;
  function oneLanguage(msg) {  // "中文 / English" (the API's messages): the page's language only, as on the pages
    var m = /^([\s\S]*[\u4e00-\u9fff][\s\S]*?) \/ ([^\u4e00-\u9fff]+)$/.exec(String(msg || ""));
    if (!m) { return msg; }
    return (document.documentElement.lang || "zh-CN").indexOf("en") === 0 ? m[2].trim() : m[1].trim();
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(unix) {  // HH:MM:SS in Beijing time (UTC+8, no daylight saving)
    var s = Math.floor(unix + 8 * 3600) % DAY;
    return pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s / 60) % 60) + ":" + pad(s % 60);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("pb");
    if (!root || !window.AnfangPlayer) { return; }
    var L = JSON.parse(root.getAttribute("data-labels") || "{}");
    var channel = root.getAttribute("data-channel"), day = root.getAttribute("data-day");
    var dayStart = Date.parse(day + "T00:00:00+08:00") / 1000;
    var line = document.getElementById("timeline"), status = document.getElementById("pb-status");
    var pauseBtn = document.getElementById("pb-pause"), speed = document.getElementById("pb-speed");
    var posEl = document.getElementById("pb-pos");
    var player = new window.AnfangPlayer(document.getElementById("pb-player"), {labels: L});
    var session = null, spans = [], cursor = document.createElement("div");
    cursor.className = "cursor"; cursor.hidden = true; line.appendChild(cursor);
    for (var h = 0; h <= 24; h += 3) {
      var lab = document.createElement("span"); lab.className = "hour"; lab.style.left = (h / 24 * 100) + "%";
      lab.textContent = pad(h) + ":00"; line.appendChild(lab);
    }
    function pct(unix) { return Math.max(0, Math.min(100, (unix - dayStart) / DAY * 100)); }
    function api(url, body) {
      return fetch(url, {method: body ? "POST" : "GET", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: body ? JSON.stringify(body) : undefined})
        .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, status: r.status, body: j}; }); });
    }
    api("/api/video/records?channel_id=" + encodeURIComponent(channel) + "&date=" + day).then(function (res) {
      if (!res.ok) { status.textContent = res.body.error ? oneLanguage(res.body.error.message) : "HTTP " + res.status; return; }
      spans = res.body.spans.map(function (s) { return [Date.parse(s.start) / 1000, Date.parse(s.end) / 1000]; });
      spans.forEach(function (s) {
        var d = document.createElement("div"); d.className = "span"; d.setAttribute("data-testid", "span");
        d.style.left = pct(s[0]) + "%"; d.style.width = Math.max(0.1, pct(s[1]) - pct(s[0])) + "%";
        d.title = clock(s[0]) + " – " + clock(s[1]); line.appendChild(d);
      });
      (res.body.events || []).forEach(function (e) {
        var t = Date.parse(e.at) / 1000, d = document.createElement("div");
        d.className = "ev"; d.style.left = pct(t) + "%"; d.title = clock(t) + " " + (e.title || e.kind || "");
        d.setAttribute("data-testid", "event"); line.appendChild(d);
      });
      status.textContent = spans.length ? L.click_timeline : L.no_records;
    });
    function spanEnd(t) {
      for (var i = 0; i < spans.length; i++) { if (spans[i][0] <= t && t < spans[i][1]) { return spans[i][1]; } }
      return Math.min(t + 3600, dayStart + DAY);
    }
    function start(t) {
      var end = Math.min(spanEnd(t), t + 4 * 3600);
      api("/api/video/playback", {channel_id: channel, start: new Date(t * 1000).toISOString(),
                                  end: new Date(end * 1000).toISOString(), h265: false}).then(function (res) {
        if (!res.ok) { status.textContent = res.body.error ? oneLanguage(res.body.error.message) : "HTTP " + res.status; return; }
        session = res.body; speed.value = "1"; pauseBtn.textContent = L.pause;
        pauseBtn.disabled = false; speed.disabled = false; status.textContent = "";
        player.playSession(session, root.getAttribute("data-name"));
      });
    }
    function control(body) { return session ? api("/api/video/playback/" + session.key + "/control", body) : null; }
    line.addEventListener("click", function (ev) {
      var r = line.getBoundingClientRect(), t = Math.floor(dayStart + (ev.clientX - r.left) / r.width * DAY);
      line.setAttribute("data-chosen", String(t));  // the recording second asked for (Unix)
      if (session && !player.ended && player.info) {
        control({action: "seek", at: new Date(t * 1000).toISOString()}).then(function (res) {
          if (!res.ok) { session = null; start(t); }
        });
      } else { start(t); }
    });
    pauseBtn.addEventListener("click", function () {
      var paused = !player.userPaused;
      control({action: paused ? "pause" : "resume"}).then(function (res) {
        if (res.ok) { player.setPaused(paused); pauseBtn.textContent = paused ? L.resume : L.pause; }
      });
    });
    speed.addEventListener("change", function () {
      var s = parseFloat(speed.value);
      control({action: "speed", scale: s}).then(function (res) { if (res.ok) { player.setRate(s); } });
    });
    window.setInterval(function () {
      var t = player.recordingTime();
      if (t === null) { return; }
      posEl.textContent = day + " " + clock(t);
      posEl.setAttribute("data-unix", String(Math.floor(t)));
      cursor.hidden = false; cursor.style.left = pct(t) + "%";
      if (player.ended) { status.textContent = L.ended; pauseBtn.disabled = true; speed.disabled = true; }
    }, 250);
    // downloads
    var form = document.getElementById("dl-form"), bar = document.getElementById("dl-progress");
    var dlStatus = document.getElementById("dl-status"), link = document.getElementById("dl-file");
    function at(hms) { var p = hms.split(":").map(Number); return dayStart + p[0] * 3600 + p[1] * 60 + (p[2] || 0); }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {channel_id: channel, start: new Date(at(document.getElementById("dl-from").value) * 1000).toISOString(),
                  end: new Date(at(document.getElementById("dl-to").value) * 1000).toISOString(),
                  reason: document.getElementById("dl-reason").value, speed: 4};
      link.hidden = true;
      api("/api/video/download", body).then(function (res) {
        if (res.status === 202 && res.body.error) { dlStatus.textContent = L.pending + " (" + oneLanguage(res.body.error.message) + ")"; return; }
        if (!res.ok) { dlStatus.textContent = res.body.error ? oneLanguage(res.body.error.message) : "HTTP " + res.status; return; }
        bar.hidden = false;
        var id = res.body.id;
        var poll = window.setInterval(function () {
          api("/api/video/download/" + id).then(function (r) {
            var j = r.body; bar.value = j.progress || 0;
            dlStatus.textContent = (L[j.state] || j.state) + " " + Math.round((j.progress || 0) * 100) + "%" + (j.error ? " " + j.error : "");
            if (j.state === "done") { link.href = j.file; link.hidden = false; window.clearInterval(poll); }
            if (j.state === "failed") { window.clearInterval(poll); }
          });
        }, 500);
      });
    });
  });
})();
