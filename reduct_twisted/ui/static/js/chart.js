// Records over time: a bounded query's timestamps in bins, as inline SVG.
import { isoTime } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/**
 * A bar chart of how many of `times` (µs, BigInt) fall in each of `bins`
 * equal slices of [start, stop].
 */
export function recordsChart(times, start, stop, bins = 48) {
  const width = 720, height = 160, left = 40, bottom = 28, top = 8;
  const span = stop > start ? stop - start : 1n;
  const counts = new Array(bins).fill(0);
  for (const t of times) {
    let i = Number(((t - start) * BigInt(bins)) / span);
    if (i >= bins) i = bins - 1;
    if (i < 0) i = 0;
    counts[i] += 1;
  }
  const max = Math.max(1, ...counts);
  const plotW = width - left - 8, plotH = height - top - bottom, barW = plotW / bins;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `Records over time: ${times.length} records in ${bins} bins` });
  root.append(svg("line", { x1: left, y1: top + plotH, x2: width - 8, y2: top + plotH, class: "axis" }));
  root.append(svg("text", { x: left - 4, y: top + 10, "text-anchor": "end", class: "tick" }, max));
  root.append(svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end", class: "tick" }, 0));
  counts.forEach((n, i) => {
    if (!n) return;
    const barH = Math.max(1, (n / max) * plotH);
    const bar = svg("rect", { x: left + i * barW + 1, y: top + plotH - barH, width: Math.max(1, barW - 2),
      height: barH, class: "bar", "data-count": n });
    const from = start + (span * BigInt(i)) / BigInt(bins);
    bar.append(svg("title", {}, `${n} record(s) from ${isoTime(from)}`));
    root.append(bar);
  });
  root.append(svg("text", { x: left, y: height - 8, class: "tick" }, isoTime(start)));
  root.append(svg("text", { x: width - 8, y: height - 8, "text-anchor": "end", class: "tick" }, isoTime(stop)));
  return root;
}
