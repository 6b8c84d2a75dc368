#include "engine/attention.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

/* Vectorised by the compiler for each target below; the library itself is built for the baseline. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define EMBD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBD_CLONES
#endif

#define QB 4  /* query rows per block: 4 rows x 32 keys of scores live in registers */
#define KB 32 /* keys per block */

/* 16 floats: one AVX-512 register, two AVX2 ones; GCC/clang vector extensions lower it to each
 * target of the clones. Loads and stores go through memcpy: rows are not 64-byte aligned. */
/* vectors only pass between always-inlined helpers: no ABI boundary is crossed */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* e^x for x <= 0 (scores minus their maximum): 2^n * p(r), r in [-ln2/2, ln2/2], degree-6
 * polynomial (rel. error < 2e-7); x below -87 gives ~0, which softmax cannot tell from 0. */
static inline __attribute__((always_inline)) vf vexp_neg(vf x) {
    const vi low = (vi)(x < -87.0f); /* all ones where x is below the clamp */
    x = (vf)(((vi)x & ~low) | ((vi)((vf){0} - 87.0f) & low));
    const vf magic = (vf){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const vf n = (x * 1.44269504088896341f + magic) - magic;
    const vf r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    vf p = (vf){0} + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

/* One (sequence, head): query rows [0, nq) against keys [0, len). D is a multiple of 16, <= 64. */
static inline __attribute__((always_inline)) void head_attention(const float *q, int64_t q_stride, const float *k,
                                                                 const float *v, int64_t kv_stride, float *o,
                                                                 int64_t o_stride, int nq, int len, const int D,
                                                                 float scale, float *kt, float *s) {
    const int lp = (len + KB - 1) / KB * KB, DV = D / 16;
    /* K^T, padded with zero keys: scores vectorise across keys */
    for (int d = 0; d < D; d++) {
        float *row = kt + (int64_t)d * lp;
        for (int j = 0; j < len; j++) row[j] = k[(int64_t)j * kv_stride + d] * scale;
        for (int j = len; j < lp; j++) row[j] = 0;
    }
    for (int i0 = 0; i0 < nq; i0 += QB) {
        const int nb = nq - i0 < QB ? nq - i0 : QB;
        float qr[QB][64];
        for (int r = 0; r < QB; r++)
            for (int d = 0; d < D; d++) qr[r][d] = r < nb ? q[(int64_t)(i0 + r) * q_stride + d] : 0.0f;
        /* scores: QB rows x KB keys per block in 8 registers */
        for (int jb = 0; jb < lp; jb += KB) {
            vf a[QB][2] = {{{0}}};
            for (int d = 0; d < D; d++) {
                const vf k0 = vload(kt + (int64_t)d * lp + jb), k1 = vload(kt + (int64_t)d * lp + jb + 16);
                for (int r = 0; r < QB; r++) {
                    a[r][0] += qr[r][d] * k0;
                    a[r][1] += qr[r][d] * k1;
                }
            }
            for (int r = 0; r < QB; r++) {
                vstore(s + (int64_t)r * lp + jb, a[r][0]);
                vstore(s + (int64_t)r * lp + jb + 16, a[r][1]);
            }
        }
        /* softmax numerators; padded keys get 0 */
        float inv[QB];
        for (int r = 0; r < QB; r++) {
            float *sr = s + (int64_t)r * lp, mx = -INFINITY;
            for (int j = 0; j < len; j++) mx = sr[j] > mx ? sr[j] : mx;
            vf sum = {0};
            for (int j = 0; j < lp; j += 16) {
                const vf e = vexp_neg(vload(sr + j) - mx);
                vstore(sr + j, e);
            }
            for (int j = len; j < lp; j++) sr[j] = 0;
            for (int j = 0; j < lp; j += 16) sum += vload(sr + j);
            float t = 0;
            for (int l = 0; l < 16; l++) t += sum[l];
            inv[r] = 1.0f / t;
        }
        /* P.V: QB rows x D values in registers, one V row loaded per key */
        vf acc[QB][4] = {{{0}}};
        for (int j = 0; j < len; j++) {
            const float *vr = v + (int64_t)j * kv_stride;
            vf vv[4];
            for (int c = 0; c < DV; c++) vv[c] = vload(vr + 16 * c);
            for (int r = 0; r < QB; r++) {
                const float pr = s[(int64_t)r * lp + j];
                for (int c = 0; c < DV; c++) acc[r][c] += pr * vv[c];
            }
        }
        for (int r = 0; r < nb; r++)
            for (int c = 0; c < DV; c++) vstore(o + (int64_t)(i0 + r) * o_stride + 16 * c, acc[r][c] * inv[r]);
    }
}

EMBD_CLONES static void attention_task(const float *q, int64_t q_stride, const float *k, const float *v,
                                       int64_t kv_stride, float *o, int64_t o_stride, int nq, int len, int D,
                                       float scale, float *kt, float *s) {
    /* constant head sizes give fully unrolled, register-resident inner loops */
    if (D == 32) head_attention(q, q_stride, k, v, kv_stride, o, o_stride, nq, len, 32, scale, kt, s);
    else if (D == 64) head_attention(q, q_stride, k, v, kv_stride, o, o_stride, nq, len, 64, scale, kt, s);
    else if (D == 16) head_attention(q, q_stride, k, v, kv_stride, o, o_stride, nq, len, 16, scale, kt, s);
    else head_attention(q, q_stride, k, v, kv_stride, o, o_stride, nq, len, 48, scale, kt, s);
}

static void attention_op(struct ggml_tensor *dst, const struct ggml_tensor *q, const struct ggml_tensor *k,
                         const struct ggml_tensor *v, int ith, int nth, void *ud) {
    const embd_attn_params *p = ud;
    const int D = p->d_head, B = p->n_seq, nh = p->n_head;
    const int64_t H = (int64_t)nh * D;
    const int64_t tasks = (int64_t)B * nh;
    const int lp = (p->L + KB - 1) / KB * KB;
    float *kt = malloc(((size_t)D * lp + (size_t)QB * lp) * sizeof *kt);
    if (!kt) abort(); /* a few KiB: no sensible way on inside a graph */
    float *s = kt + (size_t)D * lp;
    for (int64_t t = ith; t < tasks; t += nth) {
        const int b = (int)(t / nh), h = (int)(t % nh), len = p->lens[b];
        const float *kb = (const float *)k->data + ((int64_t)b * p->L) * H + (int64_t)h * D;
        const float *vb = (const float *)v->data + ((int64_t)b * p->L) * H + (int64_t)h * D;
        float *ob = (float *)dst->data + ((int64_t)b * p->Lq) * H + (int64_t)h * D;
        const float *qb = (const float *)q->data + ((int64_t)b * p->Lq) * H + (int64_t)h * D;
        if (p->Lq == 1) { /* the pooled row only (CLS or last): it attends to every real key */
            attention_task(qb, H, kb, vb, H, ob, H, 1, len, D, p->scale, kt, s);
            continue;
        }
        attention_task(qb, H, kb, vb, H, ob, H, len, len, D, p->scale, kt, s);
        for (int i = len; i < p->Lq; i++) memset(ob + (int64_t)i * H, 0, (size_t)D * sizeof *ob); /* padding rows */
    }
    free(kt);
}

struct ggml_tensor *embd_attention(struct ggml_context *c, struct ggml_tensor *q, struct ggml_tensor *k,
                                   struct ggml_tensor *v, const embd_attn_params *p) {
    return ggml_map_custom3(c, q, k, v, attention_op, GGML_N_TASKS_MAX, (void *)p);
}
