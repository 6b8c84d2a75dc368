/* Per-caller rate limits: a token bucket for requests per second and one for input tokens per
 * minute, keyed by the authenticated name (so they survive a keys-file reload). */
#ifndef EMBD_RATELIMIT_H
#define EMBD_RATELIMIT_H

#include <stddef.h>

/* rate units per second, at most burst saved up; starts full. */
typedef struct {
    double rate, burst, level, t;
} embd_bucket;

void embd_bucket_init(embd_bucket *b, double rate, double burst, double now);
/* Takes n units: 0 when granted, else the seconds until it would be (nothing taken). A request
 * larger than burst is granted once the bucket is full and leaves it in debt, so it is slow,
 * not impossible. */
double embd_bucket_take(embd_bucket *b, double n, double now);

typedef struct embd_ratelimit embd_ratelimit;

embd_ratelimit *embd_ratelimit_new(void);
void embd_ratelimit_free(embd_ratelimit *rl);
/* One request by who at rps requests/s (<= 0: unlimited). 0 or seconds to wait (Retry-After). */
double embd_ratelimit_request(embd_ratelimit *rl, const char *who, double rps, double now);
/* n input tokens by who at tpm tokens/min (<= 0: unlimited). 0 or seconds to wait. */
double embd_ratelimit_tokens(embd_ratelimit *rl, const char *who, double tpm, double n, double now);

#endif
