/*
 * knode pause: the process that holds a pod's namespaces, like Kubernetes'
 * pause. It blocks until SIGTERM or SIGINT (then exits 0) and, as PID 1 of a
 * pod's PID namespace, reaps every child that is re-parented to it.
 *
 * Built static (gcc -static -O2) so that the image needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "knode-pause 3.9"

static volatile sig_atomic_t stop_signal = 0;

static void say(const char *msg) {
  ssize_t unused = write(STDERR_FILENO, msg, strlen(msg));
  (void)unused;
}

static void on_stop(int signo) { stop_signal = signo; }

/* Nothing to do here: the SIGCHLD only wakes sigsuspend(); reaping is done in the loop. */
static void on_child(int signo) { (void)signo; }

static void reap(void) {
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0) {
      ssize_t unused = write(STDOUT_FILENO, VERSION "\n", sizeof(VERSION));
      (void)unused;
      return 0;
    }
  }
  if (getpid() != 1) say("Warning: pause should be the first process\n");

  /* Block the signals we handle, then wait for them atomically in sigsuspend(). */
  sigset_t handled, waitmask;
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &handled, &waitmask) != 0) return 1;
  sigdelset(&waitmask, SIGTERM);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGCHLD);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop;
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) return 2;
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &sa, NULL) != 0) return 3;

  for (;;) {
    reap();
    if (stop_signal != 0) {
      say(stop_signal == SIGTERM ? "Shutting down, got signal: Terminated\n" : "Shutting down, got signal: Interrupt\n");
      return 0;
    }
    sigsuspend(&waitmask);
  }
}
