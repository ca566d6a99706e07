// ===================================================================================
// state.js: the view's state, its validation (rfmap.specs.conv_stack's rules and
// messages, plus the page's limits), the text syntax of the controls (rfmap.specs.
// parse_schedule: "1, 2x1, 4") and the URL fragment.  No DOM here.
//
// A state holds the schedule as it is typed, one entry per layer: `dil`, `ker`, `str`
// and `pad`, where an entry is a number (every axis), an array (one value per axis) or,
// for `pad`, a mode name.  `size` is an entry too (or null: unbounded), `unit` an array
// or null (the centre of the output), `slice` {axis, index} or null (3D: through the unit).
// ===================================================================================

const State = (function () {
  "use strict";

  const { SpecError } = Engine;
  const PADDINGS = ["same", "valid", "causal"];
  const SCALES = ["auto", "linear", "log"];
  const INT = /^[+-]?\d+$/;

  // --- Python's repr() of what conv_stack was given ---------------------------------

  /** repr() of a string (Python picks single quotes unless the text has one and no double). */
  function pyStr(text) {
    const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
    const body = text.replace(/\\/g, "\\\\").replace(new RegExp(quote, "g"), "\\" + quote);
    return quote + body + quote;
  }

  /** repr() of an entry: 3, (3, 5) or 'same'. */
  function pyEntry(entry) {
    if (typeof entry === "string") return pyStr(entry);
    if (Array.isArray(entry)) return "(" + entry.join(", ") + (entry.length === 1 ? ",)" : ")");
    return String(entry);
  }

  const pyList = (entries) => "[" + entries.map(pyEntry).join(", ") + "]";

  // --- the text syntax ----------------------------------------------------------------

  /** An integer as typed: a number, or a BigInt past 2**53 (so a message can quote it). */
  function toInt(text) {
    const n = Number.parseInt(text, 10);
    return Number.isSafeInteger(n) ? n : BigInt(text.replace(/^\+/, ""));
  }

  /** Whether v is an integer >= minimum (a BigInt from a very long number counts). */
  const atLeast = (v, minimum) => (typeof v === "bigint" || Number.isSafeInteger(v)) && v >= minimum;

  /** rfmap.specs.parse_schedule: "1, 2x3, 4" -> [1, [2, 3], 4]. */
  function parseSchedule(text, name) {
    text = String(text);
    if (!text.trim()) throw new SpecError(`${name} must name at least one layer, got an empty schedule`);
    return text.split(",").map((part) => {
      const axes = part.trim().toLowerCase().split("x").map((a) => a.trim());
      if (!axes.every((a) => INT.test(a))) {
        throw new SpecError(`${name} must be comma-separated integers (use AxB for per-axis values), got ${pyStr(text)}`);
      }
      const values = axes.map(toInt);
      return values.length === 1 ? values[0] : values;
    });
  }

  /** rfmap.specs.parse_int_list: "3,5,7" -> [3, 5, 7]. */
  function parseIntList(text, name) {
    text = String(text);
    const parts = text.split(",").map((p) => p.trim());
    if (!text.trim() || !parts.every((p) => INT.test(p))) {
      throw new SpecError(`${name} must be comma-separated integers, got ${pyStr(text)}`);
    }
    return parts.map(toInt);
  }

  /** A padding: one mode name, or integer entries per layer ("1, 2x1, 0"), or names per layer. */
  function parsePadding(text) {
    text = String(text);
    const parts = text.split(",").map((p) => p.trim().toLowerCase());
    if (text.trim() && parts.every((p) => PADDINGS.includes(p))) return parts;
    try {
      return text.split(",").map((part) => (PADDINGS.includes(part.trim().toLowerCase()) ? part.trim().toLowerCase() : parseSchedule(part, "padding")[0]));
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      throw new SpecError(
        `padding must be same, valid, causal, or non-negative integers (one, or one per layer), got ${pyStr(text)}`
      );
    }
  }

  /** The input size: "21", "21, 33" (per axis) or "none" (unbounded). */
  function parseSize(text) {
    const t = String(text).trim().toLowerCase();
    if (t === "none" || t === "inf" || t === "unbounded") return null;
    const values = parseIntList(text, "size");
    return values.length === 1 ? values[0] : values;
  }

  /** The output unit: "" (the centre of the output) or one index per axis. */
  function parseUnit(text) {
    const t = String(text).trim().toLowerCase();
    if (t === "" || t === "centre" || t === "center") return null;
    return parseIntList(text, "unit");
  }

  /** An entry as the controls and the URL write it: 3, 3x5, same. */
  const entryText = (entry) => (Array.isArray(entry) ? entry.join("x") : String(entry));

  const sameEntry = (x, y) => entryText(x) === entryText(y);

  /** One entry when all layers agree (it applies to every layer), else one per layer. */
  function entriesText(entries, sep = ",") {
    return entries.every((e) => sameEntry(e, entries[0])) ? entryText(entries[0]) : entries.map(entryText).join(sep);
  }

  // --- rfmap.specs.conv_stack, with the same messages ------------------------------

  function perLayer(entries, n, name) {
    if (entries.length === 1) return Array(n).fill(entries[0]);
    if (entries.length !== n) {
      throw new SpecError(
        `${name} has ${entries.length} entries but the schedule has ${n} layers; give one value, or one per layer, got ${pyList(entries)}`
      );
    }
    return entries;
  }

  function perAxis(entry, ndim, name, layer, minimum) {
    const values = Array.isArray(entry) ? entry : Array(ndim).fill(entry);
    if (Array.isArray(entry) && entry.length !== ndim) {
      throw new SpecError(
        `${name} of layer ${layer + 1} has ${entry.length} axes, expected ${ndim}, got [${entry.join(", ")}]`
      );
    }
    for (const v of values) {
      if (!atLeast(v, minimum)) {
        const kind = minimum === 1 ? "positive integers" : "non-negative integers";
        throw new SpecError(`${name} must be ${kind}, got ${pyEntry(entry)} at layer ${layer + 1}`);
      }
    }
    return values.slice();
  }

  /** Validated layers {k, d, s, p} of a state (conv_stack, then the page's limits). */
  function buildLayers(s, limits) {
    const n = s.dil.length;
    if (!n) throw new SpecError("dilations must name at least one layer, got an empty schedule");
    if (![1, 2, 3].includes(s.ndim)) throw new SpecError(`ndim must be 1, 2 or 3, got ${s.ndim}`);
    const kernels = perLayer(s.ker, n, "kernel_size");
    const strides = perLayer(s.str, n, "stride");
    const paddings = perLayer(s.pad, n, "padding");
    const layers = [];
    for (let i = 0; i < n; i++) {
      const d = perAxis(s.dil[i], s.ndim, "dilations", i, 1);
      const k = perAxis(kernels[i], s.ndim, "kernel_size", i, 1);
      const st = perAxis(strides[i], s.ndim, "stride", i, 1);
      let p = paddings[i];
      if (typeof p === "string") {
        if (!PADDINGS.includes(p)) {
          throw new SpecError(`padding must be one of ${PADDINGS.join(", ")} or an integer, got ${pyStr(p)}`);
        }
        if (p === "same" && st.some((x) => x !== 1)) {
          throw new SpecError(
            `padding='same' needs stride 1 (as in PyTorch), got stride [${st.join(", ")}] at layer ${i + 1}; give an explicit integer padding`
          );
        }
      } else p = perAxis(p, s.ndim, "padding", i, 0);
      layers.push({ k, d, s: st, p });
    }
    checkLimits(layers, limits);
    return layers;
  }

  /** The page's limits (rfmap.html.explorer checks the same, in the same order). */
  function checkLimits(layers, limits) {
    if (layers.length > limits.max_layers) {
      throw new SpecError(`the explorer draws at most ${limits.max_layers} layers, got ${layers.length}`);
    }
    const checks = [
      ["d", "max_dilation", "dilations"],
      ["k", "max_kernel", "kernel sizes"],
      ["s", "max_stride", "strides"],
      ["p", "max_padding", "paddings"],
    ];
    layers.forEach((layer, i) => {
      for (const [key, limit, what] of checks) {
        if (typeof layer[key] === "string") continue;
        const over = layer[key].find((v) => v > limits[limit]);
        if (over !== undefined) {
          throw new SpecError(`the explorer takes ${what} up to ${limits[limit]}, got ${over} at layer ${i + 1}`);
        }
      }
    });
  }

  /** The size as a per-axis array (or null), checked as rfmap and the page check it. */
  function sizeArray(size, ndim, limits) {
    if (size === null) return null;
    const values = Array.isArray(size) ? size : Array(ndim).fill(size);
    if (Array.isArray(size) && size.length !== ndim) {
      throw new SpecError(`size has ${size.length} axes but the stack has ${ndim}: [${size.join(", ")}]`);
    }
    if (!values.every((v) => atLeast(v, 1))) {
      throw new SpecError(`size must be a positive integer, got ${Array.isArray(size) ? "[" + size.join(", ") + "]" : size}`);
    }
    const max = limits[`max_size_${ndim}d`];
    if (values.some((v) => v > max)) {
      throw new SpecError(`the explorer draws ${ndim}D maps up to size ${max}, got ${Array.isArray(size) ? "[" + size.join(", ") + "]" : size}`);
    }
    return values;
  }

  /** The unbounded map must fit the same limits. */
  function checkUnbounded(layers, ndim, limits) {
    const shape = Array.from({ length: ndim }, (_, a) => Engine.receptiveFieldSize(layers, a));
    const max = limits[`max_size_${ndim}d`];
    if (shape.some((v) => v > max)) {
      throw new SpecError(
        `the explorer draws ${ndim}D maps up to size ${max}; the unbounded map of this stack is [${shape.join(", ")}]`
      );
    }
  }

  /**
   * Everything rfmap's stack_path_map would refuse for the whole schedule, and the page's
   * limits.  Returns the validated layers of the whole schedule.
   */
  function validate(s, limits) {
    const layers = buildLayers(s, limits);
    const size = sizeArray(s.size, s.ndim, limits);
    if (size === null) {
      if (s.unit !== null) throw new SpecError("unit has no meaning for an unbounded map (size=None)");
      checkUnbounded(layers, s.ndim, limits);
    } else {
      const sizes = Engine.outputSizes(layers, size);
      if (s.unit !== null) {
        const out = sizes[sizes.length - 1];
        if (s.unit.length !== s.ndim) {
          throw new SpecError(`unit needs ${s.ndim} indices for a ${s.ndim}D map, got [${s.unit.join(", ")}]`);
        }
        if (s.unit.some((u, a) => u < 0 || u >= out[a])) {
          throw new SpecError(`unit [${s.unit.join(", ")}] is outside the output grid of shape [${out.join(", ")}]`);
        }
      }
    }
    if (!atLeast(s.depth, 1) || s.depth > layers.length) {
      throw new SpecError(`depth must be between 1 and ${layers.length}, got ${s.depth}`);
    }
    return layers;
  }

  /** What the view shows: the first `depth` layers (the unit kept where the grid is kept). */
  function viewSpec(s, layers) {
    const shown = layers.slice(0, s.depth);
    const sameGrid = layers.every((l) => l.s.every((x) => x === 1));
    return {
      layers: shown,
      ndim: s.ndim,
      size: s.size === null ? null : Array.isArray(s.size) ? s.size.slice() : Array(s.ndim).fill(s.size),
      unit: s.unit !== null && (sameGrid || s.depth === layers.length) ? s.unit.slice() : null,
    };
  }

  // --- the URL fragment ------------------------------------------------------------------

  /** The canonical fragment of a state (rfmap.html.ExplorerPage.url_fragment writes the same). */
  function stateHash(s) {
    const parts = ["d=" + s.dil.map(entryText).join(","), "k=" + entriesText(s.ker)];
    if (!s.str.every((e) => sameEntry(e, 1))) parts.push("s=" + entriesText(s.str));
    parts.push(
      "n=" + (s.size === null ? "none" : entryText(s.size).replace(/x/g, ",")),
      "dim=" + s.ndim,
      "pad=" + entriesText(s.pad)
    );
    if (s.unit !== null) parts.push("u=" + s.unit.join(","));
    parts.push("scale=" + s.scale);
    if (s.depth !== s.dil.length) parts.push("depth=" + s.depth);
    if (s.slice !== null && s.ndim === 3) parts.push(`slice=${s.slice.axis},${s.slice.index}`);
    return "#" + parts.join("&");
  }

  const expand = (entries, n) => (entries.length === 1 ? Array(n).fill(entries[0]) : entries.slice());
  const uniform = (entries) => (entries.every((e) => sameEntry(e, entries[0])) ? [entries[0]] : entries.slice());

  /** A state from URL parameters over `base`; throws SpecError for anything invalid. */
  function parseState(params, base, limits) {
    const s = Object.assign({}, base);
    if (params.has("d")) s.dil = parseSchedule(params.get("d"), "dilations");
    s.ker = params.has("k") ? parseSchedule(params.get("k"), "kernel_size") : uniform(base.ker);
    s.str = params.has("s") ? parseSchedule(params.get("s"), "stride") : params.has("d") ? [1] : uniform(base.str);
    s.pad = params.has("pad") ? parsePadding(params.get("pad")) : uniform(base.pad);
    if (params.has("dim")) {
      const nd = params.get("dim");
      if (!["1", "2", "3"].includes(nd)) throw new SpecError(`ndim must be 1, 2 or 3, got ${pyStr(nd)}`);
      s.ndim = Number(nd);
    }
    if (params.has("n")) s.size = parseSize(params.get("n"));
    s.unit = params.has("u") ? parseUnit(params.get("u")) : null;
    if (params.has("scale")) {
      const sc = params.get("scale");
      if (!SCALES.includes(sc)) throw new SpecError(`scale must be one of ${SCALES.join(", ")}, got ${pyStr(sc)}`);
      s.scale = sc;
    }
    s.depth = params.has("depth") ? parseIntList(params.get("depth"), "depth")[0] : s.dil.length;
    s.slice = null;
    if (params.has("slice")) {
      const v = parseIntList(params.get("slice"), "slice");
      if (v.length !== 2) throw new SpecError(`slice must be AXIS,INDEX, got ${pyStr(params.get("slice"))}`);
      s.slice = { axis: v[0], index: v[1] };
    }
    const layers = validate(s, limits);
    const n = s.dil.length;
    Object.assign(s, { ker: expand(s.ker, n), str: expand(s.str, n), pad: expand(s.pad, n) });
    if (s.slice !== null) checkSlice(s, layers);
    return s;
  }

  /** A slice must name an axis of a 3D map and an index inside it. */
  function checkSlice(s, layers) {
    if (s.ndim !== 3) throw new SpecError(`slice is for 3D maps, got a ${s.ndim}D map`);
    const { axis, index } = s.slice;
    if (axis < 0 || axis > 2) throw new SpecError(`slice axis must be 0, 1 or 2, got ${axis}`);
    const spec = viewSpec(s, layers);
    const n = spec.size === null ? Engine.receptiveFieldSize(spec.layers, axis) : spec.size[axis];
    if (index < 0 || index >= n) throw new SpecError(`slice index must be between 0 and ${n - 1}, got ${index}`);
  }

  /** The state the page was written with (rfmap.html.ExplorerPage.to_dict()["state"]). */
  function initialState(st) {
    const n = st.dilations.length;
    return {
      dil: st.dilations.slice(),
      ker: st.kernels.slice(),
      str: st.strides.slice(),
      pad: typeof st.padding === "string" ? Array(n).fill(st.padding) : st.padding.slice(),
      ndim: st.ndim,
      size: st.size,
      unit: st.unit,
      scale: st.scale,
      depth: st.depth == null ? n : st.depth,
      slice: st.slice == null ? null : { axis: st.slice[0], index: st.slice[1] },
    };
  }

  /** A preset's state (rfmap.html.Preset.to_dict()): per-layer lists, or one value for all. */
  function presetState(p) {
    const n = p.dilations.length;
    return {
      dil: p.dilations.slice(),
      ker: Array.isArray(p.kernel) ? p.kernel.slice() : Array(n).fill(p.kernel),
      str: Array.isArray(p.stride) ? p.stride.slice() : Array(n).fill(p.stride),
      pad: Array.isArray(p.padding) ? p.padding.slice() : Array(n).fill(p.padding),
      ndim: p.ndim,
      size: p.size,
      unit: null,
      scale: "auto",
      depth: p.depth == null ? n : p.depth,
      slice: null,
    };
  }

  /** Whether two states show the same schedule and input (the preset menu's question). */
  function sameSchedule(x, y) {
    return (
      x.ndim === y.ndim &&
      entryText(x.size) === entryText(y.size) &&
      x.dil.length === y.dil.length &&
      ["dil", "ker", "str", "pad"].every((key) => x[key].every((e, i) => sameEntry(e, y[key][i])))
    );
  }

  return {
    PADDINGS,
    SCALES,
    pyStr,
    parseSchedule,
    parseIntList,
    parsePadding,
    parseSize,
    parseUnit,
    entryText,
    entriesText,
    sameEntry,
    buildLayers,
    validate,
    viewSpec,
    stateHash,
    parseState,
    checkSlice,
    initialState,
    expand,
    presetState,
    sameSchedule,
  };
})();
