/* anfang live player: fragmented MP4 over a WebSocket into Media Source Extensions. Our own code, no CDN.
   Usage: new AnfangPlayer(element, {labels}).play(channelId, name, warningId). Elements with
   data-live-channel start by themselves; buttons with data-live-open="CHANNEL" open it in data-target. */
(function () {
  "use strict";
  var HEVC = 'video/mp4; codecs="hvc1.1.6.L120.90"';
  var DEFAULT_LABELS = {connecting: "连接中…", waiting: "等待视频…", playing: "播放中", reconnecting: "重新连接…",
    snapshot: "抓图", close: "关闭", tz: "北京时间", closed: "已结束", fullscreen: "全屏", no_linked: "未找到联动摄像机"};
  function oneLanguage(msg) {  // "中文 / English" (the API's messages): the page's language only, as on the pages
    var m = /^([\s\S]*[\u4e00-\u9fff][\s\S]*?) \/ ([^\u4e00-\u9fff]+)$/.exec(String(msg || ""));
    if (!m) { return msg; }
    return (document.documentElement.lang || "zh-CN").indexOf("en") === 0 ? m[2].trim() : m[1].trim();
  }
  function canHevc() { return !!(window.MediaSource && MediaSource.isTypeSupported(HEVC)); }
  function beijing(d) {
    var f = new Intl.DateTimeFormat("zh-CN", {timeZone: "Asia/Shanghai", hour12: false, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
    return f.format(d).replace(/\//g, "-");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text) { e.textContent = text; }
    return e;
  }
  function labelsOf(node) {
    var host = node.closest ? node.closest("[data-labels]") : null;
    var out = {}, k;
    for (k in DEFAULT_LABELS) { out[k] = DEFAULT_LABELS[k]; }
    if (host) { try { var extra = JSON.parse(host.getAttribute("data-labels")); for (k in extra) { out[k] = extra[k]; } } catch (e) { /* keep defaults */ } }
    return out;
  }

  function Player(box, opts) {
    opts = opts || {};
    this.box = box;
    this.L = opts.labels || labelsOf(box);
    this.onClose = opts.onClose || null;
    box.classList.add("player");
    box.innerHTML = "";
    this.video = el("video");
    this.video.muted = true; this.video.autoplay = true; this.video.playsInline = true;
    this.video.setAttribute("playsinline", "");
    this.top = el("div", "ov-top");
    this.nameEl = el("span", "ov-name");
    this.clock = el("time", "ov-time");
    this.top.appendChild(this.nameEl); this.top.appendChild(this.clock);
    this.stateEl = el("div", "ov-state");
    this.bar = el("div", "ov-bar");
    var self = this;
    this.snapBtn = el("button", "btn btn-ghost", this.L.snapshot);
    this.snapBtn.type = "button";
    this.snapBtn.setAttribute("data-testid", "snapshot");
    this.snapBtn.addEventListener("click", function () { self.snapshot(); });
    this.fullBtn = el("button", "btn btn-ghost", this.L.fullscreen);
    this.fullBtn.type = "button";
    this.fullBtn.addEventListener("click", function () { if (box.requestFullscreen) { box.requestFullscreen(); } });
    this.closeBtn = el("button", "btn btn-ghost", this.L.close);
    this.closeBtn.type = "button";
    this.closeBtn.addEventListener("click", function () { self.stop(); if (self.onClose) { self.onClose(self); } });
    this.bar.appendChild(this.snapBtn); this.bar.appendChild(this.fullBtn); this.bar.appendChild(this.closeBtn);
    box.appendChild(this.video); box.appendChild(this.top); box.appendChild(this.stateEl); box.appendChild(this.bar);
    var ptzHost = box.closest ? box.closest("[data-ptz]") : null;
    if (ptzHost && ptzHost.getAttribute("data-ptz") === "1") { this.ptzPad(); }
    this.queue = []; this.retries = 0; this.stopped = true; this.lastTime = -1; this.lastMove = Date.now();
    this.clockTimer = window.setInterval(function () { self.tick(); }, 1000);
    this.tick();
  }

  Player.prototype.ptz = function (action) {
    if (!this.channelId) { return; }
    var body = {channel_id: this.channelId, action: action, speed: this.ptzSpeed ? Number(this.ptzSpeed.value) : 160};
    if (action.indexOf("preset_") === 0) {
      var n = Math.round(Number(this.ptzPreset.value));
      if (!(n >= 1 && n <= 255)) { this.ptzPreset.focus(); return; }
      body.preset = n;
    }
    fetch("/api/video/ptz", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
      .catch(function () { /* the next press tries again */ });
  };

  // PTZ pad (roles of the setting ptz_roles): pan / tilt (held: moves until released), zoom / focus / iris (held),
  // speed, presets 1-255 set / call / delete (clicks).
  var PTZ_HELD = [["upleft", "↖"], ["up", "↑"], ["upright", "↗"], ["left", "←"], ["stop", "■"], ["right", "→"],
    ["downleft", "↙"], ["down", "↓"], ["downright", "↘"],
    ["zoomin", "+"], ["focusnear", "近"], ["irisopen", "亮"], ["zoomout", "−"], ["focusfar", "远"], ["irisclose", "暗"]];
  var PTZ_TITLES = {upleft: "左上", up: "上", upright: "右上", left: "左", stop: "停止", right: "右", downleft: "左下",
    down: "下", downright: "右下", zoomin: "变倍+（放大）", zoomout: "变倍−（缩小）", focusnear: "聚焦近",
    focusfar: "聚焦远", irisopen: "光圈开（亮）", irisclose: "光圈关（暗）", preset_set: "设置预置位",
    preset_call: "调用预置位", preset_delete: "删除预置位", speed: "云台速度", preset: "预置位编号（1–255）"};
  Player.prototype.ptzPad = function () {
    var self = this, pad = el("div", "ptz-pad");
    function button(a, text) {
      var b = el("button", "ptz-" + a, text);
      b.type = "button"; b.title = PTZ_TITLES[a] || a; b.setAttribute("aria-label", b.title);
      b.setAttribute("data-testid", "ptz-" + a);
      pad.appendChild(b);
      return b;
    }
    PTZ_HELD.forEach(function (a) {
      var b = button(a[0], a[1]);
      b.addEventListener("pointerdown", function (ev) { ev.preventDefault(); self.ptz(a[0]); });
      if (a[0] !== "stop") {
        b.addEventListener("pointerup", function () { self.ptz("stop"); });
        b.addEventListener("pointerleave", function (ev) { if (ev.buttons) { self.ptz("stop"); } });
      }
    });
    this.ptzSpeed = el("select", "ptz-speed");
    this.ptzSpeed.title = PTZ_TITLES.speed; this.ptzSpeed.setAttribute("aria-label", PTZ_TITLES.speed);
    this.ptzSpeed.setAttribute("data-testid", "ptz-speed");
    [["64", "慢"], ["160", "中"], ["255", "快"]].forEach(function (o) {
      var opt = el("option", "", "速度 " + o[1]); opt.value = o[0]; self.ptzSpeed.appendChild(opt);
    });
    this.ptzSpeed.value = "160";
    pad.appendChild(this.ptzSpeed);
    this.ptzPreset = el("input", "ptz-preset");
    this.ptzPreset.type = "number"; this.ptzPreset.min = "1"; this.ptzPreset.max = "255"; this.ptzPreset.value = "1";
    this.ptzPreset.title = PTZ_TITLES.preset; this.ptzPreset.setAttribute("aria-label", PTZ_TITLES.preset);
    this.ptzPreset.setAttribute("data-testid", "ptz-preset");
    pad.appendChild(this.ptzPreset);
    [["preset_set", "置"], ["preset_call", "调"], ["preset_delete", "删"]].forEach(function (a) {
      button(a[0], a[1]).addEventListener("click", function () { self.ptz(a[0]); });
    });
    this.box.appendChild(pad);
  };

  Player.prototype.setState = function (state, message) {
    this.state = state;
    this.box.setAttribute("data-state", state);
    var text = oneLanguage(message) || this.L[state] || "";
    this.stateEl.textContent = state === "playing" ? "" : text;
    this.stateEl.className = "ov-state st-" + state;
  };

  Player.prototype.tick = function () {
    this.clock.textContent = beijing(new Date()) + " " + this.L.tz;
    if (this.state === "playing" && !this.userPaused && !this.info) {
      var t = this.video.currentTime;
      if (t !== this.lastTime) { this.lastTime = t; this.lastMove = Date.now(); }
      else if (Date.now() - this.lastMove > 8000) { this.reconnect(); }
    }
  };

  Player.prototype.play = function (channelId, name, warningId) {
    this.stop();
    this.channelId = channelId; this.name = name || channelId; this.warningId = warningId || null;
    this.nameEl.textContent = this.name;
    this.box.setAttribute("data-channel", channelId);
    this.stopped = false; this.retries = 0;
    this.open();
  };

  Player.prototype.open = function () {
    var self = this;
    if (this.stopped) { return; }
    this.setState(this.retries ? "reconnecting" : "connecting");
    var body = {channel_id: this.channelId, h265: canHevc()};
    if (this.warningId) { body.warning_id = this.warningId; }
    fetch("/api/video/live", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"}, body: JSON.stringify(body)})
      .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, status: r.status, body: j}; }); })
      .then(function (res) {
        if (self.stopped) { return; }
        if (!res.ok) {
          var msg = (res.body && res.body.error && res.body.error.message) || ("HTTP " + res.status);
          self.setState("error", msg);
          if (res.status !== 401 && res.status !== 403 && res.status !== 404) { self.later(); }
          return;
        }
        self.connect(res.body);
      })
      .catch(function () { self.setState("error", "网络错误 / network error"); self.later(); });
  };

  Player.prototype.connect = function (info) {
    var self = this;
    var url = info.ws_url;
    if (url.charAt(0) === "/") { url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url; }
    url += (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(info.token);
    var ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = function (ev) {
      if (ws !== self.ws) { return; }
      if (typeof ev.data === "string") {
        var m; try { m = JSON.parse(ev.data); } catch (e) { return; }
        if (m.type === "init") { self.setup(m); }
        else if (m.type === "state") { if (m.state === "waiting") { self.setState("waiting"); } }
        else if (m.type === "error") { self.setState("error", m.message); }
        else if (m.type === "closed") { self.setState("closed"); }
        else if (m.type === "position") { self.anchor = m; }
        else if (m.type === "eof") { self.ended = true; self.stopped = true; self.setState("ended"); }
        return;
      }
      self.queue.push(ev.data);
      if (self.queue.length > 120) { self.queue.splice(0, self.queue.length - 120); }
      self.pump();
    };
    ws.onclose = function () { if (ws === self.ws && !self.stopped && !self.info) { self.later(); } };
  };

  Player.prototype.setup = function (m) {
    var self = this;
    this.box.setAttribute("data-codec", m.codec || "");
    if (this.ms && this.mime === m.mime && this.sb) { return; }  // same track: the init segment follows
    if (!window.MediaSource || !MediaSource.isTypeSupported(m.mime)) {
      this.setState("error", "浏览器不支持该视频格式 / unsupported video format: " + m.mime);
      return;
    }
    this.teardownSource();
    this.mime = m.mime;
    this.queue = this.queue.length ? this.queue : [];
    var ms = new MediaSource();
    this.ms = ms;
    this.url = URL.createObjectURL(ms);
    this.video.src = this.url;
    ms.addEventListener("sourceopen", function () {
      if (ms !== self.ms) { return; }
      try {
        self.sb = ms.addSourceBuffer(m.mime);
        self.sb.mode = "segments";
        self.sb.addEventListener("updateend", function () { self.afterAppend(); self.pump(); });
        self.pump();
      } catch (e) { self.setState("error", String(e)); }
    });
    this.setState("waiting");
  };

  Player.prototype.pump = function () {
    if (!this.sb || this.sb.updating || !this.queue.length || this.ms.readyState !== "open") { return; }
    var data = this.queue.shift();
    try { this.sb.appendBuffer(data); }
    catch (e) {
      if (e.name === "QuotaExceededError") { this.queue.unshift(data); this.trim(true); }
      else { this.reconnect(); }
    }
  };

  Player.prototype.afterAppend = function () {
    var v = this.video, b = v.buffered;
    if (!b.length) { return; }
    var end = b.end(b.length - 1), start = b.start(b.length - 1);
    if (v.currentTime < start || end - v.currentTime > 2.5) { v.currentTime = Math.max(start, end - 0.4); }
    if (v.paused && !this.userPaused) { var p = v.play(); if (p && p.catch) { p.catch(function () {}); } }
    if (this.state !== "playing" && end > start) { this.setState("playing"); this.retries = 0; }
    this.trim(false);
  };

  Player.prototype.trim = function (force) {
    var v = this.video, b = v.buffered;
    if (!this.sb || this.sb.updating || !b.length) { return; }
    if (force || v.currentTime - b.start(0) > 30) {
      try { this.sb.remove(b.start(0), Math.max(b.start(0) + 0.1, v.currentTime - 5)); } catch (e) { /* next time */ }
    }
  };

  Player.prototype.later = function () {
    var self = this;
    if (this.stopped || this.timer) { return; }
    this.retries += 1;
    var delay = Math.min(15000, 1000 * Math.pow(2, Math.min(this.retries - 1, 4)));
    this.timer = window.setTimeout(function () { self.timer = null; self.closeSocket(); self.open(); }, delay);
  };

  Player.prototype.reconnect = function () {
    if (this.stopped) { return; }
    this.closeSocket(); this.teardownSource(); this.setState("reconnecting"); this.later();
  };

  /* Recordings: a session opened by the page (/api/video/playback); the player shows it, the page controls it. */
  Player.prototype.playSession = function (info, name) {
    this.stop();
    this.info = info; this.channelId = info.channel_id; this.name = name || info.name || info.channel_id;
    this.nameEl.textContent = this.name;
    this.stopped = false; this.ended = false; this.anchor = null; this.userPaused = false;
    this.video.playbackRate = 1;
    this.setState("connecting");
    this.connect(info);
  };

  Player.prototype.recordingTime = function () {
    if (!this.anchor) { return null; }
    return this.anchor.t + (this.video.currentTime - this.anchor.media);
  };

  Player.prototype.setRate = function (scale) { this.video.playbackRate = scale; };

  Player.prototype.setPaused = function (paused) {
    this.userPaused = paused;
    if (paused) { this.video.pause(); } else { var p = this.video.play(); if (p && p.catch) { p.catch(function () {}); } }
  };

  Player.prototype.closeSocket = function () {
    if (this.ws) { var ws = this.ws; this.ws = null; try { ws.close(); } catch (e) { /* closed */ } }
  };

  Player.prototype.teardownSource = function () {
    this.sb = null; this.queue = [];
    if (this.ms) { this.ms = null; }
    if (this.url) { URL.revokeObjectURL(this.url); this.url = null; this.video.removeAttribute("src"); this.video.load(); }
    this.mime = null;
  };

  Player.prototype.stop = function () {
    this.stopped = true; this.info = this.info && this.ended ? this.info : null;
    if (this.timer) { window.clearTimeout(this.timer); this.timer = null; }
    this.closeSocket(); this.teardownSource();
    this.setState("closed");
  };

  Player.prototype.destroy = function () { this.stop(); window.clearInterval(this.clockTimer); };

  Player.prototype.snapshot = function () {
    if (!this.channelId) { return; }
    var a = document.createElement("a");
    a.href = "/api/video/snapshot/" + encodeURIComponent(this.channelId);
    a.download = "";
    document.body.appendChild(a); a.click(); a.remove();
  };

  function openLinked(button) {
    var card = button.closest("[data-id]") || button.parentNode;
    var box = card.querySelector(".live-box");
    if (!box) { box = el("div", "live-box"); button.parentNode.insertBefore(box, button.nextSibling); }
    var wid = button.getAttribute("data-live-warning");
    button.disabled = true;
    fetch("/api/video/links?warning_id=" + encodeURIComponent(wid), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        button.disabled = false;
        var chans = (j && j.channels) || [];
        if (!chans.length) { box.textContent = labelsOf(button).no_linked; return; }
        if (box.player) { box.player.destroy(); }
        box.player = new Player(box, {onClose: function () { box.remove(); }});
        box.player.play(chans[0].channel_id, chans[0].name, wid);
      })
      .catch(function () { button.disabled = false; });
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target.closest ? ev.target.closest("[data-live-open],[data-live-warning]") : null;
    if (!t) { return; }
    ev.preventDefault();
    if (t.hasAttribute("data-live-warning")) { openLinked(t); return; }
    var box = document.getElementById(t.getAttribute("data-target") || "live-box");
    if (!box) { return; }
    if (box.player) { box.player.destroy(); }
    box.hidden = false;
    box.player = new Player(box, {onClose: function () { box.hidden = true; }});
    box.player.play(t.getAttribute("data-live-open"), t.getAttribute("data-name"));
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-channel]").forEach(function (box) {
      box.player = new Player(box);
      box.player.play(box.getAttribute("data-live-channel"), box.getAttribute("data-name"));
    });
  });

  window.AnfangPlayer = Player;
})();
