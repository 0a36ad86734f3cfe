/* pipeline_driver.c — a C program driving a pipeline through ponder.h, as an embedding host
 * would: reads the defaults, validates a broken config, creates a pipeline, receives its events
 * (parsed with json-c), registers a custom reward, cancels the run from its event callback,
 * resumes it, cancels it from another thread, resumes it again and runs it to the end.
 *
 *   pipeline_driver CONFIG.json      prints one JSON line of what happened; exit 0 on success
 *
 * tests/python/test_c_driver.py builds and runs it. */
#define _GNU_SOURCE
#include <ponder.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define EXPECT(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL line %d: ", __LINE__); fprintf(stderr, __VA_ARGS__); \
                                              fprintf(stderr, "\n"); failures++; } } while (0)

struct host {
    int events, progress, metrics, stage_starts, finished;
    int cancel_at_grpo_step; /* the callback returns false at this GRPO step (0: never) */
    int signal_at_grpo_step; /* ...or wakes the canceller thread at it */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int signalled;
    ponder_pipeline *pipeline;
};

static bool on_event(const char *event_json, void *user) {
    struct host *h = user;
    struct json_object *e = json_tokener_parse(event_json);
    if (!e) { failures++; return true; }
    h->events++;
    const char *kind = json_object_get_string(json_object_object_get(e, "event"));
    bool keep_going = true;
    if (strcmp(kind, "progress") == 0) {
        h->progress++;
        const char *stage = json_object_get_string(json_object_object_get(e, "stage"));
        int step = json_object_get_int(json_object_object_get(e, "step"));
        if (stage && strcmp(stage, "grpo") == 0 && step == h->cancel_at_grpo_step) keep_going = false;
        if (stage && strcmp(stage, "grpo") == 0 && step == h->signal_at_grpo_step) {
            pthread_mutex_lock(&h->lock);
            h->signalled = 1;
            pthread_cond_signal(&h->cond);
            pthread_mutex_unlock(&h->lock);
        }
    } else if (strcmp(kind, "metric") == 0) {
        h->metrics++;
    } else if (strcmp(kind, "stage_start") == 0) {
        h->stage_starts++;
    } else if (strcmp(kind, "finished") == 0) {
        h->finished++;
    }
    json_object_put(e);
    return keep_going;
}

static int reward_calls, reward_null_reference;

static double brevity(const char *prompt, const char *completion, const char *reference, void *user) {
    (void)prompt;
    (void)user;
    reward_calls++;
    if (reference == NULL) reward_null_reference++;
    return -(double)strlen(completion) / 100.0;
}

/* Cancels the pipeline from another thread once the callback says the GRPO stage is under way. */
static void *canceller(void *arg) {
    struct host *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->signalled) pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    if (ponder_pipeline_cancel(h->pipeline) != PONDER_OK) failures++;
    return NULL;
}

static const char *state_of(ponder_pipeline *p) {
    static char state[32];
    char *status = NULL;
    if (ponder_pipeline_status(p, &status) != PONDER_OK) return "?";
    struct json_object *s = json_tokener_parse(status);
    snprintf(state, sizeof state, "%s", s ? json_object_get_string(json_object_object_get(s, "state")) : "?");
    json_object_put(s);
    ponder_string_free(status);
    return state;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: pipeline_driver CONFIG.json\n"); return 2; }
    char *config = read_text(argv[1]);
    if (!config) { fprintf(stderr, "cannot read %s\n", argv[1]); return 2; }
    struct json_object *cfg = json_tokener_parse(config);
    const char *run_dir = json_object_get_string(json_object_object_get(json_object_object_get(cfg, "output"), "dir"));

    /* The documented defaults: the paper's GRPO (beta 0.04, G = 7). */
    char *defaults = ponder_default_config_json();
    struct json_object *d = json_tokener_parse(defaults);
    struct json_object *grpo = json_object_array_get_idx(json_object_object_get(d, "stages"), 1);
    EXPECT(json_object_get_double(json_object_object_get(grpo, "beta")) == 0.04, "default beta");
    EXPECT(json_object_get_int(json_object_object_get(grpo, "num_generations")) == 7, "default num_generations");
    json_object_put(d);
    ponder_string_free(defaults);

    /* A broken config: every problem with its path, nothing created. */
    char *errors = NULL;
    EXPECT(ponder_pipeline_validate("{\"model\": {\"scratch\": {}}, \"output\": {\"dir\": \"/tmp/x\"}, "
                                    "\"stages\": [{\"type\": \"grpo\", \"beta\": -1}], \"bogus\": 1}", &errors) == PONDER_OK, "validate");
    struct json_object *errs = json_object_object_get(json_tokener_parse(errors), "errors");
    int n_errors = (int)json_object_array_length(errs);
    EXPECT(errors && strstr(errors, "\"stages[0].beta\"") && strstr(errors, "\"bogus\""), "errors: %s", errors);
    ponder_string_free(errors);

    struct host h = {0};
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.cond, NULL);

    /* 1. Create, register the reward, cancel from the event callback. */
    ponder_pipeline *p = NULL;
    EXPECT(ponder_pipeline_create(config, &p) == PONDER_OK, "create: %s", ponder_last_error());
    if (!p) return 1;
    EXPECT(ponder_pipeline_run(p) == PONDER_ERR_MISUSE, "run without the custom reward registered");
    EXPECT(ponder_pipeline_register_reward(p, "undeclared", brevity, NULL) == PONDER_ERR_INVALID_ARGUMENT, "undeclared reward");
    EXPECT(ponder_pipeline_register_reward(p, "brevity", brevity, NULL) == PONDER_OK, "register: %s", ponder_last_error());
    EXPECT(ponder_pipeline_set_event_callback(p, on_event, &h) == PONDER_OK, "callback");
    h.cancel_at_grpo_step = 4;
    ponder_status first = ponder_pipeline_run(p);
    EXPECT(first == PONDER_ERR_CANCELLED, "first run: %s", ponder_last_error());
    const char *first_state = strdup(state_of(p));
    ponder_pipeline *again = NULL;
    EXPECT(ponder_pipeline_create(config, &again) == PONDER_ERR_INVALID_ARGUMENT && strstr(ponder_last_error(), "resume"),
           "create on an existing run must refuse and name resume");
    ponder_pipeline_free(p);

    /* 2. Resume; cancel from another thread. */
    EXPECT(ponder_pipeline_resume(run_dir, &p) == PONDER_OK, "resume: %s", ponder_last_error());
    ponder_pipeline_register_reward(p, "brevity", brevity, NULL);
    ponder_pipeline_set_event_callback(p, on_event, &h);
    h.cancel_at_grpo_step = 0;
    h.signal_at_grpo_step = 8;
    h.pipeline = p;
    pthread_t t;
    pthread_create(&t, NULL, canceller, &h);
    ponder_status second = ponder_pipeline_run(p);
    pthread_join(t, NULL);
    EXPECT(second == PONDER_ERR_CANCELLED, "second run: %s", ponder_last_error());
    ponder_pipeline_free(p);

    /* 3. Resume and finish. */
    EXPECT(ponder_pipeline_resume(run_dir, &p) == PONDER_OK, "resume: %s", ponder_last_error());
    ponder_pipeline_register_reward(p, "brevity", brevity, NULL);
    ponder_pipeline_set_event_callback(p, on_event, &h);
    h.signal_at_grpo_step = 0;
    ponder_status third = ponder_pipeline_run(p);
    EXPECT(third == PONDER_OK, "third run: %s", ponder_last_error());
    const char *third_state = strdup(state_of(p));
    EXPECT(ponder_pipeline_run_stage(p, 0) == PONDER_ERR_MISUSE, "a done stage runs again");
    ponder_pipeline_free(p);

    printf("{\"errors\": %d, \"first\": %d, \"first_state\": \"%s\", \"second\": %d, \"third\": %d, \"third_state\": \"%s\", "
           "\"events\": %d, \"progress\": %d, \"metrics\": %d, \"stage_starts\": %d, \"finished\": %d, \"reward_calls\": %d, "
           "\"reward_null_reference\": %d, \"failures\": %d}\n",
           n_errors, first, first_state, second, third, third_state, h.events, h.progress, h.metrics, h.stage_starts, h.finished,
           reward_calls, reward_null_reference, failures);
    json_object_put(cfg);
    free(config);
    return failures ? 1 : 0;
}
