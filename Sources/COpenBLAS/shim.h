#include <cblas.h>
/* Not in every cblas.h; OpenBLAS has exported it since 0.2. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
