/* environment_driver.c — a C host that trains with GRPO against its own agent environment,
 * registered through ponder.h's ponder_environment (task and options parsed with json-c). Its
 * episodes take turns misbehaving, by creation order k (mode k % 6):
 *   0 answers well: "checked N", reward 0.5, done after two actions
 *   1 returns garbage JSON            2 returns OK with no string
 *   3 returns an observation of 1 MB  4 never says done
 *   5 returns an error status with a reason
 * Every one of them must end only its own episode; the run goes on.
 *
 *   environment_driver CONFIG.json ACTION_END   prints one JSON line; exit 0 on success
 *
 * tests/python/test_environment.py builds and runs it. */
#include <ponder.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct host {
    int created, freed, resets, steps, secret;
    int bad_task;
};

struct episode {
    int mode, turns;
};

static ponder_status env_create(const char *options_json, void *user, void **out_env) {
    struct host *h = user;
    struct json_object *o = json_tokener_parse(options_json);
    struct json_object *secret;
    if (o && json_object_object_get_ex(o, "secret", &secret)) h->secret = json_object_get_int(secret);
    json_object_put(o);
    struct episode *e = calloc(1, sizeof *e);
    if (!e) return PONDER_ERR_OUT_OF_MEMORY;
    e->mode = h->created++ % 6;
    *out_env = e;
    return PONDER_OK;
}

static ponder_status env_reset(void *env, uint64_t seed, const char *task_json, void *user, char **out_observation) {
    struct host *h = user;
    struct episode *e = env;
    (void)seed;
    h->resets++;
    e->turns = 0;
    struct json_object *task = json_tokener_parse(task_json), *prompt, *reference;
    if (!task || !json_object_object_get_ex(task, "prompt", &prompt) || !json_object_object_get_ex(task, "reference", &reference)) {
        h->bad_task++;
        json_object_put(task);
        return PONDER_ERR_INVALID_ARGUMENT;
    }
    *out_observation = ponder_string_new(json_object_get_string(prompt));
    json_object_put(task);
    return PONDER_OK;
}

static ponder_status env_step(void *env, const char *action, void *user, char **out_step_json) {
    struct host *h = user;
    struct episode *e = env;
    h->steps++;
    e->turns++;
    char buf[256];
    switch (e->mode) {
    case 0: {
        struct json_object *o = json_object_new_object();
        snprintf(buf, sizeof buf, "checked %d (%zu bytes)", e->turns, strlen(action));
        json_object_object_add(o, "observation", json_object_new_string(buf));
        json_object_object_add(o, "reward", json_object_new_double(0.5));
        json_object_object_add(o, "done", json_object_new_boolean(e->turns >= 2));
        json_object_object_add(o, "info", json_object_new_int(h->secret));
        *out_step_json = ponder_string_new(json_object_to_json_string(o));
        json_object_put(o);
        return PONDER_OK;
    }
    case 1:
        *out_step_json = ponder_string_new("{not json");
        return PONDER_OK;
    case 2:
        return PONDER_OK;
    case 3: {
        size_t n = 1 << 20;
        char *big = malloc(n + 64);
        if (!big) return PONDER_ERR_OUT_OF_MEMORY;
        strcpy(big, "{\"done\": false, \"observation\": \"");
        size_t at = strlen(big);
        memset(big + at, 'y', n);
        strcpy(big + at + n, "\"}");
        *out_step_json = big; /* malloc'd: Ponder frees it */
        return PONDER_OK;
    }
    case 4:
        *out_step_json = ponder_string_new("{\"observation\": \"again\", \"done\": false}");
        return PONDER_OK;
    default:
        *out_step_json = ponder_string_new("host refuses");
        return PONDER_ERR_INVALID_ARGUMENT;
    }
}

static void env_free(void *env, void *user) {
    struct host *h = user;
    h->freed++;
    free(env);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s CONFIG.json ACTION_END\n", argv[0]); return 2; }
    char *config = read_file(argv[1]);
    if (!config) { perror(argv[1]); return 2; }
    struct host h = {0};
    ponder_environment env = {env_create, env_reset, env_step, env_free, argv[2], &h};
    ponder_trainer *t = NULL;
    int misuse_before = 0, steps_ok = 0;
    if (ponder_trainer_create(config, &t) != PONDER_OK) { fprintf(stderr, "create: %s\n", ponder_last_error()); return 1; }
    /* Stepping before the environment is registered is a misuse, and changes nothing. */
    char *metrics = NULL;
    if (ponder_trainer_step(t, &metrics) == PONDER_ERR_MISUSE) misuse_before = 1;
    if (ponder_trainer_set_environment(t, "host", NULL) != PONDER_ERR_MISUSE) { fprintf(stderr, "NULL env accepted\n"); return 1; }
    if (ponder_trainer_set_environment(t, "other", &env) != PONDER_ERR_INVALID_ARGUMENT) { fprintf(stderr, "wrong name accepted\n"); return 1; }
    if (ponder_trainer_set_environment(t, "host", &env) != PONDER_OK) { fprintf(stderr, "set: %s\n", ponder_last_error()); return 1; }
    double errors = 0;
    for (int i = 0; i < 2; i++) {
        if (ponder_trainer_step(t, &metrics) != PONDER_OK) { fprintf(stderr, "step: %s\n", ponder_last_error()); return 1; }
        struct json_object *m = json_tokener_parse(metrics), *x;
        if (m && json_object_object_get_ex(m, "env/errors", &x)) errors += json_object_get_double(x);
        json_object_put(m);
        ponder_string_free(metrics);
        steps_ok++;
    }
    ponder_trainer_free(t);
    free(config);
    printf("{\"misuse_before\": %d, \"steps_ok\": %d, \"created\": %d, \"freed\": %d, \"resets\": %d, \"steps\": %d, "
           "\"secret\": %d, \"bad_task\": %d, \"errors\": %g}\n",
           misuse_before, steps_ok, h.created, h.freed, h.resets, h.steps, h.secret, h.bad_task, errors);
    return 0;
}
