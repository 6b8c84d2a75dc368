/* Subcommands of the embd binary. Each returns the process exit status. */
#ifndef EMBD_CLI_H
#define EMBD_CLI_H

enum {
    EMBD_EXIT_OK = 0,
    EMBD_EXIT_USAGE = 1,      /* bad flags */
    EMBD_EXIT_UNUSABLE = 2,   /* model or input/output file cannot be used */
    EMBD_EXIT_ITEM_ERRORS = 3 /* finished, but some items failed (see their error records) */
};

int cmd_serve(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_rerank(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_clip_embed(int argc, char **argv);
int cmd_image_prep(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_collections(int argc, char **argv);
int cmd_ingest(int argc, char **argv);

#endif
