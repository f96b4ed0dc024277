#ifndef CUREC_CQUANTKERNELS_H
#define CUREC_CQUANTKERNELS_H
/* Matrix products of GGML-quantized weights with 8-bit-quantized activations, with x86-64
 * SIMD intrinsics. The functions of a level are compiled for that instruction set only and
 * must be called only when curec_quant_cpu_level() reports it; the rest of the library
 * (and the portable Swift kernels) runs on any x86-64 or ARM CPU. */
#include <stddef.h>
#include <stdint.h>

/* Instruction-set levels, each including the previous ones. */
enum {
    CUREC_QUANT_PORTABLE = 0,  /* no kernel here; use the portable Swift code */
    CUREC_QUANT_AVX2 = 1,      /* AVX2 + FMA + F16C */
    CUREC_QUANT_AVX512VNNI = 2 /* level 1 + AVX-512 F/VL/BW/DQ + VNNI (vpdpbusd) */
};

/* The highest level this CPU supports (CUREC_QUANT_PORTABLE on non-x86-64 builds). */
int curec_quant_cpu_level(void);

/* Weight types, by their GGML type ids. */
enum { CUREC_QUANT_Q4_0 = 2, CUREC_QUANT_Q4_1 = 3, CUREC_QUANT_Q8_0 = 8 };

/* out[r * ldo + o] (=, or += when accumulate != 0) sum over the row of W[o] * X[r], for the
 * weight rows o in [row_begin, row_end) and the activation rows r in [0, n).
 *
 * w:         weight rows in GGML layout, `blocks` blocks of 32 per row, `row_bytes` apart.
 * xq:        activations quantized per 32-block, [n, blocks * 32] int8.
 * xd:        per activation block, [n, blocks]: the scale d (x ~ q * d).
 * xs:        per activation block, block-major [blocks, n4] with n4 = n rounded up to a
 *            multiple of 4 (zero padded): d * sum(q), for the offsets of Q4_0 and Q4_1.
 * Returns 0, or -1 (nothing written) if `type` or `level` is not one of the above or the
 * level is above curec_quant_cpu_level(). */
int curec_quant_matmul(int level, int type, const void *w, size_t row_bytes, int64_t row_begin,
                       int64_t row_end, int64_t blocks, const int8_t *xq, const float *xd,
                       const float *xs, int64_t n, float *out, int64_t ldo, int accumulate);
#endif
