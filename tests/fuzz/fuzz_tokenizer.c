/* Tokenizer files: the first byte picks what the rest is: 0 vocab.json
 * (with a small valid merges.txt), 1 merges.txt (with a small valid
 * vocab.json), 2 tokenizer.json. Loaded, then a fixed text is tokenized. */
#include "fuzz.h"

#include <unistd.h>

#ifndef WOBBLE_FUZZ_TOKENIZER
#error "WOBBLE_FUZZ_TOKENIZER: a folder with a small vocab.json + merges.txt"
#endif

static char dir[512];
static uint8_t *vocab, *merges;
static size_t vocab_n, merges_n;

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    char p[600];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", fuzz_dir());
        vocab = slurp(WOBBLE_FUZZ_TOKENIZER "/vocab.json", &vocab_n);
        merges = slurp(WOBBLE_FUZZ_TOKENIZER "/merges.txt", &merges_n);
    }
    if (size < 1) return 0;
    const int which = data[0] % 3;
    char v[600], mg[600], tj[600];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/merges.txt", dir);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    unlink(v), unlink(mg), unlink(tj);
    const char *path = dir;
    if (which == 0) {
        fuzz_write(v, data + 1, size - 1);
        fuzz_write(mg, merges, merges_n);
    } else if (which == 1) {
        fuzz_write(v, vocab, vocab_n);
        fuzz_write(mg, data + 1, size - 1);
    } else {
        fuzz_write(tj, data + 1, size - 1);
        path = tj;
    }
    wobble_tokenizer *tok = NULL;
    if (wobble_tokenizer_load(ctx, path, &tok) == WOBBLE_OK) {
        int32_t ids[77];
        int trunc = 0;
        static const char *texts[] = {"a photo of a cat.", "Ünïcödé  ﬁ \xf0\x9f\x90\x88 it's 42!", ""};
        for (int t = 0; t < 3; t++) wobble_tokenize(ctx, tok, texts[t], 77, ids, &trunc);
        wobble_tokenizer_free(tok);
    }
    (void)p;
    return 0;
}
