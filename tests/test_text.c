/*
 * CLIP tokenizer and text tower against the upstream openai/CLIP outputs in
 * $WOBBLE_SHARED/fixtures:
 *  - clip-text: token_ids.npy for the strings in texts.json, exactly, from
 *    vocab.json + merges.txt and from an equivalent tokenizer.json;
 *  - clip-full: under both namings, token ids, image embeddings, text
 *    embeddings (cosine >= 0.99999, max-abs <= 1e-4) and logits_per_image;
 *  - a bucketed batch equals texts one at a time; bad inputs fail cleanly.
 * Skips (77) when the shared folder is absent.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK(j != NULL, "%s: %s", path, e.text);
    return j;
}

static void check_tokens(wobble_ctx *ctx, const wobble_tokenizer *tok, const char *dir, const char *what) {
    char p[1024];
    snprintf(p, sizeof p, "%s/texts.json", dir);
    struct stat st;
    json_t *texts = stat(p, &st) == 0 ? load_json(p) : NULL;
    if (!texts) {
        snprintf(p, sizeof p, "%s/inputs.json", dir);
        json_t *in = load_json(p);
        texts = json_incref(json_object_get(in, "texts"));
        json_decref(in);
    }
    wobble_array ids;
    snprintf(p, sizeof p, "%s/token_ids.npy", dir);
    int rc = wobble_npy_read(ctx, p, &ids);
    CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
    if (rc || !texts) return;
    CHECK(ids.dtype == 'q' && ids.ndim == 2 && ids.shape[0] == (int64_t)json_array_size(texts) && ids.shape[1] == 77,
          "token_ids shape");
    int exact = 0;
    for (size_t i = 0; i < json_array_size(texts); i++) {
        const char *s = json_string_value(json_array_get(texts, i));
        int32_t out[77];
        int trunc = -1;
        rc = wobble_tokenize(ctx, tok, s, 77, out, &trunc);
        CHECK(rc == WOBBLE_OK, "tokenize '%s': %s", s, wobble_last_error(ctx));
        const int64_t *ref = (const int64_t *)ids.data + i * 77;
        int same = 1, first = -1;
        for (int k = 0; k < 77; k++)
            if (out[k] != ref[k]) {
                same = 0;
                if (first < 0) first = k;
            }
        CHECK(same, "%s: text %zu '%.30s' differs at %d: %d vs %lld", what, i, s, first, first >= 0 ? out[first] : 0,
              first >= 0 ? (long long)ref[first] : 0LL);
        CHECK(trunc == (ref[76] != 0), "truncated flag of text %zu", i);
        exact += same;
    }
    printf("%s: %d/%zu texts tokenized exactly\n", what, exact, json_array_size(texts));
    wobble_array_release(&ids);
    json_decref(texts);
}

/* write a tokenizer.json equivalent to vocab.json + merges.txt */
static int write_tokenizer_json(const char *dir, const char *out) {
    char p[1024];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    json_t *vocab = load_json(p);
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    FILE *f = fopen(p, "r");
    if (!vocab || !f) return -1;
    json_t *merges = json_array();
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (n++ == 0 && !strncmp(line, "#version", 8)) continue;
        if (!*line) continue;
        /* alternate the two encodings the format has had */
        if (n % 2) {
            json_array_append_new(merges, json_string(line));
        } else {
            char *sp = strchr(line, ' ');
            *sp = 0;
            json_array_append_new(merges, json_pack("[s,s]", line, sp + 1));
        }
    }
    fclose(f);
    json_t *root = json_pack("{s:{s:s, s:o, s:o}}", "model", "type", "BPE", "vocab", vocab, "merges", merges);
    int rc = json_dump_file(root, out, 0);
    json_decref(root);
    return rc;
}

static void check_full(wobble_ctx *ctx, const wobble_tokenizer *tok_fixture, const char *full, const char *naming) {
    char p[1024], mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/%s", full, naming);
    wobble_model *m = NULL;
    int rc = wobble_model_load(ctx, mdir, NULL, &m);
    CHECK(rc == WOBBLE_OK, "load %s: %s", mdir, wobble_last_error(ctx));
    if (rc) return;
    CHECK(wobble_model_has_text(m), "%s has a text tower", naming);
    CHECK(wobble_model_context_length(m) == 77, "context length %d", wobble_model_context_length(m));
    wobble_model_info mi;
    wobble_model_get_info(m, &mi);
    CHECK(mi.has_text && mi.text_width == 32 && mi.text_depth == 2 && mi.text_heads == 2 && mi.text_vocab == 49408 &&
              fabs(mi.logit_scale - 1 / 0.07) < 1e-4,
          "%s info: text %d/%d/%d/%d, logit scale %g", naming, mi.text_width, mi.text_depth, mi.text_heads,
          mi.text_vocab, mi.logit_scale);
    const int E = wobble_model_embed_dim(m);
    /* tokenizer: the model folder's own files when it has them (hf-naming) */
    wobble_tokenizer *own = NULL;
    const wobble_tokenizer *tok = tok_fixture;
    if (wobble_tokenizer_load(ctx, mdir, &own) == WOBBLE_OK) tok = own;
    printf("%s: tokenizer from %s\n", naming, own ? "the model folder" : "fixtures/clip-text");
    check_tokens(ctx, tok, full, naming);
    snprintf(p, sizeof p, "%s/inputs.json", full);
    json_t *in = load_json(p);
    json_t *texts = json_object_get(in, "texts"), *images = json_object_get(in, "images");
    const int NT = (int)json_array_size(texts), NI = (int)json_array_size(images);
    int32_t *ids = calloc((size_t)NT * 77, sizeof(int32_t));
    for (int i = 0; i < NT; i++)
        CHECK(wobble_tokenize(ctx, tok, json_string_value(json_array_get(texts, i)), 77, ids + (size_t)i * 77, NULL) ==
                  WOBBLE_OK,
              "tokenize");
    float *temb = calloc((size_t)NT * E, sizeof(float)), *iemb = calloc((size_t)NI * E, sizeof(float));
    rc = wobble_model_encode_text(ctx, m, ids, NT, 77, NULL, temb);
    CHECK(rc == WOBBLE_OK, "encode_text: %s", wobble_last_error(ctx));
    wobble_array rt, ri, rl;
    snprintf(p, sizeof p, "%s/text_embedding.npy", full);
    CHECK(wobble_npy_read(ctx, p, &rt) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    snprintf(p, sizeof p, "%s/image_embedding.npy", full);
    CHECK(wobble_npy_read(ctx, p, &ri) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    snprintf(p, sizeof p, "%s/logits_per_image.npy", full);
    CHECK(wobble_npy_read(ctx, p, &rl) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    char what[128];
    snprintf(what, sizeof what, "%s text embeddings", naming);
    double mx = t_compare(what, temb, rt.data, (size_t)NT * E, 0.99999, 1e-4);
    printf("  %-40s max-abs %.2e\n", what, mx);
    /* one at a time equals the batch (the batch runs to its longest text) */
    for (int i = 0; i < NT; i++) {
        float one[1024];
        CHECK(wobble_model_encode_text(ctx, m, ids + (size_t)i * 77, 1, 77, NULL, one) == WOBBLE_OK, "single");
        double d = 0;
        for (int k = 0; k < E; k++) d = fmax(d, fabs(one[k] - temb[(size_t)i * E + k]));
        CHECK(d <= 1e-5, "%s: text %d alone differs from the batch by %.2e", naming, i, d);
    }
    /* images */
    wobble_image *imgs[8];
    for (int i = 0; i < NI && i < 8; i++) {
        snprintf(p, sizeof p, "%s/data/kodak/%s", t_shared_dir(), json_string_value(json_array_get(images, i)));
        CHECK(wobble_image_read(ctx, p, &imgs[i]) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    }
    rc = wobble_model_embed(ctx, m, (const wobble_image *const *)imgs, NI, NULL, iemb);
    CHECK(rc == WOBBLE_OK, "embed: %s", wobble_last_error(ctx));
    snprintf(what, sizeof what, "%s image embeddings", naming);
    mx = t_compare(what, iemb, ri.data, (size_t)NI * E, 0.99999, 1e-4);
    printf("  %-40s max-abs %.2e\n", what, mx);
    /* logits = exp(logit_scale) * cos */
    const double scale = wobble_model_logit_scale(m);
    CHECK(scale > 0, "logit scale %g", scale);
    double lmx = 0;
    for (int i = 0; i < NI; i++)
        for (int j = 0; j < NT; j++) {
            double dot = 0, na = 0, nb = 0;
            for (int k = 0; k < E; k++) {
                dot += (double)iemb[(size_t)i * E + k] * temb[(size_t)j * E + k];
                na += (double)iemb[(size_t)i * E + k] * iemb[(size_t)i * E + k];
                nb += (double)temb[(size_t)j * E + k] * temb[(size_t)j * E + k];
            }
            const double lg = scale * dot / sqrt(na * nb);
            lmx = fmax(lmx, fabs(lg - ((const float *)rl.data)[i * NT + j]));
        }
    CHECK(lmx <= 1e-3, "%s logits max-abs %.2e", naming, lmx);
    printf("  %-40s max-abs %.2e (logit scale %.4f)\n", "logits_per_image", lmx, scale);
    /* zero-shot with one template reproduces the upstream logits */
    {
        static const char *names[3] = {"parrot", "woman", "lighthouse"};
        static const char *tpl[1] = {"a photo of a {}."};
        wobble_classifier *zs = NULL;
        rc = wobble_classifier_zeroshot(ctx, m, tok, names, 3, tpl, 1, &zs);
        CHECK(rc == WOBBLE_OK, "zeroshot: %s", wobble_last_error(ctx));
        float sc[3 * 8];
        if (!rc && NI <= 8 && NT == 3) {
            CHECK(wobble_classifier_scores(ctx, zs, iemb, NI, sc) == WOBBLE_OK, "zeroshot scores");
            double zmx = 0;
            for (int i = 0; i < NI * 3; i++) zmx = fmax(zmx, fabs(sc[i] - ((const float *)rl.data)[i]));
            CHECK(zmx <= 1e-3, "%s zero-shot logits differ by %.2e", naming, zmx);
            printf("  %-40s max-abs %.2e\n", "zero-shot logits (1 template)", zmx);
        }
        wobble_classifier_free(zs);
        static const char *bad_tpl[1] = {"no placeholder"};
        CHECK(wobble_classifier_zeroshot(ctx, m, tok, names, 3, bad_tpl, 1, &zs) == WOBBLE_EINVAL, "template without {}");
    }
    /* bad ids */
    int32_t bad[77] = {49406, 60000, 49407};
    CHECK(wobble_model_encode_text(ctx, m, bad, 1, 77, NULL, temb) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "outside the vocabulary"),
          "out-of-vocabulary id refused: %s", wobble_last_error(ctx));
    CHECK(wobble_model_encode_text(ctx, m, ids, 1, 78, NULL, temb) == WOBBLE_EINVAL, "78 tokens refused");
    for (int i = 0; i < NI && i < 8; i++) wobble_image_free(imgs[i]);
    wobble_array_release(&rt);
    wobble_array_release(&ri);
    wobble_array_release(&rl);
    free(ids), free(temb), free(iemb);
    json_decref(in);
    wobble_tokenizer_free(own);
    wobble_model_free(m);
}

int main(void) {
    char text_dir[1024], full[1024], p[1024];
    snprintf(text_dir, sizeof text_dir, "%s/fixtures/clip-text", t_shared_dir());
    snprintf(full, sizeof full, "%s/fixtures/clip-full", t_shared_dir());
    struct stat st;
    if (stat(text_dir, &st) != 0 || stat(full, &st) != 0) {
        printf("SKIP: %s or %s not found (set WOBBLE_SHARED)\n", text_dir, full);
        return 77;
    }
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    wobble_tokenizer *tok = NULL;
    int rc = wobble_tokenizer_load(ctx, text_dir, &tok);
    CHECK(rc == WOBBLE_OK, "load tokenizer: %s", wobble_last_error(ctx));
    if (rc) return t_finish();
    CHECK(wobble_tokenizer_vocab_size(tok) == 49408, "vocab size %d", wobble_tokenizer_vocab_size(tok));
    check_tokens(ctx, tok, text_dir, "vocab.json + merges.txt");

    char tmp[512];
    t_mkdtemp(tmp, sizeof tmp, "wobble-text");
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
    CHECK(write_tokenizer_json(text_dir, p) == 0, "write tokenizer.json");
    wobble_tokenizer *tj = NULL;
    rc = wobble_tokenizer_load(ctx, tmp, &tj);
    CHECK(rc == WOBBLE_OK, "load tokenizer.json: %s", wobble_last_error(ctx));
    if (!rc) check_tokens(ctx, tj, text_dir, "tokenizer.json");
    wobble_tokenizer_free(tj);

    /* cleaning rules beyond the fixture: entities, curly quotes, ligatures, full width */
    int32_t a[77], b[77];
    static const char *same[][2] = {{"fish &amp; chips", "fish & chips"},
                                    {"it\xe2\x80\x99s", "it's"},
                                    {"\xef\xac\x81sh", "fish"},
                                    {"\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3", "abc"},
                                    {"&#65;&#x42;c", "abc"},
                                    {"cafe\xcc\x81", "caf\xc3\xa9"}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        CHECK(wobble_tokenize(ctx, tok, same[i][0], 77, a, NULL) == WOBBLE_OK &&
                  wobble_tokenize(ctx, tok, same[i][1], 77, b, NULL) == WOBBLE_OK && !memcmp(a, b, sizeof a),
              "'%s' tokenizes as '%s'", same[i][0], same[i][1]);
    }
    /* random well-formed text (ASCII, Latin, combining marks, CJK, emoji, controls, entities): always
     * tokenizes, <|startoftext|> first, <|endoftext|> present, every id in the vocabulary */
    {
        unsigned seed = 12345;
        int okcount = 0;
        for (int t = 0; t < 300; t++) {
            char text[2048];
            size_t o = 0;
            const int len = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 200;
            for (int k = 0; k < len && o + 8 < sizeof text; k++) {
                seed = seed * 1103515245u + 12345u;
                static const uint32_t ranges[][2] = {{0x01, 0x7f},     {0xa0, 0x24f},   {0x300, 0x36f},
                                                     {0x4e00, 0x4fff}, {0x1f300, 0x1f64f}, {0x2000, 0x206f},
                                                     {0xff01, 0xff5e}, {'&', '&'},      {'#', '#'}};
                const int r = (int)((seed >> 16) % 9);
                seed = seed * 1103515245u + 12345u;
                uint32_t cp = ranges[r][0] + (seed >> 8) % (ranges[r][1] - ranges[r][0] + 1);
                if (cp < 0x80) {
                    text[o++] = (char)cp;
                } else if (cp < 0x800) {
                    text[o++] = (char)(0xc0 | (cp >> 6));
                    text[o++] = (char)(0x80 | (cp & 63));
                } else if (cp < 0x10000) {
                    text[o++] = (char)(0xe0 | (cp >> 12));
                    text[o++] = (char)(0x80 | ((cp >> 6) & 63));
                    text[o++] = (char)(0x80 | (cp & 63));
                } else {
                    text[o++] = (char)(0xf0 | (cp >> 18));
                    text[o++] = (char)(0x80 | ((cp >> 12) & 63));
                    text[o++] = (char)(0x80 | ((cp >> 6) & 63));
                    text[o++] = (char)(0x80 | (cp & 63));
                }
            }
            text[o] = 0;
            int32_t ids[77];
            if (wobble_tokenize(ctx, tok, text, 77, ids, NULL) != WOBBLE_OK) continue;
            int good = ids[0] == 49406, eot = 0;
            for (int k = 0; k < 77; k++) {
                good &= ids[k] >= 0 && ids[k] < 49408;
                eot |= ids[k] == 49407;
            }
            okcount += good && eot;
        }
        CHECK(okcount == 300, "random texts tokenized: %d/300", okcount);
    }
    /* bad input */
    CHECK(wobble_tokenize(ctx, tok, "bad \xff utf-8", 77, a, NULL) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "UTF-8"),
          "invalid UTF-8 refused: %s", wobble_last_error(ctx));
    CHECK(wobble_tokenizer_load(ctx, tmp + 0, &tj) == WOBBLE_OK, "reload");
    wobble_tokenizer_free(tj);
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp);
    FILE *f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", f);
    fclose(f);
    CHECK(wobble_tokenizer_load(ctx, tmp, &tj) != WOBBLE_OK && strstr(wobble_last_error(ctx), "tokenizer.json"),
          "empty merges refused: %s", wobble_last_error(ctx));
    remove(p);
    CHECK(wobble_tokenizer_load(ctx, tmp, &tj) == WOBBLE_EIO && strstr(wobble_last_error(ctx), "no CLIP tokenizer"),
          "missing tokenizer: %s", wobble_last_error(ctx));
    rmdir(tmp);

    check_full(ctx, tok, full, "openai-naming");
    check_full(ctx, tok, full, "hf-naming");

    /* an image-only model has no text tower */
    snprintf(p, sizeof p, "%s/models/vit-tiny-patch16-224-tin", t_shared_dir());
    wobble_model *vit = NULL;
    if (wobble_model_load(ctx, p, NULL, &vit) == WOBBLE_OK) {
        float e[192];
        CHECK(!wobble_model_has_text(vit), "ViT has no text tower");
        CHECK(wobble_model_encode_text(ctx, vit, a, 1, 77, NULL, e) == WOBBLE_EINVAL &&
                  strstr(wobble_last_error(ctx), "no text tower"),
              "ViT text refused: %s", wobble_last_error(ctx));
        wobble_model_free(vit);
    }
    wobble_tokenizer_free(tok);
    wobble_ctx_free(ctx);
    return t_finish();
}
