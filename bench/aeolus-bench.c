/* aeolus-bench -- load generator for aeolus and other Socket.IO v5 servers.
 *
 * Design
 * ------
 * One process, one libevent loop, many Socket.IO clients over WebSocket or
 * HTTP long-polling (sio.c). A run is one mode:
 *
 *   idle    N clients connect and stay connected; connect time, and the
 *           server's resident memory per client.
 *   echo    one client, request/response round trips ("message" answered by
 *           "message-back", or "message-with-ack" answered by its ack);
 *           messages/s and round-trip percentiles.
 *   fanout  N receivers join a room, one sender emits into it; latency from
 *           each emit to each receipt, deliveries/s, server CPU per delivery.
 *   slow    fanout with one more receiver that stops reading once the
 *           sending starts: the server's RSS over time, and whether and when
 *           the server cut that reader off.
 *
 * Several servers: --port takes a list of ports (instances of one cluster).
 * The clients are spread over them round robin, the sender of fanout and
 * slow goes to the first (or --sender-port), and the deliveries are counted
 * per port. --pid takes a list too: RSS and CPU time are summed over the
 * processes. --redis samples the Redis server's used_memory and DBSIZE
 * before the run and once every client is connected (and again after the
 * close), for the Redis memory per session.
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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "hist.h"
#include "sio.h"

#define TICK_US 50000            /* watchdog and settle granularity */
#define CLOSE_GRACE_US 3000000   /* clean close allowance */
#define QUIET_US 200000          /* fanout: silence that ends the settle */
#define MAX_PAYLOAD (64u << 20)
#define MAX_PORTS 16
#define MAX_PIDS 16

/* ----------------------------------------------------------- options */

/* Numbers left at -1 get the mode's default (see the *_init functions). */
static struct config {
    const char *host, *path, *nsp, *query, *auth, *ports, *pids, *redis,
        *transport;
    int clients, concurrency, pipeline, ack, sender_join, help, sender_port,
        redis_port, rcvbuf;
    long count, size;
    double hold, rate, timeout, join_wait, interval, redis_wait, settle;
    const char *rx_clock, *room, *join_event, *join_payload, *send_event,
        *send_template, *recv_event, *ts_key;
} config = {
    .host = "127.0.0.1", .ports = "3000", .path = "/socket.io/", .nsp = "/",
    .clients = -1, .concurrency = 200, .pipeline = 1, .count = -1,
    .size = -1, .hold = -1, .rate = -1, .timeout = 10, .interval = 1,
    .redis_wait = 1, .settle = 3, .transport = "websocket",
    .join_wait = 1, .rx_clock = "kernel", .room = "bench",
    .join_event = "join", .send_event = "send", .recv_event = "event",
};

/* The lists of --port and --pid, parsed. */
static int ports[MAX_PORTS], nports;
static long pids[MAX_PIDS];
static int npids;

enum { OPT_STR, OPT_INT, OPT_LONG, OPT_DOUBLE, OPT_FLAG };

typedef struct option_def {
    const char *name, *alias;
    int type;
    void *ptr;
} option_def;

static const option_def option_table[] = {
    { "-h", "--host", OPT_STR, &config.host },
    { "-p", "--port", OPT_STR, &config.ports },
    { "--ports", NULL, OPT_STR, &config.ports },
    { "--sender-port", NULL, OPT_INT, &config.sender_port },
    { "--transport", NULL, OPT_STR, &config.transport },
    { "--redis", "--redis-url", OPT_STR, &config.redis },
    { "--redis-port", NULL, OPT_INT, &config.redis_port },
    { "--redis-wait", NULL, OPT_DOUBLE, &config.redis_wait },
    { "--interval", NULL, OPT_DOUBLE, &config.interval },
    { "--rcvbuf", NULL, OPT_INT, &config.rcvbuf },
    { "--path", NULL, OPT_STR, &config.path },
    { "--nsp", NULL, OPT_STR, &config.nsp },
    { "--query", NULL, OPT_STR, &config.query },
    { "--auth", NULL, OPT_STR, &config.auth },
    { "--pid", "--pids", OPT_STR, &config.pids },
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
    { "--settle", NULL, OPT_DOUBLE, &config.settle },
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
"  slow    [-c N] [-n N] [--size B] [--rcvbuf B]   a reader that stops\n"
"          reading: server RSS over time, and when it is cut off\n"
"\n"
"Connection:\n"
"  -h, --host HOST        server address (127.0.0.1)\n"
"  -p, --port, --ports P[,P...]  server port(s) (3000); clients are spread\n"
"                         over them round robin\n"
"  --sender-port PORT     the port of the sender (fanout, slow; first port)\n"
"  --transport websocket|polling   Engine.IO transport (websocket)\n"
"  --path PATH            Engine.IO path (/socket.io/)\n"
"  --nsp NSP              Socket.IO namespace (/)\n"
"  --query 'k=v&...'      appended to the handshake URL\n"
"  --auth JSON            CONNECT auth payload\n"
"  --concurrency N        connects in flight at once (200)\n"
"  --timeout S            give up after S seconds without progress (10)\n"
"  --pid PID[,PID...]     server process(es): RSS (idle, slow), CPU (echo,\n"
"                         fanout, slow), summed\n"
"  --redis URL            redis://[[user]:pass@]host[:port][/db] or host:port:\n"
"                         used_memory and DBSIZE before and after connecting\n"
"  --redis-port PORT      the same as --redis 127.0.0.1:PORT\n"
"  --redis-wait S         sample Redis again S s after the close (1)\n"
"  --rx-clock kernel|user date receipts by kernel timestamp or by read (kernel)\n"
"\n"
"idle:   -c N clients (required); --hold S seconds held (2)\n"
"echo:   -n N messages (10000); --size B payload bytes (32);\n"
"        --pipeline P in flight (1); --ack use message-with-ack\n"
"fanout: -c N receivers (required); -n N messages (100);\n"
"        --rate R messages/s, 0 = next after full delivery (10);\n"
"        --pipeline P messages in flight with --rate 0 (1);\n"
"        --size B bytes for each %%PAD%% in the template (32)\n"
"        --room ROOM (bench); --join-event NAME (join);\n"
"        --join-payload JSON (\"ROOM\"); --join-wait S for join acks (1);\n"
"        --settle S longest wait for the joins' traffic to stop (3)\n"
"        --send-event NAME (send);\n"
"        --send-payload-template JSON (\"ROOM\",{\"ts\":%%TS%%})\n"
"        --event, --recv-event NAME (event); --ts-key KEY (ts, then content)\n"
"        --sender-join  the sender joins too\n"
"slow:   the fanout options, and: -c N readers that keep up (1);\n"
"        -n N messages (1000) of --size B bytes of padding (1024), at\n"
"        --rate R (0: --pipeline P ahead of the readers); one more reader\n"
"        joins and stops reading when the sending starts; --rcvbuf B its\n"
"        socket receive buffer (system default); --interval S between RSS\n"
"        samples (1); --hold S to watch after the last delivery (3)\n");
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

/* Parses "N[,N...]" into out[]; returns the count, or -1. */
static int parse_list(const char *what, const char *s, long *out, int max,
                      long lo, long hi) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < lo || v > hi || (*end && *end != ',') ||
            n == max) {
            fprintf(stderr, "%s: a list of at most %d numbers from %ld to %ld"
                    " separated by commas\n", what, max, lo, hi);
            return -1;
        }
        out[n++] = v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static int redis_parse(const char *url);

static int check_options(void) {
    long l[MAX_PORTS];
    if (config.concurrency < 1 || config.pipeline < 1 || config.timeout <= 0) {
        fprintf(stderr, "--concurrency, --pipeline and --timeout must be > 0\n");
        return -1;
    }
    if ((nports = parse_list("--port", config.ports, l, MAX_PORTS, 1, 65535)) < 1)
        return -1;
    for (int i = 0; i < nports; i++) ports[i] = (int)l[i];
    if (config.sender_port > 65535) {
        fprintf(stderr, "--sender-port: a port number\n");
        return -1;
    }
    if (config.pids &&
        (npids = parse_list("--pid", config.pids, pids, MAX_PIDS, 1, 1L << 30)) < 0)
        return -1;
    if (strcmp(config.transport, "websocket") && strcmp(config.transport, "polling")) {
        fprintf(stderr, "--transport is websocket or polling\n");
        return -1;
    }
    if (config.redis_port > 65535 || config.interval <= 0) {
        fprintf(stderr, "--redis-port: a port number; --interval: > 0\n");
        return -1;
    }
    if (config.redis && redis_parse(config.redis) < 0) return -1;
    if (!config.redis && config.redis_port) {
        static char hp[32];
        snprintf(hp, sizeof(hp), "127.0.0.1:%d", config.redis_port);
        if (redis_parse(hp) < 0) return -1;
    }
    if (strcmp(config.rx_clock, "kernel") && strcmp(config.rx_clock, "user")) {
        fprintf(stderr, "--rx-clock is kernel or user\n");
        return -1;
    }
    if (config.size > (long)MAX_PAYLOAD) {
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

/* The sums over the --pid processes; -1 when one cannot be read. 'each'
 * (MAX_PIDS entries, or NULL) receives the figure of every process. */
static int procs_rss_kb(uint64_t *kb, uint64_t *each) {
    *kb = 0;
    for (int i = 0; i < npids; i++) {
        uint64_t v;
        if (proc_rss_kb(pids[i], &v) < 0) return -1;
        if (each) each[i] = v;
        *kb += v;
    }
    return npids ? 0 : -1;
}

static int procs_cpu_us(uint64_t *us, uint64_t *each) {
    *us = 0;
    for (int i = 0; i < npids; i++) {
        uint64_t v;
        if (proc_cpu_us(pids[i], &v) < 0) return -1;
        if (each) each[i] = v;
        *us += v;
    }
    return npids ? 0 : -1;
}

/* The server's end of a TCP connection of this host, as the kernel's
 * sock_diag interface shows it. */
typedef struct tcp_sock {
    int found;
    unsigned state;            /* 1 ESTABLISHED, 4 FIN_WAIT1, 8 CLOSE_WAIT... */
    unsigned long txq, rxq;    /* bytes in the send and receive queues */
    unsigned long inode;       /* 0 once no process holds the socket */
} tcp_sock;

/* An exact lookup (no dump, so its cost does not grow with the number of
 * sockets on the host): the request names the socket by its addresses. */
typedef struct tcp_diag {
    int nl;                    /* NETLINK_SOCK_DIAG socket, -1 if none */
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
} tcp_diag;

/* Prepares the lookup of the other end of connected socket 'fd' (which
 * must be on this host). Returns 0, or -1. */
static int tcp_diag_open(tcp_diag *d, int fd) {
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof(me), pl = sizeof(peer);
    memset(d, 0, sizeof(*d));
    d->nl = -1;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
        me.ss_family != peer.ss_family)
        return -1;
    struct inet_diag_req_v2 *r = &d->req.r;
    d->req.nlh.nlmsg_len = sizeof(d->req);
    d->req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    d->req.nlh.nlmsg_flags = NLM_F_REQUEST;
    r->sdiag_family = (unsigned char)me.ss_family;
    r->sdiag_protocol = IPPROTO_TCP;
    r->idiag_states = ~0u;
    r->id.idiag_cookie[0] = r->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    /* the server's socket: its source is our peer, its destination us */
    if (me.ss_family == AF_INET) {
        struct sockaddr_in *m = (struct sockaddr_in *)&me, *p = (struct sockaddr_in *)&peer;
        r->id.idiag_sport = p->sin_port;
        r->id.idiag_dport = m->sin_port;
        memcpy(r->id.idiag_src, &p->sin_addr, 4);
        memcpy(r->id.idiag_dst, &m->sin_addr, 4);
    } else if (me.ss_family == AF_INET6) {
        struct sockaddr_in6 *m = (struct sockaddr_in6 *)&me, *p = (struct sockaddr_in6 *)&peer;
        r->id.idiag_sport = p->sin6_port;
        r->id.idiag_dport = m->sin6_port;
        memcpy(r->id.idiag_src, &p->sin6_addr, 16);
        memcpy(r->id.idiag_dst, &m->sin6_addr, 16);
    } else {
        return -1;
    }
    d->nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (d->nl < 0) return -1;
    struct timeval tv = { 1, 0 };
    setsockopt(d->nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return 0;
}

static void tcp_diag_close(tcp_diag *d) {
    if (d->nl >= 0) close(d->nl);
    d->nl = -1;
}

/* Fills *t (t->found 0: no such socket any more). Returns 0, or -1 when the
 * kernel could not be asked. */
static int tcp_diag_get(tcp_diag *d, tcp_sock *t) {
    union {
        char buf[8192];
        struct nlmsghdr align;
    } u;
    memset(t, 0, sizeof(*t));
    if (d->nl < 0 || send(d->nl, &d->req, sizeof(d->req), 0) < 0) return -1;
    ssize_t n = recv(d->nl, u.buf, sizeof(u.buf), 0);
    struct nlmsghdr *h = &u.align;
    if (n < 0 || !NLMSG_OK(h, (size_t)n)) return -1;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error == -ENOENT ? 0 : -1;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -1;
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    *t = (tcp_sock){ 1, m->idiag_state, m->idiag_wqueue, m->idiag_rqueue,
                     m->idiag_inode };
    return 0;
}

/* Bytes waiting in the receive queue of our own socket, or -1. */
static long tcp_inq(int fd) {
    int n;
    return fd >= 0 && ioctl(fd, SIOCINQ, &n) == 0 ? n : -1;
}

/* ------------------------------------------------------------ Redis */

/* A tiny blocking RESP client: one short connection per sample, with a
 * 5 s timeout; enough for AUTH, SELECT, INFO memory and DBSIZE. */
static struct {
    int on, port, db;
    char host[256], user[128], pass[256];
} rtarget;

typedef struct redis_sample {
    int ok;
    uint64_t mem;              /* INFO memory used_memory, bytes */
    long long keys;            /* DBSIZE */
    char err[256];
} redis_sample;

static redis_sample redis_before, redis_after, redis_closed;

static int redis_parse(const char *url) {
    const char *s = url;
    char *end;
    rtarget.port = 6379;
    if (!strncmp(s, "redis://", 8)) s += 8;
    else if (strstr(s, "://")) goto bad;
    const char *at = strrchr(s, '@');
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *pw = colon ? colon + 1 : s;
        if (colon && (size_t)(colon - s) >= sizeof(rtarget.user)) goto bad;
        if ((size_t)(at - pw) >= sizeof(rtarget.pass)) goto bad;
        if (colon) memcpy(rtarget.user, s, (size_t)(colon - s));
        memcpy(rtarget.pass, pw, (size_t)(at - pw));
        s = at + 1;
    }
    size_t hl;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) goto bad;
        hl = (size_t)(rb - s - 1);
        if (hl >= sizeof(rtarget.host)) goto bad;
        memcpy(rtarget.host, s + 1, hl);
        s = rb + 1;
    } else {
        hl = strcspn(s, ":/");
        if (hl >= sizeof(rtarget.host)) goto bad;
        memcpy(rtarget.host, s, hl);
        s += hl;
    }
    if (!rtarget.host[0]) strcpy(rtarget.host, "127.0.0.1");
    if (*s == ':') {
        long p = strtol(s + 1, &end, 10);
        if (end == s + 1 || p < 1 || p > 65535) goto bad;
        rtarget.port = (int)p;
        s = end;
    }
    if (*s == '/' && s[1]) {
        long db = strtol(s + 1, &end, 10);
        if (end == s + 1 || *end || db < 0 || db > 1000000) goto bad;
        rtarget.db = (int)db;
    } else if (*s && strcmp(s, "/")) {
        goto bad;
    }
    rtarget.on = 1;
    return 0;
bad:
    fprintf(stderr, "--redis: redis://[[user]:password@]host[:port][/db] or"
            " host:port\n");
    return -1;
}

static int redis_connect(char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", rtarget.port);
    int rc = getaddrinfo(rtarget.host, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %.100s: %s", rtarget.host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { 5, 0 };
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) snprintf(err, errlen, "connect to %.100s:%d: %s", rtarget.host,
                         rtarget.port, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

/* The length of the whole reply at the start of b[0..n), 0 when incomplete,
 * -1 when it is no reply this client expects. */
static long resp_complete(const char *b, size_t n) {
    const char *nl = memmem(b, n, "\r\n", 2);
    if (!nl) return 0;
    long head = nl - b + 2;
    if (b[0] == '+' || b[0] == '-' || b[0] == ':') return head;
    if (b[0] != '$') return -1;
    long len = strtol(b + 1, NULL, 10);
    if (len < 0) return head;
    return (size_t)(head + len + 2) <= n ? head + len + 2 : 0;
}

/* Sends a command and reads its reply into buf (NUL terminated). Returns
 * the reply's type character, or -1 with err set. */
static int redis_call(int fd, char *buf, size_t cap, char *err, size_t errlen,
                      int argc, const char **argv) {
    char cmd[1024];
    size_t n = (size_t)snprintf(cmd, sizeof(cmd), "*%d\r\n", argc);
    for (int i = 0; i < argc && n < sizeof(cmd); i++)
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, "$%zu\r\n%s\r\n",
                              strlen(argv[i]), argv[i]);
    if (n >= sizeof(cmd) || write(fd, cmd, n) != (ssize_t)n) {
        snprintf(err, errlen, "%s: cannot send", argv[0]);
        return -1;
    }
    n = 0;
    for (;;) {
        long len = resp_complete(buf, n);
        if (len < 0) {
            snprintf(err, errlen, "%s: unexpected reply", argv[0]);
            return -1;
        }
        if (len > 0) break;
        ssize_t k = n < cap - 1 ? read(fd, buf + n, cap - 1 - n) : -1;
        if (k <= 0) {
            snprintf(err, errlen, "%s: %s", argv[0], k == 0 ? "connection closed"
                     : n >= cap - 1 ? "reply too long" : strerror(errno));
            return -1;
        }
        n += (size_t)k;
    }
    buf[n] = '\0';
    if (buf[0] == '-') {
        snprintf(err, errlen, "%s: %.*s", argv[0], (int)strcspn(buf + 1, "\r"), buf + 1);
        return -1;
    }
    return buf[0];
}

static void redis_take(redis_sample *r) {
    static char buf[65536];
    char db[16];
    memset(r, 0, sizeof(*r));
    int fd = redis_connect(r->err, sizeof(r->err));
    if (fd < 0) return;
    const char *auth[3] = { "AUTH", rtarget.user[0] ? rtarget.user : rtarget.pass,
                            rtarget.pass };
    const char *select[2] = { "SELECT", db };
    const char *info[2] = { "INFO", "memory" };
    const char *dbsize[1] = { "DBSIZE" };
    snprintf(db, sizeof(db), "%d", rtarget.db);
    if (rtarget.pass[0] &&
        redis_call(fd, buf, sizeof(buf), r->err, sizeof(r->err),
                   rtarget.user[0] ? 3 : 2, auth) < 0)
        goto done;
    if (rtarget.db && redis_call(fd, buf, sizeof(buf), r->err, sizeof(r->err),
                                 2, select) < 0)
        goto done;
    if (redis_call(fd, buf, sizeof(buf), r->err, sizeof(r->err), 2, info) != '$')
        goto done;
    const char *m = strstr(buf, "\nused_memory:");
    if (!m) {
        snprintf(r->err, sizeof(r->err), "INFO memory: no used_memory");
        goto done;
    }
    r->mem = strtoull(m + 13, NULL, 10);
    if (redis_call(fd, buf, sizeof(buf), r->err, sizeof(r->err), 1, dbsize) != ':')
        goto done;
    r->keys = strtoll(buf + 1, NULL, 10);
    r->ok = 1;
done:
    if (!r->ok && !r->err[0]) snprintf(r->err, sizeof(r->err), "unexpected reply");
    close(fd);
}

/* ------------------------------------------------------- run state */

enum { CL_NEW, CL_CONNECTING, CL_READY, CL_CLOSING, CL_DONE };
enum { PH_CONNECT, PH_MODE, PH_CLOSE };

typedef struct client {
    sio_conn *conn;
    int index;
    int ctx;                 /* index in bench.ctx: which port */
    int state;
    int join_pending;
    uint64_t t_start;
} client;

typedef struct mode {
    const char *name;
    int sender;                           /* client 0 is a sender */
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
    sio_ctx *ctx[MAX_PORTS + 2];          /* one per port, then as below */
    int ctx_port[MAX_PORTS + 2];
    int nctx, sender_ctx, slow_ctx;       /* -1 when there is none */
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

/* The counters summed over every context. */
static sio_stats stats_total(void) {
    sio_stats t = { 0, 0, 0 };
    for (int i = 0; i < bench.nctx; i++) {
        const sio_stats *s = sio_ctx_stats(bench.ctx[i]);
        t.pings += s->pings;
        t.kernel_rx += s->kernel_rx;
        if (s->ping_delay_max > t.ping_delay_max) t.ping_delay_max = s->ping_delay_max;
    }
    return t;
}

static const char *rx_clock_used(void) {
    return stats_total().kernel_rx ? "kernel" : "user";
}

/* The context of a client: the sender (client 0 of fanout and slow) on the
 * sender port, the slow reader (client 1 of slow) on a context of its own,
 * the others round robin over --port. */
static int client_ctx(int index) {
    int first = 0;
    if (bench.sender_ctx >= 0) {
        if (index == 0) return bench.sender_ctx;
        first = 1;
    }
    if (bench.slow_ctx >= 0) {
        if (index == 1) return bench.slow_ctx;
        first = 2;
    }
    return (index - first) % nports;
}

/* ------------------------------------------------ connect, close */

static void close_all(void) {
    if (bench.phase == PH_CLOSE) return;
    if (bench.phase == PH_CONNECT) bench.t_connect_end = sio_now_us();
    bench.mode->stopping();
    if (rtarget.on) redis_take(&redis_after);
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
        cl->conn = sio_connect(bench.ctx[cl->ctx], cl);
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
    uint64_t rss_before, rss_after, rss_each_before[MAX_PIDS], rss_each[MAX_PIDS];
    int rss_ok;
    uint64_t pings_before, hold_start, hold_us;
} idle;

static int idle_init(void) {
    if (config.clients < 1) {
        fprintf(stderr, "idle: -c N is required\n");
        return -1;
    }
    if (config.hold < 0) config.hold = 2;
    return config.clients;
}

static void idle_hold_done(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    close_all();
}

static void idle_stopping(void) {
    if (idle.hold_start) idle.hold_us = sio_now_us() - idle.hold_start;
    if (idle.rss_ok) idle.rss_ok = procs_rss_kb(&idle.rss_after, idle.rss_each) == 0;
}

static void idle_connected(void) {
    if (bench.ready == 0) {
        close_all();
        return;
    }
    idle.pings_before = stats_total().pings;
    idle.hold_start = sio_now_us();
    mode_timer(idle_hold_done, (uint64_t)(config.hold * 1e6), 0);
}

static int idle_report(void) {
    uint64_t pings = stats_total().pings - idle.pings_before;
    printf("====== idle: %d %s clients ======\n", bench.nclients, config.transport);
    result("mode=idle transport=%s", config.transport);
    print_connect_summary();
    uint64_t slowest = stats_total().ping_delay_max;
    if (!idle.hold_start) return 1;
    printf("  %-14s %.1f s, %d dropped, %" PRIu64 " pings answered"
           " (slowest %.1f ms after receipt)\n", "held", seconds(idle.hold_us),
           bench.dropped, pings, slowest / 1e3);
    result(" hold_s=%.1f dropped=%d pings=%" PRIu64 " ping_delay_max_us=%" PRIu64,
           seconds(idle.hold_us), bench.dropped, pings, slowest);
    if (npids && idle.rss_ok && bench.ready > 0) {
        double per = ((double)idle.rss_after - (double)idle.rss_before) / bench.ready;
        printf("  %-14s before %" PRIu64 " KB, after %" PRIu64
               " KB, %.2f KB per client%s\n", "server RSS", idle.rss_before,
               idle.rss_after, per, npids > 1 ? " (summed)" : "");
        for (int i = 0; npids > 1 && i < npids; i++)
            printf("  %-14s pid %ld: before %" PRIu64 " KB, after %" PRIu64 " KB\n",
                   "", pids[i], idle.rss_each_before[i], idle.rss_each[i]);
        result(" rss_before_kb=%" PRIu64 " rss_after_kb=%" PRIu64
               " rss_per_client_kb=%.2f", idle.rss_before, idle.rss_after, per);
    } else if (npids) {
        printf("  %-14s cannot read /proc/PID/status of %s\n", "server RSS",
               config.pids);
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
    if (config.size < 0) config.size = 32;
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
    if (echo.cpu_ok) echo.cpu_ok = procs_cpu_us(&echo.cpu_after, NULL) == 0;
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
    echo.cpu_ok = procs_cpu_us(&echo.cpu_before, NULL) == 0;
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

enum { FO_JOIN, FO_RUN, FO_HOLD, FO_DONE };

#define FO_SEND_ID0 2            /* ack ids of the sends; 1 is the join's */

static struct {
    int phase, slow;
    char *join_payload, *send_template, *send_buf, *pad;
    size_t send_cap;
    int receivers, joins_sent, joins_acked, joins_refused;
    uint64_t last_join, joined_at;
    long sent, sends_acked, sends_refused;
    uint64_t delivered, unmatched, expected;
    uint64_t port_delivered[MAX_PORTS], port_expected[MAX_PORTS];
    uint64_t t_first_send, t_last_delivery, t_all_delivered;
    uint64_t cpu_before, cpu_after, cpu_each_before[MAX_PIDS], cpu_each_after[MAX_PIDS];
    int cpu_ok, unsettled;   /* unsettled: --settle ran out before quiet */
    char refusal[128], send_refusal[128];
} fo;

static void slow_start(void);
static void slow_tick(uint64_t now);
static void slow_stopping(void);
static void slow_report(void);

static char *fanout_default(const char *fmt) {
    size_t n = strlen(fmt) + strlen(config.room) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, config.room);
    return s;
}

static size_t count_of(const char *s, const char *what) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what)) n++;
    return n;
}

static int fanout_init(void) {
    if (config.clients < (fo.slow ? 0 : 1)) {
        fprintf(stderr, "fanout: -c N is required\n");
        return -1;
    }
    if (config.count < 0) config.count = 100;
    if (config.rate < 0) config.rate = 10;
    if (config.size < 0) config.size = 32;
    if (config.rate == 0 && config.clients < 1) {
        fprintf(stderr, "--rate 0 needs at least one receiver (-c)\n");
        return -1;
    }
    fo.join_payload = config.join_payload ? strdup(config.join_payload)
                                          : fanout_default("\"%s\"");
    fo.send_template = config.send_template ? strdup(config.send_template)
        : fanout_default(fo.slow ? "\"%s\",{\"ts\":%%TS%%,\"pad\":\"%%PAD%%\"}"
                                 : "\"%s\",{\"ts\":%%TS%%}");
    if (!fo.join_payload || !fo.send_template) return -1;
    if (!strstr(fo.send_template, "%TS%")) {
        fprintf(stderr, "fanout: the send payload template needs %%TS%%\n");
        return -1;
    }
    if (fo.slow && !strstr(fo.send_template, "%PAD%"))
        fprintf(stderr, "warning: slow: the send template has no %%PAD%%,"
                " so --size is not used\n");
    /* each 4-byte "%TS%" becomes at most 20 digits: 5 times its length */
    fo.send_cap = strlen(fo.send_template) * 5 + 32 +
                  count_of(fo.send_template, "%PAD%") * (size_t)config.size;
    fo.send_buf = malloc(fo.send_cap);
    fo.pad = malloc((size_t)config.size + 1);
    if (!fo.send_buf || !fo.pad) return -1;
    memset(fo.pad, 'x', (size_t)config.size);
    fo.pad[config.size] = '\0';
    fo.receivers = config.clients;
    return config.clients + 1 + fo.slow;
}

static int is_sender(const client *cl) {
    return cl->index == 0;
}

static int is_slow(const client *cl) {
    return fo.slow && cl->index == 1;
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

/* Writes the template with every %TS% replaced by 'ts' and every %PAD% by
 * --size bytes of padding. */
static size_t fanout_format(uint64_t ts) {
    const char *t = fo.send_template;
    size_t n = 0;
    while (*t) {
        if (strncmp(t, "%TS%", 4) == 0) {
            n += (size_t)snprintf(fo.send_buf + n, fo.send_cap - n, "%" PRIu64, ts);
            t += 4;
        } else if (strncmp(t, "%PAD%", 5) == 0) {
            memcpy(fo.send_buf + n, fo.pad, (size_t)config.size);
            n += (size_t)config.size;
            t += 5;
        } else {
            fo.send_buf[n++] = *t++;
        }
    }
    return n;
}

/* Each send asks for an ack (id FO_SEND_ID0 + its number): a server that
 * acks with "ok":false refused it. A server that does not ack is fine. */
static void fanout_send(void) {
    uint64_t now = sio_now_us();
    size_t len = fanout_format(now);
    if (fo.sent == 0) fo.t_first_send = now;
    long id = FO_SEND_ID0 + fo.sent;
    fo.sent++;
    progress();
    if (sio_emit(bench.clients[0].conn, id, config.send_event, fo.send_buf, len) < 0)
        bench_error("sender cannot send");
}

/* The deliveries still to come for the run to be complete. */
static uint64_t fanout_needed(void) {
    return (uint64_t)(config.count - fo.sends_refused) * (uint64_t)fo.receivers;
}

/* Every message sent and every delivery in: the run ends (slow: after
 * --hold more seconds of watching). */
static void fanout_check_done(void) {
    if (fo.phase != FO_RUN || fo.sent < config.count || fo.delivered < fanout_needed())
        return;
    if (!fo.slow) {
        close_all();
        return;
    }
    fo.phase = FO_HOLD;
    fo.t_all_delivered = sio_now_us();
    bench.watch = 0;
}

/* --rate 0: keeps --pipeline messages ahead of the receivers. */
static void fanout_fill(void) {
    while (fo.phase == FO_RUN && fo.sent < config.count &&
           fo.sent - (long)(fo.delivered / (uint64_t)fo.receivers) - fo.sends_refused
               < config.pipeline)
        fanout_send();
}

static void fanout_stopping(void) {
    if (fo.cpu_ok) fo.cpu_ok = procs_cpu_us(&fo.cpu_after, fo.cpu_each_after) == 0;
    if (fo.slow) slow_stopping();
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
    fanout_check_done();
}

static void fanout_start(void) {
    fo.phase = FO_RUN;
    fo.expected = (uint64_t)config.count * (uint64_t)fo.receivers;
    for (int i = 0; i < bench.nclients; i++) {
        const client *cl = &bench.clients[i];
        if (!is_sender(cl) && !is_slow(cl) && cl->ctx < nports)
            fo.port_expected[cl->ctx] += (uint64_t)config.count;
    }
    fo.cpu_ok = procs_cpu_us(&fo.cpu_before, fo.cpu_each_before) == 0;
    bench.watch = 1;
    if (fo.slow) slow_start();
    if (config.rate == 0) {
        fanout_fill();
        return;
    }
    fanout_send();
    if (config.count > 1) {
        double us = 1e6 / config.rate;
        mode_timer(fanout_rate_tick, us < 1000 ? 1000 : (uint64_t)us, 1);
    }
    fanout_check_done();
}

/* Join phase: waits for the join acks (or --join-wait after the last join),
 * then for the traffic the joins caused to die down. */
static void fanout_tick(uint64_t now) {
    if (fo.slow && fo.phase >= FO_RUN) slow_tick(now);
    if (fo.phase != FO_JOIN) return;
    int acked = fo.joins_acked + fo.joins_refused == fo.joins_sent;
    if (!fo.joined_at) {
        if (!acked && now - fo.last_join < config.join_wait * 1e6) return;
        fo.joined_at = now;
    }
    if (now - bench.last_rx >= QUIET_US) {
        fanout_start();
    } else if (now - fo.joined_at >= config.settle * 1e6) {
        fo.unsettled = 1;
        fanout_start();
    }
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

static int ack_refuses(const sio_packet *p, char *why, size_t whylen) {
    if (!memmem(p->data, p->len, "\"ok\":false", 10)) return 0;
    if (!why[0])
        snprintf(why, whylen, "%.*s", (int)(p->len > 100 ? 100 : p->len), p->data);
    return 1;
}

static void fanout_join_ack(client *cl, const sio_packet *p) {
    cl->join_pending = 0;
    progress();
    if (ack_refuses(p, fo.refusal, sizeof(fo.refusal))) fo.joins_refused++;
    else fo.joins_acked++;
}

static void fanout_send_ack(const sio_packet *p) {
    if (p->id < FO_SEND_ID0 || p->id >= FO_SEND_ID0 + fo.sent) return;
    if (!ack_refuses(p, fo.send_refusal, sizeof(fo.send_refusal))) {
        fo.sends_acked++;
        return;
    }
    fo.sends_refused++;
    if (config.rate == 0) fanout_fill();
    fanout_check_done();
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
    if (cl->ctx < nports) fo.port_delivered[cl->ctx]++;
    fo.t_last_delivery = rx;
    progress();
    if (config.rate == 0) fanout_fill();
    fanout_check_done();
}

static void fanout_packet(client *cl, const sio_packet *p) {
    if (p->type == SIO_ACK && p->id == 1 && cl->join_pending)
        fanout_join_ack(cl, p);
    else if (p->type == SIO_ACK && is_sender(cl) && fo.phase >= FO_RUN)
        fanout_send_ack(p);
    else if (p->type == SIO_EVENT && !is_sender(cl) && !is_slow(cl) &&
             fo.phase >= FO_RUN)
        fanout_delivery(cl, p);
}

static void fanout_dropped(client *cl) {
    if (is_sender(cl)) close_all();
}

static void fanout_report_ports(void) {
    if (nports < 2) return;
    printf("  %-14s", "per port");
    for (int i = 0; i < nports; i++) {
        printf("%s%d: %" PRIu64 " of %" PRIu64 "%s", i ? ", " : " ", ports[i],
               fo.port_delivered[i], fo.port_expected[i],
               fo.port_delivered[i] == 0 && fo.port_expected[i] ? " (none)" : "");
        result(" port_%d_delivered=%" PRIu64 " port_%d_expected=%" PRIu64,
               ports[i], fo.port_delivered[i], ports[i], fo.port_expected[i]);
    }
    printf("; sender on %d\n", bench.ctx_port[bench.sender_ctx]);
}

static void fanout_report_cpu(void) {
    if (!fo.cpu_ok || !fo.delivered) return;
    double per = (double)(fo.cpu_after - fo.cpu_before) / fo.delivered;
    printf("  %-14s %.2f s, %.2f us per delivery%s\n", "server CPU",
           seconds(fo.cpu_after - fo.cpu_before), per,
           npids > 1 ? ", summed over:" : "");
    for (int i = 0; npids > 1 && i < npids; i++)
        printf("  %-14s pid %ld: %.2f s\n", "", pids[i],
               seconds(fo.cpu_each_after[i] - fo.cpu_each_before[i]));
    result(" cpu_us_per_delivery=%.3f", per);
}

static int fanout_report(void) {
    uint64_t t = fo.t_last_delivery > fo.t_first_send
                     ? fo.t_last_delivery - fo.t_first_send : 0;
    double rate = t ? fo.delivered / seconds(t) : 0;
    uint64_t need = fanout_needed();
    uint64_t lost = need > fo.delivered ? need - fo.delivered : 0;
    char where[64] = "";
    if (nports > 1) snprintf(where, sizeof(where), " on %d ports", nports);
    if (fo.slow)
        printf("====== slow: 1 reader that stops reading, %d that keep up%s,"
               " %ld messages of %ld bytes of padding ======\n",
               config.clients, where, config.count, config.size);
    else if (config.rate > 0)
        printf("====== fanout: %d receivers%s, %ld messages at %g/s ======\n",
               config.clients, where, config.count, config.rate);
    else
        printf("====== fanout: %d receivers%s, %ld messages, %d ahead of the"
               " last delivered ======\n", config.clients, where, config.count,
               config.pipeline);
    result("mode=%s", fo.slow ? "slow" : "fanout");
    print_connect_summary();
    printf("  %-14s %d of %d acked, %d refused%s%s\n", "joined", fo.joins_acked,
           fo.joins_sent, fo.joins_refused, fo.refusal[0] ? ": " : "", fo.refusal);
    if (fo.unsettled)
        printf("  %-14s the traffic of the joins went on for more than %g s"
               " (--settle): it overlaps the sending\n", "warning", config.settle);
    printf("  %-14s %ld sent, %ld acked, %ld refused%s%s\n", "sender", fo.sent,
           fo.sends_acked, fo.sends_refused, fo.send_refusal[0] ? ": " : "",
           fo.send_refusal);
    printf("  %-14s %ld messages, %" PRIu64 " of %" PRIu64 " deliveries (%" PRIu64
           " lost, %" PRIu64 " without timestamp) in %.3f s: %.0f deliveries/s\n",
           "delivered", fo.sent - fo.sends_refused, fo.delivered, need, lost,
           fo.unmatched, seconds(t), rate);
    print_latency("latency", bench.latency);
    result(" settled=%d rate=%g messages=%ld sends_acked=%ld sends_refused=%ld joins_acked=%d"
           " joins_refused=%d delivered=%" PRIu64 " expected=%" PRIu64
           " lost=%" PRIu64 " unmatched=%" PRIu64 " elapsed_ms=%.1f"
           " deliveries_per_s=%.0f", !fo.unsettled, config.rate, fo.sent, fo.sends_acked,
           fo.sends_refused, fo.joins_acked, fo.joins_refused, fo.delivered,
           need, lost, fo.unmatched, t / 1e3, rate);
    result_latency("lat", bench.latency);
    fanout_report_ports();
    fanout_report_cpu();
    if (fo.slow) slow_report();
    result(" rx_clock=%s", rx_clock_used());
    return lost || bench.failed || bench.dropped || fo.joins_refused ||
           fo.sends_refused || fo.sent < config.count;
}

/* ----------------------------------------------------------- slow */

/* The slow reader (client 1) joins like the others, and stops reading its
 * socket when the sending starts. From then on the tool looks, every tick,
 * at the server's end of that TCP connection (an exact sock_diag lookup by
 * its addresses, cheap whatever the number of sockets on the host): while
 * the daemon holds it, the socket has an inode; when the daemon closes it
 * (the slow consumer was cut off), the inode becomes 0 (the kernel still
 * tries to send what it holds, then a FIN) or the socket is gone. That works
 * when the server runs on this host. The reader's own socket is watched too
 * (TCP_INFO): it sees a FIN or RST only when the kernel could deliver it. */

static const char *tcp_state_name(unsigned st) {
    static const char *names[] = { "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV",
        "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
        "LAST_ACK", "LISTEN", "CLOSING" };
    return st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static struct {
    client *reader;
    int sport;                 /* the server's port */
    int paused, seen;          /* seen: the server's socket was found */
    int diag_ok;               /* the kernel answers sock_diag lookups */
    tcp_diag diag;
    uint64_t t0;               /* the first send */
    struct timespec t0_wall;   /* the same, on the wall clock */
    uint64_t t_cut;            /* the daemon let go of the socket */
    uint64_t t_reader_closed;  /* the reader's socket left ESTABLISHED */
    unsigned reader_state;
    long sent_at_cut;
    uint64_t delivered_at_cut;
    tcp_sock srv, at_cut;
    uint64_t rss_start, rss_peak, rss_end, rss_at_cut;
    int rss_ok, samples;
    struct event *sample;
} sl;

/* "HH:MM:SS.mmm" (UTC) of the monotonic time t, for reading server logs. */
static const char *slow_wall(uint64_t t, char *buf, size_t len) {
    uint64_t us = (uint64_t)sl.t0_wall.tv_sec * 1000000 +
                  (uint64_t)sl.t0_wall.tv_nsec / 1000 + (t - sl.t0);
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(buf, len, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(us % 1000000 / 1000));
    return buf;
}

static int slow_init(void) {
    fo.slow = 1;
    if (config.clients < 0) config.clients = 1;
    if (config.count < 0) config.count = 1000;
    if (config.size < 0) config.size = 1024;
    if (config.rate < 0) config.rate = 0;
    if (config.hold < 0) config.hold = 3;
    return fanout_init();
}

static unsigned reader_tcp_state(void) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int fd = sio_fd(sl.reader->conn);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return 0;
    return ti.tcpi_state;
}

/* Looks at both ends of the reader's connection; notes the cut-off. */
static void slow_check(uint64_t now) {
    if (!sl.paused || !sl.diag_ok || tcp_diag_get(&sl.diag, &sl.srv) < 0) return;
    if (sl.srv.found && sl.srv.inode) sl.seen = 1;
    if (sl.seen && !sl.t_cut && (!sl.srv.found || !sl.srv.inode)) {
        sl.t_cut = now;
        sl.at_cut = sl.srv;
        sl.sent_at_cut = fo.sent;
        sl.delivered_at_cut = fo.delivered;
        procs_rss_kb(&sl.rss_at_cut, NULL);
    }
    unsigned st = reader_tcp_state();
    if (st && st != 1 && !sl.t_reader_closed) {
        sl.t_reader_closed = now;
        sl.reader_state = st;
    }
}

static void slow_sample(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    uint64_t now = sio_now_us(), rss = 0;
    slow_check(now);
    int rss_ok = procs_rss_kb(&rss, NULL) == 0;
    if (rss_ok && rss > sl.rss_peak) sl.rss_peak = rss;
    long inq = tcp_inq(sio_fd(sl.reader->conn));
    if (sl.samples++ == 0)
        printf("  %7s %10s %8s %10s %12s %12s  %s\n", "t (s)", "RSS (KB)",
               "sent", "delivered", "srv sndq KB", "rdr rcvq KB", "reader");
    char rss_s[24] = "?", sq[24] = "-", rq[24] = "-";
    if (rss_ok) snprintf(rss_s, sizeof(rss_s), "%" PRIu64, rss);
    if (sl.srv.found) snprintf(sq, sizeof(sq), "%lu", sl.srv.txq / 1024);
    if (inq >= 0) snprintf(rq, sizeof(rq), "%ld", inq / 1024);
    const char *state = sl.t_cut ? "cut off" : sl.seen ? "open"
                        : "server socket not seen";
    printf("  %7.1f %10s %8ld %10" PRIu64 " %12s %12s  %s\n",
           seconds(now - sl.t0), rss_s, fo.sent, fo.delivered, sq, rq, state);
    fflush(stdout);
}

static void slow_start(void) {
    struct timeval tv = { (time_t)config.interval,
                          (suseconds_t)((config.interval - (time_t)config.interval) * 1e6) };
    sl.reader = &bench.clients[1];
    sl.t0 = sio_now_us();
    clock_gettime(CLOCK_REALTIME, &sl.t0_wall);
    sl.rss_ok = procs_rss_kb(&sl.rss_start, NULL) == 0;
    sl.rss_peak = sl.rss_start;
    if (sl.reader->state != CL_READY) return;
    sio_pause(sl.reader->conn);
    sl.paused = 1;
    sl.diag_ok = tcp_diag_open(&sl.diag, sio_fd(sl.reader->conn)) == 0;
    sl.sport = bench.ctx_port[sl.reader->ctx];
    char wall[32];
    printf("====== slow: the reader on port %d stopped reading; every %g s,"
           " from the first send (%s UTC) ======\n", sl.sport, config.interval,
           slow_wall(sl.t0, wall, sizeof(wall)));
    slow_sample(-1, 0, NULL);
    sl.sample = event_new(bench.base, -1, EV_PERSIST, slow_sample, NULL);
    if (sl.sample) event_add(sl.sample, &tv);
}

static void slow_tick(uint64_t now) {
    slow_check(now);
    if (fo.phase == FO_HOLD && now - fo.t_all_delivered >= config.hold * 1e6)
        close_all();
}

/* The reader never answers a close: it is aborted. */
static void slow_stopping(void) {
    if (sl.sample) {
        slow_sample(-1, 0, NULL);
        event_free(sl.sample);
        sl.sample = NULL;
    }
    if (sl.rss_ok) sl.rss_ok = procs_rss_kb(&sl.rss_end, NULL) == 0;
    if (sl.paused) tcp_diag_close(&sl.diag);
    if (sl.reader && sl.reader->state == CL_READY) {
        sio_abort(sl.reader->conn);
        sl.reader->state = CL_DONE;
    }
}

static void slow_report(void) {
    if (!sl.paused) {
        printf("  %-14s was not connected when the sending started\n", "slow reader");
        result(" cut_off=0");
        return;
    }
    size_t msg = fo.send_cap ? fanout_format(0) : 0;   /* about one message */
    char wall[32];
    if (sl.t_cut) {
        printf("  %-14s cut off: the server closed its socket %.3f s after the first"
               " send (%s UTC), when %ld messages (about %.1f MB) had been sent"
               " into the room; its socket then: %s, %lu KB still in its kernel"
               " send queue\n", "slow reader", seconds(sl.t_cut - sl.t0),
               slow_wall(sl.t_cut, wall, sizeof(wall)), sl.sent_at_cut,
               sl.sent_at_cut * (double)msg / 1048576.0,
               sl.at_cut.found ? tcp_state_name(sl.at_cut.state) : "gone",
               sl.at_cut.txq / 1024);
        printf("  %-14s (a server may decide earlier and close later, after a"
               " grace period for the close handshake: see its log)\n", "");
        result(" cut_off=1 cut_off_s=%.3f sent_at_cut=%ld",
               seconds(sl.t_cut - sl.t0), sl.sent_at_cut);
    } else if (sl.seen) {
        printf("  %-14s not cut off: the server still held its socket at the end"
               " (%s, %lu KB in its kernel send queue)\n", "slow reader",
               tcp_state_name(sl.srv.state), sl.srv.txq / 1024);
        result(" cut_off=0");
    } else {
        printf("  %-14s unknown: the server's end of the connection (port %d)"
               " was not found with sock_diag%s; is the server on this host?\n",
               "slow reader", sl.sport, sl.diag_ok ? "" : " (unavailable)");
        result(" cut_off=unknown");
    }
    if (sl.t_reader_closed)
        printf("  %-14s its own socket went %s %.3f s after the first send\n", "",
               tcp_state_name(sl.reader_state), seconds(sl.t_reader_closed - sl.t0));
    else
        printf("  %-14s its own socket stayed ESTABLISHED (what the server sent"
               " last, FIN included, waits behind the unread bytes)\n", "");
    if (sl.rss_ok) {
        printf("  %-14s start %" PRIu64 " KB, peak %" PRIu64 " KB, end %" PRIu64
               " KB", "server RSS", sl.rss_start, sl.rss_peak, sl.rss_end);
        if (sl.t_cut) printf(", at the cut-off %" PRIu64 " KB", sl.rss_at_cut);
        printf("\n");
        result(" rss_start_kb=%" PRIu64 " rss_peak_kb=%" PRIu64 " rss_end_kb=%"
               PRIu64, sl.rss_start, sl.rss_peak, sl.rss_end);
    }
}

/* --------------------------------------------------------- main */

static const mode modes[] = {
    { "idle", 0, idle_init, NULL, idle_connected, NULL, NULL, NULL,
      idle_stopping, idle_report },
    { "echo", 0, echo_init, NULL, echo_connected, echo_packet, echo_dropped, NULL,
      echo_stopping, echo_report },
    { "fanout", 1, fanout_init, fanout_ready, fanout_connected, fanout_packet,
      fanout_dropped, fanout_tick, fanout_stopping, fanout_report },
    { "slow", 1, slow_init, fanout_ready, fanout_connected, fanout_packet,
      fanout_dropped, fanout_tick, fanout_stopping, fanout_report },
};

static const mode *mode_find(const char *name) {
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(name, modes[i].name)) return &modes[i];
    return NULL;
}

/* Adds a context for 'port'; returns its index, or -1. */
static int bench_add_ctx(int port, int polling, int rcvbuf) {
    static const sio_callbacks cb = { on_ready, on_packet, on_closed };
    sio_options o = {
        .host = config.host, .port = port, .path = config.path,
        .nsp = config.nsp, .query = config.query, .auth = config.auth,
        .kernel_rx_time = !strcmp(config.rx_clock, "kernel"),
        .max_message = MAX_PAYLOAD + 1024,
        .polling = polling, .rcvbuf = rcvbuf,
    };
    char err[256];
    sio_ctx *x = sio_ctx_new(bench.base, &o, &cb, err, sizeof(err));
    if (!x) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    bench.ctx[bench.nctx] = x;
    bench.ctx_port[bench.nctx] = port;
    return bench.nctx++;
}

/* One context per --port; the sender's port when it is not among them; the
 * slow reader's (the first port, always WebSocket, with --rcvbuf). */
static int bench_contexts(void) {
    int polling = !strcmp(config.transport, "polling");
    bench.sender_ctx = bench.slow_ctx = -1;
    for (int i = 0; i < nports; i++)
        if (bench_add_ctx(ports[i], polling, 0) < 0) return -1;
    if (bench.mode->sender) {
        int sp = config.sender_port ? config.sender_port : ports[0];
        for (int i = 0; i < nports && bench.sender_ctx < 0; i++)
            if (ports[i] == sp) bench.sender_ctx = i;
        if (bench.sender_ctx < 0 &&
            (bench.sender_ctx = bench_add_ctx(sp, polling, 0)) < 0)
            return -1;
    }
    if (fo.slow && (bench.slow_ctx = bench_add_ctx(ports[0], 0, config.rcvbuf)) < 0)
        return -1;
    return 0;
}

static int bench_setup(void) {
    struct timeval tick = { 0, TICK_US };
    bench.base = event_base_new();
    if (!bench.base || bench_contexts() < 0) return -1;
    bench.clients = calloc((size_t)bench.nclients, sizeof(client));
    bench.handshake = hist_new();
    bench.latency = hist_new();
    bench.tick = event_new(bench.base, -1, EV_PERSIST, on_tick, NULL);
    bench.sigint = evsignal_new(bench.base, SIGINT, on_sigint, NULL);
    if (!bench.clients || !bench.handshake || !bench.latency || !bench.tick ||
        !bench.sigint)
        return -1;
    for (int i = 0; i < bench.nclients; i++) {
        bench.clients[i].index = i;
        bench.clients[i].ctx = client_ctx(i);
    }
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
    for (int i = 0; i < bench.nctx; i++) sio_ctx_free(bench.ctx[i]);
    if (bench.base) event_base_free(bench.base);
    free(echo.payload);
    free(echo.slots);
    free(fo.join_payload);
    free(fo.send_template);
    free(fo.send_buf);
    free(fo.pad);
}

/* Redis memory and keys per connected client: sampled at the start, when
 * the run ends (every client still connected) and --redis-wait s after the
 * close. */
static int report_redis(void) {
    if (!rtarget.on) return 0;
    if (!redis_before.ok || !redis_after.ok) {
        printf("  %-14s %s\n", "redis", !redis_before.ok ? redis_before.err
                                                         : redis_after.err);
        return 1;
    }
    double n = bench.ready > 0 ? bench.ready : 1;
    double mem = ((double)redis_after.mem - (double)redis_before.mem) / n;
    double keys = (double)(redis_after.keys - redis_before.keys) / n;
    printf("  %-14s used_memory %" PRIu64 " -> %" PRIu64 " bytes, keys %lld -> %lld:"
           " %.0f bytes and %.2f keys per session\n", "redis", redis_before.mem,
           redis_after.mem, redis_before.keys, redis_after.keys, mem, keys);
    result(" redis_mem_before=%" PRIu64 " redis_mem_after=%" PRIu64
           " redis_keys_before=%lld redis_keys_after=%lld"
           " redis_bytes_per_session=%.0f redis_keys_per_session=%.2f",
           redis_before.mem, redis_after.mem, redis_before.keys, redis_after.keys,
           mem, keys);
    if (redis_closed.ok) {
        printf("  %-14s %g s after the close: used_memory %" PRIu64 " bytes, keys %lld\n",
               "", config.redis_wait, redis_closed.mem, redis_closed.keys);
        result(" redis_mem_closed=%" PRIu64 " redis_keys_closed=%lld",
               redis_closed.mem, redis_closed.keys);
    }
    return 0;
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
    if (rtarget.on) {
        usleep((useconds_t)(config.redis_wait * 1e6));
        redis_take(&redis_closed);
    }
    int failed = bench.mode->report();
    failed |= report_redis();
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
    if (!strcmp(bench.mode->name, "idle"))
        idle.rss_ok = procs_rss_kb(&idle.rss_before, idle.rss_each_before) == 0;
    if (rtarget.on) redis_take(&redis_before);
    signal(SIGPIPE, SIG_IGN);
    bench.nclients = bench.mode->init();
    int rc = bench.nclients > 0 ? bench_run() : 2;
    bench_cleanup();
    return rc;
}
