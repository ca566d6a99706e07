// ===================================================================================
// page.js: the page itself: controls -> state -> the exact map -> canvas and panel.
// A schedule change recomputes the map; a slice change only repaints; the pointer only
// redraws the overlay with its marks.
// ===================================================================================

(function () {
  "use strict";

  const { SpecError } = Engine;
  const DATA = JSON.parse(document.getElementById("rfmap-data").textContent);
  const LIMITS = DATA.limits;

  const $ = (id) => document.getElementById(id);
  const el = {
    preset: $("preset"),
    dilText: $("dilations-text"),
    kerText: $("kernels-text"),
    strText: $("strides-text"),
    tbody: document.querySelector("#layers tbody"),
    add: $("add-layer"),
    size: $("size"),
    padding: $("padding"),
    padText: $("padding-text"),
    padRow: $("padding-explicit"),
    unit: $("unit"),
    title: $("map-title"),
    subtitle: $("map-subtitle"),
    error: $("error"),
    view: document.querySelector(".view"),
    wrap: $("canvas-wrap"),
    canvas: $("map-canvas"),
    overlay: $("map-overlay"),
    colorbar: $("colorbar"),
    scaleNote: $("scale-note"),
    readout: $("readout"),
    sliceRow: $("slice-row"),
    sliceAxis: $("slice-axis"),
    sliceIndex: $("slice-index"),
    sliceValue: $("slice-value"),
    depth: $("depth"),
    depthValue: $("depth-value"),
    play: $("play"),
    verdict: $("verdict"),
    metrics: $("metrics"),
    hdc: $("hdc"),
    mapStats: $("map-stats"),
  };

  let state = State.initialState(DATA.state);
  let layers = State.validate(state, LIMITS); // the whole schedule, validated
  let current = null; // {map, geom, check, scale, plane}
  let cursor = null; // the inspected cell: one index per axis
  let playing = null;
  const imageCache = {};

  function setError(message) {
    el.error.hidden = !message;
    el.error.textContent = message || "";
    el.view.classList.toggle("stale", Boolean(message));
  }

  /** The title form of a schedule: (1, 2x1, 4). */
  function formatSchedule(entries) {
    return "(" + entries.map(State.entryText).join(", ") + ")";
  }

  // --- controls -> state ---------------------------------------------------------------

  const focused = (input) => document.activeElement === input;
  const setValue = (input, value) => {
    if (!focused(input)) input.value = value;
    input.removeAttribute("aria-invalid");
  };

  function paddingMode(s) {
    const p = s.pad[0];
    return typeof p === "string" && s.pad.every((x) => x === p) ? p : "explicit";
  }

  function syncControls() {
    setValue(el.dilText, state.dil.map(State.entryText).join(", "));
    setValue(el.kerText, State.entriesText(state.ker, ", "));
    setValue(el.strText, State.entriesText(state.str, ", "));
    setValue(el.size, state.size === null ? "none" : State.entryText(state.size).replace(/x/g, ", "));
    const mode = paddingMode(state);
    if (!(focused(el.padText) && el.padding.value === "explicit")) el.padding.value = mode;
    el.padRow.hidden = el.padding.value !== "explicit";
    setValue(el.padText, mode === "explicit" ? State.entriesText(state.pad, ", ") : el.padText.value);
    setValue(el.unit, state.unit === null ? "" : state.unit.join(", "));
    $("ndim-" + state.ndim).checked = true;
    $("scale-" + state.scale).checked = true;
    const n = state.dil.length;
    el.depth.max = String(n);
    el.depth.value = String(state.depth);
    el.depthValue.textContent = `${state.depth} / ${n}`;
    el.depth.setAttribute("aria-valuetext", `layers 1 to ${state.depth} of ${n}`);
    el.preset.value = matchingPreset(state);
    renderTable();
  }

  /** The receptive field after each layer (unbounded input), per axis: "15" or "15×9". */
  function fieldsByDepth() {
    return layers.map((_, i) => {
      const part = layers.slice(0, i + 1);
      const rf = Array.from({ length: state.ndim }, (_, a) => Engine.receptiveFieldSize(part, a));
      return rf.every((x) => x === rf[0]) ? String(rf[0]) : rf.join("×");
    });
  }

  const TABLE_FIELDS = [
    ["d", "dilation"],
    ["k", "kernel size"],
    ["s", "stride"],
  ];

  function renderTable() {
    const rows = el.tbody.rows;
    const fields = fieldsByDepth();
    const n = state.dil.length;
    while (rows.length > n) el.tbody.deleteRow(rows.length - 1);
    while (rows.length < n) {
      const tr = el.tbody.insertRow();
      tr.insertCell();
      for (const [field] of TABLE_FIELDS) {
        const input = document.createElement("input");
        Object.assign(input, { type: "text", autocomplete: "off", spellcheck: false });
        input.dataset.field = field;
        tr.insertCell().append(input);
      }
      tr.insertCell().className = "rf";
      const btn = document.createElement("button");
      Object.assign(btn, { type: "button", className: "remove", textContent: "×" });
      tr.insertCell().append(btn);
    }
    const values = { d: state.dil, k: state.ker, s: state.str };
    for (let i = 0; i < n; i++) {
      const tr = rows[i];
      tr.dataset.index = String(i);
      tr.cells[0].textContent = String(i + 1);
      tr.classList.toggle("beyond", i >= state.depth);
      TABLE_FIELDS.forEach(([field, name], c) => {
        const input = tr.cells[1 + c].firstChild;
        input.setAttribute("aria-label", `${name} of layer ${i + 1}`);
        setValue(input, State.entryText(values[field][i]));
      });
      tr.cells[4].textContent = fields[i];
      tr.cells[4].title = `receptive field after layer ${i + 1}: ${fields[i]}`;
      const btn = tr.cells[5].firstChild;
      btn.setAttribute("aria-label", `remove layer ${i + 1}`);
      btn.disabled = n === 1;
    }
    el.add.disabled = n >= LIMITS.max_layers;
  }

  /**
   * Make `next` the view if the whole schedule is valid; throws SpecError otherwise.
   * depth: "full" shows every layer (a retyped schedule), "keep" keeps the slider where
   * it was (at the end if it was at the end), a number sets it.
   */
  function commit(next, depth = "keep") {
    const wasFull = state.depth === state.dil.length;
    const n = next.dil.length;
    if (depth === "full" || (depth === "keep" && wasFull)) next.depth = n;
    else if (depth === "keep") next.depth = Math.min(Math.max(1, next.depth || 1), n);
    else next.depth = depth;
    const nextLayers = State.validate(next, LIMITS);
    state = next;
    layers = nextLayers;
    update();
  }

  /** Report a refused edit: the field is marked, the message shown, the last view kept. */
  function refuse(err, source) {
    if (!(err instanceof SpecError)) throw err;
    if (source) source.setAttribute("aria-invalid", "true");
    setError(err.message);
  }

  /** Per-layer entries for n layers: one entry applies to all; otherwise they must match. */
  function fitChecked(entries, n) {
    return entries.length === 1 ? Array(n).fill(entries[0]) : entries;
  }

  /** A padding that applies to all layers follows the schedule's length. */
  function fit(entries, n) {
    if (entries.every((e) => State.sameEntry(e, entries[0]))) return Array(n).fill(entries[0]);
    return entries;
  }

  /** Parse one control; a refusal names the control it came from. */
  function read(input, parse) {
    try {
      return parse(input.value);
    } catch (err) {
      if (err instanceof SpecError) err.source = input;
      throw err;
    }
  }

  /**
   * The state the controls describe (all of them, so nothing typed elsewhere is lost).
   * `source` is the control that changed: the schedule's text fields show all the layers
   * of a retyped schedule; switching 1D/2D/3D adapts the size and the unit.
   */
  function readControls(source) {
    // a trailing comma is the next value being typed, not an error
    const typing = (parse, name) => (text) => parse(text.replace(/,\s*$/, ""), name);
    const ndim = Number(document.querySelector('input[name="ndim"]:checked').value);
    const dil = read(el.dilText, typing(State.parseSchedule, "dilations"));
    const ker = read(el.kerText, typing(State.parseSchedule, "kernel_size"));
    const str = read(el.strText, typing(State.parseSchedule, "stride"));
    const n = dil.length;
    let size = read(el.size, State.parseSize);
    if (ndim !== state.ndim) {
      // 1D -> 2D -> 3D on a long input (WaveNet's 2048): the largest size there, not a refusal
      const max = LIMITS[`max_size_${ndim}d`];
      if (typeof size === "number" && size === state.size) size = Math.min(size, max);
      else if (Array.isArray(size) && size.length !== ndim) size = Math.min(Math.max(...size), max);
    }
    let pad;
    if (el.padding.value !== "explicit") pad = [el.padding.value];
    else if (source === el.padding) {
      // switching to explicit: start from each layer's left padding ('valid': none)
      pad = layers.map((l) => Engine.collapse(l.k.map((_, a) => (l.p === "valid" ? 0 : Math.floor((Engine.extent(l, a) - 1) / 2)))));
      el.padText.value = State.entriesText(fit(pad, layers.length), ", ");
    } else pad = read(el.padText, typing(State.parsePadding));
    let unit = read(el.unit, State.parseUnit);
    if (ndim !== state.ndim && source !== el.unit) unit = null;
    return Object.assign({}, state, {
      dil,
      ker: fitChecked(ker, n),
      str: fitChecked(str, n),
      pad: fit(pad, n),
      ndim,
      size,
      unit,
      scale: document.querySelector('input[name="scale"]:checked').value,
      slice: ndim === 3 && state.ndim === 3 ? state.slice : null,
    });
  }

  function fromControls(source) {
    try {
      const next = readControls(source);
      const retyped = [el.dilText, el.kerText, el.strText].includes(source);
      if (retyped) stopPlaying();
      commit(next, retyped ? "full" : "keep");
    } catch (err) {
      const field = err.source || (source && source.matches("input[type=text]") ? source : null);
      refuse(err, field);
    }
  }

  function fromTable(input) {
    const i = Number(input.closest("tr").dataset.index);
    const field = input.dataset.field;
    const key = { d: "dil", k: "ker", s: "str" }[field];
    const name = { d: "dilations", k: "kernel_size", s: "stride" }[field];
    try {
      const entries = State.parseSchedule(input.value, name);
      if (entries.length !== 1) throw new SpecError(`${name} of layer ${i + 1} must be one value (AxB per axis), got ${State.pyStr(input.value)}`);
      const next = Object.assign({}, state, { [key]: state[key].slice() });
      next[key][i] = entries[0];
      commit(next);
    } catch (err) {
      refuse(err, input);
    }
  }

  // --- presets --------------------------------------------------------------------------

  /** The preset showing (the selected one first: two presets may share a schedule). */
  function matchingPreset(s) {
    const selected = DATA.presets.filter((p) => p.id === el.preset.value);
    for (const p of selected.concat(DATA.presets)) {
      if (State.sameSchedule(State.presetState(p), s)) return p.id;
    }
    return "";
  }

  function fillPresets() {
    const groups = new Map();
    for (const p of DATA.presets) {
      if (!groups.has(p.group)) {
        const g = document.createElement("optgroup");
        g.label = p.group;
        groups.set(p.group, g);
        el.preset.appendChild(g);
      }
      const opt = document.createElement("option");
      opt.value = p.id;
      opt.textContent = p.name;
      opt.title = p.note || "";
      groups.get(p.group).appendChild(opt);
    }
  }

  // --- drawing the page -------------------------------------------------------------------

  // The map's container width, kept by a ResizeObserver so a redraw never forces layout.
  let wrapWidth = 0;

  function containerWidth() {
    if (!wrapWidth) wrapWidth = el.wrap.clientWidth;
    return wrapWidth;
  }

  const isNarrow = () => containerWidth() < 520;
  const dpr = () => window.devicePixelRatio || 1;

  function canvasBox(nd) {
    const narrow = isNarrow();
    const width = containerWidth();
    if (nd === 1) return { w: width, h: Math.round(Math.min(360, Math.max(200, width * 0.5))) };
    const side = Math.min(Math.max(160, width - (narrow ? 0 : 70)), Math.max(240, window.innerHeight - 250) + 26);
    return { w: side, h: side };
  }

  /** The slice of a 3D map on view: the state's, or the one through the output unit. */
  function sliceOf(map) {
    if (map.shape.length !== 3) return null;
    const s = state.slice || { axis: 0, index: map.anchor[0] };
    const n = map.shape[s.axis];
    return { axis: s.axis, index: Math.min(Math.max(0, s.index), n - 1) };
  }

  // What the canvases show now: a redraw with the same frame (size, geometry, axes) only
  // repaints the image, and the colour bar is drawn again only when it changes.
  const drawn = { frame: null, colorbar: null };

  /** Draw the map, its colour bar and legend (everything but the marks). */
  function render() {
    const map = current.map;
    const nd = map.shape.length;
    const narrow = isNarrow();
    el.wrap.classList.toggle("narrow", narrow);
    const box = canvasBox(nd);
    const ratio = dpr();
    const scale = View.resolveScale(state.scale, map);
    let geom;
    if (nd === 1) geom = View.layout1d(map, { x: 0, y: 0, w: box.w, h: box.h });
    else {
      current.plane = View.planeOf(map, sliceOf(map));
      geom = View.layout2d(map, current.plane, { x: 0, y: 0, w: box.w, h: box.h }, ratio);
      box.h = Math.ceil(geom.y0 + geom.h + 24); // a wide, short map takes less height
    }
    const ctx = View.sizeCanvas(el.canvas, box.w, box.h, ratio);
    View.sizeCanvas(el.overlay, box.w, box.h, ratio);
    const p = current.plane;
    const frame =
      nd === 1
        ? null
        : [box.w, box.h, ratio, geom.x0, geom.y0, geom.W, geom.H, p.rows, p.cols, map.origin[p.rows], map.origin[p.cols]].join("/");
    const full = ctx.resized || frame === null || frame !== drawn.frame;
    if (full) {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, box.w, box.h);
    }
    if (nd === 1) View.draw1d(ctx, map, geom, scale);
    else View.draw2d(ctx, map, geom, scale, imageCache, full);
    drawn.frame = frame;
    current.geom = geom;
    current.scale = scale;
    el.colorbar.hidden = nd === 1;
    if (nd > 1) {
      const key = [scale, map.max, geom.x0, geom.y0, geom.w, geom.h, narrow, box.w, ratio].join("/");
      if (key !== drawn.colorbar) View.drawColorbar(el.colorbar, map, scale, geom, narrow, box.w, ratio);
      drawn.colorbar = key;
    } else drawn.colorbar = null;
    el.scaleNote.textContent = legend(map, geom, narrow);
    renderMarks();
  }

  /** The overlay: the output unit and the inspected cell. */
  function renderMarks() {
    const ctx = el.overlay.getContext("2d");
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
    ctx.restore();
    const { map, geom, plane } = current;
    if (map.shape.length === 1) {
      View.marks1d(ctx, geom, map.anchor[0], cursor ? cursor[0] : null);
      return;
    }
    View.fieldBox(ctx, map, geom);
    const inPlane = (index) => plane.slice === null || index[plane.slice] === plane.index;
    const unit = inPlane(map.anchor) ? [map.anchor[plane.rows], map.anchor[plane.cols]] : null;
    const mark = cursor && inPlane(cursor) ? [cursor[plane.rows], cursor[plane.cols]] : null;
    View.marks2d(ctx, geom, unit, mark);
  }

  const boxed = (x) => x.first >= 0 && (x.first > 0 || x.last < x.approx.length - 1);

  /** What the marks on the map mean (and the scale, when the colour bar is under it). */
  function legend(map, geom, narrow) {
    const parts = [];
    if (map.shape.length > 1) {
      const p = current.plane;
      const unitShown = p.slice === null || map.anchor[p.slice] === p.index;
      parts.push(unitShown ? "orange: the output unit" : "the output unit is in slice " + map.anchor[p.slice]);
      if (boxed(map.axes[p.rows]) || boxed(map.axes[p.cols])) parts.push("dashed: its receptive field in this input");
      parts.push("white: no path");
      if (narrow) parts.push(`${current.scale} colour scale`);
      if (geom.cellX < 1) {
        const k = (1 / geom.cellX).toFixed(1);
        parts.push(`each pixel averages about ${k} × ${k} cells (the exported PNG has one pixel per cell)`);
      }
    } else {
      parts.push("dashed orange: the output unit");
      const a = map.axes[0];
      let holes = false;
      for (let i = a.first + 1; i < a.last && !holes; i++) holes = a.approx[i] === 0;
      if (holes) parts.push("red ×: a hole inside the field");
      if (geom.cellX < 1) parts.push("each bar is the largest count in its pixel column");
    }
    return parts.join(" · ");
  }

  function describeView(map) {
    const spec = map.spec;
    const ks = State.entriesText(state.ker.slice(0, state.depth), ",");
    const kernel = ks.includes(",") ? `kernels ${ks}` : `kernel ${ks}`;
    const parts = [kernel];
    const strides = state.str.slice(0, state.depth);
    if (!strides.every((e) => State.sameEntry(e, 1))) parts.push(`strides ${State.entriesText(strides, ",")}`);
    parts.push(`${spec.ndim}D`);
    parts.push(spec.size === null ? "unbounded input" : "input " + spec.size.join(" × "));
    const mode = paddingMode(state);
    parts.push(mode === "explicit" ? `padding ${State.entriesText(state.pad.slice(0, state.depth), ",")}` : `${mode} padding`);
    if (map.unit !== null) parts.push(`output unit ${map.unit.length === 1 ? map.unit[0] : "(" + map.unit.join(", ") + ")"}`);
    if (spec.ndim === 3) {
      const p = current.plane;
      parts.push(`slice axis ${p.slice} = ${p.index + map.origin[p.slice]} (rows: axis ${p.rows}, columns: axis ${p.cols})`);
    }
    return parts.join(" · ");
  }

  function recompute() {
    const spec = State.viewSpec(state, layers);
    const map = Engine.computeMap(spec);
    if (cursor && (cursor.length !== map.shape.length || cursor.some((c, a) => c >= map.shape[a]))) cursor = null;
    current = { map, geom: null, check: null, scale: null, plane: null };
    return map;
  }

  function update() {
    if (playing && state.depth >= state.dil.length) stopPlaying();
    syncControls();
    let map;
    try {
      map = recompute();
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      setError(err.message);
      current = null;
      writeHash();
      return;
    }
    setError(null);
    // a slice past the end of a smaller volume is its last one (and the link says so)
    if (state.slice !== null) state = Object.assign({}, state, { slice: sliceOf(map) });
    el.title.textContent = "Dilation rates: " + formatSchedule(state.dil.slice(0, state.depth));
    render();
    syncSlice();
    el.subtitle.textContent = describeView(map);
    renderStats(map);
    renderCheck(map);
    renderReadout();
    writeHash();
  }

  /** The slice controls of a 3D map (hidden otherwise). */
  function syncSlice() {
    const map = current.map;
    el.sliceRow.hidden = map.shape.length !== 3;
    if (map.shape.length !== 3) return;
    const s = sliceOf(map);
    el.sliceAxis.value = String(s.axis);
    el.sliceIndex.max = String(map.shape[s.axis] - 1);
    el.sliceIndex.value = String(s.index);
    const label = s.index + map.origin[s.axis];
    const last = map.shape[s.axis] - 1 + map.origin[s.axis];
    el.sliceValue.textContent = `${label} / ${last}`;
    el.sliceIndex.setAttribute("aria-valuetext", `axis ${s.axis} = ${label}`);
  }

  /** Show another slice: no recomputation, only a repaint. */
  function setSlice(axis, index) {
    if (!current || current.map.shape.length !== 3) return;
    const map = current.map;
    const n = map.shape[axis];
    index = Math.min(Math.max(0, index), n - 1);
    state = Object.assign({}, state, { slice: { axis, index } });
    if (cursor) {
      cursor = cursor.slice();
      cursor[axis] = index;
    }
    render();
    syncSlice();
    el.subtitle.textContent = describeView(map);
    renderReadout();
    writeHash();
  }

  function renderStats(map) {
    Panel.renderStats(el.mapStats, map);
  }

  const checkCache = new Map();

  /** The check of the layers on view (memoised: it does not depend on N or the scale). */
  function cachedCheck(shown) {
    const key = JSON.stringify(shown);
    let result = checkCache.get(key);
    if (!result) {
      result = Gridding.checkSchedule(shown);
      if (checkCache.size > 64) checkCache.clear();
      checkCache.set(key, result);
    }
    return result;
  }

  function renderCheck(map) {
    const r = cachedCheck(map.spec.layers);
    current.check = r;
    Panel.renderCheck({ verdict: el.verdict, hdc: el.hdc, metrics: el.metrics }, r, applySuggestion);
  }

  /** Take the suggested schedule (added layers first) and show all of it. */
  function applySuggestion(sg) {
    const n = sg.dilations.length;
    const added = sg.added_layers;
    const kernel = Engine.collapse(layers[0].k);
    const mode = paddingMode(state);
    const pad =
      mode === "explicit"
        ? Array.from({ length: added }, () => Engine.collapse(layers[0].k.map((k) => Math.floor((k - 1) / 2)))).concat(state.pad)
        : Array(n).fill(mode);
    stopPlaying();
    try {
      commit(Object.assign({}, state, { dil: sg.dilations.slice(), ker: Array(n).fill(kernel), str: Array(n).fill(1), pad }), "full");
    } catch (err) {
      refuse(err, null);
    }
    el.dilText.focus();
  }

  // --- the readout --------------------------------------------------------------------------

  function renderReadout() {
    if (current) Panel.renderReadout(el.readout, current.map, cursor);
  }

  // --- the URL fragment ----------------------------------------------------------------------

  function writeHash() {
    const hash = State.stateHash(state);
    if (location.hash !== hash) {
      try {
        history.replaceState(null, "", hash);
      } catch (err) {
        void err; // some embedders (sandboxed iframes) refuse; the view still works
      }
    }
  }

  function readHash() {
    const text = location.hash.replace(/^#/, "");
    if (!text) return;
    try {
      const next = State.parseState(new URLSearchParams(text), state, LIMITS);
      stopPlaying();
      state = next;
      layers = State.validate(state, LIMITS);
      update();
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      update();
      setError(`This link's view is invalid (${err.message}); showing the last valid view.`);
      el.view.classList.remove("stale");
    }
  }

  // --- pointer and keyboard ----------------------------------------------------------------

  /** The full index of the cell under a pointer event, or null. */
  function cellAt(event) {
    if (!current || !current.geom) return null;
    const rect = el.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const g = current.geom;
    const j = Math.floor((x - g.x0) / g.cellX);
    if (g.kind === 1) {
      if (j < 0 || j >= g.n || y < g.y0 - 4 || y > g.y0 + g.h + 4) return null;
      return [j];
    }
    const i = Math.floor((y - g.y0) / g.cellY);
    if (i < 0 || j < 0 || i >= g.R || j >= g.C) return null;
    return planeIndex(i, j);
  }

  /** The full index of cell (row i, column j) of the plane on view. */
  function planeIndex(i, j) {
    const p = current.plane;
    const index = Array(current.map.shape.length).fill(0);
    index[p.rows] = i;
    index[p.cols] = j;
    if (p.slice !== null) index[p.slice] = p.index;
    return index;
  }

  function setCursor(c) {
    const same = c && cursor && c.length === cursor.length && c.every((x, a) => x === cursor[a]);
    if (same || (!c && !cursor)) return;
    cursor = c;
    if (current && current.geom) {
      renderMarks();
      renderReadout();
    }
  }

  function moveCursor(di, dj) {
    if (!current) return;
    const map = current.map;
    const clamp = (x, n) => Math.min(n - 1, Math.max(0, x));
    if (map.shape.length === 1) {
      const start = cursor ? cursor[0] : map.anchor[0];
      setCursor([clamp(start + dj, map.shape[0])]);
      return;
    }
    const p = current.plane;
    const start = cursor || planeIndex(map.anchor[p.rows], map.anchor[p.cols]);
    setCursor(planeIndex(clamp(start[p.rows] + di, map.shape[p.rows]), clamp(start[p.cols] + dj, map.shape[p.cols])));
  }

  function setDepth(depth) {
    const d = Math.min(Math.max(1, depth), state.dil.length);
    if (d === state.depth) return;
    state = Object.assign({}, state, { depth: d });
    update();
  }

  function stopPlaying() {
    if (playing) {
      clearInterval(playing);
      playing = null;
    }
    el.play.textContent = "▶";
    el.play.setAttribute("aria-label", "Play the schedule layer by layer");
    el.play.setAttribute("aria-pressed", "false");
  }

  function togglePlay() {
    if (playing) {
      stopPlaying();
      return;
    }
    if (state.dil.length < 2) return;
    el.play.textContent = "⏸";
    el.play.setAttribute("aria-label", "Pause");
    el.play.setAttribute("aria-pressed", "true");
    if (state.depth >= state.dil.length) setDepth(1);
    playing = setInterval(() => {
      if (state.depth >= state.dil.length) stopPlaying();
      else setDepth(state.depth + 1);
    }, DATA.seconds_per_frame * 1000);
  }

  // --- exports ---------------------------------------------------------------------------

  function fileStem() {
    const suffix = { 1: "-1d", 2: "", 3: "-3d" }[state.ndim];
    return "rfmap-" + state.dil.slice(0, state.depth).map(State.entryText).join("-") + suffix;
  }

  function download(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function exportCanvas() {
    const map = current.map;
    const count = (v) => (v > 999999999999n ? "≈ " + Number(v).toExponential(3) : v.toString());
    return View.exportCanvas(map, sliceOf(map), current.scale, {
      title: el.title.textContent,
      subtitle: el.subtitle.textContent,
      caption: `rfmap ${DATA.version} · max ${count(map.max)} · total ${count(map.total)}`,
    });
  }

  function exportPng() {
    if (!current) return;
    exportCanvas().toBlob((blob) => download(blob, fileStem() + ".png"), "image/png");
  }

  function exportJson() {
    if (!current) return;
    download(new Blob([Engine.mapJSON(current.map) + "\n"], { type: "application/json" }), fileStem() + ".json");
  }

  function copyLink() {
    const url = location.href;
    const done = () => {
      el.readout.textContent = "Link copied: it reproduces this view.";
    };
    const fail = () => {
      el.readout.textContent = "Copy this link: " + url;
    };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(url).then(done, fail);
    else fail();
  }

  // --- wiring ------------------------------------------------------------------------------

  function addLayer(field) {
    const n = state.dil.length;
    const next = Object.assign({}, state, {
      dil: state.dil.concat([state.dil[n - 1]]),
      ker: state.ker.concat([state.ker[n - 1]]),
      str: state.str.concat([state.str[n - 1]]),
      pad: state.pad.concat([state.pad[n - 1]]),
    });
    try {
      commit(next);
    } catch (err) {
      refuse(err, null);
      return;
    }
    const row = el.tbody.rows[el.tbody.rows.length - 1];
    const input = row.querySelector(`input[data-field=${field}]`);
    input.focus();
    input.select();
    row.scrollIntoView({ block: "nearest" });
  }

  function removeLayer(i) {
    const drop = (entries) => entries.filter((_, j) => j !== i);
    commit(Object.assign({}, state, { dil: drop(state.dil), ker: drop(state.ker), str: drop(state.str), pad: drop(state.pad) }));
  }

  function wire() {
    fillPresets();
    el.preset.addEventListener("change", () => {
      const p = DATA.presets.find((x) => x.id === el.preset.value);
      if (!p) return;
      stopPlaying();
      cursor = null;
      const next = State.presetState(p);
      next.scale = state.scale;
      try {
        commit(next, next.depth);
      } catch (err) {
        refuse(err, null);
      }
    });
    for (const input of [el.dilText, el.kerText, el.strText, el.size, el.padText, el.unit]) {
      input.addEventListener("input", () => fromControls(input));
      input.addEventListener("blur", () => el.error.hidden && syncControls());
    }
    el.tbody.addEventListener("input", (e) => {
      if (e.target.matches("input")) fromTable(e.target);
    });
    el.tbody.addEventListener("focusout", (e) => {
      if (e.target.matches("input") && el.error.hidden) renderTable();
    });
    el.tbody.addEventListener("click", (e) => {
      const btn = e.target.closest("button.remove");
      if (!btn || state.dil.length < 2) return;
      const i = Number(btn.closest("tr").dataset.index);
      removeLayer(i);
      const rows = el.tbody.rows;
      const target = rows[Math.min(i, rows.length - 1)].querySelector("button.remove");
      (target.disabled ? el.add : target).focus();
    });
    el.tbody.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || !e.target.matches("input")) return;
      const i = Number(e.target.closest("tr").dataset.index);
      if (i === state.dil.length - 1 && state.dil.length < LIMITS.max_layers) {
        e.preventDefault();
        addLayer(e.target.dataset.field);
      }
    });
    el.add.addEventListener("click", () => addLayer("d"));
    el.padding.addEventListener("change", () => {
      el.padRow.hidden = el.padding.value !== "explicit";
      fromControls(el.padding);
    });
    document.querySelectorAll('input[name="ndim"], input[name="scale"]').forEach((r) => r.addEventListener("change", () => fromControls(r)));
    el.depth.addEventListener("input", () => {
      stopPlaying();
      setDepth(Number(el.depth.value));
    });
    el.sliceAxis.addEventListener("change", () => {
      const axis = Number(el.sliceAxis.value);
      setSlice(axis, current ? current.map.anchor[axis] : 0);
    });
    el.sliceIndex.addEventListener("input", () => setSlice(Number(el.sliceAxis.value), Number(el.sliceIndex.value)));
    el.play.addEventListener("click", togglePlay);
    $("export-png").addEventListener("click", exportPng);
    $("export-json").addEventListener("click", exportJson);
    $("copy-link").addEventListener("click", copyLink);

    el.canvas.addEventListener("pointermove", (e) => setCursor(cellAt(e)));
    el.canvas.addEventListener("pointerdown", (e) => setCursor(cellAt(e)));
    el.canvas.addEventListener("pointerleave", (e) => {
      if (e.pointerType === "mouse" && document.activeElement !== el.canvas) setCursor(null);
    });
    el.canvas.addEventListener("keydown", (e) => {
      const step = e.shiftKey ? 10 : 1;
      const moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
      if (moves[e.key]) {
        e.preventDefault();
        moveCursor(...moves[e.key]);
      } else if (e.key === "Home") {
        e.preventDefault();
        setCursor(null);
        moveCursor(0, 0);
      } else if (e.key === "Escape") {
        setCursor(null);
      } else if ((e.key === "PageUp" || e.key === "PageDown") && current && current.plane && current.plane.slice !== null) {
        e.preventDefault();
        setSlice(current.plane.slice, current.plane.index + (e.key === "PageUp" ? -1 : 1) * step);
      }
    });
    el.canvas.addEventListener("focus", () => {
      if (!cursor) moveCursor(0, 0);
    });
    document.addEventListener("keydown", (e) => {
      const t = e.target;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (t instanceof HTMLInputElement && (t.type === "text" || t.type === "number")) return;
      if (t instanceof HTMLSelectElement) return;
      if (e.key === "[") setDepth(state.depth - 1);
      else if (e.key === "]") setDepth(state.depth + 1);
      else if (e.key === "l" || e.key === "L") {
        const next = State.SCALES[(State.SCALES.indexOf(state.scale) + 1) % State.SCALES.length];
        state = Object.assign({}, state, { scale: next });
        update();
      }
    });
    window.addEventListener("hashchange", readHash);
    let pending = 0;
    const onResize = () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        const width = el.wrap.clientWidth;
        if (width !== wrapWidth) {
          wrapWidth = width;
          if (current) render();
        }
      });
    };
    if (window.ResizeObserver) new ResizeObserver(onResize).observe(el.wrap);
    window.addEventListener("resize", onResize);
  }

  // --- start -------------------------------------------------------------------------------

  wire();
  if (location.hash.length > 1) readHash();
  else update();

  /** Normalised layers {k, d, s, p} from rfmap's ConvLayer.describe() dictionaries. */
  const fromDescribe = (described) =>
    described.map((l) => ({ k: l.kernel_size, d: l.dilation, s: l.stride, p: l.padding }));

  /** Hooks for tests and benchmarks (not a stable API). */
  window.rfmapExplorer = {
    version: DATA.version,
    state: () => JSON.parse(JSON.stringify(state)),
    hash: () => State.stateHash(state),
    error: () => (el.error.hidden ? null : el.error.textContent),
    mapJSON: (withCounts = true) => (current ? Engine.mapJSON(current.map, withCounts) : null),
    /** The exact count of a cell: one index per axis (2D: row, col; 1D: position). */
    cellCount: (...index) => (current ? Engine.cellCount(current.map, index.slice(-current.map.shape.length)).toString() : null),
    check: () => (current ? Engine.toJSON(current.check) : null),
    /** rfmap.gridding.check_layers(...).to_dict() of layers given as ConvLayer.describe() dicts. */
    checkSchedule: (described) => Engine.toJSON(Gridding.checkSchedule(fromDescribe(described))),
    /** The panel's lines for such layers, as [key, text] pairs. */
    reportLines: (described) => Gridding.reportLines(Gridding.checkSchedule(fromDescribe(described))),
    /** Python's format(x, ".3g"), format(x, ".1%") and format(n, ","), as the panel uses them. */
    formats: (x, n) => [Gridding.pyG(x), Gridding.pyPercent(x), Gridding.pyThousands(BigInt(n))],
    /** Recompute and redraw the view (fresh: without the memoised gridding check). */
    redraw: (fresh = false) => {
      if (fresh) checkCache.clear();
      recompute();
      render();
      renderStats(current.map);
      renderCheck(current.map);
    },
    computeMap: (spec) => Engine.computeMap(spec),
    /** Viewport coordinates of the centre of a cell (one index per axis; 1D: position). */
    cellPoint: (...index) => {
      const g = current.geom;
      const rect = el.canvas.getBoundingClientRect();
      if (g.kind === 1) {
        const j = index[index.length - 1];
        return { x: rect.left + g.x0 + (j + 0.5) * g.cellX, y: rect.top + g.y0 + g.h / 2 };
      }
      const p = current.plane;
      const [i, j] = index.length === 2 ? index : [index[p.rows], index[p.cols]];
      return { x: rect.left + g.x0 + (j + 0.5) * g.cellX, y: rect.top + g.y0 + (i + 0.5) * g.cellY };
    },
    /** The plane on view: {rows, cols, slice, index} (slice is null for a 2D map). */
    plane: () => (current && current.plane ? Object.assign({}, current.plane) : null),
    lut: () => View.LUT.map((c) => c.slice()),
    pathLut: () => View.PATH.map((c) => c.slice()),
    /** The colour scale in use ("auto" resolved to "linear" or "log"). */
    scale: () => (current ? current.scale : null),
  };
})();
