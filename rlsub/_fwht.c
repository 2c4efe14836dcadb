/* In-place unnormalised Walsh-Hadamard transform of float32 vectors (rlsub's Fastfood kernel).
 *
 * A radix-2 transform of n = 2^k floats makes k passes over the vector; at n = 2^20 (4 MB) each
 * pass streams through memory. Here the work is split so that memory is traversed twice:
 *   1. every contiguous block of BLOCK floats (16 KB, fits in L1) gets all of its log2(BLOCK) stages;
 *   2. viewing the vector as an R x BLOCK matrix (R = n / BLOCK), the remaining log2(R) stages act
 *      along its rows; they run tile by tile, a tile being TILE adjacent columns (R x TILE floats,
 *      within L2), so each tile is read once and written once.
 * The order of the stages does not matter (H_n = H_R (x) H_BLOCK, and the factors commute), and
 * the inner loops run over contiguous floats so the compiler vectorises them.
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

static void fwht(float *x, int64_t n) {
    if (n <= BLOCK) {
        fwht_block(x, n);
        return;
    }
    int64_t r = n / BLOCK;
    for (int64_t b = 0; b < r; b++) fwht_block(x + b * BLOCK, BLOCK);
    fwht_across(x, r);
}

/* fwht of y[b, :len] zero-padded to n floats, written to out (batch rows of n): the padding is
 * written block by block as the blocks are transformed, and a block that is all padding is left
 * zero without transforming it (a transform of zeros is zeros, +0.0 exactly). Bit-identical to
 * zeroing out, copying y in and calling fwht. */
RLSUB_CLONES
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
            if (have > 0) fwht_block(o + start, width);
        }
        if (n > BLOCK) fwht_across(o, n / BLOCK);
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

/* gather_mul_(out, src, idx, g, n_idx, n_src, 1, batch) and
 * scatter_add_(out, src, idx, g, n_idx, n_idx, m, batch): addresses of float32 / int32 data. */
static PyObject *py_gather(PyObject *self, PyObject *args, int blocksum) {
    unsigned long long out, src, idx, g;
    long long n1, n_src, n2, batch;
    if (!PyArg_ParseTuple(args, "KKKKLLLL", &out, &src, &idx, &g, &n1, &n_src, &n2, &batch)) return NULL;
    if (n1 < 0 || n_src < 1 || n2 < 1 || batch < 0 || (blocksum && n_src != n1)) {
        PyErr_SetString(PyExc_ValueError, "gather: bad sizes");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (blocksum)
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
    {"pad_fwht_", py_pad_fwht, METH_VARARGS,
     "pad_fwht_(out, y, len, n, batch): out[b] = fwht(y[b, :len] zero-padded to n)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fwht", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fwht(void) { return PyModule_Create(&module); }
