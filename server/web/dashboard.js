// casca's dashboard: draws the state cascad pushes on /events (server-sent events), or fetches
// /api/state once if the browser has no EventSource. A token, when the server wants one, comes
// in the address as #token=...; it is kept for this tab only and taken out of the address bar.
"use strict";
(function () {
  var token = sessionStorage.getItem("casca-token") || "";
  var m = location.hash.match(/token=([^&]+)/);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("casca-token", token);
    history.replaceState(null, "", location.pathname);
  }
  var q = token ? "?token=" + encodeURIComponent(token) : "";
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function num(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    var a = Math.abs(v);
    return a !== 0 && (a >= 1e6 || a < 0.01) ? v.toExponential(2) : (Math.round(v * 100) / 100).toString();
  }
  function when(ms) { return new Date(ms).toLocaleTimeString(); }
  function hour(ms) { return new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}); }
  function range(min, max) {
    if (min !== null && max !== null) return min === max ? "= " + num(min) : num(min) + " – " + num(max);
    if (min !== null) return "≥ " + num(min);
    if (max !== null) return "≤ " + num(max);
    return "any";
  }

  var SVG = "http://www.w3.org/2000/svg";
  function spark(values, min, max) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 40");
    svg.setAttribute("preserveAspectRatio", "none");
    var known = values.filter(function (v) { return v !== null; });
    if (!known.length) return svg;
    var lo = Math.min.apply(null, known.concat(min !== null ? [min] : []));
    var hi = Math.max.apply(null, known.concat(max !== null ? [max] : []));
    if (hi === lo) { hi += 1; lo -= 1; }
    var y = function (v) { return 38 - (v - lo) / (hi - lo) * 36; };
    if (min !== null || max !== null) {
      var band = document.createElementNS(SVG, "rect");
      var top = y(max !== null ? max : hi), bottom = y(min !== null ? min : lo);
      band.setAttribute("class", "band");
      band.setAttribute("x", 0); band.setAttribute("width", 100);
      band.setAttribute("y", top); band.setAttribute("height", Math.max(0, bottom - top));
      svg.appendChild(band);
    }
    var pts = [];
    values.forEach(function (v, i) {
      if (v !== null) pts.push((values.length > 1 ? i / (values.length - 1) * 100 : 50).toFixed(1) + "," + y(v).toFixed(1));
    });
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function drawSlos(slos) {
    var box = $("slos");
    if (!slos.length) return;
    box.replaceChildren.apply(box, slos.map(function (s) {
      var state = s.value === null ? "" : s.fulfilled ? " ok" : " bad";
      return el("div", {"class": "card" + state, "data-slo": s.id}, [
        el("div", {"class": "id", text: s.id}),
        el("div", {"class": "value", "data-value": s.value === null ? "" : String(s.value),
                   text: num(s.value) + (s.unit ? " " + s.unit : "")}),
        spark(s.spark.concat([s.value]), s.min, s.max),
        el("div", {"class": "meta", text: "objective " + range(s.min, s.max) +
          (s.compliance !== null ? " · compliance " + (s.compliance * 100).toFixed(1) + "%" : "") +
          (s.budget !== null ? " · budget left " + (s.budget * 100).toFixed(0) + "%" : "")})
      ]);
    }));
  }

  function change(c) {
    return el("li", {}, [
      document.createTextNode(when(c.time) + " " + c.who + ": " + num(c.old) + " → " + num(c.new) + " "),
      el("span", {"class": c.outcome, text: c.outcome})
    ]);
  }

  function drawSettings(settings) {
    if (!settings.length) return;
    var rows = settings.map(function (s) {
      return el("tr", {"data-setting": s.id}, [
        el("td", {text: s.id}),
        el("td", {"class": "num", text: num(s.value) + (s.unit ? " " + s.unit : "")}),
        el("td", {}, [el("ul", {"class": "changes"}, s.changes.map(change))]),
        el("td", {"class": "num", text: s.allowed.length ? s.allowed.join(", ") : s.type === "int" || s.type === "double" ? range(s.min, s.max) : s.type})
      ]);
    });
    var head = el("tr", {}, ["setting", "value", "last changes", "allowed"].map(function (h) {
      return el("th", {text: h});
    }));
    $("settings").replaceChildren(el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
  }

  function drawCarbon(c) {
    $("zone").textContent = c.zone + ", next 24 h (gCO₂eq/kWh)";
    var known = c.hours.filter(function (h) { return h[1] !== null; });
    if (!known.length) { $("carbon").replaceChildren(el("p", {"class": "empty", text: "No data for this zone."})); return; }
    var hi = Math.max.apply(null, known.map(function (h) { return h[1]; }));
    var best = c.best ? [c.best.start, c.best.start + c.best.hours * 3600e3] : null;
    var bars = c.hours.map(function (h) {
      var cls = (best && h[0] >= best[0] && h[0] < best[1] ? "best" : "") + (h[0] === c.now ? " now" : "");
      var d = el("div", {"class": cls.trim(), title: hour(h[0]) + ": " + num(h[1])});
      d.style.height = h[1] === null ? "0" : Math.max(2, h[1] / hi * 100) + "%";
      return d;
    });
    var note = c.best ? "best " + c.best.hours + " h: from " + hour(c.best.start) + ", mean " + num(c.best.mean) : "";
    $("carbon").replaceChildren(el("div", {"class": "bars"}, bars),
      el("div", {"class": "axis"}, [el("span", {text: hour(c.hours[0][0]) + " (now)"}), el("span", {text: note}),
        el("span", {text: hour(c.hours[c.hours.length - 1][0])})]));
  }

  function drawSessions(sessions) {
    var box = $("sessions");
    if (!sessions.length) { box.replaceChildren(el("p", {"class": "empty", text: "No agent connected."})); return; }
    var head = el("tr", {}, ["agent", "mode", "last action", "actions (applied)", "since"].map(function (h) {
      return el("th", {text: h});
    }));
    box.replaceChildren(el("table", {}, [el("thead", {}, [head]), el("tbody", {}, sessions.map(function (s) {
      var last = s.last ? s.last.setting + ": " + num(s.last.old) + " → " + num(s.last.new) + " (" + s.last.outcome + ", " + when(s.last.time) + ")" : "–";
      return el("tr", {}, [el("td", {text: s.agent}), el("td", {text: s.mode}), el("td", {text: last}),
        el("td", {"class": "num", text: s.actions + " (" + s.applied + ")"}), el("td", {text: when(s.since)})]);
    }))]));
  }

  function draw(state) {
    drawSlos(state.slos);
    drawSettings(state.settings);
    drawCarbon(state.carbon);
    drawSessions(state.sessions);
    var st = $("status");
    st.textContent = "live · casca " + state.version + " · " + new Date().toLocaleTimeString();
    st.className = "status";
  }
  function down(why) {
    var st = $("status");
    st.textContent = why;
    st.className = "status down";
  }

  if (window.EventSource) {
    var es = new EventSource("events" + q);
    es.onmessage = function (e) { draw(JSON.parse(e.data)); };
    es.onerror = function () {
      // EventSource does not say why: ask once, so a missing token is named, not retried forever
      fetch("api/state" + q).then(function (r) {
        if (r.status === 401 || r.status === 403) {
          es.close();
          return r.text().then(function (t) { down(t.trim() + " (open this page as /#token=<viewer token>)"); });
        }
        down("disconnected: reconnecting…");
      }, function () { down("disconnected: reconnecting…"); });
    };
  } else {
    fetch("api/state" + q).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(draw, function (e) { down("cannot load the state: " + e.message); });
  }
})();
