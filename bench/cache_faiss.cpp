// bench/cache_faiss.cpp - the measurement behind docs/decisions.md 24:
// FAISS (Debian libfaiss-dev 1.7.3) HNSW on the same vectors as
// bench/cache.c (build/bench/cache_vectors.f32), one thread, so the index
// written here in C (src/cache/index.c) is compared with it on equal
// terms: insert time, lookup p50/p99 (k=8, efSearch=64) and recall@1
// against a flat scan, at 10k and 100k entries. Not part of the gateway;
// built and run by bench/cache.sh only when FAISS is installed.
//
// usage: cache_faiss VECTORS DIM
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double now_ms()
{
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch())
        .count();
}

static double pct(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    return v[(size_t)(p / 100.0 * (double)(v.size() - 1) + 0.5)];
}

static void run(const float *v, size_t n, const float *q, size_t nq,
                int dim, int efc)
{
    faiss::IndexHNSWFlat ix(dim, 32, faiss::METRIC_INNER_PRODUCT);
    ix.hnsw.efConstruction = efc;
    double t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        ix.add(1, v + i * dim); // one at a time, as entries arrive
    }
    double build = now_ms() - t0;
    faiss::IndexFlatIP flat(dim);
    flat.add(n, v);
    ix.hnsw.efSearch = 64;
    std::vector<double> ms;
    size_t right = 0;
    for (size_t j = 0; j < nq; j++) {
        float d[8], fd[1];
        faiss::Index::idx_t l[8], fl[1];
        double t1 = now_ms();
        ix.search(1, q + j * dim, 8, d, l);
        ms.push_back(now_ms() - t1);
        flat.search(1, q + j * dim, 1, fd, fl);
        right += l[0] == fl[0];
    }
    std::printf("| FAISS IndexHNSWFlat M=32 efC=%d, %zuk entries | insert "
                "%.3f ms per entry | lookup p50 %.3f ms, p99 %.3f ms, "
                "recall@1 %.3f |\n", efc, n / 1000, build / (double)n,
                pct(ms, 50), pct(ms, 99), (double)right / (double)nq);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s VECTORS DIM\n", argv[0]);
        return 2;
    }
    omp_set_num_threads(1);
    int dim = std::atoi(argv[2]);
    const size_t big = 100000, nq = 1000;
    std::vector<float> v((big + nq) * dim);
    FILE *f = std::fopen(argv[1], "rb");
    if (!f || std::fread(v.data(), sizeof(float), v.size(), f) != v.size()) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    std::fclose(f);
    const float *q = v.data() + big * dim;
    run(v.data(), 10000, q, nq, dim, 40);
    run(v.data(), big, q, nq, dim, 40);
    return 0;
}
