#include "server/guard.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

enum { PH_HEADERS, PH_BODY, PH_BUSY };

typedef struct conn {
    struct conn *prev, *next;
    int fd, phase;
    double since;
    bool cut;
} conn;

struct embd_guard {
    pthread_mutex_t mu;
    double header_timeout, body_timeout;
    conn *head;
    size_t n;
};

embd_guard *embd_guard_new(double header_timeout, double body_timeout) {
    embd_guard *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    pthread_mutex_init(&g->mu, NULL);
    g->header_timeout = header_timeout;
    g->body_timeout = body_timeout;
    return g;
}

void embd_guard_free(embd_guard *g) {
    if (!g) return;
    while (g->head) {
        conn *c = g->head;
        g->head = c->next;
        free(c);
    }
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void embd_guard_opened(embd_guard *g, int fd, void **ctx, double now) {
    conn *c = calloc(1, sizeof *c);
    *ctx = c;
    if (!c) return; /* untracked: only libmicrohttpd's idle timeout applies */
    c->fd = fd;
    c->phase = PH_HEADERS;
    c->since = now;
    pthread_mutex_lock(&g->mu);
    c->next = g->head;
    if (g->head) g->head->prev = c;
    g->head = c;
    g->n++;
    pthread_mutex_unlock(&g->mu);
}

/* libmicrohttpd calls this before it closes the socket, so under the lock a tracked fd is never
 * one that was already reused. */
void embd_guard_closed(embd_guard *g, void **ctx) {
    conn *c = *ctx;
    if (!c) return;
    *ctx = NULL;
    pthread_mutex_lock(&g->mu);
    if (c->prev) c->prev->next = c->next;
    else g->head = c->next;
    if (c->next) c->next->prev = c->prev;
    g->n--;
    pthread_mutex_unlock(&g->mu);
    free(c);
}

static void set_phase(embd_guard *g, void *ctx, int phase, double now) {
    conn *c = ctx;
    if (!c) return;
    pthread_mutex_lock(&g->mu);
    c->phase = phase;
    c->since = now;
    pthread_mutex_unlock(&g->mu);
}

void embd_guard_headers_done(embd_guard *g, void *ctx, double now) { set_phase(g, ctx, PH_BODY, now); }
void embd_guard_body_done(embd_guard *g, void *ctx) { set_phase(g, ctx, PH_BUSY, 0); }
void embd_guard_request_done(embd_guard *g, void *ctx, double now) { set_phase(g, ctx, PH_HEADERS, now); }

size_t embd_guard_sweep(embd_guard *g, double now) {
    size_t cut = 0;
    pthread_mutex_lock(&g->mu);
    for (conn *c = g->head; c; c = c->next) {
        double limit = c->phase == PH_HEADERS ? g->header_timeout : c->phase == PH_BODY ? g->body_timeout : 0;
        if (c->cut || limit <= 0 || now - c->since <= limit) continue;
        shutdown(c->fd, SHUT_RDWR); /* the next read fails and libmicrohttpd closes it */
        c->cut = true;
        cut++;
    }
    pthread_mutex_unlock(&g->mu);
    return cut;
}

size_t embd_guard_connections(embd_guard *g) {
    pthread_mutex_lock(&g->mu);
    size_t n = g->n;
    pthread_mutex_unlock(&g->mu);
    return n;
}
