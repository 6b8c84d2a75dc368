/* Job input lines as a bulk-job worker sees them (queue/job.h: embd_chunker) and job options as
 * /v1/jobs and the spool spec carry them (embd_jobopts_from_json). Besides "no crash": every
 * non-blank line gives exactly one record, result or error, each a JSON object on one line with
 * an "id"; a result has n_embd floats; options are either accepted or rejected with a message. */
#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "queue/job.h"

enum { N_EMBD = 4, CHUNK = 8 };

static int fake_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, const embd_jobopts *o,
                      float *out, embd_item *res, char *err, size_t errlen)
{
    (void)ud, (void)texts, (void)o, (void)err, (void)errlen;
    for (size_t i = 0; i < n; i++) {
        for (int d = 0; d < N_EMBD; d++) out[i * N_EMBD + d] = (float)(lens[i] + (size_t)d);
        res[i] = (embd_item){.status = lens[i] % 7 == 3 ? EMBD_ITEM_TOO_LONG : EMBD_ITEM_OK, .n_tokens = 2};
        if (res[i].status) snprintf(res[i].message, sizeof res[i].message, "too long");
    }
    return 0;
}

static size_t check_records(const embd_buf *b, bool results)
{
    size_t n = 0;
    for (size_t s = 0, i = 0; i < b->n; i++) {
        if (b->p[i] != '\n') continue;
        json_error_t je;
        json_t *j = json_loadb(b->p + s, i - s, JSON_ALLOW_NUL, &je);
        FUZZ_CHECK(json_is_object(j) && json_object_get(j, "id"));
        if (results) FUZZ_CHECK(json_array_size(json_object_get(j, "embedding")) == N_EMBD);
        else FUZZ_CHECK(json_is_string(json_object_get(j, "error")));
        json_decref(j);
        s = i + 1;
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = 0;

    embd_jobopts o;
    embd_jobopts_default(&o);
    json_t *j = json_loadb(copy, size, JSON_DISABLE_EOF_CHECK, NULL);
    char err[256] = "";
    if (j && embd_jobopts_from_json(&o, j, err, sizeof err)) FUZZ_CHECK(err[0]);
    json_decref(j);

    embd_runner r = {.embed = fake_embed, .n_embd = N_EMBD, .chunk_items = CHUNK};
    embd_chunker *k = embd_chunker_new(CHUNK, N_EMBD);
    embd_buf res = {0}, errs = {0};
    size_t lines = 0, records = 0, tokens = 0, errors = 0;
    char *p = copy, *end = copy + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t s = 0;
        while (s < len && (p[s] == ' ' || p[s] == '\t' || p[s] == '\r')) s++;
        if (s < len) {
            embd_chunker_add(k, p, len, lines);
            lines++;
        }
        if (embd_chunker_full(k) || !nl || nl + 1 >= end) {
            res.n = errs.n = 0;
            size_t before = errors;
            FUZZ_CHECK(embd_chunker_run(k, &r, &o, &res, &errs, &tokens, &errors, err, sizeof err) == 0);
            FUZZ_CHECK(embd_chunker_count(k) == 0);
            size_t ne = check_records(&errs, false);
            FUZZ_CHECK(ne == errors - before);
            records += check_records(&res, true) + ne;
        }
        p = nl ? nl + 1 : end;
    }
    FUZZ_CHECK(records == lines);
    embd_chunker_free(k);
    free(res.p), free(errs.p), free(copy);
    return 0;
}
