// Quantized weight x 8-bit activation products (see include/CQuantKernels.h).
//
// Per 32-element block b of weight row o and activation row r, with integer dot
// p = sum_i qw[i] * qx[i] (exact in int32):
//
//   Q4_1  w = qw * dw + mw        sum_i w[i] x[i] = dw * dx * p + mw * (dx * sum qx)
//   Q4_0  w = (qw - 8) * dw                       = dw * dx * p - 8 * dw * (dx * sum qx)
//   Q8_0  w = qw * dw  (qw signed)                = dw * dx * p
//
// The 4-bit weights are unpacked to bytes 0..15 (low nibbles are elements 0..15, high nibbles
// 16..31, which is exactly the two 128-bit halves of a 256-bit register), so the dot is an
// unsigned x signed byte product: vpmaddubsw + vpmaddwd on AVX2, vpdpbusd with VNNI. For
// signed Q8_0 weights the sign is moved onto the activations (|w| * sign(w) x).
//
// Loop order: weight row outer (its blocks are read from memory once, then from L1 cache),
// activation rows inner in groups of up to 4, each with one 8-lane float accumulator, so
// the register pressure stays within the 16 vector registers of AVX2.
#include "CQuantKernels.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CUREC_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#ifdef CUREC_X86

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static int detect_level(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return CUREC_QUANT_PORTABLE;
    const int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, f16c = (ecx >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return CUREC_QUANT_PORTABLE;
    const unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return CUREC_QUANT_PORTABLE;  // the OS saves XMM and YMM state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return CUREC_QUANT_PORTABLE;
    if (!((ebx >> 5) & 1)) return CUREC_QUANT_PORTABLE;  // AVX2
    const int avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);
    const int vnni = (ecx >> 11) & 1;
    // The OS also saves the opmask and ZMM state.
    if (avx512 && vnni && (xcr0 & 0xE6) == 0xE6) return CUREC_QUANT_AVX512VNNI;
    return CUREC_QUANT_AVX2;
}

int curec_quant_cpu_level(void) {
    // CPUID can trap to the hypervisor in a VM, so the answer is computed once.
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect_level();
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

static inline uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

// Unsigned bytes (a) times signed bytes (b), 4 adjacent products summed into each int32 lane.
#define DOT_AVX2(a, b) _mm256_madd_epi16(_mm256_maddubs_epi16((a), (b)), _mm256_set1_epi16(1))
#define DOT_VNNI(a, b) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (a), (b))

// Defines q4_rows_<S>, q8_rows_<S> and matmul_<S> for one instruction set.
#define DEFINE_KERNELS(S, TARGET, DOT)                                                              \
    INLINE TARGET float hsum_##S(__m256 v) {                                                       \
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));             \
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                                    \
        s = _mm_add_ss(s, _mm_movehdup_ps(s));                                                     \
        return _mm_cvtss_f32(s);                                                                   \
    }                                                                                              \
                                                                                                   \
    /* One Q4_0/Q4_1 weight row against activation rows r0 .. r0+G-1. */                           \
    INLINE TARGET void q4_rows_##S(const int q41, const int G, const uint8_t *row, int64_t blocks, \
                                   const int8_t *xq, const float *xd, const float *xs, int64_t r0, \
                                   float *out, int64_t ldo, int64_t o, int accumulate) {           \
        const int64_t block_bytes = q41 ? 20 : 18, nibbles = q41 ? 4 : 2;                          \
        const __m128i low4 = _mm_set1_epi8(0x0F);                                                  \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),            \
                         _mm256_setzero_ps()};                                                     \
        float extra[4] = {0, 0, 0, 0};                                                             \
        for (int64_t b = 0; b < blocks; b++) {                                                     \
            const uint8_t *block = row + b * block_bytes;                                          \
            const float dw = _cvtsh_ss(load_u16(block));                                           \
            const float cw = q41 ? _cvtsh_ss(load_u16(block + 2)) : -8.0f * dw;                    \
            const __m128i packed = _mm_loadu_si128((const __m128i *)(block + nibbles));            \
            const __m256i qw = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low4),    \
                                                _mm_and_si128(packed, low4));                      \
            for (int g = 0; g < G; g++) {                                                          \
                const int64_t xb = (r0 + g) * blocks + b;                                          \
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + xb * 32));            \
                const __m256 p = _mm256_cvtepi32_ps(DOT(qw, qx));                                  \
                acc[g] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * xd[xb]), acc[g]);                  \
                extra[g] += cw * xs[xb];                                                           \
            }                                                                                      \
        }                                                                                          \
        for (int g = 0; g < G; g++) {                                                              \
            float *y = out + (r0 + g) * ldo + o;                                                   \
            const float v = hsum_##S(acc[g]) + extra[g];                                           \
            *y = accumulate ? *y + v : v;                                                          \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* One Q8_0 weight row against activation rows r0 .. r0+G-1. */                                \
    INLINE TARGET void q8_rows_##S(const int G, const uint8_t *row, int64_t blocks,                \
                                   const int8_t *xq, const float *xd, int64_t r0, float *out,      \
                                   int64_t ldo, int64_t o, int accumulate) {                       \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),            \
                         _mm256_setzero_ps()};                                                     \
        for (int64_t b = 0; b < blocks; b++) {                                                     \
            const uint8_t *block = row + b * 34;                                                   \
            const float dw = _cvtsh_ss(load_u16(block));                                           \
            const __m256i qw = _mm256_loadu_si256((const __m256i *)(block + 2));                   \
            const __m256i aw = _mm256_sign_epi8(qw, qw);                                           \
            for (int g = 0; g < G; g++) {                                                          \
                const int64_t xb = (r0 + g) * blocks + b;                                          \
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + xb * 32));            \
                const __m256 p = _mm256_cvtepi32_ps(DOT(aw, _mm256_sign_epi8(qx, qw)));            \
                acc[g] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * xd[xb]), acc[g]);                  \
            }                                                                                      \
        }                                                                                          \
        for (int g = 0; g < G; g++) {                                                              \
            float *y = out + (r0 + g) * ldo + o;                                                   \
            const float v = hsum_##S(acc[g]);                                                      \
            *y = accumulate ? *y + v : v;                                                          \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* The group size is a constant in each call, so the loops over g unroll and the */           \
    /* accumulators stay in registers. */                                                          \
    static TARGET void matmul_##S(int type, const uint8_t *w, size_t row_bytes, int64_t row_begin, \
                                  int64_t row_end, int64_t blocks, const int8_t *xq,               \
                                  const float *xd, const float *xs, int64_t n, float *out,         \
                                  int64_t ldo, int accumulate) {                                   \
        for (int64_t o = row_begin; o < row_end; o++) {                                            \
            const uint8_t *row = w + o * (int64_t)row_bytes;                                       \
            for (int64_t r0 = 0; r0 < n; r0 += 4) {                                                \
                const int64_t left = n - r0;                                                       \
                if (type == CUREC_QUANT_Q8_0) {                                                    \
                    switch (left >= 4 ? 4 : left) {                                                \
                    case 4: q8_rows_##S(4, row, blocks, xq, xd, r0, out, ldo, o, accumulate); break; \
                    case 3: q8_rows_##S(3, row, blocks, xq, xd, r0, out, ldo, o, accumulate); break; \
                    case 2: q8_rows_##S(2, row, blocks, xq, xd, r0, out, ldo, o, accumulate); break; \
                    default: q8_rows_##S(1, row, blocks, xq, xd, r0, out, ldo, o, accumulate); break; \
                    }                                                                              \
                } else if (type == CUREC_QUANT_Q4_1) {                                             \
                    switch (left >= 4 ? 4 : left) {                                                \
                    case 4: q4_rows_##S(1, 4, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    case 3: q4_rows_##S(1, 3, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    case 2: q4_rows_##S(1, 2, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    default: q4_rows_##S(1, 1, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    }                                                                              \
                } else {                                                                           \
                    switch (left >= 4 ? 4 : left) {                                                \
                    case 4: q4_rows_##S(0, 4, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    case 3: q4_rows_##S(0, 3, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    case 2: q4_rows_##S(0, 2, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    default: q4_rows_##S(0, 1, row, blocks, xq, xd, xs, r0, out, ldo, o, accumulate); break; \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNELS(avx2, AVX2_TARGET, DOT_AVX2)
DEFINE_KERNELS(vnni, VNNI_TARGET, DOT_VNNI)

#else  // not x86-64

int curec_quant_cpu_level(void) { return CUREC_QUANT_PORTABLE; }

#endif

int curec_quant_matmul(int level, int type, const void *w, size_t row_bytes, int64_t row_begin,
                       int64_t row_end, int64_t blocks, const int8_t *xq, const float *xd,
                       const float *xs, int64_t n, float *out, int64_t ldo, int accumulate) {
    if (type != CUREC_QUANT_Q4_0 && type != CUREC_QUANT_Q4_1 && type != CUREC_QUANT_Q8_0) return -1;
#ifdef CUREC_X86
    if (level == CUREC_QUANT_AVX512VNNI && curec_quant_cpu_level() >= CUREC_QUANT_AVX512VNNI) {
        matmul_vnni(type, (const uint8_t *)w, row_bytes, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo,
                    accumulate);
        return 0;
    }
    if (level == CUREC_QUANT_AVX2 && curec_quant_cpu_level() >= CUREC_QUANT_AVX2) {
        matmul_avx2(type, (const uint8_t *)w, row_bytes, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo,
                    accumulate);
        return 0;
    }
#endif
    (void)level; (void)w; (void)row_bytes; (void)row_begin; (void)row_end; (void)blocks;
    (void)xq; (void)xd; (void)xs; (void)n; (void)out; (void)ldo; (void)accumulate;
    return -1;
}
