/* wobble merge (wobble_eval_merge): two valid hand-made shards of a
 * 3-image run (one image failed); byte 0 picks which of their eight files
 * (config.json, shard.json, summary.json, per_image.jsonl of shard 0, then
 * of shard 1) the rest replaces. The merged folder is cleared before each
 * run. */
#include "fuzz.h"

#include <sys/stat.h>
#include <unistd.h>

static const char *NAMES[4] = {"config.json", "shard.json", "summary.json", "per_image.jsonl"};

static const char *valid(int shard, int file) {
    static const char *cfg[2] = {
        "{\"model_hash\": \"0123456789abcdef\", \"preprocessing_hash\": \"fedcba9876543210\", \"data\": \"d\", "
        "\"dataset_kind\": \"folder\", \"seed\": 0, \"ops\": [{\"op\": \"jpeg\", \"levels\": [50.0, 10.0]}, {\"op\": "
        "\"hue\", \"levels\": [0.1]}], \"shard\": [0, 2]}",
        "{\"model_hash\": \"0123456789abcdef\", \"preprocessing_hash\": \"fedcba9876543210\", \"data\": \"d\", "
        "\"dataset_kind\": \"folder\", \"seed\": 0, \"ops\": [{\"op\": \"jpeg\", \"levels\": [50.0, 10.0]}, {\"op\": "
        "\"hue\", \"levels\": [0.1]}], \"shard\": [1, 2]}"};
    static const char *sh[2] = {
        "{\"shard\": 0, \"of\": 2, \"dataset_size\": 3, \"items\": [[0, \"a.png\"], [2, \"c.png\"]]}",
        "{\"shard\": 1, \"of\": 2, \"dataset_size\": 3, \"items\": [[1, \"b.png\"]]}"};
    static const char *sum[2] = {
        "{\"model\": {\"path\": \"m\", \"preset\": \"x\", \"embed_dim\": 4}, \"dataset\": {\"failed\": [{\"image\": "
        "\"c.png\", \"error\": \"c.png: truncated\"}]}}",
        "{\"model\": {\"path\": \"m\", \"preset\": \"x\", \"embed_dim\": 4}, \"dataset\": {\"failed\": []}}"};
    static const char *rec[2] = {
        "{\"image\":\"a.png\",\"image_hash\":\"00000000000000aa\",\"label\":-1,\"op\":\"jpeg\",\"levels\":[50.0,10.0],"
        "\"cos\":[0.1,0.2],\"euc\":[0.3,0.4],\"R_cos\":0.2,\"R_euc\":0.4,\"R_div\":0.45,\"cos_mean\":0.15,\"euc_mean\":0.35}\n"
        "{\"image\":\"a.png\",\"image_hash\":\"00000000000000aa\",\"label\":-1,\"op\":\"hue\",\"levels\":[0.1],"
        "\"cos\":[0.1],\"euc\":[0.3],\"R_cos\":0.1,\"R_euc\":0.3,\"R_div\":0.3,\"cos_mean\":0.1,\"euc_mean\":0.3}\n",
        "{\"image\":\"b.png\",\"image_hash\":\"00000000000000bb\",\"label\":2,\"op\":\"jpeg\",\"levels\":[50.0,10.0],"
        "\"cos\":[0.01,0.02],\"euc\":[0.03,0.04],\"R_cos\":0.02,\"R_euc\":0.04,\"R_div\":0.05,\"cos_mean\":0.015,\"euc_mean\":0.035}\n"
        "{\"image\":\"b.png\",\"image_hash\":\"00000000000000bb\",\"label\":2,\"op\":\"hue\",\"levels\":[0.1],"
        "\"cos\":[0.5],\"euc\":[0.6],\"R_cos\":0.5,\"R_euc\":0.6,\"R_div\":0.6,\"cos_mean\":0.5,\"euc_mean\":0.6}\n"};
    return file == 0 ? cfg[shard] : file == 1 ? sh[shard] : file == 2 ? sum[shard] : rec[shard];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    if (size < 1) return 0;
    const int which = data[0] % 8;
    char dirs[2][600], out[600], p[700];
    for (int s = 0; s < 2; s++) {
        snprintf(dirs[s], sizeof dirs[s], "%s/shard%d", fuzz_dir(), s);
        if (access(dirs[s], F_OK) != 0 && mkdir(dirs[s], 0755) != 0) abort();
        for (int f = 0; f < 4; f++) {
            snprintf(p, sizeof p, "%s/%s", dirs[s], NAMES[f]);
            if (s * 4 + f == which) fuzz_write(p, data + 1, size - 1);
            else fuzz_write(p, valid(s, f), strlen(valid(s, f)));
        }
    }
    snprintf(out, sizeof out, "%s/merged", fuzz_dir());
    static const char *res[4] = {"config.json", "per_image.jsonl", "summary.json", "summary.csv"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s", out, res[k]);
        unlink(p);
    }
    const char *d[2] = {dirs[0], dirs[1]};
    wobble_eval_summary sum;
    const int rc = wobble_eval_merge(ctx, d, 2, out, &sum);
    if (rc == WOBBLE_OK && (sum.images != 3 || sum.evaluated + sum.failed > 3)) abort();
    /* the valid shards themselves must merge: 2 images evaluated, 1 failed */
    const char *v = valid(which / 4, which % 4);
    if (size - 1 == strlen(v) && !memcmp(data + 1, v, size - 1) &&
        (rc != WOBBLE_OK || sum.evaluated != 2 || sum.failed != 1))
        abort();
    return 0;
}
