/* hostile.c — throws what a careless or hostile C caller could at every function of ponder.h
 * (NULLs, freed and made-up handles, double frees, handles of the wrong kind, garbage JSON and
 * text, non-regular files, concurrent calls, callbacks and rewards that re-enter, cancel or free)
 * and checks that only the status codes the header documents come back and that nothing crashes
 * or hangs.
 *
 *   tests/c/run_hostile.sh                        (builds libponder.so and this, runs it)
 *   hostile [MODEL_DIR [GGUF]]                    all cases, each in its own process
 *   hostile --case NAME [MODEL_DIR [GGUF]]        one case in this process (for a debugger)
 *   HOSTILE_VERBOSE=1                             print every call's status and message
 *
 * Each case runs in a child process so a crash or hang is reported against that case and the
 * others still run. The exit status is the number of cases that failed. */
#define _GNU_SOURCE
#include <ponder.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *model_dir = "Tests/Fuzz/model";
static const char *gguf_path = "Tests/Fuzz/corpus/gguf/llama_f32_f16_bf16.gguf";
static char tmp[256];
static int failures;

/* ---- checks ---------------------------------------------------------------------------- */

#define S(code) (1u << (code))
#define OK S(PONDER_OK)
#define INVALID S(PONDER_ERR_INVALID_ARGUMENT)
#define PARSE S(PONDER_ERR_PARSE)
#define IO S(PONDER_ERR_IO)
#define FORMAT S(PONDER_ERR_FORMAT)
#define UNSUPPORTED S(PONDER_ERR_UNSUPPORTED)
#define OOM S(PONDER_ERR_OUT_OF_MEMORY)
#define CANCELLED S(PONDER_ERR_CANCELLED)
#define SMALL S(PONDER_ERR_BUFFER_TOO_SMALL)
#define MISUSE S(PONDER_ERR_MISUSE)
/* What bad JSON text may give: PARSE (malformed) or INVALID_ARGUMENT (well-formed, wrong). */
#define REJECTED (PARSE | INVALID)

static void fail(int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    FAIL line %d: ", line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

#define EXPECT(cond, ...) do { if (!(cond)) fail(__LINE__, __VA_ARGS__); } while (0)

static const char *shorten(const char *s) {
    static __thread char buf[160];
    size_t n = strlen(s);
    if (n < sizeof buf) return s;
    memcpy(buf, s, 150);
    strcpy(buf + 150, "...");
    return buf;
}

/* The status must be one of `allowed`; a failure must come with a message; INTERNAL ("a bug in
 * Ponder") is never acceptable. */
static ponder_status check(ponder_status s, unsigned allowed, const char *expr, const char *input, int line) {
    const char *msg = ponder_last_error();
    if (getenv("HOSTILE_VERBOSE"))
        printf("    %s%s%s -> %s: %s\n", expr, input ? " with " : "", input ? shorten(input) : "", ponder_status_string(s),
               s == PONDER_OK ? "" : shorten(msg ? msg : "(NULL)"));
    if (msg == NULL) {
        fail(line, "%s: ponder_last_error() returned NULL", expr);
    } else if (s < 0 || s > PONDER_ERR_INTERNAL || !(allowed & S(s))) {
        fail(line, "%s%s%s -> %d (%s)%s%s", expr, input ? " with " : "", input ? shorten(input) : "", (int)s,
             ponder_status_string(s), s == PONDER_OK ? "" : ": ", s == PONDER_OK ? "" : shorten(msg));
    } else if (s != PONDER_OK && msg[0] == '\0') {
        fail(line, "%s -> %s with an empty ponder_last_error()", expr, ponder_status_string(s));
    } else if (s == PONDER_ERR_PARSE && strstr(msg, "offset") == NULL) {
        fail(line, "%s%s%s -> PARSE without the byte offset: %s", expr, input ? " with " : "", input ? shorten(input) : "",
             shorten(msg));
    }
    return s;
}

#define CHECK(expr, allowed) check((expr), (allowed), #expr, NULL, __LINE__)
#define CHECK_IN(expr, allowed, input) check((expr), (allowed), #expr, (input), __LINE__)

/* Output pointers are preset to this; the header says a failing call leaves them untouched. */
#define SENTINEL ((void *)0x5EED)

static char *json_path(const char *key, const char *path) {
    static __thread char buf[4096];
    snprintf(buf, sizeof buf, "{\"%s\": \"%s\", \"threads\": 1}", key, path);
    return buf;
}

static ponder_model *load(const char *path) {
    ponder_model *m = NULL;
    if (ponder_model_load(json_path("path", path), &m) != PONDER_OK) {
        fail(__LINE__, "cannot load %s: %s", path, ponder_last_error());
        return NULL;
    }
    return m;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fail(__LINE__, "harness: cannot write %s", path);
    }
    if (f) fclose(f);
}

/* Handles that are not live: made-up addresses, stack and freed heap memory. */
static void *bogus_handles[6];
static void make_bogus_handles(void) {
    static int on_stack_like;
    void *freed = malloc(64);
    volatile uintptr_t freed_address = (uintptr_t)freed; /* a dangling handle, by design */
    free(freed);
    bogus_handles[0] = (void *)1;
    bogus_handles[1] = (void *)UINTPTR_MAX;
    bogus_handles[2] = &on_stack_like;
    bogus_handles[3] = (void *)freed_address;
    bogus_handles[4] = (void *)0x10000;
    bogus_handles[5] = (void *)&make_bogus_handles;
}

/* ---- cases ----------------------------------------------------------------------------- */

static void case_static_calls(void) {
    const char *v = ponder_version();
    EXPECT(v != NULL, "ponder_version() is NULL");
    if (v) {
        char expect[32];
        int n = ponder_version_number();
        snprintf(expect, sizeof expect, "%d.%d.%d", n / 10000, n / 100 % 100, n % 100);
        EXPECT(strcmp(v, expect) == 0, "ponder_version() %s vs ponder_version_number() %d", v, n);
    }
    int codes[] = {INT_MIN, -1, 0, 1, 5, 10, 11, 100, INT_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        const char *s = ponder_status_string((ponder_status)codes[i]);
        EXPECT(s != NULL && s[0] != '\0', "ponder_status_string(%d) is NULL or empty", codes[i]);
    }
    const char *e = ponder_last_error();
    EXPECT(e != NULL && e[0] == '\0', "ponder_last_error() before any failure is not \"\"");
    ponder_string_free(NULL);
}

static void case_load_null_arguments(void) {
    ponder_model *m = SENTINEL;
    CHECK(ponder_model_load(NULL, &m), MISUSE | INVALID);
    EXPECT(m == SENTINEL, "out_model written on failure");
    CHECK(ponder_model_load(json_path("path", model_dir), NULL), MISUSE);
    CHECK(ponder_model_load(NULL, NULL), MISUSE | INVALID);
}

static const char *garbage_options[] = {
    "", " ", "{", "}", "[]", "null", "0", "\"path\"", "{\"path\": 1}", "{\"path\": null}", "{\"path\": []}",
    "{\"path\": \"x\", \"threads\": 0}", "{\"path\": \"x\", \"threads\": 257}", "{\"path\": \"x\", \"threads\": -1}",
    "{\"path\": \"x\", \"threads\": 1.5}", "{\"path\": \"x\", \"threads\": \"2\"}",
    "{\"path\": \"x\", \"threads\": 1e400}", "{\"path\": \"x\", \"threads\": NaN}",
    "{\"path\": \"x\", \"threads\": 18446744073709551617}", "{\"path\": \"x\", \"bogus\": 1}",
    "{\"path\": \"x\", \"adapter\": 5}", "{\"path\": \"\xff\xfe\"}", "{\"path\": \"\xc0\xaf\"}",
    "{\"path\": \"\xed\xa0\x80\"}", "{\"path\": \"a\\u0000b\"}", "{\"path\": \"x\"} trailing", "{\"path\": \"x\",}",
    "{'path': 'x'}", "\xef\xbb\xbf{\"path\": \"x\"}", "{\"path\": \"x\" /* comment */}",
};

static void case_load_garbage_options(void) {
    for (size_t i = 0; i < sizeof garbage_options / sizeof *garbage_options; i++) {
        ponder_model *m = SENTINEL;
        CHECK_IN(ponder_model_load(garbage_options[i], &m), REJECTED | IO, garbage_options[i]);
        EXPECT(m == SENTINEL, "out_model written on failure (%s)", garbage_options[i]);
    }
    /* Deep nesting and a huge document: a parse error or a rejection, not a stack overflow. */
    size_t n = 1 << 20;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = 0;
    ponder_model *m = SENTINEL;
    CHECK_IN(ponder_model_load(deep, &m), REJECTED, "[[[[... (2^20 deep)");
    char *big = malloc(n + 64);
    strcpy(big, "{\"path\": \"");
    memset(big + 10, 'a', n);
    strcpy(big + 10 + n, "\"}");
    CHECK_IN(ponder_model_load(big, &m), REJECTED | IO, "{\"path\": \"aaaa... (1 MiB)\"}");
    EXPECT(m == SENTINEL, "out_model written on failure");
    free(deep);
    free(big);
}

static void case_load_bad_files(void) {
    char path[1024], dir[512];
    snprintf(path, sizeof path, "%s/garbage.gguf", tmp);
    write_file(path, "GGUF\x03\0\0\0garbage", 15);
    ponder_model *m = SENTINEL;
    CHECK_IN(ponder_model_load(json_path("path", path), &m), FORMAT, path);
    snprintf(path, sizeof path, "%s/empty", tmp);
    write_file(path, "", 0);
    CHECK_IN(ponder_model_load(json_path("path", path), &m), FORMAT | IO, path);
    snprintf(path, sizeof path, "%s/text.txt", tmp);
    write_file(path, "hello\n", 6);
    CHECK_IN(ponder_model_load(json_path("path", path), &m), FORMAT, path);
    const char *paths[] = {"/nonexistent/model.gguf", "", "/", "/dev/null", "/dev/zero", "/proc/self/maps", tmp};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        CHECK_IN(ponder_model_load(json_path("path", paths[i]), &m), IO | FORMAT, paths[i]);
    /* An HF directory with a corrupt config.json, then with a config.json that is a directory. */
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, "{\"vocab_size\": ", 15);
    CHECK_IN(ponder_model_load(json_path("path", dir), &m), PARSE | FORMAT, dir);
    unlink(path);
    mkdir(path, 0700);
    CHECK_IN(ponder_model_load(json_path("path", dir), &m), IO | FORMAT, dir);
    /* A good model with a missing or corrupt adapter. */
    char opts[1024];
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"adapter\": \"%s\"}", model_dir, tmp);
    CHECK_IN(ponder_model_load(opts, &m), IO | FORMAT, opts);
    EXPECT(m == SENTINEL, "out_model written on failure");
}

/* A FIFO (or any non-regular file) must be refused, not opened: open() on a FIFO blocks until a
 * writer comes, which never does. */
static void case_load_fifo(void) {
    char path[1024], dir[512];
    snprintf(path, sizeof path, "%s/fifo.gguf", tmp);
    if (mkfifo(path, 0600) != 0) { fail(__LINE__, "harness: mkfifo failed"); return; }
    ponder_model *m = SENTINEL;
    alarm(5);
    CHECK_IN(ponder_model_load(json_path("path", path), &m), IO | FORMAT, path);
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/config.json", dir);
    mkfifo(path, 0600);
    CHECK_IN(ponder_model_load(json_path("path", dir), &m), IO | FORMAT, "HF dir whose config.json is a FIFO");
    alarm(0);
    EXPECT(m == SENTINEL, "out_model written on failure");
}

static void case_free_null_and_twice(void) {
    ponder_model_free(NULL);
    ponder_trainer_free(NULL);
    ponder_model *m = load(model_dir);
    if (!m) return;
    ponder_model_free(m);
    ponder_model_free(m);
    char *out = SENTINEL;
    CHECK(ponder_model_info(m, &out), MISUSE);
    EXPECT(out == SENTINEL, "out_json written on failure");
}

/* A freed handle must stay dead even after new models are loaded: a handle value is never handed
 * out again, so a call with a freed one is MISUSE and freeing it again cannot free another model. */
static void case_stale_handle_does_not_alias(void) {
    enum { ROUNDS = 200 };
    static ponder_model *freed[ROUNDS];
    int reported = 0;
    for (int round = 0; round < ROUNDS; round++) {
        ponder_model *m = load(model_dir);
        if (!m) return;
        for (int k = 0; k < round && reported < 3; k++) {
            if (freed[k] != m) continue;
            char *out = SENTINEL;
            ponder_status s = ponder_model_info(freed[k], &out);
            fail(__LINE__, "round %d: the handle freed in round %d came back for a new model; a call with the freed "
                 "handle -> %s (expected MISUSE)", round, k, ponder_status_string(s));
            if (s == PONDER_OK) ponder_string_free(out);
            ponder_model_free(freed[k]); /* "freeing twice is detected and ignored" */
            s = ponder_model_info(m, &out);
            EXPECT(s == PONDER_OK, "round %d: freeing the stale handle again freed the new model (info -> %s)", round,
                   ponder_status_string(s));
            if (s == PONDER_OK) ponder_string_free(out);
            reported++;
            break;
        }
        ponder_model_free(m);
        freed[round] = m;
    }
}

static void case_bogus_handles(void) {
    make_bogus_handles();
    ponder_model *m = load(model_dir);
    if (!m) return;
    ponder_trainer *as_trainer = (ponder_trainer *)m;
    for (size_t i = 0; i < sizeof bogus_handles / sizeof *bogus_handles; i++) {
        ponder_model *b = bogus_handles[i];
        char *out = SENTINEL;
        int32_t ids[4] = {1, 2, 3, 4};
        size_t n = 77;
        CHECK(ponder_model_info(b, &out), MISUSE);
        CHECK(ponder_model_save(b, "{\"path\": \"/tmp/x.gguf\"}"), MISUSE);
        CHECK(ponder_tokenize(b, "hi", 2, true, ids, 4, &n), MISUSE);
        CHECK(ponder_detokenize(b, ids, 4, &out, NULL), MISUSE);
        CHECK(ponder_generate(b, "{\"prompt\": \"1\"}", &out), MISUSE);
        CHECK(ponder_generate_stream(b, "{\"prompt\": \"1\"}", NULL, NULL, &out), MISUSE);
        CHECK(ponder_infer(b, "{\"prompt\": \"1\"}", &out), MISUSE);
        CHECK(ponder_infer_ex(b, "{\"prompt\": \"1\"}", NULL, 0, &out), MISUSE);
        CHECK(ponder_infer_stream(b, "{\"prompt\": \"1\"}", NULL, 0, NULL, NULL, &out), MISUSE);
        CHECK(ponder_trainer_step((ponder_trainer *)b, &out), MISUSE);
        CHECK(ponder_trainer_run((ponder_trainer *)b, NULL, NULL, &out), MISUSE);
        CHECK(ponder_trainer_evaluate((ponder_trainer *)b, &out), MISUSE);
        CHECK(ponder_trainer_save((ponder_trainer *)b, tmp, &out), MISUSE);
        ponder_model *mm = SENTINEL;
        CHECK(ponder_trainer_model((ponder_trainer *)b, &mm), MISUSE);
        EXPECT(out == SENTINEL && mm == SENTINEL && n == 77, "an output written on failure (handle %p)", (void *)b);
        ponder_model_free(b);
        ponder_trainer_free((ponder_trainer *)b);
    }
    /* A live model handle is not a trainer handle, and one byte past it is not a model. */
    char *out = SENTINEL;
    CHECK(ponder_trainer_step(as_trainer, &out), MISUSE);
    ponder_trainer_free(as_trainer);
    CHECK(ponder_model_info((ponder_model *)((char *)m + 1), &out), MISUSE);
    ponder_model_free((ponder_model *)((char *)m + 1));
    CHECK(ponder_model_info(m, &out), OK);
    if (out != SENTINEL) ponder_string_free(out);
    ponder_model_free(m);
}

static void case_info_and_save(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    char *out = SENTINEL;
    CHECK(ponder_model_info(m, NULL), MISUSE);
    CHECK(ponder_model_info(NULL, &out), MISUSE);
    EXPECT(out == SENTINEL, "out_json written on failure");
    if (CHECK(ponder_model_info(m, &out), OK) == PONDER_OK) {
        EXPECT(strstr(out, "\"vocab_size\":300") != NULL, "info lacks vocab_size 300: %s", shorten(out));
        ponder_string_free(out);
    }
    CHECK(ponder_model_save(NULL, "{\"path\": \"/tmp/x.gguf\"}"), MISUSE);
    CHECK(ponder_model_save(m, NULL), MISUSE | INVALID);
    const char *bad[] = {"", "{", "{}", "{\"path\": 5}", "{\"path\": \"/tmp/x\", \"format\": \"onnx\"}",
                         "{\"path\": \"/tmp/x.gguf\", \"dtype\": \"q2_k\"}", "{\"path\": \"/tmp/x\", \"bogus\": true}",
                         "{\"path\": \"\xff\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_IN(ponder_model_save(m, bad[i]), REJECTED, bad[i]);
    char opts[1024], path[512];
    snprintf(opts, sizeof opts, "{\"path\": \"/nonexistent-dir/sub/model.gguf\"}");
    CHECK_IN(ponder_model_save(m, opts), IO, opts);
    snprintf(opts, sizeof opts, "{\"path\": \"/proc/version/model\", \"format\": \"safetensors\"}");
    CHECK_IN(ponder_model_save(m, opts), IO, opts);
    /* Round trips: what is saved loads again. */
    snprintf(path, sizeof path, "%s/saved.gguf", tmp);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"dtype\": \"f16\"}", path);
    if (CHECK_IN(ponder_model_save(m, opts), OK, opts) == PONDER_OK) {
        ponder_model *again = load(path);
        if (again) ponder_model_free(again);
    }
    snprintf(path, sizeof path, "%s/saved-hf", tmp);
    snprintf(opts, sizeof opts, "{\"path\": \"%s\", \"format\": \"safetensors\"}", path);
    if (CHECK_IN(ponder_model_save(m, opts), OK, opts) == PONDER_OK) {
        ponder_model *again = load(path);
        if (again) ponder_model_free(again);
    }
    ponder_model_free(m);
}

static const char *bad_utf8[] = {
    "\xff", "\xfe\xff", "a\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
    "\xe2\x82", "ok then \xc3",
};

static void case_tokenize(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    int32_t ids[64];
    size_t n = 77;
    CHECK(ponder_tokenize(NULL, "hi", 2, true, ids, 64, &n), MISUSE);
    CHECK(ponder_tokenize(m, NULL, 0, true, ids, 64, &n), MISUSE | OK);
    CHECK(ponder_tokenize(m, NULL, 5, true, ids, 64, &n), MISUSE);
    CHECK(ponder_tokenize(m, "hi", 2, true, ids, 64, NULL), MISUSE);
    n = 77;
    CHECK(ponder_tokenize(m, "hello", 5, true, NULL, 64, &n), MISUSE);
    CHECK(ponder_tokenize(m, "hello", 5, true, NULL, SIZE_MAX, &n), MISUSE);
    CHECK(ponder_tokenize(m, "hi", SIZE_MAX, true, ids, 64, &n), INVALID | MISUSE);
    CHECK(ponder_tokenize(m, "hi", (size_t)INT64_MAX + 7, true, ids, 64, &n), INVALID | MISUSE);
    /* Every failure but BUFFER_TOO_SMALL leaves n_ids untouched (the header's promise). */
    EXPECT(n == 77, "n_ids written by a failing call (%zu)", n);
    size_t dropped = 77;
    CHECK(ponder_tokenize_dropped(NULL, "hi", 2, true, &dropped), MISUSE);
    CHECK(ponder_tokenize_dropped(m, "hi", 2, true, NULL), MISUSE);
    CHECK(ponder_tokenize_dropped(m, NULL, 5, true, &dropped), MISUSE);
    CHECK(ponder_tokenize_dropped(m, "hi", SIZE_MAX, true, &dropped), INVALID | MISUSE);
    CHECK(ponder_tokenize_dropped(m, "\xff", 1, true, &dropped), PARSE);
    EXPECT(dropped == 77, "out_dropped written by a failing call (%zu)", dropped);
    CHECK(ponder_tokenize_dropped(m, "a\x04b", 3, true, &dropped), OK);
    EXPECT(dropped <= 1, "one control byte counted as %zu", dropped);
    /* Sizing call: capacity 0 and ids NULL report the count. */
    n = 0;
    CHECK(ponder_tokenize(m, "12 + 7 = 19", 11, true, NULL, 0, &n), SMALL);
    EXPECT(n > 0, "n_ids not set by the sizing call");
    for (int i = 0; i < 64; i++) ids[i] = -7;
    size_t need = n;
    CHECK(ponder_tokenize(m, "12 + 7 = 19", 11, true, ids, need - 1, &n), SMALL);
    EXPECT(n == need && ids[0] == -7, "BUFFER_TOO_SMALL wrote ids or a different count");
    CHECK(ponder_tokenize(m, "", 0, true, NULL, 0, &n), OK);
    EXPECT(n == 0, "empty text gave %zu ids", n);
    CHECK(ponder_tokenize(m, "a\0b\0<|im_end|>", 15, true, ids, 64, &n), OK);
    CHECK(ponder_tokenize(m, "<|im_start|>user<|im_end|>", 26, false, ids, 64, &n), OK);
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++)
        CHECK_IN(ponder_tokenize(m, bad_utf8[i], strlen(bad_utf8[i]), true, ids, 64, &n), PARSE, bad_utf8[i]);
    /* 1 MiB of text. */
    size_t big = 1 << 20;
    char *text = malloc(big);
    for (size_t i = 0; i < big; i++) text[i] = "0123456789 +-=\n"[i % 15];
    CHECK(ponder_tokenize(m, text, big, true, NULL, 0, &n), SMALL | OK | INVALID);
    free(text);
    ponder_model_free(m);
}

static void case_detokenize(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    char *out = SENTINEL;
    size_t len = 77;
    int32_t ids[] = {45, 46, 47};
    CHECK(ponder_detokenize(NULL, ids, 3, &out, &len), MISUSE);
    CHECK(ponder_detokenize(m, NULL, 3, &out, &len), MISUSE);
    CHECK(ponder_detokenize(m, ids, 3, NULL, &len), MISUSE);
    CHECK(ponder_detokenize(m, ids, SIZE_MAX, &out, &len), INVALID | MISUSE);
    EXPECT(out == SENTINEL && len == 77, "outputs written on failure");
    int32_t bad[][1] = {{-1}, {300}, {301}, {INT32_MAX}, {INT32_MIN}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char what[32];
        snprintf(what, sizeof what, "id %d", bad[i][0]);
        CHECK_IN(ponder_detokenize(m, bad[i], 1, &out, &len), INVALID, what);
    }
    EXPECT(out == SENTINEL && len == 77, "outputs written on failure");
    if (CHECK(ponder_detokenize(m, NULL, 0, &out, &len), OK) == PONDER_OK) {
        EXPECT(len == 0 && out && out[0] == 0, "empty detokenize gave %zu bytes", len);
        ponder_string_free(out);
    }
    if (CHECK(ponder_detokenize(m, ids, 3, &out, NULL), OK) == PONDER_OK) ponder_string_free(out);
    /* Every id, including specials and bytes that are not UTF-8 alone. */
    int32_t all[300];
    for (int i = 0; i < 300; i++) all[i] = i;
    if (CHECK(ponder_detokenize(m, all, 300, &out, &len), OK) == PONDER_OK) ponder_string_free(out);
    ponder_model_free(m);
}

/* Requests that are wrong in one way each (max_tokens 1, so nothing else is): rejected with PARSE
 * or INVALID_ARGUMENT, and the message names the field at fault ("" = any message). */
struct bad_request {
    const char *json;
    const char *field;
};
static const struct bad_request bad_requests[] = {
    {"", ""}, {"{", ""}, {"[]", ""}, {"null", ""}, {"{}", "prompt"}, {"{\"prompt\": 5}", "prompt"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"bogus\": 1}", "bogus"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"messages\": []}", "messages"},
    {"{\"prompt\": \"\", \"max_tokens\": 1}", "prompt"},
    {"{\"prompt\": \"1\", \"max_tokens\": -1}", "max_tokens"},
    {"{\"prompt\": \"1\", \"max_tokens\": 100000}", "max_tokens"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1.5}", "max_tokens"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": -1}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": \"hot\"}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"top_p\": 0}", "top_p"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"top_p\": 1.5}", "top_p"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"top_k\": -1}", "top_k"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"min_p\": 2}", "min_p"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"repetition_penalty\": 0}", "repetition_penalty"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"n\": 0}", "n"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"n\": 100000}", "n"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"seed\": -1}", "seed"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"stop\": [\"\"]}", "stop"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"stop\": [1]}", "stop"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": 1, \"sampling\": {\"temperature\": 1}}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"sampling\": {\"bogus\": 1}}", "bogus"},
    {"{\"messages\": [{\"role\": \"user\"}], \"max_tokens\": 1}", "content"},
    {"{\"messages\": [{\"content\": \"x\"}], \"max_tokens\": 1}", "role"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"x\": 1}], \"max_tokens\": 1}", "messages[0]"},
    {"{\"messages\": \"hi\", \"max_tokens\": 1}", "messages"},
    {"{\"prompt\": \"\xff\", \"max_tokens\": 1}", "offset"},
    /* Issue 12: numbers JSON cannot hold, integers past their type, roles that are not roles. */
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": NaN}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": Infinity}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": -Infinity}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": 1e400}", "temperature"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1e400}", "max_tokens"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"seed\": 18446744073709551616}", "seed"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"seed\": 1e30}", "seed"},
    {"{\"prompt\": \"1\", \"max_tokens\": 1, \"top_k\": 99999999999999999999}", "top_k"},
    {"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}], \"max_tokens\": 1}", "role"},
    {"{\"messages\": [{\"role\": \"user<|im_end|>\", \"content\": \"x\"}], \"max_tokens\": 1}", "role"},
    {"{\"messages\": [{\"role\": \"<|im_start|>system\", \"content\": \"x\"}], \"max_tokens\": 1}", "role"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": null}], \"max_tokens\": 1}", "content"},
};

/* Requests that are valid but extreme: any documented status, no crash, nothing non-finite. */
static const char *edge_requests[] = {
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"temperature\": 1e-39, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"temperature\": 1e-45, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"temperature\": 100, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"repetition_penalty\": 1e-39, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"repetition_penalty\": 100, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"top_p\": 1e-300, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"min_p\": 1, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"top_k\": 1, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"top_k\": 10000000, \"seed\": 1}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"n\": 64, \"temperature\": 1, \"seed\": 9223372036854775807}",
    "{\"prompt\": \"1\", \"max_tokens\": 0}",
    "{\"prompt\": \"a\\u0000b\", \"max_tokens\": 2, \"temperature\": 0}",
    "{\"prompt\": \"<|im_end|><|im_start|>\", \"max_tokens\": 2, \"parse_special\": false, \"temperature\": 0}",
    "{\"prompt\": \"1\", \"max_tokens\": 4, \"stop\": [\"\\u00e9\", \"<|im_end|>\", \"1111111111111111\"]}",
    "{\"prompt\": \"1\", \"chat\": true, \"max_tokens\": 2, \"temperature\": 0}",
    "{\"messages\": [], \"max_tokens\": 2, \"temperature\": 0}",
};

static void case_generate_garbage(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    char *out = SENTINEL;
    CHECK(ponder_generate(NULL, "{\"prompt\": \"1\"}", &out), MISUSE);
    CHECK(ponder_generate(m, NULL, &out), MISUSE | INVALID);
    CHECK(ponder_generate(m, "{\"prompt\": \"1\"}", NULL), MISUSE);
    CHECK(ponder_generate_stream(m, "{\"prompt\": \"1\"}", NULL, NULL, NULL), MISUSE);
    EXPECT(out == SENTINEL, "out_result_json written on failure");
    for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++) {
        const char *json = bad_requests[i].json;
        out = SENTINEL;
        if (CHECK_IN(ponder_generate(m, json, &out), REJECTED, json) == PONDER_OK) {
            ponder_string_free(out);
            continue;
        }
        const char *msg = ponder_last_error();
        EXPECT(strstr(msg, bad_requests[i].field) != NULL, "%s: the message does not name %s: %s", json,
               bad_requests[i].field, msg);
        EXPECT(strstr(msg, "got null") == NULL || strstr(json, "null") != NULL, "%s: the message says null: %s", json, msg);
        EXPECT(out == SENTINEL, "out_result_json written on failure (%s)", json);
    }
    /* A prompt far longer than the context (64 positions). */
    size_t n = 100000;
    char *req = malloc(n + 64);
    strcpy(req, "{\"prompt\": \"");
    memset(req + 12, '7', n);
    strcpy(req + 12 + n, "\", \"max_tokens\": 1}");
    CHECK_IN(ponder_generate(m, req, &out), INVALID, "a 100000-token prompt");
    free(req);
    ponder_model_free(m);
}

/* The writer prints non-finite numbers as null. */
static int logprobs_finite(const char *result) {
    for (const char *p = strstr(result, "\"logprobs\":["); p; p = strstr(p + 1, "\"logprobs\":[")) {
        const char *end = strchr(p, ']');
        const char *null = strstr(p, "null");
        if (null && end && null < end) return 0;
    }
    return 1;
}

static void case_generate_edges(int i) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    {
        char *out = SENTINEL;
        if (CHECK_IN(ponder_generate(m, edge_requests[i], &out), OK | INVALID | UNSUPPORTED, edge_requests[i]) == PONDER_OK) {
            EXPECT(out != SENTINEL && strstr(out, "\"completions\"") != NULL, "no completions in %s", shorten(out));
            EXPECT(logprobs_finite(out), "a logprob that is not a finite number in %s", shorten(out));
            ponder_string_free(out);
        }
    }
    ponder_model_free(m);
}

struct stream_state {
    ponder_model *m;
    int calls;
    int mode; /* 0 count, 1 cancel at once, 2 re-enter, 3 free the model mid-call */
    int failures;
};

static bool on_token(int32_t seq, int32_t token, const char *text, void *user) {
    struct stream_state *st = user;
    st->calls++;
    if (text == NULL || seq < 0 || token < 0 || token >= 300) st->failures++;
    if (st->mode == 1) return false;
    if (st->mode == 2) {
        int32_t ids[32];
        size_t n = 0;
        char *out = NULL;
        if (ponder_tokenize(st->m, "12 + 7", 6, true, ids, 32, &n) != PONDER_OK) st->failures++;
        if (ponder_generate(st->m, "{\"prompt\": \"1\", \"max_tokens\": 1, \"temperature\": 0}", &out) == PONDER_OK)
            ponder_string_free(out);
        else
            st->failures++;
    }
    if (st->mode == 3 && st->calls == 1) ponder_model_free(st->m);
    return true;
}

static void case_generate_callbacks(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    const char *req = "{\"prompt\": \"12 + 7 =\", \"max_tokens\": 4, \"n\": 2, \"temperature\": 0.7, \"seed\": 3}";
    struct stream_state st = {m, 0, 0, 0};
    char *out = SENTINEL;
    if (CHECK(ponder_generate_stream(m, req, on_token, &st, &out), OK) == PONDER_OK) ponder_string_free(out);
    EXPECT(st.calls == 8 && st.failures == 0, "callback: %d calls (expected 8), %d bad arguments", st.calls, st.failures);
    st = (struct stream_state){m, 0, 1, 0};
    out = SENTINEL;
    CHECK(ponder_generate_stream(m, req, on_token, &st, &out), CANCELLED);
    EXPECT(out == SENTINEL, "out_result_json written on cancel");
    st = (struct stream_state){m, 0, 2, 0};
    if (CHECK(ponder_generate_stream(m, req, on_token, &st, &out), OK) == PONDER_OK) ponder_string_free(out);
    EXPECT(st.failures == 0, "calls made from inside the callback failed (%d)", st.failures);
    /* "a call already running keeps the model alive until it returns, but a call that starts
     * after the free gets PONDER_ERR_MISUSE" */
    st = (struct stream_state){m, 0, 3, 0};
    out = SENTINEL;
    if (CHECK(ponder_generate_stream(m, req, on_token, &st, &out), OK) == PONDER_OK) ponder_string_free(out);
    out = SENTINEL;
    CHECK(ponder_generate(m, req, &out), MISUSE);
}

/* ---- concurrency ----------------------------------------------------------------------- */

#define THREADS 8
static ponder_model *shared_model;
static char *reference_text;
static pthread_barrier_t barrier;
static int thread_failures;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

static void thread_fail(const char *what, const char *detail) {
    pthread_mutex_lock(&failures_lock);
    printf("    FAIL (thread): %s: %s\n", what, shorten(detail));
    thread_failures++;
    pthread_mutex_unlock(&failures_lock);
}

static void *hammer(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < 20; i++) {
        int32_t ids[64];
        size_t n = 0;
        char *out = NULL;
        if (ponder_tokenize(shared_model, "12 + 7 = 19", 11, true, ids, 64, &n) != PONDER_OK)
            thread_fail("tokenize", ponder_last_error());
        if (ponder_detokenize(shared_model, ids, n, &out, NULL) != PONDER_OK) thread_fail("detokenize", ponder_last_error());
        else ponder_string_free(out);
        if (ponder_model_info(shared_model, &out) != PONDER_OK) thread_fail("info", ponder_last_error());
        else ponder_string_free(out);
        if (ponder_generate(shared_model, "{\"prompt\": \"12 + 7 =\", \"max_tokens\": 3, \"temperature\": 0}", &out) != PONDER_OK) {
            thread_fail("generate", ponder_last_error());
        } else {
            /* Greedy and seeded: every thread gets the same completion (timings aside). */
            char *c = strstr(out, "\"timings\"");
            if (c) *c = 0;
            if (strcmp(out, reference_text) != 0) thread_fail("generate differs across threads", out);
            ponder_string_free(out);
        }
    }
    return NULL;
}

static void run_threads(void *(*fn)(void *)) {
    pthread_t t[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, fn, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
}

static void case_concurrent_calls(void) {
    shared_model = load(model_dir);
    if (!shared_model) return;
    char *out = NULL;
    if (CHECK(ponder_generate(shared_model, "{\"prompt\": \"12 + 7 =\", \"max_tokens\": 3, \"temperature\": 0}", &out), OK))
        return;
    char *c = strstr(out, "\"timings\"");
    if (c) *c = 0;
    reference_text = strdup(out);
    ponder_string_free(out);
    run_threads(hammer);
    failures += thread_failures;
    ponder_model_free(shared_model);
    free(reference_text);
}

/* Each thread's last error is its own. */
static void *own_error(void *arg) {
    long i = (long)arg;
    char req[128], key[32];
    snprintf(key, sizeof key, "bogus_key_%ld", i);
    snprintf(req, sizeof req, "{\"prompt\": \"1\", \"%s\": 1}", key);
    pthread_barrier_wait(&barrier);
    for (int k = 0; k < 50; k++) {
        char *out = NULL;
        if (ponder_generate(shared_model, req, &out) != PONDER_ERR_INVALID_ARGUMENT) thread_fail("generate", "not rejected");
        pthread_barrier_wait(&barrier); /* every thread has now failed with its own message */
        if (strstr(ponder_last_error(), key) == NULL) thread_fail("last error of another thread", ponder_last_error());
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static void case_concurrent_last_error(void) {
    shared_model = load(model_dir);
    if (!shared_model) return;
    run_threads(own_error);
    failures += thread_failures;
    ponder_model_free(shared_model);
}

static ponder_model *freed_together;

static void *load_free(void *arg) {
    long i = (long)arg;
    pthread_barrier_wait(&barrier);
    for (int k = 0; k < 10; k++) {
        ponder_model *m = NULL;
        if (ponder_model_load(json_path("path", i % 2 ? model_dir : gguf_path), &m) != PONDER_OK) {
            thread_fail("load", ponder_last_error());
            continue;
        }
        char *out = NULL;
        if (ponder_model_info(m, &out) != PONDER_OK) thread_fail("info", ponder_last_error());
        else ponder_string_free(out);
        ponder_model_free(m);
    }
    /* All threads free the same handle at once: one frees it, the others are ignored. */
    pthread_barrier_wait(&barrier);
    ponder_model_free(freed_together);
    return NULL;
}

static void case_concurrent_load_free(void) {
    freed_together = load(model_dir);
    if (!freed_together) return;
    run_threads(load_free);
    failures += thread_failures;
    char *out = SENTINEL;
    CHECK(ponder_model_info(freed_together, &out), MISUSE);
}

/* ---- training -------------------------------------------------------------------------- */

static const char *tiny_sft =
    "{\"model\": {\"scratch\": {\"hidden_size\": 16, \"intermediate_size\": 32, \"num_layers\": 1, \"num_heads\": 2,"
    " \"num_kv_heads\": 1, \"context_length\": 96, \"seed\": 0}},"
    " \"data\": {\"train\": {\"generate\": \"arithmetic\", \"count\": 8, \"seed\": 1},"
    " \"eval\": {\"generate\": \"arithmetic\", \"count\": 2, \"seed\": 2}, \"max_length\": 96},"
    " \"training\": {\"batch_size\": 2, \"max_steps\": 3, \"learning_rate\": 1e-3}, \"threads\": 1}";

static const char *bad_sft[] = {
    "", "{", "{}", "[]", "{\"model\": {}}", "{\"model\": {\"path\": 1}, \"data\": {\"train\": \"x.jsonl\"}}",
    "{\"model\": {\"scratch\": {}}, \"data\": {}}",
    "{\"model\": {\"scratch\": {\"hidden_size\": -1}}, \"data\": {\"train\": {\"generate\": \"arithmetic\"}}}",
    "{\"model\": {\"scratch\": {\"hidden_size\": 1e400}}, \"data\": {\"train\": {\"generate\": \"arithmetic\"}}}",
    "{\"model\": {\"scratch\": {\"vocab_size\": 99999999999}}, \"data\": {\"train\": {\"generate\": \"arithmetic\"}}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": {\"generate\": \"poetry\"}}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"t.jsonl\"}, \"training\": {\"learning_rate\": NaN}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"t.jsonl\"}, \"training\": {\"batch_size\": 0}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"t.jsonl\"}, \"lora\": {\"r\": 0}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"t.jsonl\"}, \"lora\": {\"target_modules\": [\"x\"]}}",
    "{\"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"t.jsonl\"}, \"bogus\": 1}",
};

static void case_trainer_garbage(void) {
    ponder_trainer *t = SENTINEL;
    CHECK(ponder_trainer_create(NULL, &t), MISUSE | INVALID);
    CHECK(ponder_trainer_create(tiny_sft, NULL), MISUSE);
    for (size_t i = 0; i < sizeof bad_sft / sizeof *bad_sft; i++)
        CHECK_IN(ponder_trainer_create(bad_sft[i], &t), REJECTED, bad_sft[i]);
    /* Well-formed configs naming files that are missing or not what they claim. */
    char cfg[2048], path[512];
    snprintf(cfg, sizeof cfg, "{\"model\": {\"path\": \"/nonexistent.gguf\"}, \"data\": {\"train\": {\"generate\": \"arithmetic\"}}}");
    CHECK_IN(ponder_trainer_create(cfg, &t), IO, cfg);
    snprintf(path, sizeof path, "%s/train.jsonl", tmp);
    write_file(path, "{\"prompt\": \"1\", \"completion\": \"2\"}\nnot json\n", 45);
    snprintf(cfg, sizeof cfg, "{\"model\": {\"path\": \"%s\"}, \"data\": {\"train\": \"%s\"}}", model_dir, path);
    CHECK_IN(ponder_trainer_create(cfg, &t), PARSE | INVALID, cfg);
    write_file(path, "{\"prompt\": \"1\"}\n", 16);
    CHECK_IN(ponder_trainer_create(cfg, &t), INVALID, cfg);
    snprintf(cfg, sizeof cfg, "{\"model\": {\"path\": \"%s\"}, \"data\": {\"train\": \"/nonexistent.jsonl\"}}", model_dir);
    CHECK_IN(ponder_trainer_create(cfg, &t), IO, cfg);
    EXPECT(t == SENTINEL, "out_trainer written on failure");
}

static bool stop_now(const char *metrics, void *user) {
    (void)metrics;
    ++*(int *)user;
    return false;
}

static void case_trainer_lifecycle(void) {
    ponder_trainer *t = NULL;
    if (CHECK(ponder_trainer_create(tiny_sft, &t), OK)) return;
    char *out = SENTINEL;
    if (CHECK(ponder_trainer_step(t, &out), OK) == PONDER_OK) {
        EXPECT(strstr(out, "\"loss\"") != NULL, "no loss in %s", shorten(out));
        ponder_string_free(out);
    }
    CHECK(ponder_trainer_step(t, NULL), OK);
    CHECK(ponder_trainer_save(t, NULL, &out), MISUSE | INVALID);
    CHECK(ponder_trainer_save(t, "/proc/version/ckpt", &out), IO);
    CHECK(ponder_trainer_save(t, "\xff\xfe", &out), PARSE | INVALID | IO);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    out = SENTINEL;
    if (CHECK(ponder_trainer_save(t, dir, &out), OK) == PONDER_OK) ponder_string_free(out);
    CHECK(ponder_trainer_save(t, dir, NULL), OK);
    if (CHECK(ponder_trainer_evaluate(t, &out), OK) == PONDER_OK) ponder_string_free(out);
    CHECK(ponder_trainer_evaluate(t, NULL), MISUSE);
    int calls = 0;
    CHECK(ponder_trainer_run(t, stop_now, &calls, NULL), OK | CANCELLED);
    EXPECT(calls == 1, "run's callback returned false but was called %d times", calls);
    CHECK(ponder_trainer_run(t, NULL, NULL, &out), OK);
    if (out != SENTINEL) ponder_string_free(out);
    CHECK(ponder_trainer_step(t, &out), MISUSE); /* all steps done */
    ponder_model *m = SENTINEL;
    CHECK(ponder_trainer_model(t, NULL), MISUSE);
    if (CHECK(ponder_trainer_model(t, &m), OK) == PONDER_OK) {
        /* A model handle outlives its trainer. */
        ponder_trainer_free(t);
        ponder_trainer_free(t);
        CHECK(ponder_trainer_step(t, &out), MISUSE);
        if (CHECK(ponder_model_info(m, &out), OK) == PONDER_OK) ponder_string_free(out);
        if (CHECK(ponder_generate(m, "{\"prompt\": \"1+1=\", \"max_tokens\": 2, \"temperature\": 0}", &out), OK) == PONDER_OK)
            ponder_string_free(out);
        ponder_model_free(m);
    } else {
        ponder_trainer_free(t);
    }
}

/* ---- rewards --------------------------------------------------------------------------- */

struct bad_score {
    const char *json;
    const char *field;
};
static const struct bad_score bad_scores[] = {
    {"", "offset"}, {"{", "offset"}, {"[]", ""}, {"{}", "items"}, {"{\"items\": 5}", "items"},
    {"{\"items\": [{}]}", "completion"}, {"{\"items\": [{\"completion\": 5}]}", "completion"},
    {"{\"items\": [{\"completion\": \"x\", \"bogus\": 1}]}", "bogus"}, {"{\"items\": [], \"bogus\": 1}", "bogus"},
    {"{\"items\": [], \"rewards\": [\"speed\"]}", "rewards"}, {"{\"items\": [], \"rewards\": [\"format\", \"format\"]}", "rewards"},
    {"{\"items\": [], \"reward_weights\": [1]}", "reward_weights"},
    {"{\"items\": [], \"reward_weights\": [1, NaN, 1]}", "reward_weights"},
    {"{\"items\": [], \"format_mode\": \"loose\"}", "format_mode"},
    {"{\"items\": [], \"max_completion_length\": -1}", "max_completion_length"},
    {"{\"items\": [{\"completion\": \"x\", \"completion_tokens\": -5}]}", "completion_tokens"},
    {"{\"items\": [{\"completion\": \"\xff\"}]}", "offset"},
};

static void case_score(void) {
    char *out = SENTINEL;
    CHECK(ponder_score(NULL, &out), MISUSE | INVALID);
    CHECK(ponder_score("{\"items\": []}", NULL), MISUSE);
    EXPECT(out == SENTINEL, "out_result_json written on failure");
    for (size_t i = 0; i < sizeof bad_scores / sizeof *bad_scores; i++) {
        out = SENTINEL;
        if (CHECK_IN(ponder_score(bad_scores[i].json, &out), REJECTED, bad_scores[i].json) == PONDER_OK) {
            ponder_string_free(out);
            continue;
        }
        EXPECT(strstr(ponder_last_error(), bad_scores[i].field) != NULL, "%s: the message does not name %s: %s",
               bad_scores[i].json, bad_scores[i].field, ponder_last_error());
        EXPECT(out == SENTINEL, "out_result_json written on failure (%s)", bad_scores[i].json);
    }
    /* "Any completion text (unclosed or nested tags, megabytes) scores, never fails." */
    const char *texts[] = {"", "<think>", "<answer><answer>1</answer>", "</think></think><think>",
                           "<think>wait wait wait verify check</think><answer>\\\\boxed{\\\\frac{1}{0}}</answer>",
                           "\\\\boxed{", "\\\\boxed{\\\\boxed{\\\\boxed{((((((1))))))}}}", "99999999999999999999999999999999e999",
                           "<answer>1,2,3,4,5,6,7,8,9,0,1,2,3</answer>", "\\u0000<think>\\u0000</think>"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char req[1024];
        snprintf(req, sizeof req,
                 "{\"rewards\": [\"accuracy\", \"format\", \"reflection\", \"length\", \"repetition\"],"
                 " \"items\": [{\"completion\": \"%s\", \"reference\": \"#### 1\"}, {\"completion\": \"%s\"}]}", texts[i],
                 texts[i]);
        out = SENTINEL;
        if (CHECK_IN(ponder_score(req, &out), OK, req) == PONDER_OK) {
            EXPECT(strstr(out, "\"results\":[{") != NULL, "no results for %s: %s", texts[i], shorten(out));
            ponder_string_free(out);
        }
    }
    size_t n = 4 << 20;
    char *big = malloc(n + 128);
    strcpy(big, "{\"items\": [{\"reference\": \"7\", \"completion\": \"<think>");
    size_t at = strlen(big);
    for (size_t i = 0; at < n; i++) big[at++] = "3 + 4 = 7. Wait, let me check. "[i % 31];
    strcpy(big + at, "</think><answer>7</answer>\"}]}");
    out = SENTINEL;
    if (CHECK_IN(ponder_score(big, &out), OK, "a 4 MiB completion") == PONDER_OK) ponder_string_free(out);
    free(big);
}

static char *score_reference;

static void *score_in_thread(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    for (int k = 0; k < 50; k++) {
        char *out = NULL;
        if (ponder_score("{\"items\": [{\"completion\": \"<think>2+2=4, verify: 4-2=2.</think><answer>4</answer>\","
                         " \"reference\": \"4\"}]}", &out) != PONDER_OK) {
            thread_fail("score", ponder_last_error());
            continue;
        }
        if (strcmp(out, score_reference) != 0) thread_fail("score differs across threads", out);
        ponder_string_free(out);
    }
    return NULL;
}

static void case_concurrent_score(void) {
    if (CHECK(ponder_score("{\"items\": [{\"completion\": \"<think>2+2=4, verify: 4-2=2.</think><answer>4</answer>\","
                           " \"reference\": \"4\"}]}", &score_reference), OK))
        return;
    run_threads(score_in_thread);
    failures += thread_failures;
    ponder_string_free(score_reference);
}

/* A GRPO run small enough to step in a second: a scratch model, one prompt, two completions. */
static const char *tiny_grpo =
    "{\"kind\": \"grpo\", \"model\": {\"scratch\": {\"hidden_size\": 16, \"intermediate_size\": 32, \"num_layers\": 1,"
    " \"num_heads\": 2, \"num_kv_heads\": 1, \"context_length\": 128, \"seed\": 0}},"
    " \"data\": {\"train\": {\"generate\": \"arithmetic\", \"count\": 4, \"seed\": 1}},"
    " \"reward\": {\"rewards\": [\"accuracy\", \"mine\"], \"reward_weights\": [1, 1], \"custom\": [\"mine\"]},"
    " \"training\": {\"prompts_per_step\": 1, \"num_generations\": 2, \"max_completion_length\": 4, \"max_steps\": 6,"
    " \"learning_rate\": 1e-3}, \"threads\": 1}";

struct reward_state {
    int calls;
    int bad_arguments;
    int mode; /* 0 a number, 1 NaN, 2 infinity, 3 re-enter ponder_score */
};

static double my_reward(const char *prompt, const char *completion, const char *reference, void *user) {
    struct reward_state *st = user;
    st->calls++;
    if (prompt == NULL || completion == NULL) st->bad_arguments++;
    (void)reference;
    if (st->mode == 1) return 0.0 / 0.0;
    if (st->mode == 2) return 1.0 / 0.0;
    if (st->mode == 3) {
        char *out = NULL;
        if (ponder_score("{\"items\": [{\"completion\": \"1\"}]}", &out) == PONDER_OK) ponder_string_free(out);
        else st->bad_arguments++;
    }
    return (double)(strlen(completion) % 3);
}

static void case_trainer_set_reward(void) {
    make_bogus_handles();
    struct reward_state st = {0, 0, 0};
    for (size_t i = 0; i < sizeof bogus_handles / sizeof *bogus_handles; i++)
        CHECK(ponder_trainer_set_reward(bogus_handles[i], "mine", my_reward, &st), MISUSE);
    CHECK(ponder_trainer_set_reward(NULL, "mine", my_reward, &st), MISUSE);
    ponder_trainer *sft = NULL;
    if (CHECK(ponder_trainer_create(tiny_sft, &sft), OK) == PONDER_OK) {
        CHECK(ponder_trainer_set_reward(sft, "mine", my_reward, &st), MISUSE);
        ponder_trainer_free(sft);
    }
    ponder_model *m = load(model_dir);
    if (m) {
        CHECK(ponder_trainer_set_reward((ponder_trainer *)m, "mine", my_reward, &st), MISUSE);
        ponder_model_free(m);
    }
    ponder_trainer *t = NULL;
    if (CHECK(ponder_trainer_create(tiny_grpo, &t), OK)) return;
    CHECK(ponder_trainer_set_reward(t, "mine", NULL, &st), MISUSE);
    CHECK(ponder_trainer_set_reward(t, NULL, my_reward, &st), MISUSE | INVALID);
    CHECK(ponder_trainer_set_reward(t, "undeclared", my_reward, &st), INVALID);
    CHECK(ponder_trainer_set_reward(t, "\xff", my_reward, &st), PARSE | INVALID);
    char *out = SENTINEL;
    /* A declared reward still unregistered: MISUSE, state unchanged. */
    CHECK(ponder_trainer_step(t, &out), MISUSE);
    EXPECT(out == SENTINEL, "out_metrics_json written on failure");
    for (int mode = 0; mode < 4; mode++) {
        st = (struct reward_state){0, 0, mode};
        CHECK(ponder_trainer_set_reward(t, "mine", my_reward, &st), OK); /* again: replaces */
        out = SENTINEL;
        if (CHECK(ponder_trainer_step(t, &out), OK) == PONDER_OK) {
            EXPECT(strstr(out, "\"step\"") != NULL, "no step in %s", shorten(out));
            ponder_string_free(out);
        }
        EXPECT(st.calls == 2 && st.bad_arguments == 0, "reward mode %d: %d calls (expected 2), %d bad", mode, st.calls,
               st.bad_arguments);
    }
    int calls = 0;
    CHECK(ponder_trainer_run(t, stop_now, &calls, NULL), CANCELLED);
    EXPECT(calls == 1, "run's callback returned false but was called %d times", calls);
    ponder_trainer_free(t);
    CHECK(ponder_trainer_set_reward(t, "mine", my_reward, &st), MISUSE);
}

/* Agent environments: registration with bad handles and NULLs, then callbacks that misbehave in
 * every way a host can (garbage, NULL, invalid UTF-8, 1 MB, odd statuses, re-entering the
 * library): each ends its own episode, and a step returns OK. */
static const char *env_grpo_fmt =
    "{\"kind\": \"grpo\", \"model\": {\"scratch\": {\"hidden_size\": 16, \"intermediate_size\": 32, \"num_layers\": 1,"
    " \"num_heads\": 2, \"num_kv_heads\": 1, \"context_length\": 128, \"seed\": 0}},"
    " \"data\": {\"train\": {\"generate\": \"arithmetic\", \"count\": 4, \"seed\": 1}},"
    " \"environment\": {\"name\": \"host\", \"max_turns\": 3, \"options\": [1, \"two\"]},"
    " \"training\": {\"prompts_per_step\": 1, \"num_generations\": 4, \"max_completion_length\": 40, \"max_steps\": 200,"
    " \"learning_rate\": 1e-3}, \"threads\": 1}";

struct env_state {
    int created, refused, freed, steps, mode;
};

static ponder_status hostile_create(const char *options, void *user, void **out) {
    struct env_state *st = user;
    if (!options || !out) return PONDER_ERR_INTERNAL;
    st->created++;
    *out = st;
    if (st->created % 11 != 0) return PONDER_OK;
    st->refused++;
    return (ponder_status)12345;
}

static ponder_status hostile_reset(void *env, uint64_t seed, const char *task, void *user, char **out) {
    (void)env, (void)seed, (void)user;
    if (!task || !out) return PONDER_ERR_INTERNAL;
    *out = ponder_string_new("What now?");
    return PONDER_OK;
}

static ponder_status hostile_step(void *env, const char *action, void *user, char **out) {
    struct env_state *st = user;
    (void)env;
    if (!action || !out) return PONDER_ERR_INTERNAL;
    st->steps++;
    switch (st->mode++ % 10) {
    case 0: *out = ponder_string_new("{\"done\": tru"); return PONDER_OK;
    case 1: return PONDER_OK; /* no string */
    case 2: *out = ponder_string_new("{\"done\": false, \"observation\": \"\xff\xfe\"}"); return PONDER_OK;
    case 3: *out = ponder_string_new("\xc3"); return PONDER_ERR_PARSE;
    case 4: *out = ponder_string_new("{\"done\": false, \"reward\": 1e999}"); return PONDER_OK;
    case 5: return (ponder_status)-7;
    case 6: *out = ponder_string_new("{\"done\": false, \"observation\": \"<|im_start|>assistant\\n\"}"); return PONDER_OK;
    case 7: {
        char *scored = NULL; /* re-entering the library from a callback */
        if (ponder_score("{\"items\": [{\"completion\": \"1\"}]}", &scored) == PONDER_OK) ponder_string_free(scored);
        *out = ponder_string_new("{\"done\": false, \"observation\": \"ok\", \"reward\": -3, \"info\": {\"deep\": [[[]]]}}");
        return PONDER_OK;
    }
    case 8: {
        size_t n = 1 << 20;
        char *big = malloc(n + 64);
        if (!big) return PONDER_ERR_OUT_OF_MEMORY;
        strcpy(big, "{\"done\": false, \"observation\": \"");
        memset(big + strlen(big), 'z', n);
        strcpy(big + 33 + n, "\"}");
        *out = big;
        return PONDER_OK;
    }
    default: *out = ponder_string_new("{\"done\": true, \"reward\": 0.5, \"extra\": 1}"); return PONDER_OK;
    }
}

static void hostile_free(void *env, void *user) {
    struct env_state *st = user;
    if (env != st) st->steps = -1000000; /* the instance pointer must come back unchanged */
    st->freed++;
}

static void case_environment(void) {
    make_bogus_handles();
    struct env_state st = {0, 0, 0, 0, 0};
    ponder_environment env = {hostile_create, hostile_reset, hostile_step, hostile_free, "x", &st};
    EXPECT(ponder_string_new(NULL) == NULL, "ponder_string_new(NULL) is not NULL");
    for (size_t i = 0; i < sizeof bogus_handles / sizeof *bogus_handles; i++) {
        CHECK(ponder_trainer_set_environment(bogus_handles[i], "host", &env), MISUSE);
        CHECK(ponder_pipeline_register_environment(bogus_handles[i], "host", &env), MISUSE);
    }
    CHECK(ponder_trainer_set_environment(NULL, "host", &env), MISUSE);
    CHECK(ponder_pipeline_register_environment(NULL, "host", &env), MISUSE);
    ponder_trainer *sft = NULL;
    if (CHECK(ponder_trainer_create(tiny_sft, &sft), OK) == PONDER_OK) {
        CHECK(ponder_trainer_set_environment(sft, "host", &env), MISUSE);
        ponder_trainer_free(sft);
    }
    static char config[4096];
    snprintf(config, sizeof config, "%s", env_grpo_fmt);
    ponder_trainer *t = NULL;
    if (CHECK(ponder_trainer_create(config, &t), OK)) return;
    char *out = SENTINEL;
    CHECK(ponder_trainer_step(t, &out), MISUSE); /* "host" unregistered: state unchanged */
    EXPECT(out == SENTINEL, "out_metrics_json written on failure");
    CHECK(ponder_trainer_set_environment(t, "host", NULL), MISUSE);
    CHECK(ponder_trainer_set_environment(t, NULL, &env), MISUSE);
    CHECK(ponder_trainer_set_environment(t, "\xff", &env), PARSE | INVALID);
    CHECK(ponder_trainer_set_environment(t, "calculator", &env), INVALID);
    CHECK(ponder_trainer_set_environment(t, "other", &env), INVALID);
    ponder_environment partial = env;
    partial.step = NULL;
    CHECK(ponder_trainer_set_environment(t, "host", &partial), MISUSE);
    partial = env;
    partial.action_end = "\xff";
    CHECK(ponder_trainer_set_environment(t, "host", &partial), PARSE | INVALID);
    /* A delimiter per step, so that some actions end (a random model plans none). */
    char delimiter[2] = {0, 0};
    for (int c = 0x21; c < 0x7f && st.steps < 40; c++) {
        delimiter[0] = (char)c;
        env.action_end = delimiter;
        if (CHECK(ponder_trainer_set_environment(t, "host", &env), OK)) break;
        out = NULL;
        if (CHECK(ponder_trainer_step(t, &out), OK) == PONDER_OK) ponder_string_free(out);
    }
    ponder_trainer_free(t);
    EXPECT(st.steps >= 10, "only %d environment steps", st.steps);
    EXPECT(st.refused > 0 && st.created - st.refused == st.freed, "%d instances made, %d refused, %d freed", st.created,
           st.refused, st.freed);
}

static const char *bad_grpo[] = {
    "{\"kind\": \"ppo\", \"model\": {\"path\": \"m.gguf\"}}", "{\"kind\": 5, \"model\": {\"path\": \"m.gguf\"}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"training\": {\"num_generations\": 0}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"training\": {\"loss_type\": \"ppo\"}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"training\": {\"beta\": NaN}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"training\": {\"temperature\": -1}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"reward\": {\"rewards\": [\"x\"]}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"reward\": {\"custom\": [5]}}",
    "{\"kind\": \"grpo\", \"model\": {\"path\": \"m.gguf\"}, \"data\": {\"train\": \"p.jsonl\"}, \"training\": {\"batch_size\": 4}}",
    "{\"kind\": \"rejection_sft\", \"model\": {\"path\": \"m.gguf\"}, \"rejection\": {\"num_samples\": 0}}",
    "{\"kind\": \"rejection_sft\", \"model\": {\"path\": \"m.gguf\"}, \"rejection\": {\"require\": [\"speed\"]}}",
};

static void case_trainer_kinds_garbage(void) {
    ponder_trainer *t = SENTINEL;
    for (size_t i = 0; i < sizeof bad_grpo / sizeof *bad_grpo; i++)
        CHECK_IN(ponder_trainer_create(bad_grpo[i], &t), REJECTED, bad_grpo[i]);
    char cfg[2048], path[1024];
    snprintf(path, sizeof path, "%s/prompts.jsonl", tmp);
    write_file(path, "{\"prompt\": \"1+1?\", \"reference\": \"2\"}\n{\"prompt\": 5}\n", 52);
    snprintf(cfg, sizeof cfg, "{\"kind\": \"grpo\", \"model\": {\"path\": \"%s\"}, \"data\": {\"train\": \"%s\"}}", model_dir, path);
    CHECK_IN(ponder_trainer_create(cfg, &t), PARSE | INVALID, cfg);
    snprintf(cfg, sizeof cfg, "{\"kind\": \"grpo\", \"model\": {\"path\": \"%s\"}, \"data\": {\"train\": \"%s/fifo\"}}", model_dir, tmp);
    snprintf(path, sizeof path, "%s/fifo", tmp);
    mkfifo(path, 0600);
    alarm(10);
    CHECK_IN(ponder_trainer_create(cfg, &t), IO, cfg);
    alarm(0);
    EXPECT(t == SENTINEL, "out_trainer written on failure");
}


/* ---- pipelines --------------------------------------------------------------------------- */

static char *tiny_pipeline(const char *dir) {
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"model\": {\"scratch\": {\"hidden_size\": 16, \"intermediate_size\": 32, \"num_layers\": 1, \"num_heads\": 2,"
             " \"num_kv_heads\": 1, \"context_length\": 96, \"seed\": 0}},"
             " \"data\": {\"train\": {\"generate\": \"arithmetic\", \"count\": 8, \"seed\": 1},"
             " \"eval\": {\"generate\": \"arithmetic\", \"count\": 2, \"seed\": 2, \"split\": \"test\"}},"
             " \"reward\": {\"rewards\": [\"accuracy\", \"mine\"], \"reward_weights\": [1, 1], \"custom\": [\"mine\"]},"
             " \"output\": {\"dir\": \"%s\", \"save_steps\": 1}, \"threads\": 1,"
             " \"stages\": [{\"type\": \"sft\", \"max_steps\": 2, \"batch_size\": 2, \"max_length\": 80},"
             " {\"type\": \"grpo\", \"max_steps\": 3, \"prompts_per_step\": 1, \"num_generations\": 2, \"max_completion_length\": 4},"
             " {\"type\": \"eval\", \"max_new_tokens\": 4}]}", dir);
    return buf;
}

static const char *bad_pipelines[] = {
    "", "{", "[]", "null", "{}", "{\"model\": {\"scratch\": {}}}", "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": []}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [5]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"ppo\"}]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"grpo\", \"beta\": NaN}]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"sft\", \"name\": \"../../etc\"}]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"eval\", \"pass_k\": [0]}]}",
    "{\"model\": {\"path\": \"/nonexistent\"}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"eval\"}]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"\\u0000\"}, \"stages\": [{\"type\": \"sft\"}]}",
    "{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, \"stages\": [{\"type\": \"sft\", \"lora\": {\"r\": 1e400}}]}",
};

static void case_pipeline_garbage(void) {
    ponder_pipeline *p = SENTINEL;
    CHECK(ponder_pipeline_create(NULL, &p), MISUSE | INVALID);
    CHECK(ponder_pipeline_create(tiny_pipeline(tmp), NULL), MISUSE);
    for (size_t i = 0; i < sizeof bad_pipelines / sizeof *bad_pipelines; i++)
        CHECK_IN(ponder_pipeline_create(bad_pipelines[i], &p), REJECTED, bad_pipelines[i]);
    EXPECT(p == SENTINEL, "out_pipeline written on failure");
    /* validate: OK with the problems listed, whatever the text; MISUSE only for a NULL output. */
    char *out = SENTINEL;
    CHECK(ponder_pipeline_validate("{}", NULL), MISUSE);
    for (size_t i = 0; i < sizeof bad_pipelines / sizeof *bad_pipelines; i++) {
        out = SENTINEL;
        if (CHECK_IN(ponder_pipeline_validate(bad_pipelines[i], &out), OK, bad_pipelines[i]) == PONDER_OK) {
            EXPECT(strstr(out, "{\"errors\":[{\"path\":") == out, "validate(%s) -> %s", bad_pipelines[i], shorten(out));
            ponder_string_free(out);
        }
    }
    out = SENTINEL;
    CHECK(ponder_pipeline_validate(NULL, &out), MISUSE | OK);
    if (out != SENTINEL) ponder_string_free(out);
    char bad[] = "{\"model\": \"\xff\xfe\"}";
    out = SENTINEL;
    if (CHECK(ponder_pipeline_validate(bad, &out), OK | PARSE) == PONDER_OK) ponder_string_free(out);
    /* resume: a directory that holds no run, a file, NULL, invalid UTF-8, a corrupt state. */
    CHECK(ponder_pipeline_resume(NULL, &p), MISUSE);
    CHECK(ponder_pipeline_resume(tmp, NULL), MISUSE);
    const char *dirs[] = {"/nonexistent", "", "/", "/dev/null", "/proc/self", "\xff"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) CHECK_IN(ponder_pipeline_resume(dirs[i], &p), IO | PARSE, dirs[i]);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.resolved.json", tmp);
    write_file(path, "{\"model\": 5}", 12);
    CHECK(ponder_pipeline_resume(tmp, &p), INVALID | FORMAT);
    write_file(path, "{", 1);
    CHECK(ponder_pipeline_resume(tmp, &p), PARSE | FORMAT);
    EXPECT(p == SENTINEL, "out_pipeline written on failure");
    char *d = ponder_default_config_json();
    EXPECT(d && strstr(d, "\"stages\""), "ponder_default_config_json");
    ponder_string_free(d);
}

static void case_pipeline_handles(void) {
    make_bogus_handles();
    char *out = SENTINEL;
    for (size_t i = 0; i < sizeof bogus_handles / sizeof *bogus_handles; i++) {
        ponder_pipeline *b = bogus_handles[i];
        CHECK(ponder_pipeline_run(b), MISUSE);
        CHECK(ponder_pipeline_run_stage(b, 0), MISUSE);
        CHECK(ponder_pipeline_status(b, &out), MISUSE);
        CHECK(ponder_pipeline_set_event_callback(b, NULL, NULL), MISUSE);
        CHECK(ponder_pipeline_register_reward(b, "mine", my_reward, NULL), MISUSE);
        CHECK(ponder_pipeline_cancel(b), MISUSE);
        ponder_pipeline_free(b);
    }
    CHECK(ponder_pipeline_run(NULL), MISUSE);
    CHECK(ponder_pipeline_cancel(NULL), MISUSE);
    CHECK(ponder_pipeline_status(NULL, &out), MISUSE);
    ponder_pipeline_free(NULL);
    EXPECT(out == SENTINEL, "out_json written on failure");
    /* Another kind's handle. */
    ponder_model *m = load(model_dir);
    if (m) {
        CHECK(ponder_pipeline_run((ponder_pipeline *)m), MISUSE);
        ponder_pipeline_free((ponder_pipeline *)m);
        if (CHECK(ponder_model_info(m, &out), OK) == PONDER_OK) ponder_string_free(out);
        ponder_model_free(m);
    }
}

struct pipeline_host {
    ponder_pipeline *p;
    int events, reentered, mode; /* mode 1: re-enter run, status, cancel; 2: free the pipeline mid-run */
};

static bool pipeline_event(const char *event, void *user) {
    struct pipeline_host *h = user;
    h->events++;
    if (event == NULL || event[0] != '{') failures++;
    if (h->mode == 1 && strstr(event, "\"progress\"")) {
        /* A run inside the run is refused; status and cancel are fine from here. */
        if (ponder_pipeline_run(h->p) == PONDER_ERR_MISUSE) h->reentered++;
        char *s = NULL;
        if (ponder_pipeline_status(h->p, &s) == PONDER_OK) ponder_string_free(s);
        else failures++;
    }
    if (h->mode == 2 && strstr(event, "\"progress\"")) {
        ponder_pipeline_free(h->p);
        h->mode = 0;
    }
    return true;
}

static void case_pipeline_lifecycle(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    ponder_pipeline *p = NULL;
    if (CHECK(ponder_pipeline_create(tiny_pipeline(dir), &p), OK)) return;
    ponder_pipeline *twin = SENTINEL;
    CHECK(ponder_pipeline_create(tiny_pipeline(dir), &twin), INVALID);
    EXPECT(twin == SENTINEL, "out_pipeline written on failure");
    struct reward_state st = {0, 0, 3};
    CHECK(ponder_pipeline_register_reward(p, "mine", NULL, &st), MISUSE);
    CHECK(ponder_pipeline_register_reward(p, NULL, my_reward, &st), MISUSE);
    CHECK(ponder_pipeline_register_reward(p, "undeclared", my_reward, &st), INVALID);
    CHECK(ponder_pipeline_register_reward(p, "\xff", my_reward, &st), PARSE | INVALID);
    CHECK(ponder_pipeline_run(p), MISUSE); /* "mine" unregistered: nothing runs */
    CHECK(ponder_pipeline_run_stage(p, -1), INVALID);
    CHECK(ponder_pipeline_run_stage(p, 3), INVALID);
    CHECK(ponder_pipeline_run_stage(p, INT32_MAX), INVALID);
    CHECK(ponder_pipeline_run_stage(p, 1), MISUSE); /* stage 0 first */
    CHECK(ponder_pipeline_register_reward(p, "mine", my_reward, &st), OK);
    CHECK(ponder_pipeline_set_event_callback(p, NULL, NULL), OK);
    CHECK(ponder_pipeline_cancel(p), OK); /* before a run: the run stops at its first step */
    CHECK(ponder_pipeline_run(p), CANCELLED);
    struct pipeline_host h = {p, 0, 0, 1};
    CHECK(ponder_pipeline_set_event_callback(p, pipeline_event, &h), OK);
    CHECK(ponder_pipeline_run_stage(p, 0), OK);
    CHECK(ponder_pipeline_run_stage(p, 0), MISUSE); /* done */
    CHECK(ponder_pipeline_run(p), OK);
    EXPECT(h.reentered > 0, "a run inside the event callback was not refused");
    EXPECT(st.calls > 0 && st.bad_arguments == 0, "custom reward: %d calls, %d bad", st.calls, st.bad_arguments);
    char *out = SENTINEL;
    CHECK(ponder_pipeline_status(p, NULL), MISUSE);
    if (CHECK(ponder_pipeline_status(p, &out), OK) == PONDER_OK) {
        EXPECT(strstr(out, "\"finished\"") != NULL, "status after the run: %s", shorten(out));
        ponder_string_free(out);
    }
    CHECK(ponder_pipeline_run(p), OK); /* nothing left: writes the report again */
    ponder_pipeline_free(p);
    ponder_pipeline_free(p);
    CHECK(ponder_pipeline_run(p), MISUSE);

    /* Freed from inside its own event callback: the run stops at its next step, no crash. */
    snprintf(dir, sizeof dir, "%s/run2", tmp);
    if (CHECK(ponder_pipeline_create(tiny_pipeline(dir), &p), OK)) return;
    ponder_pipeline_register_reward(p, "mine", my_reward, &st);
    struct pipeline_host h2 = {p, 0, 0, 2};
    ponder_pipeline_set_event_callback(p, pipeline_event, &h2);
    CHECK(ponder_pipeline_run(p), CANCELLED);
    CHECK(ponder_pipeline_status(p, &out), MISUSE);
    /* ...and it resumes from its run directory. */
    if (CHECK(ponder_pipeline_resume(dir, &p), OK) == PONDER_OK) {
        ponder_pipeline_register_reward(p, "mine", my_reward, &st);
        CHECK(ponder_pipeline_run(p), OK);
        ponder_pipeline_free(p);
    }
}

static ponder_pipeline *shared_pipeline;
static void *status_and_cancel(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        char *s = NULL;
        ponder_status st = ponder_pipeline_status(shared_pipeline, &s);
        if (st == PONDER_OK) ponder_string_free(s);
        else if (st != PONDER_ERR_MISUSE) thread_fail("status", ponder_last_error());
        if (i == 1500 && ponder_pipeline_cancel(shared_pipeline) != PONDER_OK) thread_fail("cancel", ponder_last_error());
    }
    return NULL;
}

static void case_pipeline_concurrent(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    if (CHECK(ponder_pipeline_create(tiny_pipeline(dir), &shared_pipeline), OK)) return;
    struct reward_state st = {0, 0, 0};
    ponder_pipeline_register_reward(shared_pipeline, "mine", my_reward, &st);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, status_and_cancel, NULL);
    CHECK(ponder_pipeline_run(shared_pipeline), OK | CANCELLED);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    failures += thread_failures;
    ponder_pipeline_free(shared_pipeline);
}

/* ---- inference strategies ---------------------------------------------------------------- */

struct bad_infer {
    const char *json, *field;
};
static const struct bad_infer bad_infers[] = {
    {"", "offset"}, {"{", "offset"}, {"[]", "<root>"}, {"{}", "prompt"},
    {"{\"prompt\": \"1\", \"strategy\": \"majority\"}", "strategy"}, {"{\"prompt\": \"1\", \"strategy\": null, \"n\": 2}", "n"},
    {"{\"prompt\": \"1\", \"strategy\": [\"vote\"]}", "strategy"}, {"{\"prompt\": \"1\", \"strategy\": \"vote\", \"n\": 0}", "n"},
    {"{\"prompt\": \"1\", \"strategy\": \"vote\", \"n\": -1}", "n"}, {"{\"prompt\": \"1\", \"strategy\": \"vote\", \"n\": 1e300}", "n"},
    {"{\"prompt\": \"1\", \"strategy\": \"best_of_n\", \"n\": 99999}", "n"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"cues\": []}", "cues"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"cues\": [\"\"]}", "cues[0]"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"cues\": [1]}", "cues[0]"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"min_thinking_tokens\": 9, \"max_thinking_tokens\": 3}", "min_thinking_tokens"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_reflections\": 1e9}", "max_reflections"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"think_end\": \"\"}", "think_end"},
    {"{\"prompt\": \"1\", \"strategy\": \"reflect\", \"force_answer\": 0}", "force_answer"},
    {"{\"prompt\": \"1\", \"strategy\": \"vote\", \"max_reflections\": 2}", "max_reflections"},
    {"{\"prompt\": \"1\", \"scorer_weights\": {\"format\": NaN}}", "offset"},
    {"{\"prompt\": \"1\", \"scorer_weights\": {\"speed\": 1}}", "scorer_weights.speed"},
    {"{\"prompt\": \"1\", \"scorer_weights\": [1, 2]}", "scorer_weights"},
    {"{\"prompt\": \"1\", \"strateg\": \"vote\"}", "strateg"},
    {"{\"prompt\": \"\xff\"}", "offset"},
};

static const char *edge_infers[] = {
    "{\"prompt\": \"1\", \"strategy\": \"vote\", \"max_tokens\": 0}",
    "{\"prompt\": \"1\", \"strategy\": \"best_of_n\", \"n\": 1, \"max_tokens\": 3}",
    "{\"prompt\": \"1\", \"strategy\": \"vote\", \"n\": 1024, \"max_tokens\": 2}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 60, \"think_end\": \"1\", \"max_reflections\": 10000, \"seed\": 1}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 20, \"max_thinking_tokens\": 1, \"seed\": 2}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 20, \"min_thinking_tokens\": 20, \"max_thinking_tokens\": 20, \"think_end\": \"a\"}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"n\": 8, \"max_tokens\": 30, \"think_end\": \" \", \"cues\": [\"<|im_end|>\", \"\\u00e9\\u00e9\"], \"max_reflections\": 50}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 8, \"cues\": [\"a very long cue that does not fit into the budget at all\"], \"think_end\": \"1\"}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 10, \"force_answer\": \"<|im_end|><|im_end|>\", \"max_thinking_tokens\": 2}",
    "{\"prompt\": \"1\", \"strategy\": \"vote\", \"n\": 4, \"max_tokens\": 4, \"stop\": [\"1\", \"2\"], \"scorer_weights\": {\"agreement\": -1e308}}",
    "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"max_tokens\": 63}",
};

struct scorer_state {
    ponder_model *m;
    int calls;
    int bad_arguments;
    int mode; /* 0 a number, 1 NaN, 2 infinity, 3 re-enter ponder_infer and ponder_score */
};

static double my_scorer(const char *prompt, const char *completion, const char *reference, void *user) {
    struct scorer_state *st = user;
    st->calls++;
    if (prompt == NULL || completion == NULL || reference != NULL) st->bad_arguments++;
    if (st->mode == 1) return 0.0 / 0.0;
    if (st->mode == 2) return -1.0 / 0.0;
    if (st->mode == 3) {
        char *out = NULL;
        if (ponder_infer(st->m, "{\"prompt\": \"2\", \"strategy\": \"vote\", \"n\": 2, \"max_tokens\": 2}", &out) == PONDER_OK)
            ponder_string_free(out);
        else
            st->bad_arguments++;
        if (ponder_score("{\"items\": [{\"completion\": \"1\"}]}", &out) == PONDER_OK) ponder_string_free(out);
        else st->bad_arguments++;
    }
    return (double)(completion ? strlen(completion) % 5 : 0);
}

static void case_infer_garbage(void) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    char *out = SENTINEL;
    CHECK(ponder_infer(NULL, "{\"prompt\": \"1\"}", &out), MISUSE);
    CHECK(ponder_infer(m, NULL, &out), MISUSE | INVALID);
    CHECK(ponder_infer(m, "{\"prompt\": \"1\"}", NULL), MISUSE);
    CHECK(ponder_infer_stream(m, "{\"prompt\": \"1\"}", NULL, 0, NULL, NULL, NULL), MISUSE);
    EXPECT(out == SENTINEL, "out_result_json written on failure");
    for (size_t i = 0; i < sizeof bad_infers / sizeof *bad_infers; i++) {
        const char *json = bad_infers[i].json;
        out = SENTINEL;
        if (CHECK_IN(ponder_infer(m, json, &out), REJECTED, json) == PONDER_OK) {
            ponder_string_free(out);
            continue;
        }
        EXPECT(strstr(ponder_last_error(), bad_infers[i].field) != NULL, "%s: the message does not name %s: %s", json,
               bad_infers[i].field, ponder_last_error());
        EXPECT(out == SENTINEL, "out_result_json written on failure (%s)", json);
    }
    /* Scorer arrays. */
    struct scorer_state st = {m, 0, 0, 0};
    const char *req = "{\"prompt\": \"12 + 7 =\", \"strategy\": \"best_of_n\", \"n\": 3, \"max_tokens\": 4, \"seed\": 1}";
    ponder_scorer sc[2] = {{"mine", my_scorer, 1.0, &st}, {"format", my_scorer, 2.0, &st}};
    out = SENTINEL;
    CHECK(ponder_infer_ex(m, req, NULL, 1, &out), MISUSE);
    CHECK(ponder_infer_ex(m, req, sc, (size_t)-1, &out), INVALID);
    sc[0].name = NULL;
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), MISUSE);
    sc[0].name = "\xff";
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), PARSE | INVALID);
    sc[0].name = "";
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), INVALID);
    sc[0].name = "format";
    CHECK(ponder_infer_ex(m, req, sc, 2, &out), INVALID); /* named twice */
    sc[0].name = "mine";
    sc[0].fn = NULL;
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), MISUSE);
    sc[0].fn = my_scorer;
    sc[0].weight = 0.0 / 0.0;
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), INVALID);
    sc[0].weight = 1.0 / 0.0;
    CHECK(ponder_infer_ex(m, req, sc, 1, &out), INVALID);
    sc[0].weight = 1.0;
    EXPECT(st.calls == 0, "a scorer was called by a rejected call (%d calls)", st.calls);
    EXPECT(out == SENTINEL, "out_result_json written on failure");
    for (int mode = 0; mode < 4; mode++) {
        st = (struct scorer_state){m, 0, 0, mode};
        out = SENTINEL;
        if (CHECK(ponder_infer_ex(m, req, sc, 2, &out), OK) == PONDER_OK) {
            EXPECT(strstr(out, "\"mine\":") != NULL && strstr(out, "\"candidates\":[{") != NULL, "scorer %d: %s", mode, shorten(out));
            ponder_string_free(out);
        }
        EXPECT(st.calls == 6 && st.bad_arguments == 0, "scorer mode %d: %d calls (expected 6), %d bad", mode, st.calls,
               st.bad_arguments);
    }
    /* Streaming reflect cancelled at once, and after a few tokens. */
    const char *reflect = "{\"prompt\": \"1\", \"strategy\": \"reflect\", \"n\": 2, \"max_tokens\": 30, \"think_end\": \"1\", \"max_reflections\": 3}";
    for (int mode = 0; mode < 2; mode++) {
        struct stream_state ss = {m, 0, mode == 0 ? 1 : 0, 0};
        out = SENTINEL;
        if (mode == 0) {
            CHECK(ponder_infer_stream(m, reflect, NULL, 0, on_token, &ss, &out), CANCELLED);
            EXPECT(out == SENTINEL && ss.calls == 1, "cancel: %d calls, out %s", ss.calls, out == SENTINEL ? "untouched" : "written");
        } else if (CHECK(ponder_infer_stream(m, reflect, NULL, 0, on_token, &ss, &out), OK) == PONDER_OK) {
            EXPECT(ss.failures == 0 && ss.calls >= 2, "stream: %d calls, %d bad arguments", ss.calls, ss.failures);
            ponder_string_free(out);
        }
    }
    ponder_model_free(m);
}

static void case_infer_edges(int i) {
    ponder_model *m = load(model_dir);
    if (!m) return;
    char *out = SENTINEL;
    if (CHECK_IN(ponder_infer(m, edge_infers[i], &out), OK | INVALID, edge_infers[i]) == PONDER_OK) {
        EXPECT(out != SENTINEL && strstr(out, "\"candidates\":[") != NULL && strstr(out, "\"answer\":") != NULL,
               "no candidates in %s", shorten(out));
        ponder_string_free(out);
    }
    ponder_model_free(m);
}

/* ---- every function's failure paths, one table: outputs as they were ------------------------
 * The header's convention: a call that fails leaves every output parameter untouched (the one
 * documented exception: BUFFER_TOO_SMALL sets *n_ids). Each row below is a failure path of one
 * function, called with every output preset; the row fails if the call succeeds, answers a status
 * the header does not document for it, or writes any output. */

struct outs {
    ponder_model *model;
    ponder_trainer *trainer;
    ponder_pipeline *pipeline;
    char *str;
    size_t n, len;
    int32_t ids[16];
};

static void preset(struct outs *o) {
    o->model = SENTINEL;
    o->trainer = SENTINEL;
    o->pipeline = SENTINEL;
    o->str = SENTINEL;
    o->n = o->len = 0x5EED;
    for (int i = 0; i < 16; i++) o->ids[i] = -0x5EED;
}

static const char *touched(const struct outs *o) {
    if (o->model != SENTINEL) return "a model handle";
    if (o->trainer != SENTINEL) return "a trainer handle";
    if (o->pipeline != SENTINEL) return "a pipeline handle";
    if (o->str != SENTINEL) return "a string";
    if (o->n != 0x5EED || o->len != 0x5EED) return "a count";
    for (int i = 0; i < 16; i++)
        if (o->ids[i] != -0x5EED) return "the ids buffer";
    return NULL;
}

#define FAILS(expr, allowed)                                                                       \
    do {                                                                                           \
        preset(&o);                                                                                \
        ponder_status s_ = check((expr), (allowed), #expr, NULL, __LINE__);                      \
        const char *what_ = touched(&o);                                                           \
        EXPECT(s_ != PONDER_OK, "%s succeeded", #expr);                                             \
        EXPECT(s_ == PONDER_OK || what_ == NULL, "%s -> %s wrote %s", #expr, ponder_status_string(s_), what_); \
        rows++;                                                                                    \
    } while (0)

static bool cancel_at_once(int32_t seq, int32_t token, const char *text, void *user) {
    (void)seq, (void)token, (void)text, (void)user;
    return false;
}

static void case_outputs_on_failure(void) {
    struct outs o;
    int rows = 0;
    char path[512], cfg[4096];
    ponder_model *m = load(model_dir);
    ponder_trainer *t = NULL, *finished = NULL, *no_eval = NULL, *unregistered = NULL;
    ponder_pipeline *p = NULL;
    if (!m || CHECK(ponder_trainer_create(tiny_sft, &t), OK) || CHECK(ponder_trainer_create(tiny_grpo, &unregistered), OK))
        return;
    CHECK(ponder_trainer_create(tiny_sft, &finished), OK);
    CHECK(ponder_trainer_run(finished, NULL, NULL, NULL), OK);
    snprintf(cfg, sizeof cfg, "%s", tiny_sft);
    char *eval = strstr(cfg, ", \"eval\": {");
    memmove(eval, strstr(eval, "}") + 1, strlen(strstr(eval, "}") + 1) + 1);
    CHECK_IN(ponder_trainer_create(cfg, &no_eval), OK, cfg);
    snprintf(path, sizeof path, "%s/run", tmp);
    CHECK(ponder_pipeline_create(tiny_pipeline(path), &p), OK);
    void *wrong_kind = m;
    make_bogus_handles();
    ponder_model *gone = load(model_dir);
    ponder_model_free(gone);
    const int32_t bad_ids[] = {1, 2, INT32_MAX};

    /* Models. */
    FAILS(ponder_model_load(NULL, &o.model), MISUSE | INVALID);
    FAILS(ponder_model_load("{", &o.model), PARSE);
    FAILS(ponder_model_load("{\"path\": \"/nonexistent\"}", &o.model), IO | INVALID);
    FAILS(ponder_model_load("{\"path\": \"/dev/zero\"}", &o.model), IO | INVALID);
    FAILS(ponder_model_load("{\"path\": \"a\\u0000b\"}", &o.model), INVALID);
    FAILS(ponder_model_load("{\"path\": \"x\", \"path\": \"y\"}", &o.model), INVALID | PARSE);
    FAILS(ponder_model_load(json_path("pth", model_dir), &o.model), INVALID);
    FAILS(ponder_model_info(NULL, &o.str), MISUSE);
    FAILS(ponder_model_info((const ponder_model *)gone, &o.str), MISUSE);
    FAILS(ponder_model_info((const ponder_model *)bogus_handles[2], &o.str), MISUSE);
    /* Tokens. */
    FAILS(ponder_tokenize(NULL, "hi", 2, true, o.ids, 16, &o.n), MISUSE);
    FAILS(ponder_tokenize(m, NULL, 5, true, o.ids, 16, &o.n), MISUSE);
    FAILS(ponder_tokenize(m, "hello", 5, true, NULL, 16, &o.n), MISUSE);
    FAILS(ponder_tokenize(m, "hello", 5, true, NULL, SIZE_MAX, &o.n), MISUSE);
    FAILS(ponder_tokenize(m, "hi", SIZE_MAX, true, o.ids, 16, &o.n), INVALID | MISUSE);
    FAILS(ponder_tokenize(m, "a\xff", 2, true, o.ids, 16, &o.n), PARSE);
    FAILS(ponder_tokenize_dropped(NULL, "hi", 2, true, &o.n), MISUSE);
    FAILS(ponder_tokenize_dropped(m, "\xc0\xaf", 2, true, &o.n), PARSE);
    FAILS(ponder_detokenize(m, bad_ids, 3, &o.str, &o.len), INVALID);
    FAILS(ponder_detokenize(m, NULL, 3, &o.str, &o.len), MISUSE);
    FAILS(ponder_detokenize(NULL, bad_ids, 2, &o.str, &o.len), MISUSE);
    FAILS(ponder_detokenize(m, bad_ids, 2, NULL, &o.len), MISUSE);
    /* Generation. */
    FAILS(ponder_generate(NULL, "{\"prompt\": \"1\"}", &o.str), MISUSE);
    FAILS(ponder_generate(m, NULL, &o.str), MISUSE | INVALID);
    FAILS(ponder_generate(m, "{\"prompt\": \"1\", \"max_tokens\": 2,}", &o.str), PARSE);
    FAILS(ponder_generate(m, "{\"prompt\": null}", &o.str), INVALID);
    FAILS(ponder_generate(m, "{\"prompt\": \"1\", \"max_tokens\": 100000}", &o.str), INVALID);
    FAILS(ponder_generate(m, "{\"prompt\": \"1\", \"temperature\": 1, \"temperature\": 0}", &o.str), INVALID | PARSE);
    FAILS(ponder_generate_stream(m, "{\"prompt\": \"1\", \"max_tokens\": 4}", cancel_at_once, NULL, &o.str), CANCELLED);
    FAILS(ponder_infer(m, "{\"prompt\": \"1\", \"strategy\": \"majority\"}", &o.str), INVALID);
    FAILS(ponder_infer_ex(m, "{\"prompt\": \"1\"}", NULL, 2, &o.str), MISUSE | INVALID);
    FAILS(ponder_infer_stream(m, "{\"prompt\": \"1\", \"max_tokens\": 4}", NULL, 0, cancel_at_once, NULL, &o.str), CANCELLED);
    FAILS(ponder_score(NULL, &o.str), MISUSE | INVALID);
    FAILS(ponder_score("{\"completions\": [\"x\"], \"reward_weights\": {\"accuracy\": 1e300}}", &o.str), INVALID);
    FAILS(ponder_score("{\"completions\": \"x\"}", &o.str), INVALID);
    /* Training. */
    FAILS(ponder_trainer_create(NULL, &o.trainer), MISUSE | INVALID);
    FAILS(ponder_trainer_create("{\"kind\": \"ppo\"}", &o.trainer), INVALID);
    FAILS(ponder_trainer_create("{\"model\": {\"scratch\": {}}, \"data\": {\"train\": \"/dev/zero\"}}", &o.trainer), INVALID | IO);
    FAILS(ponder_trainer_step(NULL, &o.str), MISUSE);
    FAILS(ponder_trainer_step((ponder_trainer *)bogus_handles[0], &o.str), MISUSE);
    FAILS(ponder_trainer_step(finished, &o.str), MISUSE);
    FAILS(ponder_trainer_step(unregistered, &o.str), MISUSE);
    FAILS(ponder_trainer_run(unregistered, NULL, NULL, &o.str), MISUSE);
    FAILS(ponder_trainer_evaluate(no_eval, &o.str), INVALID);
    FAILS(ponder_trainer_evaluate((ponder_trainer *)wrong_kind, &o.str), MISUSE);
    FAILS(ponder_trainer_save(t, "/proc/version/ckpt", &o.str), IO);
    FAILS(ponder_trainer_save(t, "a\xff", &o.str), PARSE | INVALID | IO);
    FAILS(ponder_trainer_model((ponder_trainer *)m, &o.model), MISUSE);
    /* Pipelines. */
    FAILS(ponder_pipeline_create("{}", &o.pipeline), INVALID);
    FAILS(ponder_pipeline_create(NULL, &o.pipeline), MISUSE | INVALID);
    FAILS(ponder_pipeline_resume("/nonexistent", &o.pipeline), IO | INVALID);
    FAILS(ponder_pipeline_resume(tmp, &o.pipeline), IO | INVALID);
    FAILS(ponder_pipeline_resume(NULL, &o.pipeline), MISUSE | INVALID);
    FAILS(ponder_pipeline_status((const ponder_pipeline *)t, &o.str), MISUSE);
    FAILS(ponder_pipeline_status(NULL, &o.str), MISUSE);
    FAILS(ponder_pipeline_validate(NULL, NULL), MISUSE);

    /* Failures that have no output but must change nothing. */
    snprintf(path, sizeof path, "%s/never.gguf", tmp);
    snprintf(cfg, sizeof cfg, "{\"path\": \"%s\", \"format\": \"gguf\", \"dtype\": \"f8\"}", path);
    CHECK_IN(ponder_model_save(m, cfg), INVALID, cfg);
    struct stat st;
    EXPECT(stat(path, &st) != 0, "a failed ponder_model_save created %s", path);
    CHECK(ponder_pipeline_run_stage(p, 7), INVALID);
    CHECK(ponder_pipeline_run_stage(p, -1), INVALID);
    preset(&o);
    if (CHECK(ponder_pipeline_status(p, &o.str), OK) == PONDER_OK) {
        EXPECT(strstr(o.str, "\"failed\"") == NULL && strstr(o.str, "\"done\"") == NULL,
               "a refused run_stage changed the pipeline: %s", shorten(o.str));
        ponder_string_free(o.str);
    }
    /* The documented exception: BUFFER_TOO_SMALL sets the count and writes no id. */
    preset(&o);
    CHECK(ponder_tokenize(m, "12 + 7 = 19", 11, true, o.ids, 1, &o.n), SMALL);
    EXPECT(o.n > 1 && o.n != 0x5EED && o.ids[0] == -0x5EED, "BUFFER_TOO_SMALL: n %zu, ids[0] %d", o.n, o.ids[0]);
    if (getenv("HOSTILE_VERBOSE")) printf("    %d failure rows\n", rows);

    ponder_pipeline_free(p);
    ponder_trainer_free(t);
    ponder_trainer_free(finished);
    ponder_trainer_free(no_eval);
    ponder_trainer_free(unregistered);
    ponder_model_free(m);
}

/* ---- driver ---------------------------------------------------------------------------- */

struct test_case {
    const char *name;
    void (*fn)(void);
    void (*indexed)(int); /* a family: one process per index, so one crash hides no other */
    size_t count;
};

static const struct test_case cases[] = {
    {"static_calls", case_static_calls, NULL, 1},
    {"load_null_arguments", case_load_null_arguments, NULL, 1},
    {"load_garbage_options", case_load_garbage_options, NULL, 1},
    {"load_bad_files", case_load_bad_files, NULL, 1},
    {"load_fifo", case_load_fifo, NULL, 1},
    {"free_null_and_twice", case_free_null_and_twice, NULL, 1},
    {"stale_handle_does_not_alias", case_stale_handle_does_not_alias, NULL, 1},
    {"bogus_handles", case_bogus_handles, NULL, 1},
    {"info_and_save", case_info_and_save, NULL, 1},
    {"tokenize", case_tokenize, NULL, 1},
    {"detokenize", case_detokenize, NULL, 1},
    {"generate_garbage", case_generate_garbage, NULL, 1},
    {"generate_edge", NULL, case_generate_edges, sizeof edge_requests / sizeof *edge_requests},
    {"generate_callbacks", case_generate_callbacks, NULL, 1},
    {"concurrent_calls", case_concurrent_calls, NULL, 1},
    {"concurrent_last_error", case_concurrent_last_error, NULL, 1},
    {"concurrent_load_free", case_concurrent_load_free, NULL, 1},
    {"trainer_garbage", case_trainer_garbage, NULL, 1},
    {"trainer_lifecycle", case_trainer_lifecycle, NULL, 1},
    {"score", case_score, NULL, 1},
    {"concurrent_score", case_concurrent_score, NULL, 1},
    {"trainer_set_reward", case_trainer_set_reward, NULL, 1},
    {"trainer_kinds_garbage", case_trainer_kinds_garbage, NULL, 1},
    {"environment", case_environment, NULL, 1},
    {"pipeline_garbage", case_pipeline_garbage, NULL, 1},
    {"pipeline_handles", case_pipeline_handles, NULL, 1},
    {"pipeline_lifecycle", case_pipeline_lifecycle, NULL, 1},
    {"pipeline_concurrent", case_pipeline_concurrent, NULL, 1},
    {"infer_garbage", case_infer_garbage, NULL, 1},
    {"infer_edge", NULL, case_infer_edges, sizeof edge_infers / sizeof *edge_infers},
    {"outputs_on_failure", case_outputs_on_failure, NULL, 1},
};
#define NCASES (sizeof cases / sizeof *cases)

static int run_case(const struct test_case *c, int index) {
    snprintf(tmp, sizeof tmp, "/tmp/ponder-hostile-%s-XXXXXX", c->name);
    if (!mkdtemp(tmp)) {
        printf("    harness: mkdtemp failed\n");
        return 1;
    }
    if (c->indexed) c->indexed(index);
    else c->fn();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("    harness: could not remove %s\n", tmp);
    return failures;
}

/* Runs `hostile --case NAME[:INDEX]` in a child process; returns its verdict. */
static const char *spawn(char **argv, const char *name, char *why, size_t why_size) {
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {argv[0], "--case", (char *)name, (char *)model_dir, (char *)gguf_path, NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int status = 0, waited = 0;
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (++waited > 120 * 50) { /* 120 s */
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        nanosleep(&tick, NULL);
    }
    why[0] = 0;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(why, why_size, " (signal %d, %s)", sig, strsignal(sig));
        return sig == SIGALRM || sig == SIGKILL ? "HANG" : "CRASH";
    }
    return WEXITSTATUS(status) == 0 ? "PASS" : "FAIL";
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int a = 1;
    const char *only = NULL;
    if (argc > 2 && strcmp(argv[1], "--case") == 0) {
        only = argv[2];
        a = 3;
    }
    if (argc > a) model_dir = argv[a];
    if (argc > a + 1) gguf_path = argv[a + 1];
    if (only) {
        char name[128];
        snprintf(name, sizeof name, "%s", only);
        char *colon = strchr(name, ':');
        int index = colon ? atoi(colon + 1) : 0;
        if (colon) *colon = 0;
        for (size_t i = 0; i < NCASES; i++)
            if (strcmp(cases[i].name, name) == 0) return run_case(&cases[i], index) ? 1 : 0;
        fprintf(stderr, "no case %s\n", only);
        return 2;
    }
    int failed = 0, total = 0;
    for (size_t i = 0; i < NCASES; i++) {
        for (size_t k = 0; k < cases[i].count; k++) {
            char name[128], why[64];
            if (cases[i].indexed) snprintf(name, sizeof name, "%s:%zu", cases[i].name, k);
            else snprintf(name, sizeof name, "%s", cases[i].name);
            fflush(stdout);
            const char *verdict = spawn(argv, name, why, sizeof why);
            total++;
            if (strcmp(verdict, "PASS") != 0) failed++;
            if (cases[i].indexed && cases[i].indexed == case_generate_edges)
                printf("%-5s %s%s  %s\n", verdict, name, why, edge_requests[k]);
            else
                printf("%-5s %s%s\n", verdict, name, why);
        }
    }
    printf("%d of %d cases failed\n", failed, total);
    return failed > 125 ? 125 : failed;
}
