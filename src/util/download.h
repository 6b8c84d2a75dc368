/* Verified, resumable HTTP(S) downloads and the default model that `embd serve` falls back to. */
#ifndef EMBD_DOWNLOAD_H
#define EMBD_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>

/* The pinned default model (see download.c for where the hash comes from). */
extern const char embd_pinned_model_url[];
extern const char embd_pinned_model_sha256[];
extern const uint64_t embd_pinned_model_size;

/* Downloads url to dest atomically: data goes to dest + ".part", resumed with an HTTP Range request
 * when a .part exists (server answers 206; on 200 start over), sha256 of the whole file is checked
 * (hex, lower or upper case) and only then renamed to dest. Follows redirects (Hugging Face
 * redirects to a CDN), fails on HTTP >= 400, sets a connect timeout and a low-speed abort, creates
 * missing parent directories. progress (may be NULL) is called with bytes done/total (total 0 when
 * unknown). If dest already exists with the right sha256 nothing is fetched. Concurrent callers for
 * the same dest serialise on a lock of the .part file. Returns 0 or -1 with a one-line reason in err
 * (never leaves a file at dest on failure; a bad checksum deletes the .part; an interrupted
 * transfer keeps it for the next try). */
int embd_download(const char *url, const char *dest, const char *sha256_hex,
                  void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud,
                  char *err, size_t errlen);

/* Where the default model comes from: $EMBD_DEFAULT_MODEL_URL + $EMBD_DEFAULT_MODEL_SHA256 when set
 * (both or neither, so tests can point at a loopback server), else the pinned constants. */
int embd_default_model_source(const char **url, const char **sha256_hex, char *err, size_t errlen);

/* The model embd serve uses when --model is not given: $EMBD_MODEL if set (must exist); else
 * <cache>/models/<file> where cache = $EMBD_CACHE_DIR or $XDG_CACHE_HOME/embd or ~/.cache/embd and
 * <file> is the last path segment of the source URL, downloading it (one notice line on stderr, a
 * progress bar when stderr is a tty) when missing. Writes the path to out. Returns 0 or -1. */
int embd_default_model(char *out, size_t outlen, char *err, size_t errlen);

/* A progress callback drawing a one-line bar on stderr, throttled; ud is a zeroed embd_progress_bar
 * (one per download). embd_progress_bar_end() finishes the line if anything was drawn. */
typedef struct {
    double last;    /* embd_now() of the last redraw */
    int drawn;
} embd_progress_bar;
void embd_progress_bar_cb(void *ud, uint64_t done, uint64_t total);
void embd_progress_bar_end(embd_progress_bar *bar);

#endif
