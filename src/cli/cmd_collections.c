/* `embd collections`: the collection pipeline without a server (same store and chunker as
 * /v1/collections; the encoder runs in this process). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/files.h"
#include "collections/enrich.h"
#include "collections/ingest.h"
#include "collections/reranker.h"
#include "engine/embed.h"
#include "util/sys.h"

enum { FILES_PER_BATCH = 32 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: embd collections <command> --data-dir DIR [options]\n\n"
            "  create NAME --model M.gguf [--chunk-size N] [--overlap N] [--code-aware] [--index flat|hnsw]\n"
            "         [--enrich JSON|@FILE]        enrichment: chat endpoints write a context for each chunk\n"
            "                                       (README \"Enrichment\"), e.g. '{\"endpoints\": [{\"url\":\n"
            "                                       \"http://127.0.0.1:8081\", \"model\": \"m\"}]}'\n"
            "  ingest NAME --model M.gguf PATH...   files, or directories walked recursively (hidden entries,\n"
            "                                       .gitignore'd paths, binaries and files over 8 MiB skipped);\n"
            "                                       document id = path\n"
            "  ingest NAME --model M.gguf --jsonl FILE   records {\"id\", \"text\", \"metadata\"}\n"
            "  search NAME --model M.gguf [--k N] [--filter JSON] [--rerank-model R.gguf [--top-n N]] QUERY\n"
            "                                       JSON hits on stdout (reranked: the best N of k by the cross-encoder)\n"
            "  list                                 collections as JSON lines\n"
            "  info NAME                            counts; checks the index against SQLite (rebuilds it)\n"
            "  delete NAME [--document ID]          drop a collection, or one document\n\n"
            "options: --model-name N (name recorded in the collection; default: file name without .gguf,\n"
            "as `embd serve` reports it), --threads N, --quiet\n");
}

typedef struct {
    embd_encoder *enc;
} cli_embedder;

static int cli_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, float *out, char *err,
                     size_t errlen) {
    cli_embedder *e = ud;
    embd_opts o;
    embd_opts_default(&o);
    o.normalize = true;
    o.truncate = true;
    embd_item *res = calloc(n ? n : 1, sizeof *res);
    if (!res) return embd_fail(err, errlen, "out of memory");
    int rc = embd_embed_texts(e->enc, texts, lens, n, &o, out, res, err, errlen);
    for (size_t i = 0; !rc && i < n; i++)
        if (res[i].status != EMBD_ITEM_OK) rc = embd_fail(err, errlen, "chunk %zu: %s", i, res[i].message);
    free(res);
    return rc;
}

static int status_of(int rc) { return rc == EMBD_STORE_ERR ? EMBD_EXIT_UNUSABLE : rc ? EMBD_EXIT_USAGE : EMBD_EXIT_OK; }

static json_t *info_json(embd_store *store, const embd_coll_info *c) {
    json_t *j = json_pack("{s:s, s:s, s:i, s:I, s:I, s:b, s:s, s:I, s:I}", "name", c->name, "model", c->model,
                          "dimensions", c->dims, "chunk_size", (json_int_t)c->opts.chunk_size, "overlap",
                          (json_int_t)c->opts.overlap, "code_aware", c->opts.code_aware, "index",
                          c->opts.index == EMBD_VINDEX_HNSW ? "hnsw" : "flat", "documents",
                          (json_int_t)c->n_documents, "chunks", (json_int_t)c->n_chunks);
    if (j && c->n_vectors >= 0) json_object_set_new(j, "vectors", json_integer(c->n_vectors)); /* index loaded */
    char *text = NULL; /* the enrichment configuration, without api keys */
    if (j && !embd_store_enrich_get(store, c->name, &text, NULL, 0) && text) {
        json_t *e = json_loads(text, 0, NULL);
        embd_enrich_cfg *cfg = embd_enrich_parse(e, NULL, 0);
        if (cfg) json_object_set_new(j, "enrich", embd_enrich_json(cfg, true));
        embd_enrich_free(cfg);
        json_decref(e);
    }
    free(text);
    return j;
}

/* --enrich JSON or @FILE, validated; the stored form (JSON text, malloc'd) or NULL with err. */
static char *enrich_option(const char *arg, char *err, size_t errlen) {
    char *file = NULL;
    if (arg[0] == '@' && !(file = embd_read_file(arg + 1, 1 << 20, &(size_t){0}, err, errlen))) return NULL;
    json_error_t je;
    json_t *j = json_loads(file ? file : arg, 0, &je);
    free(file);
    if (!j) {
        embd_fail(err, errlen, "not JSON: %s", je.text);
        return NULL;
    }
    embd_enrich_cfg *cfg = embd_enrich_parse(j, err, errlen);
    json_decref(j);
    json_t *full = cfg ? embd_enrich_json(cfg, false) : NULL;
    char *out = full ? json_dumps(full, JSON_COMPACT) : NULL;
    if (cfg && !out) embd_fail(err, errlen, "out of memory");
    json_decref(full);
    embd_enrich_free(cfg);
    return out;
}

static void print_json(json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(j);
}

/* Ingests the documents of a JSONL file in batches. */
static int ingest_jsonl(const embd_coll_ctx *ctx, const char *coll, const char *path, bool quiet) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "embd collections: cannot open %s\n", path);
        return EMBD_EXIT_UNUSABLE;
    }
    char *line = NULL, err[512];
    size_t cap = 0, lineno = 0, docs = 0, chunks = 0;
    int status = EMBD_EXIT_OK;
    json_t *batch[FILES_PER_BATCH];
    embd_doc_input in[FILES_PER_BATCH];
    char *meta[FILES_PER_BATCH];
    size_t nb = 0;
    bool eof = false;
    while (!eof && status == EMBD_EXIT_OK) {
        ssize_t r = getline(&line, &cap, f);
        eof = r < 0;
        if (!eof) {
            lineno++;
            if (strspn(line, " \t\r\n") == (size_t)r) continue;
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            json_t *id = json_object_get(j, "id"), *text = json_object_get(j, "text"), *md = json_object_get(j, "metadata");
            if (!json_is_string(id) || !json_string_length(id) || !json_is_string(text) || (md && !json_is_object(md) && !json_is_null(md))) {
                fprintf(stderr, "embd collections: %s:%zu: need {\"id\": string, \"text\": string, \"metadata\"?: object}\n",
                        path, lineno);
                json_decref(j);
                status = EMBD_EXIT_USAGE;
                break;
            }
            meta[nb] = json_is_object(md) ? json_dumps(md, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            in[nb] = (embd_doc_input){json_string_value(id), json_string_value(text), json_string_length(text), meta[nb]};
            batch[nb++] = j;
        }
        if (nb == FILES_PER_BATCH || (eof && nb)) {
            embd_ingest_stats st;
            int rc = embd_coll_ingest(ctx, coll, in, nb, &st, err, sizeof err);
            if (rc) {
                fprintf(stderr, "embd collections: %s\n", err);
                status = status_of(rc);
            }
            docs += st.documents + st.unchanged;
            chunks += st.chunks;
            for (size_t i = 0; i < nb; i++) json_decref(batch[i]), free(meta[i]);
            nb = 0;
            if (!quiet) fprintf(stderr, "\r%zu documents, %zu new chunks ", docs, chunks);
        }
    }
    for (size_t i = 0; i < nb; i++) json_decref(batch[i]), free(meta[i]);
    if (!quiet) fprintf(stderr, "\n");
    free(line);
    if (f != stdin) fclose(f);
    return status;
}

static int ingest_paths(const embd_coll_ctx *ctx, const char *coll, char **paths, int n, bool quiet) {
    path_list files = {0};
    for (int i = 0; i < n; i++)
        if (embd_walk(paths[i], &files, 0, NULL) < 0) {
            for (size_t k = 0; k < files.n; k++) free(files.paths[k]);
            free(files.paths);
            return EMBD_EXIT_UNUSABLE;
        }
    int status = EMBD_EXIT_OK;
    size_t done = 0, chunks = 0, skipped = 0, unchanged = 0, enriched = 0, degraded = 0;
    embd_progress pg;
    embd_progress_init(&pg, quiet);
    char err[512];
    for (size_t i = 0; i < files.n && status == EMBD_EXIT_OK;) {
        embd_doc_input in[FILES_PER_BATCH];
        char *texts[FILES_PER_BATCH], *meta[FILES_PER_BATCH];
        size_t nb = 0;
        for (; i < files.n && nb < FILES_PER_BATCH; i++) {
            size_t len = 0;
            char *t = embd_read_text(files.paths[i], &len);
            if (!t) {
                skipped++;
                continue;
            }
            const char *dot = strrchr(files.paths[i], '.');
            json_t *md = json_pack("{s:s, s:s}", "path", files.paths[i], "ext", dot && !strchr(dot, '/') ? dot + 1 : "");
            meta[nb] = md ? json_dumps(md, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            json_decref(md);
            texts[nb] = t;
            in[nb] = (embd_doc_input){files.paths[i], t, len, meta[nb]};
            nb++;
        }
        embd_ingest_stats st = {0};
        int rc = nb ? embd_coll_ingest(ctx, coll, in, nb, &st, err, sizeof err) : 0;
        if (rc == EMBD_STORE_INVALID && nb) { /* e.g. a file that is not UTF-8: go one by one, skip the bad */
            rc = 0;
            for (size_t k = 0; k < nb && !rc; k++) {
                embd_ingest_stats one;
                rc = embd_coll_ingest(ctx, coll, &in[k], 1, &one, err, sizeof err);
                if (rc == EMBD_STORE_INVALID) {
                    if (!quiet) fprintf(stderr, "\nembd collections: skipped %s: %s\n", in[k].id, err);
                    skipped++;
                    rc = 0;
                    continue;
                }
                st.documents += one.documents, st.chunks += one.chunks, st.unchanged += one.unchanged;
                st.enriched += one.enriched, st.degraded += one.degraded;
            }
        }
        if (rc) {
            fprintf(stderr, "\nembd collections: %s\n", err);
            status = status_of(rc);
        }
        done += st.documents;
        unchanged += st.unchanged;
        chunks += st.chunks;
        for (size_t k = 0; k < nb; k++) free(texts[k]), free(meta[k]);
        enriched += st.enriched, degraded += st.degraded;
        embd_progress_show(&pg, i, files.n, chunks, enriched, degraded, skipped, false);
    }
    embd_progress_show(&pg, done + unchanged + skipped, files.n, chunks, enriched, degraded, skipped, true);
    if (!quiet) fprintf(stderr, "%zu ingested, %zu unchanged, %zu skipped\n", done, unchanged, skipped);
    for (size_t k = 0; k < files.n; k++) free(files.paths[k]);
    free(files.paths);
    return status;
}

int cmd_collections(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EMBD_EXIT_USAGE : EMBD_EXIT_OK;
    }
    const char *sub = argv[1];
    static const struct option lo[] = {
        {"data-dir", required_argument, 0, 'd'}, {"model", required_argument, 0, 'm'},
        {"model-name", required_argument, 0, 'N'}, {"chunk-size", required_argument, 0, 'c'},
        {"overlap", required_argument, 0, 'o'},  {"code-aware", no_argument, 0, 'C'},
        {"index", required_argument, 0, 'x'},    {"jsonl", required_argument, 0, 'j'},
        {"k", required_argument, 0, 'k'},        {"filter", required_argument, 0, 'f'},
        {"document", required_argument, 0, 'D'}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"rerank-model", required_argument, 0, 'R'}, {"top-n", required_argument, 0, 'n'},
        {"enrich", required_argument, 0, 'E'},   {0, 0, 0, 0}};
    const char *enrich_s = NULL;
    const char *rerank_path = NULL;
    long top_n = 0;
    const char *dir = NULL, *model_path = NULL, *model_name = NULL, *jsonl = NULL, *filter_s = NULL, *doc = NULL;
    long chunk_size = -1, overlap = -1, k = 10, threads = 0;
    bool code_aware = false, quiet = false;
    embd_vindex_kind kind = EMBD_VINDEX_FLAT;
    optind = 1;
    for (int c; (c = getopt_long(argc - 1, argv + 1, "d:m:k:t:qh", lo, NULL)) != -1;) {
        char *end = NULL;
        switch (c) {
        case 'd': dir = optarg; break;
        case 'm': model_path = optarg; break;
        case 'N': model_name = optarg; break;
        case 'j': jsonl = optarg; break;
        case 'f': filter_s = optarg; break;
        case 'D': doc = optarg; break;
        case 'R': rerank_path = optarg; break;
        case 'E': enrich_s = optarg; break;
        case 'C': code_aware = true; break;
        case 'q': quiet = true; break;
        case 'x':
            if (!strcmp(optarg, "flat")) kind = EMBD_VINDEX_FLAT;
            else if (!strcmp(optarg, "hnsw")) kind = EMBD_VINDEX_HNSW;
            else { fprintf(stderr, "embd collections: --index must be flat or hnsw\n"); return EMBD_EXIT_USAGE; }
            break;
        case 'c': case 'o': case 'k': case 't': case 'n': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < (c == 'o' ? 0 : 1) || v > 1000000) {
                fprintf(stderr, "embd collections: bad number '%s'\n", optarg);
                return EMBD_EXIT_USAGE;
            }
            if (c == 'c') chunk_size = v;
            else if (c == 'o') overlap = v;
            else if (c == 'k') k = v;
            else if (c == 'n') top_n = v;
            else threads = v;
            break;
        }
        case 'h': usage(stdout); return EMBD_EXIT_OK;
        default: usage(stderr); return EMBD_EXIT_USAGE;
        }
    }
    char **pos = argv + 1 + optind;
    int npos = argc - 1 - optind;
    const bool needs_name = strcmp(sub, "list"), needs_model = !strcmp(sub, "create") || !strcmp(sub, "ingest") ||
                                                               !strcmp(sub, "search");
    if (strcmp(sub, "create") && strcmp(sub, "ingest") && strcmp(sub, "search") && strcmp(sub, "list") &&
        strcmp(sub, "info") && strcmp(sub, "delete")) {
        fprintf(stderr, "embd collections: unknown command '%s'\n", sub);
        usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    if (!dir || (needs_name && npos < 1) || (needs_model && !model_path)) {
        fprintf(stderr, "embd collections %s: needs --data-dir%s%s\n", sub, needs_name ? " and a collection name" : "",
                needs_model ? " and --model" : "");
        return EMBD_EXIT_USAGE;
    }
    const char *name = needs_name ? pos[0] : NULL;
    if (needs_name) pos++, npos--;
    if ((!strcmp(sub, "search") && npos != 1) || (!strcmp(sub, "ingest") && !jsonl && npos < 1) ||
        (!strcmp(sub, "ingest") && jsonl && npos) ||
        (strcmp(sub, "search") && strcmp(sub, "ingest") && npos)) {
        fprintf(stderr, "embd collections %s: wrong number of arguments\n", sub);
        return EMBD_EXIT_USAGE;
    }
    json_t *filter = NULL;
    if (filter_s) {
        json_error_t je;
        if (!(filter = json_loads(filter_s, JSON_DECODE_ANY, &je))) {
            fprintf(stderr, "embd collections: --filter is not JSON: %s\n", je.text);
            return EMBD_EXIT_USAGE;
        }
    }

    char err[512];
    int status = EMBD_EXIT_UNUSABLE;
    embd_model *m = NULL;
    embd_encoder *enc = NULL;
    embd_reranker *reranker = NULL;
    embd_store *store = embd_store_open(dir, err, sizeof err);
    if (!store) goto fail;
    if (needs_model) {
        embd_model_params mp = {0};
        if (!(m = embd_model_load(model_path, &mp, err, sizeof err))) goto fail;
        if (embd_model_is_reranker(m)) {
            snprintf(err, sizeof err, "%s is a cross-encoder; collections need an embedding model", model_path);
            goto fail;
        }
        if (strcmp(sub, "create") && !(enc = embd_encoder_new(m, (int)threads, err, sizeof err))) goto fail;
    }
    if (rerank_path && !(reranker = embd_reranker_load(rerank_path, (int)threads, err, sizeof err))) goto fail;
    if (!top_n || top_n > k) top_n = k;
    char mname[256] = "";
    if (model_path) {
        const char *base = strrchr(model_path, '/');
        snprintf(mname, sizeof mname, "%s", model_name ? model_name : base ? base + 1 : model_path);
        size_t nl = strlen(mname);
        if (!model_name && nl > 5 && !strcmp(mname + nl - 5, ".gguf")) mname[nl - 5] = 0;
    }
    cli_embedder ce = {enc};
    embd_coll_ctx ctx = {.store = store,
                         .tok = m ? m->tok : NULL,
                         .model_name = mname,
                         .dims = m ? m->info.n_embd : 0,
                         .n_ctx = m ? m->info.n_ctx : 0,
                         .embed = cli_embed,
                         .embed_ud = &ce,
                         .rerank = reranker ? embd_reranker_score : NULL,
                         .rerank_ud = reranker};
    int rc = 0;
    if (!strcmp(sub, "create")) {
        char *enrich = NULL;
        if (enrich_s && !(enrich = enrich_option(enrich_s, err, sizeof err))) {
            fprintf(stderr, "embd collections: --enrich: %s\n", err);
            status = EMBD_EXIT_USAGE;
            goto out;
        }
        size_t maxc = embd_coll_max_chunk(&ctx);
        embd_coll_opts o = {.chunk_size = chunk_size > 0 ? (size_t)chunk_size : (maxc < 256 ? maxc : 256),
                            .code_aware = code_aware,
                            .index = kind,
                            .enrich = enrich};
        o.overlap = overlap >= 0 ? (size_t)overlap : o.chunk_size / 8;
        if (o.chunk_size > maxc || o.overlap >= o.chunk_size) {
            fprintf(stderr, "embd collections: --chunk-size must be <= %zu and --overlap below it\n", maxc);
            free(enrich);
            status = EMBD_EXIT_USAGE;
            goto out;
        }
        rc = embd_store_create(store, name, mname, m->info.n_embd, &o, err, sizeof err);
        free(enrich);
        embd_coll_info info;
        if (!rc) rc = embd_store_info(store, name, &info, NULL, err, sizeof err);
        if (!rc) print_json(info_json(store, &info));
    } else if (!strcmp(sub, "ingest")) {
        status = jsonl ? ingest_jsonl(&ctx, name, jsonl, quiet) : ingest_paths(&ctx, name, pos, npos, quiet);
        goto out;
    } else if (!strcmp(sub, "search")) {
        embd_hit *hits = NULL;
        size_t n = 0;
        rc = embd_coll_search(&ctx, name, pos[0], strlen(pos[0]), (size_t)k, filter, reranker ? (size_t)top_n : 0,
                              &hits, &n, err, sizeof err);
        for (size_t i = 0; !rc && i < n; i++) {
            json_t *md = json_loads(hits[i].metadata, 0, NULL);
            json_t *j = json_pack("{s:i, s:f, s:s, s:I, s:I, s:I, s:o, s:s}", "rank", (int)i + 1, "score",
                                  (double)hits[i].score, "document_id", hits[i].doc_id, "chunk_index",
                                  (json_int_t)hits[i].seq, "start", (json_int_t)hits[i].start, "end",
                                  (json_int_t)hits[i].end, "metadata", md ? md : json_object(), "text", hits[i].text);
            if (j && reranker) json_object_set_new(j, "rerank_score", json_real(hits[i].rerank_score));
            if (j && hits[i].context) json_object_set_new(j, "context", json_string(hits[i].context));
            print_json(j);
        }
        embd_hits_free(hits, n);
    } else if (!strcmp(sub, "list")) {
        embd_coll_info *all = NULL;
        size_t n = 0;
        rc = embd_store_list(store, &all, &n, err, sizeof err);
        for (size_t i = 0; !rc && i < n; i++) print_json(info_json(store, &all[i]));
        free(all);
    } else if (!strcmp(sub, "info")) {
        embd_coll_info info;
        bool rebuilt = false;
        rc = embd_store_info(store, name, &info, &rebuilt, err, sizeof err);
        if (!rc) {
            json_t *j = info_json(store, &info);
            json_object_set_new(j, "index_rebuilt", json_boolean(rebuilt));
            print_json(j);
        }
    } else { /* delete */
        rc = doc ? embd_store_delete_doc(store, name, doc, err, sizeof err) : embd_store_drop(store, name, err, sizeof err);
    }
    status = status_of(rc);
    if (rc) fprintf(stderr, "embd collections: %s\n", err);
    goto out;
fail:
    fprintf(stderr, "embd collections: %s\n", err);
out:
    json_decref(filter);
    embd_encoder_free(enc);
    embd_model_free(m);
    embd_reranker_free(reranker);
    embd_store_close(store);
    return status;
}
