/* Per-step helpers of the ES policy path (rlsub.es.policy). The elementwise ones fuse a few numpy
 * operations on short vectors into one call: on a vector of a few hundred floats a numpy ufunc costs
 * about half a microsecond of call overhead, as much as its arithmetic, and Humanoid's policy path
 * made about a dozen such calls a step (issue 11). They do exactly the float operations of the numpy
 * code they replace, element by element and in the same order, so their results are bit-identical
 * to it: built with -ffp-contract=off, so that no multiply-add is fused into one rounding.
 *
 *   obs_norm(out, obs, mean, std, clip):      out = clip((float32(obs) - mean) / std, -clip, clip)  [float32]
 *   accumulate(s, ssq, obs):                  s += obs; ssq += obs * obs                            [float64]
 *   finish(out, bias, noise, low, high):      out = clip(out + bias + noise, low, high)             [float32]
 *   pair(plus, minus, center, delta, sigma):  delta *= sigma; plus, minus = center + delta, - delta [float32]
 *   matvec_skip_zeros(y, wt, h, b):           y = wt.T @ h + b over the nonzero h only              [float32]
 *   matvec_delta(y, wt, h, href, yref):       y = yref + wt.T @ (h - href) over the changed h only  [float32]
 *   conv_delta(out, work, x, xref, base, wt, geometry, limit):  conv(x) = base + conv(x - xref)     [float32]
 * (the last two then make h, y and x, conv(x) the references of the next call)
 * The first four are bit-identical to numpy; the last three replace torch's F.linear and F.conv2d
 * for the Atari policy's layers and sum in their own (fixed) order.
 *
 * Arguments are C-contiguous buffers (numpy arrays) of matching lengths; obs may be float64 or float32.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#define RLSUB_SSE2 /* x86-64 always has it: bit masks of 4 compared floats */
#endif

/* A contiguous buffer of n items of format fmt ('f' or 'd'; 0 accepts either), or an error. */
static int get(PyObject *obj, Py_buffer *view, int writable, char fmt, Py_ssize_t n, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    int ok = (f[0] == 'f' || f[0] == 'd') && f[1] == '\0' && (fmt == 0 || f[0] == fmt);
    if (!ok || (n >= 0 && view->len / view->itemsize != n)) {
        const char *want = fmt == 'd' ? "float64" : (fmt == 'f' ? "float32" : "float32 or float64");
        Py_ssize_t got = view->len / (view->itemsize ? view->itemsize : 1);
        if (n >= 0)
            PyErr_Format(PyExc_ValueError, "%s: expected %zd %s values, got %zd of format '%s'", name, n, want, got,
                         view->format ? view->format : "B");
        else
            PyErr_Format(PyExc_ValueError, "%s: expected %s values, got format '%s'", name, want,
                         view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static Py_ssize_t count(const Py_buffer *v) { return v->len / v->itemsize; }

/* The buffers a call has taken so far (at most 6), released together on every path out of it. */
typedef struct {
    Py_buffer v[6];
    char writable[6];
    int n;
} Bufs;

/* obj as the next buffer of b (checked as get does): its view, or NULL with the error set. */
static Py_buffer *take(Bufs *b, PyObject *obj, int writable, char fmt, Py_ssize_t n, const char *name) {
    if (b->n >= (int)(sizeof b->v / sizeof b->v[0])) {  /* a wrapper taking more than Bufs holds */
        PyErr_Format(PyExc_SystemError, "%s: more buffers than Bufs holds", name);
        return NULL;
    }
    Py_buffer *v = &b->v[b->n];
    if (get(obj, v, writable, fmt, n, name) != 0) return NULL;
    b->writable[b->n++] = (char)writable;
    return v;
}

static void release(Bufs *b) {
    while (b->n > 0) PyBuffer_Release(&b->v[--b->n]);
}

/* 0, or -1 with a ValueError when a buffer of b that the call writes shares memory with another of b. */
static int distinct(const Bufs *b, const char *name) {
    for (int i = 0; i < b->n; i++)
        for (int j = 0; j < b->n; j++) {
            const char *a0 = b->v[i].buf, *b0 = b->v[j].buf;
            if (i != j && b->writable[i] && a0 < b0 + b->v[j].len && b0 < a0 + b->v[i].len) {
                PyErr_Format(PyExc_ValueError, "%s: the arrays must not share memory", name);
                return -1;
            }
        }
    return 0;
}

/* obs_norm(out, obs, mean, std, clip): np.subtract(obs, mean, out=out, dtype=float32); out /= std;
 * np.minimum(out, clip, out=out); np.maximum(out, -clip, out=out). NaN stays NaN, as with numpy. */
static PyObject *py_obs_norm(PyObject *self, PyObject *args) {
    PyObject *o_out, *o_obs, *o_mean, *o_std;
    double clip;
    if (!PyArg_ParseTuple(args, "OOOOd", &o_out, &o_obs, &o_mean, &o_std, &clip)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *out, *obs, *mean, *std;
    if (!(out = take(&b, o_out, 1, 'f', -1, "obs_norm out"))) return NULL;
    Py_ssize_t n = count(out);
    if (!(obs = take(&b, o_obs, 0, 0, n, "obs_norm obs")) || !(mean = take(&b, o_mean, 0, 'f', n, "obs_norm mean"))
        || !(std = take(&b, o_std, 0, 'f', n, "obs_norm std"))) {
        release(&b);
        return NULL;
    }
    float *x = out->buf;
    const float *m = mean->buf, *s = std->buf;
    const float hi = (float)clip, lo = -(float)clip;
    if (obs->itemsize == 8) {
        const double *v = obs->buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            float t = ((float)v[i] - m[i]) / s[i];
            t = t > hi ? hi : t;
            x[i] = t < lo ? lo : t;
        }
    } else {
        const float *v = obs->buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            float t = (v[i] - m[i]) / s[i];
            t = t > hi ? hi : t;
            x[i] = t < lo ? lo : t;
        }
    }
    release(&b);
    Py_RETURN_NONE;
}

/* accumulate(s, ssq, obs): s += float64(obs); ssq += float64(obs) * float64(obs) (the product
 * rounded, then added). */
static PyObject *py_accumulate(PyObject *self, PyObject *args) {
    PyObject *o_s, *o_ssq, *o_obs;
    if (!PyArg_ParseTuple(args, "OOO", &o_s, &o_ssq, &o_obs)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *s, *ssq, *obs;
    if (!(s = take(&b, o_s, 1, 'd', -1, "accumulate s"))) return NULL;
    Py_ssize_t n = count(s);
    if (!(ssq = take(&b, o_ssq, 1, 'd', n, "accumulate ssq")) || !(obs = take(&b, o_obs, 0, 0, n, "accumulate obs"))) {
        release(&b);
        return NULL;
    }
    double *a = s->buf, *q = ssq->buf;
    if (obs->itemsize == 8) {
        const double *v = obs->buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = v[i];
            a[i] += t;
            double p = t * t;
            q[i] += p;
        }
    } else {
        const float *v = obs->buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = (double)v[i];
            a[i] += t;
            double p = t * t;
            q[i] += p;
        }
    }
    release(&b);
    Py_RETURN_NONE;
}

/* finish(out, bias, noise, low, high): out += bias; out += noise (unless noise is None);
 * np.minimum(out, high, out=out); np.maximum(out, low, out=out). */
static PyObject *py_finish(PyObject *self, PyObject *args) {
    PyObject *o_out, *o_b, *o_noise, *o_lo, *o_hi;
    if (!PyArg_ParseTuple(args, "OOOOO", &o_out, &o_b, &o_noise, &o_lo, &o_hi)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *out, *bias, *noise = NULL, *lo, *hi;
    if (!(out = take(&b, o_out, 1, 'f', -1, "finish out"))) return NULL;
    Py_ssize_t n = count(out);
    if (!(bias = take(&b, o_b, 0, 'f', n, "finish bias"))
        || (o_noise != Py_None && !(noise = take(&b, o_noise, 0, 'f', n, "finish noise")))
        || !(lo = take(&b, o_lo, 0, 'f', n, "finish low")) || !(hi = take(&b, o_hi, 0, 'f', n, "finish high"))) {
        release(&b);
        return NULL;
    }
    float *x = out->buf;
    const float *bb = bias->buf, *l = lo->buf, *h = hi->buf;
    const float *z = noise ? noise->buf : NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        float t = x[i] + bb[i];
        if (z) t = t + z[i];
        t = t > h[i] ? h[i] : t;
        x[i] = t < l[i] ? l[i] : t;
    }
    release(&b);
    Py_RETURN_NONE;
}

/* pair(plus, minus, center, delta, sigma): delta *= float32(sigma); plus = center + delta;
 * minus = center - delta, in one pass (numpy's three passes over D floats, per mirrored pair). */
static PyObject *py_pair(PyObject *self, PyObject *args) {
    PyObject *o_p, *o_m, *o_c, *o_d;
    double sigma;
    if (!PyArg_ParseTuple(args, "OOOOd", &o_p, &o_m, &o_c, &o_d, &sigma)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *p, *m, *c, *d;
    if (!(p = take(&b, o_p, 1, 'f', -1, "pair plus"))) return NULL;
    Py_ssize_t n = count(p);
    if (!(m = take(&b, o_m, 1, 'f', n, "pair minus")) || !(c = take(&b, o_c, 0, 'f', n, "pair center"))
        || !(d = take(&b, o_d, 1, 'f', n, "pair delta"))) {
        release(&b);
        return NULL;
    }
    float *restrict pp = p->buf, *restrict mm = m->buf, *restrict dd = d->buf;
    const float *restrict cc = c->buf;
    const float s = (float)sigma;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        float t = dd[i] * s;
        dd[i] = t;
        pp[i] = cc[i] + t;
        mm[i] = cc[i] - t;
    }
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RLSUB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RLSUB_CLONES
#endif

/* y[i] = sum over j with h[j] != 0, in increasing j, of wt[j, i] * h[j], then + b[i]. The AVX2
 * clone does the same operations lane by lane as the SSE2 one (no fused multiply-add), so the
 * result does not depend on which one runs. */
RLSUB_CLONES
static void sparse_matvec_t(float *restrict y, const float *restrict wt, const float *restrict h,
                            const float *restrict b, Py_ssize_t k, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) y[i] = 0.0f;
    for (Py_ssize_t j = 0; j < k; j++) {
        const float hj = h[j];
        if (hj == 0.0f) continue;
        const float *restrict row = wt + j * n;
        for (Py_ssize_t i = 0; i < n; i++) y[i] += row[i] * hj;
    }
    for (Py_ssize_t i = 0; i < n; i++) y[i] += b[i];
}

/* matvec_skip_zeros(y, wt, h, b): y = W h + b with W given transposed (wt: k x n, C order), reading
 * only the rows of wt whose h[j] is nonzero: after a ReLU about half of them, so about half of the
 * weights cross the memory bus. */
static PyObject *py_matvec_skip_zeros(PyObject *self, PyObject *args) {
    PyObject *o_y, *o_wt, *o_h, *o_b;
    if (!PyArg_ParseTuple(args, "OOOO", &o_y, &o_wt, &o_h, &o_b)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *y, *wt, *h, *bias;
    if (!(y = take(&b, o_y, 1, 'f', -1, "matvec_skip_zeros y"))) return NULL;
    Py_ssize_t n = count(y);
    if (!(h = take(&b, o_h, 0, 'f', -1, "matvec_skip_zeros h"))) goto fail;
    Py_ssize_t k = count(h);
    if (!(wt = take(&b, o_wt, 0, 'f', k * n, "matvec_skip_zeros wt"))
        || !(bias = take(&b, o_b, 0, 'f', n, "matvec_skip_zeros b")))
        goto fail;
    Py_BEGIN_ALLOW_THREADS
    sparse_matvec_t(y->buf, wt->buf, h->buf, bias->buf, k, n);
    Py_END_ALLOW_THREADS
    release(&b);
    Py_RETURN_NONE;
fail:
    release(&b);
    return NULL;
}

/* The delta forms of a convolution and a linear layer (the Atari policy's three big layers). An
 * Atari observation differs from the one before it in well under 1% of its pixels (the paddles,
 * the ball, the score), so a layer's output is its output at the previous step plus the layer
 * applied to the few inputs that changed: conv(x) = conv(xref) + conv_without_bias(x - xref),
 * exactly in real arithmetic (zero padding included), in another float rounding than the dense
 * product. Each call makes its input and output the reference of the next one (updating only the
 * entries that changed). The callers (rlsub.es.policy._DeltaConv, _SkipZeros) take the dense path
 * and start a new reference whenever the delta would not be cheaper, every REFRESH steps (so that
 * rounding does not accumulate over a long episode), and at every episode start (so that an
 * episode's numbers do not depend on the episodes before it). A non-finite change (NaN or an
 * infinity in x or xref) also sends the caller to the dense path. */

/* geometry of conv_delta: C, H, W (input), F (filters), KH, KW (kernel), SH, SW (stride), PH, PW
 * (zero padding on top / left; bottom and right follow from OH, OW), OH, OW (output) */
enum { G_C, G_H, G_W, G_F, G_KH, G_KW, G_SH, G_SW, G_PH, G_PW, G_OH, G_OW, G_N };

/* out [F, OH*OW] = base (the reference output, bias included) + the convolution without bias of
 * x - xref over the changed inputs only. The changed inputs are found row by row (their bit
 * patterns compared); each, in increasing order, adds w[:, c, ki, kj] * (x - xref) into a
 * channels-last row per output position (acc [OH*OW, F], contiguous over the filters), and the
 * touched rows are added to out at the end. Then xref = x and base = out (where they differ).
 * -1 (nothing written) when more than limit inputs changed or a change is not finite. F is a
 * compile-time constant in the calls for 16 and 32 filters (the Atari policy's), so the filter
 * loops become a few vector instructions. */
static inline __attribute__((always_inline)) Py_ssize_t
conv_delta_f(float *restrict out, float *restrict acc, const float *restrict x, float *restrict xref,
             float *restrict base, const float *restrict wt, const Py_ssize_t *g, Py_ssize_t limit,
             int32_t *restrict scratch, char *restrict mark, const Py_ssize_t F) {
    const Py_ssize_t C = g[G_C], H = g[G_H], W = g[G_W], KH = g[G_KH], KW = g[G_KW];
    const Py_ssize_t SH = g[G_SH], SW = g[G_SW], PH = g[G_PH], PW = g[G_PW], OH = g[G_OH], OW = g[G_OW];
    const Py_ssize_t P = OH * OW;
    /* scratch: the changed inputs' c, i and j (limit each), the touched output positions
     * (P), and per input row / column the first and last output row / column whose window holds it */
    int32_t *restrict cs = scratch, *restrict is = cs + limit, *restrict js = is + limit;
    int32_t *restrict touched = js + limit, *restrict oh0 = touched + P, *restrict oh1 = oh0 + H;
    int32_t *restrict ow0 = oh1 + H, *restrict ow1 = ow0 + W;
    Py_ssize_t changed = 0;
    for (Py_ssize_t c = 0; c < C; c++)
        for (Py_ssize_t i = 0; i < H; i++) {
            const Py_ssize_t row = (c * H + i) * W;
            const uint32_t *restrict xb = (const uint32_t *)(x + row), *restrict rb = (const uint32_t *)(xref + row);
            int32_t n_row = 0; /* a loop the compiler vectorises; most rows have no change */
            for (Py_ssize_t j = 0; j < W; j++) n_row += xb[j] != rb[j];
            if (!n_row) continue;
            Py_ssize_t j = 0;
#ifdef RLSUB_SSE2
            for (; j + 4 <= W; j += 4) { /* 4 at a time: a bit mask of the changed ones */
                __m128i a = _mm_loadu_si128((const __m128i *)(xb + j)), r = _mm_loadu_si128((const __m128i *)(rb + j));
                unsigned bits = 15u & ~(unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(a, r)));
                while (bits) {
                    const Py_ssize_t jj = j + __builtin_ctz(bits);
                    bits &= bits - 1;
                    const float v = x[row + jj] - xref[row + jj];
                    if (changed == limit || !(v - v == 0.0f)) return -1;
                    cs[changed] = (int32_t)c;
                    is[changed] = (int32_t)i;
                    js[changed++] = (int32_t)jj;
                }
            }
#endif
            for (; j < W; j++) {
                if (xb[j] == rb[j]) continue;
                const float v = x[row + j] - xref[row + j];
                if (changed == limit || !(v - v == 0.0f)) return -1;
                cs[changed] = (int32_t)c;
                is[changed] = (int32_t)i;
                js[changed++] = (int32_t)j;
            }
        }
    /* output rows holding input row i: oh with 0 <= i + PH - oh * SH < KH, within [0, OH) */
    for (Py_ssize_t i = 0; i < H; i++) {
        Py_ssize_t hi = (i + PH) / SH, lo = i + PH - KH + 1;
        oh0[i] = (int32_t)(lo <= 0 ? 0 : (lo + SH - 1) / SH);
        oh1[i] = (int32_t)(hi < OH - 1 ? hi : OH - 1);
    }
    for (Py_ssize_t j = 0; j < W; j++) {
        Py_ssize_t hi = (j + PW) / SW, lo = j + PW - KW + 1;
        ow0[j] = (int32_t)(lo <= 0 ? 0 : (lo + SW - 1) / SW);
        ow1[j] = (int32_t)(hi < OW - 1 ? hi : OW - 1);
    }
    Py_ssize_t n_touched = 0;
    for (Py_ssize_t m = 0; m < changed; m++) {
        const Py_ssize_t c = cs[m], i = is[m], j = js[m], k = (c * H + i) * W + j;
        const float v = x[k] - xref[k];
        for (Py_ssize_t oh = oh0[i]; oh <= oh1[i]; oh++) {
            const Py_ssize_t ki = i + PH - oh * SH;
            for (Py_ssize_t ow = ow0[j]; ow <= ow1[j]; ow++) {
                const Py_ssize_t kj = j + PW - ow * SW, p = oh * OW + ow;
                const float *restrict wrow = wt + ((c * KH + ki) * KW + kj) * F;
                float *restrict arow = acc + p * F;
                if (!mark[p]) {
                    mark[p] = 1;
                    touched[n_touched++] = (int32_t)p;
                    for (Py_ssize_t f = 0; f < F; f++) arow[f] = 0.0f;
                }
                for (Py_ssize_t f = 0; f < F; f++) arow[f] += wrow[f] * v;
            }
        }
    }
    for (Py_ssize_t q = 0; q < F * P; q++) out[q] = base[q];
    for (Py_ssize_t m = 0; m < n_touched; m++) {
        const Py_ssize_t p = touched[m];
        const float *restrict arow = acc + p * F;
        for (Py_ssize_t f = 0; f < F; f++) {
            out[f * P + p] += arow[f];
            base[f * P + p] = out[f * P + p];
        }
        mark[p] = 0;
    }
    for (Py_ssize_t m = 0; m < changed; m++) {
        const Py_ssize_t k = ((Py_ssize_t)cs[m] * H + is[m]) * W + js[m];
        xref[k] = x[k];
    }
    return changed;
}

RLSUB_CLONES
static Py_ssize_t conv_delta_core(float *restrict out, float *restrict acc, const float *restrict x,
                                  float *restrict xref, float *restrict base, const float *restrict wt,
                                  const Py_ssize_t *g, Py_ssize_t limit, int32_t *restrict scratch,
                                  char *restrict mark) {
    if (g[G_F] == 16) return conv_delta_f(out, acc, x, xref, base, wt, g, limit, scratch, mark, 16);
    if (g[G_F] == 32) return conv_delta_f(out, acc, x, xref, base, wt, g, limit, scratch, mark, 32);
    return conv_delta_f(out, acc, x, xref, base, wt, g, limit, scratch, mark, g[G_F]);
}

/* conv_delta(out, work, x, xref, base, wt, geometry, limit) -> the number of changed inputs, or -1
 * (nothing written) when more than limit changed or a change is not finite. x, xref: [C, H, W];
 * base: conv(xref) + bias as [F, OH, OW]; wt: the weights as [C, KH, KW, F]; out: [F, OH, OW];
 * work: F*OH*OW floats. Afterwards xref holds x and base out. */
static PyObject *py_conv_delta(PyObject *self, PyObject *args) {
    PyObject *o_out, *o_work, *o_x, *o_xref, *o_base, *o_wt;
    Py_ssize_t g[G_N], limit;
    if (!PyArg_ParseTuple(args, "OOOOOO(nnnnnnnnnnnn)n", &o_out, &o_work, &o_x, &o_xref, &o_base, &o_wt, &g[0],
                          &g[1], &g[2], &g[3], &g[4], &g[5], &g[6], &g[7], &g[8], &g[9], &g[10], &g[11], &limit))
        return NULL;
    for (int k = 0; k < G_N; k++) {
        int positive = k != G_PH && k != G_PW;
        if (g[k] < (positive ? 1 : 0)) {
            PyErr_Format(PyExc_ValueError, "conv_delta: geometry entry %d is %zd", k, g[k]);
            return NULL;
        }
    }
    const Py_ssize_t n_in = g[G_C] * g[G_H] * g[G_W], n_out = g[G_F] * g[G_OH] * g[G_OW];
    const Py_ssize_t n_w = g[G_C] * g[G_KH] * g[G_KW] * g[G_F];
    if (n_in > INT32_MAX || n_out > INT32_MAX || n_w > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "conv_delta: layer too large");
        return NULL;
    }
    Bufs b = {.n = 0};
    Py_buffer *out, *work, *x, *xref, *base, *wt;
    if (!(out = take(&b, o_out, 1, 'f', n_out, "conv_delta out")) || !(work = take(&b, o_work, 1, 'f', n_out, "conv_delta work"))
        || !(x = take(&b, o_x, 0, 'f', n_in, "conv_delta x")) || !(xref = take(&b, o_xref, 1, 'f', n_in, "conv_delta xref"))
        || !(base = take(&b, o_base, 1, 'f', n_out, "conv_delta base")) || !(wt = take(&b, o_wt, 0, 'f', n_w, "conv_delta wt"))
        || distinct(&b, "conv_delta") != 0) {
        release(&b);
        return NULL;
    }
    if (limit > n_in) limit = n_in;
    if (limit < 0) limit = 0;
    const Py_ssize_t P = g[G_OH] * g[G_OW];
    int32_t *scratch = PyMem_RawMalloc(sizeof(int32_t) * (size_t)(3 * limit + P + 2 * g[G_H] + 2 * g[G_W]));
    char *mark = PyMem_RawCalloc((size_t)P, 1);
    const int allocated = scratch != NULL && mark != NULL;
    Py_ssize_t changed = -1;
    if (allocated) {
        Py_BEGIN_ALLOW_THREADS
        changed = conv_delta_core(out->buf, work->buf, x->buf, xref->buf, base->buf, wt->buf, g, limit, scratch, mark);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(scratch);
    PyMem_RawFree(mark);
    release(&b);
    return allocated ? PyLong_FromSsize_t(changed) : PyErr_NoMemory();
}

/* y = yref + sum over the j where h[j] and href[j] differ (bit patterns compared), in increasing j,
 * of wt[j, :] * (h[j] - href[j]); then href = h and yref = y. -1 (nothing written) unless fewer
 * entries changed than h has nonzero ones (then reading only the nonzero rows is cheaper), or when
 * a change is not finite. idx: k ints of scratch. */
RLSUB_CLONES
static Py_ssize_t matvec_delta_core(float *restrict y, const float *restrict wt, const float *restrict h,
                                    float *restrict href, float *restrict yref, Py_ssize_t k, Py_ssize_t n,
                                    Py_ssize_t *restrict idx) {
    const uint32_t *restrict hb = (const uint32_t *)h, *restrict rb = (const uint32_t *)href;
    Py_ssize_t changed = 0, nonzero = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        changed += hb[j] != rb[j];
        nonzero += h[j] != 0.0f;
    }
    if (changed >= nonzero) return -1;
    Py_ssize_t m = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        if (hb[j] == rb[j]) continue;
        const float d = h[j] - href[j];
        if (!(d - d == 0.0f)) return -1;
        idx[m++] = j;
    }
    for (Py_ssize_t i = 0; i < n; i++) y[i] = yref[i];
    for (Py_ssize_t q = 0; q < m; q++) {
        const Py_ssize_t j = idx[q];
        const float d = h[j] - href[j];
        const float *restrict row = wt + j * n;
        for (Py_ssize_t i = 0; i < n; i++) y[i] += row[i] * d;
        href[j] = h[j];
    }
    for (Py_ssize_t i = 0; i < n; i++) yref[i] = y[i];
    return changed;
}

/* matvec_delta(y, wt, h, href, yref) -> the number of changed entries of h, or -1 (nothing written);
 * afterwards href holds h and yref y. */
static PyObject *py_matvec_delta(PyObject *self, PyObject *args) {
    PyObject *o_y, *o_wt, *o_h, *o_href, *o_yref;
    if (!PyArg_ParseTuple(args, "OOOOO", &o_y, &o_wt, &o_h, &o_href, &o_yref)) return NULL;
    Bufs b = {.n = 0};
    Py_buffer *y, *wt, *h, *href, *yref;
    if (!(y = take(&b, o_y, 1, 'f', -1, "matvec_delta y"))) return NULL;
    Py_ssize_t n = count(y);
    if (!(h = take(&b, o_h, 0, 'f', -1, "matvec_delta h"))) goto fail;
    Py_ssize_t k = count(h);
    if (!(wt = take(&b, o_wt, 0, 'f', k * n, "matvec_delta wt")) || !(href = take(&b, o_href, 1, 'f', k, "matvec_delta href"))
        || !(yref = take(&b, o_yref, 1, 'f', n, "matvec_delta yref")) || distinct(&b, "matvec_delta") != 0)
        goto fail;
    Py_ssize_t *idx = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)k + 1);
    if (idx == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t changed;
    Py_BEGIN_ALLOW_THREADS
    changed = matvec_delta_core(y->buf, wt->buf, h->buf, href->buf, yref->buf, k, n, idx);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(idx);
    release(&b);
    return PyLong_FromSsize_t(changed);
fail:
    release(&b);
    return NULL;
}

static PyMethodDef methods[] = {
    {"matvec_skip_zeros", py_matvec_skip_zeros, METH_VARARGS,
     "matvec_skip_zeros(y, wt, h, b): y = wt.T @ h + b, skipping the rows of wt where h is zero (float32)."},
    {"conv_delta", py_conv_delta, METH_VARARGS,
     "conv_delta(out, work, x, xref, base, wt, geometry, limit): conv(x) as base + conv(x - xref), or -1."},
    {"matvec_delta", py_matvec_delta, METH_VARARGS,
     "matvec_delta(y, wt, h, href, yref): y = yref + wt.T @ (h - href) over the changed h only, or -1."},
    {"obs_norm", py_obs_norm, METH_VARARGS,
     "obs_norm(out, obs, mean, std, clip): out = clip((float32(obs) - mean) / std, -clip, clip)."},
    {"accumulate", py_accumulate, METH_VARARGS, "accumulate(s, ssq, obs): s += obs; ssq += obs * obs (float64)."},
    {"finish", py_finish, METH_VARARGS,
     "finish(out, bias, noise or None, low, high): out = clip(out + bias + noise, low, high) (float32)."},
    {"pair", py_pair, METH_VARARGS,
     "pair(plus, minus, center, delta, sigma): delta *= sigma; plus = center + delta; minus = center - delta."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_step", NULL, -1, methods};

PyMODINIT_FUNC PyInit__step(void) { return PyModule_Create(&module); }
