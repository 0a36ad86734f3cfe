#ifndef PONDER_QUANT_H
#define PONDER_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Matrix products with weights kept in ggml's block formats (GGUF's tensor types), read in place.
 *
 * W is [n × k] in rows of row_bytes bytes (k / block size blocks each); x rows are fp32. Every
 * kernel computes y[r · ldy + j] (+)= Σ_i W[j, i] · x[r, i] for rows r < m and weight rows
 * lo ≤ j < hi, so callers split the weight rows across threads. Types are ggml's numbers:
 * F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q3_K 11, Q4_K 12, Q5_K 13, Q6_K 14, BF16 30.
 *
 * ponder_q_matmul_q8 quantizes nothing itself: the activations are first quantized to 8 bits
 * per 32 values (ponder_q_quantize_rows), and the products are integer dot products of the
 * weight codes with those (AVX2 vpmaddubsw, or AVX-512 VNNI vpdpbusd), scaled per block —
 * llama.cpp's scheme, for inference, where weight bandwidth is everything. Exact fp32 products
 * (training, GRPO rollouts) expand rows with ponder_q_dequantize_rows and use fp32 kernels.
 */

/* Bytes of one quantized activation row of k values (k a multiple of 32). */
size_t ponder_q_act_row_bytes(int k);

/* Quantizes m rows of k fp32 values (row stride ldx floats) into xq (m · act_row_bytes(k)). */
void ponder_q_quantize_rows(const float *x, size_t ldx, int m, int k, void *xq);

/* 1 when type has an integer kernel for ponder_q_matmul_q8. */
int ponder_q_has_q8_kernel(int type);

/* 1 when type is one the kernels read (all types above but Q3_K). */
int ponder_q_supported(int type);

void ponder_q_matmul_q8(int type, const void *w, size_t row_bytes, int k, int lo, int hi,
                        const void *xq, int m, float *y, size_t ldy, int accumulate);

/* Expands weight rows lo..<hi into dst (row stride ldd floats). */
void ponder_q_dequantize_rows(int type, const void *w, size_t row_bytes, int k, int lo, int hi,
                              float *dst, size_t ldd);

/* Writes one row of k values as ggml's reference quantizer does (quantize_row_*_ref, no
 * importance matrix): Q4_0 2, Q4_1 3, Q5_0 6, Q8_0 8 (k a multiple of 32), Q4_K 12, Q6_K 14
 * (k a multiple of 256). Returns 0, writing nothing useful, for another type or k. */
int ponder_q_quantize_row(int type, const float *x, int k, void *dst);

/* Index of the first of nblocks blocks whose scale (or min) is NaN or infinite, or -1. */
int64_t ponder_q_first_bad_block(int type, const void *data, int64_t nblocks);

/* A buffer of at least `bytes` bytes owned by the calling thread (slot 0 or 1), 64-byte aligned,
 * grown as needed and kept for the thread's life; NULL when it cannot be allocated. */
void *ponder_q_scratch(int slot, size_t bytes);

/* The kernels in use: 1 AVX2, 2 AVX-512 VNNI (chosen from cpuid at first use). Setting an ISA
 * the CPU lacks is refused (returns the one in use); tests set 1 to check the AVX2 path. */
int ponder_q_isa(void);
int ponder_q_set_isa(int isa);

#endif
