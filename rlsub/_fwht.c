/* In-place unnormalised Walsh-Hadamard transform of float32 vectors (rlsub's Fastfood kernel).
 *
 * A radix-2 transform of n = 2^k floats makes k passes over the vector; at n = 2^20 (4 MB) each
 * pass streams through memory. Here the work is split so that memory is traversed twice:
 *   1. every contiguous block of BLOCK floats (16 KB, fits in L1) gets all of its log2(BLOCK) stages;
 *   2. viewing the vector as an R x BLOCK matrix (R = n / BLOCK), the remaining log2(R) stages act
 *      along its rows; they run tile by tile, a tile being TILE adjacent columns (R x TILE floats,
 *      within L2), so each tile is read once and written once.
 * H_n = H_R (x) H_BLOCK, and the factors commute, so any order of the stages gives the transform; in
 * floating point the order fixes the rounding, so every path here runs the stages in the same
 * ascending order (bit-identical results). The generic inner loops run over contiguous floats so the
 * compiler vectorises them; on CPUs with AVX2 an explicit path (below) does three stages per pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 4096
#define TILE 256

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RLSUB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RLSUB_CLONES
#endif

/* Stages h0, 2 h0, ... < m on every group of m strided rows: x[k * s + j] for j < w, where the
 * "row" k runs over 0..m-1 with stride s. Two stages are fused per pass (radix 4), so a block held
 * in cache is read and written half as often; an odd stage count ends with one radix-2 pass. */
static inline __attribute__((always_inline)) void fwht_strided(float *restrict x, int64_t m, int64_t s, int64_t w) {
    int64_t h = 1;
    for (; 4 * h <= m; h *= 4) {
        for (int64_t i = 0; i < m; i += 4 * h) {
            for (int64_t k = i; k < i + h; k++) {
                float *restrict p0 = x + k * s;
                float *restrict p1 = x + (k + h) * s;
                float *restrict p2 = x + (k + 2 * h) * s;
                float *restrict p3 = x + (k + 3 * h) * s;
                for (int64_t j = 0; j < w; j++) {
                    float a = p0[j], b = p1[j], c = p2[j], d = p3[j];
                    float s0 = a + b, d0 = a - b, s1 = c + d, d1 = c - d;
                    p0[j] = s0 + s1;
                    p1[j] = d0 + d1;
                    p2[j] = s0 - s1;
                    p3[j] = d0 - d1;
                }
            }
        }
    }
    if (h < m) {
        for (int64_t k = 0; k < h; k++) {
            float *restrict lo = x + k * s;
            float *restrict hi = x + (k + h) * s;
            for (int64_t j = 0; j < w; j++) {
                float a = lo[j], b = hi[j];
                lo[j] = a + b;
                hi[j] = a - b;
            }
        }
    }
}

/* All log2(m) stages on one contiguous block of m floats: stages 1 and 2 fused as a size-4
 * transform per group of 4, stages 4 and 8 within each group of 16 (4 rows of 4), then the rest
 * on the block seen as (m / 16) rows of 16 floats. Constant widths let the compiler vectorise. */
RLSUB_CLONES
static void fwht_block(float *restrict x, int64_t m) {
    if (m < 16) {
        fwht_strided(x, m, 1, 1);
        return;
    }
    for (int64_t i = 0; i < m; i += 4) {
        float a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
        float s0 = a + b, d0 = a - b, s1 = c + d, d1 = c - d;
        x[i] = s0 + s1;
        x[i + 1] = d0 + d1;
        x[i + 2] = s0 - s1;
        x[i + 3] = d0 - d1;
    }
    for (int64_t i = 0; i < m; i += 16) fwht_strided(x + i, 4, 4, 4);
    fwht_strided(x, m / 16, 16, 16);
}

/* The stages that mix blocks: the vector as r rows of BLOCK floats, TILE columns at a time. */
RLSUB_CLONES
static void fwht_across(float *restrict x, int64_t r) {
    for (int64_t c0 = 0; c0 < BLOCK; c0 += TILE) fwht_strided(x + c0, r, BLOCK, TILE);
}

/* The AVX2 path (chosen at import when the CPU has AVX2): the same butterflies in the same order as
 * the generic code above, so the results are bit-identical, but three stages per pass over data held
 * in registers (eight vectors of 8 floats), and the lowest three stages inside each vector with
 * permutes instead of scalar code. Its gain over the generic code (compiled for AVX2) is measured by
 * scripts/bench_supervised.py, which times the projection on both paths (results/benchmarks/). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RLSUB_X86 1
#include <immintrin.h>
#define AVX2_FN static inline __attribute__((always_inline, target("avx2")))
#define AVX2_OUTER static __attribute__((target("avx2")))

/* Stages h = 1, 2, 4 inside one vector of 8 floats. a + b and a - b of each pair are computed as
 * such (b + a is the same float; s - v below is a - b with a the lower lane). */
AVX2_FN __m256 in_vector3(__m256 v) {
    __m256 s = _mm256_permute_ps(v, 0xB1);                 /* lanes 1 0 3 2 5 4 7 6 */
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
    s = _mm256_permute_ps(v, 0x4E);                        /* lanes 2 3 0 1 6 7 4 5 */
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
    s = _mm256_permute2f128_ps(v, v, 0x01);                /* halves swapped */
    return _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
}

#define BF(a, b)                                   \
    do {                                           \
        __m256 t_ = a;                             \
        a = _mm256_add_ps(t_, b);                  \
        b = _mm256_sub_ps(t_, b);                  \
    } while (0)

/* Stages 1, 2, 4 across 8 vectors r[0..7] (vector i and i + h are a pair). */
AVX2_FN void across8(__m256 *r) {
    BF(r[0], r[1]); BF(r[2], r[3]); BF(r[4], r[5]); BF(r[6], r[7]);
    BF(r[0], r[2]); BF(r[1], r[3]); BF(r[4], r[6]); BF(r[5], r[7]);
    BF(r[0], r[4]); BF(r[1], r[5]); BF(r[2], r[6]); BF(r[3], r[7]);
}

/* Stages over m strided rows (row k at x + k * s, w floats wide, w a multiple of 8), in ascending
 * order, three at a time while three remain, then two or one. */
AVX2_OUTER void strided_avx2(float *x, int64_t m, int64_t s, int64_t w) {
    int64_t h = 1;
    for (; 8 * h <= m; h *= 8)
        for (int64_t i = 0; i < m; i += 8 * h)
            for (int64_t k = i; k < i + h; k++)
                for (int64_t j = 0; j < w; j += 8) {
                    __m256 r[8];
                    for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(x + (k + q * h) * s + j);
                    across8(r);
                    for (int q = 0; q < 8; q++) _mm256_storeu_ps(x + (k + q * h) * s + j, r[q]);
                }
    if (4 * h <= m) {
        for (int64_t k = 0; k < h; k++)
            for (int64_t j = 0; j < w; j += 8) {
                float *p0 = x + k * s + j, *p1 = p0 + h * s, *p2 = p1 + h * s, *p3 = p2 + h * s;
                __m256 a = _mm256_loadu_ps(p0), b = _mm256_loadu_ps(p1), c = _mm256_loadu_ps(p2), d = _mm256_loadu_ps(p3);
                BF(a, b); BF(c, d); BF(a, c); BF(b, d);
                _mm256_storeu_ps(p0, a); _mm256_storeu_ps(p1, b); _mm256_storeu_ps(p2, c); _mm256_storeu_ps(p3, d);
            }
        h *= 4;
    }
    if (2 * h <= m) {
        for (int64_t k = 0; k < h; k++)
            for (int64_t j = 0; j < w; j += 8) {
                float *p0 = x + k * s + j, *p1 = p0 + h * s;
                __m256 a = _mm256_loadu_ps(p0), b = _mm256_loadu_ps(p1);
                BF(a, b);
                _mm256_storeu_ps(p0, a); _mm256_storeu_ps(p1, b);
            }
    }
}

/* All stages of a contiguous block of m >= 64 floats: stages 1..32 on each group of 64 floats in
 * registers, then the rest on the block seen as m / 64 rows of 64 floats. */
AVX2_OUTER void block_avx2(float *x, int64_t m) {
    for (int64_t i = 0; i < m; i += 64) {
        __m256 r[8];
        for (int q = 0; q < 8; q++) r[q] = in_vector3(_mm256_loadu_ps(x + i + 8 * q));
        across8(r);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(x + i + 8 * q, r[q]);
    }
    if (m > 64) strided_avx2(x, m / 64, 64, 64);
}
#endif

/* 1 when the AVX2 path runs (set at import from the CPU, or by simd_() for tests). */
static int use_simd = 0;

static void block_any(float *x, int64_t m) {
#ifdef RLSUB_X86
    if (use_simd && m >= 64) {
        block_avx2(x, m);
        return;
    }
#endif
    fwht_block(x, m);
}

static void across_any(float *x, int64_t r) {
#ifdef RLSUB_X86
    if (use_simd) {
        for (int64_t c0 = 0; c0 < BLOCK; c0 += TILE) strided_avx2(x + c0, r, BLOCK, TILE);
        return;
    }
#endif
    fwht_across(x, r);
}

static void fwht(float *x, int64_t n) {
    if (n <= BLOCK) {
        block_any(x, n);
        return;
    }
    int64_t r = n / BLOCK;
    for (int64_t b = 0; b < r; b++) block_any(x + b * BLOCK, BLOCK);
    across_any(x, r);
}

/* fwht of y[b, :len] zero-padded to n floats, written to out (batch rows of n): the padding is
 * written block by block as the blocks are transformed, and a block that is all padding is left
 * zero without transforming it (a transform of zeros is zeros, +0.0 exactly). Bit-identical to
 * zeroing out, copying y in and calling fwht. */
static void pad_fwht(float *out, const float *y, int64_t len, int64_t n, int64_t batch) {
    int64_t width = n < BLOCK ? n : BLOCK;
    for (int64_t b = 0; b < batch; b++) {
        float *restrict o = out + b * n;
        const float *restrict v = y + b * len;
        for (int64_t start = 0; start < n; start += width) {
            int64_t have = len - start;
            have = have < 0 ? 0 : (have > width ? width : have);
            if (have > 0) memcpy(o + start, v + start, (size_t)have * sizeof(float));
            if (have < width) memset(o + start + have, 0, (size_t)(width - have) * sizeof(float));
            if (have > 0) block_any(o + start, width);
        }
        if (n > BLOCK) across_any(o, n / BLOCK);
    }
}

/* Fastfood's two gathers, fused with their diagonal scalings (the caller checks shapes):
 *   gather_mul: out[b, k] = src[b, idx[k]] * g[k]                        (k < n_out)
 * src holds batch rows of n_src floats; idx and g have n_out entries. */
static void gather_mul(float *out, const float *src, const int32_t *idx, const float *g,
                       int64_t n_out, int64_t n_src, int64_t batch) {
    for (int64_t b = 0; b < batch; b++) {
        float *restrict o = out + b * n_out;
        const float *restrict v = src + b * n_src;
        for (int64_t k = 0; k < n_out; k++) o[k] = v[idx[k]] * g[k];
    }
}

/* gather_mul followed by fwht of each output row (n_out a power of two), fused: each block is
 * gathered and transformed while it is in cache, instead of being written out by the gather and read
 * back by the transform. Bit-identical to gather_mul then fwht. */
static void gather_fwht(float *out, const float *src, const int32_t *idx, const float *g,
                        int64_t n_out, int64_t n_src, int64_t batch) {
    int64_t width = n_out < BLOCK ? n_out : BLOCK;
    for (int64_t b = 0; b < batch; b++) {
        float *o = out + b * n_out;
        const float *v = src + b * n_src;
        for (int64_t start = 0; start < n_out; start += width) {
            gather_mul(o + start, v, idx + start, g + start, width, n_src, 1);
            block_any(o + start, width);
        }
        if (n_out > BLOCK) across_any(o, n_out / BLOCK);
    }
}

/* The adjoint of gather_mul: out[b, c] = sum_{k: idx[k] = c} src[b, k] * g[k] (c < m).
 * src is read in order and out (m floats) stays in cache, unlike a gather through the inverse
 * permutation, whose reads jump across the whole vector. */
static void scatter_add(float *out, const float *src, const int32_t *idx, const float *g,
                        int64_t n_in, int64_t m, int64_t batch) {
    for (int64_t b = 0; b < batch; b++) {
        float *restrict o = out + b * m;
        const float *restrict v = src + b * n_in;
        for (int64_t c = 0; c < m; c++) o[c] = 0.0f;
        for (int64_t k = 0; k < n_in; k++) o[idx[k]] += v[k] * g[k];
    }
}

/* gather_mul_(out, src, idx, g, n_idx, n_src, 1, batch), gather_fwht_(the same arguments, n_idx a
 * power of two) and scatter_add_(out, src, idx, g, n_idx, n_idx, m, batch): addresses of float32 /
 * int32 data. mode: 0 gather_mul, 1 scatter_add, 2 gather_fwht. */
static PyObject *py_gather(PyObject *self, PyObject *args, int mode) {
    int blocksum = mode == 1;
    unsigned long long out, src, idx, g;
    long long n1, n_src, n2, batch;
    if (!PyArg_ParseTuple(args, "KKKKLLLL", &out, &src, &idx, &g, &n1, &n_src, &n2, &batch)) return NULL;
    if (n1 < 0 || n_src < 1 || n2 < 1 || batch < 0 || (blocksum && n_src != n1)) {
        PyErr_SetString(PyExc_ValueError, "gather: bad sizes");
        return NULL;
    }
    if (mode == 2 && (n1 < 1 || (n1 & (n1 - 1)) != 0)) {
        PyErr_SetString(PyExc_ValueError, "gather_fwht_: n_out must be a power of two");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (mode == 2)
        gather_fwht((float *)(uintptr_t)out, (const float *)(uintptr_t)src,
                    (const int32_t *)(uintptr_t)idx, (const float *)(uintptr_t)g, n1, n_src, batch);
    else if (blocksum)
        scatter_add((float *)(uintptr_t)out, (const float *)(uintptr_t)src,
                    (const int32_t *)(uintptr_t)idx, (const float *)(uintptr_t)g, n1, n2, batch);
    else
        gather_mul((float *)(uintptr_t)out, (const float *)(uintptr_t)src,
                   (const int32_t *)(uintptr_t)idx, (const float *)(uintptr_t)g, n1, n_src, batch);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_gather_mul(PyObject *self, PyObject *args) { return py_gather(self, args, 0); }
static PyObject *py_scatter_add(PyObject *self, PyObject *args) { return py_gather(self, args, 1); }
static PyObject *py_gather_fwht(PyObject *self, PyObject *args) { return py_gather(self, args, 2); }

/* simd_(flag): flag 1 or 0 turns the AVX2 path on (where the CPU has AVX2) or off, -1 leaves it;
 * returns whether it is on. */
static PyObject *py_simd(PyObject *self, PyObject *args) {
    int flag;
    if (!PyArg_ParseTuple(args, "i", &flag)) return NULL;
#ifdef RLSUB_X86
    if (flag >= 0) use_simd = flag && __builtin_cpu_supports("avx2");
#endif
    return PyBool_FromLong(use_simd);
}

/* fwht_(address, n, batch): transforms batch contiguous vectors of n floats at address, in place. */
static PyObject *py_fwht(PyObject *self, PyObject *args) {
    unsigned long long addr;
    long long n, batch;
    if (!PyArg_ParseTuple(args, "KLL", &addr, &n, &batch)) return NULL;
    if (n < 1 || (n & (n - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "fwht_: n must be a power of two");
        return NULL;
    }
    if (batch < 0) {
        PyErr_SetString(PyExc_ValueError, "fwht_: batch must be >= 0");
        return NULL;
    }
    float *x = (float *)(uintptr_t)addr;
    Py_BEGIN_ALLOW_THREADS
    for (long long b = 0; b < batch; b++) fwht(x + b * n, n);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* pad_fwht_(out, y, len, n, batch): see pad_fwht. */
static PyObject *py_pad_fwht(PyObject *self, PyObject *args) {
    unsigned long long out, y;
    long long len, n, batch;
    if (!PyArg_ParseTuple(args, "KKLLL", &out, &y, &len, &n, &batch)) return NULL;
    if (n < 1 || (n & (n - 1)) != 0 || len < 0 || len > n || batch < 0) {
        PyErr_SetString(PyExc_ValueError, "pad_fwht_: n must be a power of two, 0 <= len <= n, batch >= 0");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pad_fwht((float *)(uintptr_t)out, (const float *)(uintptr_t)y, len, n, batch);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fwht_", py_fwht, METH_VARARGS,
     "fwht_(address, n, batch): in-place unnormalised Walsh-Hadamard transform of float32 data."},
    {"gather_mul_", py_gather_mul, METH_VARARGS,
     "gather_mul_(out, src, idx, g, n_out, n_src, 1, batch): out[b,k] = src[b,idx[k]] * g[k]."},
    {"scatter_add_", py_scatter_add, METH_VARARGS,
     "scatter_add_(out, src, idx, g, n_in, n_in, m, batch): out[b,c] = sum_{k: idx[k]=c} src[b,k] g[k]."},
    {"gather_fwht_", py_gather_fwht, METH_VARARGS,
     "gather_fwht_(out, src, idx, g, n_out, n_src, 1, batch): fwht of gather_mul_'s rows, fused."},
    {"simd_", py_simd, METH_VARARGS, "simd_(flag): turn the AVX2 path on (1) or off (0), -1 to ask; returns its state."},
    {"pad_fwht_", py_pad_fwht, METH_VARARGS,
     "pad_fwht_(out, y, len, n, batch): out[b] = fwht(y[b, :len] zero-padded to n)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fwht", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fwht(void) {
#ifdef RLSUB_X86
    __builtin_cpu_init();
    use_simd = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
