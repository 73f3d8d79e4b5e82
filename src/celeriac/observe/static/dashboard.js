/* celeriac monitor dashboard: polls api/state and api/history, draws tables and uPlot charts. */
(function () {
  "use strict";

  var RANGES = [900, 3600, 21600, 86400, 604800, 2592000];
  var PALETTE = [
    "#2f6fdb", "#e0642a", "#2b9a66", "#c23a8c", "#7a5af5",
    "#b8860b", "#1a9bb0", "#8c564b", "#d6455d", "#5b6b7a",
  ];
  var CHART_HEIGHT = 240;

  var view = {
    state: null, // last /api/state
    history: null, // last /api/history
    skew: 0, // server clock minus this browser's, seconds
    selected: load("celeriac.queue", null),
    userSelected: load("celeriac.queue", null) !== null,
    range: Number(load("celeriac.range", 3600)) || 3600,
    lastOk: null,
    failure: null,
    historySeq: 0,
    historyTimer: null,
    colors: {},
  };
  if (RANGES.indexOf(view.range) < 0) view.range = 3600;

  // -- small helpers ------------------------------------------------------------------------

  function load(key, fallback) {
    try {
      var v = window.localStorage.getItem(key);
      return v === null ? fallback : v;
    } catch (e) {
      return fallback;
    }
  }

  function save(key, value) {
    try {
      window.localStorage.setItem(key, String(value));
    } catch (e) {
      /* private mode: the choice lasts until reload */
    }
  }

  function $(id) {
    return document.getElementById(id);
  }

  /* build an element: el("td", {class: "x", title: "y"}, "text", otherNode) */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) continue;
        if (k === "class") node.className = attrs[k];
        else if (k === "style") node.style.cssText = attrs[k];
        else node.setAttribute(k, attrs[k]);
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function colorOf(name) {
    if (!(name in view.colors)) {
      view.colors[name] = PALETTE[Object.keys(view.colors).length % PALETTE.length];
    }
    return view.colors[name];
  }

  function nowServer() {
    return Date.now() / 1000 + view.skew;
  }

  // -- number formats -----------------------------------------------------------------------

  var DASH = "\u2013";

  function short(x) {
    var a = Math.abs(x);
    return a < 10 ? x.toFixed(1).replace(/\.0$/, "") : x.toFixed(0);
  }

  function fmtCount(n) {
    if (n === null || n === undefined) return DASH;
    var a = Math.abs(n);
    if (a < 1000) return String(Math.round(n));
    if (a < 1e6) return short(n / 1e3) + "k";
    if (a < 1e9) return short(n / 1e6) + "M";
    return short(n / 1e9) + "G";
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return DASH;
    if (r === 0) return "0";
    var a = Math.abs(r);
    if (a < 0.01) return "<0.01";
    if (a < 1) return r.toFixed(2);
    if (a < 10) return r.toFixed(1);
    if (a < 1000) return r.toFixed(0);
    return fmtCount(r);
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return DASH;
    if (s === 0) return "0 s";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " \u00b5s";
    if (s < 1) return (s * 1000 < 10 ? (s * 1000).toFixed(1) : (s * 1000).toFixed(0)) + " ms";
    if (s < 60) return short(s) + " s";
    if (s < 3600) return short(s / 60) + " min";
    if (s < 172800) return short(s / 3600) + " h";
    return short(s / 86400) + " d";
  }

  function fmtKiB(k) {
    if (k === null || k === undefined) return DASH;
    if (k === 0) return "0";
    if (k < 1024) return Math.round(k) + " KiB";
    if (k < 1024 * 1024) return short(k / 1024) + " MiB";
    return (k / 1048576).toFixed(1) + " GiB";
  }

  function fmtPct(u) {
    if (u === null || u === undefined) return DASH;
    return (u * 100 < 10 ? (u * 100).toFixed(1) : (u * 100).toFixed(0)) + " %";
  }

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function fmtClock(t) {
    if (!t) return DASH;
    var d = new Date(t * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function fmtWhen(t) {
    if (!t) return DASH;
    var d = new Date(t * 1000);
    var today = new Date();
    var clock = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
    if (d.toDateString() === today.toDateString()) return clock;
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + clock;
  }

  function fmtAgo(seconds) {
    if (seconds < 1.5) return "just now";
    return fmtDuration(Math.round(seconds)) + " ago";
  }

  // -- fetching -----------------------------------------------------------------------------

  function getJSON(url) {
    return fetch(url, { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (text) {
          var err = new Error((text || "").trim() || "HTTP " + r.status);
          err.status = r.status;
          throw err;
        });
      }
      return r.json();
    });
  }

  function stateEvery() {
    var interval = view.state ? Number(view.state.interval) || 5 : 5;
    return Math.max(1, interval) * 1000;
  }

  function historyEvery() {
    if (view.range <= 3600) return Math.max(5000, stateEvery());
    if (view.range <= 21600) return 15000;
    return 60000;
  }

  function pollState() {
    getJSON("api/state")
      .then(function (state) {
        view.skew = state.now - Date.now() / 1000;
        view.state = state;
        view.lastOk = Date.now();
        view.failure = null;
        renderState();
      })
      .catch(function (err) {
        view.failure = err;
      })
      .then(function () {
        renderStatus();
        window.setTimeout(pollState, stateEvery());
      });
  }

  function pollHistory() {
    window.clearTimeout(view.historyTimer);
    var seq = ++view.historySeq;
    getJSON("api/history?range=" + view.range)
      .then(function (history) {
        if (seq !== view.historySeq) return; // the range changed meanwhile
        view.history = history;
        renderCharts();
      })
      .catch(function (err) {
        if (seq === view.historySeq) view.failure = err;
        renderStatus();
      })
      .then(function () {
        if (seq === view.historySeq) view.historyTimer = window.setTimeout(pollHistory, historyEvery());
      });
  }

  // -- header and status --------------------------------------------------------------------

  function renderStatus() {
    var status = $("status");
    var state = view.state;
    var cls, text, title;
    if (view.failure) {
      cls = "status-down";
      text = view.failure.status === 401 ? "unauthorised" : "disconnected";
      title = String(view.failure.message || view.failure);
      if (view.lastOk) title += " (last answer " + fmtAgo((Date.now() - view.lastOk) / 1000) + ")";
    } else if (!state) {
      cls = "status-wait";
      text = "connecting";
      title = "waiting for the monitor";
    } else {
      var age = nowServer() - state.at;
      var limit = Math.max(3 * (Number(state.interval) || 5), 10);
      if (state.error) {
        cls = "status-stale";
        text = "stale";
        title = "the last sample failed: " + state.error;
      } else if (age > limit) {
        cls = "status-stale";
        text = "stale";
        title = "the monitor has not sampled for " + fmtDuration(Math.round(age));
      } else {
        cls = "status-live";
        text = "live";
        title = "sampling every " + fmtDuration(state.interval);
      }
    }
    status.className = "status " + cls;
    status.textContent = text;
    status.title = title;
    document.body.classList.toggle("is-down", cls === "status-down");
    document.body.classList.toggle("is-stale", cls === "status-stale");
    if (state) {
      $("sampled").textContent = fmtClock(state.at) + " (" + fmtAgo(nowServer() - state.at) + ")";
    }
  }

  function renderState() {
    var state = view.state;
    $("broker").textContent = state.broker;
    var n = state.alerts.length;
    document.title = (n ? "(" + n + ") " : "") + "celeriac monitor";
    $("sample-cost").textContent = "last sample took " + fmtDuration(state.sample_s);
    chooseQueue();
    renderAlerts();
    renderQueues();
    renderWorkers();
    renderRecentAlerts();
    renderStatus();
  }

  function chooseQueue() {
    var queues = view.state.queues;
    var names = queues.map(function (q) {
      return q.name;
    });
    if (view.selected !== null && names.indexOf(view.selected) >= 0) return;
    if (!queues.length) return;
    // the queue in most trouble, else the longest
    var pick = queues.slice().sort(function (a, b) {
      return stateRank(b) - stateRank(a) || alertRank(b.name) - alertRank(a.name) || b.length - a.length;
    })[0];
    setSelected(pick.name, false);
  }

  function stateRank(q) {
    return q.state === "overloaded" ? 2 : q.state === "growing" ? 1 : 0;
  }

  function alertRank(queue) {
    var rank = 0;
    view.state.alerts.forEach(function (a) {
      if (a.queue === queue) rank = Math.max(rank, a.level === "critical" ? 2 : 1);
    });
    return rank;
  }

  function setSelected(name, byUser) {
    view.selected = name;
    if (byUser) save("celeriac.queue", name);
    var labels = document.querySelectorAll("[data-selected-queue]");
    for (var i = 0; i < labels.length; i++) labels[i].textContent = name || "";
  }

  // -- alerts -------------------------------------------------------------------------------

  function renderAlerts() {
    var state = view.state;
    var box = $("alerts");
    box.textContent = "";
    if (state.error) {
      box.appendChild(
        el(
          "div",
          { class: "alert alert-error" },
          el("span", { class: "level" }, "broker"),
          el("span", { class: "message" }, "cannot sample the broker: " + state.error),
        ),
      );
    }
    var alerts = state.alerts.slice().sort(function (a, b) {
      return (b.level === "critical") - (a.level === "critical") || a.since - b.since;
    });
    alerts.forEach(function (a) {
      var level = a.level === "critical" ? "critical" : "warning";
      box.appendChild(
        el(
          "div",
          { class: "alert alert-" + level, "data-key": a.key },
          el("span", { class: "level" }, level),
          el("span", { class: "message" }, a.message),
          el("span", { class: "since", title: new Date(a.since * 1000).toString() },
            "since " + fmtWhen(a.since) + " (" + fmtDuration(Math.max(0, Math.round(nowServer() - a.since))) + ")"),
        ),
      );
    });
    if (!alerts.length && !state.error) {
      box.appendChild(el("div", { class: "alert alert-none" }, "\u2713 No active alerts"));
    }
  }

  function renderRecentAlerts() {
    var body = $("recent-alerts").tBodies[0];
    body.textContent = "";
    var rows = view.state.recent_alerts || [];
    if (!rows.length) {
      body.appendChild(el("tr", { class: "empty" }, el("td", { colspan: "4" }, "no alerts in the last 24 h")));
      return;
    }
    rows.slice(0, 30).forEach(function (a) {
      var badge = a.level === "critical" ? "badge badge-crit" : "badge badge-warn";
      body.appendChild(
        el(
          "tr",
          null,
          el("td", { class: "l" }, fmtWhen(a.fired_at)),
          el("td", { class: "l" + (a.cleared_at ? " dim" : " hot") }, a.cleared_at ? fmtWhen(a.cleared_at) : "active"),
          el("td", { class: "l" }, el("span", { class: badge }, a.level)),
          el("td", { class: "msg" }, a.message),
        ),
      );
    });
  }

  // -- queues -------------------------------------------------------------------------------

  function cell(text, cls, title) {
    return el("td", { class: cls || null, title: title || null }, text);
  }

  function queueAlerts(name) {
    var kinds = {};
    view.state.alerts.forEach(function (a) {
      if (a.queue === name) kinds[a.kind] = a.level;
    });
    return kinds;
  }

  function levelClass(level) {
    return level === "critical" ? "hot" : level === "warning" ? "warm" : null;
  }

  function utilisationCell(u) {
    if (u === null || u === undefined) return cell(DASH, "dim");
    var cls = u >= 1 ? "hot" : u >= 0.8 ? "warm" : "";
    var bar = el("span", { class: "util-bar " + cls }, el("span", { style: "width:" + Math.min(100, u * 100).toFixed(0) + "%" }));
    return el("td", { class: cls || null }, el("span", { class: "util" }, bar, fmtPct(u)));
  }

  function drainCell(q) {
    if (q.drain_s !== null && q.drain_s !== undefined) return cell(fmtDuration(q.drain_s));
    if (q.length > 0 && (q.state !== "ok" || (q.arrival_rate !== null && q.service_rate !== null))) {
      return cell("never", "hot", "arrivals keep up with or outrun service: the backlog does not shrink");
    }
    return cell(DASH, "dim");
  }

  function statusCell(q, kinds) {
    var badge;
    if (q.overloaded) {
      var more = q.extra_processes ? " +" + q.extra_processes + " proc" : "";
      badge = el("span", { class: "badge badge-over", title: "arrivals outrun service" }, "OVERLOADED" + more);
    } else if (Object.values(kinds).indexOf("critical") >= 0) {
      badge = el("span", { class: "badge badge-crit" }, "critical");
    } else if (q.state === "growing") {
      badge = el("span", {
        class: "badge badge-warn",
        title: "at these rates the backlog does not drain; it becomes an overload if it lasts",
      }, "growing");
    } else if (Object.keys(kinds).length) {
      badge = el("span", { class: "badge badge-warn" }, "warning");
    } else if (!q.processes && !q.length) {
      badge = el("span", { class: "badge badge-idle" }, "idle");
    } else if (!q.processes) {
      badge = el("span", { class: "badge badge-warn", title: "no live celeriac worker consumes it" }, "no workers");
    } else {
      badge = el("span", { class: "badge badge-ok" }, "ok");
    }
    return el("td", { class: "l" }, badge);
  }

  function renderQueues() {
    var body = $("queues").tBodies[0];
    body.textContent = "";
    var queues = view.state.queues;
    if (!queues.length) {
      body.appendChild(el("tr", { class: "empty" }, el("td", { colspan: "13" }, "no queues yet")));
      return;
    }
    queues.forEach(function (q) {
      var kinds = queueAlerts(q.name);
      var consumers = q.processes
        ? q.processes + " process(es) on " + q.consumers.join(", ")
        : "no live celeriac worker consumes it";
      var age = q.oldest_age === null ? DASH : (q.oldest_age_estimated ? "~" : "") + fmtDuration(q.oldest_age);
      var row = el(
        "tr",
        { "data-queue": q.name, class: q.name === view.selected ? "selected" : null },
        el("td", { class: "l name", title: consumers },
          el("span", { class: "swatch", style: "background:" + colorOf(q.name) }), q.name),
        cell(fmtCount(q.length), "length " + (levelClass(kinds.length) || ""), q.length + " messages" +
          (q.scheduled ? " (" + q.scheduled + " scheduled for later)" : "")),
        cell(fmtCount(q.ready), q.ready ? null : "dim"),
        cell(fmtCount(q.reserved), q.reserved ? null : "dim"),
        cell(fmtCount(q.running), q.running ? null : "dim"),
        cell(age, levelClass(kinds.oldest_age) || (q.oldest_age === null ? "dim" : null),
          q.oldest_age_estimated ? "estimated from the monitor's history" : null),
        cell(fmtRate(q.arrival_rate), q.arrival_rate === null ? "dim" : null),
        cell(fmtRate(q.service_rate), q.service_rate === null ? "dim" : null),
        utilisationCell(q.utilisation),
        drainCell(q),
        cell(fmtDuration(q.wait_s), levelClass(kinds.wait) || (q.wait_s === null ? "dim" : null)),
        cell(fmtDuration(q.p95), q.p95 === null ? "dim" : null),
        statusCell(q, kinds),
      );
      body.appendChild(row);
    });
  }

  // -- workers ------------------------------------------------------------------------------

  function renderWorkers() {
    var body = $("workers").tBodies[0];
    body.textContent = "";
    var nodes = view.state.nodes;
    if (!nodes.length) {
      body.appendChild(el("tr", { class: "empty" }, el("td", { colspan: "9" }, "no live workers")));
      return;
    }
    nodes.forEach(function (n) {
      var tasks = 0,
        failed = 0;
      n.children.forEach(function (c) {
        tasks += c.tasks || 0;
        failed += c.failed || 0;
      });
      body.appendChild(
        el(
          "tr",
          { class: "node", "data-node": n.node },
          el("td", { class: "l name", title: "queues: " + n.queues.join(", ") },
            el("span", { class: "swatch", style: "background:" + colorOf("node:" + n.node) }),
            n.node + "  \u00b7  " + n.children.length + "/" + n.concurrency + " children"),
          cell(""),
          cell(fmtKiB(n.master_rss_kib), null, "master RSS"),
          cell(""),
          cell(""),
          cell(""),
          cell(fmtCount(tasks)),
          cell(fmtCount(failed), failed ? "warm" : "dim"),
          el("td", { class: "l queues" }, "queues: " + n.queues.join(", ")),
        ),
      );
      n.children.forEach(function (c) {
        body.appendChild(
          el(
            "tr",
            { class: "child" },
            el("td", { class: "l name" }, "child #" + c.index),
            cell(String(c.pid), "dim"),
            cell(fmtKiB(c.rss_kib)),
            cell(fmtKiB(c.uss_kib)),
            cell(fmtKiB(c.peak_rss_kib), "dim"),
            cell(c.prefetch === null ? DASH : String(c.prefetch)),
            cell(fmtCount(c.tasks)),
            cell(fmtCount(c.failed), c.failed ? "warm" : "dim"),
            el("td", { class: "task" + (c.running ? "" : " dim") }, c.running || "idle"),
          ),
        );
      });
    });
  }

  // -- charts -------------------------------------------------------------------------------

  var charts = {};

  /* series of different time stamps on one x axis: the union of the times, null where missing */
  function align(parts) {
    var seen = {};
    var xs = [];
    parts.forEach(function (p) {
      p.t.forEach(function (t) {
        if (!(t in seen)) {
          seen[t] = true;
          xs.push(t);
        }
      });
    });
    xs.sort(function (a, b) {
      return a - b;
    });
    var index = {};
    xs.forEach(function (t, i) {
      index[t] = i;
    });
    var data = [xs];
    parts.forEach(function (p) {
      var ys = new Array(xs.length).fill(null);
      p.t.forEach(function (t, i) {
        ys[index[t]] = p.v[i];
      });
      data.push(ys);
    });
    return data;
  }

  function xRange(data) {
    var h = view.history;
    var until = h.until;
    var since = h.since;
    var xs = data[0];
    if (xs.length) {
      var first = xs[0];
      var padding = Math.max((until - first) * 0.03, 1);
      since = Math.max(since, first - padding);
    }
    return [since, until];
  }

  function hasValues(data) {
    for (var s = 1; s < data.length; s++) {
      for (var i = 0; i < data[s].length; i++) if (data[s][i] !== null && data[s][i] !== undefined) return true;
    }
    return false;
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  /* time ticks in 24 h local time: seconds only where ticks are seconds apart, the date where it changes */
  function timeTicks(u, splits, axisIdx, space, incr) {
    var lastDay = null;
    return splits.map(function (t) {
      var d = new Date(t * 1000);
      var day = MONTHS[d.getMonth()] + " " + d.getDate();
      var text;
      if (incr >= 86400) text = day;
      else if (incr >= 60) text = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
      else text = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
      if (incr < 86400 && lastDay !== null && day !== lastDay) text = day + " " + text;
      lastDay = day;
      return text;
    });
  }

  /* the legend shows the value under the cursor, or the latest one when the cursor is elsewhere */
  function legendValue(format) {
    return function (u, v, seriesIdx, idx) {
      if (idx === null || idx === undefined) {
        var ys = u.data[seriesIdx] || [];
        v = null;
        for (var i = ys.length - 1; i >= 0; i--) {
          if (ys[i] !== null && ys[i] !== undefined) {
            v = ys[i];
            break;
          }
        }
      }
      return v === null || v === undefined ? DASH : format(v);
    };
  }

  function fmtStamp(t) {
    var d = new Date(t * 1000);
    return fmtWhen(t) + ":" + pad2(d.getSeconds());
  }

  /* steps of the memory axis, KiB: 1, 2, 5, 10, 20, 25, 50, 100, 200, 500 MiB, then GiB */
  var MEMORY_STEPS = [256, 512, 1024, 2048, 5120, 10240, 20480, 25600, 51200, 102400, 204800, 512000,
    1048576, 2097152, 5242880, 10485760, 20971520, 52428800];

  function axisStyle() {
    return {
      stroke: "#6a737d",
      grid: { stroke: "#eef0f2", width: 1 },
      ticks: { stroke: "#e3e6ea", width: 1 },
      font: "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    };
  }

  function draw(id, series, data, format, emptyText, steps) {
    var box = $(id);
    var key = JSON.stringify(series.map(function (s) {
      return [s.label, s.stroke, s.dash || null];
    }));
    var chart = charts[id];
    var range = xRange(data);
    if (!chart || chart.key !== key) {
      if (chart) chart.u.destroy();
      box.textContent = "";
      chart = charts[id] = { key: key, range: range, u: null };
      var x = axisStyle();
      x.values = timeTicks;
      var y = axisStyle();
      y.size = 64;
      y.values = function (u, splits) {
        return splits.map(format);
      };
      if (steps) y.incrs = steps;
      var opts = {
        width: Math.max(box.clientWidth, 300),
        height: CHART_HEIGHT,
        series: [{ label: "time", value: legendValue(fmtStamp) }].concat(
          series.map(function (s) {
            return {
              label: s.label,
              stroke: s.stroke,
              width: s.width || 1.75,
              dash: s.dash,
              fill: s.fill,
              spanGaps: false,
              value: legendValue(format),
            };
          }),
        ),
        scales: {
          x: {
            time: true,
            range: function (u, min, max) {
              return chart.range || [min, max];
            },
          },
          y: {
            range: function (u, min, max) {
              return [0, max > 0 ? max * 1.1 : 1];
            },
          },
        },
        axes: [x, y],
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: true },
      };
      chart.u = new uPlot(opts, data, box);
      box.appendChild(el("div", { class: "no-data", hidden: "hidden" }));
    } else {
      chart.range = range;
      chart.u.setData(data);
    }
    var note = box.querySelector(".no-data");
    var empty = !hasValues(data);
    note.textContent = emptyText;
    note.hidden = !empty;
  }

  function renderCharts() {
    var h = view.history;
    if (!h) return;
    var queueNames = Object.keys(h.queues);
    if (view.state) {
      // the state's order (and colours) first
      var order = view.state.queues.map(function (q) {
        return q.name;
      });
      queueNames.sort(function (a, b) {
        var ia = order.indexOf(a), ib = order.indexOf(b);
        return (ia < 0 ? 1e9 : ia) - (ib < 0 ? 1e9 : ib) || (a < b ? -1 : 1);
      });
    }

    var lengths = queueNames.map(function (name) {
      return { t: h.queues[name].t, v: h.queues[name].length };
    });
    draw(
      "chart-length",
      queueNames.map(function (name) {
        return { label: name, stroke: colorOf(name) };
      }),
      align(lengths),
      fmtCount,
      "no samples in this range yet",
    );

    var q = view.selected !== null ? h.queues[view.selected] : null;
    var t = q ? q.t : [];
    var pick = function (name) {
      return q ? q[name] : [];
    };
    draw(
      "chart-rates",
      [
        { label: "arrival \u03bb", stroke: "#e0642a", fill: "rgba(224,100,42,0.08)" },
        { label: "service \u03bc", stroke: "#2b9a66" },
      ],
      [t, pick("arrival_rate"), pick("service_rate")],
      fmtRate,
      q ? "no rates: no worker reports run counts for this queue yet" : "no queue selected",
    );
    draw(
      "chart-runtime",
      [
        { label: "p50", stroke: "#2f6fdb" },
        { label: "p95", stroke: "#e0642a" },
        { label: "p99", stroke: "#c0281c", dash: [5, 4] },
      ],
      [t, pick("p50"), pick("p95"), pick("p99")],
      fmtDuration,
      q ? "no run times: nothing from this queue finished in this range" : "no queue selected",
    );

    var nodeNames = Object.keys(h.nodes);
    var parts = [];
    var memSeries = [];
    nodeNames.forEach(function (name) {
      var n = h.nodes[name];
      var color = colorOf("node:" + name);
      parts.push({ t: n.t, v: n.master_rss_kib });
      memSeries.push({ label: name + " master", stroke: color, dash: [6, 4], width: 1.5 });
      parts.push({ t: n.t, v: n.children_rss_kib });
      memSeries.push({ label: name + " children", stroke: color, width: 2 });
    });
    draw("chart-memory", memSeries, align(parts), fmtKiB, "no live workers in this range", MEMORY_STEPS);
  }

  function resizeCharts() {
    Object.keys(charts).forEach(function (id) {
      var box = $(id);
      var width = Math.max(box.clientWidth, 300);
      var u = charts[id].u;
      if (u && Math.abs(u.width - width) > 1) u.setSize({ width: width, height: CHART_HEIGHT });
    });
  }

  // -- wiring -------------------------------------------------------------------------------

  function setRange(seconds) {
    view.range = seconds;
    save("celeriac.range", seconds);
    var buttons = $("range").querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].classList.toggle("active", Number(buttons[i].getAttribute("data-range")) === seconds);
    }
    pollHistory();
  }

  function init() {
    // the token, if the page was opened with one, is now a cookie: keep it out of the address bar
    if (/[?&]token=/.test(window.location.search) && window.history.replaceState) {
      window.history.replaceState(null, "", window.location.pathname);
    }
    $("range").addEventListener("click", function (e) {
      var b = e.target.closest("button[data-range]");
      if (b) setRange(Number(b.getAttribute("data-range")));
    });
    $("queues").tBodies[0].addEventListener("click", function (e) {
      var row = e.target.closest("tr[data-queue]");
      if (!row) return;
      setSelected(row.getAttribute("data-queue"), true);
      var rows = $("queues").tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) rows[i].classList.toggle("selected", rows[i] === row);
      renderCharts();
    });
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending === null) {
        pending = window.requestAnimationFrame(function () {
          pending = null;
          resizeCharts();
        });
      }
    });
    window.setInterval(renderStatus, 1000);
    if (view.selected !== null) setSelected(view.selected, false);
    pollState();
    setRange(view.range);
  }

  init();
})();
