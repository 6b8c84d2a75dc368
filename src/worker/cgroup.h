/* What the kernel's memory controller says about this process's cgroup (v2, else v1). */
#ifndef EMBD_CGROUP_H
#define EMBD_CGROUP_H

#include <stddef.h>

/* The cgroup's memory limit in bytes; 0 when there is none or it cannot be read. */
size_t embd_cgroup_memory_limit(void);
/* OOM kills counted in the cgroup so far (memory.events oom_kill, v1 memory.oom_control);
 * -1 when unknown. A rise across a worker's SIGKILL death means the kernel killed it for memory. */
long long embd_cgroup_oom_kills(void);

#endif
