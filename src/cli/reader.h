/* Input items for `embd embed`: JSONL objects {"id":..,"text":..} or plain text lines. */
#ifndef EMBD_READER_H
#define EMBD_READER_H

#include <jansson.h>
#include <stdio.h>

typedef enum { READ_AUTO, READ_JSONL, READ_LINES } read_format;

typedef struct {
    json_t *id;     /* the item's id (line number when absent); owned */
    char *text;     /* owned; may contain NUL */
    size_t len;
    char error[200]; /* non-empty: this line is unusable, report it under id */
} input_item;

typedef struct {
    FILE *f;
    read_format fmt;
    char *line;
    size_t cap;
    size_t line_no;
} reader;

/* path "-" is stdin. */
int reader_open(reader *r, const char *path, read_format fmt, char *err, size_t errlen);
/* 1: item read, 0: end of input, -1: read error. */
int reader_next(reader *r, input_item *it);
void reader_close(reader *r);
void input_item_clear(input_item *it);
/* Lines in a regular file (for the progress bar's total), 0 when unknown. */
size_t count_lines(const char *path);

#endif
