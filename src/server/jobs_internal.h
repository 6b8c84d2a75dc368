/* Shared by the job runner (jobs_runner.c) and the /v1/jobs endpoints (api_jobs.c). */
#ifndef EMBD_SERVER_JOBS_INTERNAL_H
#define EMBD_SERVER_JOBS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "queue/spool.h"
#include "server/jobs.h"

struct embd_jobs {
    embd_spool sp;
    embd_sched *sched;
    const embd_model *model;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool kick;       /* a job was submitted: look at the queue now */
    atomic_int stop;
};

/* Wakes the runner (after a submission). */
void embd_jobs_kick(embd_jobs *j);

#endif
