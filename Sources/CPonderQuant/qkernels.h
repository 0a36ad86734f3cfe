/* The block kernels, compiled twice by quant.c: once for AVX2 (SFX _avx2) and once for AVX-512
 * VNNI (SFX _vnni, VNNI 1), which differ only in the 8-bit dot product. Not a public header. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, SFX)

/* A 32-value block's codes (unsigned, or signed for Q8_0) and its affine map per half:
 * value i = a[i / 16] · q[i] + c[i / 16]. Every block format reduces to this. */
typedef struct { __m256i q; float a0, a1, c0, c1; } F(qblock);

static inline __m256i F(nibbles)(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

/* Byte i is 0x10 when bit i of x is set (the fifth bit of Q5_0 / Q5_1 codes). */
static inline __m256i F(fifth_bits)(uint32_t x) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                           0x0101010101010101LL, 0x0000000000000000LL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

static inline __attribute__((always_inline)) F(qblock) F(unpack)(int type, const uint8_t *row, int b) {
    F(qblock) u;
    switch (type) {
    case Q4_0: {
        const uint8_t *p = row + (size_t)b * 18;
        const float d = h2f(p);
        u.q = F(nibbles)(p + 2);
        u.a0 = u.a1 = d; u.c0 = u.c1 = -8 * d;
        break;
    }
    case Q4_1: {
        const uint8_t *p = row + (size_t)b * 20;
        u.q = F(nibbles)(p + 4);
        u.a0 = u.a1 = h2f(p); u.c0 = u.c1 = h2f(p + 2);
        break;
    }
    case Q5_0: {
        const uint8_t *p = row + (size_t)b * 22;
        const float d = h2f(p);
        u.q = _mm256_or_si256(F(nibbles)(p + 6), F(fifth_bits)(load_u32(p + 2)));
        u.a0 = u.a1 = d; u.c0 = u.c1 = -16 * d;
        break;
    }
    case Q5_1: {
        const uint8_t *p = row + (size_t)b * 24;
        u.q = _mm256_or_si256(F(nibbles)(p + 8), F(fifth_bits)(load_u32(p + 4)));
        u.a0 = u.a1 = h2f(p); u.c0 = u.c1 = h2f(p + 2);
        break;
    }
    case Q8_0: {
        const uint8_t *p = row + (size_t)b * 34;
        u.q = _mm256_loadu_si256((const __m256i *)(p + 2));
        u.a0 = u.a1 = h2f(p); u.c0 = u.c1 = 0;
        break;
    }
    case Q4_K: case Q5_K: {
        /* 256-value super-blocks of eight 32-value sub-blocks, each with a 6-bit scale and min. */
        const int j = b & 7;
        const uint8_t *p = row + (size_t)(b >> 3) * (type == Q4_K ? 144 : 176);
        int sc, mn;
        scale_min_k4(j, p + 4, &sc, &mn);
        const uint8_t *qs = p + (type == Q4_K ? 16 : 48) + 32 * (j >> 1);
        __m256i v = _mm256_loadu_si256((const __m256i *)qs);
        if (j & 1) v = _mm256_srli_epi16(v, 4);
        u.q = _mm256_and_si256(v, _mm256_set1_epi8(0xF));
        if (type == Q5_K) {
            const __m256i hb = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(p + 16)), _mm_cvtsi32_si128(j));
            u.q = _mm256_or_si256(u.q, _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(1)), 4));
        }
        u.a0 = u.a1 = h2f(p) * (float)sc;
        u.c0 = u.c1 = -h2f(p + 2) * (float)mn;
        break;
    }
    case Q6_K: {
        /* Two 128-value halves; value l + 32g of a half takes its low 4 bits from ql[l + 32(g & 1)]
         * (high nibble when g ≥ 2), bits 2g, 2g + 1 of qh[l], and int8 scale sc[2g + l / 16]. */
        const int j = b & 7, half = j >> 2, g = j & 3;
        const uint8_t *p = row + (size_t)(b >> 3) * 210;
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + 64 * half + 32 * (g & 1)));
        if (g >= 2) v = _mm256_srli_epi16(v, 4);
        const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(0xF));
        const __m256i hb = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(p + 128 + 32 * half)), _mm_cvtsi32_si128(2 * g));
        u.q = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(3)), 4));
        const int8_t *sc = (const int8_t *)(p + 192) + 8 * half + 2 * g;
        const float d = h2f(p + 208);
        u.a0 = d * sc[0]; u.a1 = d * sc[1];
        u.c0 = -32 * u.a0; u.c1 = -32 * u.a1;
        break;
    }
    default: __builtin_unreachable();
    }
    return u;
}

static inline __m256i F(dot_u8s8)(__m256i u, __m256i s) {
#if VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

static inline float F(hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One weight row against R ≤ 4 quantized activation rows. */
static inline __attribute__((always_inline)) void F(row_q8)(int type, int R, const uint8_t *row, int nb,
                                                           const uint8_t *xq, size_t xstride, float *out) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float sacc[4] = {0, 0, 0, 0};
    for (int b = 0; b < nb; b++) {
        const F(qblock) u = F(unpack)(type, row, b);
        const __m256 av = type == Q6_K ? _mm256_set_m128(_mm_set1_ps(u.a1), _mm_set1_ps(u.a0)) : _mm256_set1_ps(u.a0);
        const __m256i uq = type == Q8_0 ? _mm256_abs_epi8(u.q) : u.q;
        for (int r = 0; r < R; r++) {
            const act_block *x = (const act_block *)(xq + r * xstride) + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x->q);
            const __m256i p = F(dot_u8s8)(uq, type == Q8_0 ? _mm256_sign_epi8(xv, u.q) : xv);
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(av, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(p), acc[r]);
            if (type != Q8_0) sacc[r] += u.c0 * x->s0 + u.c1 * x->s1;
        }
    }
    for (int r = 0; r < R; r++) out[r] = F(hsum)(acc[r]) + sacc[r];
}

static inline __attribute__((always_inline)) void F(matmul_q8_t)(int type, const uint8_t *w, size_t row_bytes, int k,
                                                                int lo, int hi, const uint8_t *xq, int m,
                                                                float *y, size_t ldy, int accumulate) {
    const int nb = k / 32;
    const size_t xs = (size_t)nb * sizeof(act_block);
    float out[4];
    for (int j = lo; j < hi; j++) {
        const uint8_t *row = w + (size_t)j * row_bytes;
        _mm_prefetch((const char *)(row + 4 * row_bytes), _MM_HINT_T0);
        /* Activation rows in groups of at most 4, R a constant in each call so it unrolls. */
        for (int r0 = 0; r0 < m; r0 += 4) {
            const int R = m - r0 < 4 ? m - r0 : 4;
            const uint8_t *x = xq + r0 * xs;
            switch (R) {
            case 1: F(row_q8)(type, 1, row, nb, x, xs, out); break;
            case 2: F(row_q8)(type, 2, row, nb, x, xs, out); break;
            case 3: F(row_q8)(type, 3, row, nb, x, xs, out); break;
            default: F(row_q8)(type, 4, row, nb, x, xs, out); break;
            }
            for (int r = 0; r < R; r++) {
                float *o = y + (size_t)(r0 + r) * ldy + j;
                *o = accumulate ? *o + out[r] : out[r];
            }
        }
    }
}

static void F(matmul_q8)(int type, const void *w, size_t row_bytes, int k, int lo, int hi, const void *xq, int m,
                         float *y, size_t ldy, int accumulate) {
    switch (type) {
    case Q4_0: F(matmul_q8_t)(Q4_0, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q4_1: F(matmul_q8_t)(Q4_1, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q5_0: F(matmul_q8_t)(Q5_0, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q5_1: F(matmul_q8_t)(Q5_1, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q8_0: F(matmul_q8_t)(Q8_0, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q4_K: F(matmul_q8_t)(Q4_K, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q5_K: F(matmul_q8_t)(Q5_K, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    case Q6_K: F(matmul_q8_t)(Q6_K, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate); break;
    }
}

/* 32 values of a row as four vectors of 8 floats. */
static inline __attribute__((always_inline)) void F(block_f32)(int type, const uint8_t *row, int b, __m256 v[4]) {
    if (type == F16) {
        const __m128i *p = (const __m128i *)(row + (size_t)b * 64);
        for (int i = 0; i < 4; i++) v[i] = _mm256_cvtph_ps(_mm_loadu_si128(p + i));
        return;
    }
    if (type == BF16) {
        const __m128i *p = (const __m128i *)(row + (size_t)b * 64);
        for (int i = 0; i < 4; i++)
            v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p + i)), 16));
        return;
    }
    const F(qblock) u = F(unpack)(type, row, b);
    const __m128i lo = _mm256_castsi256_si128(u.q), hi = _mm256_extracti128_si256(u.q, 1);
    __m256i c[4];
    if (type == Q8_0) {
        c[0] = _mm256_cvtepi8_epi32(lo); c[1] = _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8));
        c[2] = _mm256_cvtepi8_epi32(hi); c[3] = _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8));
    } else {
        c[0] = _mm256_cvtepu8_epi32(lo); c[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
        c[2] = _mm256_cvtepu8_epi32(hi); c[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
    }
    const __m256 a0 = _mm256_set1_ps(u.a0), a1 = _mm256_set1_ps(u.a1), c0 = _mm256_set1_ps(u.c0), c1 = _mm256_set1_ps(u.c1);
    v[0] = _mm256_fmadd_ps(a0, _mm256_cvtepi32_ps(c[0]), c0);
    v[1] = _mm256_fmadd_ps(a0, _mm256_cvtepi32_ps(c[1]), c0);
    v[2] = _mm256_fmadd_ps(a1, _mm256_cvtepi32_ps(c[2]), c1);
    v[3] = _mm256_fmadd_ps(a1, _mm256_cvtepi32_ps(c[3]), c1);
}

#define EACH_TYPE(MACRO) \
    MACRO(F16) MACRO(BF16) MACRO(Q4_0) MACRO(Q4_1) MACRO(Q5_0) MACRO(Q5_1) MACRO(Q8_0) MACRO(Q4_K) MACRO(Q5_K) MACRO(Q6_K)

static void F(dequantize)(int type, const void *w, size_t row_bytes, int k, int lo, int hi, float *dst, size_t ldd) {
    const int nb = k / 32;
    switch (type) {
#define CASE(T)                                                                        \
    case T:                                                                            \
        for (int j = lo; j < hi; j++) {                                                \
            const uint8_t *row = (const uint8_t *)w + (size_t)j * row_bytes;           \
            float *o = dst + (size_t)(j - lo) * ldd;                                   \
            for (int b = 0; b < nb; b++) {                                             \
                __m256 v[4];                                                           \
                F(block_f32)(T, row, b, v);                                            \
                for (int i = 0; i < 4; i++) _mm256_storeu_ps(o + 32 * b + 8 * i, v[i]); \
            }                                                                          \
        }                                                                              \
        break;
    EACH_TYPE(CASE)
#undef CASE
    }
}

#undef EACH_TYPE
#undef F
