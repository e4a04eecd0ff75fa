/*
 * cli.c - `relay keys create|list|revoke|check`: API keys in the store of
 * the configuration (store: in relay.yaml), migrated first as `relay
 * migrate` would. `create` prints the new key once, alone on the last
 * line of standard output; only its SHA-256 and prefix are stored. Exit
 * status: 0 done, 1 failed (the message says what to do), 2 usage. Read
 * admin_keys_main() first.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "config/config.h"

static const char usage_keys[] =
    "Usage: relay keys COMMAND [OPTIONS]\n"
    "\n"
    "API keys kept in the store of the configuration (store: in\n"
    "relay.yaml; empty: SQLite at .relay/relay.db). Only a key's SHA-256\n"
    "and its prefix are stored; a running gateway sees a change within a\n"
    "second.\n"
    "\n"
    "  create --name NAME [--rpm N] [--tpm N] [--max-concurrent N]\n"
    "         [--budget-usd USD --period day|week|month|total]\n"
    "         [--models a,b]\n"
    "         [--routing max_latency_ms=600,min_quality_tier=2]\n"
    "         [--cache-threshold 0.95] [--cache-any-temperature]\n"
    "                     makes a key and prints it once, alone on the last\n"
    "                     line (0 for a limit: none; no --models:\n"
    "                     every model)\n"
    "  list [--json] [--all]  the live keys (--all: revoked ones too)\n"
    "  revoke ID|PREFIX   revokes a key (a prefix must name one live key)\n"
    "  check              reads a key on standard input; exits 0 if it is a\n"
    "                     live key of the store, 1 if not\n"
    "\n"
    "  --config FILE      configuration (default: $RELAY_CONFIG, else\n"
    "                     ./relay.yaml)\n"
    "  -h, --help         this help\n";

/* ---------------------------------------------------------------------
 * Arguments (pure)
 * ------------------------------------------------------------------- */

bool admin_opt_value(int argc, char **argv, int *i, const char *opt,
                     const char **v)
{
    size_t len = strlen(opt);
    if (strncmp(argv[*i], opt, len) != 0) {
        return false;
    }
    if (argv[*i][len] == '=') {
        *v = argv[*i] + len + 1;
        return true;
    }
    if (argv[*i][len] == '\0' && *i + 1 < argc) {
        *v = argv[++*i];
        return true;
    }
    return false;
}

static bool limit_opt(const char *opt, const char *v, int64_t *dst,
                      char *err, size_t n)
{
    char *end = NULL;
    long long x = v ? strtoll(v, &end, 10) : -1;
    if (!v || !*v || *end || x < 0 || x > 1000000000000LL) {
        snprintf(err, n, "%s: expected a whole number >= 0 (0: no limit), "
                 "not '%.40s'", opt, v ? v : "");
        return false;
    }
    *dst = x;
    return true;
}

/* One option of create; false with err set when it is wrong. */
static bool create_opt(int argc, char **argv, int *i, struct admin_cli *out,
                       char *err, size_t n, bool *known)
{
    struct store_key *k = &out->spec;
    const char *v = NULL;
    *known = true;
    if (admin_opt_value(argc, argv, i, "--name", &v)) {
        store_copy_text(k->name, sizeof(k->name), v);
        return true;
    }
    if (admin_opt_value(argc, argv, i, "--rpm", &v)) {
        return limit_opt("--rpm", v, &k->rpm, err, n);
    }
    if (admin_opt_value(argc, argv, i, "--tpm", &v)) {
        return limit_opt("--tpm", v, &k->tpm, err, n);
    }
    if (admin_opt_value(argc, argv, i, "--max-concurrent", &v)) {
        return limit_opt("--max-concurrent", v, &k->max_concurrent, err, n);
    }
    if (admin_opt_value(argc, argv, i, "--budget-usd", &v)) {
        return admin_spec_budget_usd(k, v, err, n);
    }
    if (admin_opt_value(argc, argv, i, "--period", &v)) {
        if (!store_period_parse(v, &k->budget_period)) {
            snprintf(err, n, "--period: expected day, week, month or "
                     "total, not '%.40s'", v);
            return false;
        }
        return true;
    }
    if (admin_opt_value(argc, argv, i, "--models", &v)) {
        return admin_spec_models_csv(k, v, err, n);
    }
    if (admin_opt_value(argc, argv, i, "--routing", &v)) {
        return admin_spec_routing_pairs(k, v, err, n);
    }
    if (strcmp(argv[*i], "--cache-any-temperature") == 0) {
        return admin_spec_cache_any_temperature(k, true);
    }
    if (admin_opt_value(argc, argv, i, "--cache-threshold", &v)) {
        return admin_spec_cache_threshold(k, v, err, n);
    }
    *known = false;
    return true;
}

static bool command(const char *word, struct admin_cli *out)
{
    static const struct {
        const char *word;
        enum admin_cmd cmd;
    } cmds[] = {
        {"create", ADMIN_CREATE}, {"list", ADMIN_LIST},
        {"revoke", ADMIN_REVOKE}, {"check", ADMIN_CHECK},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(word, cmds[i].word) == 0) {
            out->cmd = cmds[i].cmd;
            return true;
        }
    }
    return false;
}

/* One argument after the command word. */
static int one_arg(int argc, char **argv, int *i, struct admin_cli *out,
                   char *err, size_t n)
{
    const char *a = argv[*i];
    bool known = true;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        out->help = true;
    } else if (admin_opt_value(argc, argv, i, "--config", &out->config)) {
        /* taken */
    } else if (out->cmd == ADMIN_LIST && strcmp(a, "--json") == 0) {
        out->json = true;
    } else if (out->cmd == ADMIN_LIST && strcmp(a, "--all") == 0) {
        out->all = true;
    } else if (out->cmd == ADMIN_REVOKE && a[0] != '-' && !out->target) {
        out->target = a;
    } else if (out->cmd == ADMIN_CREATE) {
        if (!create_opt(argc, argv, i, out, err, n, &known)) {
            return 2;
        }
    } else {
        known = false;
    }
    if (!known) {
        snprintf(err, n, "unexpected argument '%.60s' (relay keys --help "
                 "lists the options)", a);
        return 2;
    }
    return 0;
}

int admin_cli_parse(int argc, char **argv, struct admin_cli *out, char *err,
                    size_t n)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->spec.models, sizeof(out->spec.models), "[]");
    snprintf(out->spec.routing, sizeof(out->spec.routing), "{}");
    snprintf(out->spec.cache, sizeof(out->spec.cache), "{}");
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        out->help = true;
        snprintf(err, n, "name a command: create, list, revoke or check");
        return argc < 2 ? 2 : 0;
    }
    if (!command(argv[1], out)) {
        snprintf(err, n, "unknown command '%.40s'; use create, list, revoke "
                 "or check", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (one_arg(argc, argv, &i, out, err, n) != 0) {
            return 2;
        }
    }
    if (out->help) {
        return 0;
    }
    if (out->cmd == ADMIN_REVOKE && !out->target) {
        snprintf(err, n, "revoke needs the key's id or prefix, as `relay "
                 "keys list` shows them");
        return 2;
    }
    if (out->cmd == ADMIN_CREATE && !admin_spec_check(&out->spec, err, n)) {
        return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * The commands
 * ------------------------------------------------------------------- */

struct config *admin_config_load(const char *config_path, const char *cmd)
{
    const char *path = config_path;
    if (!path || !*path) {
        path = getenv("RELAY_CONFIG");
    }
    if (!path || !*path) {
        path = "relay.yaml";
    }
    struct buf errors;
    buf_init(&errors, 1 << 20);
    struct config *cfg = NULL;
    enum rl_err err = config_load(path, &cfg, &errors);
    if (err != RL_OK) {
        fprintf(stderr, "%.*s", (int)errors.len, errors.p ? errors.p : "");
        fprintf(stderr, "relay %s: cannot load %s; fix it (relay config "
                "check --config %s) or pass --config FILE.\n", cmd, path,
                path);
        cfg = NULL;
    }
    buf_free(&errors);
    return cfg;
}

/* Opens the store of the configuration, migrated; prints why not. */
static bool open_store(const char *config_path, struct store_db *db)
{
    struct config *cfg = admin_config_load(config_path, "keys");
    if (cfg == NULL) {
        return false;
    }
    char why[1024] = "";
    enum rl_err err = store_db_open(cfg->store, true, db, why, sizeof(why));
    config_unref(cfg);
    if (err != RL_OK) {
        fprintf(stderr, "relay keys: %s\n", why);
        return false;
    }
    return true;
}

static void print_usd(int64_t nusd)
{
    char frac[16];
    snprintf(frac, sizeof(frac), "%09lld", (long long)(nusd % 1000000000));
    size_t len = strlen(frac);
    while (len > 2 && frac[len - 1] == '0') {
        frac[--len] = '\0';
    }
    printf("$%lld.%s", (long long)(nusd / 1000000000), frac);
}

static void print_limit(const char *label, int64_t v)
{
    if (v) {
        printf("%s %lld", label, (long long)v);
    } else {
        printf("%s none", label);
    }
}

static int cmd_create(struct store_db *db, struct admin_cli *cli)
{
    struct auth_new_key nk;
    if (auth_key_generate(&nk) != RL_OK) {
        fprintf(stderr, "relay keys: the OS gave no random bytes "
                "(getrandom failed); try again\n");
        return 1;
    }
    struct store_key *k = &cli->spec;
    memcpy(k->id, nk.id, sizeof(k->id));
    memcpy(k->prefix, nk.prefix, sizeof(k->prefix));
    memcpy(k->sha256_hex, nk.sha256_hex, sizeof(k->sha256_hex));
    char err[1024] = "";
    if (store_key_insert(db, k, err, sizeof(err)) != RL_OK) {
        fprintf(stderr, "relay keys: creating the key failed: %s\n", err);
        return 1;
    }
    printf("id:      %s\nname:    %s\nprefix:  %s\nlimits:  ", k->id,
           k->name, k->prefix);
    print_limit("rpm", k->rpm);
    print_limit(", tpm", k->tpm);
    print_limit(", max_concurrent", k->max_concurrent);
    printf("\nbudget:  ");
    if (k->budget_nusd) {
        print_usd(k->budget_nusd);
        printf(" per %s\n", store_period_name(k->budget_period));
    } else {
        printf("none\n");
    }
    printf("models:  %s\nrouting: %s\ncache:   %s\n",
           strcmp(k->models, "[]") ? k->models : "all", k->routing,
           k->cache);
    printf("The key is shown once, on the next line: keep it now.\n%s\n",
           nk.key);
    explicit_bzero(&nk, sizeof(nk));
    return 0;
}

static void print_row(const struct store_key *k)
{
    char budget[64] = "-";
    if (k->budget_nusd) {
        snprintf(budget, sizeof(budget), "$%lld.%02lld/%s",
                 (long long)(k->budget_nusd / 1000000000),
                 (long long)(k->budget_nusd % 1000000000 / 10000000),
                 store_period_name(k->budget_period));
    }
    printf("%-20s %-20.20s %-9s %7lld %9lld %-18s %-24.24s %-20s %s\n",
           k->id, k->name, k->prefix, (long long)k->rpm, (long long)k->tpm,
           budget, strcmp(k->models, "[]") ? k->models : "all",
           k->created_at, k->revoked_at[0] ? k->revoked_at : "-");
}

static int cmd_list(struct store_db *db, const struct admin_cli *cli)
{
    struct store_key *keys = NULL;
    size_t n = 0;
    char err[1024] = "";
    if (store_keys_list(db, cli->all, &keys, &n, err, sizeof(err)) !=
        RL_OK) {
        fprintf(stderr, "relay keys: listing the keys failed: %s\n", err);
        return 1;
    }
    if (cli->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(a, admin_key_json(&keys[i]));
        }
        char *text = json_dumps(a, JSON_INDENT(2));
        printf("%s\n", text ? text : "[]");
        free(text);
        json_decref(a);
    } else {
        printf("%-20s %-20s %-9s %7s %9s %-18s %-24s %-20s %s\n", "ID",
               "NAME", "PREFIX", "RPM", "TPM", "BUDGET", "MODELS",
               "CREATED", "REVOKED");
        for (size_t i = 0; i < n; i++) {
            print_row(&keys[i]);
        }
    }
    free(keys);
    return 0;
}

static int cmd_revoke(struct store_db *db, const struct admin_cli *cli)
{
    struct store_key k;
    char err[1024] = "";
    if (store_key_revoke(db, cli->target, &k, err, sizeof(err)) != RL_OK) {
        fprintf(stderr, "relay keys: %s\n", err);
        return 1;
    }
    printf("revoked %s (%s, %s); every gateway refuses it within a "
           "second\n", k.id, k.name, k.prefix);
    return 0;
}

/* Reads one key from standard input and says whether it is live. */
static int cmd_check(struct store_db *db)
{
    char line[600];
    if (!fgets(line, sizeof(line), stdin)) {
        fprintf(stderr, "relay keys check: give the key on standard "
                "input\n");
        return 1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    char hex[65];
    auth_sha256_hex(line, strlen(line), hex);
    explicit_bzero(line, sizeof(line));
    struct store_key *keys = NULL;
    size_t n = 0;
    char err[1024] = "";
    if (store_keys_list(db, false, &keys, &n, err, sizeof(err)) != RL_OK) {
        fprintf(stderr, "relay keys: listing the keys failed: %s\n", err);
        return 1;
    }
    int found = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].sha256_hex, hex) == 0) {
            found = (int)i;
        }
    }
    if (found >= 0) {
        printf("live: %s (%s, %s)\n", keys[found].id, keys[found].name,
               keys[found].prefix);
    } else {
        printf("not a live key of this store\n");
    }
    free(keys);
    return found >= 0 ? 0 : 1;
}

int admin_keys_main(int argc, char **argv)
{
    struct admin_cli cli;
    char err[1024] = "";
    int rc = admin_cli_parse(argc, argv, &cli, err, sizeof(err));
    if (rc != 0 && argc < 2) {
        fprintf(stderr, "relay keys: %s\n\n%s", err, usage_keys);
        return rc;
    }
    if (rc != 0) {
        fprintf(stderr, "relay keys: %s\n(relay keys --help lists the "
                "options)\n", err);
        return rc;
    }
    if (cli.help) {
        fputs(usage_keys, stdout);
        return 0;
    }
    struct store_db db;
    if (!open_store(cli.config, &db)) {
        return 1;
    }
    switch (cli.cmd) {
    case ADMIN_CREATE: rc = cmd_create(&db, &cli); break;
    case ADMIN_LIST: rc = cmd_list(&db, &cli); break;
    case ADMIN_REVOKE: rc = cmd_revoke(&db, &cli); break;
    default: rc = cmd_check(&db); break;
    }
    store_db_close(&db);
    return rc;
}
