// ===================================================================================
// view.js: colours and drawing.  A 2D map (or a slice of a 3D map) is the outer
// product of a row factor and a column factor, so its image is painted from colour
// rows: one per distinct value of the row factor, each averaged over the cells a
// device pixel covers, then copied (or, where a pixel spans rows of different values,
// blended) into one ImageData that goes onto the canvas with putImageData.  No canvas
// scaling, so nothing is left for the browser to resample later.
// ===================================================================================

const View = (function () {
  "use strict";

  // --- colours: matplotlib's "Blues" (ColorBrewer, 9 anchors, linear in RGB, 256 entries) --

  const BLUES = [
    [0.9686274509803922, 0.984313725490196, 1.0],
    [0.8705882352941177, 0.9215686274509803, 0.9686274509803922],
    [0.7764705882352941, 0.8588235294117647, 0.9372549019607843],
    [0.6196078431372549, 0.792156862745098, 0.8823529411764706],
    [0.4196078431372549, 0.6823529411764706, 0.8392156862745098],
    [0.25882352941176473, 0.5725490196078431, 0.7764705882352941],
    [0.12941176470588237, 0.44313725490196076, 0.7098039215686275],
    [0.03137254901960784, 0.3176470588235294, 0.611764705882353],
    [0.03137254901960784, 0.18823529411764706, 0.4196078431372549],
  ];
  const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  // An RGBA pixel as one 32-bit word (int32: typed-array stores make it unsigned).
  const pack = LITTLE_ENDIAN ? (r, g, b) => (255 << 24) | (b << 16) | (g << 8) | r : (r, g, b) => (r << 24) | (g << 16) | (b << 8) | 255;
  const LUT = [];
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (BLUES.length - 1);
    const lo = Math.min(Math.floor(x), BLUES.length - 2);
    const f = x - lo;
    LUT.push([0, 1, 2].map((c) => Math.round((BLUES[lo][c] + f * (BLUES[lo + 1][c] - BLUES[lo][c])) * 255)));
  }
  // The colours of counts >= 1, as rfmap.plot.maps.path_colormap makes them: Blues from
  // 15 % (HOLE_CONTRAST) to 100 %, indexed as matplotlib indexes numpy's
  // linspace(0.15, 1, 256), so one path is a visible blue, never a hole's white.
  const HOLE_CONTRAST = 0.15;
  const PATH = [];
  const PATH32 = new Uint32Array(256);
  const PATH_R = new Float32Array(256);
  const PATH_G = new Float32Array(256);
  const PATH_B = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const x = i === 255 ? 1 : i * ((1 - HOLE_CONTRAST) / 255) + HOLE_CONTRAST;
    const rgb = LUT[Math.min(255, Math.floor(x * 256))];
    PATH.push(rgb);
    PATH32[i] = pack(...rgb);
    [PATH_R[i], PATH_G[i], PATH_B[i]] = rgb;
  }
  const WHITE32 = pack(255, 255, 255);

  /** The scale actually used: "auto" is log when the non-zero counts span over 3 decades. */
  function resolveScale(scale, map) {
    if (scale !== "auto") return scale;
    if (map.max === 0n) return "linear";
    return map.max > 1000n * map.minNonzero ? "log" : "linear";
  }

  function lutIndex(t) {
    const i = Math.floor(t * 256);
    return i < 0 ? 0 : i > 255 ? 255 : i;
  }

  // --- the painter ---------------------------------------------------------------------

  /**
   * How n cells fall onto `pixels` device pixels: where cells are at least a pixel wide,
   * each pixel shows the cell under its centre; where they are narrower, a pixel is the
   * area-weighted average of the cells it covers (weights sum to 1).
   */
  function sampling(n, pixels) {
    const start = new Int32Array(pixels);
    const count = new Int32Array(pixels);
    if (pixels >= n) {
      for (let q = 0; q < pixels; q++) start[q] = Math.min(n - 1, Math.floor(((q + 0.5) * n) / pixels));
      count.fill(1);
      return { up: true, start, count, weights: null, offset: null };
    }
    const scale = n / pixels;
    const offset = new Int32Array(pixels + 1);
    const weights = [];
    for (let q = 0; q < pixels; q++) {
      const x0 = q * scale;
      const x1 = Math.min(n, (q + 1) * scale);
      const j0 = Math.floor(x0);
      const j1 = Math.min(n, Math.ceil(x1));
      start[q] = j0;
      count[q] = j1 - j0;
      offset[q] = weights.length;
      for (let j = j0; j < j1; j++) weights.push((Math.min(j + 1, x1) - Math.max(j, x0)) / (x1 - x0));
    }
    offset[pixels] = weights.length;
    return { up: false, start, count, weights: Float64Array.from(weights), offset };
  }

  // buffers kept between redraws (no garbage per frame)
  const pool = { rows: new Float32Array(0), packed: new Uint32Array(0), acc: new Float32Array(0) };

  function ensure(name, size, Type) {
    if (pool[name].length < size) pool[name] = new Type(Math.max(size, pool[name].length * 2));
    return pool[name];
  }

  /** The pixels [first, last] whose cells meet the cells [lo, hi] (monotonic sampling). */
  function pixelSpan(sm, lo, hi) {
    let first = 0;
    while (first < sm.start.length && sm.start[first] + sm.count[first] - 1 < lo) first++;
    let last = sm.start.length - 1;
    while (last >= first && sm.start[last] > hi) last--;
    return [first, last];
  }

  /** The first and last index of a key that is not empty (-1, -1 when there is none). */
  function keySpan(keys, empty) {
    let lo = 0;
    while (lo < keys.length && empty(keys[lo])) lo++;
    let hi = keys.length - 1;
    while (hi >= lo && empty(keys[hi])) hi--;
    return lo < keys.length ? [lo, hi] : [-1, -1];
  }

  /**
   * Paint the image of an outer-product map into `px` (W x H device pixels, row-major).
   * rowKeys / colKeys are per-cell keys: linear: row = count * 256 / top, col = count;
   * log: row and col = ln(count).  A key that is 0 (linear) or -Infinity (log) is a cell
   * without a path: white.  The colour index is floor(row * col) or floor((row + col) * inv).
   * Only the pixels that meet the field are computed; the rest is filled white.
   */
  function paintImage(px, W, H, rowKeys, colKeys, log, inv) {
    px.fill(WHITE32, 0, W * H);
    const empty = log ? (key) => key === -Infinity : (key) => key === 0;
    const [r0, r1] = keySpan(rowKeys, empty);
    const [c0, c1] = keySpan(colKeys, empty);
    if (r0 < 0 || c0 < 0) return;
    const cs = sampling(colKeys.length, W);
    const rs = sampling(rowKeys.length, H);
    const [q0, q1] = pixelSpan(cs, c0, c1);
    const [p0, p1] = pixelSpan(rs, r0, r1);
    const span = q1 - q0 + 1;
    // Distinct row keys are few (a factor repeats its values): one colour row each.
    const slots = new Map();
    for (let i = r0; i <= r1; i++) if (!empty(rowKeys[i]) && !slots.has(rowKeys[i])) slots.set(rowKeys[i], -1);
    let used = 0;
    // Colour sums per row are needed only where a pixel blends rows (cells under a pixel).
    const needSums = !rs.up;
    const rows = needSums ? ensure("rows", 3 * span * slots.size, Float32Array) : null;
    const packed = ensure("packed", span * slots.size, Uint32Array);
    const slotOf = (key) => {
      let slot = slots.get(key);
      if (slot < 0) {
        slot = used++;
        slots.set(key, slot);
        fillRow(slot, key);
      }
      return slot;
    };
    function fillRow(slot, key) {
      const out = slot * span;
      for (let q = q0; q <= q1; q++) {
        let r = 0;
        let g = 0;
        let b = 0;
        const j0 = cs.start[q];
        const n = cs.count[q];
        const o = cs.up ? 0 : cs.offset[q];
        for (let t = 0; t < n; t++) {
          const ck = colKeys[j0 + t];
          const w = cs.up ? 1 : cs.weights[o + t];
          if (empty(ck)) {
            r += 255 * w;
            g += 255 * w;
            b += 255 * w;
          } else {
            let k = log ? (inv > 0 ? Math.floor((key + ck) * inv) : 255) : Math.floor(key * ck);
            k = k > 255 ? 255 : k < 0 ? 0 : k;
            r += PATH_R[k] * w;
            g += PATH_G[k] * w;
            b += PATH_B[k] * w;
          }
        }
        const at = out + q - q0;
        packed[at] = pack((r + 0.5) | 0, (g + 0.5) | 0, (b + 0.5) | 0);
        if (needSums) {
          rows[3 * at] = r;
          rows[3 * at + 1] = g;
          rows[3 * at + 2] = b;
        }
      }
    }
    const acc = needSums ? ensure("acc", 3 * span, Float32Array) : null;
    for (let p = p0; p <= p1; p++) {
      const i0 = rs.start[p];
      const n = rs.count[p];
      let same = true;
      for (let t = 1; t < n && same; t++) same = rowKeys[i0 + t] === rowKeys[i0];
      if (same) {
        const key = rowKeys[i0];
        if (!empty(key)) {
          const slot = slotOf(key);
          px.set(packed.subarray(slot * span, slot * span + span), p * W + q0);
        }
        continue;
      }
      // rows of different values under one pixel (only when cells are narrower than a pixel)
      acc.fill(0, 0, 3 * span);
      const o = rs.offset[p];
      for (let t = 0; t < n; t++) {
        const key = rowKeys[i0 + t];
        const w = rs.weights[o + t];
        if (empty(key)) addWhite(acc, 3 * span, w);
        else addRow(acc, rows, 3 * span * slotOf(key), 3 * span, w);
      }
      packRow(px, p * W + q0, acc, span);
    }
  }

  // The blending loops, as small functions of typed arrays (the hot path at N = 1024).
  function addWhite(acc, length, w) {
    const v = 255 * w;
    for (let q = 0; q < length; q++) acc[q] += v;
  }

  function addRow(acc, rows, base, length, w) {
    for (let q = 0; q < length; q++) acc[q] += rows[base + q] * w;
  }

  function packRow(px, at, acc, span) {
    for (let q = 0, c = 0; q < span; q++, c += 3) {
      px[at + q] = pack((acc[c] + 0.5) | 0, (acc[c + 1] + 0.5) | 0, (acc[c + 2] + 0.5) | 0);
    }
  }

  /** The keys of paintImage for a 2D view of a map (rows, columns and a slice factor). */
  function imageKeys(map, plane, scale) {
    const rowF = map.approx[plane.rows];
    const colF = map.approx[plane.cols];
    const sliceF = plane.slice === null ? 1 : map.approx[plane.slice][plane.index];
    const top = Math.max(Number(map.max), 1);
    const rowKeys = new Float64Array(rowF.length);
    const colKeys = new Float64Array(colF.length);
    if (scale === "log") {
      const lt = Math.log(top);
      const ls = sliceF > 0 ? Math.log(sliceF) : -Infinity;
      for (let i = 0; i < rowF.length; i++) rowKeys[i] = rowF[i] > 0 ? Math.log(rowF[i]) + (plane.slice === null ? 0 : ls) : -Infinity;
      for (let j = 0; j < colF.length; j++) colKeys[j] = colF[j] > 0 ? Math.log(colF[j]) : -Infinity;
      return { rowKeys, colKeys, log: true, inv: lt > 0 ? 256 / lt : 0 };
    }
    const s = (256 / top) * sliceF;
    for (let i = 0; i < rowF.length; i++) rowKeys[i] = rowF[i] * s;
    colKeys.set(colF);
    return { rowKeys, colKeys, log: false, inv: 0 };
  }

  /** Colour index of a count given as a float (for the text colour of written counts). */
  function normIndex(v, top, scale) {
    if (v <= 0) return 0;
    if (scale === "log") {
      const lt = Math.log(top);
      return lt > 0 ? lutIndex(Math.log(v) / lt) : 255;
    }
    return lutIndex(v / top);
  }

  // --- ticks and labels ------------------------------------------------------------------

  const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
  const TICK_COLOR = "#5b6b7b";
  const UNIT_COLOR = "#e8590c";
  const CURSOR_COLOR = "#111827";
  const HOLE_COLOR = "#d62728";

  function niceStep(span, target) {
    const raw = span / Math.max(target, 1);
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p);
    return Math.max(1, 10 * p);
  }

  /** Tick positions (cell indices) of an axis of n cells drawn `pixels` wide; labels are origin + index. */
  function ticks(n, pixels, origin = 0, labelWidth = 40) {
    const step = niceStep(n - 1, Math.max(2, Math.floor(pixels / Math.max(60, labelWidth + 24))));
    const out = [];
    const first = Math.ceil(origin / step) * step;
    for (let v = first; v < origin + n; v += step) out.push(v - origin);
    return out;
  }

  /** A tick label: the integer below a million, else 3 significant digits (1.23e+44). */
  function formatShort(x) {
    const v = Number(x);
    return v < 1e6 ? String(Math.round(v)) : Gridding.pyG(v, 3);
  }

  let measurer = null;
  function textWidth(text) {
    if (!measurer) measurer = document.createElement("canvas").getContext("2d");
    measurer.font = FONT;
    return measurer.measureText(text).width;
  }

  /** Room above row 0 for half its label. */
  const MAP_TOP = 7;
  const MAP_BOTTOM = 22;

  /** The left margin of a 2D map: room for its widest row label. */
  function rowLabelMargin(n, origin) {
    const widest = Math.max(textWidth(String(origin)), textWidth(String(origin + n - 1)));
    return Math.max(34, Math.ceil(widest) + 12);
  }

  // --- 2D maps and slices -----------------------------------------------------------------

  /** A 2D view of a map: rows and columns are axes; a 3D map adds the sliced axis and index. */
  function planeOf(map, slice) {
    if (map.shape.length === 2) return { rows: 0, cols: 1, slice: null, index: 0 };
    const rest = [0, 1, 2].filter((a) => a !== slice.axis);
    return { rows: rest[0], cols: rest[1], slice: slice.axis, index: slice.index };
  }

  /** Where the map goes inside box g = {x, y, w, h} (CSS pixels), aligned to device pixels. */
  function layout2d(map, plane, g, dpr) {
    const R = map.shape[plane.rows];
    const C = map.shape[plane.cols];
    const left = rowLabelMargin(R, map.origin[plane.rows]);
    const availW = Math.max(10, g.w - left - 4);
    const availH = Math.max(10, g.h - MAP_BOTTOM - MAP_TOP);
    let cell = Math.min(availW / C, availH / R);
    if (cell >= 1) cell = Math.floor(cell);
    const W = Math.max(1, Math.round(cell * C * dpr));
    const H = Math.max(1, Math.round(cell * R * dpr));
    const x0 = Math.round((g.x + left + Math.max(0, Math.floor((availW - W / dpr) / 2))) * dpr) / dpr;
    const y0 = Math.round((g.y + MAP_TOP) * dpr) / dpr;
    return { kind: 2, x0, y0, W, H, dpr, cellX: W / dpr / C, cellY: H / dpr / R, w: W / dpr, h: H / dpr, R, C, plane };
  }

  /**
   * Draw a 2D map (or slice): its image, and with `frame` its border and ticks (a redraw
   * with the same geometry leaves them as they are); in big cells, the counts.  `cache`
   * keeps the last image so a redraw with the same map and geometry reuses it.
   */
  function draw2d(ctx, map, geom, scale, cache, frame = true) {
    const { plane, R, C, W, H, dpr } = geom;
    const key = [W, H, scale, plane.rows, plane.cols, plane.slice, plane.index].join("/");
    let image = cache && cache.map === map && cache.key === key ? cache.image : null;
    if (!image) {
      // the same ImageData is painted again when the size is the same (no garbage per frame)
      image = cache && cache.image && cache.image.width === W && cache.image.height === H ? cache.image : ctx.createImageData(W, H);
      const k = imageKeys(map, plane, scale);
      paintImage(new Uint32Array(image.data.buffer), W, H, k.rowKeys, k.colKeys, k.log, k.inv);
      if (cache) Object.assign(cache, { map, key, image });
    }
    ctx.putImageData(image, Math.round(geom.x0 * dpr), Math.round(geom.y0 * dpr));
    const { x0, y0, w, h, cellX, cellY } = geom;
    ctx.save();
    if (frame) {
      ctx.font = FONT;
      ctx.strokeStyle = "#c4cdd6";
      ctx.lineWidth = 1;
      ctx.strokeRect(x0 - 0.5, y0 - 0.5, w + 1, h + 1);
      // ticks: labels are input positions (offsets from the unit for an unbounded map)
      const rowOrigin = map.origin[plane.rows];
      const colOrigin = map.origin[plane.cols];
      ctx.fillStyle = TICK_COLOR;
      ctx.strokeStyle = TICK_COLOR;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const colWidth = Math.max(textWidth(String(colOrigin)), textWidth(String(colOrigin + C - 1)));
      for (const t of ticks(C, w, colOrigin, colWidth)) {
        const x = x0 + (t + 0.5) * cellX;
        ctx.beginPath();
        ctx.moveTo(x, y0 + h + 1);
        ctx.lineTo(x, y0 + h + 5);
        ctx.stroke();
        ctx.fillText(String(t + colOrigin), x, y0 + h + 7);
      }
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const t of ticks(R, h, rowOrigin, 12)) {
        const y = y0 + (t + 0.5) * cellY;
        ctx.beginPath();
        ctx.moveTo(x0 - 1, y);
        ctx.lineTo(x0 - 5, y);
        ctx.stroke();
        ctx.fillText(String(t + rowOrigin), x0 - 7, y);
      }
    }
    // counts written in the cells when they are big enough to read
    if (Math.min(cellX, cellY) >= 20) writeCounts(ctx, map, geom, scale);
    ctx.restore();
  }

  /** The receptive field's bounding box in this input (dashed): zero cells inside are holes. */
  function fieldBox(ctx, map, geom) {
    const { plane, x0, y0, cellX, cellY } = geom;
    const rows = map.axes[plane.rows];
    const cols = map.axes[plane.cols];
    const boxed = (x) => x.first >= 0 && (x.first > 0 || x.last < x.approx.length - 1);
    if (rows.first < 0 || cols.first < 0 || !(boxed(rows) || boxed(cols))) return;
    ctx.save();
    ctx.strokeStyle = "rgba(21, 32, 43, 0.45)";
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(
      x0 + cols.first * cellX - 1.5,
      y0 + rows.first * cellY - 1.5,
      (cols.last - cols.first + 1) * cellX + 3,
      (rows.last - rows.first + 1) * cellY + 3
    );
    ctx.restore();
  }

  function writeCounts(ctx, map, geom, scale) {
    const { plane, R, C, x0, y0, cellX, cellY } = geom;
    const top = Math.max(Number(map.max), 1);
    const size = Math.min(13, Math.floor(Math.min(cellX, cellY) * 0.45));
    ctx.font = `${size}px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const index = [0, 0, 0].slice(0, map.shape.length);
    if (plane.slice !== null) index[plane.slice] = plane.index;
    for (let i = 0; i < R; i++) {
      if (map.approx[plane.rows][i] === 0) continue;
      for (let j = 0; j < C; j++) {
        if (map.approx[plane.cols][j] === 0) continue;
        index[plane.rows] = i;
        index[plane.cols] = j;
        const count = Engine.cellCount(map, index);
        if (count === 0n) continue;
        const text = count.toString();
        if (ctx.measureText(text).width > cellX - 3) continue;
        ctx.fillStyle = normIndex(Number(count), top, scale) > 0.6 * 255 ? "#ffffff" : "#111827";
        ctx.fillText(text, x0 + (j + 0.5) * cellX, y0 + (i + 0.5) * cellY);
      }
    }
  }

  /** The marks over a 2D map: the output unit and the inspected cell ([row, col] or null). */
  function marks2d(ctx, geom, unit, cursor) {
    const { x0, y0, cellX, cellY, R, C } = geom;
    const mark = (rc, color, width) => {
      if (rc[0] < 0 || rc[1] < 0 || rc[0] >= R || rc[1] >= C) return;
      const px = Math.max(0, (5 - cellX) / 2);
      const py = Math.max(0, (5 - cellY) / 2);
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.strokeRect(x0 + rc[1] * cellX - px, y0 + rc[0] * cellY - py, cellX + 2 * px, cellY + 2 * py);
    };
    if (unit) mark(unit, UNIT_COLOR, 1.5);
    if (cursor) mark(cursor, CURSOR_COLOR, 2);
  }

  // --- 1D maps ------------------------------------------------------------------------------

  function layout1d(map, g) {
    const left = 52;
    const x0 = g.x + left;
    const y0 = g.y + 8;
    const w = Math.max(10, g.w - left - 8);
    const h = Math.max(10, g.h - 24 - 8);
    return { kind: 1, x0, y0, w, h, n: map.shape[0], cellX: w / map.shape[0] };
  }

  function draw1d(ctx, map, geom, scale) {
    const { x0, y0, w, h, n, cellX: cell } = geom;
    const top = Math.max(Number(map.max), 1);
    const logTop = Math.log10(top);
    const height = (v) => {
      if (v <= 0) return 0;
      if (scale === "log") return logTop > 0 ? ((Math.log10(v) + 0.12 * logTop) / (1.12 * logTop)) * h : h;
      return (v / top) * h;
    };
    ctx.save();
    ctx.font = FONT;
    ctx.strokeStyle = "#c4cdd6";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0 - 0.5, y0);
    ctx.lineTo(x0 - 0.5, y0 + h + 0.5);
    ctx.lineTo(x0 + w, y0 + h + 0.5);
    ctx.stroke();
    // bars: one per cell, or the tallest per pixel column when cells are narrower
    ctx.fillStyle = "#2b7bba";
    const a = map.approx[0];
    if (cell >= 2) {
      const bw = Math.max(1, cell * 0.85);
      for (let i = 0; i < n; i++) {
        const bh = height(a[i]);
        if (bh > 0) ctx.fillRect(x0 + i * cell + (cell - bw) / 2, y0 + h - bh, bw, bh);
      }
    } else {
      const cols = Math.ceil(w);
      for (let c = 0; c < cols; c++) {
        const i0 = Math.floor(c / cell);
        const i1 = Math.min(n, Math.max(i0 + 1, Math.floor((c + 1) / cell)));
        let v = 0;
        for (let i = i0; i < i1; i++) if (a[i] > v) v = a[i];
        const bh = height(v);
        if (bh > 0) ctx.fillRect(x0 + c, y0 + h - bh, 1, bh);
      }
    }
    // holes inside the field: red marks on the axis
    const axis = map.axes[0];
    if (axis.first >= 0) {
      ctx.strokeStyle = HOLE_COLOR;
      ctx.lineWidth = 1.2;
      const r = Math.max(1.5, Math.min(3.5, cell * 0.35));
      for (let i = axis.first + 1; i < axis.last; i++) {
        if (a[i] !== 0) continue;
        const x = x0 + (i + 0.5) * cell;
        ctx.beginPath();
        ctx.moveTo(x - r, y0 + h - r);
        ctx.lineTo(x + r, y0 + h + r);
        ctx.moveTo(x + r, y0 + h - r);
        ctx.lineTo(x - r, y0 + h + r);
        ctx.stroke();
      }
    }
    // ticks
    const origin = map.origin[0];
    ctx.fillStyle = TICK_COLOR;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const labelWidth = Math.max(textWidth(String(origin)), textWidth(String(origin + n - 1)));
    for (const t of ticks(n, w, origin, labelWidth)) ctx.fillText(String(t + origin), x0 + (t + 0.5) * cell, y0 + h + 6);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yTicks = [];
    if (scale === "log") {
      const step = Math.max(1, Math.ceil(logTop / 4));
      for (let e = 0; e <= logTop; e += step) yTicks.push(Math.pow(10, e));
    } else {
      const step = niceStep(top, 4);
      for (let v = 0; v <= top; v += step) yTicks.push(v);
    }
    for (const v of yTicks) ctx.fillText(formatShort(v), x0 - 6, y0 + h - height(v));
    ctx.translate(x0 - 42, y0 + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("paths", 0, 0);
    ctx.restore();
  }

  /** The marks over a 1D map: the output unit (dashed) and the inspected position. */
  function marks1d(ctx, geom, unit, cursor) {
    const { x0, y0, h, n, cellX } = geom;
    const vline = (i, color, dash) => {
      if (i < 0 || i >= n) return;
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.lineWidth = 1.2;
      ctx.beginPath();
      ctx.moveTo(x0 + (i + 0.5) * cellX, y0);
      ctx.lineTo(x0 + (i + 0.5) * cellX, y0 + h);
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (unit !== null) vline(unit, UNIT_COLOR, [3, 3]);
    if (cursor !== null) vline(cursor, CURSOR_COLOR, []);
  }

  // --- the colour bar -------------------------------------------------------------------------

  function colorbarLabels(map, scale) {
    const maxV = Math.max(Number(map.max), 1);
    const labels = [];
    if (scale === "log") {
      const lt = Math.log10(maxV);
      const step = Math.max(1, Math.ceil(lt / 5));
      for (let e = 0; e <= lt + 1e-9; e += step) labels.push([Math.pow(10, e), lt > 0 ? e / lt : 1]);
    } else {
      const step = niceStep(maxV, 5);
      for (let v = 0; v <= maxV + 1e-9; v += step) labels.push([v, v / maxV]);
    }
    // the top of the bar is the largest count: say it, unless a label is already near
    if (labels[labels.length - 1][1] < 0.8) labels.push([maxV, 1]);
    return labels;
  }

  const ramps = new Map();

  /** The colour ramp of the bar, one pixel per step, in a canvas the bar stretches across. */
  function ramp(len, horizontal) {
    const key = `${len}/${horizontal}`;
    let canvas = ramps.get(key);
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.width = horizontal ? len : 1;
      canvas.height = horizontal ? 1 : len;
      const ctx = canvas.getContext("2d");
      const image = ctx.createImageData(canvas.width, canvas.height);
      const px = new Uint32Array(image.data.buffer);
      for (let i = 0; i < len; i++) px[i] = PATH32[lutIndex(horizontal ? i / (len - 1) : 1 - i / (len - 1))];
      ctx.putImageData(image, 0, 0);
      if (ramps.size > 8) ramps.clear();
      ramps.set(key, canvas);
    }
    return canvas;
  }

  /** Paint a colour bar into box g (white background, ticks, labels, the scale's name). */
  function paintColorbar(ctx, map, scale, g, horizontal) {
    ctx.save();
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(g.x - 2, g.y - 2, g.w + 4, g.h + 4);
    ctx.font = FONT;
    const thick = 13;
    const labels = colorbarLabels(map, scale);
    if (horizontal) {
      const len = g.w;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(ramp(Math.round(len), true), g.x, g.y, len, thick);
      ctx.strokeStyle = "#c4cdd6";
      ctx.strokeRect(g.x - 0.5, g.y - 0.5, len + 1, thick + 1);
      ctx.fillStyle = TICK_COLOR;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (const [v, t] of labels) {
        const x = g.x + t * (len - 1);
        ctx.fillRect(x - 0.5, g.y + thick, 1, 3);
        ctx.fillText(formatShort(v), Math.min(Math.max(x, g.x + 8), g.x + len - 8), g.y + thick + 5);
      }
    } else {
      const len = Math.max(10, g.h - 22);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(ramp(Math.round(len), false), g.x + 4, g.y, thick, len);
      ctx.strokeStyle = "#c4cdd6";
      ctx.lineWidth = 1;
      ctx.strokeRect(g.x + 3.5, g.y - 0.5, thick + 1, len + 1);
      ctx.fillStyle = TICK_COLOR;
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      for (const [v, t] of labels) {
        const y = g.y + (1 - t) * (len - 1);
        ctx.fillRect(g.x + 4 + thick, y - 0.5, 3, 1);
        ctx.fillText(formatShort(v), g.x + thick + 9, y);
      }
      ctx.fillText(scale, g.x + 2, g.y + len + 12);
    }
    ctx.restore();
  }

  /**
   * Size a canvas to CSS width x height at the device pixel ratio and return its context
   * (`ctx.resized` says whether the canvas was resized, which clears it).
   */
  function sizeCanvas(canvas, width, height, dpr) {
    const wpx = Math.round(width * dpr);
    const hpx = Math.round(height * dpr);
    const resized = canvas.width !== wpx || canvas.height !== hpx;
    if (resized) {
      canvas.width = wpx;
      canvas.height = hpx;
    }
    // setting a style, even to its value, makes the browser look at the layout again
    if (canvas.style.width !== width + "px") canvas.style.width = width + "px";
    if (canvas.style.height !== height + "px") canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.resized = resized;
    return ctx;
  }

  /** Draw the colour bar beside the map (vertical) or under it (horizontal, narrow screens). */
  function drawColorbar(canvas, map, scale, geom, horizontal, boxWidth, dpr) {
    const width = horizontal ? boxWidth : 62;
    const height = horizontal ? 46 : geom.y0 + geom.h + 22;
    const ctx = sizeCanvas(canvas, width, height, dpr);
    const g = horizontal ? { x: geom.x0, y: 4, w: geom.w, h: height - 4 } : { x: 0, y: geom.y0, w: width, h: height - geom.y0 };
    paintColorbar(ctx, map, scale, g, horizontal);
  }

  /** A figure like rfmap plot's: title, subtitle, the map, its colour bar and a caption. */
  function exportCanvas(map, slice, scale, text) {
    const nd = map.shape.length;
    let mapBox;
    let plane = null;
    if (nd >= 2) {
      plane = planeOf(map, slice);
      const R = map.shape[plane.rows];
      const C = map.shape[plane.cols];
      const cell = Math.max(1, Math.ceil(600 / Math.max(R, C)));
      mapBox = { w: rowLabelMargin(R, map.origin[plane.rows]) + 4 + C * cell, h: MAP_TOP + R * cell + MAP_BOTTOM };
    } else {
      mapBox = { w: Math.max(720, Math.min(2400, map.shape[0] * 4 + 60)), h: 320 };
    }
    const bar = nd >= 2 ? 70 : 0;
    const width = Math.max(mapBox.w + bar + 40, 480);
    const height = mapBox.h + 100;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#15202b";
    ctx.font = '600 18px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(text.title, width / 2, 14, width - 24);
    ctx.font = FONT;
    ctx.fillStyle = "#5b6b7b";
    ctx.fillText(text.subtitle, width / 2, 40, width - 24);
    const box = { x: 20 + Math.max(0, (width - 40 - bar - mapBox.w) / 2), y: 64, w: mapBox.w, h: mapBox.h };
    if (nd >= 2) {
      const geom = layout2d(map, plane, box, 1);
      draw2d(ctx, map, geom, scale, null);
      fieldBox(ctx, map, geom);
      paintColorbar(ctx, map, scale, { x: geom.x0 + geom.w + 10, y: geom.y0, w: bar - 10, h: geom.h + 22 }, false);
    } else {
      draw1d(ctx, map, layout1d(map, box), scale);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillStyle = "#8a96a3";
    ctx.fillText(text.caption, width - 12, height - 8, width - 24);
    return canvas;
  }

  return {
    LUT,
    PATH,
    FONT,
    resolveScale,
    sampling,
    paintImage,
    planeOf,
    layout2d,
    draw2d,
    fieldBox,
    marks2d,
    layout1d,
    draw1d,
    marks1d,
    drawColorbar,
    sizeCanvas,
    exportCanvas,
  };
})();
