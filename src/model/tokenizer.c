/*
 * The CLIP byte-level BPE tokenizer (openai/CLIP simple_tokenizer semantics),
 * read from Hugging Face files: vocab.json + merges.txt, or tokenizer.json.
 *
 * encode(text):
 *   1. clean: a subset of ftfy.fix_text (quotes uncurled, Latin ligatures and
 *      full-width forms expanded, control characters dropped, NFC), then HTML
 *      entities unescaped twice, whitespace runs collapsed to one space,
 *      stripped, lower-cased (Unicode simple case mapping, utf8proc);
 *   2. split with CLIP's pattern
 *      <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
 *      (alternatives tried in order at each position, whitespace skipped);
 *   3. each piece: its UTF-8 bytes mapped to printable code points
 *      (bytes_to_unicode), "</w>" appended to the last symbol, then the
 *      lowest-ranked adjacent pair merged everywhere until no pair has a rank;
 *      the special tokens map to themselves;
 *   4. clip.tokenize: <|startoftext|> ids <|endoftext|>, zero padded to the
 *      context length; a longer text is cut with <|endoftext|> as last id.
 */
#include "../core/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ---------------------------------------------------------- string map */
typedef struct {
    char **keys;
    int *vals;
    size_t cap, n;
} smap;

static uint64_t shash(const char *s, size_t n) {
    const uint64_t h = core_fnv1a(CORE_FNV_INIT, s, n);
    return h ^ (h >> 29);
}

static int smap_init(smap *m, size_t expect) {
    m->cap = 16;
    while (m->cap < expect * 2) m->cap <<= 1;
    m->keys = calloc(m->cap, sizeof(char *));
    m->vals = calloc(m->cap, sizeof(int));
    m->n = 0;
    return m->keys && m->vals ? 0 : -1;
}

static void smap_free(smap *m) {
    for (size_t i = 0; m->keys && i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* value of key s[0..n), or -1 */
static int smap_get(const smap *m, const char *s, size_t n) {
    size_t i = shash(s, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (strlen(m->keys[i]) == n && !memcmp(m->keys[i], s, n)) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* insert (first value kept); -1 on out of memory */
static int smap_put(smap *m, const char *s, int v) {
    if ((m->n + 1) * 2 > m->cap) {
        smap g;
        if (smap_init(&g, m->cap) != 0) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = shash(m->keys[i], strlen(m->keys[i])) & (g.cap - 1);
                while (g.keys[j]) j = (j + 1) & (g.cap - 1);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
                g.n++;
            }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t n = strlen(s), i = shash(s, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (!strcmp(m->keys[i], s)) return 0;
        i = (i + 1) & (m->cap - 1);
    }
    if (!(m->keys[i] = strdup(s))) return -1;
    m->vals[i] = v;
    m->n++;
    return 0;
}

struct wobble_tokenizer {
    smap vocab;  /* token string -> id */
    smap ranks;  /* "a b" -> merge rank */
    int sot, eot;
    int vocab_size;
    char byte_enc[256][4]; /* bytes_to_unicode, as UTF-8 */
};

/* ------------------------------------------------------------- loading */
static void build_byte_encoder(wobble_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp = b;
        else
            cp = 256 + n++;
        memset(t->byte_enc[b], 0, 4);
        utf8proc_encode_char(cp, (utf8proc_uint8_t *)t->byte_enc[b]);
    }
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* one merge line "a b" (or a JSON pair) -> rank */
static int add_merge(wobble_tokenizer *t, const char *a, const char *b, int rank) {
    size_t la = strlen(a), lb = strlen(b);
    char *k = malloc(la + lb + 2);
    if (!k) return -1;
    memcpy(k, a, la);
    k[la] = ' ';
    memcpy(k + la + 1, b, lb + 1);
    int r = smap_put(&t->ranks, k, rank);
    free(k);
    return r;
}

static int load_vocab_obj(wobble_ctx *ctx, wobble_tokenizer *t, json_t *v, const char *file) {
    if (!json_is_object(v) || json_object_size(v) == 0)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: no vocabulary object", file);
    if (smap_init(&t->vocab, json_object_size(v))) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", file);
    const char *k;
    json_t *val;
    int maxid = -1;
    json_object_foreach(v, k, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > 0x7fffffff)
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: vocabulary entry '%.40s' has no valid id", file, k);
        int id = (int)json_integer_value(val);
        if (smap_put(&t->vocab, k, id)) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", file);
        if (id > maxid) maxid = id;
    }
    t->vocab_size = maxid + 1;
    return WOBBLE_OK;
}

static int load_merges_txt(wobble_ctx *ctx, wobble_tokenizer *t, const char *file) {
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, file, &data, &size);
    if (rc) return rc;
    size_t lines = 1; /* the table is sized by the file (CLIP's has 48,895 merges; a small file gets a small table) */
    for (const uint8_t *q = data; (q = memchr(q, '\n', size - (size_t)(q - data))) != NULL; q++) lines++;
    if (smap_init(&t->ranks, lines)) {
        free(data);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", file);
    }
    char *s = (char *)data, *end = s + size;
    int rank = 0, line = 0;
    while (s < end && rc == WOBBLE_OK) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *e = nl ? nl : end;
        line++;
        if (e > s && e[-1] == '\r') e[-1] = 0;
        *e = 0; /* safe: e < end, or e == end inside the buffer's NUL slot */
        if (!(line == 1 && !strncmp(s, "#version", 8)) && *s) {
            char *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d is not a merge 'a b'", file, line);
            else {
                *sp = 0;
                if (add_merge(t, s, sp + 1, rank++)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", file);
            }
        }
        s = e + 1;
    }
    free(data);
    if (rc == WOBBLE_OK && rank == 0) rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: no merges", file);
    return rc;
}

static int load_tokenizer_json(wobble_ctx *ctx, wobble_tokenizer *t, const char *file) {
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je);
    if (!root && CORE_JSON_OOM(&je))
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", file);
    if (!root)
        return core_seterr(ctx, is_file(file) ? WOBBLE_ECORRUPT : WOBBLE_EIO, "%s: %s (line %d)", file, je.text,
                             je.line);
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    int rc = WOBBLE_OK;
    if (!json_is_object(model) || (type && strcmp(type, "BPE")))
        rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: not a BPE tokenizer (model.type '%s')", file, type ? type : "?");
    if (!rc) rc = load_vocab_obj(ctx, t, json_object_get(model, "vocab"), file);
    json_t *merges = json_object_get(model, "merges");
    if (!rc && (!json_is_array(merges) || json_array_size(merges) == 0))
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: model.merges is missing or empty", file);
    if (!rc && smap_init(&t->ranks, json_array_size(merges))) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        /* "a b" (older files) or ["a", "b"] (tokenizers >= 0.20) */
        if (json_is_string(e)) {
            char *s = strdup(json_string_value(e));
            char *sp = s ? strchr(s, ' ') : NULL;
            if (!sp || sp == s || !sp[1]) {
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: merge %zu is not 'a b'", file, i);
            } else {
                *sp = 0;
                if (add_merge(t, s, sp + 1, (int)i)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
            }
            free(s);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            if (add_merge(t, json_string_value(json_array_get(e, 0)), json_string_value(json_array_get(e, 1)), (int)i))
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
        } else {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: merge %zu is neither 'a b' nor a pair", file, i);
        }
    }
    json_decref(root);
    return rc;
}

int wobble_tokenizer_load(wobble_ctx *ctx, const char *path, wobble_tokenizer **out) {
    if (!path || !out) return core_seterr(ctx, WOBBLE_EINVAL, "tokenizer: NULL argument");
    *out = NULL;
    wobble_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return core_seterr(ctx, WOBBLE_ENOMEM, "tokenizer: out of memory");
    build_byte_encoder(t);
    char a[4200], b[4200];
    int rc;
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = core_seterr(ctx, WOBBLE_EIO, "%s: no such file or folder", path);
    } else if (S_ISREG(st.st_mode)) {
        rc = load_tokenizer_json(ctx, t, path);
    } else {
        snprintf(a, sizeof a, "%s/vocab.json", path);
        snprintf(b, sizeof b, "%s/merges.txt", path);
        if (is_file(a) && is_file(b)) {
            json_error_t je;
            json_t *v = json_load_file(a, 0, &je);
            rc = v ? load_vocab_obj(ctx, t, v, a)
                 : CORE_JSON_OOM(&je)
                     ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", a)
                     : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: %s (line %d)", a, je.text, je.line);
            json_decref(v);
            if (!rc) rc = load_merges_txt(ctx, t, b);
        } else {
            snprintf(a, sizeof a, "%s/tokenizer.json", path);
            if (is_file(a))
                rc = load_tokenizer_json(ctx, t, a);
            else
                rc = core_seterr(ctx, WOBBLE_EIO,
                                   "%s: no CLIP tokenizer here (need vocab.json + merges.txt, or tokenizer.json)", path);
        }
    }
    if (!rc) {
        t->sot = smap_get(&t->vocab, "<|startoftext|>", 15);
        t->eot = smap_get(&t->vocab, "<|endoftext|>", 13);
        if (t->sot < 0 || t->eot < 0)
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: vocabulary lacks <|startoftext|> or <|endoftext|>", path);
    }
    if (!rc)
        for (int x = 0; x < 256 && !rc; x++) {
            char s[12];
            snprintf(s, sizeof s, "%s</w>", t->byte_enc[x]);
            if (smap_get(&t->vocab, t->byte_enc[x], strlen(t->byte_enc[x])) < 0 || smap_get(&t->vocab, s, strlen(s)) < 0)
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: vocabulary lacks the byte symbol for 0x%02x", path, x);
        }
    if (rc) {
        wobble_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return WOBBLE_OK;
}

void wobble_tokenizer_free(wobble_tokenizer *t) {
    if (!t) return;
    smap_free(&t->vocab);
    smap_free(&t->ranks);
    free(t);
}

int wobble_tokenizer_vocab_size(const wobble_tokenizer *t) { return t ? t->vocab_size : 0; }

/* ------------------------------------------------------------ cleaning */
typedef struct {
    int32_t *cp;
    size_t n, cap;
} cpbuf;

static int cp_push(cpbuf *b, int32_t c) {
    if (core_grow(&b->cp, &b->cap, b->n + 1, sizeof *b->cp)) return -1;
    b->cp[b->n++] = c;
    return 0;
}

static int is_space(int32_t c) {
    /* Python's str.isspace(), which re's \s follows */
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static int is_letter(int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

static int is_number(int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* ftfy's character-level fixes that apply to well-formed text. */
static int ftfy_char(cpbuf *o, int32_t c) {
    static const struct { int32_t c; const char *s; } LIG[] = {
        {0x132, "IJ"}, {0x133, "ij"}, {0x149, "\xca\xbcn"}, {0x1f1, "DZ"}, {0x1f2, "Dz"}, {0x1f3, "dz"},
        {0x1c4, "D\xc5\xbd"}, {0x1c5, "D\xc5\xbe"}, {0x1c6, "d\xc5\xbe"}, {0x1c7, "LJ"}, {0x1c8, "Lj"},
        {0x1c9, "lj"}, {0x1ca, "NJ"}, {0x1cb, "Nj"}, {0x1cc, "nj"}, {0xfb00, "ff"}, {0xfb01, "fi"},
        {0xfb02, "fl"}, {0xfb03, "ffi"}, {0xfb04, "ffl"}, {0xfb05, "\xc5\xbft"}, {0xfb06, "st"}};
    /* uncurl quotes */
    if (c == 0x2018 || c == 0x2019 || c == 0x201a || c == 0x201b) return cp_push(o, '\'');
    if (c == 0x201c || c == 0x201d || c == 0x201e || c == 0x201f) return cp_push(o, '"');
    for (size_t i = 0; i < sizeof LIG / sizeof LIG[0]; i++)
        if (LIG[i].c == c) {
            const uint8_t *s = (const uint8_t *)LIG[i].s;
            utf8proc_int32_t u;
            while (*s) {
                utf8proc_ssize_t k = utf8proc_iterate(s, -1, &u);
                if (k <= 0 || cp_push(o, u)) return -1;
                s += k;
            }
            return 0;
        }
    /* full-width ASCII and the ideographic space */
    if (c >= 0xff01 && c <= 0xff5e) return cp_push(o, c - 0xfee0);
    if (c == 0x3000) return cp_push(o, ' ');
    /* control characters ftfy removes (keeping whitespace ones) */
    if ((c < 0x20 && !(c >= 9 && c <= 13)) || c == 0x7f || (c >= 0x80 && c < 0xa0 && c != 0x85) || c == 0xfeff ||
        (c >= 0xfff9 && c <= 0xfffc) || (c >= 0x206a && c <= 0x206f) || (c >= 0xe0000 && c <= 0xe007f))
        return 0;
    return cp_push(o, c);
}

static const struct { const char *name; int32_t cp; } ENTITIES[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xa0},
    {"copy", 0xa9}, {"reg", 0xae}, {"trade", 0x2122}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
    {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201c}, {"rdquo", 0x201d}, {"eacute", 0xe9}, {"egrave", 0xe8},
    {"agrave", 0xe0}, {"aacute", 0xe1}, {"ccedil", 0xe7}, {"uuml", 0xfc}, {"ouml", 0xf6}, {"auml", 0xe4},
    {"szlig", 0xdf}, {"deg", 0xb0}, {"middot", 0xb7}, {"times", 0xd7}, {"euro", 0x20ac}, {"pound", 0xa3}};

/* html.unescape over code points, for &name; and &#N; / &#xH; */
static int unescape(const cpbuf *in, cpbuf *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        int32_t c = in->cp[i];
        if (c == '&' && i + 2 < in->n) {
            size_t j = i + 1;
            char nm[16];
            size_t k = 0;
            if (in->cp[j] == '#') {
                j++;
                int hex = j < in->n && (in->cp[j] == 'x' || in->cp[j] == 'X');
                if (hex) j++;
                long v = 0;
                size_t d0 = j;
                while (j < in->n && j - d0 < 8 &&
                       ((in->cp[j] >= '0' && in->cp[j] <= '9') ||
                        (hex && ((in->cp[j] | 32) >= 'a' && (in->cp[j] | 32) <= 'f')))) {
                    int dv = in->cp[j] <= '9' ? in->cp[j] - '0' : (in->cp[j] | 32) - 'a' + 10;
                    v = v * (hex ? 16 : 10) + dv;
                    j++;
                }
                if (j > d0 && v > 0 && v <= 0x10ffff && !(v >= 0xd800 && v <= 0xdfff)) {
                    if (cp_push(out, (int32_t)v)) return -1;
                    i = (j < in->n && in->cp[j] == ';') ? j : j - 1;
                    continue;
                }
            } else {
                while (j < in->n && k < sizeof nm - 1 && in->cp[j] < 128 &&
                       ((in->cp[j] | 32) >= 'a' && (in->cp[j] | 32) <= 'z'))
                    nm[k++] = (char)in->cp[j++];
                nm[k] = 0;
                if (k && j < in->n && in->cp[j] == ';') {
                    size_t e = 0;
                    for (; e < sizeof ENTITIES / sizeof ENTITIES[0]; e++)
                        if (!strcmp(ENTITIES[e].name, nm)) break;
                    if (e < sizeof ENTITIES / sizeof ENTITIES[0]) {
                        if (cp_push(out, ENTITIES[e].cp)) return -1;
                        i = j;
                        continue;
                    }
                }
            }
        }
        if (cp_push(out, c)) return -1;
    }
    return 0;
}

/* text -> cleaned, lower-cased code points */
static int clean_text(wobble_ctx *ctx, const char *text, cpbuf *out) {
    cpbuf a = {0}, b = {0};
    int rc = WOBBLE_OK;
    /* NFC first (ftfy normalises last; its character fixes commute with it) */
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)text, 0, &nfc,
                                        UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (len < 0)
        return core_seterr(ctx, len == UTF8PROC_ERROR_NOMEM ? WOBBLE_ENOMEM : WOBBLE_EINVAL,
                             "tokenizer: text is not valid UTF-8 (%s)", utf8proc_errmsg(len));
    for (utf8proc_ssize_t i = 0; i < len && !rc;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(nfc + i, len - i, &c);
        if (k <= 0) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "tokenizer: text is not valid UTF-8 (byte %ld)", (long)i);
            break;
        }
        if (ftfy_char(&a, c)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "tokenizer: out of memory");
        i += k;
    }
    free(nfc);
    /* html.unescape twice */
    if (!rc && (unescape(&a, &b) || unescape(&b, &a))) rc = core_seterr(ctx, WOBBLE_ENOMEM, "tokenizer: out of memory");
    /* whitespace collapse, strip, lower */
    out->n = 0;
    for (size_t i = 0; !rc && i < a.n; i++) {
        if (is_space(a.cp[i])) {
            while (i + 1 < a.n && is_space(a.cp[i + 1])) i++;
            if (out->n && i + 1 < a.n && cp_push(out, ' ')) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
            continue;
        }
        if (cp_push(out, utf8proc_tolower(a.cp[i]))) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
    }
    free(a.cp);
    free(b.cp);
    return rc;
}

/* ----------------------------------------------------------------- BPE */
typedef struct {
    int32_t *ids;
    int n;
    size_t cap;
} idbuf;

static int id_push(idbuf *b, int id) {
    if (core_grow(&b->ids, &b->cap, (size_t)b->n + 1, sizeof *b->ids)) return -1;
    b->ids[b->n++] = id;
    return 0;
}

/* One pre-token (code points [s, e)) -> ids appended to out. */
static int bpe_piece(wobble_ctx *ctx, const wobble_tokenizer *t, const int32_t *s, size_t e, idbuf *out) {
    /* mapped string and symbol boundaries: symbol j = str[off[j] .. off[j+1]) */
    size_t cap = e * 16 + 8;
    char *str = malloc(cap);
    int *off = malloc(sizeof(int) * (e * 4 + 2));
    char *key = malloc(cap * 2 + 2);
    if (!str || !off || !key) {
        free(str), free(off), free(key);
        return core_seterr(ctx, WOBBLE_ENOMEM, "tokenizer: out of memory");
    }
    int len = 0, ns = 0;
    for (size_t i = 0; i < e; i++) {
        uint8_t u[4];
        utf8proc_ssize_t k = utf8proc_encode_char(s[i], u);
        for (utf8proc_ssize_t j = 0; j < k; j++) {
            off[ns++] = len;
            const char *m = t->byte_enc[u[j]];
            size_t ml = strlen(m);
            memcpy(str + len, m, ml);
            len += (int)ml;
        }
    }
    memcpy(str + len, "</w>", 4);
    len += 4;
    off[ns] = len;
    str[len] = 0;
    /* merge: lowest rank pair, all non-overlapping occurrences left to right */
    for (;;) {
        int best = -1, bj = -1;
        for (int j = 0; j + 1 < ns; j++) {
            int la = off[j + 1] - off[j], lb = off[j + 2] - off[j + 1];
            memcpy(key, str + off[j], (size_t)la);
            key[la] = ' ';
            memcpy(key + la + 1, str + off[j + 1], (size_t)lb);
            int r = smap_get(&t->ranks, key, (size_t)(la + lb + 1));
            if (r >= 0 && (best < 0 || r < best)) best = r, bj = j;
        }
        if (best < 0) break;
        const int la = off[bj + 1] - off[bj], lb = off[bj + 2] - off[bj + 1];
        char *A = key, *B = key + la + 1; /* the best pair, "A B" */
        memcpy(A, str + off[bj], (size_t)la);
        memcpy(B, str + off[bj + 1], (size_t)lb);
        int w = 0;
        for (int j = 0; j < ns;) {
            if (j + 1 < ns && off[j + 1] - off[j] == la && off[j + 2] - off[j + 1] == lb &&
                !memcmp(str + off[j], A, (size_t)la) && !memcmp(str + off[j + 1], B, (size_t)lb)) {
                off[w++] = off[j];
                j += 2;
            } else {
                off[w++] = off[j];
                j++;
            }
        }
        off[w] = len;
        ns = w;
        if (ns == 1) break;
    }
    int rc = WOBBLE_OK;
    for (int j = 0; j < ns && !rc; j++) {
        int id = smap_get(&t->vocab, str + off[j], (size_t)(off[j + 1] - off[j]));
        if (id < 0)
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "tokenizer: symbol '%.*s' is not in the vocabulary",
                               off[j + 1] - off[j], str + off[j]);
        else if (id_push(out, id))
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "tokenizer: out of memory");
    }
    free(str), free(off), free(key);
    return rc;
}

static int match_ascii(const int32_t *c, size_t n, size_t i, const char *lit) {
    size_t k = strlen(lit);
    if (i + k > n) return 0;
    for (size_t j = 0; j < k; j++)
        if (c[i + j] != (unsigned char)lit[j]) return 0;
    return (int)k;
}

static int encode_ids(wobble_ctx *ctx, const wobble_tokenizer *t, const char *text, idbuf *out) {
    cpbuf c = {0};
    int rc = clean_text(ctx, text, &c);
    static const char *SPECIAL[2] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *CONTR[7] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = 0; !rc && i < c.n;) {
        int k = 0;
        for (int s = 0; s < 2 && !k; s++)
            if ((k = match_ascii(c.cp, c.n, i, SPECIAL[s])))
                if (id_push(out, s == 0 ? t->sot : t->eot)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
        if (k) {
            i += (size_t)k;
            continue;
        }
        size_t j = i;
        for (int s = 0; s < 7 && j == i; s++) j += (size_t)match_ascii(c.cp, c.n, i, CONTR[s]);
        if (j == i) {
            if (is_space(c.cp[i])) {
                i++;
                continue;
            }
            if (is_letter(c.cp[i]))
                while (j < c.n && is_letter(c.cp[j])) j++;
            else if (is_number(c.cp[i]))
                j = i + 1;
            else
                while (j < c.n && !is_space(c.cp[j]) && !is_letter(c.cp[j]) && !is_number(c.cp[j])) j++;
        }
        rc = bpe_piece(ctx, t, c.cp + i, j - i, out);
        i = j;
    }
    free(c.cp);
    return rc;
}

int wobble_tokenize(wobble_ctx *ctx, const wobble_tokenizer *t, const char *text, int context_len, int32_t *ids,
                    int *truncated) {
    if (!t || !text || !ids || context_len < 2) return core_seterr(ctx, WOBBLE_EINVAL, "tokenize: bad argument");
    idbuf b = {0};
    int rc = id_push(&b, t->sot) ? core_seterr(ctx, WOBBLE_ENOMEM, "out of memory") : encode_ids(ctx, t, text, &b);
    if (!rc && id_push(&b, t->eot)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
    if (!rc) {
        const int cut = b.n > context_len;
        const int n = cut ? context_len : b.n;
        memcpy(ids, b.ids, sizeof(int32_t) * (size_t)n);
        if (cut) ids[n - 1] = t->eot;
        for (int i = n; i < context_len; i++) ids[i] = 0;
        if (truncated) *truncated = cut;
    }
    free(b.ids);
    return rc;
}


