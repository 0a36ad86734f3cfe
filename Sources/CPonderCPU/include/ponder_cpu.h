#ifndef PONDER_CPU_H
#define PONDER_CPU_H

/* CPU features asked of the CPU itself (cpuid, with the OS's register-state support), not of
 * /proc/cpuinfo: under valgrind, whose emulated CPU has no AVX-512, the answer is then the one
 * the emulator can run. Compiled for generic x86-64, so asking never executes an instruction
 * the CPU lacks. */

/* A comma-separated list of the features Ponder's kernels were compiled for (x86-64 with
 * Haswell's AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE) that this CPU lacks; "" when none. */
const char *ponder_cpu_missing_features(void);

/* 1 when the CPU runs AVX-512F (and the OS saves its registers), else 0. */
int ponder_cpu_has_avx512f(void);

#endif
