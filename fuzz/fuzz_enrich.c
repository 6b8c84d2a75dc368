/* Enrichment inputs on arbitrary bytes. First byte even: the bytes as an "enrich" option object;
 * one that validates must survive its stored form (parse -> JSON -> parse gives the same JSON),
 * never show an api key in the redacted form, and render a prompt that holds the chunk. Odd: the
 * bytes as a chat endpoint's reply, parsed in both API shapes; a text comes back non-empty,
 * trimmed and without NUL. */
#include <jansson.h>
#include <string.h>

#include "collections/enrich.h"
#include "fuzz_common.h"

static void fuzz_options(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    char err[256];
    embd_enrich_cfg *c = j ? embd_enrich_parse(j, err, sizeof err) : NULL;
    if (c) {
        json_t *full = embd_enrich_json(c, false), *red = embd_enrich_json(c, true);
        FUZZ_CHECK(full && red);
        embd_enrich_cfg *again = embd_enrich_parse(full, err, sizeof err);
        FUZZ_CHECK(again);
        json_t *full2 = embd_enrich_json(again, false);
        FUZZ_CHECK(json_equal(full, full2));
        for (size_t i = 0; i < c->n_ep; i++)
            FUZZ_CHECK(!json_object_get(json_array_get(json_object_get(red, "endpoints"), i), "api_key"));
        for (size_t i = 0; i < c->n_ep; i++) {
            char *u = embd_enrich_url(&c->ep[i]);
            char *b = embd_enrich_body(c, &c->ep[i], "p");
            FUZZ_CHECK(u && b && !strncmp(u, c->ep[i].url, strlen(c->ep[i].url)));
            free(u), free(b);
        }
        static const char chunk[] = "<<CHUNK>>";
        embd_enrich_item it = {chunk, sizeof chunk - 1, (const char *)data, size, "id", NULL};
        char *p = embd_enrich_prompt(c, &it);
        FUZZ_CHECK(p && strstr(p, chunk));
        free(p);
        json_decref(full2);
        embd_enrich_free(again);
        json_decref(full), json_decref(red);
        embd_enrich_free(c);
    }
    json_decref(j);
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
    for (int api = 0; api < 2; api++) {
        char *t = NULL, err[256];
        int rc = embd_enrich_reply(api ? EMBD_ENRICH_OLLAMA : EMBD_ENRICH_OPENAI, (const char *)data, size, &t, err,
                                   sizeof err);
        if (rc) {
            FUZZ_CHECK(!t && err[0]);
            continue;
        }
        size_t n = strlen(t);
        FUZZ_CHECK(n && !strchr(" \t\r\n", t[0]) && !strchr(" \t\r\n", t[n - 1]));
        free(t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    if (data[0] % 2 == 0) fuzz_options(data + 1, size - 1);
    else fuzz_reply(data + 1, size - 1);
    return 0;
}
