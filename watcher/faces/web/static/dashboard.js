// watcher dashboard: our own small script. One event stream per tab (/events) keeps the page
// current without a reload: "tick" updates prices and P&L, "alert" adds alerts, "health"
// refreshes the strip and, on the overview, the Silenced section when what is muted or paused
// changed (the section itself comes from the server: /silenced). Money arrives as ready-made text from the server; nothing here
// computes a price. The stream reconnects by itself and resumes after the last alert seen.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const ticker = body.dataset.ticker || "";
  const state = document.getElementById("live-state");
  let lastAlert = body.dataset.lastAlert || "0";
  let source = null;
  let retryTimer = null;
  let chartTimer = null;

  function setState(name, text) {
    if (!state) return;
    state.dataset.state = name;
    state.textContent = text;
  }

  function setText(id, text, extraClass) {
    const el = document.getElementById(id);
    if (!el || el.textContent === text) return;
    el.textContent = text;
    if (extraClass !== undefined) {
      el.classList.remove("gain", "loss", "flat", "unknown");
      el.classList.add(extraClass);
    }
    el.classList.add("flash");
    setTimeout(function () { el.classList.remove("flash"); }, 600);
  }

  function onTick(event) {
    const tick = JSON.parse(event.data);
    for (const p of tick.positions) {
      setText("pos-" + p.index + "-bid", p.bid);
      setText("pos-" + p.index + "-ask", p.ask);
      setText("pos-" + p.index + "-mark", p.mark);
      setText("pos-" + p.index + "-pnl", p.pnl, p.sign);
    }
    if (page === "market" && tick.ticker === ticker) {
      setText("quote-bid", tick.text.bid);
      setText("quote-ask", tick.text.ask);
      setText("quote-last", tick.text.last);
      scheduleChart();
    }
  }

  function scheduleChart() {
    // Redraw the chart from the server at most every 5 s while ticks arrive.
    if (chartTimer !== null) return;
    chartTimer = setTimeout(function () {
      chartTimer = null;
      const box = document.getElementById("chart");
      if (!box) return;
      fetch(box.dataset.src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (svg) {
          if (svg === null) return;
          const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
          const node = doc.documentElement;
          if (node && node.nodeName === "svg") box.replaceChildren(document.importNode(node, true));
        })
        .catch(function () {});
    }, 5000);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function alertRow(a) {
    const tr = document.createElement("tr");
    tr.className = "alert new severity-" + a.severity;
    tr.dataset.alertId = String(a.id);
    tr.appendChild(cell(a.time, "time"));
    const market = cell("");
    const link = document.createElement("a");
    link.href = "/market/" + encodeURIComponent(a.market);
    link.textContent = a.market;
    market.appendChild(link);
    tr.appendChild(market);
    tr.appendChild(cell(a.rule));
    const text = cell("", "text");
    const title = document.createElement("b");
    title.textContent = a.title;
    const bodyText = document.createElement("div");
    bodyText.className = "body";
    bodyText.textContent = a.body;
    text.append(title, bodyText);
    tr.appendChild(text);
    tr.appendChild(cell(a.status, "status status-" + a.status));
    const deliveries = cell("", "deliveries");
    for (const d of a.deliveries) {
      const div = document.createElement("div");
      div.className = "delivery status-" + d.status;
      div.dataset.target = d.target;
      div.textContent = d.target + ": " + d.status;
      deliveries.appendChild(div);
    }
    tr.appendChild(deliveries);
    return tr;
  }

  function onAlert(event) {
    const a = JSON.parse(event.data);
    lastAlert = String(a.id);
    if (page === "alerts") {
      const table = document.getElementById("alerts");
      if (!table || table.dataset.filtered === "true") return;
      const tbody = table.tBodies[0];
      if (tbody.querySelector('tr[data-alert-id="' + a.id + '"]')) return;
      const empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.insertBefore(alertRow(a), tbody.firstChild);
    } else if (page === "overview") {
      for (const row of document.querySelectorAll('tr.position[data-ticker="' + a.market + '"]')) {
        setText("pos-" + row.dataset.index + "-alert", a.time.slice(5, 16) + " " + a.rule);
      }
    } else if (page === "market" && a.market === ticker) {
      scheduleChart();
    }
  }

  function onHealth(event) {
    const health = JSON.parse(event.data);
    for (const item of health.items) {
      const el = document.getElementById("health-" + item.key);
      if (!el) continue;
      el.dataset.level = item.level;
      const value = el.querySelector(".health-value");
      if (value) value.textContent = item.text;
    }
    if (health.controls) silencedChanged(health.controls);
  }

  // What is silenced, as one comparable string (key order differs between the page and events).
  function silencedKey(controls) {
    const mutes = controls.mutes.map(function (m) { return [m.target, m.until_ms, m.until, m.by]; });
    const paused = controls.paused ? [controls.paused.by, controls.paused.since_ms] : null;
    return JSON.stringify([mutes, paused]);
  }

  const slot = document.getElementById("silenced-slot");
  let silenced = slot ? silencedKey(JSON.parse(slot.dataset.controls)) : null;

  function silencedChanged(controls) {
    if (!slot) return;
    const key = silencedKey(controls);
    if (key === silenced) return;
    silenced = key;
    fetch("/silenced", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        slot.replaceChildren.apply(slot, Array.from(doc.body.childNodes, function (node) {
          return document.importNode(node, true);
        }));
      })
      .catch(function () { silenced = null; });
  }

  function connect() {
    if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
    if (!window.EventSource) { setState("off", "no live updates in this browser"); return; }
    source = new EventSource("/events?after=" + encodeURIComponent(lastAlert));
    source.addEventListener("hello", function () { setState("live", "live"); });
    source.addEventListener("tick", onTick);
    source.addEventListener("alert", onAlert);
    source.addEventListener("health", onHealth);
    source.onopen = function () { setState("live", "live"); };
    source.onerror = function () {
      setState("reconnecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): start a new stream after a pause.
        source = null;
        retryTimer = setTimeout(connect, 3000);
      }
    };
  }

  document.addEventListener("DOMContentLoaded", connect);
})();
