#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/reader.h"
#include "server/api.h"
#include "engine/model.h"

static embd_model *load(const char *cmd, const char *path, const char *tok_json) {
    char err[512];
    if (!path) {
        fprintf(stderr, "embd %s: --model is required\n", cmd);
        return NULL;
    }
    embd_model_params mp = {.tokenizer_json = tok_json, .device = "cpu"}; /* metadata and tokenizer only */
    embd_model *m = embd_model_load(path, &mp, err, sizeof err);
    if (!m) fprintf(stderr, "embd %s: %s\n", cmd, err);
    return m;
}

int cmd_info(int argc, char **argv) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *path = NULL;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:jh", lo, NULL)) != -1) {
        if (c == 'm') path = optarg;
        else if (c == 'j') as_json = true;
        else {
            fprintf(c == 'h' ? stdout : stderr, "usage: embd info --model M.gguf [--json]\n");
            return c == 'h' ? EMBD_EXIT_OK : EMBD_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "embd info: --model is required\n");
        return EMBD_EXIT_USAGE;
    }
    embd_model *m = load("info", path, NULL);
    if (!m) return EMBD_EXIT_UNUSABLE;
    const embd_model_info *i = &m->info;
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:s,s:I,s:I,s:f}", "architecture", i->arch,
                          "name", i->name, "dims", i->n_embd, "context", i->n_ctx, "layers", i->n_layer, "heads",
                          i->n_head, "ffn", i->n_ff, "vocab", i->n_vocab, "pooling", embd_pooling_name(i->pooling),
                          "token_types", i->n_token_types, "quantization", i->weight_type, "params",
                          (json_int_t)i->n_params, "file_bytes", (json_int_t)i->file_bytes, "layer_norm_eps",
                          (double)i->ln_eps);
    json_object_set_new(o, "compute_type", json_string(i->compute_type));
    json_object_set_new(o, "positions", json_integer(i->n_positions));
    if (i->n_labels) json_object_set_new(o, "labels", json_integer(i->n_labels));
    if (m->n_prompts) json_object_set_new(o, "prompts", embd_api_prompts_json(m));
    if (m->default_prompt) json_object_set_new(o, "default_prompt_name", json_string(m->default_prompt));
    if (as_json) {
        json_dumpf(o, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            char *s = json_dumps(v, JSON_ENCODE_ANY);
            printf("%-15s %s\n", k, json_is_string(v) ? json_string_value(v) : s);
            free(s);
        }
    }
    json_decref(o);
    embd_model_free(m);
    return EMBD_EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"input", required_argument, 0, 'i'},
                                       {"tokenizer", required_argument, 0, 'k'}, {"max-tokens", required_argument, 0, 'M'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *path = NULL, *in = "-", *tok_json = NULL;
    long max_tokens = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:h", lo, NULL)) != -1) {
        if (c == 'm') path = optarg;
        else if (c == 'i') in = optarg;
        else if (c == 'k') tok_json = optarg;
        else if (c == 'M') max_tokens = strtol(optarg, NULL, 10);
        else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: embd tokenize --model M.gguf [--input FILE|-] [--tokenizer tokenizer.json] [--max-tokens N]\n"
                    "prints {\"id\",\"ids\",\"tokens\"} per input line (JSONL or plain lines)\n");
            return c == 'h' ? EMBD_EXIT_OK : EMBD_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "embd tokenize: --model is required\n");
        return EMBD_EXIT_USAGE;
    }
    embd_model *m = load("tokenize", path, tok_json);
    if (!m) return EMBD_EXIT_UNUSABLE;
    reader rd;
    char err[256];
    if (reader_open(&rd, in, READ_AUTO, err, sizeof err)) {
        fprintf(stderr, "embd tokenize: %s\n", err);
        embd_model_free(m);
        return EMBD_EXIT_UNUSABLE;
    }
    embd_tokens tk = {0};
    input_item it;
    int status = EMBD_EXIT_OK;
    while (reader_next(&rd, &it) == 1) {
        json_t *rec = json_pack("{s:O}", "id", it.id);
        size_t bad = 0;
        int rc = it.error[0] ? 0 : embd_tokenizer_encode(m->tok, it.text, it.len, max_tokens > 0 ? (size_t)max_tokens : 0, &tk, &bad);
        if (it.error[0] || rc != EMBD_TOK_OK) {
            char msg[200];
            snprintf(msg, sizeof msg, "%s", it.error[0] ? it.error : rc == EMBD_TOK_EUTF8 ? "invalid UTF-8" : "tokenizer failed");
            json_object_set_new(rec, "error", json_string(msg));
            status = EMBD_EXIT_ITEM_ERRORS;
        } else {
            json_t *ids = json_array();
            for (size_t i = 0; i < tk.n; i++) json_array_append_new(ids, json_integer(tk.ids[i]));
            json_object_set_new(rec, "ids", ids);
            json_object_set_new(rec, "tokens", json_integer((json_int_t)tk.n));
            json_object_set_new(rec, "truncated", json_boolean(tk.truncated));
        }
        json_dumpf(rec, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(rec);
        input_item_clear(&it);
    }
    embd_tokens_free(&tk);
    reader_close(&rd);
    embd_model_free(m);
    return status;
}
