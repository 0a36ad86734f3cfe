#include "ponder_cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
const char *ponder_cpu_missing_features(void) {
    static char missing[128];
    static int done = 0;
    if (done) return missing;
    __builtin_cpu_init();
    /* A test hook: pretend a feature is missing, to check the error path on any CPU. */
    const char *pretend = getenv("PONDER_TEST_PRETEND_MISSING_CPU_FEATURE");
    struct { const char *name; int ok; } f[] = {
        {"avx", __builtin_cpu_supports("avx")},       {"avx2", __builtin_cpu_supports("avx2")},
        {"fma", __builtin_cpu_supports("fma")},       {"bmi", __builtin_cpu_supports("bmi")},
        {"bmi2", __builtin_cpu_supports("bmi2")},     {"f16c", __builtin_cpu_supports("f16c")},
        {"popcnt", __builtin_cpu_supports("popcnt")},
    };
    missing[0] = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].ok && !(pretend && strcmp(pretend, f[i].name) == 0)) continue;
        if (missing[0]) strcat(missing, ",");
        strcat(missing, f[i].name);
    }
    done = 1;
    return missing;
}

int ponder_cpu_has_avx512f(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}
#else
const char *ponder_cpu_missing_features(void) { return ""; }
int ponder_cpu_has_avx512f(void) { return 0; }
#endif
