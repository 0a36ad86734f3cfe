/* Generates completions with Ponder from C: builds the request with json-c, streams tokens
 * through a callback, and reads the JSON result with json-c.
 *   generate MODEL.gguf "PROMPT" [max_tokens] [n]
 */
#include <json.h>
#include <ponder.h>
#include <stdio.h>
#include <stdlib.h>

static bool on_token(int32_t sequence, int32_t token, const char *text, void *user) {
    (void)token;
    int *n = user;
    if (*n == 1) { fputs(text, stdout); fflush(stdout); }
    (void)sequence;
    return true;
}

static int fail(const char *what, ponder_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, ponder_status_string(s), ponder_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL PROMPT [max_tokens] [n]\n", argv[0]);
        return 2;
    }
    if (ponder_version_number() != PONDER_VERSION_NUMBER)
        fprintf(stderr, "warning: header %d, library %s\n", PONDER_VERSION_NUMBER, ponder_version());

    json_object *opts = json_object_new_object();
    json_object_object_add(opts, "path", json_object_new_string(argv[1]));
    json_object_object_add(opts, "threads", json_object_new_int(2));
    ponder_model *model = NULL;
    ponder_status s = ponder_model_load(json_object_to_json_string(opts), &model);
    json_object_put(opts);
    if (s != PONDER_OK) return fail("load", s);

    int n = argc > 4 ? atoi(argv[4]) : 1;
    json_object *req = json_object_new_object();
    json_object *messages = json_object_new_array();
    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "role", json_object_new_string("user"));
    json_object_object_add(msg, "content", json_object_new_string(argv[2]));
    json_object_array_add(messages, msg);
    json_object_object_add(req, "messages", messages);
    json_object_object_add(req, "max_tokens", json_object_new_int(argc > 3 ? atoi(argv[3]) : 64));
    json_object_object_add(req, "temperature", json_object_new_double(n > 1 ? 0.8 : 0.0));
    json_object_object_add(req, "n", json_object_new_int(n));
    json_object_object_add(req, "seed", json_object_new_int(42));

    char *result = NULL;
    s = ponder_generate_stream(model, json_object_to_json_string(req), on_token, &n, &result);
    json_object_put(req);
    if (s != PONDER_OK) {
        ponder_model_free(model);
        return fail("generate", s);
    }
    json_object *root = json_tokener_parse(result);
    ponder_string_free(result);
    json_object *completions = NULL, *prompt_tokens = NULL;
    if (!root || !json_object_object_get_ex(root, "completions", &completions) ||
        !json_object_object_get_ex(root, "prompt_tokens", &prompt_tokens)) {
        fprintf(stderr, "unexpected result\n");
        return 1;
    }
    printf("\n--- prompt_tokens=%d\n", json_object_get_int(prompt_tokens));
    for (size_t i = 0; i < json_object_array_length(completions); i++) {
        json_object *c = json_object_array_get_idx(completions, i), *text, *reason, *ids;
        json_object_object_get_ex(c, "text", &text);
        json_object_object_get_ex(c, "finish_reason", &reason);
        json_object_object_get_ex(c, "token_ids", &ids);
        printf("[%zu] finish_reason=%s tokens=%zu text=%s\n", i, json_object_get_string(reason),
               json_object_array_length(ids), json_object_to_json_string(text));
    }
    json_object_put(root);
    ponder_model_free(model);
    return 0;
}
