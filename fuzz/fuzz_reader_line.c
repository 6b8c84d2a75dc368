/* The `embd embed` input reader (src/cli/reader.c, compiled into this target) on arbitrary bytes
 * as a file: every line yields an item with an id and either text or an error, then clean EOF. */
#include <string.h>

#include "cli/reader.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_memfd_path(data, size);
    size_t lines = (size && data[size - 1] != '\n');
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    FUZZ_CHECK(count_lines(path) == lines);

    reader r;
    char err[256] = "";
    FUZZ_CHECK(reader_open(&r, path, READ_AUTO, err, sizeof err) == 0);
    input_item it;
    size_t items = 0;
    int rc;
    while ((rc = reader_next(&r, &it)) == 1) {
        FUZZ_CHECK(++items <= lines);
        FUZZ_CHECK(it.id && memchr(it.error, 0, sizeof it.error));
        if (it.error[0])
            FUZZ_CHECK(!it.text);
        else
            FUZZ_CHECK(it.text && it.text[it.len] == '\0');
        input_item_clear(&it);
    }
    FUZZ_CHECK(rc == 0);
    reader_close(&r);
    return 0;
}
