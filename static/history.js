// The History page: GET /history/daily → the days table and the cumulative equity chart (uPlot); GET /trades
// → the trade table, filtered by day / side / tag, paged with the server's next_cursor. Money arrives as
// decimal strings and is shown as sent; only the chart turns it into numbers.
(function () {
  "use strict";

  var status = document.getElementById("history-status");
  function say(text) { status.textContent = text; }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "—" : String(text);
    if (cls) { td.className = cls; }
    return td;
  }
  function getJson(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/login"); }
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    });
  }
  function dayToUnix(day) { // YYYYMMDD → seconds at noon UTC (a point per day; the axis shows dates)
    return Date.UTC(+day.slice(0, 4), +day.slice(4, 6) - 1, +day.slice(6, 8), 12) / 1000;
  }

  // ---- days and equity --------------------------------------------------------------------------------------
  var equityPlot = null;
  function drawEquity(days) {
    var el = document.getElementById("chart-equity");
    var xs = [], ys = [], total = 0;
    days.forEach(function (d) {
      total += Number(d.realized_jpy) - Number(d.fees_jpy);
      xs.push(dayToUnix(d.day));
      ys.push(total);
    });
    if (typeof uPlot === "undefined") { return; }
    if (!equityPlot) {
      equityPlot = new uPlot({
        width: Math.max(240, el.clientWidth || 600), height: 220,
        scales: { x: { time: true } },
        axes: [{}, { size: 80, values: function (u, vals) { return vals.map(function (v) { return v.toLocaleString(); }); } }],
        series: [{}, { label: "cumulative JPY", stroke: "#ffca28", fill: "rgba(255,202,40,0.08)", points: { show: true } }]
      }, [xs, ys], el);
      window.addEventListener("resize", function () {
        equityPlot.setSize({ width: Math.max(240, el.clientWidth || 600), height: 220 });
      });
    } else {
      equityPlot.setData([xs, ys]);
    }
    el.setAttribute("data-points", String(xs.length));
    el.setAttribute("data-total", xs.length ? String(Math.round(total * 1000) / 1000) : "");
  }

  function drawDays(days) {
    var tbody = document.getElementById("days-rows");
    var select = document.getElementById("filter-day");
    tbody.textContent = "";
    days.slice().reverse().forEach(function (d) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-day", d.day);
      var kills = (d.kills || []).map(function (k) { return k.at.slice(11, 19) + " " + k.reason; }).join("; ");
      [[d.day], [d.realized_jpy, "num"], [d.fees_jpy, "num"], [d.volume_btc, "num"], [d.fills, "num"],
        [d.win_rate == null ? null : Math.round(d.win_rate * 100) + " %", "num"], [d.max_drawdown_jpy, "num"],
        [kills || "—"]].forEach(function (c) { tr.appendChild(cell(c[0], c[1])); });
      tbody.appendChild(tr);
      if (!select.querySelector('option[value="' + d.day + '"]')) {
        var o = document.createElement("option");
        o.value = d.day;
        o.textContent = d.day;
        select.appendChild(o);
      }
    });
    if (!days.length) {
      var tr = document.createElement("tr");
      var td = cell("no trading day logged yet");
      td.colSpan = 8;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function loadDays() {
    return getJson("/history/daily").then(function (res) {
      if (res.status !== 200) { say("history unavailable (HTTP " + res.status + ")"); return; }
      drawDays(res.body);
      drawEquity(res.body);
      document.body.dataset.daysLoaded = "true";
    });
  }

  // ---- trades, paged ----------------------------------------------------------------------------------------
  var filters = document.getElementById("trade-filters");
  var older = document.getElementById("page-older");
  var newest = document.getElementById("page-newest");
  var note = document.getElementById("page-note");
  var errorSlot = document.getElementById("filter-error");
  var nextCursor = null;
  var pageNo = 1;

  function query(cursor) {
    var params = new URLSearchParams();
    new FormData(filters).forEach(function (v, k) { if (String(v).trim()) { params.set(k, String(v).trim()); } });
    if (cursor) { params.set("cursor", cursor); }
    return "/trades?" + params.toString();
  }

  function drawTrades(items) {
    var tbody = document.getElementById("trade-rows");
    tbody.textContent = "";
    items.forEach(function (t) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-exec-id", t.exec_id);
      tr.className = t.side === "BUY" ? "buy" : "sell";
      [[t.ts.replace("T", " ").slice(0, 23)], [t.side], [t.price, "num"], [t.size, "num"], [t.fee, "num"], [t.tag],
        [t.pnl_jpy, "num"], [t.inventory_after, "num"], [t.order_id]].forEach(function (c) {
        tr.appendChild(cell(c[0], c[1]));
      });
      tbody.appendChild(tr);
    });
    if (!items.length) {
      var tr = document.createElement("tr");
      var td = cell("no trades match");
      td.colSpan = 9;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function loadTrades(cursor) {
    errorSlot.textContent = "";
    return getJson(query(cursor)).then(function (res) {
      if (res.status !== 200) {
        errorSlot.textContent = typeof res.body.detail === "string" ? res.body.detail : "HTTP " + res.status;
        return;
      }
      drawTrades(res.body.items);
      nextCursor = res.body.next_cursor;
      older.disabled = !nextCursor;
      newest.disabled = !cursor;
      note.textContent = "page " + pageNo + (nextCursor ? "" : " (last)");
      document.body.dataset.tradesPage = String(pageNo);
    });
  }

  filters.addEventListener("submit", function (evt) {
    evt.preventDefault();
    pageNo = 1;
    loadTrades(null);
  });
  older.addEventListener("click", function () {
    if (!nextCursor) { return; }
    pageNo += 1;
    loadTrades(nextCursor);
  });
  newest.addEventListener("click", function () {
    pageNo = 1;
    loadTrades(null);
  });

  loadDays().then(function () { return loadTrades(null); }).catch(function () { say("server unreachable"); });
})();
