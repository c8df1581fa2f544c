/*
 * bench_raw: the raw SQLite ceiling for bgq's two hot paths, with nothing but SQLite in the way.
 *
 * Built and run by Scripts/bench (cc -O2 bench_raw.c -lsqlite3). Usage: bench_raw DIR N [SCHEMA.sql...]
 * Creates fresh WAL databases in DIR (journal_mode=WAL, synchronous=NORMAL, secure_delete=FAST, no memory
 * statistics, as bgq) with a
 * tasks-like table and an index like bgq's claim index, and prints one line per figure:
 *
 *   enqueue_single   N one-row enqueue transactions (BEGIN IMMEDIATE; INSERT; COMMIT)
 *   claim_single     N claim+complete pairs, one pair per transaction
 *   enqueue_batched  N enqueues in one transaction
 *   claim_batched    N claim+complete pairs, 100 pairs per transaction
 *
 * With SCHEMA.sql files (bgq's migrations, Migrations/NNNN_name.sql, applied in the order given, as bgq's migration
 * runner does), the batched forms run again on bgq's own schema (all of its indexes and triggers,
 * foreign keys on, random 8-hex-digit ids and seq from the sequence that events share, like bgq's
 * enqueue), still in plain C: what the schema costs, apart from bgq's code.
 *
 *   schema_enqueue_batched  N enqueues in one transaction, bgq's INSERT
 *   schema_claim_batched    N claim+complete pairs, 100 per transaction, as status updates that
 *                           fire bgq's triggers (no session rows, no slot leases)
 *
 * as "<name> <ops> <seconds> <ops_per_second>". The claim is the shape of bgq's: the next pending
 * row by (model_key, priority DESC, seq) through the partial index, UPDATE ... RETURNING, then an
 * UPDATE to done by id. No triggers, no event rows, no leases: this is the floor of the cost.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static sqlite3 *db;

static void die(const char *what) {
    fprintf(stderr, "bench_raw: %s: %s\n", what, db ? sqlite3_errmsg(db) : "(no database)");
    exit(1);
}

static void exec(const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "bench_raw: %s: %s\n", sql, error ? error : "?");
        exit(1);
    }
}

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *statement = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL) != SQLITE_OK) die(sql);
    return statement;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *name, int ops, double seconds) {
    printf("%s %d %.6f %.1f\n", name, ops, seconds, seconds > 0 ? ops / seconds : 0.0);
    fflush(stdout);
}

static void open_fresh(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open");
    sqlite3_busy_timeout(db, 5000);
    exec("PRAGMA journal_mode = WAL");
    exec("PRAGMA synchronous = NORMAL");
    exec("PRAGMA secure_delete = FAST");  /* as bgq sets it (Debian builds SQLite with secure_delete on) */
    exec("CREATE TABLE tasks ("
         " seq INTEGER PRIMARY KEY,"
         " id TEXT NOT NULL UNIQUE,"
         " status TEXT NOT NULL DEFAULT 'pending',"
         " model_key TEXT NOT NULL,"
         " priority INTEGER NOT NULL DEFAULT 0,"
         " payload TEXT NOT NULL,"
         " result TEXT,"
         " created_at TEXT NOT NULL,"
         " started_at TEXT,"
         " finished_at TEXT"
         ") STRICT");
    exec("CREATE INDEX tasks_claim ON tasks (model_key, priority DESC, seq) WHERE status = 'pending'");
    exec("CREATE INDEX tasks_status ON tasks (status, seq)");
}

static void close_db(void) {
    if (sqlite3_close(db) != SQLITE_OK) die("close");
    db = NULL;
}

static sqlite3_stmt *begin_statement, *commit_statement;

static void step_done(sqlite3_stmt *statement, const char *what) {
    if (sqlite3_step(statement) != SQLITE_DONE) die(what);
    sqlite3_reset(statement);
}

static void begin(void) { step_done(begin_statement, "begin"); }
static void commit(void) { step_done(commit_statement, "commit"); }

static sqlite3_stmt *insert_statement(void) {
    return prepare("INSERT INTO tasks (id, model_key, payload, created_at) "
                   "VALUES (?1, 'noop', ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))");
}

static void insert_one(sqlite3_stmt *insert, int i) {
    char id[32], payload[64];
    snprintf(id, sizeof id, "bg_%08x", (unsigned)i);
    snprintf(payload, sizeof payload, "bench task %d", i);
    sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, payload, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(insert) != SQLITE_DONE) die("insert");
    sqlite3_reset(insert);
}

/* One claim+complete pair; returns 0 when nothing was pending. */
static int claim_and_complete(sqlite3_stmt *claim, sqlite3_stmt *complete) {
    int rc = sqlite3_step(claim);
    if (rc == SQLITE_DONE) { sqlite3_reset(claim); return 0; }
    if (rc != SQLITE_ROW) die("claim");
    char id[64];
    snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(claim, 0));
    if (sqlite3_step(claim) != SQLITE_DONE) die("claim (finish)");
    sqlite3_reset(claim);
    sqlite3_bind_text(complete, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(complete) != SQLITE_DONE) die("complete");
    if (sqlite3_changes(db) != 1) die("complete changed no row");
    sqlite3_reset(complete);
    return 1;
}

static sqlite3_stmt *claim_statement(void) {
    return prepare("UPDATE tasks SET status = 'running', started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                   "WHERE seq = (SELECT seq FROM tasks WHERE status = 'pending' AND model_key = 'noop' "
                   "             ORDER BY priority DESC, seq LIMIT 1) AND status = 'pending' "
                   "RETURNING id");
}

static sqlite3_stmt *complete_statement(void) {
    return prepare("UPDATE tasks SET status = 'done', result = payload, "
                   "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1 AND status = 'running'");
}

static void check_all_done(int n) {
    sqlite3_stmt *count = prepare("SELECT count(*) FROM tasks WHERE status = 'done'");
    if (sqlite3_step(count) != SQLITE_ROW) die("count");
    int done = sqlite3_column_int(count, 0);
    sqlite3_finalize(count);
    if (done != n) {
        fprintf(stderr, "bench_raw: %d of %d tasks done\n", done, n);
        exit(1);
    }
}

static char *read_file(const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) { perror(path); exit(1); }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, file) != (size_t)size) { perror(path); exit(1); }
    text[size] = 0;
    fclose(file);
    return text;
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;

static unsigned long long next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The batched forms on bgq's own schema (the migrations, applied in order). */
static void schema_run(const char *dir, char **schema_paths, int schema_count, int n, int batch) {
    char path[4096];
    snprintf(path, sizeof path, "%s/raw-schema.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) die("open");
    sqlite3_busy_timeout(db, 5000);
    exec("PRAGMA journal_mode = WAL");
    exec("PRAGMA synchronous = NORMAL");
    exec("PRAGMA foreign_keys = ON");
    exec("PRAGMA secure_delete = FAST");
    for (int i = 0; i < schema_count; i++) {
        char *schema = read_file(schema_paths[i]);
        exec(schema);
        free(schema);
    }
    rng_state ^= (unsigned long long)time(NULL);
    begin_statement = prepare("BEGIN IMMEDIATE");
    commit_statement = prepare("COMMIT");
    sqlite3_stmt *insert = prepare(
        "INSERT INTO tasks (id, description, prompt, agent, model, model_key, parent_id, session_id, continues_session,"
        " priority, max_retries, on_complete, created_at, status_changed_at, status_reason, seq)"
        " VALUES (?1, ?2, ?3, 'noop', NULL, 'noop', NULL, NULL, 0, 0, 0, NULL, ?4, ?4, 'enqueued', ?5)");
    /* As bgq's enqueue: seq continues the id sequence of creations and events, read once per batch. */
    sqlite3_stmt *latest = prepare("SELECT max(coalesce((SELECT max(seq) FROM tasks), 0), coalesce((SELECT max(id) FROM task_events), 0))");
    const char *stamp = "2026-11-21T12:00:00.000Z";
    double t0 = now();
    begin();
    if (sqlite3_step(latest) != SQLITE_ROW) die("latest event id");
    sqlite3_int64 seq = sqlite3_column_int64(latest, 0);
    sqlite3_reset(latest);
    for (int i = 0; i < n; i++) {
        char id[32], text[64];
        for (;;) {
            snprintf(id, sizeof id, "bg_%08llx", next_random() & 0xffffffffULL);
            snprintf(text, sizeof text, "bench task %d", i);
            sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 2, text, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 3, text, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 4, stamp, -1, SQLITE_STATIC);
            sqlite3_bind_int64(insert, 5, seq + 1);
            int rc = sqlite3_step(insert);
            sqlite3_reset(insert);
            if (rc == SQLITE_DONE) { seq++; break; }
            if (sqlite3_extended_errcode(db) != SQLITE_CONSTRAINT_UNIQUE) die("schema insert");
        }
    }
    commit();
    report("schema_enqueue_batched", n, now() - t0);

    sqlite3_stmt *claim = prepare(
        "UPDATE tasks SET status = 'running', worker_id = 'wrk_00000001', attempt = attempt + 1,"
        " started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), concurrency_key = 'model:noop', last_progress_at = started_at,"
        " status_changed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), status_reason = 'claimed'"
        " WHERE seq = (SELECT seq FROM tasks WHERE status = 'pending' AND model_key = 'noop' ORDER BY priority DESC, seq LIMIT 1)"
        " AND status = 'pending' RETURNING id");
    sqlite3_stmt *complete = prepare(
        "UPDATE tasks SET status = 'completed', finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), result = prompt,"
        " status_changed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), status_reason = 'session finished'"
        " WHERE id = ?1 AND status = 'running'");
    t0 = now();
    int done = 0;
    while (done < n) {
        begin();
        for (int j = 0; j < batch && done < n; j++, done++) {
            if (!claim_and_complete(claim, complete)) die("nothing left to claim (schema)");
        }
        commit();
    }
    report("schema_claim_batched", n, now() - t0);
    sqlite3_finalize(begin_statement); sqlite3_finalize(commit_statement); sqlite3_finalize(insert);
    sqlite3_finalize(claim); sqlite3_finalize(complete); sqlite3_finalize(latest);
    close_db();
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_raw DIR N [SCHEMA.sql...]\n");
        return 2;
    }
    /* As bgq: no memory statistics (a global mutex around every SQLite allocation). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
#ifdef __GLIBC__
    /* SQLite opens and closes ephemeral tables inside bgq's trigger programs on every status update;
       with glibc's defaults each close trims the heap and the next open faults fresh pages in
       (about 100,000 brk calls per 10,000 claims, 3-5x slower). A ceiling should not measure that. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
#endif
    const char *dir = argv[1];
    int n = atoi(argv[2]);
    if (n <= 0) { fprintf(stderr, "bench_raw: N must be positive\n"); return 2; }
    const int batch = 100;

    /* (a) and (b): one transaction per operation, as separate processes would do it. */
    open_fresh(dir, "raw-single.db");
    begin_statement = prepare("BEGIN IMMEDIATE");
    commit_statement = prepare("COMMIT");
    sqlite3_stmt *insert = insert_statement();
    double t0 = now();
    for (int i = 0; i < n; i++) {
        begin();
        insert_one(insert, i);
        commit();
    }
    report("enqueue_single", n, now() - t0);

    sqlite3_stmt *claim = claim_statement();
    sqlite3_stmt *complete = complete_statement();
    t0 = now();
    for (int i = 0; i < n; i++) {
        begin();
        if (!claim_and_complete(claim, complete)) die("nothing left to claim");
        commit();
    }
    report("claim_single", n, now() - t0);
    check_all_done(n);
    sqlite3_finalize(begin_statement); sqlite3_finalize(commit_statement); sqlite3_finalize(insert);
    sqlite3_finalize(claim); sqlite3_finalize(complete);
    close_db();

    /* (c): the batched forms. */
    open_fresh(dir, "raw-batched.db");
    begin_statement = prepare("BEGIN IMMEDIATE");
    commit_statement = prepare("COMMIT");
    insert = insert_statement();
    t0 = now();
    begin();
    for (int i = 0; i < n; i++) insert_one(insert, i);
    commit();
    report("enqueue_batched", n, now() - t0);

    claim = claim_statement();
    complete = complete_statement();
    t0 = now();
    int done = 0;
    while (done < n) {
        begin();
        for (int j = 0; j < batch && done < n; j++, done++) {
            if (!claim_and_complete(claim, complete)) die("nothing left to claim");
        }
        commit();
    }
    report("claim_batched", n, now() - t0);
    check_all_done(n);
    sqlite3_finalize(begin_statement); sqlite3_finalize(commit_statement); sqlite3_finalize(insert);
    sqlite3_finalize(claim); sqlite3_finalize(complete);
    close_db();

    if (argc > 3) schema_run(dir, argv + 3, argc - 3, n, batch);
    return 0;
}
