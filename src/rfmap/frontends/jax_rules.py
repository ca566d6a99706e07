"""Rules that map jaxpr primitives onto the tensor algebra of :mod:`rfmap.builder` (needs jax).

One small function per primitive, looked up in a registry keyed by the primitive (the
``jax.extend.core.Primitive`` object, or its name).  A rule receives a
:class:`~rfmap.frontends.jax.JaxContext` (the builder, the equation, constant values),
the equation and one :class:`~rfmap.builder.TensorRef` per operand, and returns the
``TensorRef`` of each result.  It raises :class:`~rfmap.builder.Unsupported` for a case
it cannot express; the operation is then measured with the gradient (``method="auto"``)
or reported (``method="analytic"``).

Register a rule for your own primitive (or override a built-in one)::

    from rfmap.builder import Same, Slide
    from rfmap.frontends.jax import register_jax_rule
    from rfmap.windows import Conv

    @register_jax_rule(my_blur_p)           # reads positions u-1, u, u+1 of the last axis
    def _blur(ctx, eqn, ins):
        (x,) = ins
        rank = len(x.shape)
        rel = [Same(d) for d in range(rank - 1)] + [Slide(rank - 1, Conv(3, 1, 1, -1))]
        return ctx.builder.apply(ctx.name, "blur", x.shape, [(x, rel)])

This module holds the registry and the rules of element-wise operations, reductions,
sorting, layout changes (reshapes, transposes, broadcasts, slices, static dynamic
slices), and of call-like primitives, whose sub-jaxprs are traced in turn (``jit``,
``custom_jvp_call``, ``custom_vjp_call``, ``remat``, ``cond``; ``scan`` and ``while``
loops with a known trip count are unrolled).  :mod:`rfmap.frontends.jax_windows` holds
the rules of operations that read neighbourhoods (convolutions, pools, paddings...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..builder import Mix, Reduce, Relation, Same, TensorRef, Unsupported
from ..windows import PadMode

if TYPE_CHECKING:
    from .jax import JaxContext

__all__ = [
    "CALLS",
    "ELEMENTWISE",
    "IDENTITIES",
    "JAX_RULES",
    "MAX_UNROLL",
    "REDUCTIONS",
    "JaxRule",
    "register_jax_rule",
    "rule_for",
    "short_name",
    "sub_jaxpr",
]

#: A rule: ``rule(ctx, eqn, ins)`` returns the TensorRef of each result (or of the one result).
JaxRule = Callable[["JaxContext", Any, list[TensorRef]], Union[TensorRef, Sequence[TensorRef]]]  # noqa: UP007

#: The registry: a jax Primitive object, or a primitive's name, to its rule.
JAX_RULES: dict[Any, JaxRule] = {}


def register_jax_rule(*primitives: Any) -> Callable[[JaxRule], JaxRule]:
    """Register the decorated rule for each of ``primitives`` (Primitive objects or names).

    A rule registered for a Primitive object takes precedence over one registered for
    its name; a later registration replaces an earlier one.
    """
    if not primitives:
        raise TypeError("register_jax_rule needs at least one primitive")

    def decorate(rule: JaxRule) -> JaxRule:
        for primitive in primitives:
            JAX_RULES[primitive] = rule
        return rule

    return decorate


def rule_for(primitive: Any) -> JaxRule | None:
    """The rule of ``primitive`` (by object first, then by name), or None."""
    try:
        rule = JAX_RULES.get(primitive)
    except TypeError:  # an unhashable primitive
        rule = None
    return rule if rule is not None else JAX_RULES.get(getattr(primitive, "name", None))


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Primitives that act element by element (operands of the result's shape, or scalars):
#: every result element reads the same position of every operand.
ELEMENTWISE = _words(
    """
    abs acos acosh add add_any and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt
    ceil clamp clz complex conj convert_element_type copy copy_p cos cosh digamma div eq
    eq_to erf erf_inv erfc exp exp2 expm1 floor ge gt igamma igamma_grad_a igammac imag
    integer_pow is_finite le le_to lgamma log log1p logistic lt lt_to max min mul mulhi ne
    neg nextafter not or polygamma population_count pow random_gamma_grad real
    reduce_precision regularized_incomplete_beta rem round rsqrt select_n shift_left
    shift_right_arithmetic shift_right_logical sign sin sinh sqrt square stop_gradient sub
    tan tanh xor zeta
    """
)

#: Primitives whose results are their operands (sharding and scheduling annotations).
IDENTITIES = _words(
    "optimization_barrier device_put sharding_constraint mesh_cast reshard pvary dce_sink"
)

#: Reductions over ``axes``.
REDUCTIONS = _words(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax argmin"
)

#: Primitives that call a sub-jaxpr once with their operands (traced in turn).
CALLS = _words(
    """
    jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr
    remat remat2 checkpoint
    """
)

#: Short names for the table (node names are ``scope.short``).
_SHORT = {
    "conv_general_dilated": "conv",
    "dot_general": "dot",
    "reduce_window_max": "max_pool",
    "reduce_window_min": "min_pool",
    "reduce_window_sum": "sum_pool",
    "reduce_window": "pool",
    "concatenate": "concat",
    "broadcast_in_dim": "broadcast",
    "dynamic_slice": "slice",
    "dynamic_update_slice": "update",
    "convert_element_type": "convert",
}


def short_name(primitive: str) -> str:
    """The node name used for ``primitive`` (``conv`` for ``conv_general_dilated``...)."""
    return _SHORT.get(primitive, primitive)


# -- helpers ----------------------------------------------------------------------------


def _out_shapes(eqn: Any) -> list[tuple[int, ...]]:
    return [tuple(int(n) for n in getattr(v.aval, "shape", ())) for v in eqn.outvars]


def _ints(values: Any, n: int, default: int) -> tuple[int, ...]:
    if values is None:
        return (default,) * n
    return tuple(int(v) for v in values)


# -- element-wise, identities, reductions -----------------------------------------------


@register_jax_rule(*ELEMENTWISE)
def _elementwise(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    (shape,) = _out_shapes(eqn)
    return ctx.builder.elementwise(ctx.name, ctx.op, shape, ins)


@register_jax_rule(*IDENTITIES)
def _identity(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    if not eqn.outvars:
        return []
    if len(ins) != len(eqn.outvars):
        raise Unsupported(f"{ctx.op} with {len(ins)} operands and {len(eqn.outvars)} results")
    return list(ins)


@register_jax_rule(*REDUCTIONS)
def _reduction(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    return ctx.builder.reduce(ctx.name, ctx.op, ins[0], eqn.params["axes"])


@register_jax_rule("reduce")
def _reduce(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    dims = {int(d) for d in eqn.params["dimensions"]}
    shapes = _out_shapes(eqn)
    operands = ins[: len(shapes)]
    rank = len(operands[0].shape)
    rel: list[Relation] = []
    kept = 0
    for d in range(rank):
        if d in dims:
            rel.append(Reduce())
        else:
            rel.append(Same(kept))
            kept += 1
    out = ctx.builder.apply(ctx.name, ctx.op, shapes[0], [(x, rel) for x in operands])
    return [out] * len(shapes)


@register_jax_rule("sort")
def _sort(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    shapes = _out_shapes(eqn)
    b = ctx.builder
    union = b.elementwise(ctx.name, ctx.op, shapes[0], ins) if len(ins) > 1 else ins[0]
    out = b.mix(ctx.name, ctx.op, union, [int(eqn.params["dimension"])])
    return [out] * len(shapes)


@register_jax_rule("top_k")
def _top_k(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    (x,) = ins
    shapes = _out_shapes(eqn)
    axis = int(eqn.params.get("axis", len(x.shape) - 1)) % len(x.shape)
    rel = [Mix(d) if d == axis else Same(d) for d in range(len(x.shape))]
    out = ctx.builder.apply(ctx.name, ctx.op, shapes[0], [(x, rel)])
    return [out] * len(shapes)


# -- layout -----------------------------------------------------------------------------


@register_jax_rule("reshape")
def _reshape(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    dims = eqn.params.get("dimensions")
    if dims is not None:
        x = ctx.builder.permute(x, dims)
    return ctx.builder.reshape(x, eqn.params["new_sizes"])


@register_jax_rule("squeeze")
def _squeeze(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    (shape,) = _out_shapes(eqn)
    return ctx.builder.reshape(ins[0], shape)


@register_jax_rule("transpose")
def _transpose(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    return ctx.builder.permute(ins[0], eqn.params["permutation"])


@register_jax_rule("broadcast_in_dim")
def _broadcast_in_dim(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    (shape,) = _out_shapes(eqn)
    dims = [int(d) for d in eqn.params["broadcast_dimensions"]]
    if dims != sorted(dims):
        raise Unsupported("broadcast_in_dim with reordered dimensions")
    padded = [1] * len(shape)
    for i, d in enumerate(dims):
        padded[d] = x.shape[i]
    return ctx.builder.expand(ctx.builder.reshape(x, padded), shape)


@register_jax_rule("stack")
def _stack(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    axis = int(eqn.params["axis"])
    b = ctx.builder
    expanded = [b.reshape(x, (*x.shape[:axis], 1, *x.shape[axis:])) for x in ins]
    return b.concat(expanded, axis, ctx.name, ctx.op)


@register_jax_rule("unstack")
def _unstack(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    (x,) = ins
    axis = int(eqn.params["axis"])
    return [ctx.builder.select(x, axis, i, ctx.name, ctx.op) for i in range(x.shape[axis])]


@register_jax_rule("split")
def _split(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    (x,) = ins
    axis = int(eqn.params["axis"]) % len(x.shape)
    outs = []
    start = 0
    for size in eqn.params["sizes"]:
        outs.append(ctx.builder.slice(x, axis, start, start + int(size), 1, ctx.name, ctx.op))
        start += int(size)
    return outs


@register_jax_rule("slice")
def _slice(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    p = eqn.params
    rank = len(x.shape)
    steps = _ints(p.get("strides"), rank, 1)
    for d, (lo, hi, step) in enumerate(
        zip(p["start_indices"], p["limit_indices"], steps, strict=True)
    ):
        if (int(lo), int(hi), step) != (0, x.shape[d], 1):
            x = ctx.builder.slice(x, d, int(lo), int(hi), step, ctx.name, ctx.op)
    return x


def _static_index(ctx: JaxContext, atom: Any) -> int | None:
    value = ctx.value(atom)
    if value is None or np.size(value) != 1:
        return None
    return int(np.asarray(value).reshape(()))


@register_jax_rule("dynamic_slice")
def _dynamic_slice(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    sizes = [int(n) for n in eqn.params["slice_sizes"]]
    b = ctx.builder
    unknown = []
    for d, atom in enumerate(eqn.invars[1 : 1 + len(x.shape)]):
        n, size = x.shape[d], sizes[d]
        start = _static_index(ctx, atom)
        if start is None:
            unknown.append(d)
            continue
        start = min(max(start, 0), n - size)  # XLA clamps the start into the array
        if (start, size) != (0, n):
            x = b.slice(x, d, start, start + size, 1, ctx.name, ctx.op)
    indices = [r for r in ins[1:] if not r.constant]
    if not unknown and not indices:
        return x
    # indices that are not constants: any position of those dims may be read
    (shape,) = _out_shapes(eqn)
    rel = [Mix(d) if d in unknown else Same(d) for d in range(len(shape))]
    operands: list[tuple[TensorRef, Sequence[Relation]]] = [(x, rel)]
    operands += [(r, ()) for r in indices]
    return b.apply(ctx.name, ctx.op, shape, operands)


@register_jax_rule("dynamic_update_slice")
def _dynamic_update_slice(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    operand, update = ins[0], ins[1]
    pads = []
    for d, atom in enumerate(eqn.invars[2:]):
        start = _static_index(ctx, atom)
        if start is None or not ins[2 + d].constant:
            raise Unsupported("dynamic_update_slice at indices that are not constants")
        n, size = operand.shape[d], update.shape[d]
        start = min(max(start, 0), n - size)
        pads.append((start, n - start - size))
    placed = ctx.builder.pad(update, pads, PadMode.ZEROS, ctx.name, ctx.op)
    return ctx.builder.elementwise(ctx.name, ctx.op, operand.shape, [operand, placed])


# -- calls ------------------------------------------------------------------------------


def sub_jaxpr(eqn: Any) -> Any:
    """The sub-jaxpr a call-like equation runs (closed or open)."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        if key in eqn.params:
            return eqn.params[key]
    raise Unsupported(f"{eqn.primitive.name} without a sub-jaxpr")


@register_jax_rule(*CALLS)
def _call(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    return ctx.call(sub_jaxpr(eqn), ins, eqn.invars)


#: Most iterations of a loop unrolled into the graph.
MAX_UNROLL = 1024


def _atom_value(ctx: JaxContext, atom: Any) -> Callable[[], Any]:
    return lambda: ctx.value(atom)


def _result_value(value: Callable[[int], Any], k: int) -> Callable[[], Any]:
    return lambda: value(k)


def _slice_value(value: Callable[[], Any], i: int) -> Callable[[], Any]:
    def get() -> Any:
        v = value()
        return None if v is None else np.asarray(v)[i]

    return get


@register_jax_rule("scan")
def _scan(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    """A scan, unrolled: the body runs once per step on its slice of ``xs``."""
    p = eqn.params
    length, nc, ncarry = int(p["length"]), int(p["num_consts"]), int(p["num_carry"])
    if length > MAX_UNROLL:
        raise Unsupported(f"a scan of {length} steps (rfmap unrolls at most {MAX_UNROLL})")
    b = ctx.builder
    values = [_atom_value(ctx, atom) for atom in eqn.invars]
    consts, carry, xs = ins[:nc], ins[nc : nc + ncarry], ins[nc + ncarry :]
    const_values = values[:nc]
    carry_values = values[nc : nc + ncarry]
    x_values = values[nc + ncarry :]
    steps = range(length - 1, -1, -1) if p.get("reverse") else range(length)
    ys: list[list[TensorRef]] = []
    for i in steps:
        slices = [
            b.constant(x.shape[1:]) if x.constant else b.select(x, 0, i, ctx.name, ctx.op)
            for x in xs
        ]
        outs, value = ctx.call_with(
            p["jaxpr"],
            [*consts, *carry, *slices],
            [*const_values, *carry_values, *(_slice_value(v, i) for v in x_values)],
        )
        carry = outs[:ncarry]
        carry_values = [_result_value(value, k) for k in range(ncarry)]
        ys.append(outs[ncarry:])
    if p.get("reverse"):
        ys.reverse()
    stacked = []
    shapes = _out_shapes(eqn)[ncarry:]
    for k, shape in enumerate(shapes):
        pieces = [b.reshape(step[k], (1, *step[k].shape)) for step in ys]
        stacked.append(b.concat(pieces, 0, ctx.name, ctx.op) if pieces else b.constant(shape))
    return [*carry, *stacked]


@register_jax_rule("while")
def _while(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    """A while loop whose condition reads only constants (a counter), unrolled."""
    p = eqn.params
    cn, bn = int(p["cond_nconsts"]), int(p["body_nconsts"])
    values = [_atom_value(ctx, atom) for atom in eqn.invars]
    cond_consts, body_consts, carry = ins[:cn], ins[cn : cn + bn], ins[cn + bn :]
    cond_values, body_values = values[:cn], values[cn : cn + bn]
    carry_values = values[cn + bn :]
    for _ in range(MAX_UNROLL + 1):
        (test,), test_value = ctx.call_with(
            p["cond_jaxpr"], [*cond_consts, *carry], [*cond_values, *carry_values]
        )
        known = test_value(0) if test.constant else None
        if known is None:
            raise Unsupported("a while loop whose condition depends on the input or on weights")
        if not bool(np.asarray(known)):
            return list(carry)
        carry, value = ctx.call_with(
            p["body_jaxpr"], [*body_consts, *carry], [*body_values, *carry_values]
        )
        carry_values = [_result_value(value, k) for k in range(len(carry))]
    raise Unsupported(f"a while loop of more than {MAX_UNROLL} iterations")


@register_jax_rule("cond")
def _cond(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    branches = eqn.params["branches"]
    index = _static_index(ctx, eqn.invars[0]) if ins[0].constant else None
    operands, atoms = ins[1:], eqn.invars[1:]
    if index is not None:
        return ctx.call(branches[min(max(index, 0), len(branches) - 1)], operands, atoms)
    # the branch depends on values: any of them may run
    results = [ctx.call(branch, operands, atoms) for branch in branches]
    shapes = _out_shapes(eqn)
    outs = []
    for k, shape in enumerate(shapes):
        refs = [r[k] for r in results] + ([ins[0]] if not ins[0].constant else [])
        outs.append(ctx.builder.elementwise(ctx.name, ctx.op, shape, refs))
    return outs
