/* Writing ggml's block formats: the reference quantizers llama.cpp's quantize tool runs without
 * an importance matrix (ggml-quants.c's quantize_row_*_ref), so a file Ponder writes holds the
 * blocks llama.cpp would write for the same weights. Exact fp32 semantics: no contraction of
 * a*b + c into one rounding, which would move near-ties. */
#include "ponder_quant.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

#define MAXI(a, b) ((a) > (b) ? (a) : (b))
#define MINI(a, b) ((a) < (b) ? (a) : (b))
#define GROUP_MAX_EPS 1e-15f

__attribute__((target("f16c"))) static uint16_t f2h(float x) { return _cvtss_sh(x, 0); }
__attribute__((target("f16c"))) static float h2f_(uint16_t h) { return _cvtsh_ss(h); }

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* Round half to even through the float mantissa, as ggml's nearest_int (|x| < 2^22). */
static int nearest_int(float x) {
    float v = x + 12582912.f;
    int i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static void q4_0(const float *x, uint8_t *y) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    const float d = max / -8, id = d ? 1.0f / d : 0.0f;
    put16(y, f2h(d));
    for (int j = 0; j < 16; j++) {
        const uint8_t a = MINI(15, (int8_t)(x[j] * id + 8.5f)), b = MINI(15, (int8_t)(x[16 + j] * id + 8.5f));
        y[2 + j] = a | (b << 4);
    }
}

static void q4_1(const float *x, uint8_t *y) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) { if (x[j] < min) min = x[j]; if (x[j] > max) max = x[j]; }
    const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
    put16(y, f2h(d));
    put16(y + 2, f2h(min));
    for (int j = 0; j < 16; j++) {
        const uint8_t a = MINI(15, (int8_t)((x[j] - min) * id + 0.5f)), b = MINI(15, (int8_t)((x[16 + j] - min) * id + 0.5f));
        y[4 + j] = a | (b << 4);
    }
}

static void q5_0(const float *x, uint8_t *y) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    const float d = max / -16, id = d ? 1.0f / d : 0.0f;
    put16(y, f2h(d));
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t a = MINI(31, (int8_t)(x[j] * id + 16.5f)), b = MINI(31, (int8_t)(x[16 + j] * id + 16.5f));
        y[6 + j] = (a & 0xF) | ((b & 0xF) << 4);
        qh |= ((a & 0x10u) >> 4) << j;
        qh |= ((b & 0x10u) >> 4) << (j + 16);
    }
    memcpy(y + 2, &qh, 4);
}

static void q8_0(const float *x, uint8_t *y) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    put16(y, f2h(d));
    for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ggml's make_qkx2_quants: a scale and min for n values in [0, nmax], searched over 1 + nstep
 * candidate scales for the least weighted squared error. */
static float qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                  float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = MAXI(0, MINI(nmax, l));
        const float diff = scale * L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static void q4_K(const float *x, uint8_t *y) {
    uint8_t L[256], Laux[32], sc[12] = {0};
    float w[32], mins[8], scales[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qkx2(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = MINI(63, (uint8_t)nearest_int(inv_scale * scales[j])), lm = MINI(63, (uint8_t)nearest_int(inv_min * mins[j]));
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    const uint16_t dh = f2h(max_scale / 63.f), mh = f2h(max_min / 63.f);
    put16(y, dh);
    put16(y + 2, mh);
    memcpy(y + 4, sc, 12);
    for (int j = 0; j < 8; j++) {
        int s, m;
        if (j < 4) { s = sc[j] & 63; m = sc[j + 4] & 63; }
        else { s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4); m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
        const float d = h2f_(dh) * s;
        if (!d) continue;
        const float dm = h2f_(mh) * m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = MAXI(0, MINI(15, nearest_int((x[32 * j + i] + dm) / d)));
    }
    uint8_t *q = y + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = L[j + l] | (L[j + l + 32] << 4);
}

/* ggml's make_qx_quants with rmse_type 1 (weights x²): a signed scale for n values in
 * [-nmax, nmax), the best of 19 candidate scales. */
static float qx(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = l + nmax;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = nmax + MAXI(-nmax, MINI(nmax - 1, l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void q6_K(const float *x, uint8_t *y) {
    int8_t L[256];
    float scales[16], max_scale = 0, max_abs = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = qx(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs) { max_abs = fabsf(scales[ib]); max_scale = scales[ib]; }
    }
    memset(y, 0, 210);
    if (max_abs < GROUP_MAX_EPS) {
        put16(y + 208, f2h(0.f));
        return;
    }
    const float iscale = -128.f / max_scale;
    const uint16_t dh = f2h(1 / iscale);
    put16(y + 208, dh);
    int8_t *sc = (int8_t *)(y + 192);
    for (int ib = 0; ib < 16; ib++) sc[ib] = (int8_t)MINI(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; j++) {
        const float d = h2f_(dh) * sc[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = MAXI(-32, MINI(31, nearest_int(x[16 * j + i] / d))) + 32;
    }
    uint8_t *ql = y, *qh = y + 128;
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l] = q1 | (q3 << 4);
            ql[l + 32] = q2 | (q4 << 4);
            qh[l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
        }
    }
}

int ponder_q_quantize_row(int type, const float *x, int k, void *dst) {
    uint8_t *y = dst;
    switch (type) {
    case 2: for (int b = 0; b < k / 32; b++) q4_0(x + 32 * b, y + 18 * b); return k % 32 == 0;
    case 3: for (int b = 0; b < k / 32; b++) q4_1(x + 32 * b, y + 20 * b); return k % 32 == 0;
    case 6: for (int b = 0; b < k / 32; b++) q5_0(x + 32 * b, y + 22 * b); return k % 32 == 0;
    case 8: for (int b = 0; b < k / 32; b++) q8_0(x + 32 * b, y + 34 * b); return k % 32 == 0;
    case 12: for (int b = 0; b < k / 256; b++) q4_K(x + 256 * b, y + 144 * b); return k % 256 == 0;
    case 14: for (int b = 0; b < k / 256; b++) q6_K(x + 256 * b, y + 210 * b); return k % 256 == 0;
    default: return 0;
    }
}
