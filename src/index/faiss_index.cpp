// The FAISS adapter: C++ stays in this file; exceptions never cross into C.
#include "index/faiss_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

using idx_t = faiss::Index::idx_t;
static_assert(sizeof(idx_t) == sizeof(int64_t), "FAISS ids are passed as int64_t");

struct embd_vindex {
    faiss::IndexIDMap *map;
    embd_vindex_kind kind;
    int ef_search; // 0: max(64, 2k) per search
};

namespace {

void set_err(char *err, size_t errlen, const char *what) {
    if (err && errlen) std::snprintf(err, errlen, "%s", what);
}

// Runs f, turning any exception into -1 and a message.
template <typename F> int guarded(char *err, size_t errlen, F f) {
    try {
        return f();
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown FAISS error");
    }
    return -1;
}

embd_vindex_kind kind_of_index(const faiss::Index *sub) {
    return dynamic_cast<const faiss::IndexHNSW *>(sub) ? EMBD_VINDEX_HNSW : EMBD_VINDEX_FLAT;
}

} // namespace

extern "C" {

embd_vindex *embd_vindex_new(int dim, embd_vindex_kind kind, int hnsw_m, char *err, size_t errlen) {
    if (dim <= 0) {
        set_err(err, errlen, "vector dimension must be positive");
        return nullptr;
    }
    embd_vindex *v = nullptr;
    guarded(err, errlen, [&] {
        faiss::Index *sub;
        if (kind == EMBD_VINDEX_HNSW) {
            auto *h = new faiss::IndexHNSWFlat(dim, hnsw_m > 0 ? hnsw_m : 32, faiss::METRIC_INNER_PRODUCT);
            h->hnsw.efConstruction = 80;
            sub = h;
        } else {
            sub = new faiss::IndexFlatIP(dim);
        }
        auto *map = new faiss::IndexIDMap(sub);
        map->own_fields = true;
        v = new embd_vindex{map, kind, 0};
        return 0;
    });
    return v;
}

void embd_vindex_free(embd_vindex *v) {
    if (!v) return;
    delete v->map;
    delete v;
}

int embd_vindex_dim(const embd_vindex *v) { return v->map->d; }
embd_vindex_kind embd_vindex_kind_of(const embd_vindex *v) { return v->kind; }
int64_t embd_vindex_count(const embd_vindex *v) { return v->map->ntotal; }

void embd_vindex_id_stats(const embd_vindex *v, int64_t *max_id, uint64_t *id_sum) {
    int64_t mx = 0;
    uint64_t sum = 0;
    for (idx_t id : v->map->id_map) {
        mx = std::max<int64_t>(mx, id);
        sum += (uint64_t)id;
    }
    *max_id = mx;
    *id_sum = sum;
}

int embd_vindex_add(embd_vindex *v, size_t n, const float *x, const int64_t *ids, char *err, size_t errlen) {
    if (!n) return 0;
    return guarded(err, errlen, [&] {
        v->map->add_with_ids((idx_t)n, x, reinterpret_cast<const idx_t *>(ids));
        return 0;
    });
}

int embd_vindex_remove(embd_vindex *v, size_t n, const int64_t *ids, size_t *removed, char *err, size_t errlen) {
    *removed = 0;
    if (!n) return 0;
    if (v->kind == EMBD_VINDEX_HNSW) return 1;
    return guarded(err, errlen, [&] {
        faiss::IDSelectorBatch sel((size_t)n, reinterpret_cast<const idx_t *>(ids));
        *removed = v->map->remove_ids(sel);
        return 0;
    });
}

int embd_vindex_search(const embd_vindex *v, const float *q, size_t k, float *scores, int64_t *ids, char *err,
                       size_t errlen) {
    if (!k) return 0;
    return guarded(err, errlen, [&] {
        if (auto *h = dynamic_cast<faiss::IndexHNSW *>(v->map->index))
            // efSearch below k would cap the result count; 64 keeps recall high for small k.
            h->hnsw.efSearch = v->ef_search ? (int)std::max<size_t>((size_t)v->ef_search, k)
                                            : (int)std::max<size_t>(64, 2 * k);
        // One query on one thread (this thread's OpenMP setting only): an OpenMP team's
        // spin-waiting took the cores inference needs, and on 2 loaded cores p99 went from
        // 0.9 ms to 8-12 ms on a 2k index (bench/README.md, Collections).
        omp_set_num_threads(1);
        v->map->search(1, q, (idx_t)k, scores, reinterpret_cast<idx_t *>(ids));
        return 0;
    });
}

int embd_vindex_set_ef_construction(embd_vindex *v, int ef_construction, char *err, size_t errlen) {
    if (ef_construction <= 0) {
        set_err(err, errlen, "HNSW efConstruction must be positive");
        return -1;
    }
    if (auto *h = dynamic_cast<faiss::IndexHNSW *>(v->map->index)) h->hnsw.efConstruction = ef_construction;
    return 0;
}

int embd_vindex_set_ef_search(embd_vindex *v, int ef_search, char *err, size_t errlen) {
    if (ef_search < 0) {
        set_err(err, errlen, "HNSW efSearch must not be negative");
        return -1;
    }
    v->ef_search = ef_search;
    return 0;
}

int embd_vindex_write(const embd_vindex *v, const char *path, char *err, size_t errlen) {
    // per process: two processes saving the same collection must not share a temp file
    std::string tmp = std::string(path) + ".tmp." + std::to_string(getpid());
    FILE *f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
        std::string m = "cannot write " + tmp + ": " + std::strerror(errno);
        set_err(err, errlen, m.c_str());
        return -1;
    }
    int rc = guarded(err, errlen, [&] {
        faiss::write_index(v->map, f);
        return 0;
    });
    if (!rc && (std::fflush(f) || fsync(fileno(f)))) {
        std::string m = "cannot write " + tmp + ": " + std::strerror(errno);
        set_err(err, errlen, m.c_str());
        rc = -1;
    }
    if (std::fclose(f) && !rc) {
        set_err(err, errlen, "cannot close the index file");
        rc = -1;
    }
    if (!rc && std::rename(tmp.c_str(), path)) {
        std::string m = "cannot rename " + tmp + ": " + std::strerror(errno);
        set_err(err, errlen, m.c_str());
        rc = -1;
    }
    if (rc) {
        std::remove(tmp.c_str());
        return -1;
    }
    // The rename itself must reach the disk too.
    std::string dir(path);
    size_t slash = dir.find_last_of('/');
    dir = slash == std::string::npos ? "." : dir.substr(0, slash ? slash : 1);
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

embd_vindex *embd_vindex_read(const char *path, char *err, size_t errlen) {
    embd_vindex *v = nullptr;
    guarded(err, errlen, [&] {
        faiss::Index *idx = faiss::read_index(path);
        auto *map = dynamic_cast<faiss::IndexIDMap *>(idx);
        if (!map || !map->index) {
            delete idx;
            set_err(err, errlen, "not an embd index file (no id map)");
            return -1;
        }
        v = new embd_vindex{map, kind_of_index(map->index), 0};
        return 0;
    });
    return v;
}

} // extern "C"
