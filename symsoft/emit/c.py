"""Bundle -> softmax_k{K}.h and softmax_k{K}.c (C99, libm's log only, float and double)."""

from __future__ import annotations

import sympy

from symsoft.derivation.bundle import PRINTED_OPTION_FORMS, Bundle
from symsoft.emit.printers import C_SUFFIXES, C_TYPES, c_code
from symsoft.emit.render import render
from symsoft.family.members import MEMBERS, c_name, masked_rows_note, stem

DTYPES = ("float32", "float64")
# Values per block of rows (see the C template): small enough for the L1 cache.
BLOCK = 512
# Lane accumulators for the row reductions, used when K >= LANES_FROM * lanes: below that the
# rows are short and a plain loop (vectorised across the rows of a block) does better. Eight
# lanes measured best for both types on AVX2 (16 for float was slower at K = 32 and 128).
LANES = {"float32": 8, "float64": 8}
LANES_FROM = 2


# Below LANES_FROM * 8 = 16 (from K = 3) the kernels below compute a row whole, one
# straight-line body (maximum, exponentials, sum, result) with the row in registers, over
# groups of rows turned into columns, so that the loop over a group's rows vectorises across
# rows (see the template). The other kernels (a row that calls libm's log, branches on a label
# or writes K x K values does not vectorise that way) get their block's exponentials row by
# row at K = 3, 4 (loads interleaved across rows) and as one flat loop at other K (row by
# row, at K = 5-15, they were 2x slower). At K = 2 whole rows ran 1.6-2x slower.
WHOLE_ROWS = range(3, 16)
BLOCK_BY_ROWS = frozenset({3, 4})
WHOLE_ROW_KERNELS = frozenset(member.name for member in MEMBERS if member.whole_rows)
# Whole rows skip a maximum's exp (exp(0) = 1) at these K: the comparison and three selects
# per entry that route the other exps cost less than the exp they save only on short rows
# (gcc 12: softmax 1.1x faster at K = 3, even at K = 4 in float, 3 % faster in double; from
# K = 5 on 5-15 % slower in both types).
EXP_SKIPS_MAXIMUM = range(3, 5)
# Rows per group of whole rows (turned into columns, see the template): a column is two AVX2
# vectors. Groups of one vector (4 doubles, 8 floats) or four measured slower.
GROUP = {"float32": 16, "float64": 8}
# Values per 16-byte vector: the tiles in which a group is turned into columns with shuffles
# (see the template), at these K only. Measured against plain loops (gcc 12 and clang 14):
# float 5-35 % faster at K = 4-15; double 6-15 % faster at K = 6-9, within noise at K = 4, 5,
# and with gcc up to 8 % slower at even K from 10, so double keeps the loops there. K = 3 keeps
# them too: its columns stay in registers (and a row holds no whole tile of floats).
TILE = {"float32": 4, "float64": 2}
SHUFFLE_TRANSPOSES = {"float32": range(4, 16), "float64": range(4, 10)}

# clang vectorises the float exp-and-sum loop over the lanes only when told not to unroll it
# (CLANG_KEEP_LOOP): 2.2x faster from K = 128, 1.25x at 32, 1.08x slower at 16; double's loop,
# two vectors wide, vectorises unrolled and ran 1.1x slower with it.
FLOAT_LANE_LOOP_FROM = 32

# Types whose long rows (K >= 16) take their maxima in GNU C vectors, in a pass over the block
# before the exp-and-sum pass (see the template). Float softmax 3-8 % faster from K = 16
# (K = 32 2.11 -> 2.00 ns, K = 128 2.04 -> 1.89); either change alone was no faster. Double kept
# its maximum in the row's pass: with the pass before it, K = 32 ran 1.2x slower.
VECTOR_MAX = frozenset({"float32"})

# Under OpenMP a call shares its blocks among threads from this many values (n * K) on; below,
# waking the threads costs more than they save. Measured: benchmarks/bench_threads.py.
PARALLEL_FROM = 32768
# ... and hands them out to the threads about this many values at a time (dynamic schedule).
PARALLEL_CHUNK = 4096
# The options path (issue 17) cuts a call's rows into parts of about PARALLEL_CHUNK values, or
# into this many if they would be more, whose reductions are summed per part (a stack array
# of this many sums) and then in order: the same bits on any number of threads.
OPTION_PARTS = 256

# 16-bit storage (bf16, f16): members whose outputs are at most K values a row get kernels on
# uint16_t arrays. Those computed in whole rows (K = 3-15) are the float bodies converting in
# their group transposes (_storage_view); the others run the float kernels on chunks of about
# CHUNK_VALUES values converted to float (stack buffers: a K x K output would not fit, so the
# Jacobian has none). A chunk stays in L1 with its outputs: chunks of 8192 values (in L2) made
# bf16 1.45x slower than float32 at K = 128.
STORAGE = ("bf16", "f16")
CHUNK_VALUES = 512

# The kernels' exponentials and their sums are exp(z_i - m) * 2^EXP_SCALE (the scaled exp of
# templates/c/exp.c.jinja, which builds the same power of 2 into its bits).
EXP_SCALE = {"float32": 32, "float64": 64}


def _tile(k: int, dtype: str) -> dict[str, object]:
    """The tile fields of dtype's group transposes at K = k (_tile_fields)."""
    return _tile_fields(TILE[dtype] if k in SHUFFLE_TRANSPOSES[dtype] else 0)


def _tile_fields(width: int) -> dict[str, object]:
    """The tile width for shuffle transposes (0 for plain loops), its rounds of interleaving
    and the two interleaving shuffles' indices: low halves (0, W, 1, W + 1, ...), high
    halves (W/2, W/2 + W, ...)."""
    half = range(width // 2)
    return {
        "tile": width,
        "tile_rounds": width.bit_length() - 1,
        "interleave_low": ", ".join(f"{j}, {j + width}" for j in half),
        "interleave_high": ", ".join(f"{j + width // 2}, {j + width // 2 + width}" for j in half),
    }


def block_rows(k: int) -> int:
    return max(1, BLOCK // k)


def lanes(k: int, dtype: str) -> int:
    """Lane accumulators for the row reductions, or 0 for a plain in-order loop."""
    return LANES[dtype] if k >= LANES_FROM * LANES[dtype] else 0


def lane_tree(count: int, combine: str) -> str:
    """The lanes lane[0..count-1] combined by the fixed pairwise tree (lane j with lane j + w,
    for w = count/2, ..., 1) as one C expression; combine formats a pair {a}, {b}. Written out,
    since a loop over the tree levels made gcc go through memory with a partial store each
    row (a store-forwarding stall: 25 % of float softmax at K = 32). Empty without lanes."""
    if not count:
        return ""

    def value(j: int, width: int) -> str:
        if width == count:
            return f"lane[{j}]"
        return combine.format(a=value(j, 2 * width), b=value(j + width, 2 * width))

    return value(0, 1)


def _names(bundle: Bundle) -> dict[sympy.Symbol, sympy.Basic]:
    """Element symbols -> the C variables the template declares."""
    f, k = bundle.kernel, bundle.k
    i, j = sympy.symbols("i j", integer=True)

    def row(name: str) -> sympy.IndexedBase:
        return sympy.IndexedBase(name, shape=(k,))

    return {
        f.z_i: row("zr")[i],
        f.y_i: row("yr")[i],
        f.v_i: row("vr")[i],
        f.delta_ij: sympy.KroneckerDelta(i, j),
    }


def _type_view(bundle: Bundle, dtype: str) -> dict[str, object]:
    f, k = bundle.kernel, bundle.k
    names = _names(bundle)
    sr = sympy.IndexedBase("sr", shape=(k,))
    i, j = sympy.symbols("i j", integer=True)
    jacobian_names = {**names, f.s_i: sr[i], f.s_j: sr[j]}
    # Divisions by S are printed as products with inv_S = 1/S, which the template computes
    # once per row: one division per row instead of K (a division costs several products),
    # at the price of one more rounding, inside the accuracy budgets (tests/test_accuracy.py).
    by_inverse = {**names, f.S: 1 / sympy.Symbol("inv_S")}
    lane_z = sympy.IndexedBase("zr", shape=(k,))[i + j]
    lane_y = sympy.IndexedBase("yr", shape=(k,))[i + j]
    lane_free_z, half = names[f.z_i], sympy.Rational(1, 2)
    suffix, ctype = C_SUFFIXES[dtype], C_TYPES[dtype]
    lane_count = lanes(k, dtype)
    float_suffix = "F" if ctype == "float" else ""
    signatures = {
        member.name: f"{c_name(member.name, k, suffix, bundle.prefix)}({member.c_params(ctype)})"
        for member in MEMBERS
    }
    return {
        "dtype": dtype,
        "ctype": ctype,
        "suffix": suffix,
        "zero": c_code(sympy.Float(0), dtype, {}),
        "shifted": c_code(f.shifted, dtype, names),
        # the same, for lane j of the chunk at i (see the lane loops in the template)
        "shifted_lane": c_code(f.shifted, dtype, {**names, f.z_i: lane_z}),
        "scaled_exponential": c_code(f.exponential, dtype, names, scaled_exp=True),
        "exp_scale": f"0x1p{EXP_SCALE[dtype]}{float_suffix}",
        "exp_unscale": f"0x1p-{EXP_SCALE[dtype]}{float_suffix}",
        "probability": c_code(f.probability, dtype, by_inverse),
        # the scaled exponentials' sum: 1/S_scaled times a scaled exponential is s_i
        "inverse_normaliser": c_code(1 / f.S, dtype, {**names, f.S: sympy.Symbol("S_scaled")}),
        # log S, S in [1, K]: the branch-free log of templates/c/log.c.jinja
        "log_normaliser": c_code(f.log_normaliser, dtype, names, kernel_log=True),
        # the label's loss with the label's logit in z_c (rows computed whole pick it by selects)
        "loss_at_label": c_code(f.loss_index, dtype, {**names, f.z_i: sympy.Symbol("z_c")}),
        "log_probability": c_code(f.log_probability, dtype, names),
        "jacobian": c_code(f.jacobian, dtype, jacobian_names),
        "loss_term": c_code(f.loss_term, dtype, names),
        # the loss terms at half scale (d_i holding (z_i - m)/2, summed and doubled): z_i - m
        # overflows for finite logits of both signs near the largest float, where the loss is
        # finite; halving is exact, so elsewhere the result is the same to the bit
        "half_shifted": c_code(
            f.shifted, dtype, {**names, f.z_i: half * lane_free_z, f.m: half * f.m}
        ),
        "half_loss_term": c_code(f.loss_term, dtype, {**names, f.log_S: half * f.log_S}),
        # the same two for lane j of the chunk at i (the fused kernel's lane sums, K >= 16)
        "half_shifted_lane": c_code(
            f.shifted, dtype, {**names, f.z_i: half * lane_z, f.m: half * f.m}
        ),
        "half_loss_term_lane": c_code(
            f.loss_term, dtype, {**names, f.y_i: lane_y, f.log_S: half * f.log_S}
        ),
        "gradient": c_code(f.gradient, dtype, names),
        "loss_index": c_code(f.loss_index, dtype, names),
        "gradient_true_class": c_code(f.gradient_true_class, dtype, by_inverse),
        "jvp_term": c_code(f.jvp_term, dtype, names),
        "softmax_jvp": c_code(f.jvp, dtype, names),
        "softmax_vjp": c_code(f.vjp, dtype, names),
        "log_sum_exp": c_code(f.log_sum_exp, dtype, names),
        "log_softmax_jvp": c_code(f.log_softmax_jvp, dtype, names),
        "log_softmax_vjp": c_code(f.log_softmax_vjp, dtype, names),
        "hessian": c_code(f.hessian, dtype, jacobian_names),
        "hvp": c_code(f.hvp, dtype, names),
        "tempered": c_code(f.tempered, dtype, names),
        "kl_term": c_code(f.kl_term, dtype, names),
        "distillation_kl": c_code(f.distillation_kl, dtype, names),
        "distillation_grad": c_code(f.distillation_grad, dtype, names),
        **_distillation_rows(bundle, dtype),
        "lanes": lane_count,
        "keep_lane_loop": dtype == "float32" and k >= FLOAT_LANE_LOOP_FROM,
        "vector_max": dtype in VECTOR_MAX and lane_count > 0,
        "mask_int": "int32_t" if ctype == "float" else "int64_t",
        "max_tree": lane_tree(lane_count, f"larger_{suffix}({{a}}, {{b}})"),
        "sum_tree": lane_tree(lane_count, "({a} + {b})"),
        # the kernels computing rows whole, and whether the others get their block's
        # exponentials row by row (else as the flat loop)
        "whole_rows": WHOLE_ROW_KERNELS if k in WHOLE_ROWS else frozenset(),
        "block_by_rows": k in BLOCK_BY_ROWS,
        "exp_skips_maximum": k in EXP_SKIPS_MAXIMUM,
        "group": f"GROUP_{suffix.upper()}",
        "group_rows": GROUP[dtype],
        **_tile(k, dtype),
        # NAN and INFINITY are float constants: cast so double code does not promote
        "nan": "NAN" if ctype == "float" else "(double)NAN",
        "infinity": "INFINITY" if ctype == "float" else "(double)INFINITY",
        "names": {member.name: c_name(member.name, k, suffix, bundle.prefix) for member in MEMBERS},
        "signatures": signatures,
        # the arrays' storage: the computing type itself (16-bit views below differ)
        "storage": None,
        "stype": ctype,
        "io": suffix,
        "store_nan": "NAN" if ctype == "float" else "(double)NAN",
        "store_minus_infinity": "-INFINITY" if ctype == "float" else "-(double)INFINITY",
        # the public kernels; the 16-bit kernels' serial float copies are static (below)
        "linkage": "",
        "serial": False,
        "functions": [
            {"signature": signatures[member.name], "doc": member.doc, "name": member.name}
            for member in MEMBERS
        ],
    }


def _serial_view(float_view: dict[str, object], k: int, prefix: str) -> dict[str, object]:
    """The float kernels of the 16-bit storage members as static functions without the OpenMP
    pragma (NAME_k{K}_f32_serial): the public float kernel loops over them under the pragma,
    and each thread of a 16-bit kernel calls them on one chunk at a time (calling the public
    kernel, which enters an OpenMP region per call even on one thread, cost 0.5-2 ns per value
    on chunks of L1 size)."""
    signatures = {
        member.name: f"{_serial_name(member.name, k, prefix)}({member.c_params('float')})"
        for member in MEMBERS
    }
    return {**float_view, "linkage": "static ", "serial": True, "signatures": signatures}


# Where the 16-bit groups are widened in their transposes' tiles of 8 x 8 values (else in
# one loop over a group's values, then the float transposes): tiles of 4 x 4 were 0.3-3 (!)
# instructions per value slower at K = 4-7 (callgrind, gcc 12), tiles of 8 x 8 0.1-1.3 faster
# from K = 8.
WIDEN_IN_TILES = range(8, 16)
# 16-bit values a row of those tiles holds: a 16-byte vector
TILE16 = 8
# Where the 16-bit groups' rounding (to_rows_<s>) is not inlined: at K = 3 that took softmax
# from 8.37 to 7.56 instructions per value (gradient 10.15 -> 9.33); at K = 5-7 1-3 more,
# from 8 on 0.05-0.15 more.
ROWS_OUT_OF_LINE = range(3, 4)
# The bits of the NaN the float kernels store (NAN, quiet and positive) and of -inf in each
# 16-bit storage, for the whole-row kernels that store them straight into their outputs.
STORAGE_NAN = {"bf16": "0x7fc0u", "f16": "0x7e00u"}
STORAGE_MINUS_INFINITY = {"bf16": "0xff80u", "f16": "0xfc00u"}


def _storage_view(float_view: dict[str, object], k: int, prefix: str, s: str) -> dict[str, object]:
    """The float kernels computing whole rows (K = 3-15) on 16-bit storage s: the same body,
    computed in float, whose group transposes widen the 16-bit rows into float columns and
    round the float columns into 16-bit rows (to_columns_<s>, to_rows_<s>), so that no pass
    over the arrays converts them apart."""
    signatures = {
        member.name: f"{c_name(member.name, k, s, prefix)}({member.c_params('uint16_t')})"
        for member in MEMBERS
    }
    return {
        **float_view,
        "storage": s,
        "stype": "uint16_t",
        "io": s,
        "store_nan": STORAGE_NAN[s],
        "store_minus_infinity": STORAGE_MINUS_INFINITY[s],
        "signatures": signatures,
        # tile 0 (plain loops) where the groups are widened in one loop, not in the tiles
        **_tile_fields(storage_tile(k)),
        "rows_out_of_line": k in ROWS_OUT_OF_LINE,
    }


def storage_tile(k: int) -> int:
    """The width of the tiles the 16-bit groups are widened in (from_<s>_tile), 0 where they
    are widened in one loop."""
    return TILE16 if k in WIDEN_IN_TILES else 0


def _serial_name(name: str, k: int, prefix: str) -> str:
    return f"{c_name(name, k, 'f32', prefix)}_serial"


def parallel_rows(k: int) -> int:
    """Rows a thread takes at a time in the float kernels that loop over their serial copy:
    about PARALLEL_CHUNK values, whole groups of float rows where those are computed whole."""
    rows = max(1, PARALLEL_CHUNK // k)
    group = GROUP["float32"]
    return rows - rows % group if k in WHOLE_ROWS and rows >= group else rows


def chunk_rows(k: int) -> int:
    """Rows per chunk of the 16-bit kernels that convert chunks (none of them computes whole
    rows, so a chunk need not be whole groups)."""
    return max(1, CHUNK_VALUES // k)


def _storage_members(k: int, prefix: str) -> list[dict[str, object]]:
    return [
        {
            "inputs": member.inputs,
            "outputs": member.outputs,
            "floats": [name for name in member.inputs if name != "labels"],
            "name": member.name,
            "f32": _serial_name(member.name, k, prefix),
            "signature": {
                s: f"{c_name(member.name, k, s, prefix)}({member.c_params('uint16_t')})"
                for s in STORAGE
            },
            "doc": member.doc,
        }
        for member in MEMBERS
        if all(out.rank <= 1 for out in member.outputs) and not member.scalars
    ]


def _distillation_rows(bundle: Bundle, dtype: str) -> dict[str, dict[str, str]]:
    """The softmax forms on distillation's tempered rows: the student's (wsr, with the usual
    names) and the teacher's (wtr, m_t, dt_i, log_St, et_i, inv_St)."""
    f = bundle.kernel
    i = sympy.Symbol("i", integer=True)

    def row(name: str) -> sympy.Indexed:
        return sympy.IndexedBase(name, shape=(bundle.k,))[i]

    student = {f.z_i: row("wsr"), f.S: 1 / sympy.Symbol("inv_S")}
    teacher = {
        f.z_i: row("wtr"),
        f.m: sympy.Symbol("m_t"),
        f.d_i: sympy.Symbol("dt_i"),
        f.log_S: sympy.Symbol("log_St"),
        f.e_i: sympy.Symbol("et_i"),
    }
    by_inverse = {**teacher, f.S: 1 / sympy.Symbol("inv_St")}
    return {
        "distillation_student": {
            "shifted": c_code(f.shifted, dtype, student),
            "log_probability": c_code(f.log_probability, dtype, student),
        },
        "distillation_teacher": {
            "shifted": c_code(f.shifted, dtype, teacher),
            "log_probability": c_code(f.log_probability, dtype, teacher),
            "probability": c_code(f.probability, dtype, by_inverse),
            # the teacher's S_t is in [1, K] like the student's S: the same branch-free log,
            # so equal rows give a divergence of exactly 0
            "log_normaliser": c_code(
                f.log_normaliser, dtype, {f.S: sympy.Symbol("S_t")}, kernel_log=True
            ),
            "inverse_normaliser": c_code(1 / f.S, dtype, {f.S: sympy.Symbol("St[r]")}),
        },
    }


# the options path (issue 17): reductions as the header's constants
REDUCTION_CODES = {"none": 0, "sum": 1, "mean": 2}


def _option_view(bundle: Bundle, dtype: str, signatures: dict[str, str]) -> dict[str, object]:
    """The options path's forms printed for one type, and its entry points: NAME_opt, the
    member's parameters and a pointer to the type's options struct (NULL: the plain kernel)."""
    f, o, k = bundle.kernel, bundle.options, bundle.k
    if o is None:
        raise ValueError("the Bundle has no option forms")
    i = sympy.Symbol("i", integer=True)
    names = {
        **_names(bundle),
        o.z_i: sympy.IndexedBase("zo", shape=(k,))[i],
        f.y_i: sympy.Symbol("y_i"),
        o.w_i: sympy.IndexedBase("w", shape=(k,))[i],
        o.T: sympy.Symbol("temperature"),
        o.eps: sympy.Symbol("eps"),
        o.lam: sympy.Symbol("lam"),
        f.S: 1 / sympy.Symbol("inv_S"),
    }
    suffix, ctype = C_SUFFIXES[dtype], C_TYPES[dtype]
    struct = f"{stem(k, bundle.prefix)}_options_{suffix}"
    members = [member for member in MEMBERS if member.options]
    opt_signatures = {
        member.name: f"{c_name(member.name + '_opt', k, suffix, bundle.prefix)}"
        f"({member.c_params(ctype).removesuffix(', size_t n')}, size_t n, const {struct} *options)"
        for member in members
    }
    return {
        "options_struct": struct,
        "option_members": [member.name for member in members],
        "opt_names": {
            member.name: c_name(member.name + "_opt", k, suffix, bundle.prefix)
            for member in members
        },
        "opt_signatures": opt_signatures,
        "opt_functions": [
            {
                "name": m.name,
                "signature": opt_signatures[m.name],
                "doc": m.doc,
                "takes_reduction": m.takes_reduction,
            }
            for m in members
        ],
        **{
            f"option_{name}": c_code(getattr(o, name), dtype, names)
            for name in PRINTED_OPTION_FORMS
        },
    }


def emit_c(bundle: Bundle) -> dict[str, str]:
    k = bundle.k
    base = stem(k, bundle.prefix)
    notes = {member.name: masked_rows_note(bundle.masked_rows, member.name) for member in MEMBERS}
    storage = _storage_members(k, bundle.prefix)
    types = [_type_view(bundle, dtype) for dtype in DTYPES]
    for view in types:
        view.update(_option_view(bundle, str(view["dtype"]), view["signatures"]))  # type: ignore[arg-type]
    dtypes = ", ".join(DTYPES)
    # the members the float view computes in whole rows (its "whole_rows": a frozenset)
    whole_rows = types[0]["whole_rows"]
    assert isinstance(whole_rows, frozenset)
    return {
        f"{base}.h": render(
            "softmax.h.jinja",
            k,
            dtypes,
            guard=f"SYMSOFT_{base.upper()}_H",
            prefix=base,
            types=types,
            masked_rows_note=masked_rows_note(bundle.masked_rows),
            masked_rows_notes=notes,
            parallel_from=PARALLEL_FROM,
            storage=storage,
            reduction_codes=REDUCTION_CODES,
        ),
        f"{base}.c": render(
            "softmax.c.jinja",
            k,
            dtypes,
            header_file=f"{base}.h",
            types=types,
            # each member's body is templates/c/kernels/<name>.c.jinja
            kernels=[member.name for member in MEMBERS],
            rows=block_rows(k),
            block=BLOCK,
            masked_rows=bundle.masked_rows,
            masked_rows_notes=notes,
            prefix=base,
            parallel_from=PARALLEL_FROM,
            storage=storage,
            serial=_serial_view(types[0], k, bundle.prefix),
            storage_names={str(m["name"]): m for m in storage},
            # 16-bit members computed by the whole-row bodies themselves, the others by chunks
            fused_storage=[str(m["name"]) for m in storage if m["name"] in whole_rows],
            storage_views={s: _storage_view(types[0], k, bundle.prefix, s) for s in STORAGE},
            storage_tile=storage_tile(k),
            parallel_rows=parallel_rows(k),
            parallel_chunk=PARALLEL_CHUNK,
            option_parts=OPTION_PARTS,
            chunk_rows=chunk_rows(k),
            chunk_values=CHUNK_VALUES,
            reduction_codes=REDUCTION_CODES,
        ),
    }
