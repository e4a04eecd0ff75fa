/*
 * main.c - the `relay` command line: serve, migrate, config check, models,
 * keys (src/admin/cli.c), cache compare (src/admin/cache_cli.c).
 *
 * Each command has --help. The configuration is --config FILE, else
 * $RELAY_CONFIG, else ./relay.yaml.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "config/config.h"
#include "gateway/gateway.h"
#include "providers/provider.h"
#include "store/store.h"
#include "util/clock.h"

#define RELAY_VERSION "0.1.0"

static const char usage_main[] =
    "relay - an OpenAI-compatible LLM gateway\n"
    "\n"
    "Usage: relay COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  serve          run the gateway\n"
    "  migrate        create or update the request log's tables\n"
    "  config check   validate the configuration and list every mistake\n"
    "  models         list the configured models with prices and tiers\n"
    "  keys           create, list, revoke and check API keys\n"
    "  cache compare  the semantic cache's decision for pairs of prompts\n"
    "                 (JSON lines on standard input)\n"
    "\n"
    "Options for every command:\n"
    "  --config FILE  configuration (default: $RELAY_CONFIG, else "
    "./relay.yaml)\n"
    "  -h, --help     help for the command\n"
    "  --version      print the version\n"
    "\n"
    "Run 'relay COMMAND --help' for more.\n";

static const char usage_serve[] =
    "Usage: relay serve [--config FILE] [--listen HOST:PORT]\n"
    "\n"
    "Runs the gateway: POST /v1/chat/completions, GET /v1/models, /healthz,\n"
    "/readyz. Logs one JSON line per request to standard error (or\n"
    "log_file). SIGHUP reloads the configuration without dropping a\n"
    "request; SIGTERM stops accepting and lets in-flight requests finish\n"
    "within server.shutdown_grace_ms.\n"
    "\n"
    "  --config FILE       configuration (default: $RELAY_CONFIG, else\n"
    "                      ./relay.yaml)\n"
    "  --listen HOST:PORT  overrides listen: in the configuration\n";

static const char usage_check[] =
    "Usage: relay config check [--config FILE]\n"
    "\n"
    "Loads the configuration as 'serve' would, expanding ${VAR} and\n"
    "${VAR:-default} from the environment and a .env file beside it, and\n"
    "prints every mistake as FILE:LINE: FIELD: MESSAGE. Exits 0 when the\n"
    "configuration is valid, 1 otherwise.\n";

static const char usage_models[] =
    "Usage: relay models [--config FILE]\n"
    "\n"
    "Lists the configured models: name, provider, upstream id, prices in\n"
    "USD per million tokens (input, cached input, output), quality tier\n"
    "and context window.\n";

static const char usage_migrate[] =
    "Usage: relay migrate [--config FILE]\n"
    "\n"
    "Applies the SQL files of migrations/ that the store lacks, in order,\n"
    "each once (recorded in schema_migrations), to the store named by\n"
    "store: in the configuration: postgres://... for PostgreSQL, or\n"
    "empty for SQLite at .relay/relay.db (sqlite:PATH for another file).\n"
    "'relay serve' does the same at start. Migrations are read from\n"
    "$RELAY_MIGRATIONS, else ./migrations, else migrations/ beside the\n"
    "binary's folder. Exits 0 when the store is up to date.\n";

struct cli {
    const char *config; /* --config */
    const char *listen; /* --listen */
    bool help;
};

static bool parse_opts(int argc, char **argv, struct cli *cli,
                       bool allow_listen)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (ch == 'c') {
            cli->config = optarg;
        } else if (ch == 'l' && allow_listen) {
            cli->listen = optarg;
        } else if (ch == 'h') {
            cli->help = true;
        } else {
            return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "relay: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (!cli->config) {
        cli->config = getenv("RELAY_CONFIG");
    }
    if (!cli->config || !*cli->config) {
        cli->config = "relay.yaml";
    }
    return true;
}

/* Loads the configuration or prints why not. */
static struct config *load(const char *path)
{
    struct buf errors;
    buf_init(&errors, 1 << 20);
    struct config *cfg = NULL;
    enum rl_err err = config_load(path, &cfg, &errors);
    if (err != RL_OK) {
        fprintf(stderr, "%s", errors.p ? errors.p : "");
        if (err == RL_E_IO) {
            fprintf(stderr, "relay: no configuration at %s. Copy "
                    "relay.example.yaml to relay.yaml, or pass --config "
                    "FILE.\n", path);
        } else {
            fprintf(stderr, "relay: %s is not valid; fix the lines above "
                    "(relay config check --config %s lists them).\n", path,
                    path);
        }
    }
    buf_free(&errors);
    return cfg;
}

static int cmd_serve(int argc, char **argv)
{
    struct cli cli = {0};
    if (!parse_opts(argc, argv, &cli, true)) {
        fputs(usage_serve, stderr);
        return 2;
    }
    if (cli.help) {
        fputs(usage_serve, stdout);
        return 0;
    }
    struct config *cfg = load(cli.config);
    return cfg ? gateway_serve(cfg, cli.listen) : 1;
}

static int cmd_check(int argc, char **argv)
{
    struct cli cli = {0};
    if (!parse_opts(argc, argv, &cli, false)) {
        fputs(usage_check, stderr);
        return 2;
    }
    if (cli.help) {
        fputs(usage_check, stdout);
        return 0;
    }
    struct config *cfg = load(cli.config);
    if (!cfg) {
        return 1;
    }
    printf("%s: ok (%zu providers, %zu models, %zu key%s)\n", cli.config,
           cfg->nproviders, cfg->nmodels, cfg->nkeys,
           cfg->nkeys == 1 ? "" : "s");
    if (cfg->nkeys == 0) {
        printf("warning: no API keys: every /v1 request would get 401. Set "
               "auth.keys (e.g. RELAY_API_KEY=$(cat .relay/api-key)).\n");
    }
    config_unref(cfg);
    return 0;
}

static void print_price(int64_t nusd)
{
    printf(" %7lld.%06lld", (long long)(nusd / 1000000000),
           (long long)(nusd % 1000000000 / 1000));
}

static int cmd_models(int argc, char **argv)
{
    struct cli cli = {0};
    if (!parse_opts(argc, argv, &cli, false)) {
        fputs(usage_models, stderr);
        return 2;
    }
    if (cli.help) {
        fputs(usage_models, stdout);
        return 0;
    }
    struct config *cfg = load(cli.config);
    if (!cfg) {
        return 1;
    }
    printf("%-24s %-12s %-32s %14s %14s %14s %4s %9s\n", "MODEL", "PROVIDER",
           "UPSTREAM", "INPUT $/M", "CACHED $/M", "OUTPUT $/M", "TIER",
           "CONTEXT");
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const struct model_cfg *m = &cfg->models[i];
        printf("%-24s %-12s %-32s", m->name, m->provider->name, m->upstream);
        print_price(m->input_nusd_per_mtok);
        print_price(m->cached_nusd_per_mtok);
        print_price(m->output_nusd_per_mtok);
        printf(" %4d %9lld\n", m->tier, (long long)m->context_tokens);
    }
    config_unref(cfg);
    return 0;
}

static int cmd_migrate(int argc, char **argv)
{
    struct cli cli = {0};
    if (!parse_opts(argc, argv, &cli, false)) {
        fputs(usage_migrate, stderr);
        return 2;
    }
    if (cli.help) {
        fputs(usage_migrate, stdout);
        return 0;
    }
    struct config *cfg = load(cli.config);
    if (!cfg) {
        return 1;
    }
    struct store_target t;
    char err[1024] = "";
    enum rl_err e = store_target_parse(cfg->store, &t, err, sizeof(err));
    uint32_t retention_days = cfg->log_retention_days;
    config_unref(cfg);
    if (e != RL_OK) {
        fprintf(stderr, "relay: %s\n", err);
        return 1;
    }
    struct store_conn *c = t.engine->connect(t.target, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "relay: cannot connect to %s at %s: %s\n%s",
                t.engine == &store_pg ? "PostgreSQL" : "SQLite", t.shown, err,
                t.engine == &store_pg
                    ? "Is it running? `make up` starts one.\n"
                    : "Is its folder there and writable?\n");
        return 1;
    }
    int napplied = 0;
    e = store_migrate(t.engine, c, &napplied, err, sizeof(err));
    struct store_maintenance m = {0};
    if (e == RL_OK && t.engine == &store_pg) {
        /* What the writer does at each connect: the coming days'
         * partitions, and retention. */
        e = store_partitions_maintain(t.engine, c,
                                      (int64_t)(clock_wall_ms() / 1000),
                                      retention_days, &m, err, sizeof(err));
    }
    t.engine->disconnect(c);
    if (e != RL_OK) {
        fprintf(stderr, "relay: %s\n", err);
        return 1;
    }
    printf("%s: %d migration%s applied; up to date\n", t.shown, napplied,
           napplied == 1 ? "" : "s");
    if (m.created || m.dropped) {
        printf("request_log: %d partition%s made, %d dropped (retention "
               "%u days)\n", m.created, m.created == 1 ? "" : "s",
               m.dropped, retention_days);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("relay %s\n", RELAY_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) {
        return cmd_serve(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "migrate") == 0) {
        return cmd_migrate(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "keys") == 0) {
        return admin_keys_main(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "cache") == 0) {
        return admin_cache_main(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "models") == 0) {
        return cmd_models(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "config") == 0) {
        if (argc >= 3 && strcmp(argv[2], "check") == 0) {
            return cmd_check(argc - 2, argv + 2);
        }
        fputs(usage_check, argc >= 3 && strcmp(argv[2], "--help") == 0
                               ? stdout
                               : stderr);
        return argc >= 3 && strcmp(argv[2], "--help") == 0 ? 0 : 2;
    }
    fprintf(stderr, "relay: unknown command '%s'\n\n%s", argv[1],
            usage_main);
    return 2;
}
