/* /v1/collections: create, list, inspect and drop collections, ingest and delete documents,
 * search (see README "Collections"). The handler blocks its HTTP thread while the scheduler
 * embeds the chunks or the query: ingest is bulk work and search is one short item. */
#ifndef EMBD_API_COLLECTIONS_H
#define EMBD_API_COLLECTIONS_H

#include <stddef.h>

#include "engine/model.h"
#include "scheduler/sched.h"

typedef struct embd_coll_api embd_coll_api;

/* Opens (creating) the data directory. timeout: seconds one embedding job may take (0: none).
 * rerank_model: a cross-encoder GGUF for `rerank` in searches, or NULL. */
embd_coll_api *embd_coll_api_new(const char *data_dir, const embd_model *model, embd_sched *sched,
                                 const char *model_name, double timeout, size_t max_items, const char *rerank_model,
                                 int threads, char *err, size_t errlen);
void embd_coll_api_free(embd_coll_api *a);
/* Where enrichment outcomes are counted (embd_enrich_chunks_total); NULL: nowhere. */
struct embd_metrics;
void embd_coll_api_set_metrics(embd_coll_api *a, struct embd_metrics *m);

/* One request whose path starts with /v1/collections (url decoded, body may be modified in
 * place). Returns the HTTP status; *out gets the JSON body (malloc'd; NULL when out of memory). */
int embd_coll_api_handle(embd_coll_api *a, const char *method, const char *url, char *body, size_t len, char **out);

#endif
