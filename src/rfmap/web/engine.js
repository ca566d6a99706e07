// ===================================================================================
// engine.js: the exact engine, a port of rfmap.paths (axis_counts, PathMap.to_dict).
//
// A layer is {k, d, s, p}: kernel size, dilation and stride per axis (arrays of ndim
// numbers) and the padding ("same", "valid", "causal" or an array of per-axis zero
// paddings, both sides).  The nD map is the outer product of one exact 1D factor per
// axis; factors are float64 while every count of the axis is below 2**53 (exact there)
// and BigInt beyond.  Nothing here touches the DOM.
// ===================================================================================

const Engine = (function () {
  "use strict";

  const MAX_SAFE = Number.MAX_SAFE_INTEGER;

  /** An input the stack (or the page) refuses; the message is rfmap's own. */
  class SpecError extends Error {}

  /** Python's // for numbers. */
  const floorDiv = (a, b) => Math.floor(a / b);

  /** The dilated kernel's span along axis a: d * (k - 1) + 1. */
  function extent(layer, a) {
    return layer.d[a] * (layer.k[a] - 1) + 1;
  }

  /** Zero padding (left, right) of one layer along axis a, exactly as PyTorch applies it. */
  function pad(layer, a) {
    const p = layer.p;
    if (typeof p !== "string") return [p[a], p[a]];
    const total = extent(layer, a) - 1;
    if (p === "same") return [Math.floor(total / 2), total - Math.floor(total / 2)];
    if (p === "causal") return [total, 0];
    return [0, 0];
  }

  function outputSize(layer, n, a) {
    const [left, right] = pad(layer, a);
    return floorDiv(n + left + right - extent(layer, a), layer.s[a]) + 1;
  }

  const listText = (values) => "[" + values.join(", ") + "]";

  /** Sizes of the input and of every layer output (rfmap.specs.output_sizes). */
  function outputSizes(layers, size) {
    const sizes = [size.slice()];
    for (let i = 0; i < layers.length; i++) {
      const out = sizes[i].map((n, a) => outputSize(layers[i], n, a));
      if (Math.min(...out) < 1) {
        throw new SpecError(
          `size ${listText(size)} is too small for this stack: layer ${i + 1} would output ${listText(out)}`
        );
      }
      sizes.push(out);
    }
    return sizes;
  }

  /** Extent of the theoretical receptive field along axis a (unbounded input). */
  function receptiveFieldSize(layers, a) {
    let rf = 1;
    let jump = 1;
    for (const layer of layers) {
      rf += (extent(layer, a) - 1) * jump;
      jump *= layer.s[a];
    }
    return rf;
  }

  /** The product of the kernel sizes along axis a: the largest possible 1D count. */
  function pathBound(layers, a) {
    let bound = 1n;
    for (const layer of layers) bound *= BigInt(layer.k[a]);
    return bound;
  }

  const isBig = (layers, a) => pathBound(layers, a) > BigInt(MAX_SAFE);

  /**
   * Window [lo, hi) of the transposed all-ones convolution of `values` (rfmap.paths._spread):
   * position p receives values[j] for every tap t in 0..k-1 with p = j*s + t*d.  Along
   * each residue class mod d a sliding sum over k taps, so the work is (hi - lo) + d*k
   * whatever k is.  Every partial sum is a count of paths: exact in float64 below 2**53.
   */
  function spread(values, k, d, s, lo, hi, big) {
    const n = values.length;
    const last = (n - 1) * s;
    const zero = big ? 0n : 0;
    const at = (q) => (q < 0 || q > last || q % s !== 0 ? zero : values[q / s]);
    const length = hi - lo;
    const out = big ? new Array(length) : new Float64Array(length);
    const reach = k * d;
    for (let p = lo; p < hi; p++) {
      let v;
      if (p - d < lo) {
        v = zero;
        for (let t = 0; t < k; t++) v += at(p - t * d);
      } else {
        v = out[p - d - lo] + at(p) - at(p - reach);
      }
      out[p - lo] = v;
    }
    return out;
  }

  /**
   * Exact 1D path counts along axis a to output position `unit` (rfmap.paths.axis_counts):
   * {origin, values}.  With `sizes` (the input size of every layer along the axis) the
   * values are clipped to each layer's input exactly where zero padding loses paths;
   * with sizes = null the input is unbounded and the values span the whole field.
   */
  function axisCounts(layers, a, sizes, unit, big) {
    let offset = unit;
    let values = big ? [1n] : new Float64Array([1]);
    for (let index = layers.length - 1; index >= 0; index--) {
      const layer = layers[index];
      const k = layer.k[a];
      const d = layer.d[a];
      const s = layer.s[a];
      offset = offset * s - pad(layer, a)[0];
      const length = (values.length - 1) * s + (k - 1) * d + 1;
      let lo = 0;
      let hi = length;
      if (sizes !== null) {
        lo = Math.max(0, -offset);
        hi = Math.min(length, sizes[index] - offset);
        if (hi <= lo) return { origin: 0, values: big ? [] : new Float64Array(0) };
      }
      values = spread(values, k, d, s, lo, hi, big);
      offset += lo;
    }
    return { origin: offset, values };
  }

  /**
   * The exact map of a stack: spec = {layers, ndim, size (per axis, or null for an
   * unbounded input), unit (per axis, or null for the centre of the output)}.  Returns
   * the per-axis factors and the exact statistics PathMap reports.  Throws SpecError as
   * rfmap's stack_path_map would.
   */
  function computeMap(spec) {
    const { layers, ndim } = spec;
    if (!layers.length) throw new SpecError("dilations must name at least one layer, got an empty schedule");
    let sizes = null;
    let unit = null;
    let shape;
    if (spec.size === null) {
      if (spec.unit !== null) throw new SpecError("unit has no meaning for an unbounded map (size=None)");
      shape = Array.from({ length: ndim }, (_, a) => receptiveFieldSize(layers, a));
    } else {
      sizes = outputSizes(layers, spec.size);
      const out = sizes[sizes.length - 1];
      unit = spec.unit === null ? out.map((n) => Math.floor(n / 2)) : checkUnit(spec.unit, out);
      shape = spec.size.slice();
    }
    const factors = [];
    const origin = [];
    const big = [];
    for (let a = 0; a < ndim; a++) {
      const b = isBig(layers, a);
      big.push(b);
      const axisSizes = sizes === null ? null : sizes.map((s) => s[a]);
      const res = axisCounts(layers, a, axisSizes, unit === null ? 0 : unit[a], b);
      if (sizes === null) {
        factors.push(res.values);
        origin.push(res.origin);
      } else {
        const factor = b ? new Array(shape[a]).fill(0n) : new Float64Array(shape[a]);
        for (let i = 0; i < res.values.length; i++) factor[res.origin + i] = res.values[i];
        factors.push(factor);
        origin.push(0);
      }
    }
    return summarise({ spec, sizes, unit, shape, origin, factors, big });
  }

  function checkUnit(unit, out) {
    if (unit.length !== out.length) {
      throw new SpecError(`unit needs ${out.length} indices for a ${out.length}D map, got ${listText(unit)}`);
    }
    if (unit.some((u, a) => u < 0 || u >= out[a])) {
      throw new SpecError(`unit ${listText(unit)} is outside the output grid of shape ${listText(out)}`);
    }
    return unit.slice();
  }

  /** Per-axis support, extremes and sums; the nD statistics are their products. */
  function summarise(map) {
    const axes = map.factors.map((factor) => {
      let first = -1;
      let last = -1;
      let nonzero = 0;
      let max = 0n;
      let min = 0n;
      let sum = 0n;
      const approx = new Float64Array(factor.length);
      for (let i = 0; i < factor.length; i++) {
        const v = factor[i];
        approx[i] = Number(v);
        if (approx[i] === 0) continue;
        const b = BigInt(v);
        if (first < 0) first = i;
        last = i;
        nonzero++;
        sum += b;
        if (b > max) max = b;
        if (min === 0n || b < min) min = b;
      }
      return { first, last, nonzero, max, min, sum, approx };
    });
    const prod = (f) => axes.reduce((acc, x) => acc * f(x), 1n);
    const layers = map.spec.layers;
    // Where the output unit sits in the input: its index times the product of the strides
    // (the unit itself for stride-1 stacks); for an unbounded map, offset 0.
    const anchor = map.unit === null
      ? map.origin.map((o) => -o)
      : map.unit.map((u, a) => u * layers.reduce((j, l) => j * l.s[a], 1));
    return Object.assign(map, {
      axes,
      approx: axes.map((x) => x.approx),
      anchor,
      receptiveField: axes.some((x) => x.first < 0)
        ? axes.map(() => 0)
        : axes.map((x) => x.last - x.first + 1),
      support: axes.reduce((acc, x) => acc * BigInt(x.nonzero), 1n),
      max: prod((x) => x.max),
      minNonzero: prod((x) => x.min),
      total: prod((x) => x.sum),
    });
  }

  /** Exact count of the cell at index (one index per axis). */
  function cellCount(map, index) {
    let c = 1n;
    for (let a = 0; a < index.length; a++) c *= BigInt(map.factors[a][index[a]]);
    return c;
  }

  // --- PathMap.to_dict(), serialised as Python's json.dumps writes it ---------------------

  /** A JSON text inserted as is. */
  class Raw {
    constructor(text) {
      this.text = text;
    }
  }

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

  /** json.dumps(value) with Python's default separators; keys starting with _ are skipped. */
  function toJSON(value) {
    if (value === null || value === undefined) return "null";
    if (value instanceof Raw) return value.text;
    if (value instanceof PyFloat) return pyFloatRepr(value.value);
    if (typeof value === "boolean") return value ? "true" : "false";
    if (typeof value === "bigint") return value.toString();
    if (typeof value === "number") return String(value);
    if (typeof value === "string") return JSON.stringify(value);
    if (Array.isArray(value) || ArrayBuffer.isView(value)) return "[" + Array.from(value, toJSON).join(", ") + "]";
    const keys = Object.keys(value).filter((key) => !key.startsWith("_"));
    return "{" + keys.map((key) => JSON.stringify(key) + ": " + toJSON(value[key])).join(", ") + "}";
  }

  /** One int where all axes agree, else the per-axis list (rfmap.specs._collapse). */
  function collapse(values) {
    return values.every((v) => v === values[0]) ? values[0] : values.slice();
  }

  /** rfmap.specs.schedule_kernel: one int when all layers and axes agree, else per layer. */
  function scheduleKernel(layers) {
    const perLayer = layers.map((l) => collapse(l.k));
    const first = perLayer[0];
    if (typeof first === "number" && perLayer.every((k) => k === first)) return first;
    return perLayer;
  }

  /** ConvLayer.describe(). */
  function describeLayer(layer) {
    return {
      kernel_size: layer.k.slice(),
      dilation: layer.d.slice(),
      stride: layer.s.slice(),
      padding: typeof layer.p === "string" ? layer.p : layer.p.slice(),
    };
  }

  /** The counts as nested JSON lists: the last axis is written row by row. */
  function countsJSON(map) {
    const { factors, shape } = map;
    const nd = shape.length;
    const strings = (a) => Array.from(factors[a], (v) => BigInt(v).toString());
    if (nd === 1) return "[" + strings(0).join(", ") + "]";
    const last = factors[nd - 1];
    const lastBig = Array.from(last, (v) => BigInt(v));
    const zeroRow = "[" + new Array(shape[nd - 1]).fill("0").join(", ") + "]";
    const cells = new Array(shape[nd - 1]);
    const row = (scale) => {
      if (scale === 0n) return zeroRow;
      for (let j = 0; j < lastBig.length; j++) cells[j] = lastBig[j] === 0n ? "0" : (scale * lastBig[j]).toString();
      return "[" + cells.join(", ") + "]";
    };
    const rows = (prefix, a) => {
      const out = new Array(shape[a]);
      for (let i = 0; i < shape[a]; i++) {
        const scale = prefix * BigInt(factors[a][i]);
        out[i] = a === nd - 2 ? row(scale) : rows(scale, a + 1);
      }
      return "[" + out.join(", ") + "]";
    };
    return rows(1n, 0);
  }

  /** The same dictionary as rfmap.stack_path_map(...).to_dict(), as a JSON text. */
  function mapJSON(map, withCounts = true) {
    const { spec } = map;
    const size = spec.size;
    const dict = {
      dilations: spec.layers.map((l) => collapse(l.d)),
      kernel: scheduleKernel(spec.layers),
      size: size === null ? null : size.every((n) => n === size[0]) ? size[0] : size.slice(),
      shape: map.shape.slice(),
      ndim: spec.ndim,
      unit: map.unit === null ? null : map.unit.slice(),
      origin: map.origin.slice(),
      layers: spec.layers.map(describeLayer),
      receptive_field: map.receptiveField.slice(),
      support: map.support,
      max: map.max,
      total: map.total,
    };
    if (withCounts) dict.counts = new Raw(countsJSON(map));
    // the theoretical field, and whether the input cuts it (PathMap.full_receptive_field)
    const full = Array.from({ length: spec.ndim }, (_, a) => receptiveFieldSize(spec.layers, a));
    dict.full_receptive_field = full;
    dict.clipped = map.receptiveField.some((n, a) => n !== full[a]);
    return toJSON(dict);
  }

  return {
    SpecError,
    MAX_SAFE,
    floorDiv,
    extent,
    pad,
    outputSize,
    outputSizes,
    receptiveFieldSize,
    pathBound,
    isBig,
    spread,
    axisCounts,
    computeMap,
    cellCount,
    Raw,
    PyFloat,
    pyFloatRepr,
    toJSON,
    collapse,
    scheduleKernel,
    describeLayer,
    mapJSON,
    listText,
  };
})();
