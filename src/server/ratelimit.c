#include "server/ratelimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "server/auth.h"

void embd_bucket_init(embd_bucket *b, double rate, double burst, double now) {
    *b = (embd_bucket){.rate = rate, .burst = burst, .level = burst, .t = now};
}

double embd_bucket_take(embd_bucket *b, double n, double now) {
    if (now > b->t) {
        b->level += (now - b->t) * b->rate;
        if (b->level > b->burst) b->level = b->burst;
        b->t = now;
    }
    double need = n < b->burst ? n : b->burst;
    if (b->level >= need) {
        b->level -= n;
        return 0;
    }
    return (need - b->level) / b->rate;
}

/* The names come from the keys file (plus "hmac" and "anonymous"), so a plain array does. */
typedef struct {
    char name[EMBD_KEY_NAME_MAX];
    embd_bucket req, tok;
    bool has_req, has_tok;
} caller;

struct embd_ratelimit {
    pthread_mutex_t mu;
    caller *c;
    size_t n, cap;
};

embd_ratelimit *embd_ratelimit_new(void) {
    embd_ratelimit *rl = calloc(1, sizeof *rl);
    if (rl) pthread_mutex_init(&rl->mu, NULL);
    return rl;
}

void embd_ratelimit_free(embd_ratelimit *rl) {
    if (!rl) return;
    pthread_mutex_destroy(&rl->mu);
    free(rl->c);
    free(rl);
}

static caller *find(embd_ratelimit *rl, const char *who) {
    for (size_t i = 0; i < rl->n; i++)
        if (!strcmp(rl->c[i].name, who)) return &rl->c[i];
    if (rl->n == rl->cap) {
        size_t cap = rl->cap ? rl->cap * 2 : 16;
        caller *nc = realloc(rl->c, cap * sizeof *nc);
        if (!nc) return NULL;
        rl->c = nc, rl->cap = cap;
    }
    caller *c = &rl->c[rl->n++];
    memset(c, 0, sizeof *c);
    strncpy(c->name, who, sizeof c->name - 1);
    return c;
}

/* A bucket whose limit changed (keys file reloaded, say) starts over at the new rate. */
static double take(embd_ratelimit *rl, const char *who, bool tokens, double rate, double burst, double n, double now) {
    pthread_mutex_lock(&rl->mu);
    double wait = 0;
    caller *c = find(rl, who);
    if (c) {
        embd_bucket *b = tokens ? &c->tok : &c->req;
        bool *has = tokens ? &c->has_tok : &c->has_req;
        if (!*has || b->rate != rate) embd_bucket_init(b, rate, burst, now), *has = true;
        wait = embd_bucket_take(b, n, now);
    }
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

double embd_ratelimit_request(embd_ratelimit *rl, const char *who, double rps, double now) {
    if (rps <= 0 || !who[0]) return 0;
    return take(rl, who, false, rps, rps < 1 ? 1 : rps, 1, now);
}

double embd_ratelimit_tokens(embd_ratelimit *rl, const char *who, double tpm, double n, double now) {
    if (tpm <= 0 || !who[0]) return 0;
    return take(rl, who, true, tpm / 60.0, tpm, n, now);
}
