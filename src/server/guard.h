/* Connection deadlines libmicrohttpd does not have: its timeout only closes a connection that is
 * silent, so a client sending a byte a second holds it forever (slowloris). Every connection is
 * tracked from its NOTIFY_CONNECTION callbacks; a request's headers must be complete within
 * header_timeout of the moment the connection became idle, and its body within body_timeout of
 * its headers. A periodic sweep shuts overdue sockets down, and libmicrohttpd closes them. */
#ifndef EMBD_GUARD_H
#define EMBD_GUARD_H

#include <stddef.h>

typedef struct embd_guard embd_guard;

/* Timeouts in seconds; 0 turns that deadline off. */
embd_guard *embd_guard_new(double header_timeout, double body_timeout);
void embd_guard_free(embd_guard *g);

/* From the notify-connection callback; *ctx is the connection's socket context. */
void embd_guard_opened(embd_guard *g, int fd, void **ctx, double now);
void embd_guard_closed(embd_guard *g, void **ctx);
/* The headers of a request arrived (first access-handler call). */
void embd_guard_headers_done(embd_guard *g, void *ctx, double now);
/* The body is complete: the request is the server's now, no deadline. */
void embd_guard_body_done(embd_guard *g, void *ctx);
/* The response went out: the next request's headers are awaited. */
void embd_guard_request_done(embd_guard *g, void *ctx, double now);
/* Shuts down sockets past their deadline; returns how many. */
size_t embd_guard_sweep(embd_guard *g, double now);
size_t embd_guard_connections(embd_guard *g);

#endif
