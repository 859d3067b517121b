/* Eval cache records (eval_cache_parse): the header's own hashes and
 * dimension are taken as the expected ones, so the fuzzer reaches the
 * records; every parsed entry is then looked up. */
#include "fuzz.h"
#include "../../src/eval/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 32) return 0;
    uint64_t mh, ph;
    uint32_t dim;
    memcpy(&mh, data + 8, 8);
    memcpy(&ph, data + 16, 8);
    memcpy(&dim, data + 24, 4);
    if (dim < 1 || dim > 4096) return 0;
    eval_cache c;
    eval_cache_init(&c, (int)dim);
    if (eval_cache_parse(&c, data, size, mh, ph) == 0)
        for (int i = 0; i < c.n; i++)
            if (eval_cache_find(&c, c.e[i].op, c.e[i].level) == NULL && c.e[i].level == c.e[i].level) abort();
    eval_cache_clear(&c);
    return 0;
}
