#include "cli/reader.h"

#include <string.h>
#include <sys/stat.h>

#include "util/jsonfix.h"
#include "util/sys.h"

int reader_open(reader *r, const char *path, read_format fmt, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->fmt = fmt;
    if (!strcmp(path, "-")) {
        r->f = stdin;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return embd_fail(err, errlen, "input '%s' is a directory", path);
    r->f = fopen(path, "rb");
    if (!r->f) return embd_fail(err, errlen, "cannot open input '%s'", path);
    return 0;
}

void reader_close(reader *r) {
    if (r->f && r->f != stdin) fclose(r->f);
    free(r->line);
    memset(r, 0, sizeof *r);
}

void input_item_clear(input_item *it) {
    json_decref(it->id);
    free(it->text);
    memset(it, 0, sizeof *it);
}

static void set_text(input_item *it, const char *s, size_t n) {
    it->text = malloc(n + 1);
    if (!it->text) {
        snprintf(it->error, sizeof it->error, "out of memory");
        return;
    }
    memcpy(it->text, s, n);
    it->text[n] = '\0';
    it->len = n;
}

static void parse_json_line(input_item *it, char *line, size_t n) {
    /* Lone UTF-16 surrogate escapes are valid JSON syntax but not Unicode; jansson rejects them. */
    embd_json_fix_surrogates(line, n);
    json_error_t je;
    json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!obj) {
        snprintf(it->error, sizeof it->error, "invalid JSON: %.140s", je.text);
        return;
    }
    if (!json_is_object(obj)) {
        snprintf(it->error, sizeof it->error, "expected a JSON object with a \"text\" field");
        json_decref(obj);
        return;
    }
    json_t *id = json_object_get(obj, "id");
    if (id) {
        json_decref(it->id);
        it->id = json_incref(id);
    }
    json_t *text = json_object_get(obj, "text");
    if (!json_is_string(text))
        snprintf(it->error, sizeof it->error, "field \"text\" is missing or not a string");
    else
        set_text(it, json_string_value(text), json_string_length(text));
    json_decref(obj);
}

int reader_next(reader *r, input_item *it) {
    memset(it, 0, sizeof *it);
    for (;;) {
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) return ferror(r->f) ? -1 : 0;
        size_t len = (size_t)n;
        if (len && r->line[len - 1] == '\n') len--;
        if (len && r->line[len - 1] == '\r') len--;
        size_t no = r->line_no++;
        const char *p = r->line;
        while (p < r->line + len && (*p == ' ' || *p == '\t')) p++;
        if (r->fmt == READ_AUTO && p < r->line + len) r->fmt = *p == '{' ? READ_JSONL : READ_LINES;
        if (r->fmt != READ_LINES && p == r->line + len) continue; /* blank lines separate nothing in JSONL */
        it->id = json_integer((json_int_t)no);
        if (r->fmt == READ_LINES)
            set_text(it, r->line, len);
        else
            parse_json_line(it, r->line, len);
        return 1;
    }
}

size_t count_lines(const char *path) {
    if (!strcmp(path, "-")) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[1 << 16];
    size_t n, lines = 0, last = '\n';
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))); p++) lines++;
        last = (unsigned char)buf[n - 1];
    }
    fclose(f);
    return lines + (last != '\n');
}
