/* workers.c -- see workers.h.
 *
 * The parent has no event loop. It blocks the signals it acts on and takes
 * them with sigtimedwait(): a signal, a worker's death (SIGCHLD) and the
 * time of the next restart or of the shutdown deadline are all waited for in
 * one call, and nothing runs in a signal handler. A child gets the original
 * mask and dispositions back before it runs.
 *
 * Each slot restarts its worker when it dies, at once if it had run for
 * RAPID_MS or longer. A worker that dies sooner is restarted after a delay
 * of 1 s, doubled at each such death up to 30 s: a worker that cannot start
 * does not make the parent fork in a loop.
 *
 * SIGTERM and SIGINT start the shutdown: SIGTERM to every worker (a graceful
 * stop, see aeolusd.c), then SIGKILL to those left after the shutdown
 * timeout and one more second. Another SIGTERM or SIGINT is forwarded as
 * SIGTERM again, which stops the workers at once (their second signal).
 * SIGHUP is forwarded as it is.
 *
 * Workers ignore SIGINT: Ctrl-C at a terminal signals the whole process
 * group, and a worker must get one SIGTERM from the parent, not the
 * terminal's signal followed by the parent's (a second signal). For the
 * same reason a service manager should signal only the parent (systemd:
 * KillMode=mixed). On Linux a worker gets SIGTERM when the parent dies, so
 * that no orphan keeps serving on the port after a SIGKILL of the parent. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "log.h"
#include "util.h"
#include "workers.h"

#define RAPID_MS 1000            /* a worker that dies sooner is restarted later */
#define FIRST_DELAY_MS 1000
#define MAX_DELAY_MS 30000

struct slot {
	pid_t pid;                   /* 0: not running */
	uint64_t started;            /* mono_ms() at the fork */
	uint64_t restart_at;         /* with pid 0: when to fork again */
	unsigned delay_ms;           /* the last back-off, 0 after a worker that lasted */
};

static struct {
	struct slot *slots;
	int n;
	int (*run)(void *arg);
	void *arg;
	sigset_t old_mask;           /* the mask before the parent blocked its signals */
	pid_t parent;
	unsigned grace_ms;           /* from SIGTERM to SIGKILL */
	int stopping;
	uint64_t deadline;           /* stopping: SIGKILL for the workers left */
	int in_child;
} W;

int workers_in_child(void)
{
	return W.in_child;
}

/* Only there so that SIGCHLD is not discarded: it is taken by sigtimedwait. */
static void on_sigchld(int sig)
{
	(void)sig;
}

/* In the new child, before run(): the process as a worker expects it. */
static void child_setup(void)
{
	W.in_child = 1;
	signal(SIGCHLD, SIG_DFL);
	signal(SIGINT, SIG_IGN);
	/* Until the worker's loop takes SIGHUP, one forwarded must not end it. */
	signal(SIGHUP, SIG_IGN);
#ifdef __linux__
	/* The parent may have died before this line: then no signal would come. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != W.parent)
		_exit(1);
#endif
	sigprocmask(SIG_SETMASK, &W.old_mask, NULL);
}

/* The next delay of a slot whose worker did not last. */
static void back_off(struct slot *s)
{
	if (!s->delay_ms)
		s->delay_ms = FIRST_DELAY_MS;
	else
		s->delay_ms = s->delay_ms * 2 > MAX_DELAY_MS ? MAX_DELAY_MS : s->delay_ms * 2;
}

static void spawn(struct slot *s)
{
	fflush(NULL);                /* nothing buffered is written twice */
	pid_t pid = fork();
	int e = errno;
	if (pid == 0) {
		child_setup();
		exit(W.run(W.arg));
	}
	s->started = mono_ms();
	if (pid < 0) {
		back_off(s);
		s->restart_at = s->started + s->delay_ms;
		log_err("cannot fork a worker: %s; trying again in %us", strerror(e),
		        s->delay_ms / 1000);
		return;
	}
	s->pid = pid;
	log_debug("worker %d started", (int)pid);
}

/* Worker pid, in slot s, is gone: one log line, and when to start the next. */
static void on_exit_status(struct slot *s, pid_t pid, int status)
{
	uint64_t now = mono_ms(), lived = now - s->started;
	char how[96], when[32] = "";

	s->pid = 0;
	if (WIFSIGNALED(status))
		snprintf(how, sizeof how, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
	if (W.stopping) {
		/* SIGTERM ends a worker that was still starting: expected. */
		if (WIFSIGNALED(status) ? WTERMSIG(status) != SIGTERM : WEXITSTATUS(status) != 0)
			log_warn("worker %d %s while stopping", (int)pid, how);
		return;
	}
	if (lived >= RAPID_MS)
		s->delay_ms = 0;
	else
		back_off(s);
	s->restart_at = now + s->delay_ms;
	if (s->delay_ms)
		snprintf(when, sizeof when, " in %us", s->delay_ms / 1000);
	log_warn("worker %d %s after %llums; restarting it%s", (int)pid, how,
	         (unsigned long long)lived, when);
}

static struct slot *slot_of(pid_t pid)
{
	for (int i = 0; i < W.n; i++)
		if (W.slots[i].pid == pid)
			return &W.slots[i];
	return NULL;
}

/* Collects every worker that ended. Returns how many are still running. */
static int reap(void)
{
	int status, running = 0;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct slot *s = slot_of(pid);
		if (s)
			on_exit_status(s, pid, status);
	}
	for (int i = 0; i < W.n; i++)
		running += W.slots[i].pid != 0;
	return running;
}

static void signal_all(int sig)
{
	for (int i = 0; i < W.n; i++)
		if (W.slots[i].pid)
			kill(W.slots[i].pid, sig);
}

/* Forks the workers due by now. Returns when the next one is due
 * (UINT64_MAX: none). */
static uint64_t start_due(void)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < W.n; i++) {
		struct slot *s = &W.slots[i];
		if (!s->pid && s->restart_at <= mono_ms())
			spawn(s);
		if (!s->pid && s->restart_at < next)
			next = s->restart_at;
	}
	return next;
}

/* Waits for one of the blocked signals until the monotonic time until.
 * Returns the signal, or 0 at the time. */
static int wait_signal(const sigset_t *set, uint64_t until)
{
	uint64_t now = mono_ms();
	uint64_t ms = until <= now ? 0 : until - now;
	if (ms > 3600000)
		ms = 3600000;            /* nothing due: wake up now and then anyway */
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
	int sig = sigtimedwait(set, NULL, &ts);
	return sig < 0 ? 0 : sig;
}

/* After the deadline: SIGKILL for the workers left, and wait for them. */
static void kill_left(void)
{
	for (int i = 0; i < W.n; i++) {
		struct slot *s = &W.slots[i];
		if (!s->pid)
			continue;
		log_warn("worker %d still running after %ums: killing it", (int)s->pid, W.grace_ms);
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
		s->pid = 0;
	}
}

/* Blocks the signals the loop takes; SIGCHLD gets a handler that does
 * nothing, so that it is kept pending rather than discarded. */
static int block_signals(sigset_t *set)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NOCLDSTOP;
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGCHLD);
	if (sigaction(SIGCHLD, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, set, &W.old_mask) < 0) {
		log_err("workers: cannot set up signals: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The parent's answer to a signal taken by the loop. */
static void on_signal(int sig)
{
	if (sig == SIGHUP) {
		signal_all(SIGHUP);
		return;
	}
	if (sig != SIGTERM && sig != SIGINT)
		return;              /* SIGCHLD, or the time: the loop looks */
	if (W.stopping) {
		log_warn("second signal: stopping the workers now");
	} else {
		log_info("%s: stopping the workers (at most %ums)",
		         sig == SIGTERM ? "SIGTERM" : "SIGINT", W.grace_ms);
		W.stopping = 1;
		W.deadline = mono_ms() + W.grace_ms;
	}
	signal_all(SIGTERM);
}

int workers_supervise(int n, unsigned shutdown_timeout_ms, int (*run)(void *arg), void *arg)
{
	sigset_t set;

	W.slots = calloc((size_t)n, sizeof *W.slots);
	if (!W.slots || block_signals(&set) < 0) {
		if (!W.slots)
			log_err("workers: out of memory");
		free(W.slots);
		return 1;
	}
	W.n = n;
	W.run = run;
	W.arg = arg;
	W.parent = getpid();
	/* Each worker stops within the shutdown timeout by itself: one more
	 * second before it is killed. */
	W.grace_ms = shutdown_timeout_ms + 1000;
	log_info("starting %d workers", n);
	for (;;) {
		int running = reap();
		if (W.stopping && !running)
			break;
		if (W.stopping && mono_ms() >= W.deadline) {
			kill_left();
			break;
		}
		on_signal(wait_signal(&set, W.stopping ? W.deadline : start_due()));
	}
	/* The signals stay blocked: a late one must not end the process
	 * before the caller has cleaned up (the pid file). */
	free(W.slots);
	W.slots = NULL;
	W.n = 0;
	return 0;
}
