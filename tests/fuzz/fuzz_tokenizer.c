/*
 * fuzz_tokenizer.c - any bytes as a prompt, cut into WordPiece ids by the
 * semantic cache's tokenizer (src/cache/tokenizer.c: UTF-8 decoding,
 * BertNormalizer's cleaning, folding and CJK isolation, the split on
 * spaces and punctuation, greedy longest match with "##" pieces) over a
 * tiny vocabulary written by this target (not the real model's): letters
 * and their "##" pieces, a few words, digits, punctuation, one CJK
 * ideograph, an empty line and a bare "##".
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * with room for every id the text is accepted exactly when it is valid
 * UTF-8; an accepted text gives [CLS] ... [SEP], every id inside the
 * vocabulary; and truncation (max_ids from 2 to 65, from the first byte)
 * keeps the first ids of the untruncated answer and ends in [SEP].
 */
#include <unistd.h>

#include "cache/encoder_internal.h"
#include "fuzz.h"

static struct encoder_tokenizer *tok;
static int32_t cls_id, sep_id;

static void vocab_make(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/fuzz_tokenizer.XXXXXX");
    int fd = mkstemp(path);
    FUZZ_CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    /* ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3 */
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n\n##\n", f);
    for (char c = 'a'; c <= 'z'; c++) {
        fprintf(f, "%c\n##%c\n", c, c);
    }
    for (char c = '0'; c <= '9'; c++) {
        fprintf(f, "%c\n##%c\n", c, c);
    }
    fputs("hello\nworld\n##ing\nun\n##able\nthe\n.\n,\n!\n?\n-\n'\n\"\n"
          "(\n)\n$\n\xe7\x9a\x84\n\xe4\xb8\xad\n##\xc3\xa9\nrelay\n", f);
    fclose(f);
    char err[256];
    FUZZ_CHECK(encoder_tokenizer_new(path, &tok, err, sizeof(err)) == RL_OK);
    unlink(path);
    cls_id = 2;
    sep_id = 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok) {
        vocab_make();
    }
    if (size == 0) {
        return 0;
    }
    size_t max_small = 2 + data[0] % 64;
    char *text = fuzz_copy(data + 1, size - 1);
    size--;
    /* At most 3 ids per byte (a Hangul syllable: 3 bytes, 3 jamo, each
     * a piece at most) plus [CLS] and [SEP]. */
    size_t max_all = 3 * size + 2;
    int32_t *all = rl_malloc(max_all * sizeof(*all));
    size_t nall = 0;
    enum rl_err e = encoder_tokenizer_encode(tok, text, size, all, max_all,
                                             &nall);
    bool utf8 = json_check_utf8((const unsigned char *)text, size);
    if ((e == RL_OK) != utf8) {
        fuzz_show("text", text, size);
        FUZZ_CHECK(!"a text is accepted exactly when it is UTF-8");
    }
    FUZZ_CHECK(e == RL_OK || e == RL_E_INVALID_UTF8);
    if (e == RL_OK) {
        FUZZ_CHECK(nall >= 2 && nall <= max_all);
        FUZZ_CHECK(all[0] == cls_id && all[nall - 1] == sep_id);
        for (size_t i = 0; i < nall; i++) {
            FUZZ_CHECK(all[i] >= 0 &&
                       (size_t)all[i] < encoder_tokenizer_size(tok));
        }
        /* All room but a full answer: nothing may be cut. */
        FUZZ_CHECK(nall < max_all || size == 0);
    }
    int32_t small[65];
    size_t nsmall = 0;
    enum rl_err es = encoder_tokenizer_encode(tok, text, size, small,
                                              max_small, &nsmall);
    if (e == RL_OK) {
        FUZZ_CHECK(es == RL_OK);
        size_t want = nall <= max_small ? nall : max_small;
        FUZZ_CHECK(nsmall == want);
        FUZZ_CHECK(memcmp(small, all, (want - 1) * sizeof(*all)) == 0);
        FUZZ_CHECK(small[nsmall - 1] == sep_id);
    } else if (es == RL_OK) {
        /* Cut before the bad bytes: still a well-formed answer. */
        FUZZ_CHECK(nsmall == max_small && small[0] == cls_id &&
                   small[nsmall - 1] == sep_id);
    }
    free(all);
    free(text);
    return 0;
}
