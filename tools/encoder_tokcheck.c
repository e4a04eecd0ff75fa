/*
 * encoder_tokcheck.c - a driver for tools/encoder_tokcheck.py: reads one
 * JSON string a line on standard input and prints the C tokenizer's ids
 * for it, space-separated, one line each ("ERR" for an error). Built and
 * run by that script only; not part of the gateway.
 */
#include <stdio.h>

#include <jansson.h>

#include "cache/encoder.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: encoder_tokcheck MODEL_DIR < lines\n");
        return 2;
    }
    struct encoder *e = NULL;
    char err[512];
    if (encoder_open(argv[1], &e, err, sizeof(err)) != RL_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    static char line[1 << 20];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        json_t *s = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        int32_t ids[512];
        size_t n = 0;
        if (!json_is_string(s)
            || encoder_tokenize(e, json_string_value(s), json_string_length(s),
                                ids, 512, &n)
                   != RL_OK) {
            puts("ERR");
            json_decref(s);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            printf(i > 0 ? " %d" : "%d", (int)ids[i]);
        }
        putchar('\n');
        json_decref(s);
    }
    encoder_close(e);
    return 0;
}
