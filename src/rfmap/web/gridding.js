// ===================================================================================
// gridding.js: a port of rfmap.gridding.check (GriddingReport.to_dict), of
// rfmap.design.suggest_fix and of the words of `rfmap check` (its text report), for any
// stack the page draws: per-axis kernels and dilations, strides, any padding.
// Everything is for an unbounded input, as `rfmap check` reports it.  No DOM here.
// ===================================================================================

const Gridding = (function () {
  "use strict";

  const { PyFloat, pad, receptiveFieldSize, pathBound, isBig, axisCounts, listText } = Engine;

  const HOLE_OFFSETS_LIMIT = 1000; // rfmap.gridding.HOLE_OFFSETS_LIMIT
  const CHECK_BYTES = 64 * 2 ** 20; // rfmap.gridding.DEFAULT_CHECK_BYTES
  const INT64_LIMIT = 2n ** 63n - 1n;
  const FIX_NODES = 100000; // rfmap.design.DEFAULT_FIX_NODES
  // The page counts the unbounded field only below this work (layers x field length).
  const FIELD_WORK_LIMIT = { number: 4e7, bigint: 3e6 };

  // --- exact fractions and Python's number formats -----------------------------------

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

  function gcd(a, b) {
    while (b) [a, b] = [b, a % b];
    return a;
  }

  // --- the exact criterion, per axis -------------------------------------------------------

  /** Effective dilation d_l * (product of earlier strides) of each layer along axis a. */
  function effectiveDilations(layers, a) {
    const out = [];
    let jump = 1;
    for (const layer of layers) {
      out.push(layer.d[a] * jump);
      jump *= layer.s[a];
    }
    return out;
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

  function axisGaps(layers) {
    const ndim = layers[0].k.length;
    return Array.from({ length: ndim }, (_, a) => axisGap(layers.map((l) => l.k[a]), effectiveDilations(layers, a)));
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

  /** rfmap.gridding.hdc_rule(layers).to_dict(). */
  function hdcRule(layers, exactFree) {
    const ndim = layers[0].k.length;
    let reason = null;
    if (layers.length < 2) reason = "the rule needs at least two layers (it tests M_2)";
    else if (layers.some((l) => l.s.some((s) => s !== 1))) reason = "the rule is stated for stride-1 layers";
    else if (Array.from({ length: ndim }, (_, a) => layers.some((l) => l.k[a] !== layers[0].k[a])).some(Boolean)) {
      reason = "the rule assumes one kernel size K for every layer";
    }
    if (reason !== null) {
      return { applicable: false, reason, passes: null, coprime: null, agrees: null, axes: [] };
    }
    const axes = Array.from({ length: ndim }, (_, a) => {
      const rates = layers.map((l) => l.d[a]);
      const k = layers[0].k[a];
      const m = hdcM(rates);
      return { kernel: k, dilations: rates, M: m, M2: m[1], passes: m[1] <= k, common_factor: rates.reduce(gcd) };
    });
    const passes = axes.every((x) => x.passes);
    return {
      applicable: true,
      reason: null,
      passes,
      coprime: axes.every((x) => x.common_factor === 1),
      agrees: passes === exactFree,
      axes,
    };
  }

  /** The unbounded 1D field of axis a, reduced to what the report needs (or a reason not to). */
  function fieldMap(layers, a) {
    const rf = receptiveFieldSize(layers, a);
    const bound = pathBound(layers, a);
    const bytes = bound <= INT64_LIMIT ? 8 : 44;
    if (rf * bytes > CHECK_BYTES) return { computed: false, skipped: false };
    const big = isBig(layers, a);
    if (layers.length * rf > (big ? FIELD_WORK_LIMIT.bigint : FIELD_WORK_LIMIT.number)) {
      return { computed: false, skipped: true };
    }
    const { values } = axisCounts(layers, a, null, 0, big);
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
      if (axisGaps(layers.slice(0, depth)).some((g) => g !== null)) return depth;
    }
    return null;
  }

  /** rfmap.gridding._origin: the field's first cell relative to the unit, per axis. */
  function fieldOrigin(layers, a) {
    let offset = 0;
    for (let i = layers.length - 1; i >= 0; i--) offset = offset * layers[i].s[a] - pad(layers[i], a)[0];
    return offset;
  }

  const prodBig = (values) => values.reduce((acc, v) => acc * BigInt(v), 1n);

  /** GriddingReport.to_dict() of rfmap.gridding.check_layers(layers). */
  function checkSchedule(layers) {
    const ndim = layers[0].k.length;
    const axes = Array.from({ length: ndim }, (_, a) => a);
    const gaps = axisGaps(layers);
    const free = gaps.every((g) => g === null);
    const rf = axes.map((a) => receptiveFieldSize(layers, a));
    const maps = axes.map((a) => fieldMap(layers, a));
    const computed = maps.every((m) => m.computed);
    const reached = axes.map((a) => (maps[a].computed ? maps[a].reached : gaps[a] === null ? rf[a] : null));
    const cells = prodBig(rf);
    const reachedCells = reached.includes(null) ? null : prodBig(reached);
    const total = layers.reduce((acc, l) => acc * prodBig(l.k), 1n);
    const maxPaths = computed ? maps.reduce((acc, m) => acc * m.max, 1n) : null;
    const minPaths = computed ? maps.reduce((acc, m) => acc * m.min, 1n) : null;
    let holeOffsets = [];
    for (const a of axes) {
      if (gaps[a] === null) holeOffsets.push([]);
      else if (!maps[a].computed) {
        holeOffsets = null;
        break;
      } else holeOffsets.push(maps[a].holes);
    }
    const perAxis = reached.includes(null) ? null : axes.map((a) => rf[a] - reached[a]);
    const stds = axes.map((a) => {
      const eff = effectiveDilations(layers, a);
      const variance = layers.reduce((acc, l, i) => acc + BigInt(eff[i]) ** 2n * (BigInt(l.k[a]) ** 2n - 1n), 0n);
      return new PyFloat(Math.sqrt(ratio(variance, 12n)));
    });
    const [suggestion, note] = free ? [null, null] : suggestFix(layers);
    return {
      dilations: layers.map((l) => Engine.collapse(l.d)),
      kernel: Engine.scheduleKernel(layers),
      ndim,
      layers: layers.map(Engine.describeLayer),
      gridding_free: free,
      receptive_field: rf,
      receptive_field_cells: cells,
      origin: axes.map((a) => fieldOrigin(layers, a)),
      reached,
      reached_cells: reachedCells,
      holes: reachedCells === null ? null : cells - reachedCells,
      holes_per_axis: perAxis,
      hole_offsets: holeOffsets,
      hole_offsets_truncated:
        perAxis === null || holeOffsets === null ? null : holeOffsets.map((o, a) => perAxis[a] > o.length),
      coverage: reachedCells === null ? null : new PyFloat(ratio(reachedCells, cells)),
      peak_to_mean:
        maxPaths === null || reachedCells === null ? null : new PyFloat(ratio(maxPaths * reachedCells, total)),
      min_nonzero_to_max: maxPaths === null ? null : new PyFloat(ratio(minPaths, maxPaths)),
      max_paths: maxPaths,
      min_nonzero_paths: minPaths,
      total_paths: total,
      erf_std: stds,
      first_hole_layer: firstHoleLayer(layers),
      gaps,
      hdc: hdcRule(layers, free),
      suggestion,
      suggestion_note: note,
      map_computed: computed,
      // not in the Python report: the page declined to count a huge field
      _skipped: maps.some((m) => m.skipped),
    };
  }

  // --- rfmap.design.nearest_gridding_free and suggest_fix ---------------------------------

  class SearchBudget extends Error {}

  function floorDivBig(a, b) {
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
      return -floorDivBig(tail - BigInt(this.need), p) - BigInt(total);
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
      this.nodes++; // every value tried counts, pruned or not, so the budget bounds time
      if (this.nodes > this.maxNodes) throw new SearchBudget();
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

  /** rfmap.design.nearest_gridding_free(old, k): {dilations, added, optimal}. */
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
    return { dilations: assign(old, added, best), added, optimal: search.optimal };
  }

  /** rfmap.design.suggest_fix(layers): [suggestion, note]. */
  function suggestFix(layers) {
    const ndim = layers[0].k.length;
    if (layers.some((l) => l.s.some((s) => s !== 1))) {
      return [null, "no suggestion for strided stacks (the search assumes stride 1)"];
    }
    const kernels = [];
    for (let a = 0; a < ndim; a++) {
      if (layers.some((l) => l.k[a] !== layers[0].k[a])) {
        return [null, "no suggestion when kernel sizes differ between layers"];
      }
      kernels.push(layers[0].k[a]);
    }
    const perAxis = [];
    const fixes = [];
    for (let a = 0; a < ndim; a++) {
      const rates = layers.map((l) => l.d[a]);
      if (axisGap(Array(rates.length).fill(kernels[a]), rates) === null) fixes.push(null);
      else {
        let same = -1;
        for (let i = 0; i < a && same < 0; i++) {
          if (kernels[i] === kernels[a] && perAxis[i].every((r, j) => r === rates[j])) same = i;
        }
        fixes.push(same >= 0 ? fixes[same] : nearestGriddingFree(rates, kernels[a]));
      }
      perAxis.push(rates);
    }
    const used = fixes.filter((f) => f !== null);
    const added = Math.max(...used.map((f) => f.added));
    const ones = (n) => Array(n).fill(1);
    const columns = fixes.map((f, a) => (f === null ? ones(added).concat(perAxis[a]) : ones(added - f.added).concat(f.dilations)));
    const oldColumns = perAxis.map((rates) => ones(added).concat(rates));
    const entries = [];
    const changed = [];
    let distance = 0;
    for (let i = 0; i < columns[0].length; i++) {
      const values = columns.map((col) => col[i]);
      entries.push(Engine.collapse(values));
      const diffs = columns.map((col, a) => Math.abs(col[i] - oldColumns[a][i]));
      distance += Math.max(...diffs);
      if (i < added || diffs.some(Boolean)) changed.push(i + 1);
    }
    const rf = kernels.map((k, a) => 1 + (k - 1) * columns[a].reduce((x, y) => x + y, 0));
    const optimal = used.every((f) => f.optimal) && new Set(used.map((f) => f.added)).size === 1;
    return [
      { dilations: entries, receptive_field: rf, added_layers: added, changed_layers: changed, distance, optimal },
      null,
    ];
  }

  // --- the report in the words of rfmap check (its text report) -----------------------------

  const HDC_HEAD = "HDC rule (Wang et al. 2018, M_2 <= K)";

  function joinOffsets(values, limit = 24) {
    const shown = values.slice(0, limit).join(", ");
    return shown + (values.length > limit ? `, ... (${values.length} in all)` : "");
  }

  /** Axes with the same kernels, dilations and strides share one line of the report. */
  function axisGroups(r) {
    const groups = [];
    const keys = [];
    for (let a = 0; a < r.ndim; a++) {
      const key = r.layers.map((l) => `${l.kernel_size[a]}/${l.dilation[a]}/${l.stride[a]}`).join(",");
      const at = keys.indexOf(key);
      if (at >= 0) groups[at].push(a);
      else {
        keys.push(key);
        groups.push([a]);
      }
    }
    return groups;
  }

  function axesLabel(axes, ndim) {
    if (ndim === 1) return "";
    if (axes.length === ndim) return "every axis: ";
    return (axes.length === 1 ? "axis " : "axes ") + axes.join(", ") + ": ";
  }

  function why(r, a) {
    const gap = r.gaps[a];
    const strided = r.layers.some((l) => l.stride.some((s) => s !== 1));
    const what = strided ? "effective dilation" : "dilation";
    const note = strided ? " (effective dilation = dilation x the product of earlier strides)" : "";
    if (gap.span === 1) {
      // kernel-1 layers move no path, so they do not count (their dilation may be 1)
      const which = r.layers.every((l) => l.kernel_size[a] > 1) ? "layer" : "layer of kernel > 1";
      return (
        `no ${which} has ${what} 1: the smallest, layer ${gap.layer} (${what} ` +
        `${gap.dilation}), steps over offset 1 (the first hole)${note}`
      );
    }
    return (
      `sorted by ${what}, the layers below layer ${gap.layer} reach a contiguous span of ` +
      `${gap.span} offsets, but layer ${gap.layer} steps by ${gap.dilation} > ${gap.span}, ` +
      `so offset ${gap.span} is never reached${note}`
    );
  }

  /** The lines of `rfmap check`'s text for a report, as [key, text] in its order. */
  function reportLines(r) {
    const out = [];
    const field = r.receptive_field.join(" × ");
    if (r.gridding_free) out.push(["verdict", `every cell of the receptive field (${field}) is reached`]);
    else if (r.holes !== null) {
      out.push([
        "verdict",
        `${pyThousands(r.holes)} of the ${pyThousands(r.receptive_field_cells)} cells of the receptive ` +
          `field (${field}) have no path (coverage ${pyPercent(r.coverage.value)})`,
      ]);
    } else out.push(["verdict", `the ${field} receptive field has holes`]);
    for (const axes of axisGroups(r)) {
      const a = axes[0];
      const label = axesLabel(axes, r.ndim);
      const R = r.receptive_field[a];
      const centre = -r.origin[a];
      const gap = r.gaps[a];
      if (gap === null) {
        out.push(["axis", `${label}field ${R}, all reached (the output unit sits at offset ${centre})`]);
        continue;
      }
      if (r.hole_offsets !== null && r.reached[a] !== null) {
        out.push([
          "axis",
          `${label}field ${R}, ${r.reached[a]} reached; ${R - r.reached[a]} holes at offsets ` +
            `${joinOffsets(r.hole_offsets[a])} (unit at offset ${centre})`,
        ]);
      } else {
        out.push([
          "axis",
          `${label}field ${pyThousands(R)}: too large to list the holes (raise max_bytes); first hole at offset ${gap.first_hole}`,
        ]);
      }
      out.push(["why", "why: " + why(r, a)]);
    }
    if (r.first_hole_layer !== null) {
      out.push([
        "order",
        r.gridding_free
          ? `in the given order holes open after layer ${r.first_hole_layer} and later layers close them`
          : `in the given order holes first open after layer ${r.first_hole_layer}`,
      ]);
    }
    const h = r.hdc;
    if (!h.applicable) out.push(["hdc", `not applicable - ${h.reason}`]);
    else {
      const seen = [];
      const distinct = new Set(h.axes.map((x) => `${x.kernel}/${x.dilations}`)).size > 1;
      h.axes.forEach((x, index) => {
        const key = x.dilations.join(",");
        if (seen.includes(key)) return;
        seen.push(key);
        out.push([
          "hdc",
          (distinct ? `on axis ${index}: ` : "") +
            `M = ${listText(x.M)}, M_2 = ${x.M2} ${x.passes ? "<=" : ">"} K = ${x.kernel} -> ` +
            `${x.passes ? "passes" : "fails"}` +
            (x.common_factor === 1
              ? ""
              : `; ${x.passes ? "but" : "and"} the rates share the factor ${x.common_factor}, which the paper's second condition forbids`),
        ]);
      });
      const truth = r.gridding_free ? "gridding-free" : "gridding";
      out.push([
        "agrees",
        h.agrees
          ? `the rule agrees with the exact answer (${truth})`
          : `the rule DISAGREES: M_2 <= K predicts ${h.passes ? "no holes" : "holes"}, the exact answer is ${truth}` +
            (h.passes && h.coprime === false && !r.gridding_free
              ? "; only the second condition (no common factor) flags this schedule"
              : "") +
            " " +
            `(rfmap's answer is exact; the M_2 test never looks at r_1 and changes with the layer order, ` +
            `the field does not)`,
      ]);
    }
    if (!r.gridding_free) out.push(["fix", fixLine(r)]);
    return out;
  }

  function fixLine(r) {
    const sg = r.suggestion;
    if (sg === null) return `no fix suggested: ${r.suggestion_note || "not searched"}`;
    const schedule = sg.dilations.map((d) => (typeof d === "number" ? String(d) : d.join("x"))).join(",");
    const field = r.receptive_field.join(" × ");
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
    return (
      `fix: ${schedule} - ${how}; total change ${sg.distance}; receptive field ` +
      `${newField} >= ${field}, gridding-free (${proof})`
    );
  }

  return {
    HDC_HEAD,
    ratio,
    pyG,
    pyFixed,
    pyPercent,
    pyThousands,
    effectiveDilations,
    axisGap,
    checkSchedule,
    suggestFix,
    reportLines,
  };
})();
