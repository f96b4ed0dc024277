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
// Loop order: tiles of R weight rows (their blocks are read from memory once, then from L1
// cache) times groups of G <= 4 activation rows, with R * G <= 8 independent 8-lane float
// accumulators: enough independent FMA chains to hide their latency for one activation row,
// few enough for the 16 vector registers of AVX2.
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

// Defines tile_<S> and matmul_<S> for one instruction set.
#define DEFINE_KERNELS(S, TARGET, DOT)                                                             \
    INLINE TARGET float hsum_##S(__m256 v) {                                                      \
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));            \
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                                   \
        s = _mm_add_ss(s, _mm_movehdup_ps(s));                                                    \
        return _mm_cvtss_f32(s);                                                                  \
    }                                                                                             \
                                                                                                  \
    /* Weight rows o0 .. o0+R-1 times activation rows r0 .. r0+G-1: R*G accumulators of 8    */   \
    /* lanes, each weight block unpacked once and each activation block loaded once per tile. */  \
    INLINE TARGET void tile_##S(const int type, const int R, const int G, const uint8_t *w,       \
                                int64_t row_bytes, int64_t o0, int64_t blocks, const int8_t *xq,  \
                                const float *xd, const float *xs, int64_t n4, int64_t r0,         \
                                float *out, int64_t ldo, int accumulate) {                        \
        const int q8 = type == CUREC_QUANT_Q8_0, q41 = type == CUREC_QUANT_Q4_1;                  \
        const int64_t block_bytes = q8 ? 34 : q41 ? 20 : 18;                                      \
        const __m128i low4 = _mm_set1_epi8(0x0F);                                                 \
        __m256 acc[4][4];                                                                         \
        __m128 extra[4];                                                                          \
        for (int i = 0; i < R; i++) {                                                             \
            extra[i] = _mm_setzero_ps();                                                          \
            for (int g = 0; g < G; g++) acc[i][g] = _mm256_setzero_ps();                          \
        }                                                                                         \
        for (int64_t b = 0; b < blocks; b++) {                                                    \
            __m256i qw[4], aw[4];                                                                 \
            __m256 dw[4];                                                                         \
            for (int i = 0; i < R; i++) {                                                         \
                const uint8_t *block = w + (o0 + i) * row_bytes + b * block_bytes;                \
                const float d = _cvtsh_ss(load_u16(block));                                       \
                dw[i] = _mm256_set1_ps(d);                                                        \
                if (q8) {                                                                         \
                    qw[i] = _mm256_loadu_si256((const __m256i *)(block + 2));                     \
                    aw[i] = _mm256_sign_epi8(qw[i], qw[i]);                                       \
                } else {                                                                          \
                    /* The offset term c * (dx * sum qx) for 4 activation rows at once. */        \
                    const float c = q41 ? _cvtsh_ss(load_u16(block + 2)) : -8.0f * d;             \
                    extra[i] = _mm_fmadd_ps(_mm_set1_ps(c), _mm_loadu_ps(xs + b * n4 + r0), extra[i]); \
                    const __m128i packed = _mm_loadu_si128((const __m128i *)(block + (q41 ? 4 : 2))); \
                    qw[i] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low4),      \
                                             _mm_and_si128(packed, low4));                        \
                    aw[i] = qw[i];                                                                \
                }                                                                                 \
            }                                                                                     \
            for (int g = 0; g < G; g++) {                                                         \
                const int64_t xb = (r0 + g) * blocks + b;                                         \
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + xb * 32));           \
                const __m256 dx = _mm256_broadcast_ss(xd + xb);                                   \
                for (int i = 0; i < R; i++) {                                                     \
                    const __m256i p = q8 ? DOT(aw[i], _mm256_sign_epi8(qx, qw[i])) : DOT(aw[i], qx); \
                    acc[i][g] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dx), dw[i], acc[i][g]); \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (int i = 0; i < R; i++) {                                                             \
            float offsets[4];                                                                     \
            _mm_storeu_ps(offsets, extra[i]);                                                     \
            for (int g = 0; g < G; g++) {                                                         \
                float *y = out + (r0 + g) * ldo + o0 + i;                                         \
                const float v = hsum_##S(acc[i][g]) + offsets[g];                                 \
                *y = accumulate ? *y + v : v;                                                     \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* R and G are constants in every call below, so the tile loops unroll and the */            \
    /* accumulators stay in registers. */                                                         \
    INLINE TARGET void tiles_##S(const int type, const int R, const uint8_t *w, int64_t row_bytes, \
                                 int64_t o0, int64_t blocks, const int8_t *xq, const float *xd,   \
                                 const float *xs, int64_t n, float *out, int64_t ldo,             \
                                 int accumulate) {                                                \
        const int64_t n4 = (n + 3) / 4 * 4;                                                       \
        for (int64_t r0 = 0; r0 < n; r0 += 4) {                                                   \
            switch (n - r0 >= 4 ? 4 : (int)(n - r0)) {                                            \
            case 4: tile_##S(type, R, 4, w, row_bytes, o0, blocks, xq, xd, xs, n4, r0, out, ldo, accumulate); break; \
            case 3: tile_##S(type, R, 3, w, row_bytes, o0, blocks, xq, xd, xs, n4, r0, out, ldo, accumulate); break; \
            case 2: tile_##S(type, R, 2, w, row_bytes, o0, blocks, xq, xd, xs, n4, r0, out, ldo, accumulate); break; \
            default: tile_##S(type, R, 1, w, row_bytes, o0, blocks, xq, xd, xs, n4, r0, out, ldo, accumulate); break; \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* Weight rows in tiles of R (4 for one or two activation rows, else 2), each tile */         \
    /* meeting all activation rows while its blocks are in L1 cache. */                           \
    INLINE TARGET void matmul_type_##S(const int type, const uint8_t *w, int64_t row_bytes,      \
                                       int64_t row_begin, int64_t row_end, int64_t blocks,        \
                                       const int8_t *xq, const float *xd, const float *xs,        \
                                       int64_t n, float *out, int64_t ldo, int accumulate) {      \
        int64_t o = row_begin;                                                                    \
        if (n <= 2) {                                                                             \
            for (; o + 4 <= row_end; o += 4)                                                      \
                tiles_##S(type, 4, w, row_bytes, o, blocks, xq, xd, xs, n, out, ldo, accumulate); \
        } else {                                                                                  \
            for (; o + 2 <= row_end; o += 2)                                                      \
                tiles_##S(type, 2, w, row_bytes, o, blocks, xq, xd, xs, n, out, ldo, accumulate); \
        }                                                                                         \
        for (; o < row_end; o++)                                                                  \
            tiles_##S(type, 1, w, row_bytes, o, blocks, xq, xd, xs, n, out, ldo, accumulate);     \
    }                                                                                             \
                                                                                                  \
    static TARGET void matmul_##S(int type, const uint8_t *w, size_t row_bytes, int64_t row_begin, \
                                  int64_t row_end, int64_t blocks, const int8_t *xq,              \
                                  const float *xd, const float *xs, int64_t n, float *out,        \
                                  int64_t ldo, int accumulate) {                                  \
        const int64_t stride = (int64_t)row_bytes;                                                \
        if (type == CUREC_QUANT_Q8_0)                                                             \
            matmul_type_##S(CUREC_QUANT_Q8_0, w, stride, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo, accumulate); \
        else if (type == CUREC_QUANT_Q4_1)                                                        \
            matmul_type_##S(CUREC_QUANT_Q4_1, w, stride, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo, accumulate); \
        else                                                                                      \
            matmul_type_##S(CUREC_QUANT_Q4_0, w, stride, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo, accumulate); \
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
