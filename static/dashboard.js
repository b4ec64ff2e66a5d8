// Dashboard behaviour that htmx attributes alone do not cover: the stream-status banner, button feedback,
// the config form's merge-patch encoding and inline errors, and the uPlot charts fed by the `chart` SSE event.
(function () {
  "use strict";

  // ---- stream status: say so when the EventSource breaks; htmx-ext-sse reconnects ----------------------------
  // body[data-stream] = "connecting" | "open" | "broken"
  var streamStatus = document.getElementById("stream-status");
  document.body.dataset.stream = "connecting";
  document.body.addEventListener("htmx:sseError", function () {
    if (document.body.dataset.stream !== "broken") { checkSession(); }
    streamStatus.hidden = false;
    document.body.dataset.stream = "broken";
    syncControls();
  });
  function checkSession() {
    // an EventSource cannot see a 401: ask once per break, and send an expired session to the login page
    fetch("/strategy", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/login"); }
    }).catch(function () { /* server down: the stream keeps retrying */ });
  }
  document.body.addEventListener("htmx:sseOpen", function (evt) {
    streamStatus.hidden = true;
    document.body.dataset.stream = "open";
    syncControls();
    attachChart(evt.detail && evt.detail.source);
  });

  // ---- control buttons: enabled for the state the banner shows; the answer (a 409 says why) is flashed -------
  var RULES = {
    // button id: [enabled in states, shown in states (all when absent)]
    "start-btn": [["STOPPED"]],
    "pause-btn": [["RUNNING"], ["STOPPED", "RUNNING", "KILLED"]],
    "resume-btn": [["PAUSED"], ["PAUSED"]],
    "stop-btn": [["RUNNING", "PAUSED"]],
    "kill-btn": [["STOPPED", "RUNNING", "PAUSED"]],
    "reset-btn": [["KILLED"], ["KILLED"]]
  };
  var HINTS = { KILLED: "KILLED: press Reset (clears the kill latch), then Start", PAUSED: "PAUSED: Resume to trade" };
  function syncControls() {
    var banner = document.querySelector("#banner [data-state]");
    var state = banner ? banner.getAttribute("data-state") : "";
    var live = document.body.dataset.stream !== "broken";  // a page that lost its server must not look usable
    Object.keys(RULES).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) { return; }
      el.disabled = !live || RULES[id][0].indexOf(state) < 0;
      el.hidden = RULES[id].length > 1 && RULES[id][1].indexOf(state) < 0;
    });
    var hint = document.getElementById("controls-hint");
    if (hint) { hint.textContent = live ? (HINTS[state] || "") : "server unreachable: the figures above are stale"; }
  }
  syncControls();
  document.body.addEventListener("htmx:sseMessage", function (evt) {
    if (evt.target && evt.target.id === "banner") { syncControls(); }
  });

  var flash = document.getElementById("flash");
  var flashTimer = null;
  function showFlash(text, isError) {
    flash.textContent = text;
    flash.className = "flash show" + (isError ? " error" : "");
    window.clearTimeout(flashTimer);
    flashTimer = window.setTimeout(function () { flash.className = "flash"; }, 6000);
  }
  function parseJson(xhr) {
    try { return JSON.parse(xhr.responseText); } catch (e) { return null; }
  }
  document.body.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail.elt;
    var action = elt && elt.getAttribute && elt.getAttribute("data-control");
    if (!action) { return; }
    var xhr = evt.detail.xhr;
    var body = parseJson(xhr) || {};
    if (xhr.status === 200) {
      // a stop or kill says what it did: cancelled, flattened at which price, PnL, confirmed when
      var did = (action === "stop" || action === "kill") && body.report ? " — " + body.report.text : "";
      showFlash(action + ": " + body.state + (body.changed ? "" : " (already)") + did, false);
    } else if (action === "start" && xhr.status === 409 && xhr.getResponseHeader("X-Preflight-Adopt") === "needed") {
      // a first live start finds a position or orders already on the account: a human names it before the bot
      // takes it over
      if (window.confirm((body.detail || "A position is open on the account.") +
                         "\n\nAdopt it (the bot manages it from now on) and start?")) {
        htmx.ajax("POST", "/strategy/start?adopt=true", {source: elt, swap: "none"});
      } else {
        showFlash("start cancelled: the position was not adopted", true);
      }
    } else {
      showFlash(action + " refused: " + (body.detail || xhr.status), true);
    }
  });

  // ---- config form: a JSON merge patch of the fields that differ from what the form was loaded with ----------
  var form = document.getElementById("config-form");
  function fieldValue(el) {
    var kind = el.getAttribute("data-kind");
    var raw = el.value.trim();
    if (kind === "bool") { return raw === "true"; }
    if (kind === "int" && /^-?\d+$/.test(raw)) { return parseInt(raw, 10); }
    return raw; // decimals travel as strings to stay exact; anything unparsable goes as typed and the server says why
  }
  function buildPatch() {
    var patch = {};
    var count = 0;
    form.querySelectorAll("[data-kind]").forEach(function (el) {
      if (el.value.trim() === el.getAttribute("data-initial")) { return; }
      var parts = el.name.split(".");
      patch[parts[0]] = patch[parts[0]] || {};
      patch[parts[0]][parts[1]] = fieldValue(el);
      count += 1;
    });
    return count ? patch : null;
  }
  function clearErrors() {
    form.querySelectorAll(".field-error").forEach(function (s) { s.textContent = ""; });
    form.querySelectorAll(".invalid").forEach(function (el) { el.classList.remove("invalid"); });
    document.getElementById("config-errors").textContent = "";
  }
  function showResult(text, isError) {
    var r = document.getElementById("config-result");
    r.textContent = text;
    r.className = isError ? "error" : "ok";
  }

  htmx.defineExtension("merge-patch", {
    onEvent: function (name, evt) {
      if (name === "htmx:configRequest") {
        evt.detail.headers["Content-Type"] = "application/merge-patch+json";
        clearErrors();
        if (!buildPatch()) {
          showResult("nothing changed", false);
          evt.preventDefault();
        }
      }
    },
    encodeParameters: function (xhr) {
      xhr.overrideMimeType("text/json");
      return JSON.stringify(buildPatch());
    }
  });

  form.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.elt !== form) { return; }
    var xhr = evt.detail.xhr;
    var body = parseJson(xhr);
    if (xhr.status === 200 && body) {
      var changed = Object.keys(body.changed || {});
      form.querySelectorAll("[data-kind]").forEach(function (el) {
        el.setAttribute("data-initial", el.value.trim());
      });
      showResult(changed.length ? "applied: " + changed.join(", ") : "applied (no change)", false);
      markFields();
      loadAudit();
      return;
    }
    showResult("refused — nothing changed", true);
    var summary = document.getElementById("config-errors");
    var problems = body && Array.isArray(body.detail) ? body.detail
      : [{ field: "", message: (body && body.detail) || ("HTTP " + xhr.status) }];
    problems.forEach(function (p) {
      var slot = form.querySelector('[data-error-for="' + CSS.escape(p.field) + '"]');
      if (slot) {
        slot.textContent = p.message;
        var input = form.querySelector('[name="' + CSS.escape(p.field) + '"]');
        if (input) { input.classList.add("invalid"); }
      } else {
        var line = document.createElement("div");
        line.textContent = (p.field ? p.field + ": " : "") + p.message;
        summary.appendChild(line);
      }
    });
  });

  document.getElementById("config-revert").addEventListener("click", function () {
    form.querySelectorAll("[data-kind]").forEach(function (el) { // every field back to what runs now
      var running = runningValue(el.name);
      if (running !== null) { el.setAttribute("data-initial", running); }
      el.value = el.getAttribute("data-initial");
    });
    clearErrors();
    showResult("", false);
    markFields();
  });

  // ---- the form follows the running config: a field the user is not editing moves to the running value ----
  // (a curl PATCH, another tab, a revert); every field says when it differs from the config file's value.
  function canonical(el, text) {
    var t = String(text == null ? "" : text).trim();
    var kind = el.getAttribute("data-kind");
    if ((kind === "int" || kind === "decimal") && /^-?\d+(\.\d+)?$/.test(t)) {
      if (t.indexOf(".") >= 0) { t = t.replace(/0+$/, "").replace(/\.$/, ""); }
      t = t.replace(/^(-?)0+(?=\d)/, "$1");
      if (t === "-0") { t = "0"; }
    }
    return t;
  }
  function runningValue(name) {
    var dd = document.querySelector('#config-running [data-running-for="' + CSS.escape(name) + '"]');
    return dd ? dd.textContent.trim() : null;
  }
  function isEditing(el) {
    return document.activeElement === el || canonical(el, el.value) !== canonical(el, el.getAttribute("data-initial"));
  }
  function markFields() {
    form.querySelectorAll("[data-kind]").forEach(function (el) {
      var running = runningValue(el.name);
      if (running === null) { running = el.getAttribute("data-initial"); }
      var file = el.getAttribute("data-file");
      var differsFile = canonical(el, running) !== canonical(el, file);
      var edited = canonical(el, el.value) !== canonical(el, running);
      var mark = form.querySelector('[data-differs-for="' + CSS.escape(el.name) + '"]');
      el.classList.toggle("differs-file", differsFile);
      el.classList.toggle("edited", edited);
      var notes = [];
      if (differsFile) { notes.push("≠ file (" + file + ")"); }
      if (edited) { notes.push("edited; running " + running); }
      mark.textContent = notes.join(" · ");
      mark.hidden = notes.length === 0;
      mark.title = differsFile ? "the running value differs from the config file's; Revert to file returns it" : "";
    });
  }
  function followRunning() {
    form.querySelectorAll("[data-kind]").forEach(function (el) {
      var running = runningValue(el.name);
      if (running === null || isEditing(el)) { return; }
      if (canonical(el, el.value) !== canonical(el, running)) { el.value = running; }
      el.setAttribute("data-initial", running);
    });
    markFields();
  }
  form.addEventListener("input", markFields);
  form.addEventListener("change", markFields);
  document.body.addEventListener("htmx:sseMessage", function (evt) {
    if (evt.target && evt.target.id === "config-running") {
      followRunning();
      loadAudit();
    }
  });
  followRunning();

  // ---- revert to file: strategy.* and risk.* back to the config file's values (audited server-side) --------
  document.getElementById("config-revert-file").addEventListener("click", function () {
    if (!window.confirm("Return every strategy.* and risk.* value to the config file's?")) { return; }
    clearErrors();
    fetch("/config/revert", {
      method: "POST", credentials: "same-origin", headers: { "HX-Request": "true" }
    }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    }).then(function (res) {
      if (res.status !== 200) {
        showResult("revert refused: " + JSON.stringify(res.body.detail || res.status), true);
        return;
      }
      var cfg = res.body.config || {};
      form.querySelectorAll("[data-kind]").forEach(function (el) { // edits are discarded: the file's values
        var parts = el.name.split(".");
        var v = (cfg[parts[0]] || {})[parts[1]];
        var text = typeof v === "boolean" ? String(v) : String(v == null ? "" : v);
        el.value = text;
        el.setAttribute("data-initial", text);
      });
      var changed = Object.keys(res.body.changed || {});
      showResult(changed.length ? "reverted to file: " + changed.join(", ") : "already the file's values", false);
      markFields();
      loadAudit();
    }).catch(function () { showResult("revert failed: server unreachable", true); });
  });

  // ---- audit panel: the newest config changes (GET /config/audit) ------------------------------------------
  var auditRows = document.getElementById("audit-rows");
  var auditPending = false;
  var auditAgain = false; // a change heard while a load was out: load once more after it
  function cell(text) { var td = document.createElement("td"); td.textContent = text; return td; }
  function loadAudit() {
    if (!auditRows) { return; }
    if (auditPending) { auditAgain = true; return; }
    auditPending = true;
    fetch("/config/audit?limit=20", { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : { items: [] };
    }).then(function (body) {
      auditRows.textContent = "";
      (body.items || []).forEach(function (a) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-audit-field", a.field);
        [a.ts.replace("T", " ").slice(0, 19), a.who + (a.action === "revert" ? " (revert)" : ""), a.field, a.old, a.new]
          .forEach(function (t) { tr.appendChild(cell(t)); });
        auditRows.appendChild(tr);
      });
      if (!auditRows.children.length) {
        var tr = document.createElement("tr");
        var td = cell("no live change yet");
        td.colSpan = 5;
        tr.appendChild(td);
        auditRows.appendChild(tr);
      }
    }).catch(function () { /* the next change retries */ }).then(function () {
      auditPending = false;
      if (auditAgain) { auditAgain = false; loadAudit(); }
    });
  }
  loadAudit();

  // ---- charts: mid with own fills, and PnL through the day ---------------------------------------------------
  var midPlot = null;
  var pnlPlot = null;
  var attached = typeof WeakSet === "function" ? new WeakSet() : null;

  function width(el) { return Math.max(240, el.clientWidth || 600); }

  function midData(payload) {
    // one x axis for mid and fills: fill points sit on their own timestamps, mid is null there (gaps spanned)
    var rows = [];
    (payload.mid || []).forEach(function (p) { rows.push([p[0], Number(p[1]), null, null]); });
    (payload.fills || []).forEach(function (f) {
      var buy = String(f[2]).toUpperCase() === "BUY";
      rows.push([f[0], null, buy ? Number(f[1]) : null, buy ? null : Number(f[1])]);
    });
    rows.sort(function (a, b) { return a[0] - b[0]; });
    return [0, 1, 2, 3].map(function (i) { return rows.map(function (r) { return r[i]; }); });
  }

  function pnlData(payload) {
    var pts = payload.pnl || [];
    return [pts.map(function (p) { return p[0]; }), pts.map(function (p) { return Number(p[1]); })];
  }

  function makePlots() {
    var midEl = document.getElementById("chart-mid");
    var pnlEl = document.getElementById("chart-pnl");
    var points = function (color) {
      return { stroke: color, fill: color, paths: function () { return null; }, points: { show: true, size: 8 } };
    };
    // readable on the dark page: light axis text, faint grid; the y axis as wide as its longest label
    var axisStyle = { stroke: "#c9d1d9", grid: { stroke: "#262d37", width: 1 }, ticks: { stroke: "#262d37", width: 1 } };
    var label = function (v) { return v == null ? "" : v.toLocaleString("en-US"); };
    var yAxis = Object.assign({}, axisStyle, {
      values: function (u, vals) { return vals.map(label); },
      size: function (u, values) {
        var longest = (values || []).reduce(function (m, s) { return Math.max(m, String(s).length); }, 4);
        return longest * 8 + 18;
      }
    });
    var xAxis = Object.assign({}, axisStyle);
    var tz = (document.getElementById("charts") || { dataset: {} }).dataset.tz || "Asia/Tokyo";
    var tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); };
    midPlot = new uPlot({
      width: width(midEl), height: 220,
      tzDate: tzDate,
      scales: { x: { time: true } },
      axes: [xAxis, yAxis],
      series: [{}, { label: "mid", stroke: "#8ab4f8", spanGaps: true, points: { show: false } },
        Object.assign({ label: "buy fill" }, points("#4caf50")),
        Object.assign({ label: "sell fill" }, points("#ef5350"))]
    }, [[], [], [], []], midEl);
    pnlPlot = new uPlot({
      width: width(pnlEl), height: 160,
      tzDate: tzDate,
      scales: { x: { time: true } },
      axes: [xAxis, yAxis],
      series: [{}, { label: "PnL today (JPY)", stroke: "#ffca28", fill: "rgba(255,202,40,0.08)" }]
    }, [[], []], pnlEl);
    window.addEventListener("resize", function () {
      midPlot.setSize({ width: width(midEl), height: 220 });
      pnlPlot.setSize({ width: width(pnlEl), height: 160 });
    });
  }

  // the legend shows the latest figures until the pointer picks a point (uPlot's default reads "--")
  function latestInLegend(plot, series) {
    if (plot.cursor.left != null && plot.cursor.left >= 0) { return; }
    var ys = plot.data[series] || [];
    for (var i = ys.length - 1; i >= 0; i--) {
      if (ys[i] != null) { plot.setLegend({ idx: i }); return; }
    }
  }

  function onChart(evt) {
    var payload;
    try { payload = JSON.parse(evt.data); } catch (e) { return; }
    if (!midPlot) { makePlots(); }
    var mid = midData(payload);
    midPlot.setData(mid);
    pnlPlot.setData(pnlData(payload));
    var xs = mid[0];
    if (xs.length > 1) { // same time window on both charts
      pnlPlot.setScale("x", { min: xs[0], max: xs[xs.length - 1] });
    }
    latestInLegend(midPlot, 1);
    latestInLegend(pnlPlot, 1);
  }

  function attachChart(source) {
    if (!source || typeof uPlot === "undefined") { return; }
    if (attached) {
      if (attached.has(source)) { return; }
      attached.add(source);
    }
    source.addEventListener("chart", onChart);
  }
})();
