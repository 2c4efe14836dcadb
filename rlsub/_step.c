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
 * The first four are bit-identical to numpy; the last replaces torch's F.linear for the Atari
 * policy's wide layer and sums in its own (fixed) order.
 *
 * Arguments are C-contiguous buffers (numpy arrays) of matching lengths; obs may be float64 or float32.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

/* obs_norm(out, obs, mean, std, clip): np.subtract(obs, mean, out=out, dtype=float32); out /= std;
 * np.minimum(out, clip, out=out); np.maximum(out, -clip, out=out). NaN stays NaN, as with numpy. */
static PyObject *py_obs_norm(PyObject *self, PyObject *args) {
    PyObject *o_out, *o_obs, *o_mean, *o_std;
    double clip;
    if (!PyArg_ParseTuple(args, "OOOOd", &o_out, &o_obs, &o_mean, &o_std, &clip)) return NULL;
    Py_buffer out, obs, mean, std;
    if (get(o_out, &out, 1, 'f', -1, "obs_norm out") != 0) return NULL;
    Py_ssize_t n = count(&out);
    if (get(o_obs, &obs, 0, 0, n, "obs_norm obs") != 0) goto e1;
    if (get(o_mean, &mean, 0, 'f', n, "obs_norm mean") != 0) goto e2;
    if (get(o_std, &std, 0, 'f', n, "obs_norm std") != 0) goto e3;
    float *x = out.buf;
    const float *m = mean.buf, *s = std.buf;
    const float hi = (float)clip, lo = -(float)clip;
    if (obs.itemsize == 8) {
        const double *v = obs.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            float t = ((float)v[i] - m[i]) / s[i];
            t = t > hi ? hi : t;
            x[i] = t < lo ? lo : t;
        }
    } else {
        const float *v = obs.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            float t = (v[i] - m[i]) / s[i];
            t = t > hi ? hi : t;
            x[i] = t < lo ? lo : t;
        }
    }
    PyBuffer_Release(&std);
    PyBuffer_Release(&mean);
    PyBuffer_Release(&obs);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
e3:
    PyBuffer_Release(&mean);
e2:
    PyBuffer_Release(&obs);
e1:
    PyBuffer_Release(&out);
    return NULL;
}

/* accumulate(s, ssq, obs): s += float64(obs); ssq += float64(obs) * float64(obs) (the product
 * rounded, then added). */
static PyObject *py_accumulate(PyObject *self, PyObject *args) {
    PyObject *o_s, *o_ssq, *o_obs;
    if (!PyArg_ParseTuple(args, "OOO", &o_s, &o_ssq, &o_obs)) return NULL;
    Py_buffer s, ssq, obs;
    if (get(o_s, &s, 1, 'd', -1, "accumulate s") != 0) return NULL;
    Py_ssize_t n = count(&s);
    if (get(o_ssq, &ssq, 1, 'd', n, "accumulate ssq") != 0) goto e1;
    if (get(o_obs, &obs, 0, 0, n, "accumulate obs") != 0) goto e2;
    double *a = s.buf, *q = ssq.buf;
    if (obs.itemsize == 8) {
        const double *v = obs.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = v[i];
            a[i] += t;
            double p = t * t;
            q[i] += p;
        }
    } else {
        const float *v = obs.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = (double)v[i];
            a[i] += t;
            double p = t * t;
            q[i] += p;
        }
    }
    PyBuffer_Release(&obs);
    PyBuffer_Release(&ssq);
    PyBuffer_Release(&s);
    Py_RETURN_NONE;
e2:
    PyBuffer_Release(&ssq);
e1:
    PyBuffer_Release(&s);
    return NULL;
}

/* finish(out, bias, noise, low, high): out += bias; out += noise (unless noise is None);
 * np.minimum(out, high, out=out); np.maximum(out, low, out=out). */
static PyObject *py_finish(PyObject *self, PyObject *args) {
    PyObject *o_out, *o_b, *o_noise, *o_lo, *o_hi;
    if (!PyArg_ParseTuple(args, "OOOOO", &o_out, &o_b, &o_noise, &o_lo, &o_hi)) return NULL;
    Py_buffer out, b, noise, lo, hi;
    int has_noise = o_noise != Py_None;
    if (get(o_out, &out, 1, 'f', -1, "finish out") != 0) return NULL;
    Py_ssize_t n = count(&out);
    if (get(o_b, &b, 0, 'f', n, "finish bias") != 0) goto e1;
    if (has_noise && get(o_noise, &noise, 0, 'f', n, "finish noise") != 0) goto e2;
    if (get(o_lo, &lo, 0, 'f', n, "finish low") != 0) goto e3;
    if (get(o_hi, &hi, 0, 'f', n, "finish high") != 0) goto e4;
    float *x = out.buf;
    const float *bb = b.buf, *l = lo.buf, *h = hi.buf;
    const float *z = has_noise ? noise.buf : NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        float t = x[i] + bb[i];
        if (z) t = t + z[i];
        t = t > h[i] ? h[i] : t;
        x[i] = t < l[i] ? l[i] : t;
    }
    PyBuffer_Release(&hi);
    PyBuffer_Release(&lo);
    if (has_noise) PyBuffer_Release(&noise);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
e4:
    PyBuffer_Release(&lo);
e3:
    if (has_noise) PyBuffer_Release(&noise);
e2:
    PyBuffer_Release(&b);
e1:
    PyBuffer_Release(&out);
    return NULL;
}

/* pair(plus, minus, center, delta, sigma): delta *= float32(sigma); plus = center + delta;
 * minus = center - delta, in one pass (numpy's three passes over D floats, per mirrored pair). */
static PyObject *py_pair(PyObject *self, PyObject *args) {
    PyObject *o_p, *o_m, *o_c, *o_d;
    double sigma;
    if (!PyArg_ParseTuple(args, "OOOOd", &o_p, &o_m, &o_c, &o_d, &sigma)) return NULL;
    Py_buffer p, m, c, d;
    if (get(o_p, &p, 1, 'f', -1, "pair plus") != 0) return NULL;
    Py_ssize_t n = count(&p);
    if (get(o_m, &m, 1, 'f', n, "pair minus") != 0) goto e1;
    if (get(o_c, &c, 0, 'f', n, "pair center") != 0) goto e2;
    if (get(o_d, &d, 1, 'f', n, "pair delta") != 0) goto e3;
    float *restrict pp = p.buf, *restrict mm = m.buf, *restrict dd = d.buf;
    const float *restrict cc = c.buf;
    const float s = (float)sigma;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        float t = dd[i] * s;
        dd[i] = t;
        pp[i] = cc[i] + t;
        mm[i] = cc[i] - t;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&d);
    PyBuffer_Release(&c);
    PyBuffer_Release(&m);
    PyBuffer_Release(&p);
    Py_RETURN_NONE;
e3:
    PyBuffer_Release(&c);
e2:
    PyBuffer_Release(&m);
e1:
    PyBuffer_Release(&p);
    return NULL;
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
    Py_buffer y, wt, h, b;
    if (get(o_y, &y, 1, 'f', -1, "matvec_skip_zeros y") != 0) return NULL;
    Py_ssize_t n = count(&y);
    if (get(o_h, &h, 0, 'f', -1, "matvec_skip_zeros h") != 0) goto e1;
    Py_ssize_t k = count(&h);
    if (get(o_wt, &wt, 0, 'f', k * n, "matvec_skip_zeros wt") != 0) goto e2;
    if (get(o_b, &b, 0, 'f', n, "matvec_skip_zeros b") != 0) goto e3;
    Py_BEGIN_ALLOW_THREADS
    sparse_matvec_t(y.buf, wt.buf, h.buf, b.buf, k, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    PyBuffer_Release(&wt);
    PyBuffer_Release(&h);
    PyBuffer_Release(&y);
    Py_RETURN_NONE;
e3:
    PyBuffer_Release(&wt);
e2:
    PyBuffer_Release(&h);
e1:
    PyBuffer_Release(&y);
    return NULL;
}

static PyMethodDef methods[] = {
    {"matvec_skip_zeros", py_matvec_skip_zeros, METH_VARARGS,
     "matvec_skip_zeros(y, wt, h, b): y = wt.T @ h + b, skipping the rows of wt where h is zero (float32)."},
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
