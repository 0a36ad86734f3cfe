/* Swift has no prefetch; clang inlines this into the Swift caller. */
static inline void ponder_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }
