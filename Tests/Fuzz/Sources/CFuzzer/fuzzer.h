/* libFuzzer's entry point for programs that keep their own main() (LLVM 12+): SwiftPM makes
 * every executable's main its own, so ponder-fuzz calls the driver instead of linking
 * libFuzzer's main. The runtime comes from -sanitize=fuzzer (scripts/fuzz.sh). */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
