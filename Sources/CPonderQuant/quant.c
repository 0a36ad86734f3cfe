#include "ponder_quant.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A row's result must not depend on how many rows share its pass (a sample of a group equals
 * the same sample alone): no implicit fused multiply-adds, whose use differs between the
 * specialisations for 1–4 rows. The kernels' explicit FMA intrinsics are unaffected. */
#pragma clang fp contract(off)

enum { F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30 };

/* A quantized activation block: 32 codes, the scale, and scale · (sum of codes) per half, which
 * the formats with an offset (Q4_1's min, Q4_0's −8, the K-quants' mins) multiply by. */
typedef struct {
    int8_t q[32];
    float d, s0, s1, pad;
} act_block;

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}

/* ggml's get_scale_min_k4: sub-block j's 6-bit scale and min in a Q4_K / Q5_K block. */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

size_t ponder_q_act_row_bytes(int k) { return (size_t)(k / 32) * sizeof(act_block); }

void ponder_q_quantize_rows(const float *x, size_t ldx, int m, int k, void *xq) {
    act_block *out = xq;
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * ldx;
        for (int b = 0; b < k / 32; b++, out++) {
            const float *v = xr + 32 * b;
            float amax = 0;
            int finite = 1;
            for (int i = 0; i < 32; i++) {
                amax = fmaxf(amax, fabsf(v[i]));
                finite &= isfinite(v[i]) != 0;
            }
            /* A NaN or infinite activation makes the block's products NaN, as the fp32 product
             * would: silently rounding it to a code would hide it from the sampler's check. */
            const float d = finite ? amax / 127 : NAN, id = finite && d > 0 ? 1 / d : 0;
            int s0 = 0, s1 = 0;
            for (int i = 0; i < 32; i++) {
                /* v · (1 / d) can land a rounding above 127 at the block's maximum. */
                const float x = v[i] * id;
                const int q = x == x ? (int)nearbyintf(fminf(127.f, fmaxf(-127.f, x))) : 0;
                out->q[i] = (int8_t)q;
                if (i < 16) s0 += q; else s1 += q;
            }
            out->d = d;
            out->s0 = d * (float)s0;
            out->s1 = d * (float)s1;
            out->pad = 0;
        }
    }
}

#define SFX _avx2
#define VNNI 0
#include "qkernels.h"
#undef SFX
#undef VNNI

#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))), apply_to = function)

#define SFX _vnni
#define VNNI 1
#include "qkernels.h"
#undef SFX
#undef VNNI

#pragma clang attribute pop

static int isa_available(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        return 2;
    return 1;
}

static int isa_in_use = 0;

int ponder_q_isa(void) {
    if (!isa_in_use) {
        /* PONDER_NO_AVX512=1, as for the fp32 kernels: the AVX2 path on an AVX-512 machine. */
        const char *no512 = getenv("PONDER_NO_AVX512");
        isa_in_use = no512 && strcmp(no512, "1") == 0 ? 1 : isa_available();
    }
    return isa_in_use;
}

int ponder_q_set_isa(int isa) {
    if (isa >= 1 && isa <= isa_available()) isa_in_use = isa;
    return ponder_q_isa();
}

int ponder_q_has_q8_kernel(int type) {
    switch (type) {
    case Q4_0: case Q4_1: case Q5_0: case Q5_1: case Q8_0: case Q4_K: case Q5_K: case Q6_K: return 1;
    default: return 0;
    }
}

int ponder_q_supported(int type) { return ponder_q_has_q8_kernel(type) || type == F16 || type == BF16; }

void ponder_q_matmul_q8(int type, const void *w, size_t row_bytes, int k, int lo, int hi, const void *xq, int m,
                        float *y, size_t ldy, int accumulate) {
    if (ponder_q_isa() == 2) matmul_q8_vnni(type, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate);
    else matmul_q8_avx2(type, w, row_bytes, k, lo, hi, xq, m, y, ldy, accumulate);
}

void ponder_q_dequantize_rows(int type, const void *w, size_t row_bytes, int k, int lo, int hi, float *dst, size_t ldd) {
    dequantize_avx2(type, w, row_bytes, k, lo, hi, dst, ldd);
}

int64_t ponder_q_first_bad_block(int type, const void *data, int64_t nblocks) {
    /* Offsets of the f16 scales (and mins) in each block; an exponent of all ones is NaN or Inf. */
    size_t bytes;
    int offs[2], n;
    switch (type) {
    case Q4_0: bytes = 18; offs[0] = 0; n = 1; break;
    case Q4_1: bytes = 20; offs[0] = 0; offs[1] = 2; n = 2; break;
    case Q5_0: bytes = 22; offs[0] = 0; n = 1; break;
    case Q5_1: bytes = 24; offs[0] = 0; offs[1] = 2; n = 2; break;
    case Q8_0: bytes = 34; offs[0] = 0; n = 1; break;
    case Q4_K: bytes = 144; offs[0] = 0; offs[1] = 2; n = 2; break;
    case Q5_K: bytes = 176; offs[0] = 0; offs[1] = 2; n = 2; break;
    case Q6_K: bytes = 210; offs[0] = 208; n = 1; break;
    case 11: bytes = 110; offs[0] = 108; n = 1; break; /* Q3_K */
    default: return -1;
    }
    const uint8_t *p = data;
    for (int64_t b = 0; b < nblocks; b++, p += bytes) {
        for (int i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + offs[i], 2);
            if ((h & 0x7C00) == 0x7C00) return b;
        }
    }
    return -1;
}

/* Per-thread buffers through a pthread key, so a host thread that generates and exits takes its
 * buffers with it. */
typedef struct { void *p[2]; size_t bytes[2]; } scratch_set;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
    scratch_set *s = v;
    free(s->p[0]);
    free(s->p[1]);
    free(s);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *ponder_q_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot > 1) return NULL;
    pthread_once(&scratch_once, scratch_init);
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) { free(s); return NULL; }
    }
    if (s->bytes[slot] >= bytes && s->p[slot]) return s->p[slot];
    const size_t want = (bytes + 4095) & ~(size_t)4095;
    void *p = NULL;
    if (posix_memalign(&p, 64, want) != 0) return NULL;
    free(s->p[slot]);
    s->p[slot] = p;
    s->bytes[slot] = want;
    return p;
}
