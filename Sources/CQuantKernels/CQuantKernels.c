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
// Loop order: one weight row at a time (its blocks are read from memory once, then from L1
// cache) against groups of G <= 8 (AVX-512) or 4 (AVX2) activation rows, one 8-lane float
// accumulator per row (two, for even and odd blocks, when G <= 2, to hide the FMA latency);
// long inputs go in passes of 32 activation rows. Tiles of several weight rows
// were tried: as fast with the weights in cache, but 2-4x slower streaming a large matrix
// (the 49152 x 576 head) from memory, so the weights are read strictly in order.
#include "CQuantKernels.h"

#include <math.h>
#include <string.h>

static inline uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);  // little-endian, unaligned
    return v;
}

// IEEE half to float, exact, without F16C.
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        // Zero or subnormal: mantissa * 2^-24, exact in float.
        float magnitude = (float)mantissa * (1.0f / 16777216.0f);
        memcpy(&bits, &magnitude, 4);
        bits |= sign;
    } else if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// ---------------------------------------------------------------------------------------------
// Activation quantization and the portable kernel: plain C that the compiler vectorizes for the
// baseline instruction set (SSE2 on x86-64, NEON on arm64).

static void quantize_rows_avx2(const float *x, int64_t n, int64_t c, int8_t *q, float *d, float *s);

void curec_quant_activations(const float *x, int64_t n, int64_t c, int8_t *q, float *d, float *s) {
    const int64_t blocks = c / 32, n8 = (n + 7) / 8 * 8;
    for (int64_t i = 0; i < n8 * blocks; i++) s[i] = 0;
    if (curec_quant_cpu_level() >= CUREC_QUANT_AVX2) {
        quantize_rows_avx2(x, n, c, q, d, s);
        return;
    }
    for (int64_t r = 0; r < n; r++) {
        for (int64_t b = 0; b < blocks; b++) {
            const float *v = x + r * c + b * 32;
            int8_t *out = q + r * c + b * 32;
            float peak = 0;
            int nan = 0;
            for (int i = 0; i < 32; i++) {
                const float a = v[i] < 0 ? -v[i] : v[i];
                peak = a > peak ? a : peak;
                nan |= v[i] != v[i];
            }
            const float inverse = peak > 0 ? 127.0f / peak : 0.0f;
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) {
                // Round to nearest even by adding and removing 1.5 * 2^23 (|v * inverse| <= 127
                // up to rounding); the clamp guards that rounding and maps NaN to -127 (no
                // undefined float-to-int conversion).
                float rounded = (v[i] * inverse + 12582912.0f) - 12582912.0f;
                rounded = rounded >= -127.0f ? (rounded <= 127.0f ? rounded : 127.0f) : -127.0f;
                const int32_t value = (int32_t)rounded;
                out[i] = (int8_t)value;
                sum += value;
            }
            // A NaN in the block makes its scale NaN, so the products it enters are NaN too (an
            // infinity makes the scale infinite and the products NaN as well).
            const float scale = nan ? NAN : peak / 127.0f;
            d[r * blocks + b] = scale;
            s[((r / 8) * blocks + b) * 8 + r % 8] = scale * (float)sum;
        }
    }
}

static void matmul_portable(int type, const uint8_t *w, int64_t row_bytes, int64_t row_begin, int64_t row_end,
                            int64_t blocks, const int8_t *xq, const float *xd, const float *xs, int64_t n,
                            float *out, int64_t ldo, int accumulate) {
    const int q8 = type == CUREC_QUANT_Q8_0, q41 = type == CUREC_QUANT_Q4_1;
    const int64_t block_bytes = q8 ? 34 : q41 ? 20 : 18;
    for (int64_t o = row_begin; o < row_end; o++) {
        const uint8_t *row = w + o * row_bytes;
        for (int64_t r = 0; r < n; r++) {
            float sum = 0;
            for (int64_t b = 0; b < blocks; b++) {
                const uint8_t *block = row + b * block_bytes;
                const int8_t *x = xq + (r * blocks + b) * 32;
                const float dw = half_to_float(load_u16(block));
                // Unpacking into a block of bytes first lets the compiler vectorize both loops.
                int8_t qw[32];
                if (q8) {
                    memcpy(qw, block + 2, 32);
                } else {
                    const uint8_t *packed = block + (q41 ? 4 : 2);
                    for (int i = 0; i < 16; i++) {
                        qw[i] = (int8_t)(packed[i] & 0x0F);
                        qw[i + 16] = (int8_t)(packed[i] >> 4);
                    }
                }
                int32_t p = 0;
                for (int i = 0; i < 32; i++) p += (int32_t)qw[i] * x[i];
                if (!q8) {
                    const float c = q41 ? half_to_float(load_u16(block + 2)) : -8.0f * dw;
                    sum += c * xs[((r / 8) * blocks + b) * 8 + r % 8];
                }
                sum += (float)p * (dw * xd[r * blocks + b]);
            }
            float *y = out + r * ldo + o;
            *y = accumulate ? *y + sum : sum;
        }
    }
}

// ---------------------------------------------------------------------------------------------

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

// curec_quant_activations with AVX2, bit for bit the plain C loop above: NaN lanes are left out
// of the peak, rounding is to nearest even, the clamp maps NaN to -127.
static AVX2_TARGET void quantize_rows_avx2(const float *x, int64_t n, int64_t c, int8_t *q, float *d, float *s) {
    const int64_t blocks = c / 32;
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 low = _mm256_set1_ps(-127.0f), high = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t b = 0; b < blocks; b++) {
            const float *v = x + r * c + b * 32;
            __m256 vk[4], peak = _mm256_setzero_ps();
            int nan = 0;
            for (int k = 0; k < 4; k++) {
                vk[k] = _mm256_loadu_ps(v + 8 * k);
                const __m256 ordered = _mm256_cmp_ps(vk[k], vk[k], _CMP_ORD_Q);
                nan |= _mm256_movemask_ps(ordered) != 0xFF;
                peak = _mm256_max_ps(peak, _mm256_and_ps(_mm256_and_ps(vk[k], magnitude), ordered));
            }
            __m128 p4 = _mm_max_ps(_mm256_castps256_ps128(peak), _mm256_extractf128_ps(peak, 1));
            p4 = _mm_max_ps(p4, _mm_movehl_ps(p4, p4));
            p4 = _mm_max_ss(p4, _mm_movehdup_ps(p4));
            const float top = _mm_cvtss_f32(p4);
            const __m256 inverse = _mm256_set1_ps(top > 0 ? 127.0f / top : 0.0f);
            __m256i ik[4], total = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                const __m256 rounded = _mm256_round_ps(_mm256_mul_ps(vk[k], inverse),
                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                ik[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(rounded, low), high));
                total = _mm256_add_epi32(total, ik[k]);
            }
            const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(ik[0], ik[1]), _mm256_packs_epi32(ik[2], ik[3]));
            _mm256_storeu_si256((__m256i *)(q + r * c + b * 32), _mm256_permutevar8x32_epi32(bytes, order));
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
            const float scale = nan ? NAN : top / 127.0f;
            d[r * blocks + b] = scale;
            s[((r / 8) * blocks + b) * 8 + r % 8] = scale * (float)_mm_cvtsi128_si32(t);
        }
    }
}
#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

// Unsigned bytes (a) times signed bytes (b), 4 adjacent products summed into each int32 lane.
#define DOT_AVX2(a, b) _mm256_madd_epi16(_mm256_maddubs_epi16((a), (b)), _mm256_set1_epi16(1))
#define DOT_VNNI(a, b) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (a), (b))

// Blocking for long inputs (a prefill of many rows): activation rows go in chunks of
// CHUNK_ROWS, whose 8-bit blocks (at most 48 KiB for 1536 columns) stay in L1/L2 cache, and
// weight rows in slabs of SLAB_ROWS (at most 200 KiB of Q4_1/Q8_0 blocks for 576 columns,
// 600 KiB for 1536), read from memory by the first group of a chunk and from L2 by the
// others. Without it a 2048-row prefill streamed the activations from L3 for every weight row
// and ran at half speed.
#define CHUNK_ROWS 32
#define SLAB_ROWS 512

// Defines the kernels of one instruction set: matmul_<S> and its helpers. GMAX is the most
// activation rows per tile: 4 with AVX2's 16 vector registers, 8 with AVX-512's 32.
#define DEFINE_KERNELS(S, TARGET, DOT, GMAX)                                                       \
    INLINE TARGET float hsum_##S(__m256 v) {                                                      \
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));            \
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                                   \
        s = _mm_add_ss(s, _mm_movehdup_ps(s));                                                    \
        return _mm_cvtss_f32(s);                                                                  \
    }                                                                                             \
                                                                                                  \
    /* Block b of one weight row times activation rows r0 .. r0+G-1, added to G accumulators  */  \
    /* of 8 lanes (and the Q4 offset terms of the G rows to one accumulator, lane g for row g: */ \
    /* 4 lanes in extra4 when G <= 4, else 8 in extra8; xs + 8b holds the rows' sums). */         \
    INLINE TARGET void block_##S(const int type, const int G, const uint8_t *row, int64_t blocks, \
                                 int64_t b, const int8_t *xq, const float *xd, const float *xs,   \
                                 int64_t r0, __m256 *acc, __m128 *extra4,                         \
                                 __m256 *extra8) {                                                \
        const int q8 = type == CUREC_QUANT_Q8_0, q41 = type == CUREC_QUANT_Q4_1;                  \
        const uint8_t *block = row + b * (q8 ? 34 : q41 ? 20 : 18);                               \
        const float d = _cvtsh_ss(load_u16(block));                                               \
        const __m256 dw = _mm256_set1_ps(d);                                                      \
        __m256i qw, aw;                                                                           \
        if (q8) {                                                                                 \
            qw = _mm256_loadu_si256((const __m256i *)(block + 2));                                \
            aw = _mm256_sign_epi8(qw, qw);                                                        \
        } else {                                                                                  \
            const float c = q41 ? _cvtsh_ss(load_u16(block + 2)) : -8.0f * d;                     \
            if (G > 4)                                                                            \
                *extra8 = _mm256_fmadd_ps(_mm256_set1_ps(c), _mm256_loadu_ps(xs + b * 8), *extra8); \
            else                                                                                  \
                *extra4 = _mm_fmadd_ps(_mm_set1_ps(c), _mm_loadu_ps(xs + b * 8), *extra4);        \
            const __m128i packed = _mm_loadu_si128((const __m128i *)(block + (q41 ? 4 : 2)));     \
            const __m128i low4 = _mm_set1_epi8(0x0F);                                             \
            qw = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low4),                 \
                                  _mm_and_si128(packed, low4));                                   \
            aw = qw;                                                                              \
        }                                                                                         \
        for (int g = 0; g < G; g++) {                                                             \
            const int64_t xb = (r0 + g) * blocks + b;                                             \
            const __m256i qx = _mm256_loadu_si256((const __m256i *)(xq + xb * 32));               \
            const __m256i p = q8 ? DOT(aw, _mm256_sign_epi8(qx, qw)) : DOT(aw, qx);               \
            const __m256 scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(xd + xb)); \
            acc[g] = _mm256_fmadd_ps(scaled, dw, acc[g]);                                         \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* Weight rows o in [begin, end) times activation rows r0 .. r0+G-1, each weight row's     */ \
    /* blocks read once (then from L1). With G <= 2, even and odd blocks go to separate        */ \
    /* accumulators so that at least 2 FMA chains hide each other's latency. */                   \
    INLINE TARGET void rows_##S(const int type, const int G, const uint8_t *w, int64_t row_bytes, \
                                int64_t begin, int64_t end, int64_t blocks, const int8_t *xq,     \
                                const float *xd, const float *xs, int64_t r0,                     \
                                float *out, int64_t ldo, int accumulate) {                        \
        const int P = G <= 2 ? 2 : 1;                                                             \
        const float *sg = xs + (r0 / 8) * blocks * 8 + r0 % 8; /* block b of rows r0.. at 8b */    \
        for (int64_t o = begin; o < end; o++) {                                                   \
            const uint8_t *row = w + o * row_bytes;                                               \
            __m256 acc[2][8];                                                                     \
            __m128 extra4[2] = {_mm_setzero_ps(), _mm_setzero_ps()};                              \
            __m256 extra8 = _mm256_setzero_ps();                                                  \
            for (int k = 0; k < P; k++)                                                           \
                for (int g = 0; g < G; g++) acc[k][g] = _mm256_setzero_ps();                      \
            int64_t b = 0;                                                                        \
            if (P == 2)                                                                           \
                for (; b + 2 <= blocks; b += 2) {                                                 \
                    block_##S(type, G, row, blocks, b, xq, xd, sg, r0, acc[0], &extra4[0], &extra8); \
                    block_##S(type, G, row, blocks, b + 1, xq, xd, sg, r0, acc[1], &extra4[1], &extra8); \
                }                                                                                 \
            for (; b < blocks; b++)                                                               \
                block_##S(type, G, row, blocks, b, xq, xd, sg, r0, acc[0], &extra4[0], &extra8); \
            float offsets[8];                                                                     \
            if (G > 4)                                                                            \
                _mm256_storeu_ps(offsets, extra8);                                                \
            else                                                                                  \
                _mm_storeu_ps(offsets, _mm_add_ps(extra4[0], extra4[1]));                         \
            for (int g = 0; g < G; g++) {                                                         \
                float *y = out + (r0 + g) * ldo + o;                                              \
                const __m256 sum = P == 2 ? _mm256_add_ps(acc[0][g], acc[1][g]) : acc[0][g];      \
                const float v = hsum_##S(sum) + offsets[g];                                       \
                *y = accumulate ? *y + v : v;                                                     \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* One function per weight type and group size, so that each is compiled (registers,      */ \
    /* unrolling) for its constant G alone: inlined together, the compiler's choices for one  */ \
    /* size slowed others by up to 2x. */                                                         \
    DEFINE_ROWS_OF_TYPE(S, TARGET, q8_0, CUREC_QUANT_Q8_0)                                        \
    DEFINE_ROWS_OF_TYPE(S, TARGET, q4_1, CUREC_QUANT_Q4_1)                                        \
    DEFINE_ROWS_OF_TYPE(S, TARGET, q4_0, CUREC_QUANT_Q4_0)                                        \
                                                                                                  \
    /* Chunks of activation rows, slabs of weight rows, groups of up to GMAX activation rows. */ \
    static TARGET void matmul_##S(int type, const uint8_t *w, size_t row_bytes, int64_t row_begin, \
                                  int64_t row_end, int64_t blocks, const int8_t *xq,              \
                                  const float *xd, const float *xs, int64_t n, float *out,        \
                                  int64_t ldo, int accumulate) {                                  \
        rows_fn *const *table = type == CUREC_QUANT_Q8_0 ? rows_q8_0_##S                          \
                              : type == CUREC_QUANT_Q4_1 ? rows_q4_1_##S : rows_q4_0_##S;         \
        for (int64_t c0 = 0; c0 < n; c0 += CHUNK_ROWS) {                                          \
            const int64_t c1 = c0 + CHUNK_ROWS < n ? c0 + CHUNK_ROWS : n;                         \
            for (int64_t s0 = row_begin; s0 < row_end; s0 += SLAB_ROWS) {                         \
                const int64_t s1 = s0 + SLAB_ROWS < row_end ? s0 + SLAB_ROWS : row_end;           \
                for (int64_t r0 = c0; r0 < c1; r0 += GMAX) {                                      \
                    const int G = c1 - r0 >= GMAX ? GMAX : (int)(c1 - r0);                        \
                    table[G - 1](w, (int64_t)row_bytes, s0, s1, blocks, xq, xd, xs, r0, out, ldo, accumulate); \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

// The signature of the per-(type, G) row loops.
typedef void rows_fn(const uint8_t *w, int64_t row_bytes, int64_t begin, int64_t end, int64_t blocks,
                     const int8_t *xq, const float *xd, const float *xs, int64_t r0, float *out,
                     int64_t ldo, int accumulate);

#define DEFINE_ROWS_G(S, TARGET, T, TYPE, G)                                                       \
    static TARGET __attribute__((noinline)) void rows_##T##_##S##_##G(                            \
        const uint8_t *w, int64_t row_bytes, int64_t begin, int64_t end, int64_t blocks,          \
        const int8_t *xq, const float *xd, const float *xs, int64_t r0, float *out,               \
        int64_t ldo, int accumulate) {                                                            \
        rows_##S(TYPE, G, w, row_bytes, begin, end, blocks, xq, xd, xs, r0, out, ldo, accumulate); \
    }

// rows_<T>_<S>_<G> for G = 1 ... 8 and the table rows_<T>_<S>[G - 1] (AVX2 uses entries 0-3).
#define DEFINE_ROWS_OF_TYPE(S, TARGET, T, TYPE)                                                    \
    DEFINE_ROWS_G(S, TARGET, T, TYPE, 1) DEFINE_ROWS_G(S, TARGET, T, TYPE, 2)                     \
    DEFINE_ROWS_G(S, TARGET, T, TYPE, 3) DEFINE_ROWS_G(S, TARGET, T, TYPE, 4)                     \
    DEFINE_ROWS_G(S, TARGET, T, TYPE, 5) DEFINE_ROWS_G(S, TARGET, T, TYPE, 6)                     \
    DEFINE_ROWS_G(S, TARGET, T, TYPE, 7) DEFINE_ROWS_G(S, TARGET, T, TYPE, 8)                     \
    static rows_fn *const rows_##T##_##S[8] = {                                                   \
        rows_##T##_##S##_1, rows_##T##_##S##_2, rows_##T##_##S##_3, rows_##T##_##S##_4,           \
        rows_##T##_##S##_5, rows_##T##_##S##_6, rows_##T##_##S##_7, rows_##T##_##S##_8};

DEFINE_KERNELS(avx2, AVX2_TARGET, DOT_AVX2, 4)
DEFINE_KERNELS(vnni, VNNI_TARGET, DOT_VNNI, 8)

#else  // not x86-64

int curec_quant_cpu_level(void) { return CUREC_QUANT_PORTABLE; }

static void quantize_rows_avx2(const float *x, int64_t n, int64_t c, int8_t *q, float *d, float *s) {
    (void)x, (void)n, (void)c, (void)q, (void)d, (void)s;  // never called below level AVX2
}

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
    if (level != CUREC_QUANT_PORTABLE) return -1;
    matmul_portable(type, (const uint8_t *)w, (int64_t)row_bytes, row_begin, row_end, blocks, xq, xd, xs, n, out, ldo,
                    accumulate);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Attention of a decoding step (see the header). Each cached key and value row is read once for
// all the query heads of its group: at batch 16 the cache a step reads (35 MB for SmolLM2-135M
// at 200 positions) is a third of the weights, and one-row sgemm calls spent more in calls and
// packing than in arithmetic.

static void attention_portable(const float *q, const float *k, const float *v, int64_t L, int64_t ld,
                               int64_t group, int64_t hs, float scale, float *s, float *out) {
    for (int64_t i = 0; i < L; i++)
        for (int64_t h = 0; h < group; h++) {
            float dot = 0;
            for (int64_t d = 0; d < hs; d++) dot += q[h * hs + d] * k[i * ld + d];
            s[h * L + i] = scale * dot;
        }
    for (int64_t x = 0; x < group * hs; x++) out[x] = 0;
    for (int64_t h = 0; h < group; h++) {
        float *row = s + h * L, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < L; i++) mx = row[i] > mx ? row[i] : mx;
        for (int64_t i = 0; i < L; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        for (int64_t i = 0; i < L; i++) row[i] /= sum;
    }
    for (int64_t i = 0; i < L; i++)
        for (int64_t h = 0; h < group; h++)
            for (int64_t d = 0; d < hs; d++) out[h * hs + d] += s[h * L + i] * v[i * ld + d];
}

#ifdef CUREC_X86
#define AVX512_TARGET __attribute__((target("avx2,fma,avx512f")))
// Rows ahead whose cache lines are requested while the current row is used.
#define PREFETCH_ROWS 8

// hs a multiple of 16: a key row times each query head, 16 lanes at a time; then the value row
// added into each head's output with its probability.
static AVX512_TARGET void attention_avx512(const float *q, const float *k, const float *v, int64_t L,
                                           int64_t ld, int64_t group, int64_t hs, float scale, float *s,
                                           float *out) {
    for (int64_t i = 0; i < L; i++) {
        const float *key = k + i * ld;
        // The rows are ld apart, a stride the hardware prefetchers follow poorly.
        if (i + PREFETCH_ROWS < L)
            for (int64_t d = 0; d < hs; d += 16) _mm_prefetch((const char *)(key + PREFETCH_ROWS * ld + d), _MM_HINT_T0);
        for (int64_t h = 0; h < group; h++) {
            const float *qh = q + h * hs;
            __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qh), _mm512_loadu_ps(key));
            for (int64_t d = 16; d < hs; d += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qh + d), _mm512_loadu_ps(key + d), acc);
            s[h * L + i] = scale * _mm512_reduce_add_ps(acc);
        }
    }
    for (int64_t h = 0; h < group; h++) {
        float *row = s + h * L, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < L; i++) mx = row[i] > mx ? row[i] : mx;
        for (int64_t i = 0; i < L; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        const float inverse = 1 / sum;
        for (int64_t i = 0; i < L; i++) row[i] *= inverse;
    }
    for (int64_t x = 0; x < group * hs; x += 16) _mm512_storeu_ps(out + x, _mm512_setzero_ps());
    for (int64_t i = 0; i < L; i++) {
        const float *value = v + i * ld;
        if (i + PREFETCH_ROWS < L)
            for (int64_t d = 0; d < hs; d += 16) _mm_prefetch((const char *)(value + PREFETCH_ROWS * ld + d), _MM_HINT_T0);
        for (int64_t h = 0; h < group; h++) {
            const __m512 p = _mm512_set1_ps(s[h * L + i]);
            float *oh = out + h * hs;
            for (int64_t d = 0; d < hs; d += 16)
                _mm512_storeu_ps(oh + d, _mm512_fmadd_ps(p, _mm512_loadu_ps(value + d), _mm512_loadu_ps(oh + d)));
        }
    }
}

// The same with 8 lanes, hs a multiple of 8.
static AVX2_TARGET void attention_avx2(const float *q, const float *k, const float *v, int64_t L, int64_t ld,
                                       int64_t group, int64_t hs, float scale, float *s, float *out) {
    for (int64_t i = 0; i < L; i++) {
        const float *key = k + i * ld;
        if (i + PREFETCH_ROWS < L)
            for (int64_t d = 0; d < hs; d += 16) _mm_prefetch((const char *)(key + PREFETCH_ROWS * ld + d), _MM_HINT_T0);
        for (int64_t h = 0; h < group; h++) {
            const float *qh = q + h * hs;
            __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qh), _mm256_loadu_ps(key));
            for (int64_t d = 8; d < hs; d += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(key + d), acc);
            s[h * L + i] = scale * hsum_avx2(acc);
        }
    }
    for (int64_t h = 0; h < group; h++) {
        float *row = s + h * L, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < L; i++) mx = row[i] > mx ? row[i] : mx;
        for (int64_t i = 0; i < L; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        const float inverse = 1 / sum;
        for (int64_t i = 0; i < L; i++) row[i] *= inverse;
    }
    for (int64_t x = 0; x < group * hs; x += 8) _mm256_storeu_ps(out + x, _mm256_setzero_ps());
    for (int64_t i = 0; i < L; i++) {
        const float *value = v + i * ld;
        if (i + PREFETCH_ROWS < L)
            for (int64_t d = 0; d < hs; d += 16) _mm_prefetch((const char *)(value + PREFETCH_ROWS * ld + d), _MM_HINT_T0);
        for (int64_t h = 0; h < group; h++) {
            const __m256 p = _mm256_set1_ps(s[h * L + i]);
            float *oh = out + h * hs;
            for (int64_t d = 0; d < hs; d += 8)
                _mm256_storeu_ps(oh + d, _mm256_fmadd_ps(p, _mm256_loadu_ps(value + d), _mm256_loadu_ps(oh + d)));
        }
    }
}
#endif

void curec_attention_single(const float *q, const float *k, const float *v, int64_t L, int64_t ld, int64_t group,
                            int64_t hs, float scale, float *scratch, float *out) {
#ifdef CUREC_X86
    const int level = curec_quant_cpu_level();
    if (level >= CUREC_QUANT_AVX512VNNI && hs % 16 == 0) {
        attention_avx512(q, k, v, L, ld, group, hs, scale, scratch, out);
        return;
    }
    if (level >= CUREC_QUANT_AVX2 && hs % 8 == 0) {
        attention_avx2(q, k, v, L, ld, group, hs, scale, scratch, out);
        return;
    }
#endif
    attention_portable(q, k, v, L, ld, group, hs, scale, scratch, out);
}

// ---------------------------------------------------------------------------------------------
// The SwiGLU gate, out = silu(gate) * up = gate / (1 + e^-gate) * up. glibc's scalar expf took
// about 5% of a decoding step at batch 16; the AVX2 version evaluates e^x 8 lanes at a time:
// x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes' degree-6 polynomial (relative error below
// 2e-7, as expf), 2^n by building the exponent bits. x is clamped to +-88.3 first: e^-gate
// overflows to a large finite value (silu -> -0) or underflows to 0 (silu -> gate).

static void swiglu_portable(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

#ifdef CUREC_X86
static AVX2_TARGET __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3f)), _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n + 127 in the exponent field (n in [-127, 127] after the clamp; -127 gives 0).
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static AVX2_TARGET void swiglu_avx2(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    swiglu_portable(out + i, gate + i, up + i, n - i);
}
#endif

void curec_swiglu(float *out, const float *gate, const float *up, int64_t n) {
#ifdef CUREC_X86
    if (curec_quant_cpu_level() >= CUREC_QUANT_AVX2) {
        swiglu_avx2(out, gate, up, n);
        return;
    }
#endif
    swiglu_portable(out, gate, up, n);
}
