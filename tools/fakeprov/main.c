/*
 * main.c - relay-fake: the command line, the workers and the signals.
 *
 * Every listening socket is bound here, in the main thread, with
 * SO_REUSEPORT on the same port, one per worker, so a bad address fails
 * before anything runs and `--listen 127.0.0.1:0` reports the port it got.
 * Each worker then runs its own libuv loop on its own thread; the kernel
 * spreads connections over them. The main thread only waits for SIGINT or
 * SIGTERM and then stops the loops, which close every connection.
 *
 * Read first: main().
 */
#include "fakeprov.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"

#define MAX_WORKERS 64

struct fake_opts fake_opts = {
    .host = "127.0.0.1",
    .port = 9000,
    .nworkers = 1,
    .tokens = 16,
    .record = true,
    .seed = 1,
};

struct worker {
    pthread_t thread;  /* runs loop */
    uv_loop_t loop;    /* this worker's event loop */
    uv_tcp_t server;   /* the listening socket; data NULL */
    uv_async_t stop;   /* woken by main to stop; data NULL */
};

static const char usage[] =
"usage: relay-fake [--listen HOST:PORT] [options]\n"
"\n"
"A fake LLM provider for tests and benchmarks (OpenAI, Anthropic, Gemini\n"
"and Ollama wire formats): deterministic answers, scripted latency and\n"
"scripted failures.\n"
"\n"
"  --listen HOST:PORT   address to listen on (default 127.0.0.1:9000;\n"
"                       port 0 picks a free one, printed at start)\n"
"  --workers N          threads, each with its own loop (default 1)\n"
"  --ttft-ms N          default delay before the first token, ms (0)\n"
"  --tps N              default tokens per second; 0 = no pacing (0)\n"
"  --tokens N           default answer length in tokens (16)\n"
"  --require-key KEY    demand the key: `Authorization: Bearer KEY`\n"
"                       (OpenAI), `x-api-key` or Bearer (Anthropic),\n"
"                       `x-goog-api-key` or ?key= (Gemini); not Ollama\n"
"  --seed N             seed of the PRNG behind the `p` key (1)\n"
"  --no-record          do not keep requests for GET /_fake/requests\n"
"  --quiet              print nothing at start\n"
"  --verbose            log one line per chat request to stderr\n"
"  --help               this text\n"
"\n"
"Script: the request's model is `name?key=value&key=value`:\n"
"  ttft_ms=N      delay before the headers (non-stream) or first token\n"
"  tps=N          tokens per second; non-stream waits ttft + tokens/tps\n"
"  tokens=N       answer length (max_tokens still caps it: `length`)\n"
"  status=N       answer with this status and an OpenAI error body\n"
"                 (400, 401, 404, 429, 500, 503 have their own type/code)\n"
"  code=S         error code override, e.g. context_length_exceeded\n"
"  retry_after=N  Retry-After of a 429 in s (default 1; 0 omits it)\n"
"  fault=F        reset | hang | stall | cut | malformed | nodone |\n"
"                 slowheaders (see docs/fakeprov.md)\n"
"  after=N        tokens before a mid-stream fault (default half)\n"
"  first=N        status/fault only for the first N requests with this\n"
"                 exact model string; later ones are healthy\n"
"  flap=N         status/fault for requests 1..N, 2N+1..3N, ... of this\n"
"                 model string, healthy for N+1..2N, ... (a flapping\n"
"                 provider)\n"
"  p=X            probability 0..1 that status/fault applies (seeded)\n"
"  cached=N       cached prompt tokens in usage (alias cache_read)\n"
"  cache_write=N  cache-creation tokens (Anthropic usage only)\n"
"  usage=0        OpenAI format: no usage in the answer or the stream\n"
"  slow_ms=X&slow_from=N&slow_to=M  requests N..M of this model string\n"
"                 get X ms more before the first token (a slowdown)\n"
"  fault=safety   no text, stopped by a filter; fault=blocked: prompt\n"
"                 blocked (Gemini promptFeedback)\n"
"Example: model \"fake?ttft_ms=200&tps=50&status=503&first=1\"\n"
"\n"
"Endpoints: POST /v1/chat/completions (and /chat/completions),\n"
"POST /v1/messages (Anthropic), POST /v1beta/models/M:generateContent\n"
"and M:streamGenerateContent?alt=sse (Gemini; M percent-encoded),\n"
"POST /api/chat, GET /api/tags, GET /api/version (Ollama),\n"
"GET /v1/models, GET /healthz, GET /_fake/requests (last 1000 chat\n"
"requests, oldest first), POST /_fake/reset (clears them, the `first`\n"
"counters and reseeds the PRNG), GET /_fake/connections (open and busy\n"
"connections), POST /_fake/drop (closes every other connection of the\n"
"worker that answers).\n";

/* ---------------------------------------------------------------------- */
/* Command line                                                           */

static bool parse_ll(const char *s, long long lo, long long hi,
                     long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* Splits HOST:PORT (or [V6]:PORT) into o->host and o->port. */
static bool parse_listen(const char *s, struct fake_opts *o)
{
    const char *colon = strrchr(s, ':');
    if (!colon) {
        return false;
    }
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    long long port = 0;
    if (hlen == 0 || hlen >= sizeof(o->host) ||
        !parse_ll(colon + 1, 0, 65535, &port)) {
        return false;
    }
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    o->port = (int)port;
    return true;
}

/* Reads one flag with its value at argv[*i]; false on a bad one. */
static bool parse_flag(int argc, char **argv, int *i, struct fake_opts *o)
{
    const char *f = argv[*i];
    bool has_value = *i + 1 < argc;
    const char *v = has_value ? argv[*i + 1] : "";
    long long n = 0;
    bool ok = has_value;
    if (strcmp(f, "--quiet") == 0) {
        o->quiet = true;
        return true;
    } else if (strcmp(f, "--verbose") == 0) {
        o->verbose = true;
        return true;
    } else if (strcmp(f, "--no-record") == 0) {
        o->record = false;
        return true;
    } else if (strcmp(f, "--listen") == 0) {
        ok = ok && parse_listen(v, o);
    } else if (strcmp(f, "--workers") == 0) {
        ok = ok && parse_ll(v, 1, MAX_WORKERS, &n);
        o->nworkers = (int)n;
    } else if (strcmp(f, "--ttft-ms") == 0) {
        ok = ok && parse_ll(v, 0, 3600000, &n);
        o->ttft_ms = n;
    } else if (strcmp(f, "--tps") == 0) {
        char *end = NULL;
        o->tps = strtod(v, &end);
        ok = ok && end != v && *end == '\0' && o->tps >= 0 && o->tps < 1e9;
    } else if (strcmp(f, "--tokens") == 0) {
        ok = ok && parse_ll(v, 0, FAKE_MAX_TOKENS, &n);
        o->tokens = n;
    } else if (strcmp(f, "--seed") == 0) {
        ok = ok && parse_ll(v, 0, INT64_MAX, &n);
        o->seed = (uint64_t)n;
    } else if (strcmp(f, "--require-key") == 0) {
        ok = ok && v[0] != '\0';
        o->require_key = v;
    } else {
        fprintf(stderr, "relay-fake: unknown flag %s (see --help)\n", f);
        return false;
    }
    if (!ok) {
        fprintf(stderr, "relay-fake: bad or missing value for %s\n", f);
        return false;
    }
    (*i)++;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Workers                                                                */

static void on_connection(uv_stream_t *server, int status)
{
    if (status == 0) {
        fake_conn_accept(server);
    }
}

static void on_stop(uv_async_t *a)
{
    uv_walk(a->loop, fake_conn_close_all, NULL);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    fake_record_thread_free();
    log_thread_exit();
    return NULL;
}

/* Binds a SO_REUSEPORT socket to addr; returns the fd or -errno. */
static int bind_socket(const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
        bind(fd, addr, len)) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Prepares w on the already bound fd; the loop runs later on its thread. */
static int worker_init(struct worker *w, int fd)
{
    int err = uv_loop_init(&w->loop);
    if (err == 0) {
        uv_tcp_init(&w->loop, &w->server);
        w->server.data = NULL;
        err = uv_tcp_open(&w->server, fd);
    }
    if (err == 0) {
        err = uv_listen((uv_stream_t *)&w->server, 1024, on_connection);
    }
    if (err == 0) {
        err = uv_async_init(&w->loop, &w->stop, on_stop);
        w->stop.data = NULL;
    }
    return err;
}

/* Binds every worker's socket, learning the port from the first. */
static int bind_all(struct worker *ws, int n, struct fake_opts *o)
{
    struct sockaddr_storage ss;
    bool v6 = strchr(o->host, ':') != NULL;
    int err = v6 ? uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&ss)
                 : uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&ss);
    if (err) {
        fprintf(stderr, "relay-fake: bad address %s\n", o->host);
        return err;
    }
    socklen_t len = v6 ? sizeof(struct sockaddr_in6)
                       : sizeof(struct sockaddr_in);
    for (int i = 0; i < n; i++) {
        int fd = bind_socket((struct sockaddr *)&ss, len);
        if (fd < 0) {
            fprintf(stderr, "relay-fake: cannot bind %s:%d: %s\n", o->host,
                    o->port, strerror(-fd));
            return fd;
        }
        if (i == 0) {
            struct sockaddr_storage got;
            socklen_t glen = sizeof(got);
            getsockname(fd, (struct sockaddr *)&got, &glen);
            uint16_t port = v6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                               : ((struct sockaddr_in *)&got)->sin_port;
            o->port = ntohs(port);
            ((struct sockaddr_in *)&ss)->sin_port = port; /* same offset */
        }
        err = worker_init(&ws[i], fd);
        if (err) {
            fprintf(stderr, "relay-fake: cannot listen: %s\n",
                    uv_strerror(err));
            return err;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (!parse_flag(argc, argv, &i, &fake_opts)) {
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* workers inherit the mask */
    fake_record_init(fake_opts.record ? 1000 : 0);
    fake_script_reset(fake_opts.seed);
    static struct worker workers[MAX_WORKERS];
    int n = fake_opts.nworkers;
    if (bind_all(workers, n, &fake_opts) != 0) {
        return 1;
    }
    for (int i = 0; i < n; i++) {
        pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
    }
    if (!fake_opts.quiet) {
        printf("relay-fake listening on %s:%d\n", fake_opts.host,
               fake_opts.port);
        fflush(stdout);
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    for (int i = 0; i < n; i++) {
        uv_async_send(&workers[i].stop);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    fake_record_init(0);
    fake_script_reset(fake_opts.seed);
    log_thread_exit();
    return 0;
}
