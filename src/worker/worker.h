/* The inference worker process: `embd __worker --fd N --model M.gguf ...`, started by the
 * supervisor (src/worker/supervisor.h), never by hand. It loads the model (mmapped: the pages are
 * shared with the server and the other workers), says HELLO and then answers BATCH frames with
 * RESULT frames while a second thread sends HEARTBEAT frames. It exits when the socket closes, on
 * SHUTDOWN, or when the server dies (PR_SET_PDEATHSIG).
 *
 * Test-only fault injection, read from the environment at start (never set in production):
 *   EMBD_TEST_CRASH_ON=ID,ID,...  abort() on an item containing this token id sequence
 *   EMBD_TEST_HANG_ON=ID,ID,...   stop (SIGSTOP) on such an item: a hung worker */
#ifndef EMBD_WORKER_H
#define EMBD_WORKER_H

int embd_worker_main(int argc, char **argv);

#endif
