#include "tokenizer/tok_json.h"

bool tok_json_true(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && !json_integer_value(v)) &&
           !(json_is_string(v) && !json_string_length(v));
}

const char *tok_json_str(const json_t *o, const char *key, const char *def) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}
