#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/encoder.h"
#include "worker/worker.h"

static void usage(FILE *f) {
    fprintf(f,
            "embd %s - embedding server and tools for GGUF encoder models\n\n"
            "usage: embd <command> [options]\n\n"
            "commands:\n"
            "  serve     HTTP server: OpenAI/TEI embeddings, tokenize, metrics (embd serve --help)\n"
            "  embed     embed texts from JSONL or plain lines (embd embed --help)\n"
            "  rerank    score documents against a query with a cross-encoder (embd rerank --help)\n"
            "  collections  ingest, chunk, embed, index and search documents (embd collections --help)\n"
            "  ingest    files and directories into a collection, with progress (embd ingest --help)\n"
            "  info      print a model's architecture, dims, context, pooling, vocab, quantization\n"
            "  tokenize  print token ids for texts (same tokenizer as embed)\n"
            "  bench     encoder throughput and latency on this machine's CPU or GPU (embd bench --help)\n"
            "  convert   Hugging Face model directory -> GGUF (embd convert --help)\n"
            "  clip-embed  text and image embeddings from a CLIP GGUF (embd clip-embed --help)\n"
            "  image-prep  images -> CLIP preprocessed float32 .npy (embd image-prep --help)\n"
            "  pull      download the default model, or a URL with --sha256 (embd pull --help)\n"
            "  worker    run bulk jobs from a spool directory (embd worker --help)\n"
            "  jobs      submit, watch, fetch and cancel bulk jobs (embd jobs --help)\n"
            "  version   print the version\n",
            EMBD_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    embd_gpu_precision_env(); /* before any library (cuBLAS) reads it; workers inherit it */
    const char *cmd = argv[1];
    if (!strcmp(cmd, "__worker")) return embd_worker_main(argc - 1, argv + 1); /* spawned by serve */
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull")) return cmd_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "rerank")) return cmd_rerank(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "clip-embed")) return cmd_clip_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "image-prep")) return cmd_image_prep(argc - 1, argv + 1);
    if (!strcmp(cmd, "worker")) return cmd_worker(argc - 1, argv + 1);
    if (!strcmp(cmd, "jobs")) return cmd_jobs(argc - 1, argv + 1);
    if (!strcmp(cmd, "collections")) return cmd_collections(argc - 1, argv + 1);
    if (!strcmp(cmd, "ingest")) return cmd_ingest(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("embd %s\n", EMBD_VERSION);
        return EMBD_EXIT_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return EMBD_EXIT_OK;
    }
    fprintf(stderr, "embd: unknown command '%s'\n", cmd);
    usage(stderr);
    return EMBD_EXIT_USAGE;
}
