#include "tokenizer/tok_json.h"

#include <string.h>

bool tok_json_true(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && !json_integer_value(v)) &&
           !(json_is_string(v) && !json_string_length(v));
}

const char *tok_json_str(const json_t *o, const char *key, const char *def) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

bool tok_json_post_specials(const json_t *pp, bool roberta, const char **cls, const char **sep) {
    const char *type = tok_json_str(pp, "type", "");
    if (!strcmp(type, "BertProcessing") || (roberta && !strcmp(type, "RobertaProcessing"))) {
        *cls = json_string_value(json_array_get(json_object_get(pp, "cls"), 0));
        *sep = json_string_value(json_array_get(json_object_get(pp, "sep"), 0));
        return *cls && *sep;
    }
    if (strcmp(type, "TemplateProcessing")) return false;
    const json_t *single = json_object_get(pp, "single");
    if (json_array_size(single) != 3) return false;
    const json_t *a = json_object_get(json_array_get(single, 0), "SpecialToken");
    const json_t *m = json_object_get(json_array_get(single, 1), "Sequence");
    const json_t *b = json_object_get(json_array_get(single, 2), "SpecialToken");
    *cls = tok_json_str(a, "id", NULL);
    *sep = tok_json_str(b, "id", NULL);
    return *cls && *sep && m && !strcmp(tok_json_str(m, "id", ""), "A");
}

tok_added tok_json_added(const json_t *entry) {
    const json_t *c = json_object_get(entry, "content");
    tok_added a = {
        .content = (char *)json_string_value(c),
        .len = json_string_length(c),
        .id = (int32_t)json_integer_value(json_object_get(entry, "id")),
        .lstrip = tok_json_true(entry, "lstrip"),
        .rstrip = tok_json_true(entry, "rstrip"),
        .special = tok_json_true(entry, "special"),
    };
    const json_t *nv = json_object_get(entry, "normalized");
    a.normalized = (nv && !json_is_null(nv)) ? tok_json_true(entry, "normalized") : !a.special;
    return a;
}
