#include "collections/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collections/filter.h"
#include "util/sys.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS collections ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, model TEXT NOT NULL,"
    " dims INTEGER NOT NULL, chunk_size INTEGER NOT NULL, overlap INTEGER NOT NULL,"
    " code_aware INTEGER NOT NULL, index_kind TEXT NOT NULL, created REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS documents ("
    " collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE, doc_id TEXT NOT NULL,"
    " metadata TEXT NOT NULL, content_hash TEXT NOT NULL, n_chunks INTEGER NOT NULL, updated REAL NOT NULL,"
    " PRIMARY KEY (collection_id, doc_id));"
    "CREATE TABLE IF NOT EXISTS chunks ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, collection_id INTEGER NOT NULL, doc_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, start_byte INTEGER NOT NULL, end_byte INTEGER NOT NULL, text TEXT NOT NULL,"
    " vector BLOB NOT NULL,"
    " FOREIGN KEY (collection_id, doc_id) REFERENCES documents(collection_id, doc_id) ON DELETE CASCADE);"
    "CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(collection_id, doc_id);";

/* Columns added after the first release: added to older databases when they are opened. */
static const char *const MIGRATIONS[] = {
    "ALTER TABLE collections ADD COLUMN enrich TEXT", /* enrichment configuration (JSON), NULL: none */
    "ALTER TABLE chunks ADD COLUMN context TEXT",     /* the chunk's enrichment context, NULL: none */
};

/* Adds the MIGRATIONS columns that are missing (a "duplicate column" failure means it is there). */
static int migrate(sqlite3 *db, char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof MIGRATIONS / sizeof *MIGRATIONS; i++) {
        char *msg = NULL;
        if (sqlite3_exec(db, MIGRATIONS[i], NULL, NULL, &msg) != SQLITE_OK && (!msg || !strstr(msg, "duplicate column"))) {
            embd_fail(err, errlen, "cannot upgrade the schema (%s): %s", MIGRATIONS[i], msg ? msg : "?");
            sqlite3_free(msg);
            return -1;
        }
        sqlite3_free(msg);
    }
    return 0;
}

/* A loaded, verified index of one collection. */
typedef struct loaded {
    int64_t coll_id;
    embd_vindex *v;
    struct loaded *next;
} loaded;

struct embd_store {
    pthread_mutex_t mu;
    sqlite3 *db;
    char *dir;
    loaded *idx;
    int64_t data_version; /* SQLite's: moves when another connection (process) commits */
};

bool embd_store_valid_name(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (!n || n > 64 || name[0] == '.' || name[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return false;
    }
    return true;
}

static int db_fail(embd_store *s, char *err, size_t errlen, const char *what) {
    embd_fail(err, errlen, "%s: %s", what, sqlite3_errmsg(s->db));
    return EMBD_STORE_ERR;
}

static void index_path(const embd_store *s, int64_t id, char *buf, size_t n) {
    snprintf(buf, n, "%s/c%lld.faiss", s->dir, (long long)id);
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

embd_store *embd_store_open(const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) && errno != EEXIST) {
        embd_fail(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    embd_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/collections.db", dir);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        embd_fail(err, errlen, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        embd_store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    char *msg = NULL;
    /* WAL + synchronous=FULL: a committed transaction survives a crash or power loss. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        embd_fail(err, errlen, "cannot initialise %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        embd_store_close(s);
        return NULL;
    }
    if (migrate(s->db, err, errlen)) {
        embd_store_close(s);
        return NULL;
    }
    return s;
}

void embd_store_close(embd_store *s) {
    if (!s) return;
    for (loaded *l = s->idx, *nx; l; l = nx) {
        nx = l->next;
        embd_vindex_free(l->v);
        free(l);
    }
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->dir);
    free(s);
}

static const char *kind_name(embd_vindex_kind k) { return k == EMBD_VINDEX_HNSW ? "hnsw" : "flat"; }

/* Reads one collection row by name into out; NOTFOUND when there is none. */
static int get_coll(embd_store *s, const char *name, embd_coll_info *out, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, name, model, dims, chunk_size, overlap, code_aware, index_kind, created,"
                           " (SELECT COUNT(*) FROM documents d WHERE d.collection_id = c.id),"
                           " (SELECT COUNT(*) FROM chunks k WHERE k.collection_id = c.id)"
                           " FROM collections c WHERE name = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, "collection lookup");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(st, 0);
        snprintf(out->name, sizeof out->name, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(out->model, sizeof out->model, "%s", (const char *)sqlite3_column_text(st, 2));
        out->dims = sqlite3_column_int(st, 3);
        out->opts.chunk_size = (size_t)sqlite3_column_int64(st, 4);
        out->opts.overlap = (size_t)sqlite3_column_int64(st, 5);
        out->opts.code_aware = sqlite3_column_int(st, 6) != 0;
        const char *k = (const char *)sqlite3_column_text(st, 7);
        out->opts.index = k && !strcmp(k, "hnsw") ? EMBD_VINDEX_HNSW : EMBD_VINDEX_FLAT;
        out->created = sqlite3_column_double(st, 8);
        out->n_documents = sqlite3_column_int64(st, 9);
        out->n_chunks = sqlite3_column_int64(st, 10);
        out->n_vectors = -1;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return EMBD_STORE_OK;
    if (rc == SQLITE_DONE) return embd_fail(err, errlen, "no collection '%s'", name), EMBD_STORE_NOTFOUND;
    return db_fail(s, err, errlen, "collection lookup");
}

static loaded *find_loaded(embd_store *s, int64_t id) {
    for (loaded *l = s->idx; l; l = l->next)
        if (l->coll_id == id) return l;
    return NULL;
}

static void forget_loaded(embd_store *s, int64_t id) {
    for (loaded **p = &s->idx; *p; p = &(*p)->next)
        if ((*p)->coll_id == id) {
            loaded *l = *p;
            *p = l->next;
            embd_vindex_free(l->v);
            free(l);
            return;
        }
}

/* Another process (the CLI beside a server) committed: loaded indexes may be stale, so they are
 * loaded and checked again on next use. */
static void refresh_if_changed(embd_store *s) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK) return;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        if (v != s->data_version)
            while (s->idx) forget_loaded(s, s->idx->coll_id);
        s->data_version = v;
    }
    sqlite3_finalize(st);
}

/* A fresh index filled from the vectors in SQLite. */
static embd_vindex *rebuild(embd_store *s, const embd_coll_info *c, char *err, size_t errlen) {
    embd_vindex *v = embd_vindex_new(c->dims, c->opts.index, 0, err, errlen);
    if (!v) return NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT id, vector FROM chunks WHERE collection_id = ? ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK) {
        db_fail(s, err, errlen, "index rebuild");
        embd_vindex_free(v);
        return NULL;
    }
    sqlite3_bind_int64(st, 1, c->id);
    enum { BATCH = 1024 };
    const size_t dims = (size_t)c->dims;
    float *x = malloc(BATCH * dims * sizeof *x);
    int64_t *ids = malloc(BATCH * sizeof *ids);
    size_t nb = 0;
    int rc, bad = !x || !ids;
    if (bad) embd_fail(err, errlen, "out of memory");
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(st, 1) != dims * sizeof(float)) {
            bad = embd_fail(err, errlen, "chunk %lld has a vector of the wrong size",
                            (long long)sqlite3_column_int64(st, 0));
            break;
        }
        ids[nb] = sqlite3_column_int64(st, 0);
        memcpy(x + nb * dims, sqlite3_column_blob(st, 1), dims * sizeof(float));
        if (++nb == BATCH) {
            bad = embd_vindex_add(v, nb, x, ids, err, errlen);
            nb = 0;
        }
    }
    if (!bad && rc != SQLITE_DONE) bad = db_fail(s, err, errlen, "index rebuild");
    if (!bad && nb) bad = embd_vindex_add(v, nb, x, ids, err, errlen);
    sqlite3_finalize(st);
    free(x), free(ids);
    if (bad) {
        embd_vindex_free(v);
        return NULL;
    }
    return v;
}

/* The collection's index, loaded and checked against SQLite on first use; rebuilt (and saved)
 * when the file is missing, unreadable or out of step. */
static embd_vindex *get_index(embd_store *s, const embd_coll_info *c, bool *rebuilt, char *err, size_t errlen) {
    refresh_if_changed(s);
    loaded *l = find_loaded(s, c->id);
    if (l) return l->v;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0) FROM chunks WHERE collection_id = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, errlen, "index check");
        return NULL;
    }
    sqlite3_bind_int64(st, 1, c->id);
    int64_t count = 0, max_id = 0;
    uint64_t sum = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        count = sqlite3_column_int64(st, 0);
        max_id = sqlite3_column_int64(st, 1);
        sum = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    char path[4096], ierr[256] = "";
    index_path(s, c->id, path, sizeof path);
    embd_vindex *v = access(path, F_OK) ? NULL : embd_vindex_read(path, ierr, sizeof ierr);
    if (v) {
        int64_t vmax;
        uint64_t vsum;
        embd_vindex_id_stats(v, &vmax, &vsum);
        if (embd_vindex_count(v) != count || vmax != max_id || vsum != sum || embd_vindex_dim(v) != c->dims ||
            embd_vindex_kind_of(v) != c->opts.index) {
            embd_vindex_free(v);
            v = NULL;
        }
    }
    if (rebuilt) *rebuilt = !v;
    if (!v) {
        v = rebuild(s, c, err, errlen);
        if (!v) return NULL;
        if (embd_vindex_write(v, path, ierr, sizeof ierr))
            fprintf(stderr, "embd: collection %s: %s (kept in memory, rebuilt on the next open)\n", c->name, ierr);
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        embd_vindex_free(v);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    *l = (loaded){c->id, v, s->idx};
    s->idx = l;
    return v;
}

int embd_store_create(embd_store *s, const char *name, const char *model, int dims, const embd_coll_opts *o,
                      char *err, size_t errlen) {
    if (!embd_store_valid_name(name))
        return embd_fail(err, errlen, "collection names are 1-64 characters of A-Z a-z 0-9 _ . - (not starting with . or -)"),
               EMBD_STORE_INVALID;
    if (dims <= 0 || !o->chunk_size || o->overlap >= o->chunk_size)
        return embd_fail(err, errlen, "invalid collection options"), EMBD_STORE_INVALID;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = EMBD_STORE_OK;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO collections(name, model, dims, chunk_size, overlap, code_aware, index_kind,"
                           " created, enrich) VALUES (?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "create collection");
    } else {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, model, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, dims);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)o->chunk_size);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)o->overlap);
        sqlite3_bind_int(st, 6, o->code_aware);
        sqlite3_bind_text(st, 7, kind_name(o->index), -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 8, wall_now());
        if (o->enrich) sqlite3_bind_text(st, 9, o->enrich, -1, SQLITE_STATIC);
        else sqlite3_bind_null(st, 9);
        int sr = sqlite3_step(st);
        if (sr == SQLITE_CONSTRAINT) rc = (embd_fail(err, errlen, "collection '%s' already exists", name), EMBD_STORE_EXISTS);
        else if (sr != SQLITE_DONE) rc = db_fail(s, err, errlen, "create collection");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int embd_store_info(embd_store *s, const char *name, embd_coll_info *out, bool *rebuilt, char *err, size_t errlen) {
    pthread_mutex_lock(&s->mu);
    int rc = get_coll(s, name, out, err, errlen);
    if (!rc) {
        embd_vindex *v = get_index(s, out, rebuilt, err, errlen);
        if (v) out->n_vectors = embd_vindex_count(v);
        else rc = EMBD_STORE_ERR;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int embd_store_list(embd_store *s, embd_coll_info **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = EMBD_STORE_OK;
    char **names = NULL;
    size_t nn = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT name FROM collections ORDER BY name", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "list collections");
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            char **p = realloc(names, (nn + 1) * sizeof *p);
            if (!p) break;
            names = p;
            names[nn] = strdup((const char *)sqlite3_column_text(st, 0));
            if (names[nn]) nn++;
        }
    }
    sqlite3_finalize(st);
    embd_coll_info *info = calloc(nn ? nn : 1, sizeof *info);
    if (!info && !rc) rc = embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < nn; i++) {
        if (!rc && !get_coll(s, names[i], &info[*n], err, errlen)) {
            loaded *l = find_loaded(s, info[*n].id);
            info[*n].n_vectors = l ? embd_vindex_count(l->v) : -1;
            (*n)++;
        }
        free(names[i]);
    }
    free(names);
    pthread_mutex_unlock(&s->mu);
    if (rc) free(info);
    else *out = info;
    return rc;
}

int embd_store_enrich_get(embd_store *s, const char *name, char **json, char *err, size_t errlen) {
    *json = NULL;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT enrich FROM collections WHERE name = ?", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "collection lookup");
    } else {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int sr = sqlite3_step(st);
        if (sr == SQLITE_DONE) rc = (embd_fail(err, errlen, "no collection '%s'", name), EMBD_STORE_NOTFOUND);
        else if (sr != SQLITE_ROW) rc = db_fail(s, err, errlen, "collection lookup");
        else if (sqlite3_column_type(st, 0) != SQLITE_NULL && !(*json = strdup((const char *)sqlite3_column_text(st, 0))))
            rc = embd_fail(err, errlen, "out of memory");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int exec(embd_store *s, const char *sql, char *err, size_t errlen) {
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_fail(s, err, errlen, sql);
    return 0;
}

int embd_store_drop(embd_store *s, const char *name, char *err, size_t errlen) {
    pthread_mutex_lock(&s->mu);
    embd_coll_info c;
    int rc = get_coll(s, name, &c, err, errlen);
    if (!rc) {
        sqlite3_stmt *st[3] = {0};
        static const char *const sql[3] = {"DELETE FROM chunks WHERE collection_id = ?",
                                           "DELETE FROM documents WHERE collection_id = ?",
                                           "DELETE FROM collections WHERE id = ?"};
        rc = exec(s, "BEGIN IMMEDIATE", err, errlen);
        for (int i = 0; i < 3 && !rc; i++) {
            if (sqlite3_prepare_v2(s->db, sql[i], -1, &st[i], NULL) != SQLITE_OK) {
                rc = db_fail(s, err, errlen, "drop collection");
                break;
            }
            sqlite3_bind_int64(st[i], 1, c.id);
            if (sqlite3_step(st[i]) != SQLITE_DONE) rc = db_fail(s, err, errlen, "drop collection");
        }
        for (int i = 0; i < 3; i++) sqlite3_finalize(st[i]);
        if (!rc) rc = exec(s, "COMMIT", err, errlen);
        if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        if (!rc) {
            /* ids are never reused, so a file left by a crash here is never mistaken for another's */
            char path[4096];
            index_path(s, c.id, path, sizeof path);
            unlink(path);
            forget_loaded(s, c.id);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool embd_store_doc_unchanged(embd_store *s, const char *coll, const char *id, const char *hash) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    bool same = false;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM documents d JOIN collections c ON c.id = d.collection_id"
                           " WHERE c.name = ? AND d.doc_id = ? AND d.content_hash = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, coll, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
        same = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return same;
}

int embd_store_set_metadata(embd_store *s, const char *coll, const char *id, const char *metadata, char *err,
                            size_t errlen) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE documents SET metadata = ?, updated = ? WHERE doc_id = ? AND collection_id ="
                           " (SELECT id FROM collections WHERE name = ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "update metadata");
    } else {
        sqlite3_bind_text(st, 1, metadata ? metadata : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 2, wall_now());
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, coll, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, errlen, "update metadata");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

typedef struct {
    int64_t *v;
    size_t n, cap;
} idlist;

static int id_push(idlist *l, int64_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int64_t *p = realloc(l->v, cap * sizeof *p);
        if (!p) return -1;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return 0;
}

/* Ids of a document's chunks, then the document and its chunks deleted (inside a transaction). */
static int delete_doc_rows(embd_store *s, int64_t cid, const char *doc_id, idlist *old, bool *existed, char *err,
                           size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM chunks WHERE collection_id = ? AND doc_id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(s, err, errlen, "delete document");
    sqlite3_bind_int64(st, 1, cid);
    sqlite3_bind_text(st, 2, doc_id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        if (id_push(old, sqlite3_column_int64(st, 0))) rc = embd_fail(err, errlen, "out of memory");
    sqlite3_finalize(st);
    static const char *const sql[2] = {"DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?",
                                       "DELETE FROM documents WHERE collection_id = ? AND doc_id = ?"};
    for (int i = 0; i < 2 && !rc; i++) {
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &st, NULL) != SQLITE_OK) return db_fail(s, err, errlen, "delete");
        sqlite3_bind_int64(st, 1, cid);
        sqlite3_bind_text(st, 2, doc_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, errlen, "delete document");
        else if (i == 1 && existed) *existed = sqlite3_changes(s->db) > 0;
        sqlite3_finalize(st);
    }
    return rc;
}

/* After a commit: bring the in-memory index in step (remove old, add new, or rebuild when the
 * index cannot remove) and save it. A failure here loses nothing: SQLite has the data and the
 * next open rebuilds. */
static void sync_index(embd_store *s, const embd_coll_info *c, const idlist *old, const idlist *added,
                       const float *const *vecs) {
    char ierr[256] = "", path[4096];
    loaded *l = find_loaded(s, c->id);
    if (!l) return;
    size_t removed = 0;
    int rc = embd_vindex_remove(l->v, old->n, old->v, &removed, ierr, sizeof ierr);
    for (size_t i = 0; !rc && i < added->n; i++)
        rc = embd_vindex_add(l->v, 1, vecs[i], &added->v[i], ierr, sizeof ierr);
    if (rc) { /* HNSW (no removal) or a failed add: start over from SQLite */
        embd_vindex *v = rebuild(s, c, ierr, sizeof ierr);
        if (!v) {
            fprintf(stderr, "embd: collection %s: index rebuild failed: %s\n", c->name, ierr);
            forget_loaded(s, c->id); /* retried on the next use */
            return;
        }
        embd_vindex_free(l->v);
        l->v = v;
    }
    index_path(s, c->id, path, sizeof path);
    if (getenv("EMBD_TEST_SKIP_INDEX_SAVE")) return; /* tests: a crash between commit and save */
    if (embd_vindex_write(l->v, path, ierr, sizeof ierr))
        fprintf(stderr, "embd: collection %s: %s (rebuilt on the next open)\n", c->name, ierr);
}

static int check_model(const embd_coll_info *c, const char *model, int dims, char *err, size_t errlen) {
    if (model && (strcmp(c->model, model) || c->dims != dims))
        return embd_fail(err, errlen, "collection '%s' was built with model '%s' (%d dims); this is '%s' (%d dims)",
                         c->name, c->model, c->dims, model, dims),
               EMBD_STORE_MISMATCH;
    return 0;
}

int embd_store_put(embd_store *s, const char *coll, const char *model, int dims, const embd_doc *docs, size_t n,
                   char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(docs[i].id, docs[j].id))
                return embd_fail(err, errlen, "document id '%s' appears twice", docs[i].id), EMBD_STORE_INVALID;
    pthread_mutex_lock(&s->mu);
    embd_coll_info c;
    idlist old = {0}, added = {0};
    const float **vecs = NULL;
    sqlite3_stmt *ins_doc = NULL, *ins_chunk = NULL;
    int rc = get_coll(s, coll, &c, err, errlen);
    if (!rc) rc = check_model(&c, model, dims, err, errlen);
    if (!rc && !get_index(s, &c, NULL, err, errlen)) rc = EMBD_STORE_ERR;
    if (rc) goto out;
    if ((rc = exec(s, "BEGIN IMMEDIATE", err, errlen))) goto out;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO documents(collection_id, doc_id, metadata, content_hash, n_chunks, updated)"
                           " VALUES (?,?,?,?,?,?)",
                           -1, &ins_doc, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO chunks(collection_id, doc_id, seq, start_byte, end_byte, text, vector, context)"
                           " VALUES (?,?,?,?,?,?,?,?)",
                           -1, &ins_chunk, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "ingest");
        goto rollback;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const embd_doc *d = &docs[i];
        if ((rc = delete_doc_rows(s, c.id, d->id, &old, NULL, err, errlen))) break;
        sqlite3_reset(ins_doc);
        sqlite3_bind_int64(ins_doc, 1, c.id);
        sqlite3_bind_text(ins_doc, 2, d->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_doc, 3, d->metadata ? d->metadata : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_doc, 4, d->hash ? d->hash : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_doc, 5, (sqlite3_int64)d->n_chunks);
        sqlite3_bind_double(ins_doc, 6, wall_now());
        if (sqlite3_step(ins_doc) != SQLITE_DONE) {
            rc = db_fail(s, err, errlen, "ingest");
            break;
        }
        for (size_t k = 0; k < d->n_chunks; k++) {
            const embd_chunk *ch = &d->chunks[k];
            sqlite3_reset(ins_chunk);
            sqlite3_bind_int64(ins_chunk, 1, c.id);
            sqlite3_bind_text(ins_chunk, 2, d->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins_chunk, 3, (sqlite3_int64)k);
            sqlite3_bind_int64(ins_chunk, 4, (sqlite3_int64)ch->start);
            sqlite3_bind_int64(ins_chunk, 5, (sqlite3_int64)ch->end);
            sqlite3_bind_text(ins_chunk, 6, d->text + ch->start, (int)(ch->end - ch->start), SQLITE_STATIC);
            sqlite3_bind_blob(ins_chunk, 7, d->vectors + k * (size_t)dims, (int)(dims * sizeof(float)), SQLITE_STATIC);
            if (d->contexts && d->contexts[k]) sqlite3_bind_text(ins_chunk, 8, d->contexts[k], -1, SQLITE_STATIC);
            else sqlite3_bind_null(ins_chunk, 8);
            if (sqlite3_step(ins_chunk) != SQLITE_DONE) {
                rc = db_fail(s, err, errlen, "ingest");
                break;
            }
            const float **nv = realloc(vecs, (added.n + 1) * sizeof *nv);
            if (!nv || id_push(&added, sqlite3_last_insert_rowid(s->db))) {
                if (nv) vecs = nv;
                rc = embd_fail(err, errlen, "out of memory");
                break;
            }
            vecs = nv;
            vecs[added.n - 1] = d->vectors + k * (size_t)dims;
        }
    }
    if (!rc) rc = exec(s, "COMMIT", err, errlen);
rollback:
    if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    else sync_index(s, &c, &old, &added, vecs);
out:
    sqlite3_finalize(ins_doc);
    sqlite3_finalize(ins_chunk);
    free(old.v), free(added.v), free(vecs);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int embd_store_delete_doc(embd_store *s, const char *coll, const char *doc_id, char *err, size_t errlen) {
    pthread_mutex_lock(&s->mu);
    embd_coll_info c;
    idlist old = {0}, none = {0};
    bool existed = false;
    int rc = get_coll(s, coll, &c, err, errlen);
    if (!rc && !get_index(s, &c, NULL, err, errlen)) rc = EMBD_STORE_ERR;
    if (!rc) rc = exec(s, "BEGIN IMMEDIATE", err, errlen);
    if (!rc) {
        rc = delete_doc_rows(s, c.id, doc_id, &old, &existed, err, errlen);
        if (!rc && !existed) rc = (embd_fail(err, errlen, "no document '%s' in '%s'", doc_id, coll), EMBD_STORE_NOTFOUND);
        if (!rc) rc = exec(s, "COMMIT", err, errlen);
        if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        else sync_index(s, &c, &old, &none, NULL);
    }
    free(old.v);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void embd_hits_free(embd_hit *h, size_t n) {
    if (!h) return;
    for (size_t i = 0; i < n; i++) free(h[i].doc_id), free(h[i].text), free(h[i].metadata), free(h[i].context);
    free(h);
}

typedef struct {
    int64_t id;
    size_t pos;
} id_pos;

static int by_id(const void *a, const void *b) {
    const id_pos *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Rows for the candidate ids that pass the filter, in the candidates' (score) order. */
static int fetch_hits(embd_store *s, const embd_coll_info *c, const int64_t *ids, const float *scores, size_t n,
                      const embd_filter *f, size_t k, embd_hit *out, size_t *nout, char *err, size_t errlen) {
    *nout = 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0) json_array_append_new(arr, json_integer(ids[i]));
    char *ids_json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!ids_json) return embd_fail(err, errlen, "out of memory");
    char *sql = NULL;
    if (asprintf(&sql,
                 "SELECT k.id, k.doc_id, k.text, d.metadata, k.seq, k.start_byte, k.end_byte, k.context FROM chunks k"
                 " JOIN documents d ON d.collection_id = k.collection_id AND d.doc_id = k.doc_id"
                 " WHERE k.collection_id = ? AND k.id IN (SELECT value FROM json_each(?))%s",
                 embd_filter_sql(f)) < 0) {
        free(ids_json);
        return embd_fail(err, errlen, "out of memory");
    }
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, errlen, "search");
    } else {
        sqlite3_bind_int64(st, 1, c->id);
        sqlite3_bind_text(st, 2, ids_json, -1, SQLITE_STATIC);
        embd_filter_bind(f, st, 3);
        embd_hit *tmp = calloc(n ? n : 1, sizeof *tmp);
        id_pos *order = malloc((n ? n : 1) * sizeof *order); /* id -> candidate position */
        if (!tmp || !order) rc = embd_fail(err, errlen, "out of memory");
        for (size_t i = 0; !rc && i < n; i++) order[i] = (id_pos){ids[i], i};
        if (!rc) qsort(order, n, sizeof *order, by_id);
        while (!rc && sqlite3_step(st) == SQLITE_ROW) {
            id_pos key = {sqlite3_column_int64(st, 0), 0}, *at = bsearch(&key, order, n, sizeof *order, by_id);
            if (!at || tmp[at->pos].doc_id) continue;
            int64_t id = key.id;
            embd_hit *h = &tmp[at->pos];
            h->chunk_id = id;
            h->score = scores[at->pos];
            h->doc_id = strdup((const char *)sqlite3_column_text(st, 1));
            h->text = strdup((const char *)sqlite3_column_text(st, 2));
            h->metadata = strdup((const char *)sqlite3_column_text(st, 3));
            h->seq = sqlite3_column_int64(st, 4);
            h->start = (size_t)sqlite3_column_int64(st, 5);
            h->end = (size_t)sqlite3_column_int64(st, 6);
            if (sqlite3_column_type(st, 7) != SQLITE_NULL) h->context = strdup((const char *)sqlite3_column_text(st, 7));
        }
        for (size_t i = 0; tmp && i < n; i++) { /* compact, keeping score order */
            if (!tmp[i].doc_id) {
                free(tmp[i].text), free(tmp[i].metadata), free(tmp[i].context);
                continue;
            }
            if (*nout < k) out[(*nout)++] = tmp[i];
            else free(tmp[i].doc_id), free(tmp[i].text), free(tmp[i].metadata), free(tmp[i].context);
        }
        free(tmp);
        free(order);
    }
    sqlite3_finalize(st);
    free(sql);
    free(ids_json);
    return rc;
}

int embd_store_search(embd_store *s, const char *coll, const char *model, int dims, const float *q, size_t k,
                      const json_t *filter, embd_hit **hits, size_t *n, char *err, size_t errlen) {
    *hits = NULL;
    *n = 0;
    embd_filter *f = NULL;
    if (embd_filter_compile(filter, "d.metadata", &f, err, errlen)) return EMBD_STORE_INVALID;
    pthread_mutex_lock(&s->mu);
    embd_coll_info c;
    embd_vindex *v = NULL;
    int rc = get_coll(s, coll, &c, err, errlen);
    if (!rc) rc = check_model(&c, model, dims, err, errlen);
    if (!rc && !(v = get_index(s, &c, NULL, err, errlen))) rc = EMBD_STORE_ERR;
    const size_t total = v ? (size_t)embd_vindex_count(v) : 0;
    embd_hit *out = calloc(k ? k : 1, sizeof *out);
    if (!rc && !out) rc = embd_fail(err, errlen, "out of memory");
    /* Filtered search over-fetches from the index and widens until k rows pass (or all were seen). */
    size_t fetch = f ? (k * 4 > 64 ? k * 4 : 64) : k;
    while (!rc && total && k) {
        if (fetch > total) fetch = total;
        float *sc = malloc(fetch * sizeof *sc);
        int64_t *ids = malloc(fetch * sizeof *ids);
        if (!sc || !ids) rc = embd_fail(err, errlen, "out of memory");
        else if (embd_vindex_search(v, q, fetch, sc, ids, err, errlen)) rc = EMBD_STORE_ERR;
        if (!rc) {
            for (size_t i = 0; i < *n; i++) free(out[i].doc_id), free(out[i].text), free(out[i].metadata), free(out[i].context);
            *n = 0;
            rc = fetch_hits(s, &c, ids, sc, fetch, f, k, out, n, err, errlen);
        }
        free(sc), free(ids);
        if (rc || *n >= k || fetch >= total) break;
        fetch *= 4;
    }
    pthread_mutex_unlock(&s->mu);
    embd_filter_free(f);
    if (rc) {
        embd_hits_free(out, *n);
        *n = 0;
        return rc;
    }
    *hits = out;
    return 0;
}
