// Admin console: the chart of logins (type s) and failed logins (type f) per hour and connection,
// drawn as inline SVG by the console itself (no third-party asset; the CSP forbids inline styles,
// so colours are SVG attributes and CSS classes). One small chart per connection on a shared scale,
// each an image with a text name that gives its totals; the tables next to it (activity.js) are the
// full text alternative. Hours are the reader's local hours.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const HOUR = 3600 * 1000;
  const COLOURS = { s: "#1d4ed8", f: "#d97706" }; // also in admin.css (.swatch-s, .swatch-f)
  const { t, count, number, lang } = window.ConsoleI18n;
  const hourLabel = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
  const dayLabel = new Intl.DateTimeFormat(lang, { weekday: "short", day: "numeric" });
  const longHour = new Intl.DateTimeFormat(lang, { weekday: "short", day: "numeric", month: "short",
    hour: "2-digit", minute: "2-digit" });

  function node(tag, attributes = {}, ...children) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    for (const child of children) element.append(child);
    return element;
  }

  // The start of the local hour ``ms`` falls in.
  function hourStart(ms) {
    const date = new Date(ms);
    date.setMinutes(0, 0, 0);
    return date.getTime();
  }

  // The starts of the ``hours`` hours that end with the current one, oldest first.
  function hourStarts(now, hours) {
    const last = hourStart(now);
    const starts = [];
    for (let back = hours - 1; back >= 0; back -= 1) starts.push(last - back * HOUR);
    return starts;
  }

  // Per connection: logins and failures per hour of ``starts`` and the totals; busiest first.
  function tally(events, starts) {
    const first = starts[0];
    const end = starts[starts.length - 1] + HOUR;
    const rows = new Map();
    for (const event of events) {
      if (event.type !== "s" && event.type !== "f") continue;
      const at = Date.parse(event.date);
      if (!(at >= first && at < end)) continue;
      const name = event.connection || "";
      let row = rows.get(name);
      if (!row) {
        row = { connection: name, s: starts.map(() => 0), f: starts.map(() => 0), total: { s: 0, f: 0 } };
        rows.set(name, row);
      }
      const slot = Math.min(starts.length - 1, Math.floor((at - first) / HOUR));
      row[event.type][slot] += 1;
      row.total[event.type] += 1;
    }
    return [...rows.values()].sort((a, b) =>
      (b.total.s + b.total.f) - (a.total.s + a.total.f) || a.connection.localeCompare(b.connection));
  }

  function peakOf(row) {
    return Math.max(0, ...row.s.map((logins, slot) => logins + row.f[slot]));
  }

  function connectionName(row) {
    return row.connection || t("chart.no_connection");
  }

  function ticks(starts) {
    // 24 hours: every third hour; a week: each local midnight.
    const week = starts.length > 24;
    return starts.map((start, slot) => {
      const date = new Date(start);
      if (week) return date.getHours() === 0 ? { slot, text: dayLabel.format(date) } : null;
      return date.getHours() % 3 === 0 ? { slot, text: hourLabel.format(date) } : null;
    }).filter(Boolean);
  }

  // One connection's chart: a stacked bar per hour (logins below, failures on top).
  function drawOne(row, starts, scale, periodText) {
    const slotWidth = starts.length > 24 ? 4 : 24;
    const barWidth = starts.length > 24 ? 3 : 16;
    const left = 34;
    const top = 8;
    const plot = 96;
    const right = 30; // room for the last label
    const width = left + starts.length * slotWidth + right;
    const height = top + plot + 22;
    const peak = peakOf(row);
    const label = t("chart.svg_label", {
      connection: connectionName(row), period: periodText,
      logins: count("count.logins", row.total.s), failures: count("count.failures", row.total.f),
      peak: number(peak) });
    const chart = node("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
      "aria-label": label, class: "chart-svg", "data-connection": row.connection,
      "data-logins": row.total.s, "data-failures": row.total.f });
    const baseline = top + plot;
    chart.append(node("line", { x1: left, y1: top, x2: left, y2: baseline, stroke: "#6b7280" }));
    chart.append(node("line", { x1: left, y1: baseline, x2: width - right, y2: baseline, stroke: "#6b7280" }));
    chart.append(node("text", { x: left - 4, y: top + 8, "text-anchor": "end", "font-size": 10,
      fill: "#374151" }, number(scale)));
    chart.append(node("text", { x: left - 4, y: baseline, "text-anchor": "end", "font-size": 10,
      fill: "#374151" }, "0"));
    const unit = plot / scale;
    starts.forEach((start, slot) => {
      const logins = row.s[slot];
      const failures = row.f[slot];
      if (!logins && !failures) return;
      const x = left + slot * slotWidth + (slotWidth - barWidth) / 2;
      const hour = new Date(start).toISOString();
      const title = t("chart.bar_title", { hour: longHour.format(new Date(start)),
        logins: count("count.logins", logins), failures: count("count.failures", failures) });
      if (logins) {
        chart.append(node("rect", { x, y: baseline - logins * unit, width: barWidth, height: logins * unit,
          fill: COLOURS.s, class: "bar bar-s", "data-type": "s", "data-hour": hour, "data-count": logins },
        node("title", {}, title)));
      }
      if (failures) {
        chart.append(node("rect", { x, y: baseline - (logins + failures) * unit, width: barWidth,
          height: failures * unit, fill: COLOURS.f, class: "bar bar-f", "data-type": "f", "data-hour": hour,
          "data-count": failures }, node("title", {}, title)));
      }
    });
    // An hour's label under its bar; a day's label starts at its midnight.
    const anchor = starts.length > 24 ? "start" : "middle";
    for (const tick of ticks(starts)) {
      const x = left + tick.slot * slotWidth + (anchor === "middle" ? slotWidth / 2 : 0);
      chart.append(node("line", { x1: x, y1: baseline, x2: x, y2: baseline + 4, stroke: "#6b7280" }));
      chart.append(node("text", { x, y: baseline + 16, "font-size": 10, fill: "#374151",
        "text-anchor": anchor }, tick.text));
    }
    return chart;
  }

  // Draw the charts of ``rows`` (from tally) into ``container``; returns the shared scale.
  function render(container, rows, starts, periodText) {
    container.replaceChildren();
    const scale = Math.max(1, ...rows.map(peakOf));
    for (const row of rows) {
      const figure = document.createElement("figure");
      figure.className = "chart-figure";
      figure.dataset.connection = row.connection;
      const caption = document.createElement("figcaption");
      caption.textContent = connectionName(row);
      figure.append(caption, drawOne(row, starts, scale, periodText));
      container.append(figure);
    }
    if (rows.length) {
      const note = document.createElement("p");
      note.className = "help";
      note.textContent = t("chart.scale", { max: number(scale) });
      container.append(note);
    }
    return scale;
  }

  window.ConsoleChart = Object.freeze({ HOUR, hourStart, hourStarts, tally, render, connectionName,
    longHour: (ms) => longHour.format(new Date(ms)) });
})();
