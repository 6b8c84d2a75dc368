/* Small OS helpers shared by the CLI, engine and server. */
#ifndef EMBD_SYS_H
#define EMBD_SYS_H

#include <stddef.h>
#include <stdint.h>

double embd_now(void);              /* monotonic seconds */
size_t embd_peak_rss_bytes(void);   /* VmHWM of this process, 0 if unknown */
size_t embd_rss_bytes(void);        /* VmRSS of this process, 0 if unknown */
int embd_cpu_count(void);           /* CPUs this process may run on (affinity, cgroup quota) */
/* The whole file, NUL-terminated (*len bytes before the NUL), if it has at most max bytes; else
 * NULL with err ("cannot open PATH: why", "cannot read PATH: out of memory|read error|file too
 * large"; err may be NULL). max < SIZE_MAX. */
char *embd_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* Jiffies the machine's CPUs spent busy and in all since boot (/proc/stat); -1 if unreadable. */
int embd_cpu_times(unsigned long long *busy, unsigned long long *total);

/* snprintf into err (if non-NULL) and return -1: keeps error paths one line long. */
int embd_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
