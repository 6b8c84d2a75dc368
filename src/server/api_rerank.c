/* Reranking requests: TEI /rerank and the Cohere/Jina /v1/rerank shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/rerank.h"
#include "server/api.h"

void embd_rerank_req_free(embd_rerank_req *r) {
    if (!r) return;
    free(r->doc), free(r->doc_len);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

static int take_text(json_t *v, bool bad_utf8, const char *path, long index, const char **s, size_t *len,
                     embd_api_error *e) {
    if (!json_is_string(v)) return embd_api_fail(e, 422, "invalid_request", index, "%s: expected a string", path);
    *s = json_string_value(v);
    *len = json_string_length(v);
    if (bad_utf8 && embd_api_has_sentinel(*s, *len))
        return embd_api_fail(e, 422, "invalid_utf8", index, "%s is not valid UTF-8", path);
    return 0;
}

static int parse_docs(embd_rerank_req *r, json_t *docs, const char *key, bool bad_utf8, const embd_api_limits *lim,
                      embd_api_error *e) {
    char path[64];
    snprintf(path, sizeof path, "$.%s", key);
    if (!docs) return embd_api_fail(e, 422, "invalid_request", -1, "%s: missing", path);
    if (!json_is_array(docs)) return embd_api_fail(e, 422, "invalid_request", -1, "%s: expected an array of strings", path);
    size_t n = json_array_size(docs);
    if (embd_api_check_count(n, path, lim, e)) return -1;
    r->n = n;
    r->doc = calloc(n, sizeof *r->doc);
    r->doc_len = calloc(n, sizeof *r->doc_len);
    if (!r->doc || !r->doc_len) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(docs, i);
        snprintf(path, sizeof path, "$.%s[%zu]", key, i);
        if (r->shape == EMBD_RERANK_COHERE && json_is_object(v)) { /* {"text": ...} documents */
            v = json_object_get(v, "text");
            snprintf(path, sizeof path, "$.%s[%zu].text", key, i);
        }
        if (take_text(v, bad_utf8, path, (long)i, &r->doc[i], &r->doc_len[i], e)) return -1;
        if (embd_api_check_text_size(r->doc[i], r->doc_len[i], i, lim, e)) return -1;
    }
    return 0;
}

int embd_api_rerank_parse(json_t *root, embd_rerank_shape shape, bool bad_utf8, const embd_api_limits *lim,
                          embd_rerank_req *out, embd_api_error *e) {
    embd_rerank_req r = {.shape = shape, .root = root, .truncate = lim->default_truncate};
    int rc = take_text(json_object_get(root, "query"), bad_utf8, "$.query", -1, &r.query, &r.query_len, e);
    if (!rc && r.query_len == 0) rc = embd_api_fail(e, 422, "invalid_request", -1, "$.query: must not be empty");
    if (!rc) rc = embd_api_check_text_size(r.query, r.query_len, 0, lim, e);
    if (!rc) rc = embd_api_get_bool(root, "raw_scores", &r.raw_scores, e);
    if (!rc) rc = embd_api_get_bool(root, "truncate", &r.truncate, e);
    if (shape == EMBD_RERANK_TEI) {
        if (!rc) rc = embd_api_get_bool(root, "return_text", &r.return_text, e);
        json_t *dir = json_object_get(root, "truncation_direction");
        if (!rc && dir && !json_is_null(dir) && !(json_is_string(dir) && !strcasecmp(json_string_value(dir), "right")))
            rc = embd_api_fail(e, 422, "invalid_request", -1,
                               "$.truncation_direction: only \"Right\" (the document's end is cut) is supported");
        if (!rc) rc = parse_docs(&r, json_object_get(root, "texts"), "texts", bad_utf8, lim, e);
    } else {
        json_t *model = json_object_get(root, "model");
        if (!rc && model && !json_is_null(model) && !json_is_string(model))
            rc = embd_api_fail(e, 422, "invalid_request", -1, "$.model: expected a string");
        if (!rc) rc = embd_api_get_bool(root, "return_documents", &r.return_text, e);
        json_t *top = json_object_get(root, "top_n");
        if (!rc && top && !json_is_null(top)) {
            if (!json_is_integer(top) || json_integer_value(top) < 1)
                rc = embd_api_fail(e, 422, "invalid_request", -1, "$.top_n: expected an integer >= 1");
            else
                r.top_n = (size_t)json_integer_value(top);
        }
        if (!rc) rc = parse_docs(&r, json_object_get(root, "documents"), "documents", bad_utf8, lim, e);
    }
    if (rc) {
        r.root = NULL; /* the caller keeps root on failure */
        embd_rerank_req_free(&r);
        return -1;
    }
    *out = r;
    return 0;
}

int embd_api_rerank_tokenize(const embd_rerank_req *r, const embd_model *m, int n_ctx, int32_t **ids, int *lens,
                             int *first, embd_api_error *e) {
    embd_tokens q = {0}, d = {0}, pair = {0};
    size_t bad = 0;
    int rc = 0;
    for (size_t i = 0; i < r->n; i++) ids[i] = NULL;
    if (embd_tokenizer_encode(m->tok, r->query, r->query_len, embd_pair_query_budget(m, n_ctx, r->truncate), &q, &bad)) {
        rc = embd_api_fail(e, 422, "invalid_utf8", -1, "$.query is not valid UTF-8");
        goto out;
    }
    size_t budget = r->truncate ? embd_pair_doc_budget(m, n_ctx, q.n) : 0;
    if (r->truncate && budget == 0) budget = 2; /* [CLS] [SEP]: the query alone fills the context */
    for (size_t i = 0; i < r->n; i++) {
        if (embd_tokenizer_encode(m->tok, r->doc[i], r->doc_len[i], budget, &d, &bad)) {
            rc = embd_api_fail(e, 422, "invalid_utf8", (long)i, "document %zu is not valid UTF-8", i);
            goto out;
        }
        first[i] = embd_pair_join(m, &q, &d, &pair);
        if (first[i] < 0) {
            rc = embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
            goto out;
        }
        if (pair.n > (size_t)n_ctx) {
            rc = embd_api_fail(e, 413, "input_too_long", (long)i,
                               "query and document %zu have %zu tokens together, more than the limit of %d "
                               "(truncation is off)", i, pair.n, n_ctx);
            goto out;
        }
        ids[i] = malloc(pair.n * sizeof **ids);
        if (!ids[i]) {
            rc = embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
            goto out;
        }
        memcpy(ids[i], pair.ids, pair.n * sizeof **ids);
        lens[i] = (int)pair.n;
    }
out:
    if (rc)
        for (size_t i = 0; i < r->n; i++) free(ids[i]), ids[i] = NULL;
    embd_tokens_free(&q), embd_tokens_free(&d), embd_tokens_free(&pair);
    return rc;
}

char *embd_api_rerank_response(const embd_rerank_req *r, const float *logits, size_t tokens, const char *model_name) {
    float *score = malloc((r->n ? r->n : 1) * sizeof *score);
    size_t *order = malloc((r->n ? r->n : 1) * sizeof *order);
    if (!score || !order) {
        free(score), free(order);
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++) score[i] = r->raw_scores ? logits[i] : embd_rerank_sigmoid(logits[i]);
    embd_rerank_order(score, r->n, order);
    size_t n = r->top_n && r->top_n < r->n ? r->top_n : r->n;
    json_t *results = json_array();
    for (size_t k = 0; k < n && results; k++) {
        const size_t i = order[k];
        json_t *o = json_pack("{s:I, s:f}", "index", (json_int_t)i,
                              r->shape == EMBD_RERANK_TEI ? "score" : "relevance_score", (double)score[i]);
        if (o && r->return_text) {
            json_t *t = json_stringn(r->doc[i], r->doc_len[i]);
            json_object_set_new(o, r->shape == EMBD_RERANK_TEI ? "text" : "document",
                                r->shape == EMBD_RERANK_TEI ? t : json_pack("{s:o}", "text", t));
        }
        json_array_append_new(results, o);
    }
    free(score), free(order);
    json_t *body = results;
    if (r->shape == EMBD_RERANK_COHERE && results)
        body = json_pack("{s:s, s:o, s:{s:I}}", "model", model_name, "results", results, "usage", "total_tokens",
                         (json_int_t)tokens);
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(body);
    return s;
}
