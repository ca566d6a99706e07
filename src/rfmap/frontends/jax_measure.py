"""Receptive fields of jaxprs measured with the gradient, in float64 (needs jax).

A plain gradient misses input positions: ReLUs that are off, max-pools that pass one
element per window, weights that cancel.  So the jaxpr is run by an interpreter that
*linearises* it: every value that depends on the input is float64 and positive, and

* element-wise primitives (activations, ``max``, ``sub``, ``div``, comparisons,
  ``select_n``, ``convert_element_type``...) return the sum of their operands that
  depend on the input, and constants (weights, biases, masks) drop out;
* reductions and windowed reductions (``reduce_max``, ``reduce_window_max``...) become
  sums with the same geometry, cumulative ones ``cumsum``, sorts a sum over the sorted
  dim;
* a convolution's constant kernel becomes ``1/fan_in`` everywhere, a contraction's
  constant operand its absolute value over the contracted size (a resize matrix keeps
  its zeros); learned weights, unknown here, are ones;
* call-like primitives (``jit``, ``custom_jvp_call``, ``remat``...) are interpreted in
  turn; any other primitive runs as it is on its float64 operands.

Every Jacobian entry is then a sum of products of positive numbers, so an input
position has a non-zero gradient exactly when some path links it to the unit; it is
the independent check of :mod:`rfmap.frontends.jax`, and its fallback for primitives
without a rule (:func:`measure_eqn`, one operation at a time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Literal

from ..builder import Part, Reduce, Relation, Slide, TensorRef, plain_layout
from ..errors import InvalidSpecError, MapTooLargeError, ModelError, RFMapError
from ..measure import MeasuredRF, _mask_box
from ..receptive import (
    ReceptiveField,
    _normalise_unit,
    measured_receptive_field,
)
from ..windows import Table
from .jax_rules import CALLS, ELEMENTWISE, IDENTITIES, REDUCTIONS, sub_jaxpr

if TYPE_CHECKING:
    from .jax import JaxContext, JaxModel, TracedJax

__all__ = ["Linearised", "measure_eqn", "measure_unit", "measured_rf", "unit_mask"]

#: Most output units measured for one operation without a rule.
_MAX_UNITS = 4096
#: Most elements (float64) a measurement allocates per tensor: 2 GiB.
MAX_ELEMENTS = 1 << 28


def _floating(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating))


def _f64(value: Any) -> Any:
    return jnp.asarray(value, dtype=jnp.float64)


def _placeholder(aval: Any) -> Any:
    """A value standing for an unknown constant (a weight): ones, in its dtype."""
    dtype = getattr(aval, "dtype", None)
    shape = tuple(getattr(aval, "shape", ()))
    if dtype is None:
        return None
    try:
        return np.ones(shape, dtype=dtype)
    except TypeError:  # PRNG keys and other extended dtypes: never read when linearised
        return None


# -- one operation without a rule --------------------------------------------------------


def measure_eqn(ctx: JaxContext, eqn: Any, refs: Sequence[TensorRef]) -> list[TensorRef]:
    """Measure the windows of one equation with the gradient and add its node.

    Its operands that depend on the input must be plain feature maps with the same
    spatial dims, and its one result must keep them: per output axis and unit, the
    positions of each operand with a non-zero gradient (a :class:`~rfmap.windows.Table`).
    Raises ``_GiveUp`` otherwise.
    """
    from .jax import _GiveUp

    deps = [i for i, r in enumerate(refs) if not r.constant]
    if len(eqn.outvars) != 1:
        raise _GiveUp("it has several results")
    out_aval = eqn.outvars[0].aval
    shape = tuple(int(n) for n in out_aval.shape)
    if not _floating(out_aval.dtype):
        raise _GiveUp("its result is not floating-point")
    dims = [refs[i].spatial_dims() for i in deps]
    first = dims[0]
    if first is None or any(d != first for d in dims):
        raise _GiveUp("its operands are not feature maps with the same spatial dims")
    if any(
        len(refs[i].shape) != len(shape) or not _floating(eqn.invars[i].aval.dtype) for i in deps
    ):
        raise _GiveUp("its result and its operands differ in rank or are not floating-point")
    if sum(shape[d] for d in first.values()) > _MAX_UNITS:
        raise _GiveUp(f"it has more than {_MAX_UNITS} output units to measure")
    elements = sum(math.prod(getattr(a.aval, "shape", ())) for a in (*eqn.invars, *eqn.outvars))
    if elements > MAX_ELEMENTS:
        raise _GiveUp(f"its operands have more than {MAX_ELEMENTS} elements")
    args: list[Any] = []
    for i, atom in enumerate(eqn.invars):
        if i in deps:
            args.append(np.ones(atom.aval.shape, dtype=np.float64))
        else:
            value = ctx.value(atom)
            args.append(value if value is not None else _placeholder(atom.aval))
    windows: list[dict[int, list[tuple[int, ...]]]] = [{} for _ in deps]
    try:
        with jax.enable_x64(True):

            def call(*values: Any) -> Any:
                full = list(args)
                for i, v in zip(deps, values, strict=True):
                    full[i] = v
                return eqn.primitive.bind(*full, **eqn.params)

            out, vjp = jax.vjp(call, *(args[i] for i in deps))
            for axis, d in first.items():
                for k in range(len(deps)):
                    windows[k][axis] = []
                for u in range(shape[d]):
                    index = (slice(None),) * d + (u,)
                    cot = jnp.zeros(out.shape, out.dtype).at[index].set(1)
                    grads = vjp(cot)
                    for k, grad in enumerate(grads):
                        hit = np.asarray(grad) != 0
                        other = tuple(a for a in range(hit.ndim) if a != d)
                        found = np.flatnonzero(hit.any(axis=other) if other else hit)
                        windows[k][axis].append(tuple(int(h) for h in found))
    except RFMapError:
        raise
    except Exception as exc:
        raise _GiveUp(f"measuring it failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    operands: list[tuple[TensorRef, Sequence[Relation]]] = []
    for k, i in enumerate(deps):
        by_dim = {d: a for a, d in first.items()}
        rel: list[Relation] = [
            Slide(d, Table(tuple(windows[k][by_dim[d]]))) if d in by_dim else Reduce()
            for d in range(len(shape))
        ]
        operands.append((refs[i], rel))
    return [ctx.builder.apply(ctx.name, eqn.primitive.name, shape, operands, measured=True)]


# -- the linearised interpreter ---------------------------------------------------------


class _Results:
    """The results of a constant equation, computed once, when first read."""

    def __init__(self, eqn: Any, vals: list[Any]) -> None:
        self.eqn = eqn
        self.vals = vals
        self.outs: list[Any] | None = None

    def get(self, k: int) -> Any:
        if self.outs is None:
            args = [_force(v) for v in self.vals]
            with jax.ensure_compile_time_eval():  # values, even while jit traces
                out = self.eqn.primitive.bind(*args, **self.eqn.params)
            self.outs = list(out) if self.eqn.primitive.multiple_results else [out]
            self.vals = []
        return self.outs[k]


class _Lazy:
    """A constant value: its shape and dtype now, its value when a rule needs it."""

    def __init__(self, results: _Results, k: int) -> None:
        aval = results.eqn.outvars[k].aval
        self.results = results
        self.k = k
        self.shape = tuple(getattr(aval, "shape", ()))
        self.dtype = getattr(aval, "dtype", None)

    def value(self) -> Any:
        return self.results.get(self.k)


def _force(value: Any) -> Any:
    return value.value() if isinstance(value, _Lazy) else value


class Linearised:
    """The linearised jaxpr as a function of its last input (see the module docstring).

    ``capture`` (an equation path and result index) or ``scope`` (a module path, whose
    last result is taken) selects an intermediate value; default: the result
    ``output`` of the jaxpr.
    """

    def __init__(
        self,
        closed: ClosedJaxpr,
        *,
        output: int | None = None,
        capture: tuple[tuple[int, ...], int] | None = None,
        scope: str | None = None,
        scope_name: Any = None,
    ) -> None:
        self.closed = closed
        self.output = output
        self.capture = capture
        self.scope = scope
        self.scope_name = scope_name
        self.captured: Any = None
        self.args = [_placeholder(v.aval) for v in closed.jaxpr.invars[:-1]]

    def __call__(self, x: Any) -> Any:
        self.captured = None
        jaxpr = self.closed.jaxpr
        deps = [False] * (len(jaxpr.invars) - 1) + [True]
        outs, ds = self._eval(jaxpr, self.closed.consts, [*self.args, x], deps, (), ())
        if self.capture is not None or self.scope is not None:
            captured, self.captured = self.captured, None
            if captured is None:
                what = "layer" if self.scope is None else f"module {self.scope!r}"
                raise InvalidSpecError(f"the requested {what} is not computed from the input")
            return captured
        index = (
            self.output
            if self.output is not None
            else next((k for k, d in enumerate(ds) if d), None)
        )
        if index is None:
            raise ModelError("the model's output does not depend on its input")
        return outs[index]

    # -- evaluation ------------------------------------------------------------------
    def _eval(
        self,
        jaxpr: Any,
        consts: Sequence[Any],
        args: Sequence[Any],
        deps: Sequence[bool],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[Any], list[bool]]:
        env: dict[Any, Any] = {}
        dep: dict[Any, bool] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = c
        for v, a, d in zip(jaxpr.invars, args, deps, strict=True):
            env[v] = a
            dep[v] = d

        def read(atom: Any) -> Any:
            return atom.val if isinstance(atom, Literal) else env[atom]

        def is_dep(atom: Any) -> bool:
            return not isinstance(atom, Literal) and dep.get(atom, False)

        for i, eqn in enumerate(jaxpr.eqns):
            vals = [read(a) for a in eqn.invars]
            ds = [is_dep(a) for a in eqn.invars]
            here = (*stack, *_names(eqn))
            if not any(ds):  # a constant, computed only if a rule reads its value
                results = _Results(eqn, vals)
                outs = [_Lazy(results, k) for k in range(len(eqn.outvars))]
                odeps = [False] * len(eqn.outvars)
            else:
                outs, odeps = self._linear(eqn, vals, ds, (*path, i), here)
            for k, (v, o, d) in enumerate(zip(eqn.outvars, outs, odeps, strict=True)):
                env[v] = o
                dep[v] = d
                if not d:
                    continue
                if self.capture == ((*path, i), k):
                    self.captured = o
                if self.scope is not None and self.scope_name is not None:
                    names = {self.scope_name(here[:j]) for j in range(1, len(here) + 1)}
                    if self.scope in names:
                        self.captured = o
        return [read(a) for a in jaxpr.outvars], [is_dep(a) for a in jaxpr.outvars]

    def _linear(
        self,
        eqn: Any,
        vals: list[Any],
        ds: list[bool],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[Any], list[bool]]:
        name = eqn.primitive.name
        p = eqn.params
        shapes = [tuple(v.aval.shape) for v in eqn.outvars]
        dvals = [_f64(v) for v, d in zip(vals, ds, strict=True) if d]
        n = len(shapes)
        if name in CALLS:
            sub = sub_jaxpr(eqn)
            inner, consts = (sub.jaxpr, sub.consts) if isinstance(sub, ClosedJaxpr) else (sub, ())
            return self._eval(inner, consts, vals, ds, path, stack)
        if name == "cond":
            return self._cond(eqn, vals, ds, path, stack)
        if name == "scan":
            return self._scan(eqn, vals, ds, path, stack)
        if name == "while":
            return self._while(eqn, vals, ds, path, stack)
        if name in ELEMENTWISE:
            total = sum(jnp.broadcast_to(v, shapes[0]) for v in dvals)
            return [total], [True]
        if name in IDENTITIES:
            return [_f64(v) if d else v for v, d in zip(vals, ds, strict=True)], list(ds)
        if name in REDUCTIONS:
            return [jnp.sum(dvals[0], axis=tuple(p["axes"]))], [True]
        if name == "reduce":
            total = sum(v for v, d in zip(vals[:n], ds[:n], strict=True) if d)
            out = jnp.sum(_f64(total), axis=tuple(p["dimensions"]))
            return [out] * n, [True] * n
        if name in ("reduce_window_max", "reduce_window_min", "reduce_window_sum", "reduce_window"):
            total = _f64(sum(v for v, d in zip(vals[:n], ds[:n], strict=True) if d))
            out = lax.reduce_window(
                total,
                0.0,
                lax.add,
                p["window_dimensions"],
                p["window_strides"],
                p["padding"],
                p.get("base_dilation"),
                p.get("window_dilation"),
            )
            return [out] * n, [True] * n
        if name in ("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"):
            return [lax.cumsum(dvals[0], int(p["axis"]), bool(p.get("reverse")))], [True]
        if name == "sort":
            dim = int(p["dimension"])
            total = sum(dvals)
            out = jnp.broadcast_to(jnp.sum(total, axis=dim, keepdims=True), shapes[0])
            return [out] * n, [True] * n
        if name == "top_k":
            axis = int(p.get("axis", -1))
            total = jnp.sum(dvals[0], axis=axis, keepdims=True)
            return [jnp.broadcast_to(total, s) for s in shapes], [True] * n
        if name == "conv_general_dilated":
            lhs, rhs = vals
            if not ds[1]:
                rhs_spec = p["dimension_numbers"].rhs_spec
                fan = math.prod(np.shape(rhs)[d] for d in rhs_spec[1:])
                rhs = jnp.full(np.shape(rhs), 1.0 / max(fan, 1), dtype=jnp.float64)
            if not ds[0]:
                lhs = jnp.ones(np.shape(lhs), dtype=jnp.float64)
            params = dict(p, preferred_element_type=None)
            return [eqn.primitive.bind(_f64(lhs), _f64(rhs), **params)], [True]
        if name == "dot_general":
            (lc, rc), _ = p["dimension_numbers"]
            operands = []
            for v, d, contract in zip(map(_force, vals), ds, (lc, rc), strict=True):
                if d:
                    operands.append(_f64(v))
                else:
                    size = math.prod(np.shape(v)[c] for c in contract)
                    operands.append(jnp.abs(_f64(v)) / max(size, 1))
            params = dict(p, preferred_element_type=None)
            return [eqn.primitive.bind(*operands, **params)], [True]
        # anything else runs as it is, on float64 operands
        vals = [_force(v) for v in vals]
        cast = [
            _f64(v) if d or _floating(getattr(v, "dtype", np.int32)) else v
            for v, d in zip(vals, ds, strict=True)
        ]
        outs = eqn.primitive.bind(*cast, **p)
        outs = outs if eqn.primitive.multiple_results else [outs]
        return [_f64(o) for o in outs], [True] * len(outs)

    def _scan(
        self,
        eqn: Any,
        vals: list[Any],
        ds: list[bool],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[Any], list[bool]]:
        p = eqn.params
        length, nc, ncarry = int(p["length"]), int(p["num_consts"]), int(p["num_carry"])
        body = p["jaxpr"]
        consts, carry, xs = vals[:nc], vals[nc : nc + ncarry], vals[nc + ncarry :]
        dconsts, dcarry, dxs = ds[:nc], ds[nc : nc + ncarry], ds[nc + ncarry :]
        steps = range(length - 1, -1, -1) if p.get("reverse") else range(length)
        ys: list[list[Any]] = []
        ydeps: list[list[bool]] = []
        for i in steps:
            outs, odeps = self._eval(
                body.jaxpr,
                body.consts,
                [*consts, *carry, *(_force(x)[i] for x in xs)],
                [*dconsts, *dcarry, *dxs],
                path,
                stack,
            )
            carry, dcarry = outs[:ncarry], odeps[:ncarry]
            ys.append(outs[ncarry:])
            ydeps.append(odeps[ncarry:])
        if p.get("reverse"):
            ys.reverse()
            ydeps.reverse()
        stacked = [_stacked(ys, ydeps, k) for k in range(len(eqn.outvars) - ncarry)]
        return [*carry, *(v for v, _ in stacked)], [*dcarry, *(d for _, d in stacked)]

    def _while(
        self,
        eqn: Any,
        vals: list[Any],
        ds: list[bool],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[Any], list[bool]]:
        p = eqn.params
        cn, bn = int(p["cond_nconsts"]), int(p["body_nconsts"])
        cond, body = p["cond_jaxpr"], p["body_jaxpr"]
        cconsts, bconsts, carry = vals[:cn], vals[cn : cn + bn], vals[cn + bn :]
        dc, db, dcarry = ds[:cn], ds[cn : cn + bn], ds[cn + bn :]
        while True:
            (test,), (dtest,) = self._eval(
                cond.jaxpr, cond.consts, [*cconsts, *carry], [*dc, *dcarry], path, stack
            )
            if dtest:
                raise ModelError("a while loop's condition depends on the input")
            if not bool(np.asarray(_force(test))):
                return list(carry), list(dcarry)
            carry, dcarry = self._eval(
                body.jaxpr, body.consts, [*bconsts, *carry], [*db, *dcarry], path, stack
            )

    def _cond(
        self,
        eqn: Any,
        vals: list[Any],
        ds: list[bool],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[Any], list[bool]]:
        branches = eqn.params["branches"]
        if ds[0]:
            chosen = list(branches)
        else:
            index = int(np.asarray(_force(vals[0])).reshape(()))
            chosen = [branches[min(max(index, 0), len(branches) - 1)]]
        results = [self._eval(b.jaxpr, b.consts, vals[1:], ds[1:], path, stack) for b in chosen]
        outs: list[Any] = []
        deps: list[bool] = []
        for k in range(len(eqn.outvars)):
            dependent = ds[0] or any(r_ds[k] for _, r_ds in results)
            if dependent:  # any branch may run: the union of their paths
                outs.append(sum(_f64(_force(r[k])) for r, _ in results))
            else:
                outs.append(results[0][0][k])
            deps.append(dependent)
        return outs, deps


def _stacked(steps: list[list[Any]], deps: list[list[bool]], k: int) -> tuple[Any, bool]:
    dependent = any(d[k] for d in deps)
    if dependent:
        return jnp.stack([_f64(_force(step[k])) for step in steps]), True
    return jnp.stack([jnp.asarray(_force(step[k])) for step in steps]), False


def _names(eqn: Any) -> list[str]:
    text = str(getattr(eqn.source_info, "name_stack", "") or "")
    return [part for part in text.split("/") if part]


# -- units of a traced tensor -----------------------------------------------------------


def unit_mask(
    ref: TensorRef,
    extents: dict[str, tuple[int, ...]],
    node: str,
    grid: tuple[int, ...],
    unit: Sequence[int],
) -> np.ndarray:
    """The elements of tensor ``ref`` that are unit ``unit`` of ``node`` (whose grid is
    ``grid``): those of its parts of that node (all its parts if none is), per axis at
    the unit's position, or anywhere along an axis the part does not resolve."""
    mask = np.zeros(ref.shape, dtype=bool)
    parts = [p for p in ref.parts if p.node == node] or list(ref.parts)
    for part in parts:
        ext = extents[part.node]
        sizes = [hi - lo for lo, hi in part.region]
        keep = np.ones(sizes, dtype=bool)
        for a, u in enumerate(unit):
            if ext[a] != grid[a]:
                continue  # a part broadcast along this axis, or read whole
            total = np.zeros(sizes, dtype=np.int64)
            for d, dim in enumerate(part.layout):
                inner = sizes[d]
                index = np.arange(sizes[d], dtype=np.int64)
                contribution = np.zeros(sizes[d], dtype=np.int64)
                for axis, n, step in dim:
                    inner //= n
                    if axis == a:
                        contribution += (index // inner) % n * step
                shape = [1] * len(sizes)
                shape[d] = sizes[d]
                total = total + contribution.reshape(shape)
            keep &= total == u
        mask[tuple(slice(lo, hi) for lo, hi in part.region)] |= keep
    return mask


# -- measurements -----------------------------------------------------------------------


class _Gradient:
    """One linearised forward pass, ready to backpropagate any number of units."""

    def __init__(self, jm: JaxModel, traced: TracedJax | None, layer: str | None) -> None:
        from .jax import _scope_name

        self.jm = jm
        closed = traced.closed if traced is not None else jm.jaxpr()
        assert closed is not None
        elements = _largest(closed.jaxpr)
        if elements > MAX_ELEMENTS:
            raise MapTooLargeError(
                f"measuring with the gradient needs float64 arrays of {elements} elements "
                f"(at most {MAX_ELEMENTS}); use a smaller --input-size"
            )
        self.layer = layer
        if traced is not None:
            capture, node = traced.capture(layer)
            self.node = node
            self.grid = traced.graph.nodes[node].extents
            self.extents = {n.name: n.extents for n in traced.graph.nodes.values()}
            ref = traced.outputs[0] if capture is None else capture.ref
            self.ref: TensorRef | None = ref
            lin = Linearised(
                closed,
                output=traced.output_index,
                capture=None if capture is None else (capture.path, capture.index),
            )
        else:
            self.node = layer or "output"
            lin = Linearised(
                closed,
                scope=None if layer is None else layer.replace("/", "."),
                scope_name=lambda stack: _scope_name(stack, jm.root, jm.scopes),
            )
            self.ref = None
        x = np.ones(jm.input_shape, dtype=np.float64)
        try:
            with jax.enable_x64(True):
                # one compiled forward (constants computed as it is traced), one backward
                out, self._vjp = jax.vjp(jax.jit(lin), jnp.asarray(x))
        except RFMapError:
            raise
        except Exception as exc:
            where = f" up to layer {layer!r}" if layer else ""
            raise ModelError(
                f"the linearised model{where} failed on input shape {list(jm.input_shape)}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        self.shape = tuple(out.shape)
        self.dtype = out.dtype
        if not math.prod(self.shape):
            raise ModelError(f"{self.node!r} has no elements (shape {list(self.shape)})")
        if traced is None:
            # no analysis: an output of the input's rank keeps its spatial dims
            self.grid = (1,) * jm.ndim
            if len(self.shape) == len(jm.input_shape):
                axes: list[int | None] = [None] * len(self.shape)
                for a, d in enumerate(jm.spatial_dims):
                    axes[d] = a
                region = tuple((0, n) for n in self.shape)
                part = Part(self.node, region, plain_layout(self.shape, axes))
                self.ref = TensorRef(self.shape, (part,))
                self.grid = tuple(self.shape[d] for d in jm.spatial_dims)
            self.extents = {self.node: self.grid}

    def support(self, unit: Sequence[int] | None) -> np.ndarray:
        """Boolean map (input spatial shape) of positions with a non-zero gradient."""
        if self.ref is None or unit is None:
            cot = np.ones(self.shape, dtype=bool)
        else:
            cot = unit_mask(self.ref, self.extents, self.node, self.grid, unit)
        with jax.enable_x64(True):
            (grad,) = self._vjp(jnp.asarray(cot, dtype=self.dtype))
        hit = np.asarray(grad) != 0
        other = tuple(d for d in range(hit.ndim) if d not in self.jm.spatial_dims)
        mask = hit.any(axis=other) if other else hit
        return mask

    def box(self, unit: Sequence[int] | None) -> tuple[tuple[int, int], ...]:
        return _mask_box(self.support(unit))

    @property
    def spatial(self) -> bool:
        return self.ref is not None and any(n > 1 for n in self.grid)


def _largest(jaxpr: Any) -> int:
    """The most elements of any value of ``jaxpr`` and of its sub-jaxprs."""
    from jax.extend.core import jaxprs_in_params

    values = [*jaxpr.invars, *jaxpr.outvars]
    most = 0
    for eqn in jaxpr.eqns:
        values += eqn.outvars
        for sub in jaxprs_in_params(eqn.params):
            most = max(most, _largest(sub))
    for v in values:
        most = max(most, math.prod(getattr(getattr(v, "aval", None), "shape", ())))
    return most


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


def gradient(jm: JaxModel, layer: str | None) -> _Gradient:
    """The prepared gradient of ``layer`` (cached on the model): units and layers as the
    analysis names them when the model was traced."""
    traced = next(iter(jm._traced.values()), None)
    key = (layer, traced is not None)
    if key not in jm._gradients:
        jm._gradients[key] = _Gradient(jm, traced, layer)
    return jm._gradients[key]


def measure_unit(jm: JaxModel, unit: Sequence[int] | None, layer: str | None) -> MeasuredRF:
    """The gradient support of ``unit`` of ``layer`` (default: the output's centre unit)."""
    gradient_ = gradient(jm, layer)
    units = _normalise_unit(unit, gradient_.grid, gradient_.node) if gradient_.spatial else ()
    mask = gradient_.support(units if gradient_.spatial else None)
    return MeasuredRF(
        node=gradient_.node,
        input_size=(jm.input_shape[_channel_dim(jm)], *jm.input_size),
        grid=gradient_.grid if gradient_.spatial else (),
        unit=units,
        box=_mask_box(mask),
        mask=mask,
    )


def _channel_dim(jm: JaxModel) -> int:
    return 1 if jm.spatial_dims[0] == 2 else len(jm.input_shape) - 1


def measured_rf(
    jm: JaxModel, traced: TracedJax | None, layer: str | None, *, reason: str = ""
) -> ReceptiveField:
    """A :class:`~rfmap.receptive.ReceptiveField` measured entirely with the gradient.

    As :func:`rfmap.measure.measure_model_rf`: the centre unit and a neighbour per axis
    give the receptive field, the stride and the padding; a box that touches the input
    border gives lower bounds, which ``notes`` says.
    """
    g = gradient(jm, layer) if traced is None else _Gradient(jm, traced, layer)
    return measured_receptive_field(
        g.node,
        jm.input_size,
        g.shape,
        tuple(g.grid) if g.spatial else (),
        g.box,
        how="with the gradient",
        reason=reason,
    )
