#!/usr/bin/env bash
# bench-cache, the accuracy part: hit precision and recall on a labelled
# paraphrase set at the default threshold, and false hits on the
# adversarial near-miss set, through `relay cache compare` (the same
# decision as the running cache: cache_semantic_decide over the text that
# cache_semantic_split embeds).
#
# PLACEHOLDER: this part is built on the `nearmiss` branch (the datasets,
# `relay cache compare` and the near-miss guard). bench/cache.sh runs this
# file last; replace its body there.
echo "(bench-cache accuracy: not here yet; the nearmiss branch adds it)"
