// ===================================================================================
// panel.js: the words beside the map: the gridding report as `rfmap check` says it,
// the statistics of the map on view, and the readout of the inspected cell.  It only
// writes text nodes (no HTML is parsed), so nothing from a link can run as markup.
// ===================================================================================

const Panel = (function () {
  "use strict";

  /** An element with attributes and children (strings become text nodes). */
  function node(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  function statRow(dl, term, value, id, title) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (id) dd.dataset.key = id;
    if (title) dd.title = title;
    dl.append(dt, dd);
  }

  /** "This map": what rfmap map reports for the input on view. */
  function renderStats(dl, map) {
    dl.textContent = "";
    statRow(dl, "receptive field", map.receptiveField.join(" × "), "receptive_field");
    statRow(dl, "support", map.support.toString() + " cells", "support");
    statRow(dl, "max", map.max.toString(), "max");
    statRow(dl, "total paths", map.total.toString(), "total");
    statRow(dl, "arithmetic", map.big.some(Boolean) ? "BigInt (past 2^53)" : "float64, exact (< 2^53)", "arithmetic");
  }

  /**
   * The gridding check of report r into els = {verdict, hdc, metrics}: the lines of
   * `rfmap check` (Gridding.reportLines) and its numbers; onApply(suggestion) takes a fix.
   */
  function renderCheck(els, r, onApply) {
    const line = (key, text) => node("p", { "data-line": key }, text);
    els.verdict.textContent = "";
    els.verdict.className = r.gridding_free ? "verdict good" : "verdict bad";
    els.hdc.textContent = "";
    const notes = [];
    for (const [key, text] of Gridding.reportLines(r)) {
      if (key === "verdict") {
        const mark = node("strong", { "data-key": "gridding_free" }, r.gridding_free ? "✓ Gridding-free" : "✗ Gridding");
        els.verdict.append(mark, line(key, text));
      } else if (key === "hdc") els.hdc.append(line(key, text));
      else if (key === "agrees") els.hdc.append(node("p", { "data-line": key, class: r.hdc.agrees ? "agree" : "disagree" }, text));
      else {
        const p = line(key, text);
        if (key === "fix" && r.suggestion) {
          const apply = node("button", { type: "button", id: "apply-fix", class: "apply" }, "Apply the fix");
          apply.addEventListener("click", () => onApply(r.suggestion));
          p.append(" ", apply);
        }
        notes.push(p);
      }
    }
    els.verdict.append(node("div", { class: "notes" }, ...notes));
    if (r._skipped) {
      els.verdict.append(line("skipped", "The page does not count a field this large; run rfmap check for its holes."));
    }
    const dl = els.metrics;
    dl.textContent = "";
    const { pyG, pyPercent, pyThousands } = Gridding;
    const repr = Engine.pyFloatRepr;
    statRow(dl, "receptive field", `${r.receptive_field.join(" × ")} (${pyThousands(r.receptive_field_cells)} cells)`, "receptive_field");
    if (r.holes !== null) {
      statRow(dl, "holes", pyThousands(r.holes), "holes");
      statRow(dl, "coverage", pyPercent(r.coverage.value), "coverage", repr(r.coverage.value));
    }
    if (r.peak_to_mean !== null) {
      statRow(dl, "peak/mean", pyG(r.peak_to_mean.value), "peak_to_mean", repr(r.peak_to_mean.value));
      statRow(dl, "min/max", pyG(r.min_nonzero_to_max.value), "min_nonzero_to_max", repr(r.min_nonzero_to_max.value));
    }
    const stds = [...new Set(r.erf_std.map((s) => pyG(s.value)))];
    statRow(dl, "ERF std", stds.join(", "), "erf_std", r.erf_std.map((s) => repr(s.value)).join(", "));
    statRow(dl, "paths", pyThousands(r.total_paths), "total_paths");
  }

  /** The inspected cell (one index per axis, or null): where it is and its exact count. */
  function renderReadout(out, map, cursor) {
    out.textContent = "";
    if (!cursor) {
      out.textContent = "Hover or tap a cell, or focus the map and use the arrow keys.";
      delete out.dataset.count;
      delete out.dataset.cell;
      return;
    }
    const count = Engine.cellCount(map, cursor);
    const sign = (x) => (x > 0 ? "+" + x : x < 0 ? "−" + -x : "0");
    const offsets = cursor.map((c, a) => sign(c - map.anchor[a]));
    const b = (text, cls) => node("b", cls ? { class: cls } : {}, String(text));
    const parts = [];
    if (map.spec.size === null) parts.push("offset ", offsets.length === 1 ? offsets[0] : "(" + offsets.join(", ") + ")");
    else if (cursor.length === 1) parts.push("position ", b(cursor[0]), " · offset " + offsets[0]);
    else if (cursor.length === 2) parts.push("row ", b(cursor[0]), ", col ", b(cursor[1]), ` · offset (${offsets.join(", ")})`);
    else parts.push("voxel (", b(cursor.join(", ")), `) · offset (${offsets.join(", ")})`);
    parts.push(" · ", b(count, "count"), count === 1n ? " path" : " paths");
    if (count > 999999n) parts.push(` (≈ ${Number(count).toExponential(3)})`);
    const inside = cursor.every((c, a) => c >= map.axes[a].first && c <= map.axes[a].last);
    if (count === 0n && map.axes.every((x) => x.first >= 0) && inside) {
      parts.push(" · ", node("span", { class: "hole" }, "a hole of the field"));
    }
    out.append(...parts);
    out.dataset.cell = cursor.join(",");
    out.dataset.count = count.toString();
  }

  return { node, renderStats, renderCheck, renderReadout };
})();
