/* aeolus-bench -- load generator for aeolus and other Socket.IO v5 servers.
 *
 * Design
 * ------
 * One process, one libevent loop, many Socket.IO clients over WebSocket
 * (sio.c). A run is one mode:
 *
 *   idle    N clients connect and stay connected; connect time, and the
 *           server's resident memory per client.
 *   echo    one client, request/response round trips ("message" answered by
 *           "message-back", or "message-with-ack" answered by its ack);
 *           messages/s and round-trip percentiles.
 *   fanout  N receivers join a room, one sender emits into it; latency from
 *           each emit to each receipt, deliveries/s, server CPU per delivery.
 *
 * Every run goes through the same phases, driven by callbacks:
 *
 *   CONNECT  clients are opened at most --concurrency at a time, so the
 *            server's listen backlog is never overrun;
 *   MODE     the mode's own work (hold; join, settle and send; echo);
 *   CLOSE    every client closes cleanly (Socket.IO DISCONNECT, WebSocket
 *            close handshake); stragglers are aborted after a grace period.
 *
 * A watchdog ends a phase that waits on the server and makes no progress for
 * --timeout seconds. The loop then returns, the mode prints its summary, and
 * the last line of output is "RESULT key=value ...", for scripts.
 *
 * Times come from the monotonic clock, in microseconds. A receipt is dated
 * by the kernel's receive timestamp when available (see sio.c), so the
 * figures do not include the time this single-threaded client needs to get
 * round to each socket. Latencies go into fixed-memory histograms (hist.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "hist.h"
#include "sio.h"

#define TICK_US 50000            /* watchdog and settle granularity */
#define CLOSE_GRACE_US 3000000   /* clean close allowance */
#define QUIET_US 200000          /* fanout: silence that ends the settle */
#define QUIET_MAX_US 3000000     /* fanout: longest wait for that silence */
#define MAX_PAYLOAD (64u << 20)

/* ----------------------------------------------------------- options */

static struct config {
    const char *host, *path, *nsp, *query, *auth;
    int port, clients, concurrency, pipeline, ack, sender_join, help;
    long count, size, pid;
    double hold, rate, timeout, join_wait;
    const char *rx_clock, *room, *join_event, *join_payload, *send_event,
        *send_template, *recv_event, *ts_key;
} config = {
    .host = "127.0.0.1", .port = 3000, .path = "/socket.io/", .nsp = "/",
    .clients = -1, .concurrency = 200, .pipeline = 1, .count = -1,
    .size = 32, .pid = 0, .hold = 2, .rate = 10, .timeout = 10,
    .join_wait = 1, .rx_clock = "kernel", .room = "bench",
    .join_event = "join", .send_event = "send", .recv_event = "event",
};

enum { OPT_STR, OPT_INT, OPT_LONG, OPT_DOUBLE, OPT_FLAG };

typedef struct option_def {
    const char *name, *alias;
    int type;
    void *ptr;
} option_def;

static const option_def option_table[] = {
    { "-h", "--host", OPT_STR, &config.host },
    { "-p", "--port", OPT_INT, &config.port },
    { "--path", NULL, OPT_STR, &config.path },
    { "--nsp", NULL, OPT_STR, &config.nsp },
    { "--query", NULL, OPT_STR, &config.query },
    { "--auth", NULL, OPT_STR, &config.auth },
    { "--pid", NULL, OPT_LONG, &config.pid },
    { "--timeout", NULL, OPT_DOUBLE, &config.timeout },
    { "--concurrency", NULL, OPT_INT, &config.concurrency },
    { "--rx-clock", NULL, OPT_STR, &config.rx_clock },
    { "-c", "--clients", OPT_INT, &config.clients },
    { "-n", "--count", OPT_LONG, &config.count },
    { "--hold", NULL, OPT_DOUBLE, &config.hold },
    { "--size", NULL, OPT_LONG, &config.size },
    { "--pipeline", NULL, OPT_INT, &config.pipeline },
    { "--ack", NULL, OPT_FLAG, &config.ack },
    { "--rate", NULL, OPT_DOUBLE, &config.rate },
    { "--room", NULL, OPT_STR, &config.room },
    { "--event", "--recv-event", OPT_STR, &config.recv_event },
    { "--join-event", NULL, OPT_STR, &config.join_event },
    { "--join-payload", NULL, OPT_STR, &config.join_payload },
    { "--join-wait", NULL, OPT_DOUBLE, &config.join_wait },
    { "--send-event", NULL, OPT_STR, &config.send_event },
    { "--send-payload-template", NULL, OPT_STR, &config.send_template },
    { "--ts-key", NULL, OPT_STR, &config.ts_key },
    { "--sender-join", NULL, OPT_FLAG, &config.sender_join },
    { "--help", NULL, OPT_FLAG, &config.help },
};

static void usage(FILE *f) {
    fprintf(f,
"Usage: aeolus-bench MODE [options]\n"
"\n"
"Modes:\n"
"  idle    -c N [--hold S]             hold N idle clients; RSS per client\n"
"  echo    [-n N] [--size B] [--pipeline P] [--ack]   round trips\n"
"  fanout  -c N [--rate R] [-n N] [--room R] [--event E]   room fan-out\n"
"\n"
"Connection:\n"
"  -h, --host HOST        server address (127.0.0.1)\n"
"  -p, --port PORT        server port (3000)\n"
"  --path PATH            Engine.IO path (/socket.io/)\n"
"  --nsp NSP              Socket.IO namespace (/)\n"
"  --query 'k=v&...'      appended to the handshake URL\n"
"  --auth JSON            CONNECT auth payload\n"
"  --concurrency N        connects in flight at once (200)\n"
"  --timeout S            give up after S seconds without progress (10)\n"
"  --pid PID              server process: RSS (idle), CPU (echo, fanout)\n"
"  --rx-clock kernel|user date receipts by kernel timestamp or by read (kernel)\n"
"\n"
"idle:   -c N clients (required); --hold S seconds held (2)\n"
"echo:   -n N messages (10000); --size B payload bytes (32);\n"
"        --pipeline P in flight (1); --ack use message-with-ack\n"
"fanout: -c N receivers (required); -n N messages (100);\n"
"        --rate R messages/s, 0 = next after full delivery (10)\n"
"        --room ROOM (bench); --join-event NAME (join);\n"
"        --join-payload JSON (\"ROOM\"); --join-wait S for join acks (1)\n"
"        --send-event NAME (send);\n"
"        --send-payload-template JSON (\"ROOM\",{\"ts\":%%TS%%})\n"
"        --event, --recv-event NAME (event); --ts-key KEY (ts, then content)\n"
"        --sender-join  the sender joins too\n");
}

static int parse_number(const option_def *o, const char *v) {
    char *end;
    errno = 0;
    if (o->type == OPT_DOUBLE) {
        double d = strtod(v, &end);
        if (errno || *end || end == v || d < 0) return -1;
        *(double *)o->ptr = d;
        return 0;
    }
    long l = strtol(v, &end, 10);
    if (errno || *end || end == v || l < 0) return -1;
    if (o->type == OPT_INT) {
        if (l > 1000000000) return -1;
        *(int *)o->ptr = (int)l;
    } else {
        *(long *)o->ptr = l;
    }
    return 0;
}

static const option_def *option_find(const char *arg) {
    size_t n = sizeof(option_table) / sizeof(option_table[0]);
    for (size_t i = 0; i < n; i++) {
        const option_def *o = &option_table[i];
        if (!strcmp(arg, o->name) || (o->alias && !strcmp(arg, o->alias)))
            return o;
    }
    return NULL;
}

static int parse_options(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        const option_def *o = option_find(argv[i]);
        if (!o) {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return -1;
        }
        if (o->type == OPT_FLAG) {
            *(int *)o->ptr = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "option %s needs a value\n", argv[i]);
            return -1;
        }
        const char *v = argv[++i];
        if (o->type == OPT_STR) {
            *(const char **)o->ptr = v;
        } else if (parse_number(o, v) < 0) {
            fprintf(stderr, "bad value for %s: %s\n", argv[i - 1], v);
            return -1;
        }
    }
    return 0;
}

/* Event names are put in frames verbatim: no JSON escaping is done. */
static int event_name_ok(const char *what, const char *name) {
    if (strpbrk(name, "\"\\") == NULL) return 1;
    fprintf(stderr, "%s: event names may not contain '\"' or '\\'\n", what);
    return 0;
}

static int check_options(void) {
    if (config.concurrency < 1 || config.pipeline < 1 || config.timeout <= 0) {
        fprintf(stderr, "--concurrency, --pipeline and --timeout must be > 0\n");
        return -1;
    }
    if (strcmp(config.rx_clock, "kernel") && strcmp(config.rx_clock, "user")) {
        fprintf(stderr, "--rx-clock is kernel or user\n");
        return -1;
    }
    if ((size_t)config.size > MAX_PAYLOAD) {
        fprintf(stderr, "--size is at most %u\n", MAX_PAYLOAD);
        return -1;
    }
    if (!event_name_ok("--join-event", config.join_event) ||
        !event_name_ok("--send-event", config.send_event) ||
        !event_name_ok("--event", config.recv_event))
        return -1;
    return 0;
}

/* ---------------------------------------------------------- /proc */

static int proc_rss_kb(long pid, uint64_t *kb) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = sscanf(line, "VmRSS: %" SCNu64, kb) == 1;
    fclose(f);
    return found ? 0 : -1;
}

/* utime + stime of the process, in microseconds. */
static int proc_cpu_us(long pid, uint64_t *us) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                     &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    *us = (uint64_t)(ut + st) * 1000000 / (uint64_t)(hz > 0 ? hz : 100);
    return 0;
}

/* Raises the soft descriptor limit as far as the hard limit allows. */
static rlim_t raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? (1 << 20) : rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/* ------------------------------------------------------- run state */

enum { CL_NEW, CL_CONNECTING, CL_READY, CL_CLOSING, CL_DONE };
enum { PH_CONNECT, PH_MODE, PH_CLOSE };

typedef struct client {
    sio_conn *conn;
    int index;
    int state;
    int join_pending;
    uint64_t t_start;
} client;

typedef struct mode {
    const char *name;
    int (*init)(void);                    /* returns the client count */
    void (*ready)(client *cl);            /* one client connected */
    void (*connected)(void);              /* every client ready or failed */
    void (*packet)(client *cl, const sio_packet *p);
    void (*dropped)(client *cl);          /* a ready client was closed */
    void (*tick)(uint64_t now);
    void (*stopping)(void);               /* the run ends, before closing */
    int (*report)(void);                  /* prints; returns 0 when all ok */
} mode;

static struct bench {
    const mode *mode;
    struct event_base *base;
    sio_ctx *ctx;
    client *clients;
    int nclients, next, inflight, ready, failed, dropped, closing;
    int phase, watch, interrupted;
    uint64_t t_connect_start, t_connect_end, last_progress, close_deadline;
    uint64_t last_rx;
    hist *handshake;
    hist *latency;
    struct event *tick, *timer, *sigint;
    char error[256];
} bench;

static void bench_error(const char *fmt, ...) {
    va_list ap;
    if (bench.error[0]) return;
    va_start(ap, fmt);
    vsnprintf(bench.error, sizeof(bench.error), fmt, ap);
    va_end(ap);
}

static void progress(void) {
    bench.last_progress = sio_now_us();
}

static double seconds(uint64_t us) {
    return (double)us / 1e6;
}

/* --------------------------------------------------- RESULT line */

static char result_buf[4096];
static size_t result_len;

static void result(const char *fmt, ...) {
    va_list ap;
    if (result_len >= sizeof(result_buf) - 1) return;
    va_start(ap, fmt);
    int n = vsnprintf(result_buf + result_len, sizeof(result_buf) - result_len,
                      fmt, ap);
    va_end(ap);
    if (n > 0) result_len += (size_t)n;
    if (result_len > sizeof(result_buf) - 1) result_len = sizeof(result_buf) - 1;
}

static void print_latency(const char *label, const hist *h) {
    if (hist_count(h) == 0) {
        printf("  %-14s no samples\n", label);
        return;
    }
    printf("  %-14s avg %.0f  min %" PRIu64 "  p50 %" PRIu64 "  p90 %" PRIu64
           "  p99 %" PRIu64 "  p99.9 %" PRIu64 "  max %" PRIu64 " us\n",
           label, hist_mean(h), hist_min(h), hist_percentile(h, 50),
           hist_percentile(h, 90), hist_percentile(h, 99),
           hist_percentile(h, 99.9), hist_max(h));
}

static void result_latency(const char *prefix, const hist *h) {
    result(" %s_avg_us=%.0f %s_p50_us=%" PRIu64 " %s_p90_us=%" PRIu64
           " %s_p99_us=%" PRIu64 " %s_p999_us=%" PRIu64 " %s_max_us=%" PRIu64,
           prefix, hist_mean(h), prefix, hist_percentile(h, 50),
           prefix, hist_percentile(h, 90), prefix, hist_percentile(h, 99),
           prefix, hist_percentile(h, 99.9), prefix, hist_max(h));
}

static void print_connect_summary(void) {
    uint64_t t = bench.t_connect_end - bench.t_connect_start;
    printf("  %-14s %d of %d in %.3f s (%.0f connections/s), %d failed\n",
           "connected", bench.ready, bench.nclients, seconds(t),
           t ? bench.ready / seconds(t) : 0.0, bench.failed);
    print_latency("handshake", bench.handshake);
    result(" clients=%d connected=%d failed=%d connect_ms=%.1f conn_per_s=%.0f",
           bench.nclients, bench.ready, bench.failed, t / 1e3,
           t ? bench.ready / seconds(t) : 0.0);
    result_latency("hs", bench.handshake);
}

static const char *rx_clock_used(void) {
    return sio_ctx_stats(bench.ctx)->kernel_rx ? "kernel" : "user";
}

/* ------------------------------------------------ connect, close */

static void close_all(void) {
    if (bench.phase == PH_CLOSE) return;
    if (bench.phase == PH_CONNECT) bench.t_connect_end = sio_now_us();
    bench.mode->stopping();
    bench.phase = PH_CLOSE;
    bench.close_deadline = sio_now_us() + CLOSE_GRACE_US;
    if (bench.timer) event_del(bench.timer);
    for (int i = 0; i < bench.nclients; i++) {
        client *cl = &bench.clients[i];
        if (cl->state != CL_CONNECTING && cl->state != CL_READY) continue;
        cl->state = CL_CLOSING;
        bench.closing++;
        sio_close(cl->conn);
    }
    if (bench.closing == 0) event_base_loopbreak(bench.base);
}

static void abort_all(void) {
    for (int i = 0; i < bench.nclients; i++)
        if (bench.clients[i].conn) sio_abort(bench.clients[i].conn);
    event_base_loopbreak(bench.base);
}

static void client_failed(client *cl, const char *err) {
    cl->state = CL_DONE;
    bench.failed++;
    bench_error("client %d: %s", cl->index, err);
    progress();
}

static void connect_check_done(void) {
    if (bench.phase != PH_CONNECT || bench.ready + bench.failed < bench.nclients)
        return;
    bench.t_connect_end = sio_now_us();
    bench.phase = PH_MODE;
    bench.mode->connected();
}

static void connect_more(void) {
    while (bench.phase == PH_CONNECT && bench.next < bench.nclients &&
           bench.inflight < config.concurrency) {
        client *cl = &bench.clients[bench.next++];
        cl->t_start = sio_now_us();
        cl->conn = sio_connect(bench.ctx, cl);
        if (!cl->conn) {
            client_failed(cl, strerror(errno));
            continue;
        }
        cl->state = CL_CONNECTING;
        bench.inflight++;
    }
    connect_check_done();
}

static void on_ready(sio_conn *c, void *udata) {
    client *cl = udata;
    (void)c;
    uint64_t now = sio_now_us();
    cl->state = CL_READY;
    bench.inflight--;
    bench.ready++;
    hist_add(bench.handshake, now - cl->t_start);
    progress();
    if (bench.mode->ready) bench.mode->ready(cl);
    connect_more();
}

static void on_packet(sio_conn *c, void *udata, const sio_packet *p) {
    (void)c;
    bench.last_rx = sio_now_us();
    if (bench.phase != PH_CLOSE && bench.mode->packet) bench.mode->packet(udata, p);
}

static void on_closed(sio_conn *c, void *udata, const char *err) {
    client *cl = udata;
    (void)c;
    if (cl->state == CL_CLOSING) {
        cl->state = CL_DONE;
        if (--bench.closing == 0) event_base_loopbreak(bench.base);
    } else if (cl->state == CL_CONNECTING) {
        bench.inflight--;
        client_failed(cl, err ? err : "closed while connecting");
        connect_more();
    } else {
        cl->state = CL_DONE;
        bench.dropped++;
        bench_error("client %d dropped: %s", cl->index, err ? err : "closed");
        if (bench.mode->dropped) bench.mode->dropped(cl);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    uint64_t now = sio_now_us();
    (void)fd, (void)what, (void)arg;
    if (bench.phase == PH_CLOSE) {
        if (now > bench.close_deadline) abort_all();
        return;
    }
    int watched = bench.phase == PH_CONNECT || bench.watch;
    if (watched && now - bench.last_progress > config.timeout * 1e6) {
        bench_error("no progress for %.1f s while %s", config.timeout,
                    bench.phase == PH_CONNECT ? "connecting" : "running");
        close_all();
        return;
    }
    if (bench.phase == PH_MODE && bench.mode->tick) bench.mode->tick(now);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    if (bench.interrupted++) {
        abort_all();
        return;
    }
    bench_error("interrupted");
    close_all();
}

/* Arms the mode's one timer: once after 'us', or every 'us' if persist. */
static void mode_timer(event_callback_fn cb, uint64_t us, int persist) {
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    if (bench.timer) event_free(bench.timer);
    bench.timer = event_new(bench.base, -1, persist ? EV_PERSIST : 0, cb, NULL);
    event_base_update_cache_time(bench.base);   /* count from now, not the loop's start */
    if (bench.timer) event_add(bench.timer, &tv);
}

/* ----------------------------------------------------------- idle */

static struct {
    uint64_t rss_before, rss_after;
    int rss_ok;
    uint64_t pings_before, hold_start, hold_us;
} idle;

static int idle_init(void) {
    if (config.clients < 1) {
        fprintf(stderr, "idle: -c N is required\n");
        return -1;
    }
    return config.clients;
}

static void idle_hold_done(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    close_all();
}

static void idle_stopping(void) {
    if (idle.hold_start) idle.hold_us = sio_now_us() - idle.hold_start;
    if (idle.rss_ok) idle.rss_ok = proc_rss_kb(config.pid, &idle.rss_after) == 0;
}

static void idle_connected(void) {
    if (bench.ready == 0) {
        close_all();
        return;
    }
    idle.pings_before = sio_ctx_stats(bench.ctx)->pings;
    idle.hold_start = sio_now_us();
    mode_timer(idle_hold_done, (uint64_t)(config.hold * 1e6), 0);
}

static int idle_report(void) {
    uint64_t pings = sio_ctx_stats(bench.ctx)->pings - idle.pings_before;
    printf("====== idle: %d clients ======\n", bench.nclients);
    result("mode=idle");
    print_connect_summary();
    uint64_t slowest = sio_ctx_stats(bench.ctx)->ping_delay_max;
    if (!idle.hold_start) return 1;
    printf("  %-14s %.1f s, %d dropped, %" PRIu64 " pings answered"
           " (slowest %.1f ms after receipt)\n", "held", seconds(idle.hold_us),
           bench.dropped, pings, slowest / 1e3);
    result(" hold_s=%.1f dropped=%d pings=%" PRIu64 " ping_delay_max_us=%" PRIu64,
           seconds(idle.hold_us), bench.dropped, pings, slowest);
    if (config.pid && idle.rss_ok && bench.ready > 0) {
        double per = ((double)idle.rss_after - (double)idle.rss_before) / bench.ready;
        printf("  %-14s before %" PRIu64 " KB, after %" PRIu64
               " KB, %.2f KB per client\n", "server RSS", idle.rss_before,
               idle.rss_after, per);
        result(" rss_before_kb=%" PRIu64 " rss_after_kb=%" PRIu64
               " rss_per_client_kb=%.2f", idle.rss_before, idle.rss_after, per);
    } else if (config.pid) {
        printf("  %-14s cannot read /proc/%ld/status\n", "server RSS", config.pid);
    }
    return bench.failed || bench.dropped;
}

/* ----------------------------------------------------------- echo */

typedef struct echo_slot {
    long id;
    uint64_t t_sent;
} echo_slot;

static struct {
    char *payload;          /* "xxxx..." as a JSON string */
    size_t payload_len;
    echo_slot *slots;       /* one per pipeline position, id -1 when free */
    long sent, done;
    uint64_t t_start, t_end, cpu_before, cpu_after;
    int cpu_ok;
} echo;

static int echo_init(void) {
    if (config.count < 0) config.count = 10000;
    echo.payload_len = (size_t)config.size + 2;
    echo.payload = malloc(echo.payload_len);
    echo.slots = malloc(sizeof(echo_slot) * (size_t)config.pipeline);
    if (!echo.payload || !echo.slots) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    memset(echo.payload, 'x', echo.payload_len);
    echo.payload[0] = echo.payload[echo.payload_len - 1] = '"';
    for (int i = 0; i < config.pipeline; i++) echo.slots[i].id = -1;
    return 1;
}

static void echo_stopping(void) {
    if (echo.t_start) echo.t_end = sio_now_us();
    if (echo.cpu_ok) echo.cpu_ok = proc_cpu_us(config.pid, &echo.cpu_after) == 0;
}

/* Sends until the pipeline is full; a slot still waiting for an out of
 * order ack holds its position. */
static void echo_fill(void) {
    sio_conn *c = bench.clients[0].conn;
    while (echo.sent < config.count) {
        echo_slot *s = &echo.slots[echo.sent % config.pipeline];
        if (s->id >= 0) return;
        s->id = echo.sent;
        s->t_sent = sio_now_us();
        int rc = config.ack
            ? sio_emit(c, s->id, "message-with-ack", echo.payload, echo.payload_len)
            : sio_emit(c, -1, "message", echo.payload, echo.payload_len);
        if (rc < 0) return;   /* the failure arrives as 'closed' */
        echo.sent++;
    }
}

static void echo_connected(void) {
    if (bench.ready != 1) {
        close_all();
        return;
    }
    bench.watch = 1;
    echo.cpu_ok = config.pid && proc_cpu_us(config.pid, &echo.cpu_before) == 0;
    echo.t_start = sio_now_us();
    echo_fill();
}

static int payload_matches(const char *args, size_t len) {
    return len == echo.payload_len && memcmp(args, echo.payload, len) == 0;
}

/* Classifies a packet: 1 and *slot set for the reply to a message in
 * flight, 0 for a packet that is no reply (the server's own events), -1 for
 * a reply that matches nothing sent or carries the wrong payload. */
static int echo_match(const sio_packet *p, echo_slot **slot) {
    const char *args;
    size_t len;
    echo_slot *s;
    if (config.ack) {
        if (p->type != SIO_ACK) return 0;
        if (p->id < 0 || p->len < 2 || p->data[0] != '[' || p->data[p->len - 1] != ']')
            return -1;
        s = &echo.slots[p->id % config.pipeline];
        if (s->id != p->id) return -1;
        args = p->data + 1;
        len = p->len - 2;
    } else {
        if (p->type != SIO_EVENT || !sio_event_args(p, "message-back", &args, &len))
            return 0;
        s = &echo.slots[echo.done % config.pipeline];
        if (s->id != echo.done) return -1;
    }
    *slot = s;
    return payload_matches(args, len) ? 1 : -1;
}

static void echo_packet(client *cl, const sio_packet *p) {
    echo_slot *s = NULL;
    int rc = echo_match(p, &s);
    if (rc == 0) return;
    if (rc < 0) {
        bench_error("unexpected reply: %.*s", (int)(p->len > 80 ? 80 : p->len), p->data);
        close_all();
        return;
    }
    uint64_t rx = sio_rx_time(cl->conn);
    hist_add(bench.latency, rx > s->t_sent ? rx - s->t_sent : 0);
    s->id = -1;
    progress();
    if (++echo.done == config.count) close_all();
    else echo_fill();
}

static void echo_dropped(client *cl) {
    (void)cl;
    close_all();
}

static int echo_report(void) {
    uint64_t t = echo.t_end > echo.t_start ? echo.t_end - echo.t_start : 0;
    double rate = t ? echo.done / seconds(t) : 0;
    printf("====== echo: %ld messages of %ld bytes, pipeline %d%s ======\n",
           config.count, config.size, config.pipeline, config.ack ? ", ack" : "");
    printf("  %-14s %ld in %.3f s: %.0f messages/s\n", "round trips",
           echo.done, seconds(t), rate);
    print_latency("latency", bench.latency);
    result("mode=echo ack=%d size=%ld pipeline=%d count=%ld done=%ld"
           " elapsed_ms=%.1f msg_per_s=%.0f", config.ack, config.size,
           config.pipeline, config.count, echo.done, t / 1e3, rate);
    result_latency("rtt", bench.latency);
    if (echo.cpu_ok && echo.done) {
        double per = (double)(echo.cpu_after - echo.cpu_before) / echo.done;
        printf("  %-14s %.2f s, %.2f us per message\n", "server CPU",
               seconds(echo.cpu_after - echo.cpu_before), per);
        result(" cpu_us_per_msg=%.2f", per);
    }
    result(" rx_clock=%s", rx_clock_used());
    return echo.done != config.count;
}

/* --------------------------------------------------------- fanout */

enum { FO_JOIN, FO_RUN, FO_DONE };

static struct {
    int phase;
    char *join_payload, *send_template, *send_buf;
    size_t send_cap;
    int receivers, joins_sent, joins_acked, joins_refused;
    uint64_t last_join, joined_at;
    long sent;
    uint64_t delivered, unmatched, expected;
    uint64_t t_first_send, t_last_delivery, cpu_before, cpu_after;
    int cpu_ok;
    char refusal[128];
} fo;

static char *fanout_default(const char *fmt) {
    size_t n = strlen(fmt) + strlen(config.room) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, config.room);
    return s;
}

static int fanout_init(void) {
    if (config.clients < 1) {
        fprintf(stderr, "fanout: -c N is required\n");
        return -1;
    }
    if (config.count < 0) config.count = 100;
    fo.join_payload = config.join_payload ? strdup(config.join_payload)
                                          : fanout_default("\"%s\"");
    fo.send_template = config.send_template ? strdup(config.send_template)
                                            : fanout_default("\"%s\",{\"ts\":%%TS%%}");
    if (!fo.join_payload || !fo.send_template) return -1;
    if (!strstr(fo.send_template, "%TS%")) {
        fprintf(stderr, "fanout: the send payload template needs %%TS%%\n");
        return -1;
    }
    /* each 4-byte "%TS%" becomes at most 20 digits: 5 times its length */
    fo.send_cap = strlen(fo.send_template) * 5 + 32;
    fo.send_buf = malloc(fo.send_cap);
    fo.receivers = config.clients;
    return fo.send_buf ? config.clients + 1 : -1;
}

static int is_sender(const client *cl) {
    return cl->index == 0;
}

static void fanout_ready(client *cl) {
    if (!config.join_event[0] || (is_sender(cl) && !config.sender_join)) return;
    cl->join_pending = 1;
    fo.joins_sent++;
    fo.last_join = sio_now_us();
    sio_emit(cl->conn, 1, config.join_event, fo.join_payload,
             strlen(fo.join_payload));
}

static void fanout_connected(void) {
    if (bench.failed) {
        close_all();
        return;
    }
    fo.phase = FO_JOIN;
}

/* Writes the template with every %TS% replaced by 'ts'. */
static size_t fanout_format(uint64_t ts) {
    const char *t = fo.send_template;
    size_t n = 0;
    while (*t) {
        if (strncmp(t, "%TS%", 4) == 0) {
            n += (size_t)snprintf(fo.send_buf + n, fo.send_cap - n, "%" PRIu64, ts);
            t += 4;
        } else {
            fo.send_buf[n++] = *t++;
        }
    }
    return n;
}

static void fanout_send(void) {
    uint64_t now = sio_now_us();
    size_t len = fanout_format(now);
    if (fo.sent == 0) fo.t_first_send = now;
    fo.sent++;
    progress();
    if (sio_emit(bench.clients[0].conn, -1, config.send_event, fo.send_buf, len) < 0)
        bench_error("sender cannot send");
}

static void fanout_stopping(void) {
    if (fo.cpu_ok) fo.cpu_ok = proc_cpu_us(config.pid, &fo.cpu_after) == 0;
    fo.phase = FO_DONE;
}

/* Open loop: sends every message that is due by now at --rate. */
static void fanout_rate_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    uint64_t elapsed = sio_now_us() - fo.t_first_send;
    long due = 1 + (long)(seconds(elapsed) * config.rate);
    if (due > config.count) due = config.count;
    while (fo.sent < due) fanout_send();
    if (fo.sent == config.count && bench.timer) event_del(bench.timer);
}

static void fanout_start(void) {
    fo.phase = FO_RUN;
    fo.expected = (uint64_t)config.count * (uint64_t)fo.receivers;
    fo.cpu_ok = config.pid && proc_cpu_us(config.pid, &fo.cpu_before) == 0;
    bench.watch = 1;
    fanout_send();
    if (config.rate > 0 && config.count > 1) {
        double us = 1e6 / config.rate;
        mode_timer(fanout_rate_tick, us < 1000 ? 1000 : (uint64_t)us, 1);
    }
}

/* Join phase: waits for the join acks (or --join-wait after the last join),
 * then for the traffic the joins caused to die down. */
static void fanout_tick(uint64_t now) {
    if (fo.phase != FO_JOIN) return;
    int acked = fo.joins_acked + fo.joins_refused == fo.joins_sent;
    if (!fo.joined_at) {
        if (!acked && now - fo.last_join < config.join_wait * 1e6) return;
        fo.joined_at = now;
    }
    if (now - bench.last_rx >= QUIET_US || now - fo.joined_at >= QUIET_MAX_US)
        fanout_start();
}

/* Finds the send timestamp: the digits after "KEY": (quoted or not), for
 * KEY = --ts-key, or else "ts" and then "content". */
static int fanout_timestamp(const char *s, size_t len, uint64_t *ts) {
    const char *keys[2] = { config.ts_key ? config.ts_key : "ts",
                            config.ts_key ? NULL : "content" };
    for (int k = 0; k < 2 && keys[k]; k++) {
        char pat[80];
        int n = snprintf(pat, sizeof(pat), "\"%s\":", keys[k]);
        const char *p = memmem(s, len, pat, (size_t)n), *e = s + len;
        if (!p) continue;
        for (p += n; p < e && (*p == ' ' || *p == '"'); p++) {}
        uint64_t v = 0;
        int digits = 0;
        for (; p < e && *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
            v = v * 10 + (uint64_t)(*p - '0');
        if (digits) {
            *ts = v;
            return 1;
        }
    }
    return 0;
}

static void fanout_join_ack(client *cl, const sio_packet *p) {
    cl->join_pending = 0;
    progress();
    if (!memmem(p->data, p->len, "\"ok\":false", 10)) {
        fo.joins_acked++;
        return;
    }
    fo.joins_refused++;
    if (!fo.refusal[0])
        snprintf(fo.refusal, sizeof(fo.refusal), "%.*s",
                 (int)(p->len > 100 ? 100 : p->len), p->data);
}

static void fanout_delivery(client *cl, const sio_packet *p) {
    const char *args;
    size_t len;
    uint64_t ts;
    if (!sio_event_args(p, config.recv_event, &args, &len)) return;
    if (!fanout_timestamp(args, len, &ts)) {
        fo.unmatched++;
        return;
    }
    uint64_t rx = sio_rx_time(cl->conn);
    hist_add(bench.latency, rx > ts ? rx - ts : 0);
    fo.delivered++;
    fo.t_last_delivery = rx;
    progress();
    if (fo.sent == config.count && fo.delivered >= fo.expected)
        close_all();
    else if (config.rate == 0 && fo.delivered == (uint64_t)fo.sent * fo.receivers)
        fanout_send();
}

static void fanout_packet(client *cl, const sio_packet *p) {
    if (p->type == SIO_ACK && p->id == 1 && cl->join_pending)
        fanout_join_ack(cl, p);
    else if (p->type == SIO_EVENT && !is_sender(cl) && fo.phase == FO_RUN)
        fanout_delivery(cl, p);
}

static void fanout_dropped(client *cl) {
    if (is_sender(cl)) close_all();
}

static int fanout_report(void) {
    uint64_t t = fo.t_last_delivery > fo.t_first_send
                     ? fo.t_last_delivery - fo.t_first_send : 0;
    double rate = t ? fo.delivered / seconds(t) : 0;
    uint64_t lost = fo.expected > fo.delivered ? fo.expected - fo.delivered : 0;
    if (config.rate > 0)
        printf("====== fanout: %d receivers, %ld messages at %g/s ======\n",
               config.clients, config.count, config.rate);
    else
        printf("====== fanout: %d receivers, %ld messages, each after the last"
               " was delivered ======\n", config.clients, config.count);
    result("mode=fanout");
    print_connect_summary();
    printf("  %-14s %d of %d acked, %d refused%s%s\n", "joined", fo.joins_acked,
           fo.joins_sent, fo.joins_refused, fo.refusal[0] ? ": " : "", fo.refusal);
    printf("  %-14s %ld messages, %" PRIu64 " of %" PRIu64 " deliveries (%" PRIu64
           " lost, %" PRIu64 " without timestamp) in %.3f s: %.0f deliveries/s\n",
           "delivered", fo.sent, fo.delivered, fo.expected, lost, fo.unmatched,
           seconds(t), rate);
    print_latency("latency", bench.latency);
    result(" rate=%g messages=%ld joins_acked=%d joins_refused=%d delivered=%" PRIu64
           " expected=%" PRIu64 " lost=%" PRIu64 " unmatched=%" PRIu64
           " elapsed_ms=%.1f deliveries_per_s=%.0f", config.rate, fo.sent,
           fo.joins_acked, fo.joins_refused, fo.delivered, fo.expected, lost,
           fo.unmatched, t / 1e3, rate);
    result_latency("lat", bench.latency);
    if (fo.cpu_ok && fo.delivered) {
        double per = (double)(fo.cpu_after - fo.cpu_before) / fo.delivered;
        printf("  %-14s %.2f s, %.2f us per delivery\n", "server CPU",
               seconds(fo.cpu_after - fo.cpu_before), per);
        result(" cpu_us_per_delivery=%.3f", per);
    }
    result(" rx_clock=%s", rx_clock_used());
    return lost || bench.failed || bench.dropped || fo.joins_refused;
}

/* --------------------------------------------------------- main */

static const mode modes[] = {
    { "idle", idle_init, NULL, idle_connected, NULL, NULL, NULL,
      idle_stopping, idle_report },
    { "echo", echo_init, NULL, echo_connected, echo_packet, echo_dropped, NULL,
      echo_stopping, echo_report },
    { "fanout", fanout_init, fanout_ready, fanout_connected, fanout_packet,
      fanout_dropped, fanout_tick, fanout_stopping, fanout_report },
};

static const mode *mode_find(const char *name) {
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(name, modes[i].name)) return &modes[i];
    return NULL;
}

static int bench_setup(void) {
    static const sio_callbacks cb = { on_ready, on_packet, on_closed };
    sio_options o = {
        .host = config.host, .port = config.port, .path = config.path,
        .nsp = config.nsp, .query = config.query, .auth = config.auth,
        .kernel_rx_time = !strcmp(config.rx_clock, "kernel"),
        .max_message = MAX_PAYLOAD + 1024,
    };
    char err[256];
    struct timeval tick = { 0, TICK_US };
    bench.base = event_base_new();
    if (!bench.base) return -1;
    bench.ctx = sio_ctx_new(bench.base, &o, &cb, err, sizeof(err));
    if (!bench.ctx) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    bench.clients = calloc((size_t)bench.nclients, sizeof(client));
    bench.handshake = hist_new();
    bench.latency = hist_new();
    bench.tick = event_new(bench.base, -1, EV_PERSIST, on_tick, NULL);
    bench.sigint = evsignal_new(bench.base, SIGINT, on_sigint, NULL);
    if (!bench.clients || !bench.handshake || !bench.latency || !bench.tick ||
        !bench.sigint)
        return -1;
    for (int i = 0; i < bench.nclients; i++) bench.clients[i].index = i;
    event_add(bench.tick, &tick);
    event_add(bench.sigint, NULL);
    return 0;
}

static void bench_cleanup(void) {
    for (int i = 0; i < bench.nclients && bench.clients; i++)
        sio_conn_free(bench.clients[i].conn);
    free(bench.clients);
    if (bench.tick) event_free(bench.tick);
    if (bench.timer) event_free(bench.timer);
    if (bench.sigint) event_free(bench.sigint);
    hist_free(bench.handshake);
    hist_free(bench.latency);
    sio_ctx_free(bench.ctx);
    if (bench.base) event_base_free(bench.base);
    free(echo.payload);
    free(echo.slots);
    free(fo.join_payload);
    free(fo.send_template);
    free(fo.send_buf);
}

static int bench_run(void) {
    rlim_t nofile = raise_nofile();
    if (nofile && (rlim_t)bench.nclients + 16 > nofile)
        fprintf(stderr, "warning: %d clients but only %lu file descriptors\n",
                bench.nclients, (unsigned long)nofile);
    if (bench_setup() < 0) {
        fprintf(stderr, "setup failed\n");
        return 2;
    }
    bench.t_connect_start = sio_now_us();
    progress();
    connect_more();
    event_base_dispatch(bench.base);
    int failed = bench.mode->report();
    if (bench.error[0]) printf("  %-14s %s\n", "error", bench.error);
    printf("RESULT %s ok=%d\n", result_buf, !failed && !bench.error[0]);
    return failed || bench.error[0] ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    bench.mode = mode_find(argv[1]);
    if (!bench.mode) {
        fprintf(stderr, "unknown mode '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    if (parse_options(argc, argv) < 0 || check_options() < 0) return 2;
    if (config.help) {
        usage(stdout);
        return 0;
    }
    if (config.pid && !strcmp(bench.mode->name, "idle"))
        idle.rss_ok = proc_rss_kb(config.pid, &idle.rss_before) == 0;
    signal(SIGPIPE, SIG_IGN);
    bench.nclients = bench.mode->init();
    int rc = bench.nclients > 0 ? bench_run() : 2;
    bench_cleanup();
    return rc;
}
