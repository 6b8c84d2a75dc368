#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/download.h"

static void pull_usage(FILE *f) {
    fprintf(f,
            "usage: embd pull [URL --sha256 HEX] [-o FILE]\n\n"
            "Downloads a GGUF model, verifying its SHA-256 before it appears under its final name.\n"
            "An interrupted download leaves FILE.part and is resumed by the next run.\n\n"
            "  (no URL)        fetch the default model (the one `embd serve` uses without --model) into\n"
            "                  the cache, or to FILE with -o, and print its path. It is $EMBD_MODEL if\n"
            "                  set; else <cache>/models/%s, where <cache> is\n"
            "                  $EMBD_CACHE_DIR, $XDG_CACHE_HOME/embd or ~/.cache/embd; the source can be\n"
            "                  replaced with $EMBD_DEFAULT_MODEL_URL + $EMBD_DEFAULT_MODEL_SHA256\n"
            "  URL             download URL (http or https; redirects are followed)\n"
            "  --sha256 HEX    expected SHA-256 of the file (required with a URL)\n"
            "  -o, --output F  where to put it (default: the URL's file name in the current directory)\n\n"
            "A progress bar is drawn on stderr when stderr is a terminal.\n"
            "exit status: 0 ok, 1 usage error, 2 download or verification failed\n\n"
            "pinned default model (%.1f MiB):\n  %s\n  sha256 %s\n",
            strrchr(embd_pinned_model_url, '/') + 1, (double)embd_pinned_model_size / (1024.0 * 1024.0),
            embd_pinned_model_url, embd_pinned_model_sha256);
}

static bool is_sha(const char *s) {
    if (strlen(s) != 64) return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdefABCDEF", *s)) return false;
    return true;
}

int cmd_pull(int argc, char **argv) {
    static const struct option lo[] = {{"sha256", required_argument, 0, 's'}, {"output", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *sha = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        if (c == 's') sha = optarg;
        else if (c == 'o') out = optarg;
        else if (c == 'h') {
            pull_usage(stdout);
            return EMBD_EXIT_OK;
        } else {
            pull_usage(stderr);
            return EMBD_EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "embd pull: one URL at most (got '%s' too)\n", argv[optind + 1]);
        return EMBD_EXIT_USAGE;
    }
    const char *url = optind < argc ? argv[optind] : NULL;
    if (url && !sha) {
        fprintf(stderr, "embd pull: --sha256 is required with a URL (an unverified model is not used)\n");
        return EMBD_EXIT_USAGE;
    }
    if (!url && sha) {
        fprintf(stderr, "embd pull: --sha256 goes with a URL\n");
        return EMBD_EXIT_USAGE;
    }
    if (sha && !is_sha(sha)) {
        fprintf(stderr, "embd pull: --sha256 must be 64 hex digits\n");
        return EMBD_EXIT_USAGE;
    }
    if (out && !*out) {
        fprintf(stderr, "embd pull: -o needs a file name\n");
        return EMBD_EXIT_USAGE;
    }

    char err[1024], path[PATH_MAX];
    if (!url && !out) {
        if (embd_default_model(path, sizeof path, err, sizeof err) != 0) {
            fprintf(stderr, "embd pull: %s\n", err);
            return EMBD_EXIT_UNUSABLE;
        }
        printf("%s\n", path);
        return EMBD_EXIT_OK;
    }
    if (!url && embd_default_model_source(&url, &sha, err, sizeof err) != 0) {
        fprintf(stderr, "embd pull: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    if (!out) {
        /* Like curl -O: the URL's last path segment, in the current directory. */
        size_t end = strcspn(url, "?#"), start = end;
        while (start > 0 && url[start - 1] != '/') start--;
        size_t n = end - start;
        if (n == 0 || n >= sizeof path || (url[start] == '.' && (n == 1 || (n == 2 && url[start + 1] == '.')))) {
            fprintf(stderr, "embd pull: no file name in the URL; give -o FILE\n");
            return EMBD_EXIT_USAGE;
        }
        memcpy(path, url + start, n);
        path[n] = '\0';
        out = path;
    }
    embd_progress_bar bar = {0};
    bool tty = isatty(STDERR_FILENO);
    int rc = embd_download(url, out, sha, tty ? embd_progress_bar_cb : NULL, &bar, err, sizeof err);
    embd_progress_bar_end(&bar);
    if (rc != 0) {
        fprintf(stderr, "embd pull: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    printf("%s\n", out);
    return EMBD_EXIT_OK;
}
