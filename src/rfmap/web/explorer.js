(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("rfmap-data").textContent);
  const LIMITS = DATA.limits;
  const PADDINGS = ["same", "valid", "causal"];
  const SCALES = ["auto", "linear", "log"];
  const MAX_SAFE = Number.MAX_SAFE_INTEGER;

  // ===================================================================================
  // Exact engine: a port of rfmap.paths.axis_counts (stride 1) and PathMap.to_dict.
  // The 2D map is the outer product of one 1D factor per axis; both axes are equal here
  // (square input, the same kernel and dilation on both axes of a layer).
  // ===================================================================================

  class SpecError extends Error {}

  /** Zero padding (left, right) of one layer, exactly as PyTorch applies it. */
  function pads(mode, k, d) {
    const total = d * (k - 1);
    if (mode === "same") return [Math.floor(total / 2), total - Math.floor(total / 2)];
    if (mode === "causal") return [total, 0];
    return [0, 0];
  }

  function shapeText(n, ndim) {
    return "[" + Array(ndim).fill(n).join(", ") + "]";
  }

  /** Input size and the output size of every layer: [n, out_1, ..., out_L]. */
  function outputSizes(layers, mode, n, ndim) {
    const sizes = [n];
    for (let i = 0; i < layers.length; i++) {
      const { k, d } = layers[i];
      const [left, right] = pads(mode, k, d);
      const out = sizes[i] + left + right - (d * (k - 1) + 1) + 1;
      if (out < 1) {
        throw new SpecError(
          `size ${shapeText(n, ndim)} is too small for this stack: layer ${i + 1} would output ` +
            shapeText(out, ndim)
        );
      }
      sizes.push(out);
    }
    return sizes;
  }

  /** Receptive field of the first i layers (unbounded input), for i = 1..L. */
  function fieldsByDepth(layers) {
    const out = [];
    let rf = 1;
    for (const { k, d } of layers) {
      rf += d * (k - 1);
      out.push(rf);
    }
    return out;
  }

  /** Largest 1D count: the product of the kernel sizes (every path survives). */
  function pathBound(layers) {
    let bound = 1n;
    for (const { k } of layers) bound *= BigInt(k);
    return bound;
  }

  /**
   * One layer of an all-ones transposed convolution on a 1D count vector: out[i] is the
   * sum of values[i - t*d] for t = 0..k-1.  A running sum along each residue class mod d
   * makes it O(length) whatever k is; every partial sum is a count of paths, so it stays
   * exact in float64 below 2**53 (and BigInt is exact anyway).
   */
  function spread(values, k, d, big) {
    const span = values.length;
    const length = span + (k - 1) * d;
    const out = big ? new Array(length).fill(0n) : new Float64Array(length);
    const reach = k * d;
    for (let i = 0; i < length; i++) {
      let v = i >= d ? out[i - d] : big ? 0n : 0;
      if (i < span) v += values[i];
      if (i >= reach && i - reach < span) v -= values[i - reach];
      out[i] = v;
    }
    return out;
  }

  /**
   * Exact 1D path counts to output position `unit`: {origin, values}, the values clipped
   * to each layer's input exactly where zero padding loses paths (rfmap.paths.axis_counts).
   * `big` selects BigInt arithmetic; otherwise Float64Array, exact below 2**53.
   */
  function axisCounts(layers, mode, sizes, unit, big) {
    let offset = unit;
    let values = big ? [1n] : new Float64Array([1]);
    for (let index = layers.length - 1; index >= 0; index--) {
      const { k, d } = layers[index];
      const grown = spread(values, k, d, big);
      const length = grown.length;
      offset -= pads(mode, k, d)[0];
      const lo = Math.max(0, -offset);
      const hi = Math.min(length, sizes[index] - offset);
      if (hi <= lo) return { origin: 0, values: big ? [] : new Float64Array(0) };
      values = lo === 0 && hi === length ? grown : grown.slice(lo, hi);
      offset += lo;
    }
    return { origin: offset, values };
  }

  /**
   * The exact map of a stack: its 1D factor (length n) and the exact statistics that
   * PathMap reports.  Throws SpecError as rfmap's conv_stack / output_sizes would.
   */
  function computeMap(spec) {
    const { layers, size, ndim, padding } = spec;
    if (!layers.length) throw new SpecError("dilations must name at least one layer, got an empty schedule");
    const sizes = outputSizes(layers, padding, size, ndim);
    const out = sizes[sizes.length - 1];
    const unit = Math.floor(out / 2);
    const bound = pathBound(layers);
    const big = bound > BigInt(MAX_SAFE);
    const { origin, values } = axisCounts(layers, padding, sizes, unit, big);
    const factor = big ? new Array(size).fill(0n) : new Float64Array(size);
    for (let i = 0; i < values.length; i++) factor[origin + i] = values[i];

    let first = -1;
    let last = -1;
    let nonzero = 0;
    let fmax = 0n;
    let fsum = 0n;
    let fmin = 0n;
    for (let i = 0; i < size; i++) {
      const v = factor[i];
      if (big ? v !== 0n : v !== 0) {
        const b = BigInt(v);
        if (first < 0) first = i;
        last = i;
        nonzero++;
        fsum += b;
        if (b > fmax) fmax = b;
        if (fmin === 0n || b < fmin) fmin = b;
      }
    }
    const rf = first < 0 ? 0 : last - first + 1;
    const power = (x) => (ndim === 1 ? x : x * x);
    // Floats for colouring; exact values come from `factor` on demand.
    const approx = new Float64Array(size);
    for (let i = 0; i < size; i++) approx[i] = Number(factor[i]);
    return {
      spec,
      sizes,
      unit,
      big,
      factor,
      approx,
      first,
      last,
      receptiveField: rf,
      support: BigInt(nonzero) ** BigInt(ndim),
      max: power(fmax),
      minNonzero: power(fmin),
      total: power(fsum),
    };
  }

  /** Exact count of cell (i, j); in 1D of position j (i is ignored). */
  function cellCount(map, i, j) {
    if (map.spec.ndim === 1) return BigInt(map.factor[j]);
    return BigInt(map.factor[i]) * BigInt(map.factor[j]);
  }

  // --- PathMap.to_dict(), serialised like Python's json.dumps --------------------------

  class Raw {
    constructor(text) {
      this.text = text;
    }
  }

  function toJSON(value) {
    if (value === null) return "null";
    if (value instanceof Raw) return value.text;
    if (value instanceof PyFloat) return pyFloatRepr(value.value);
    if (typeof value === "boolean") return value ? "true" : "false";
    if (typeof value === "bigint") return value.toString();
    if (typeof value === "number") return String(value);
    if (typeof value === "string") return JSON.stringify(value);
    if (Array.isArray(value)) return "[" + value.map(toJSON).join(", ") + "]";
    const keys = Object.keys(value).filter((key) => !key.startsWith("_"));
    return "{" + keys.map((key) => JSON.stringify(key) + ": " + toJSON(value[key])).join(", ") + "}";
  }

  function countsJSON(map) {
    const { factor, spec } = map;
    const n = spec.size;
    const strings = new Array(n);
    for (let i = 0; i < n; i++) strings[i] = BigInt(factor[i]).toString();
    if (spec.ndim === 1) return "[" + strings.join(", ") + "]";
    const rows = new Array(n);
    const row = new Array(n);
    for (let i = 0; i < n; i++) {
      const a = BigInt(factor[i]);
      if (a === 0n) {
        rows[i] = "[" + new Array(n).fill("0").join(", ") + "]";
        continue;
      }
      for (let j = 0; j < n; j++) row[j] = factor[j] == 0 ? "0" : (a * BigInt(factor[j])).toString();
      rows[i] = "[" + row.join(", ") + "]";
    }
    return "[" + rows.join(", ") + "]";
  }

  /** The same dictionary as rfmap.path_map(...).to_dict(), as a JSON text. */
  function mapJSON(map, withCounts = true) {
    const { spec } = map;
    const nd = spec.ndim;
    const rep = (x) => Array(nd).fill(x);
    const kernels = spec.layers.map((l) => l.k);
    const dict = {
      dilations: spec.layers.map((l) => l.d),
      kernel: kernels.every((k) => k === kernels[0]) ? kernels[0] : kernels,
      size: spec.size,
      shape: rep(spec.size),
      ndim: nd,
      unit: rep(map.unit),
      origin: rep(0),
      layers: spec.layers.map((l) => ({
        kernel_size: rep(l.k),
        dilation: rep(l.d),
        stride: rep(1),
        padding: spec.padding,
      })),
      receptive_field: rep(map.receptiveField),
      support: map.support,
      max: map.max,
      total: map.total,
    };
    if (withCounts) dict.counts = new Raw(countsJSON(map));
    return toJSON(dict);
  }

  // ===================================================================================
  // Gridding check: a port of rfmap.gridding.check (GriddingReport.to_dict) and of
  // rfmap.design.suggest_fix, for stride-1 stacks with the same values on every axis.
  // Everything is for an unbounded input, as `rfmap check` reports it.
  // ===================================================================================

  const HOLE_OFFSETS_LIMIT = 1000;
  const CHECK_BYTES = 64 * 2 ** 20; // rfmap.gridding.DEFAULT_CHECK_BYTES
  const INT64_LIMIT = 2n ** 63n - 1n;
  const FIX_NODES = 100000; // rfmap.design.DEFAULT_FIX_NODES
  // The page counts the unbounded field only below this work (layers x field length).
  const FIELD_WORK_LIMIT = { number: 4e7, bigint: 3e6 };

  /** A float, serialised as Python's repr() writes it. */
  class PyFloat {
    constructor(value) {
      this.value = value;
    }
  }

  /** Python's repr() of a finite float: shortest round-trip digits, its exponent rules. */
  function pyFloatRepr(x) {
    if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
    const [mantissa, expText] = Math.abs(x).toExponential().split("e");
    const digits = mantissa.replace(".", "");
    const exp = Number(expText);
    const sign = x < 0 ? "-" : "";
    const point = exp + 1;
    if (point > 16 || point <= -4) {
      const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
      return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
    }
    if (point <= 0) return sign + "0." + "0".repeat(-point) + digits;
    if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length) + ".0";
    return sign + digits.slice(0, point) + "." + digits.slice(point);
  }

  function bitLength(n) {
    return n === 0n ? 0 : n.toString(2).length;
  }

  /** n / d for BigInts n >= 0, d > 0, correctly rounded (half to even) like Python's int / int. */
  function ratio(n, d) {
    if (n === 0n) return 0;
    const shift = 55 - (bitLength(n) - bitLength(d));
    const num = shift >= 0 ? n << BigInt(shift) : n;
    const den = shift >= 0 ? d : d << BigInt(-shift);
    const q = num / den;
    const sticky = num % den !== 0n;
    const extra = bitLength(q) - 53;
    let m = q >> BigInt(extra);
    const low = q & ((1n << BigInt(extra)) - 1n);
    const half = 1n << BigInt(extra - 1);
    if (low > half || (low === half && (sticky || (m & 1n) === 1n))) m += 1n;
    return Number(m) * 2 ** (extra - shift);
  }

  function gcd(a, b) {
    while (b) [a, b] = [b, a % b];
    return a;
  }

  /** rfmap.gridding.axis_gap: the first violation of the exact criterion, or null. */
  function axisGap(kernels, dilations) {
    const order = dilations.map((_, i) => i).sort((i, j) => dilations[i] - dilations[j] || i - j);
    let span = 1;
    for (const i of order) {
      if (kernels[i] === 1) continue;
      if (dilations[i] > span) return { layer: i + 1, dilation: dilations[i], span, first_hole: span };
      span += (kernels[i] - 1) * dilations[i];
    }
    return null;
  }

  /** Wang et al.'s recursion M_i = max(M_(i+1) - 2 r_i, M_(i+1) - 2 (M_(i+1) - r_i), r_i). */
  function hdcM(rates) {
    const m = new Array(rates.length).fill(0);
    m[rates.length - 1] = rates[rates.length - 1];
    for (let i = rates.length - 2; i >= 0; i--) {
      const nxt = m[i + 1];
      const r = rates[i];
      m[i] = Math.max(nxt - 2 * r, nxt - 2 * (nxt - r), r);
    }
    return m;
  }

  function hdcRule(layers, ndim, exactFree) {
    let reason = null;
    if (layers.length < 2) reason = "the rule needs at least two layers (it tests M_2)";
    else if (layers.some((l) => l.k !== layers[0].k)) reason = "the rule assumes one kernel size K for every layer";
    if (reason !== null) {
      return { applicable: false, reason, passes: null, coprime: null, agrees: null, axes: [] };
    }
    const rates = layers.map((l) => l.d);
    const k = layers[0].k;
    const m = hdcM(rates);
    const axis = { kernel: k, dilations: rates, M: m, M2: m[1], passes: m[1] <= k, common_factor: rates.reduce(gcd) };
    return {
      applicable: true,
      reason: null,
      passes: axis.passes,
      coprime: axis.common_factor === 1,
      agrees: axis.passes === exactFree,
      axes: Array(ndim).fill(axis),
    };
  }

  /** The unbounded 1D field of a stack, reduced to what the report needs (or null). */
  function fieldMap(layers, rf) {
    const bound = pathBound(layers);
    const bytes = bound <= INT64_LIMIT ? 8 : 44;
    if (rf * bytes > CHECK_BYTES) return { computed: false, skipped: false };
    const big = bound > BigInt(MAX_SAFE);
    if (layers.length * rf > (big ? FIELD_WORK_LIMIT.bigint : FIELD_WORK_LIMIT.number)) {
      return { computed: false, skipped: true };
    }
    let values = big ? [1n] : new Float64Array([1]);
    for (const { k, d } of layers) values = spread(values, k, d, big);
    const holes = [];
    let holesTotal = 0;
    let max = 0n;
    let min = 0n;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (big ? v === 0n : v === 0) {
        holesTotal++;
        if (holes.length < HOLE_OFFSETS_LIMIT) holes.push(i);
        continue;
      }
      const b = BigInt(v);
      if (b > max) max = b;
      if (min === 0n || b < min) min = b;
    }
    return { computed: true, reached: values.length - holesTotal, holes, holesTotal, max, min };
  }

  function firstHoleLayer(layers) {
    for (let depth = 1; depth <= layers.length; depth++) {
      const part = layers.slice(0, depth);
      if (axisGap(part.map((l) => l.k), part.map((l) => l.d)) !== null) return depth;
    }
    return null;
  }

  /** GriddingReport.to_dict() of rfmap.gridding.check(dilations, kernels, ndim, padding). */
  function checkSchedule(layers, ndim, padding) {
    const nd = BigInt(ndim);
    const rep = (x) => Array(ndim).fill(x);
    const kernels = layers.map((l) => l.k);
    const rates = layers.map((l) => l.d);
    const gap = axisGap(kernels, rates);
    const free = gap === null;
    const rf = 1 + layers.reduce((acc, l) => acc + (l.k - 1) * l.d, 0);
    const origin = -layers.reduce((acc, l) => acc + pads(padding, l.k, l.d)[0], 0);
    const field = fieldMap(layers, rf);
    const reached = field.computed ? field.reached : free ? rf : null;
    const cells = BigInt(rf) ** nd;
    const reachedCells = reached === null ? null : BigInt(reached) ** nd;
    const total = pathBound(layers) ** nd;
    const maxPaths = field.computed ? field.max ** nd : null;
    const minPaths = field.computed ? field.min ** nd : null;
    let holeOffsets = null;
    if (free) holeOffsets = rep([]);
    else if (field.computed) holeOffsets = rep(field.holes);
    const perAxis = reached === null ? null : rf - reached;
    const variance = layers.reduce((acc, l) => acc + BigInt(l.d) ** 2n * (BigInt(l.k) ** 2n - 1n), 0n);
    const [suggestion, note] = free ? [null, null] : suggestFix(layers, ndim);
    const uniform = kernels.every((k) => k === kernels[0]);
    return {
      dilations: rates,
      kernel: uniform ? kernels[0] : kernels,
      ndim,
      layers: layers.map((l) => ({ kernel_size: rep(l.k), dilation: rep(l.d), stride: rep(1), padding })),
      gridding_free: free,
      receptive_field: rep(rf),
      receptive_field_cells: cells,
      origin: rep(origin),
      reached: rep(reached),
      reached_cells: reachedCells,
      holes: reachedCells === null ? null : cells - reachedCells,
      holes_per_axis: perAxis === null ? null : rep(perAxis),
      hole_offsets: holeOffsets,
      hole_offsets_truncated: perAxis === null || holeOffsets === null ? null : holeOffsets.map((o) => perAxis > o.length),
      coverage: reachedCells === null ? null : new PyFloat(ratio(reachedCells, cells)),
      peak_to_mean: maxPaths === null || reachedCells === null ? null : new PyFloat(ratio(maxPaths * reachedCells, total)),
      min_nonzero_to_max: maxPaths === null ? null : new PyFloat(ratio(minPaths, maxPaths)),
      max_paths: maxPaths,
      min_nonzero_paths: minPaths,
      total_paths: total,
      erf_std: rep(new PyFloat(Math.sqrt(ratio(variance, 12n)))),
      first_hole_layer: firstHoleLayer(layers),
      gaps: rep(gap),
      hdc: hdcRule(layers, ndim, free),
      suggestion,
      suggestion_note: note,
      map_computed: field.computed,
      // not in the Python report: the page declined to count a huge field
      _skipped: field.skipped,
    };
  }

  // --- rfmap.design.nearest_gridding_free and suggest_fix -------------------------------

  class SearchBudget extends Error {}

  function floorDiv(a, b) {
    const q = a / b;
    return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
  }

  function compareKeys(x, y) {
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    const a = x[3];
    const b = y[3];
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length - b.length;
  }

  function countsOf(values) {
    const c = new Map();
    for (const v of values) c.set(v, (c.get(v) || 0) + 1);
    return c;
  }

  /** Branch and bound over sorted gridding-free b with sum(b) >= need (rfmap.design._FixSearch). */
  class FixSearch {
    constructor(oldSorted, k, need, maxNodes) {
      this.a = oldSorted;
      this.k = k;
      this.need = need;
      this.maxNodes = maxNodes;
      this.n = oldSorted.length;
      this.nodes = 0;
      this.optimal = true;
      this.bestKey = null;
      this.best = [];
      this.powers = [];
      for (let r = 0, p = 1n; r <= this.n; r++, p *= BigInt(k)) this.powers.push(p);
      this.oldCounts = countsOf(oldSorted);
    }

    minNext(total, restAfter) {
      const p = this.powers[restAfter];
      const tail = (p - 1n) / BigInt(this.k - 1);
      return -floorDiv(tail - BigInt(this.need), p) - BigInt(total);
    }

    lowerBound(i, total, low) {
      let floorCost = 0;
      let floorSum = 0;
      for (let j = i; j < this.n; j++) {
        floorCost += Math.max(0, low - this.a[j]);
        floorSum += Math.max(this.a[j], low);
      }
      return floorCost + Math.max(0, this.need - total - floorSum);
    }

    leafKey(b, cost) {
      const counts = countsOf(b);
      let common = 0;
      for (const [v, c] of counts) common += Math.min(c, this.oldCounts.get(v) || 0);
      return [cost, this.n - common, -b.reduce((x, y) => x + y, 0), b.slice()];
    }

    run() {
      this.greedyIncumbent();
      try {
        this.visit([], 0, 0);
      } catch (err) {
        if (!(err instanceof SearchBudget)) throw err;
        this.optimal = false;
      }
      return this.best;
    }

    bounds(prefix, total) {
      const i = prefix.length;
      const prev = BigInt(prefix.length ? prefix[prefix.length - 1] : 1);
      const next = this.minNext(total, this.n - i - 1);
      const low = Number(next > prev ? next : prev);
      return [low, 1 + (this.k - 1) * total];
    }

    greedyIncumbent() {
      const prefix = [];
      let total = 0;
      let cost = 0;
      for (let i = 0; i < this.n; i++) {
        const [low, high] = this.bounds(prefix, total);
        const b = Math.min(Math.max(this.a[i], low), high);
        prefix.push(b);
        total += b;
        cost += Math.abs(b - this.a[i]);
      }
      this.bestKey = this.leafKey(prefix, cost);
      this.best = prefix;
    }

    budget() {
      return this.bestKey !== null ? this.bestKey[0] : Infinity;
    }

    visit(prefix, total, cost) {
      this.nodes++;
      if (this.nodes > this.maxNodes) throw new SearchBudget();
      const i = prefix.length;
      if (i === this.n) {
        const key = this.leafKey(prefix, cost);
        if (this.bestKey === null || compareKeys(key, this.bestKey) < 0) {
          this.bestKey = key;
          this.best = prefix.slice();
        }
        return;
      }
      const budget = this.budget();
      const [low, high] = this.bounds(prefix, total);
      if (low > high || cost + this.lowerBound(i, total, low) > budget) return;
      const target = this.a[i];
      const start = Math.min(Math.max(target, low), high);
      let down = start - 1;
      let up = start + 1;
      this.descend(prefix, total, cost, start);
      for (;;) {
        const choices = [];
        if (down >= low) choices.push(down);
        if (up <= high) choices.push(up);
        if (!choices.length) break;
        let b = choices[0];
        for (const v of choices) {
          const dv = Math.abs(v - target);
          const db = Math.abs(b - target);
          if (dv < db || (dv === db && v < b)) b = v;
        }
        if (cost + Math.abs(b - target) > this.budget()) break;
        if (b === down) down -= 1;
        else up += 1;
        this.descend(prefix, total, cost, b);
      }
    }

    descend(prefix, total, cost, b) {
      const step = cost + Math.abs(b - this.a[prefix.length]);
      if (step + this.lowerBound(prefix.length + 1, total + b, b) > this.budget()) return;
      prefix.push(b);
      this.visit(prefix, total + b, step);
      prefix.pop();
    }
  }

  /** Equal values stay put, the rest pair up in sorted order (rfmap.design._assign). */
  function assign(old, added, sortedNew) {
    const extended = Array(added).fill(1).concat(old);
    const pool = countsOf(sortedNew);
    const out = new Array(extended.length).fill(null);
    const order = [];
    for (let i = added; i < extended.length; i++) order.push(i);
    for (let i = 0; i < added; i++) order.push(i);
    for (const i of order) {
      const v = extended[i];
      if ((pool.get(v) || 0) > 0) {
        pool.set(v, pool.get(v) - 1);
        out[i] = v;
      }
    }
    const restPositions = extended
      .map((_, i) => i)
      .filter((i) => out[i] === null)
      .sort((i, j) => extended[i] - extended[j] || (i < added) - (j < added) || i - j);
    const restValues = [];
    for (const [v, c] of pool) for (let t = 0; t < c; t++) restValues.push(v);
    restValues.sort((x, y) => x - y);
    restPositions.forEach((i, t) => {
      out[i] = restValues[t];
    });
    // Layers that had the same value are interchangeable: they get their new values in
    // ascending order; added layers and original ones are kept apart.
    const result = out.slice();
    const groupOf = (i) => `${extended[i]}/${i < added}`;
    for (const key of new Set(extended.map((_, i) => groupOf(i)))) {
      const group = extended.map((_, i) => (groupOf(i) === key ? i : -1)).filter((i) => i >= 0);
      const values = group.map((i) => result[i]).sort((x, y) => x - y);
      group.forEach((i, t) => {
        result[i] = values[t];
      });
    }
    return result;
  }

  function nearestGriddingFree(old, k) {
    const need = old.reduce((x, y) => x + y, 0);
    const greedySum = (count) => {
      let total = 0n;
      for (let i = 0; i < count; i++) total += 1n + BigInt(k - 1) * total;
      return total;
    };
    let added = 0;
    while (greedySum(old.length + added) < BigInt(need)) added++;
    const extended = Array(added).fill(1).concat(old);
    const search = new FixSearch(extended.slice().sort((x, y) => x - y), k, need, FIX_NODES);
    const best = search.run();
    const next = assign(old, added, best);
    return { dilations: next, added, optimal: search.optimal };
  }

  /** rfmap.design.suggest_fix for an isotropic stride-1 stack: [suggestion, note]. */
  function suggestFix(layers, ndim) {
    if (layers.some((l) => l.k !== layers[0].k)) {
      return [null, "no suggestion when kernel sizes differ between layers"];
    }
    const k = layers[0].k;
    const rates = layers.map((l) => l.d);
    const fix = nearestGriddingFree(rates, k);
    const old = Array(fix.added).fill(1).concat(rates);
    const changed = [];
    let distance = 0;
    fix.dilations.forEach((b, i) => {
      const diff = Math.abs(b - old[i]);
      distance += diff;
      if (i < fix.added || diff) changed.push(i + 1);
    });
    const rf = 1 + (k - 1) * fix.dilations.reduce((x, y) => x + y, 0);
    return [
      {
        dilations: fix.dilations,
        receptive_field: Array(ndim).fill(rf),
        added_layers: fix.added,
        changed_layers: changed,
        distance,
        optimal: fix.optimal,
      },
      null,
    ];
  }

  // ===================================================================================
  // Colours: matplotlib's "Blues" (ColorBrewer, 9 anchors, linear in RGB, 256 entries).
  // ===================================================================================

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
  const LUT = [];
  const LUT32 = new Uint32Array(256);
  (function buildLut() {
    const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
    for (let i = 0; i < 256; i++) {
      const x = (i / 255) * (BLUES.length - 1);
      const lo = Math.min(Math.floor(x), BLUES.length - 2);
      const f = x - lo;
      const rgb = [0, 1, 2].map((c) => {
        const v = BLUES[lo][c] + f * (BLUES[lo + 1][c] - BLUES[lo][c]);
        return Math.round(v * 255);
      });
      LUT.push(rgb);
      LUT32[i] = littleEndian
        ? (255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]
        : (rgb[0] << 24) | (rgb[1] << 16) | (rgb[2] << 8) | 255;
    }
  })();
  // The colours of counts >= 1, as rfmap.plot.maps.path_colormap makes them: Blues from
  // 15 % (HOLE_CONTRAST) to 100 %, indexed as matplotlib indexes numpy's
  // linspace(0.15, 1, 256), so one path is a visible blue, never a hole's white.
  const HOLE_CONTRAST = 0.15;
  const PATH = [];
  const PATH32 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    const x = i === 255 ? 1 : i * ((1 - HOLE_CONTRAST) / 255) + HOLE_CONTRAST;
    const k = Math.min(255, Math.floor(x * 256));
    PATH.push(LUT[k]);
    PATH32[i] = LUT32[k];
  }
  const rgbCss = (rgb) => `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
  const WHITE32 = 0xffffffff;

  /** The scale actually used: "auto" is log when the non-zero counts span over 3 decades. */
  function resolveScale(scale, map) {
    if (scale !== "auto") return scale;
    if (map.max === 0n) return "linear";
    return map.max > 1000n * map.minNonzero ? "log" : "linear";
  }

  /** A colour-index function t -> [0, 255] for a count given as a float. */
  function normaliser(map, scale) {
    const top = Math.max(Number(map.max), 1);
    if (scale === "log") {
      const lt = Math.log(top);
      return { log: true, lt, index: (v) => (v <= 0 ? 0 : lt > 0 ? lutIndex(Math.log(v) / lt) : 255) };
    }
    return { log: false, top, index: (v) => lutIndex(v / top) };
  }

  function lutIndex(t) {
    const i = Math.floor(t * 256);
    return i < 0 ? 0 : i > 255 ? 255 : i;
  }

  // ===================================================================================
  // Drawing
  // ===================================================================================

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

  function ticks(n, pixels) {
    const step = niceStep(n - 1, Math.max(2, Math.floor(pixels / 60)));
    const out = [];
    for (let v = 0; v < n; v += step) out.push(v);
    return out;
  }

  /** A tick label: the integer below a million, else 3 significant digits (1.23e+44). */
  function formatShort(x) {
    const v = Number(x);
    return v < 1e6 ? String(Math.round(v)) : pyG(v, 3);
  }


  /** Paint the 2D cells into an offscreen N x N canvas (the hot loop of a redraw). */
  function paintCells(map, norm) {
    const n = map.spec.size;
    const off = paintCells.canvas && paintCells.canvas.width === n ? paintCells.canvas : document.createElement("canvas");
    off.width = n;
    off.height = n;
    paintCells.canvas = off;
    const octx = off.getContext("2d");
    const image = octx.createImageData(n, n);
    const px = new Uint32Array(image.data.buffer);
    const a = map.approx;
    // Zero cells are white (rfmap plot: Blues' lightest, nearly white); counts >= 1 take
    // the path colours, from 15 % up, so a hole never looks like a cell with one path.
    const zero = WHITE32;
    if (norm.log) {
      const la = new Float64Array(n);
      const inv = norm.lt > 0 ? 256 / norm.lt : 0;
      for (let i = 0; i < n; i++) la[i] = a[i] > 0 ? Math.log(a[i]) : -Infinity;
      for (let i = 0; i < n; i++) {
        const row = i * n;
        const li = la[i];
        if (li === -Infinity) {
          px.fill(zero, row, row + n);
          continue;
        }
        for (let j = 0; j < n; j++) {
          const lj = la[j];
          if (lj === -Infinity) {
            px[row + j] = zero;
          } else {
            let k = inv > 0 ? Math.floor((li + lj) * inv) : 255;
            if (k > 255) k = 255;
            else if (k < 0) k = 0;
            px[row + j] = PATH32[k];
          }
        }
      }
    } else {
      const scale = 256 / norm.top;
      for (let i = 0; i < n; i++) {
        const row = i * n;
        const ai = a[i] * scale;
        if (ai === 0) {
          px.fill(zero, row, row + n);
          continue;
        }
        for (let j = 0; j < n; j++) {
          const v = a[j];
          if (v === 0) {
            px[row + j] = zero;
          } else {
            let k = Math.floor(ai * v);
            if (k > 255) k = 255;
            else if (k < 0) k = 0;
            px[row + j] = PATH32[k];
          }
        }
      }
    }
    octx.putImageData(image, 0, 0);
    return off;
  }

  /**
   * Draw the whole figure (map, ticks, unit and cursor marks, counts in big cells) on
   * `ctx` inside the box `g` = {x, y, w, h} in CSS pixels.  Returns the geometry used
   * for hit testing.
   */
  function drawMap(ctx, map, g, opts) {
    const { spec } = map;
    const scale = resolveScale(opts.scale, map);
    const norm = normaliser(map, scale);
    ctx.save();
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(g.x, g.y, g.w, g.h);
    ctx.font = FONT;
    const geom = spec.ndim === 2 ? draw2d(ctx, map, g, norm, opts) : draw1d(ctx, map, g, norm, opts, scale);
    ctx.restore();
    geom.scale = scale;
    return geom;
  }

  /** Room above row 0 for half its label. */
  const MAP_TOP = 7;

  /** The left margin of a 2D map: room for its widest row label, n - 1. */
  function rowLabelMargin(n) {
    if (!rowLabelMargin.ctx) rowLabelMargin.ctx = document.createElement("canvas").getContext("2d");
    rowLabelMargin.ctx.font = FONT;
    return Math.max(34, Math.ceil(rowLabelMargin.ctx.measureText(String(n - 1)).width) + 12);
  }

  function draw2d(ctx, map, g, norm, opts) {
    const n = map.spec.size;
    const left = rowLabelMargin(n);
    const top = MAP_TOP;
    const bottom = 22;
    const avail = Math.max(10, Math.min(g.w - left - 4, g.h - bottom - top));
    let cell = avail / n;
    if (cell >= 1) cell = Math.floor(cell);
    const side = cell * n;
    const x0 = g.x + left + Math.max(0, Math.floor((g.w - left - 4 - side) / 2));
    const y0 = g.y + top;
    const off = paintCells(map, norm);
    // Below one pixel per cell, a pixel averages the cells it covers: nearest-neighbour
    // sampling would skip whole rows and draw a lattice of dots as false white bands.
    ctx.imageSmoothingEnabled = cell < 1;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(off, x0, y0, side, side);
    ctx.strokeStyle = "#c4cdd6";
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 - 0.5, y0 - 0.5, side + 1, side + 1);

    // ticks
    ctx.fillStyle = TICK_COLOR;
    ctx.strokeStyle = TICK_COLOR;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of ticks(n, side)) {
      const x = x0 + (t + 0.5) * cell;
      ctx.beginPath();
      ctx.moveTo(x, y0 + side + 1);
      ctx.lineTo(x, y0 + side + 5);
      ctx.stroke();
      ctx.fillText(String(t), x, y0 + side + 7);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks(n, side)) {
      const y = y0 + (t + 0.5) * cell;
      ctx.beginPath();
      ctx.moveTo(x0 - 1, y);
      ctx.lineTo(x0 - 5, y);
      ctx.stroke();
      ctx.fillText(String(t), x0 - 7, y);
    }

    // counts written in the cells when they are big enough to read
    if (cell >= 20) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      const size = Math.min(13, Math.floor(cell * 0.45));
      ctx.font = `${size}px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif`;
      for (let i = 0; i < n; i++) {
        if (map.approx[i] === 0) continue;
        for (let j = 0; j < n; j++) {
          if (map.approx[j] === 0) continue;
          const text = cellCount(map, i, j).toString();
          if (ctx.measureText(text).width > cell - 3) continue;
          const idx = norm.index(map.approx[i] * map.approx[j]);
          ctx.fillStyle = idx > 0.6 * 255 ? "#ffffff" : "#111827";
          ctx.fillText(text, x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell);
        }
      }
    }

    // the output unit and the inspected cell
    const mark = (i, j, color, width) => {
      const pad = Math.max(0, (5 - cell) / 2);
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.strokeRect(x0 + j * cell - pad, y0 + i * cell - pad, cell + 2 * pad, cell + 2 * pad);
    };
    // the receptive field's bounding box in this input: zero cells inside it are holes
    if (map.first >= 0 && (map.first > 0 || map.last < n - 1)) {
      const a = x0 + map.first * cell;
      const b = y0 + map.first * cell;
      const w = (map.last - map.first + 1) * cell;
      ctx.save();
      ctx.strokeStyle = "rgba(21, 32, 43, 0.45)";
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.strokeRect(a - 1.5, b - 1.5, w + 3, w + 3);
      ctx.restore();
    }
    if (opts.showUnit) mark(map.unit, map.unit, UNIT_COLOR, 1.5);
    if (opts.cursor) mark(opts.cursor[0], opts.cursor[1], CURSOR_COLOR, 2);
    return { kind: 2, x0, y0, cell, side, n };
  }

  function draw1d(ctx, map, g, norm, opts, scale) {
    const n = map.spec.size;
    const left = 52;
    const bottom = 24;
    const x0 = g.x + left;
    const y0 = g.y + 8;
    const w = Math.max(10, g.w - left - 8);
    const h = Math.max(10, g.h - bottom - 8);
    const cell = w / n;
    const top = Math.max(Number(map.max), 1);
    const logTop = Math.log10(top);
    const height = (v) => {
      if (v <= 0) return 0;
      if (scale === "log") return logTop > 0 ? ((Math.log10(v) + 0.12 * logTop) / (1.12 * logTop)) * h : h;
      return (v / top) * h;
    };
    // axes
    ctx.strokeStyle = "#c4cdd6";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0 - 0.5, y0);
    ctx.lineTo(x0 - 0.5, y0 + h + 0.5);
    ctx.lineTo(x0 + w, y0 + h + 0.5);
    ctx.stroke();
    // bars: one per cell, or the tallest per pixel column when cells are narrower
    ctx.fillStyle = "#2b7bba";
    const a = map.approx;
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
    if (map.first >= 0) {
      ctx.strokeStyle = HOLE_COLOR;
      ctx.lineWidth = 1.2;
      const r = Math.max(1.5, Math.min(3.5, cell * 0.35));
      for (let i = map.first + 1; i < map.last; i++) {
        if (a[i] !== 0) continue;
        const x = x0 + (i + 0.5) * cell;
        const y = y0 + h;
        ctx.beginPath();
        ctx.moveTo(x - r, y - r);
        ctx.lineTo(x + r, y + r);
        ctx.moveTo(x + r, y - r);
        ctx.lineTo(x - r, y + r);
        ctx.stroke();
      }
    }
    // ticks
    ctx.fillStyle = TICK_COLOR;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of ticks(n, w)) ctx.fillText(String(t), x0 + (t + 0.5) * cell, y0 + h + 6);
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
    for (const v of yTicks) {
      const y = y0 + h - height(v);
      ctx.fillText(formatShort(v), x0 - 6, y);
    }
    ctx.save();
    ctx.translate(g.x + 10, y0 + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("paths", 0, 0);
    ctx.restore();
    // the unit and the cursor
    const vline = (i, color, dash) => {
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.lineWidth = 1.2;
      ctx.beginPath();
      ctx.moveTo(x0 + (i + 0.5) * cell, y0);
      ctx.lineTo(x0 + (i + 0.5) * cell, y0 + h);
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (opts.showUnit) vline(map.unit, UNIT_COLOR, [3, 3]);
    if (opts.cursor) vline(opts.cursor[1], CURSOR_COLOR, []);
    return { kind: 1, x0, y0, cell, w, h, n };
  }

  /** Draw the colour bar beside the map (vertical) or under it (horizontal, narrow screens). */
  function drawColorbar(canvas, map, scaleName, geom, horizontal, boxWidth) {
    const dpr = window.devicePixelRatio || 1;
    const width = horizontal ? boxWidth : 62;
    const height = horizontal ? 46 : geom.y0 + geom.side + 22;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const g = horizontal
      ? { x: geom.x0, y: 4, w: geom.side, h: height - 4 }
      : { x: 0, y: geom.y0, w: width, h: height - geom.y0 };
    paintColorbar(ctx, map, scaleName, g, horizontal);
  }

  function colorbarLabels(map, scaleName) {
    const maxV = Math.max(Number(map.max), 1);
    const labels = [];
    if (scaleName === "log") {
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

  /** Paint a colour bar into box g (white background, ticks, labels, the scale's name). */
  function paintColorbar(ctx, map, scaleName, g, horizontal) {
    ctx.save();
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(g.x - 2, g.y - 2, g.w + 4, g.h + 4);
    ctx.font = FONT;
    const thick = 13;
    const labels = colorbarLabels(map, scaleName);
    if (horizontal) {
      const len = g.w;
      for (let x = 0; x < len; x++) {
        ctx.fillStyle = rgbCss(PATH[lutIndex(x / (len - 1))]);
        ctx.fillRect(g.x + x, g.y, 1, thick);
      }
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
      for (let y = 0; y < len; y++) {
        ctx.fillStyle = rgbCss(PATH[lutIndex(1 - y / (len - 1))]);
        ctx.fillRect(g.x + 4, g.y + y, thick, 1);
      }
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
      ctx.fillText(scaleName, g.x + 2, g.y + len + 12);
    }
    ctx.restore();
  }

  // ===================================================================================
  // State, validation, the URL hash
  // ===================================================================================

  /** Parse "1, 2, 4" into integers; throws SpecError naming the field. */
  function parseList(text, name) {
    const parts = String(text).split(",").map((p) => p.trim());
    if (!String(text).trim() || !parts.every((p) => /^[+-]?\d+$/.test(p))) {
      throw new SpecError(`${name} must be comma-separated integers, got '${String(text).trim()}'`);
    }
    return parts.map((p) => Number.parseInt(p, 10));
  }

  function checkLayers(dilations, kernels) {
    if (!dilations.length) throw new SpecError("dilations must name at least one layer, got an empty schedule");
    if (kernels.length !== 1 && kernels.length !== dilations.length) {
      throw new SpecError(
        `kernel_size has ${kernels.length} entries but the schedule has ${dilations.length} layers; ` +
          `give one value, or one per layer, got [${kernels.join(", ")}]`
      );
    }
    if (dilations.length > LIMITS.max_layers) {
      throw new SpecError(`the explorer draws at most ${LIMITS.max_layers} layers, got ${dilations.length}`);
    }
    const layers = dilations.map((d, i) => ({ d, k: kernels.length === 1 ? kernels[0] : kernels[i] }));
    layers.forEach(({ d, k }, i) => {
      if (!Number.isSafeInteger(d) || d < 1) throw new SpecError(`dilations must be positive integers, got ${d} at layer ${i + 1}`);
      if (!Number.isSafeInteger(k) || k < 1) throw new SpecError(`kernel_size must be positive integers, got ${k} at layer ${i + 1}`);
      if (d > LIMITS.max_dilation) throw new SpecError(`the explorer takes dilations up to ${LIMITS.max_dilation}, got ${d} at layer ${i + 1}`);
      if (k > LIMITS.max_kernel) throw new SpecError(`the explorer takes kernel sizes up to ${LIMITS.max_kernel}, got ${k} at layer ${i + 1}`);
    });
    return layers;
  }

  function checkSize(size, ndim) {
    if (!Number.isSafeInteger(size) || size < 1) throw new SpecError(`size must be a positive integer, got ${size}`);
    const max = ndim === 1 ? LIMITS.max_size_1d : LIMITS.max_size_2d;
    if (size > max) throw new SpecError(`the explorer draws ${ndim}D maps up to size ${max}, got ${size}`);
    return size;
  }

  /** Everything rfmap's path_map would refuse for the whole schedule, and the page limits. */
  function validateState(s) {
    checkSize(s.size, s.ndim);
    outputSizes(s.layers, s.padding, s.size, s.ndim);
  }

  function parseState(params, base) {
    const s = Object.assign({}, base);
    if (params.has("d") || params.has("k")) {
      const dil = params.has("d") ? parseList(params.get("d"), "dilations") : base.layers.map((l) => l.d);
      const ker = params.has("k") ? parseList(params.get("k"), "kernel_size") : [base.layers[0].k];
      s.layers = checkLayers(dil, ker);
    }
    if (params.has("dim")) {
      const nd = params.get("dim");
      if (nd !== "1" && nd !== "2") throw new SpecError(`ndim must be 1 or 2, got '${nd}'`);
      s.ndim = Number(nd);
    }
    if (params.has("n")) s.size = parseList(params.get("n"), "size")[0];
    checkSize(s.size, s.ndim);
    if (params.has("pad")) {
      const p = params.get("pad");
      if (!PADDINGS.includes(p)) throw new SpecError(`padding must be one of ${PADDINGS.join(", ")}, got '${p}'`);
      s.padding = p;
    }
    if (params.has("scale")) {
      const sc = params.get("scale");
      if (!SCALES.includes(sc)) throw new SpecError(`scale must be one of ${SCALES.join(", ")}, got '${sc}'`);
      s.scale = sc;
    }
    s.depth = s.layers.length;
    if (params.has("depth")) {
      const depth = parseList(params.get("depth"), "depth")[0];
      if (depth < 1 || depth > s.layers.length) {
        throw new SpecError(`depth must be between 1 and ${s.layers.length}, got ${depth}`);
      }
      s.depth = depth;
    }
    validateState(s);
    return s;
  }

  function kernelText(layers) {
    const ks = layers.map((l) => l.k);
    return ks.every((k) => k === ks[0]) ? String(ks[0]) : ks.join(",");
  }

  function stateHash(s) {
    const parts = [
      "d=" + s.layers.map((l) => l.d).join(","),
      "k=" + kernelText(s.layers),
      "n=" + s.size,
      "dim=" + s.ndim,
      "pad=" + s.padding,
      "scale=" + s.scale,
    ];
    if (s.depth !== s.layers.length) parts.push("depth=" + s.depth);
    return "#" + parts.join("&");
  }

  function initialState() {
    const st = DATA.state;
    return {
      layers: checkLayers(st.dilations, st.kernels),
      size: st.size,
      ndim: st.ndim,
      padding: st.padding,
      scale: st.scale,
      depth: st.depth == null ? st.dilations.length : st.depth,
    };
  }

  // ===================================================================================
  // The page
  // ===================================================================================

  const $ = (id) => document.getElementById(id);
  const el = {
    preset: $("preset"),
    dilText: $("dilations-text"),
    kerText: $("kernels-text"),
    tbody: document.querySelector("#layers tbody"),
    add: $("add-layer"),
    size: $("size"),
    padding: $("padding"),
    title: $("map-title"),
    subtitle: $("map-subtitle"),
    error: $("error"),
    view: document.querySelector(".view"),
    wrap: $("canvas-wrap"),
    canvas: $("map-canvas"),
    colorbar: $("colorbar"),
    scaleNote: $("scale-note"),
    readout: $("readout"),
    depth: $("depth"),
    depthValue: $("depth-value"),
    play: $("play"),
    verdict: $("verdict"),
    metrics: $("metrics"),
    hdc: $("hdc"),
    mapStats: $("map-stats"),
  };

  let state = initialState();
  let current = null; // {map, geom, check}
  let cursor = null; // [i, j] inspected cell
  let playing = null;

  function viewSpec(s) {
    return { layers: s.layers.slice(0, s.depth), size: s.size, ndim: s.ndim, padding: s.padding };
  }

  function setError(message) {
    if (message) {
      el.error.textContent = message;
      el.error.hidden = false;
      el.view.classList.add("stale");
    } else {
      el.error.hidden = true;
      el.error.textContent = "";
      el.view.classList.remove("stale");
    }
  }

  function formatSchedule(layers) {
    return "(" + layers.map((l) => l.d).join(", ") + ")";
  }

  // --- controls -> state ---------------------------------------------------------------

  function syncControls() {
    if (document.activeElement !== el.dilText) el.dilText.value = state.layers.map((l) => l.d).join(", ");
    if (document.activeElement !== el.kerText) el.kerText.value = kernelText(state.layers).replace(/,/g, ", ");
    el.dilText.removeAttribute("aria-invalid");
    el.kerText.removeAttribute("aria-invalid");
    if (document.activeElement !== el.size) el.size.value = state.size;
    el.size.removeAttribute("aria-invalid");
    el.size.max = state.ndim === 1 ? LIMITS.max_size_1d : LIMITS.max_size_2d;
    el.padding.value = state.padding;
    $("ndim-" + state.ndim).checked = true;
    $("scale-" + state.scale).checked = true;
    el.depth.max = String(state.layers.length);
    el.depth.value = String(state.depth);
    el.depthValue.textContent = `${state.depth} / ${state.layers.length}`;
    el.depth.setAttribute("aria-valuetext", `layers 1 to ${state.depth} of ${state.layers.length}`);
    el.preset.value = matchingPreset(state);
    renderTable();
  }

  function renderTable() {
    const rows = el.tbody.rows;
    const fields = fieldsByDepth(state.layers);
    const active = document.activeElement;
    const n = state.layers.length;
    while (rows.length > n) el.tbody.deleteRow(rows.length - 1);
    while (rows.length < n) {
      const tr = el.tbody.insertRow();
      tr.innerHTML =
        `<td></td><td><input type="number" min="1" step="1" inputmode="numeric" data-field="d"></td>` +
        `<td><input type="number" min="1" step="1" inputmode="numeric" data-field="k"></td>` +
        `<td class="rf"></td><td><button type="button" class="remove">×</button></td>`;
    }
    for (let i = 0; i < n; i++) {
      const tr = rows[i];
      tr.dataset.index = String(i);
      tr.cells[0].textContent = String(i + 1);
      tr.classList.toggle("beyond", i >= state.depth);
      const dIn = tr.cells[1].firstChild;
      const kIn = tr.cells[2].firstChild;
      dIn.setAttribute("aria-label", `dilation of layer ${i + 1}`);
      kIn.setAttribute("aria-label", `kernel size of layer ${i + 1}`);
      if (active !== dIn) dIn.value = state.layers[i].d;
      if (active !== kIn) kIn.value = state.layers[i].k;
      dIn.max = LIMITS.max_dilation;
      kIn.max = LIMITS.max_kernel;
      dIn.removeAttribute("aria-invalid");
      kIn.removeAttribute("aria-invalid");
      tr.cells[3].textContent = String(fields[i]);
      const btn = tr.cells[4].firstChild;
      btn.setAttribute("aria-label", `remove layer ${i + 1}`);
      btn.disabled = n === 1;
    }
    el.add.disabled = n >= LIMITS.max_layers;
  }

  /** Make `next` the view if the whole schedule is valid; throws SpecError otherwise. */
  function commit(next, { keepDepth = false } = {}) {
    const oldLen = state.layers.length;
    const wasFull = state.depth === oldLen;
    if (!keepDepth) {
      next.depth = wasFull ? next.layers.length : Math.min(Math.max(1, next.depth || 1), next.layers.length);
    }
    validateState(next);
    state = next;
    update();
  }

  function fromText(source) {
    try {
      // a trailing comma is the next value being typed, not an error
      const typing = (text) => text.replace(/,\s*$/, "");
      const dil = parseList(typing(el.dilText.value), "dilations");
      const ker = parseList(typing(el.kerText.value), "kernel_size");
      const layers = checkLayers(dil, ker);
      commit(Object.assign({}, state, { layers }));
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      source.setAttribute("aria-invalid", "true");
      setError(err.message);
    }
  }

  function fromTable(input) {
    const text = input.value.trim();
    const i = Number(input.closest("tr").dataset.index);
    const field = input.dataset.field;
    try {
      const value = parseList(text, field === "d" ? "dilations" : "kernel_size")[0];
      const dil = state.layers.map((l) => l.d);
      const ker = state.layers.map((l) => l.k);
      (field === "d" ? dil : ker)[i] = value;
      const layers = checkLayers(dil, ker);
      commit(Object.assign({}, state, { layers }));
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      input.setAttribute("aria-invalid", "true");
      const name = field === "d" ? "dilations" : "kernel_size";
      setError(/^[+-]?\d+$/.test(text) ? err.message : `${name} must be integers, got '${text}' at layer ${i + 1}`);
    }
  }

  function fromInputs() {
    let size;
    try {
      size = parseList(el.size.value, "size")[0];
      const ndim = Number(document.querySelector('input[name="ndim"]:checked').value);
      // 1D -> 2D on a long 1D input (WaveNet's 2048): the largest 2D size, not a refusal
      if (ndim === 2 && state.ndim === 1 && size === state.size) size = Math.min(size, LIMITS.max_size_2d);
      checkSize(size, ndim);
      commit(
        Object.assign({}, state, {
          size,
          ndim,
          padding: el.padding.value,
          scale: document.querySelector('input[name="scale"]:checked').value,
        }),
        { keepDepth: true }
      );
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      el.size.setAttribute("aria-invalid", "true");
      setError(err.message);
    }
  }

  // --- presets --------------------------------------------------------------------------

  function presetState(p) {
    const layers = checkLayers(p.dilations, Array.isArray(p.kernel) ? p.kernel : [p.kernel]);
    return {
      layers,
      size: p.size,
      ndim: p.ndim,
      padding: p.padding,
      scale: p.scale || "auto",
      depth: p.depth == null ? layers.length : p.depth,
    };
  }

  /** The preset showing (the selected one first: two presets may share a schedule). */
  function matchingPreset(s) {
    const selected = DATA.presets.filter((p) => p.id === el.preset.value);
    for (const p of selected.concat(DATA.presets)) {
      const ps = presetState(p);
      if (
        ps.size === s.size &&
        ps.ndim === s.ndim &&
        ps.padding === s.padding &&
        ps.layers.length === s.layers.length &&
        ps.layers.every((l, i) => l.d === s.layers[i].d && l.k === s.layers[i].k)
      ) {
        return p.id;
      }
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

  function isNarrow() {
    return containerWidth() < 520;
  }

  function canvasBox() {
    const narrow = isNarrow();
    const wrapWidth = containerWidth();
    const width = Math.max(160, wrapWidth - (narrow ? 0 : 70));
    if (state.ndim === 1) return { w: wrapWidth, h: Math.round(Math.min(360, Math.max(200, wrapWidth * 0.5))) };
    const tall = Math.max(240, window.innerHeight - 250);
    const side = Math.min(width, tall + 26);
    return { w: side, h: side };
  }

  function render() {
    const map = current.map;
    const narrow = isNarrow();
    el.wrap.classList.toggle("narrow", narrow);
    const box = canvasBox();
    const dpr = window.devicePixelRatio || 1;
    const c = el.canvas;
    const wpx = Math.round(box.w * dpr);
    const hpx = Math.round(box.h * dpr);
    if (c.width !== wpx || c.height !== hpx) {
      c.width = wpx;
      c.height = hpx;
      c.style.width = box.w + "px";
      c.style.height = box.h + "px";
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    current.geom = drawMap(ctx, map, { x: 0, y: 0, w: box.w, h: box.h }, {
      scale: state.scale,
      showUnit: true,
      cursor: cursor,
    });
    if (map.spec.ndim === 2) {
      el.colorbar.hidden = false;
      drawColorbar(el.colorbar, map, current.geom.scale, current.geom, narrow, box.w);
    } else {
      el.colorbar.hidden = true;
    }
    el.scaleNote.textContent = legend(map, current.geom, narrow);
  }

  /** What the marks on the map mean (and the scale, when the colour bar is under it). */
  function legend(map, geom, narrow) {
    const parts = [];
    const n = map.spec.size;
    if (map.spec.ndim === 2) {
      parts.push("orange: the output unit");
      if (map.first >= 0 && (map.first > 0 || map.last < n - 1)) parts.push("dashed: its receptive field in this input");
      parts.push("white: no path");
      if (narrow) parts.push(`${geom.scale} colour scale`);
      if (geom.cell < 1) {
        const k = (1 / geom.cell).toFixed(1);
        parts.push(`each pixel averages about ${k} × ${k} cells (the exported PNG has one pixel per cell)`);
      }
    } else {
      parts.push("dashed orange: the output unit");
      let holes = false;
      for (let i = map.first + 1; i < map.last && !holes; i++) holes = map.approx[i] === 0;
      if (holes) parts.push("red ×: a hole inside the field");
      if (geom.cell < 1) parts.push("each bar is the largest count in its pixel column");
    }
    return parts.join(" · ");
  }

  function describeView(map) {
    const { spec } = map;
    const ks = spec.layers.map((l) => l.k);
    const kernel = ks.every((k) => k === ks[0]) ? `kernel ${ks[0]}` : `kernels ${ks.join(",")}`;
    const input = spec.ndim === 2 ? `${spec.size} × ${spec.size}` : `${spec.size}`;
    const unit = spec.ndim === 2 ? `(${map.unit}, ${map.unit})` : `${map.unit}`;
    return `${kernel} · ${spec.ndim}D · input ${input} · ${spec.padding} padding · output unit ${unit}`;
  }

  function update() {
    if (playing && state.depth >= state.layers.length) stopPlaying();
    syncControls();
    let map;
    try {
      map = computeMap(viewSpec(state));
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      setError(err.message);
      current = null;
      writeHash();
      return;
    }
    setError(null);
    if (cursor && (cursor[0] >= map.spec.size || cursor[1] >= map.spec.size)) cursor = null;
    if (cursor && map.spec.ndim === 1) cursor = [0, cursor[1]];
    current = { map, geom: null, check: null };
    el.title.textContent = "Dilation rates: " + formatSchedule(map.spec.layers);
    el.subtitle.textContent = describeView(map);
    render();
    renderStats(map);
    renderCheck(map);
    renderReadout();
    writeHash();
  }

  function statRow(dl, term, value, id) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (id) dd.dataset.key = id;
    dl.append(dt, dd);
  }

  function renderStats(map) {
    const dl = el.mapStats;
    dl.textContent = "";
    const nd = map.spec.ndim;
    const rep = (x) => Array(nd).fill(x).join(" × ");
    statRow(dl, "receptive field", rep(map.receptiveField), "receptive_field");
    statRow(dl, "support", map.support.toString() + " cells", "support");
    statRow(dl, "max", map.max.toString(), "max");
    statRow(dl, "total paths", map.total.toString(), "total");
    statRow(dl, "arithmetic", map.big ? "BigInt (past 2^53)" : "float64, exact (< 2^53)", "arithmetic");
  }

  const checkCache = new Map();

  /** The check of the layers on view (memoised: it does not depend on N or the scale). */
  function cachedCheck(spec) {
    const key = `${spec.ndim}|${spec.padding}|` + spec.layers.map((l) => `${l.d}:${l.k}`).join(",");
    let result = checkCache.get(key);
    if (!result) {
      result = checkSchedule(spec.layers, spec.ndim, spec.padding);
      if (checkCache.size > 64) checkCache.clear();
      checkCache.set(key, result);
    }
    return result;
  }

  // --- numbers formatted as Python's format() does (exact, round half to even) ----------

  /** A finite double x >= 0 as an exact fraction [num, den] of BigInts. */
  function exactParts(x) {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, x);
    const hi = view.getUint32(0);
    const lo = view.getUint32(4);
    const expBits = (hi >>> 20) & 0x7ff;
    let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
    let e = -1074;
    if (expBits !== 0) {
      mant |= 1n << 52n;
      e = expBits - 1075;
    }
    return e >= 0 ? [mant << BigInt(e), 1n] : [mant, 1n << BigInt(-e)];
  }

  function roundHalfEven(num, den) {
    const q = num / den;
    const twice = 2n * (num % den);
    return twice > den || (twice === den && (q & 1n) === 1n) ? q + 1n : q;
  }

  function pow10(k) {
    return k >= 0 ? [10n ** BigInt(k), 1n] : [1n, 10n ** BigInt(-k)];
  }

  /** Python f"{x:.{f}f}" for a finite x >= 0. */
  function pyFixed(x, f) {
    const [n, d] = exactParts(x);
    const v = roundHalfEven(n * 10n ** BigInt(f), d).toString().padStart(f + 1, "0");
    return f > 0 ? v.slice(0, v.length - f) + "." + v.slice(v.length - f) : v;
  }

  /** Python f"{x:.{p}g}" for a finite x >= 0. */
  function pyG(x, p = 3) {
    if (x === 0) return "0";
    const [n, d] = exactParts(x);
    const sign = (k) => {
      const [a, b] = pow10(k);
      return n * b - a * d; // the sign of x - 10**k
    };
    let exp = Math.floor(Math.log10(x));
    while (sign(exp) < 0n) exp--;
    while (sign(exp + 1) >= 0n) exp++;
    let [a, b] = pow10(p - 1 - exp);
    let digits = roundHalfEven(n * a, d * b);
    if (digits === 10n ** BigInt(p)) {
      exp += 1;
      [a, b] = pow10(p - 1 - exp);
      digits = roundHalfEven(n * a, d * b);
    }
    const text = digits.toString();
    if (exp >= -4 && exp < p) {
      const f = p - 1 - exp;
      const padded = text.padStart(f + 1, "0");
      const whole = padded.slice(0, padded.length - f);
      const frac = padded.slice(padded.length - f).replace(/0+$/, "");
      return frac ? `${whole}.${frac}` : whole;
    }
    const rest = text.slice(1).replace(/0+$/, "");
    return `${text[0]}${rest ? "." + rest : ""}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }

  /** Python f"{x:.1%}". */
  function pyPercent(x) {
    return pyFixed(x * 100, 1) + "%";
  }

  /** Python f"{n:,}" for an integer (BigInt or number). */
  function pyThousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function node(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // --- the report in the words of rfmap check (rfmap.cli.gridding.format_report) ----------

  function joinOffsets(values, limit = 24) {
    const shown = values.slice(0, limit).join(", ");
    return shown + (values.length > limit ? `, ... (${values.length} in all)` : "");
  }

  function reportLines(r) {
    const nd = r.ndim;
    const field = r.receptive_field.join(" × ");
    const out = {};
    if (r.gridding_free) out.verdict = `every cell of the receptive field (${field}) is reached`;
    else if (r.holes !== null) {
      out.verdict =
        `${pyThousands(r.holes)} of the ${pyThousands(r.receptive_field_cells)} cells of the receptive ` +
        `field (${field}) have no path (coverage ${pyPercent(r.coverage.value)})`;
    } else out.verdict = `the ${field} receptive field has holes`;
    const label = nd === 1 ? "" : "every axis: ";
    const R = r.receptive_field[0];
    const centre = -r.origin[0];
    const gap = r.gaps[0];
    if (gap === null) out.axis = `${label}field ${R}, all reached (the output unit sits at offset ${centre})`;
    else if (r.hole_offsets !== null && r.reached[0] !== null) {
      out.axis =
        `${label}field ${R}, ${r.reached[0]} reached; ${R - r.reached[0]} holes at offsets ` +
        `${joinOffsets(r.hole_offsets[0])} (unit at offset ${centre})`;
    } else {
      out.axis = `${label}field ${pyThousands(R)}: too large to list the holes (raise max_bytes); first hole at offset ${gap.first_hole}`;
    }
    if (gap !== null) {
      // kernel-1 layers move no path, so they do not count (their dilation may be 1)
      const which = r.layers.every((l) => l.kernel_size[0] > 1) ? "layer" : "layer of kernel > 1";
      out.why =
        gap.span === 1
          ? `no ${which} has dilation 1: the smallest, layer ${gap.layer} (dilation ${gap.dilation}), ` +
            `steps over offset 1 (the first hole)`
          : `sorted by dilation, the layers below layer ${gap.layer} reach a contiguous span of ` +
            `${gap.span} offsets, but layer ${gap.layer} steps by ${gap.dilation} > ${gap.span}, ` +
            `so offset ${gap.span} is never reached`;
    }
    if (r.first_hole_layer !== null) {
      out.order = r.gridding_free
        ? `in the given order holes open after layer ${r.first_hole_layer} and later layers close them`
        : `in the given order holes first open after layer ${r.first_hole_layer}`;
    }
    const h = r.hdc;
    if (!h.applicable) out.hdc = `not applicable - ${h.reason}`;
    else {
      const a = h.axes[0];
      out.hdc =
        `M = [${a.M.join(", ")}], M_2 = ${a.M2} ${a.passes ? "<=" : ">"} K = ${a.kernel} -> ` +
        `${a.passes ? "passes" : "fails"}` +
        (a.common_factor === 1 ? "" : `; the rates share the factor ${a.common_factor} (the rule's other condition)`);
      const truth = r.gridding_free ? "gridding-free" : "gridding";
      out.agrees = h.agrees
        ? `the rule agrees with the exact answer (${truth})`
        : `the rule DISAGREES: it predicts ${h.passes ? "no holes" : "holes"}, the exact answer is ${truth} ` +
          `(rfmap's answer is exact; the M_2 test never looks at r_1 and changes with the layer order, ` +
          `the field does not)`;
    }
    if (!r.gridding_free) {
      const sg = r.suggestion;
      if (sg === null) out.fix = `no fix suggested: ${r.suggestion_note || "not searched"}`;
      else {
        const newField = sg.receptive_field.join(" × ");
        let how;
        if (sg.added_layers) {
          how =
            `adds ${sg.added_layers} layer${sg.added_layers > 1 ? "s" : ""} ` +
            `(no ${r.layers.length}-layer schedule reaches ${field} without holes)`;
        } else {
          const c = sg.changed_layers.map(String);
          how = "changes layer" + (c.length > 1 ? `s ${c.slice(0, -1).join(", ")} and ${c[c.length - 1]}` : ` ${c[0]}`);
        }
        const proof = sg.optimal ? "the smallest change" : "the best found within the search budget";
        out.fix =
          `fix: ${sg.dilations.join(",")} - ${how}; total change ${sg.distance}; receptive field ` +
          `${newField} >= ${field}, gridding-free (${proof})`;
      }
    }
    return out;
  }

  function renderCheck(map) {
    const r = cachedCheck(map.spec);
    current.check = r;
    const lines = reportLines(r);
    const line = (key, ...children) => node("p", { "data-line": key }, ...children);

    el.verdict.textContent = "";
    el.verdict.className = r.gridding_free ? "verdict good" : "verdict bad";
    el.verdict.append(
      node("strong", { "data-key": "gridding_free" }, r.gridding_free ? "✓ Gridding-free" : "✗ Gridding"),
      line("verdict", lines.verdict)
    );
    const notes = [line("axis", lines.axis)];
    if (lines.why) notes.push(line("why", "why: " + lines.why));
    if (lines.order) notes.push(line("order", lines.order));
    if (lines.fix) {
      const p = line("fix", lines.fix);
      if (r.suggestion) {
        const apply = node("button", { type: "button", id: "apply-fix", class: "apply" }, "Apply the fix");
        apply.addEventListener("click", () => applySuggestion(r.suggestion.dilations));
        p.append(" ", apply);
      }
      notes.push(p);
    }
    el.verdict.append(node("div", { class: "notes" }, ...notes));
    if (r._skipped) {
      el.verdict.append(line("skipped", "The page does not count a field this large; run rfmap check for its holes."));
    }

    const dl = el.metrics;
    dl.textContent = "";
    const row = (term, value, key, title) => {
      statRow(dl, term, value, key);
      if (title) dl.lastChild.title = title;
    };
    row("receptive field", `${r.receptive_field.join(" × ")} (${pyThousands(r.receptive_field_cells)} cells)`, "receptive_field");
    if (r.holes !== null) {
      row("holes", `${pyThousands(r.holes)}`, "holes");
      row("coverage", pyPercent(r.coverage.value), "coverage", pyFloatRepr(r.coverage.value));
    }
    if (r.peak_to_mean !== null) {
      row("peak/mean", pyG(r.peak_to_mean.value), "peak_to_mean", pyFloatRepr(r.peak_to_mean.value));
      row("min/max", pyG(r.min_nonzero_to_max.value), "min_nonzero_to_max", pyFloatRepr(r.min_nonzero_to_max.value));
    }
    row("ERF std", pyG(r.erf_std[0].value), "erf_std", pyFloatRepr(r.erf_std[0].value));
    row("paths", pyThousands(r.total_paths), "total_paths");

    el.hdc.textContent = "";
    el.hdc.append(line("hdc", lines.hdc));
    if (lines.agrees) el.hdc.append(node("p", { "data-line": "agrees", class: r.hdc.agrees ? "agree" : "disagree" }, lines.agrees));
  }

  function applySuggestion(dilations) {
    const k = state.layers[0].k;
    stopPlaying();
    commit(Object.assign({}, state, { layers: checkLayers(dilations, [k]), depth: dilations.length }), { keepDepth: true });
    el.dilText.focus();
  }

  function renderReadout() {
    if (!current) return;
    const map = current.map;
    if (!cursor) {
      el.readout.innerHTML = "Hover or tap a cell, or focus the map and use the arrow keys.";
      delete el.readout.dataset.count;
      delete el.readout.dataset.cell;
      return;
    }
    const [i, j] = cursor;
    const count = cellCount(map, i, j);
    const sign = (x) => (x > 0 ? "+" + x : x < 0 ? "−" + -x : "0");
    const approx = count > 999999n ? ` (≈ ${Number(count).toExponential(3)})` : "";
    const plural = count === 1n ? "path" : "paths";
    const inside = (x) => x >= map.first && x <= map.last;
    const hole = count === 0n && map.first >= 0 && inside(j) && (map.spec.ndim === 1 || inside(i));
    const note = hole ? ' · <span class="hole">a hole of the field</span>' : "";
    if (map.spec.ndim === 2) {
      el.readout.innerHTML =
        `row <b>${i}</b>, col <b>${j}</b> · offset (${sign(i - map.unit)}, ${sign(j - map.unit)}) · ` +
        `<b class="count">${count}</b> ${plural}${approx}${note}`;
      el.readout.dataset.cell = `${i},${j}`;
    } else {
      el.readout.innerHTML =
        `position <b>${j}</b> · offset ${sign(j - map.unit)} · <b class="count">${count}</b> ${plural}${approx}${note}`;
      el.readout.dataset.cell = `${j}`;
    }
    el.readout.dataset.count = count.toString();
  }

  function writeHash() {
    const hash = stateHash(state);
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
      const next = parseState(new URLSearchParams(text), state);
      stopPlaying();
      state = next;
      update();
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      update();
      setError(`This link's view is invalid (${err.message}); showing the last valid view.`);
      el.view.classList.remove("stale");
    }
  }

  // --- pointer and keyboard ----------------------------------------------------------------

  function cellAt(event) {
    if (!current || !current.geom) return null;
    const rect = el.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const g = current.geom;
    const j = Math.floor((x - g.x0) / g.cell);
    if (g.kind === 2) {
      const i = Math.floor((y - g.y0) / g.cell);
      if (i < 0 || j < 0 || i >= g.n || j >= g.n) return null;
      return [i, j];
    }
    if (j < 0 || j >= g.n || y < g.y0 - 4 || y > g.y0 + g.h + 4) return null;
    return [0, j];
  }

  function setCursor(c) {
    const same = c && cursor && c[0] === cursor[0] && c[1] === cursor[1];
    if (same || (!c && !cursor)) return;
    cursor = c;
    if (current) {
      render();
      renderReadout();
    }
  }

  function moveCursor(di, dj) {
    if (!current) return;
    const n = current.map.spec.size;
    const u = current.map.unit;
    const start = cursor || (current.map.spec.ndim === 2 ? [u, u] : [0, u]);
    const clamp = (x) => Math.min(n - 1, Math.max(0, x));
    const i = current.map.spec.ndim === 2 ? clamp(start[0] + di) : 0;
    setCursor([i, clamp(start[1] + dj)]);
  }

  function setDepth(depth) {
    const d = Math.min(Math.max(1, depth), state.layers.length);
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
    if (state.layers.length < 2) return;
    el.play.textContent = "⏸";
    el.play.setAttribute("aria-label", "Pause");
    el.play.setAttribute("aria-pressed", "true");
    if (state.depth >= state.layers.length) setDepth(1);
    playing = setInterval(() => {
      if (state.depth >= state.layers.length) stopPlaying();
      else setDepth(state.depth + 1);
    }, DATA.seconds_per_frame * 1000);
  }

  // --- exports ---------------------------------------------------------------------------

  function fileStem() {
    const layers = state.layers.slice(0, state.depth);
    return "rfmap-" + layers.map((l) => l.d).join("-") + (state.ndim === 1 ? "-1d" : "");
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

  /** A figure like rfmap plot's: title, map, colour bar and a caption. */
  function exportCanvas() {
    const map = current.map;
    const n = map.spec.size;
    const scale = resolveScale(state.scale, map);
    let mapBox;
    if (map.spec.ndim === 2) {
      const cell = Math.max(1, Math.ceil(600 / n));
      mapBox = { w: rowLabelMargin(n) + 4 + n * cell, h: MAP_TOP + n * cell + 22 };
    } else {
      mapBox = { w: Math.max(720, Math.min(2400, n * 4 + 60)), h: 320 };
    }
    const bar = map.spec.ndim === 2 ? 70 : 0;
    const width = mapBox.w + bar + 40;
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
    ctx.fillText("Dilation rates: " + formatSchedule(map.spec.layers), width / 2, 14);
    ctx.font = FONT;
    ctx.fillStyle = "#5b6b7b";
    ctx.fillText(describeView(map), width / 2, 40);
    const geom = drawMap(ctx, map, { x: 20, y: 64, w: mapBox.w, h: mapBox.h }, { scale: state.scale, showUnit: false });
    if (bar) paintColorbar(ctx, map, scale, { x: geom.x0 + geom.side + 10, y: geom.y0, w: bar - 10, h: geom.side + 22 }, false);
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillStyle = "#8a96a3";
    const count = (v) => (v > 999999999999n ? "≈ " + Number(v).toExponential(3) : v.toString());
    ctx.fillText(`rfmap ${DATA.version} · max ${count(map.max)} · total ${count(map.total)}`, width - 12, height - 8);
    return canvas;
  }

  function exportPng() {
    if (!current) return;
    exportCanvas().toBlob((blob) => download(blob, fileStem() + ".png"), "image/png");
  }

  function exportJson() {
    if (!current) return;
    download(new Blob([mapJSON(current.map) + "\n"], { type: "application/json" }), fileStem() + ".json");
  }

  function copyLink() {
    const url = location.href;
    const done = () => {
      el.readout.textContent = "Link copied: it reproduces this view.";
    };
    const fail = () => {
      el.readout.textContent = "Copy this link: " + url;
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(url).then(done, fail);
    } else {
      fail();
    }
  }

  // --- wiring ------------------------------------------------------------------------------

  function wire() {
    fillPresets();
    el.preset.addEventListener("change", () => {
      const p = DATA.presets.find((x) => x.id === el.preset.value);
      if (!p) return;
      stopPlaying();
      cursor = null;
      state = presetState(p);
      update();
    });
    el.dilText.addEventListener("input", () => fromText(el.dilText));
    el.kerText.addEventListener("input", () => fromText(el.kerText));
    const resync = () => {
      if (el.error.hidden) syncControls();
    };
    el.dilText.addEventListener("blur", resync);
    el.kerText.addEventListener("blur", resync);
    el.size.addEventListener("blur", resync);
    el.tbody.addEventListener("input", (e) => {
      if (e.target.matches("input")) fromTable(e.target);
    });
    el.tbody.addEventListener("focusout", (e) => {
      if (e.target.matches("input") && el.error.hidden) renderTable();
    });
    el.tbody.addEventListener("click", (e) => {
      const btn = e.target.closest("button.remove");
      if (!btn || state.layers.length < 2) return;
      const i = Number(btn.closest("tr").dataset.index);
      const layers = state.layers.filter((_, j) => j !== i);
      commit(Object.assign({}, state, { layers }));
      const rows = el.tbody.rows;
      const target = rows[Math.min(i, rows.length - 1)].cells[4].firstChild;
      (target.disabled ? el.add : target).focus();
    });
    el.tbody.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || !e.target.matches("input")) return;
      const i = Number(e.target.closest("tr").dataset.index);
      if (i === state.layers.length - 1 && state.layers.length < LIMITS.max_layers) {
        e.preventDefault();
        addLayer(e.target.dataset.field);
      }
    });
    el.add.addEventListener("click", () => addLayer("d"));
    el.size.addEventListener("input", fromInputs);
    el.padding.addEventListener("change", fromInputs);
    document.querySelectorAll('input[name="ndim"], input[name="scale"]').forEach((r) => r.addEventListener("change", fromInputs));
    el.depth.addEventListener("input", () => {
      stopPlaying();
      setDepth(Number(el.depth.value));
    });
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
        const next = SCALES[(SCALES.indexOf(state.scale) + 1) % SCALES.length];
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

  function addLayer(field) {
    const last = state.layers[state.layers.length - 1];
    const layers = state.layers.concat([{ d: last.d, k: last.k }]);
    try {
      commit(Object.assign({}, state, { layers: checkLayers(layers.map((l) => l.d), layers.map((l) => l.k)) }));
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      setError(err.message);
      return;
    }
    const row = el.tbody.rows[el.tbody.rows.length - 1];
    const input = row.cells[field === "k" ? 2 : 1].firstChild;
    input.focus();
    input.select();
    row.scrollIntoView({ block: "nearest" });
  }

  // --- start -------------------------------------------------------------------------------

  wire();
  if (location.hash.length > 1) readHash();
  else update();

  /** Hooks for tests and benchmarks (not a stable API). */
  window.rfmapExplorer = {
    version: DATA.version,
    state: () => JSON.parse(JSON.stringify(state)),
    hash: () => stateHash(state),
    error: () => (el.error.hidden ? null : el.error.textContent),
    mapJSON: (withCounts = true) => (current ? mapJSON(current.map, withCounts) : null),
    cellCount: (i, j) => (current ? cellCount(current.map, i, j).toString() : null),
    check: () => (current ? toJSON(current.check) : null),
    checkSchedule: (layers, ndim, padding) => toJSON(checkSchedule(layers, ndim, padding)),
    /** Python's format(x, ".3g"), format(x, ".1%") and format(n, ","), as the panel uses them. */
    formats: (x, n) => [pyG(x), pyPercent(x), pyThousands(BigInt(n))],
    /** Recompute and redraw the view (fresh: without the memoised gridding check). */
    redraw: (fresh = false) => {
      if (fresh) checkCache.clear();
      current.map = computeMap(viewSpec(state));
      render();
      renderStats(current.map);
      renderCheck(current.map);
    },
    computeMap: (spec) => computeMap(spec),
    /** Viewport coordinates of the centre of cell (i, j) (for 1D: position j). */
    cellPoint: (i, j) => {
      const g = current.geom;
      const rect = el.canvas.getBoundingClientRect();
      const y = g.kind === 2 ? g.y0 + (i + 0.5) * g.cell : g.y0 + g.h / 2;
      return { x: rect.left + g.x0 + (j + 0.5) * g.cell, y: rect.top + y };
    },
    lut: () => LUT.map((c) => c.slice()),
    pathLut: () => PATH.map((c) => c.slice()),
    /** The colour scale in use ("auto" resolved to "linear" or "log"). */
    scale: () => (current && current.geom ? current.geom.scale : null),
  };
})();
