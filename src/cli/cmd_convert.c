/* embd convert HF_DIR OUT.gguf [--type f32|f16|q8_0]: Hugging Face model directory -> GGUF. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "convert/convert.h"
#include "util/sys.h"

static void usage(FILE *f) {
    fprintf(f, "usage: embd convert HF_DIR OUT.gguf [--type f32|f16|q8_0] [--quiet]\n\n"
               "Converts a Hugging Face BERT / XLM-RoBERTa model directory (config.json, tokenizer.json or\n"
               "vocab.txt, model.safetensors or its shards, sentence-transformers files) to GGUF with\n"
               "llama.cpp's tensor names and metadata keys. A CLIPModel directory (model_type \"clip\":\n"
               "config.json, model.safetensors, preprocessor_config.json, tokenizer.json) becomes one GGUF\n"
               "with both towers in llama.cpp's clip layout (embd clip-embed, embd serve).\n\n"
               "  --type T   weight type of the 2-D matrices (default f16); vectors, norms and position /\n"
               "             token-type embeddings stay f32, as llama.cpp's converter keeps them\n"
               "  --quiet    no summary line\n");
}

/* embd_convert writes OUT.tmp.<pid> and renames it at the end; on Ctrl-C / SIGTERM that
 * temporary file is removed before the process dies (unlink is async-signal-safe). */
static char g_tmp_path[4200];

static void remove_tmp_and_die(int sig) {
    unlink(g_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void cleanup_on_signals(const char *out_path) {
    snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.%d", out_path, (int)getpid());
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remove_tmp_and_die;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

int cmd_convert(int argc, char **argv) {
    static const struct option lo[] = {{"type", required_argument, 0, 't'}, {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    embd_convert_opts o = {.type = GGML_TYPE_F16};
    const char *tname = "f16";
    bool quiet = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:qh", lo, NULL)) != -1) {
        if (c == 't') {
            tname = optarg;
            if (!strcmp(optarg, "f32")) o.type = GGML_TYPE_F32;
            else if (!strcmp(optarg, "f16")) o.type = GGML_TYPE_F16;
            else if (!strcmp(optarg, "q8_0")) o.type = GGML_TYPE_Q8_0;
            else {
                fprintf(stderr, "embd convert: --type must be f32, f16 or q8_0 (got '%s')\n", optarg);
                return EMBD_EXIT_USAGE;
            }
        } else if (c == 'q') {
            quiet = true;
        } else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? EMBD_EXIT_OK : EMBD_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    o.hf_dir = argv[optind];
    o.out_path = argv[optind + 1];
    cleanup_on_signals(o.out_path);
    char err[1024];
    embd_convert_stats st;
    double t0 = embd_now();
    if (embd_convert(&o, &st, err, sizeof err)) {
        fprintf(stderr, "embd convert: %s\n", err);
        return EMBD_EXIT_USAGE; /* every failure exits 1 (usage, missing file, unsupported model) */
    }
    if (!quiet)
        fprintf(stderr, "embd convert: %s -> %s (%s): %zu tensors, %zu parameters, %zu bytes, %.1f s\n", st.arch,
                o.out_path, tname, st.n_tensors, st.n_params, st.out_bytes, embd_now() - t0);
    return EMBD_EXIT_OK;
}
