#ifndef CUREC_CQUANTKERNELS_H
#define CUREC_CQUANTKERNELS_H
/* Matrix products of GGML-quantized weights with 8-bit-quantized activations: a portable C
 * kernel and, on x86-64, kernels with AVX2 and AVX-512 VNNI intrinsics. Also the other large
 * parts of quantized decoding: the attention of a decoding step over a float32 key/value cache
 * and the SwiGLU gate. Only the functions of those levels are compiled for their instruction
 * sets, and they run only when curec_quant_cpu_level() reports the level, so the library runs
 * on any x86-64 or ARM CPU. */
#include <stddef.h>
#include <stdint.h>

/* Instruction-set levels, each including the previous ones. */
enum {
    CUREC_QUANT_PORTABLE = 0,  /* plain C, vectorized by the compiler for the baseline ISA */
    CUREC_QUANT_AVX2 = 1,      /* AVX2 + FMA + F16C */
    CUREC_QUANT_AVX512VNNI = 2 /* level 1 + AVX-512 F/VL/BW/DQ + VNNI (vpdpbusd) */
};

/* The highest level this CPU supports (CUREC_QUANT_PORTABLE on non-x86-64 builds). */
int curec_quant_cpu_level(void);

/* Quantizes n rows of c floats (c a multiple of 32) per block of 32: q = round(x / d) with
 * d = max|x| / 127, so x ~ q * d. Writes q [n, c], d [n, c / 32] and s [n8 / 8, c / 32, 8]
 * = d * sum(q) (groups of 8 rows, block-major within a group; n8 = n rounded up to a multiple
 * of 8, padding zeroed): the
 * activation layout curec_quant_matmul reads. */
void curec_quant_activations(const float *x, int64_t n, int64_t c, int8_t *q, float *d, float *s);

/* Weight types, by their GGML type ids. */
enum { CUREC_QUANT_Q4_0 = 2, CUREC_QUANT_Q4_1 = 3, CUREC_QUANT_Q8_0 = 8 };

/* out[r * ldo + o] (=, or += when accumulate != 0) sum over the row of W[o] * X[r], for the
 * weight rows o in [row_begin, row_end) and the activation rows r in [0, n).
 *
 * w:         weight rows in GGML layout, `blocks` blocks of 32 per row, `row_bytes` apart.
 * xq:        activations quantized per 32-block, [n, blocks * 32] int8.
 * xd:        per activation block, [n, blocks]: the scale d (x ~ q * d).
 * xs:        per activation block, [n8 / 8, blocks, 8] with n8 = n rounded up to a multiple
 *            of 8 (zero padded): d * sum(q), for the offsets of Q4_0 and Q4_1.
 * Returns 0, or -1 (nothing written) if `type` or `level` is not one of the above or the
 * level is above curec_quant_cpu_level(). Thread-safe; callers may split the weight rows. */
int curec_quant_matmul(int level, int type, const void *w, size_t row_bytes, int64_t row_begin,
                       int64_t row_end, int64_t blocks, const int8_t *xq, const float *xd,
                       const float *xs, int64_t n, float *out, int64_t ldo, int accumulate);

/* Attention of a decoding step: `group` query heads that share one key/value head, one query
 * each, over the L cached positions of that head:
 *
 *   s[h, i] = scale * q[h] . k[i],   p[h, :] = softmax(s[h, :]),   out[h] = sum_i p[h, i] v[i]
 *
 * q: [group, hs] contiguous; k, v: L rows of hs floats, `ld` floats apart (a key/value cache of
 * several heads); scratch: group * L floats (the probabilities on return); out: [group, hs].
 * Each key and value row is read once for all the heads. AVX-512 (on CPUs of the VNNI level)
 * when hs is a multiple of 16, AVX2 for multiples of 8, otherwise plain C. Thread-safe. */
void curec_attention_single(const float *q, const float *k, const float *v, int64_t L, int64_t ld, int64_t group,
                            int64_t hs, float scale, float *scratch, float *out);

/* The SwiGLU gate: out[i] = gate[i] / (1 + e^-gate[i]) * up[i] for i < n (out may alias gate
 * or up). With AVX2, e^x is evaluated 8 lanes at a time to about expf's accuracy (relative
 * error of e^x below 2e-7); plain expf otherwise. Thread-safe. */
void curec_swiglu(float *out, const float *gate, const float *up, int64_t n);
#endif
