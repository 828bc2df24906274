"""Writes native/tests/golden.h: expected outputs of the C kernels, computed with NumPy.

Inputs are not stored: both sides draw them from the same 64-bit LCG (see lcg_* below and in
test_kernels.c), so the file holds only the cases and their expected outputs (exact C99 hex
floats).
Run from the project root: python native/tests/make_golden.py (--check: exit 1 if golden.h differs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("golden.h")
MASK = (1 << 64) - 1

# Case kinds, as in test_kernels.c
CONV, GEMM, MATMUL, QCONV, QGEMM, MAXPOOL, AVGPOOL, SOFTMAX, BINARY, TRANSPOSE = range(10)


class Lcg:
    """x <- x * 6364136223846793005 + 1442695040888963407 (mod 2^64), Knuth's MMIX constants."""

    def __init__(self, seed: int) -> None:
        self.state = (seed * 0x9E3779B97F4A7C15 + 1) & MASK

    def next(self) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & MASK
        return self.state

    def floats(self, count: int) -> np.ndarray:
        """Uniform in [-1, 1): 24 random bits / 2^23 - 1, exact in float32."""
        return np.array(
            [((self.next() >> 40) & 0xFFFFFF) / 8388608.0 - 1.0 for _ in range(count)], np.float32
        )

    def int8s(self, count: int, low: int = -128) -> np.ndarray:
        values = [((self.next() >> 56) & 0xFF) for _ in range(count)]
        return np.array([max(v - 256 if v > 127 else v, low) for v in values], np.int8)

    def int32s(self, count: int) -> np.ndarray:
        return np.array([((self.next() >> 40) % 20001) - 10000 for _ in range(count)], np.int32)

    def multipliers(self, count: int) -> np.ndarray:
        return (self.floats(count) + np.float32(1.0)) * np.float32(1e-3) + np.float32(1e-5)


def act(y: np.ndarray, kind: int, alpha: float, beta: float) -> np.ndarray:
    if kind == 1:
        return np.maximum(y, 0)
    if kind == 2:
        return np.clip(y, alpha, beta)
    if kind == 3:
        return np.where(y < 0, y * alpha, y)
    if kind == 4:
        return 1 / (1 + np.exp(-y))
    if kind == 5:
        return np.tanh(y)
    if kind == 6:
        return y * np.clip(y / 6 + 0.5, 0, 1)
    return y


def conv_ref(x, w, stride, pad, dil, groups, out_hw):
    n, _, ih, iw = x.shape
    co, cig, kh, kw = w.shape
    oh, ow = out_hw
    y = np.zeros((n, co, oh, ow))
    cog = co // groups
    for o in range(co):
        g = o // cog
        for c in range(cig):
            for ky in range(kh):
                for kx in range(kw):
                    for oy in range(oh):
                        iy = oy * stride[0] - pad[0] + ky * dil[0]
                        if not 0 <= iy < ih:
                            continue
                        for ox in range(ow):
                            ix = ox * stride[1] - pad[1] + kx * dil[1]
                            if 0 <= ix < iw:
                                y[:, o, oy, ox] += (
                                    x[:, g * cig + c, iy, ix].astype(np.float64) * w[o, c, ky, kx]
                                )
    return y


def requant(acc, mul, y_zp, lo, hi):
    v = acc.astype(np.float32) * mul
    v = np.clip(v.astype(np.float64), -(2.0**30), 2.0**30)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + y_zp
    return np.clip(q, lo, hi).astype(np.int8)


def conv_case(seed, n, ci, ih, iw, co, kh, kw, s, p, d, groups, kind, a, b, bias):
    oh = (ih + 2 * p[0] - ((kh - 1) * d[0] + 1)) // s[0] + 1
    ow = (iw + 2 * p[1] - ((kw - 1) * d[1] + 1)) // s[1] + 1
    rng = Lcg(seed)
    x = rng.floats(n * ci * ih * iw).reshape(n, ci, ih, iw)
    w = rng.floats(co * (ci // groups) * kh * kw).reshape(co, ci // groups, kh, kw)
    bb = rng.floats(co) if bias else np.zeros(co, np.float32)
    y = conv_ref(x, w, s, p, d, groups, (oh, ow)) + bb.reshape(1, co, 1, 1)
    y = act(y, kind, a, b)
    params = [n, ci, ih, iw, co, oh, ow, kh, kw, *s, *d, *p, groups, kind, int(bias)]
    return CONV, seed, params, [a, b], y.astype(np.float32).ravel(), ci // groups * kh * kw


def qconv_case(seed, n, ci, ih, iw, co, kh, kw, s, p, groups, x_zp, y_zp, lo, hi):
    oh = (ih + 2 * p[0] - kh) // s[0] + 1
    ow = (iw + 2 * p[1] - kw) // s[1] + 1
    rng = Lcg(seed)
    x = rng.int8s(n * ci * ih * iw).reshape(n, ci, ih, iw)
    w = rng.int8s(co * (ci // groups) * kh * kw, low=-127).reshape(co, ci // groups, kh, kw)
    bias = rng.int32s(co)
    mul = rng.multipliers(co)
    acc = conv_ref(x.astype(np.int64) - x_zp, w, s, p, (1, 1), groups, (oh, ow))
    acc = np.rint(acc).astype(np.int64) + bias.reshape(1, co, 1, 1)
    y = requant(acc, mul.reshape(1, co, 1, 1), y_zp, lo, hi)
    params = [n, ci, ih, iw, co, oh, ow, kh, kw, *s, 1, 1, *p, groups, x_zp, y_zp, lo, hi]
    return QCONV, seed, params, [], y.ravel(), 0


def gemm_case(seed, m, n, k, trans_a, trans_b, kind, a_, b_):
    rng = Lcg(seed)
    a = rng.floats(m * k).reshape((k, m) if trans_a else (m, k))
    b = rng.floats(k * n).reshape((n, k) if trans_b else (k, n))
    bias = rng.floats(n)
    y = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b) + bias
    y = act(y, kind, a_, b_)
    return GEMM, seed, [m, n, k, trans_a, trans_b, kind], [a_, b_], y.astype(np.float32).ravel(), k


def matmul_case(seed, batch, m, n, k, a_bcast, b_bcast):
    rng = Lcg(seed)
    a = rng.floats((1 if a_bcast else batch) * m * k).reshape(-1, m, k)
    b = rng.floats((1 if b_bcast else batch) * k * n).reshape(-1, k, n)
    y = np.matmul(
        np.broadcast_to(a, (batch, m, k)).astype(np.float64), np.broadcast_to(b, (batch, k, n))
    )
    return MATMUL, seed, [batch, m, n, k, a_bcast, b_bcast], [], y.astype(np.float32).ravel(), k


def qgemm_case(seed, m, n, k, trans_b, x_zp, y_zp, lo, hi):
    rng = Lcg(seed)
    a = rng.int8s(m * k).reshape(m, k)
    b = rng.int8s(k * n, low=-127).reshape((n, k) if trans_b else (k, n))
    bias = rng.int32s(n)
    mul = rng.multipliers(n)
    acc = (a.astype(np.int64) - x_zp) @ (b.T if trans_b else b).astype(np.int64) + bias
    y = requant(acc, mul.reshape(1, n), y_zp, lo, hi)
    return QGEMM, seed, [m, n, k, trans_b, x_zp, y_zp, lo, hi], [], y.ravel(), 0


def pool_case(seed, kind, n, c, ih, iw, kh, kw, s, p, include_pad):
    oh = (ih + 2 * p[0] - kh) // s[0] + 1
    ow = (iw + 2 * p[1] - kw) // s[1] + 1
    x = Lcg(seed).floats(n * c * ih * iw).reshape(n, c, ih, iw)
    y = np.zeros((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            rows = [r for r in range(oy * s[0] - p[0], oy * s[0] - p[0] + kh) if 0 <= r < ih]
            cols = [q for q in range(ox * s[1] - p[1], ox * s[1] - p[1] + kw) if 0 <= q < iw]
            win = x[:, :, rows][:, :, :, cols].astype(np.float64)
            if kind == MAXPOOL:
                y[:, :, oy, ox] = win.max(axis=(2, 3))
            else:
                y[:, :, oy, ox] = win.sum(axis=(2, 3)) / (
                    kh * kw if include_pad else win.shape[2] * win.shape[3]
                )
    params = [n, c, ih, iw, oh, ow, kh, kw, *s, *p, include_pad]
    return kind, seed, params, [], y.astype(np.float32).ravel(), kh * kw


def softmax_case(seed, outer, axis, inner):
    x = Lcg(seed).floats(outer * axis * inner).reshape(outer, axis, inner) * 8
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return SOFTMAX, seed, [outer, axis, inner], [], y.astype(np.float32).ravel(), axis


def binary_case(seed, op, a_shape, b_shape):
    rng = Lcg(seed)
    a = rng.floats(int(np.prod(a_shape))).reshape(a_shape)
    b = rng.floats(int(np.prod(b_shape))).reshape(b_shape) + np.float32(3.0)  # no division by ~0
    y = [np.add, np.multiply, np.subtract, np.divide][op](a, b).astype(np.float32)
    return BINARY, seed, [op, *a_shape, *b_shape], [], y.ravel(), 1


def transpose_case(seed, shape, perm):
    x = Lcg(seed).floats(int(np.prod(shape))).reshape(shape)
    return TRANSPOSE, seed, [len(shape), *shape, *perm], [], np.transpose(x, perm).ravel(), 1


def cases():
    yield conv_case(1, 1, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, 0, 0.0, 0.0, True)
    yield conv_case(2, 2, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2, 2, -0.5, 0.5, False)
    yield conv_case(3, 1, 6, 6, 40, 6, 3, 3, (1, 1), (1, 1), (1, 1), 6, 1, 0.0, 0.0, True)
    yield conv_case(4, 1, 5, 4, 38, 7, 3, 3, (1, 1), (1, 1), (1, 1), 1, 6, 0.0, 0.0, True)
    yield conv_case(5, 1, 30, 3, 5, 20, 1, 1, (1, 1), (0, 0), (1, 1), 1, 3, 0.1, 0.0, True)
    yield conv_case(6, 1, 4, 11, 12, 4, 3, 3, (2, 2), (1, 1), (1, 1), 4, 4, 0.0, 0.0, True)
    yield conv_case(7, 1, 33, 3, 34, 9, 3, 3, (1, 1), (1, 1), (1, 1), 1, 0, 0.0, 0.0, False)
    yield gemm_case(8, 7, 19, 13, 0, 0, 1, 0.0, 0.0)
    yield gemm_case(9, 5, 33, 270, 1, 1, 5, 0.0, 0.0)
    yield matmul_case(10, 3, 4, 18, 9, 0, 1)
    yield qconv_case(11, 1, 5, 6, 9, 7, 3, 3, (1, 1), (1, 1), 1, 3, -2, -128, 127)
    yield qconv_case(12, 2, 6, 7, 7, 6, 3, 3, (2, 2), (1, 1), 6, -10, 5, 5, 127)
    yield qconv_case(13, 1, 40, 3, 4, 13, 1, 1, (1, 1), (0, 0), 1, 0, 0, -128, 127)
    yield qgemm_case(14, 3, 21, 37, 0, 7, -3, -128, 127)
    yield qgemm_case(15, 9, 14, 600, 1, -100, 10, 10, 100)
    yield pool_case(16, MAXPOOL, 1, 3, 7, 8, 3, 3, (2, 2), (1, 1), 0)
    yield pool_case(17, AVGPOOL, 2, 2, 6, 5, 2, 3, (1, 2), (1, 1), 1)
    yield pool_case(18, AVGPOOL, 1, 2, 6, 5, 3, 3, (1, 1), (1, 1), 0)
    yield softmax_case(19, 2, 10, 3)
    yield binary_case(20, 0, (2, 3, 1, 5), (1, 3, 4, 1))
    yield binary_case(21, 3, (2, 1, 4, 5), (1, 3, 1, 5))
    yield transpose_case(22, (2, 3, 4, 5), (0, 2, 3, 1))
    yield transpose_case(23, (1, 3, 2, 2, 4, 4), (0, 1, 4, 2, 5, 3))


def c_float(v: float) -> str:
    return (
        float(v).hex() + "f"
        if np.isfinite(v)
        else ("NAN" if np.isnan(v) else ("INFINITY" if v > 0 else "-INFINITY"))
    )


def render() -> str:
    lines = [
        "/* golden.h: generated by native/tests/make_golden.py from NumPy; do not edit. */",
        "#ifndef PN_GOLDEN_H",
        "#define PN_GOLDEN_H",
        "#include <math.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
    ]
    table = []
    for index, (kind, seed, params, fparams, expected, depth) in enumerate(cases()):
        name = f"golden_{index}"
        if expected.dtype == np.int8:
            body = ", ".join(str(int(v)) for v in expected)
            lines.append(f"static const int8_t {name}_q[] = {{{body}}};")
            refs = f"NULL, {name}_q"
        else:
            body = ", ".join(c_float(v) for v in expected)
            lines.append(f"static const float {name}_f[] = {{{body}}};")
            refs = f"{name}_f, NULL"
        p = ", ".join(str(int(v)) for v in params)
        f = ", ".join(c_float(v) for v in fparams) or "0"
        table.append(f"    {{{kind}, {seed}, {{{p}}}, {{{f}}}, {len(expected)}, {depth}, {refs}}},")
    lines += [
        "",
        "typedef struct {",
        "    int kind, seed;",
        "    int32_t p[24];",
        "    float f[4];",
        "    int64_t count, depth;",
        "    const float *expected;",
        "    const int8_t *expected_q;",
        "} pn_golden_case;",
        "",
        "static const pn_golden_case pn_golden[] = {",
        *table,
        "};",
        "#define PN_GOLDEN_COUNT (sizeof pn_golden / sizeof pn_golden[0])",
        "#endif",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(
            0 if OUT.exists() and OUT.read_text() == text else f"{OUT} is stale: rerun {__file__}"
        )
    OUT.write_text(text)
    print(f"wrote {OUT}")
