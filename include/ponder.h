/*
 * ponder.h — the C API of Ponder, an embeddable runtime that trains and runs small
 * Llama-family language models for mathematical reasoning.
 *
 * Conventions (every function follows them):
 *  - Every call that can fail returns a ponder_status. PONDER_OK is 0; on any other value
 *    ponder_last_error() gives a message naming the field, JSON path or byte offset at fault,
 *    and every output parameter is left untouched unless the function says otherwise.
 *  - Options and results are JSON text (UTF-8). Unknown keys, wrong types and out-of-range
 *    values are errors (PONDER_ERR_INVALID_ARGUMENT), never silently ignored.
 *  - Strings the library returns through `char **` are owned by the caller and must be
 *    released with ponder_string_free(). Strings returned as `const char *` are static or
 *    owned by the library, as stated per function.
 *  - Handles are opaque and come in create/free pairs. A handle is a number that is never
 *    reused (not an address), so passing NULL, a freed handle, another kind's handle or a
 *    pointer that is not a handle returns PONDER_ERR_MISUSE, and freeing a handle twice is a
 *    no-op; nothing ever traps or aborts.
 *  - JSON numbers are 64-bit: NaN, Infinity, an integer beyond 64 bits or a number that
 *    overflows a double is PONDER_ERR_PARSE with its byte offset.
 *  - The library is compiled for x86-64 with AVX2 and FMA. On a CPU without them every call
 *    that returns a status returns PONDER_ERR_UNSUPPORTED, naming the missing features, before
 *    anything else runs (never SIGILL). AVX-512 kernels are used where cpuid reports AVX-512F
 *    (valgrind's emulated CPU does not: under valgrind the AVX2 kernels run).
 *  - Lengths a request leaves at their defaults (max_tokens, max_new_tokens: 256) are cut to
 *    what the model's context leaves after the prompt, and the result's "notes" say so; a
 *    length given explicitly that does not fit is PONDER_ERR_INVALID_ARGUMENT naming it.
 *  - Model files are read only if they are regular files (a FIFO or device is PONDER_ERR_IO,
 *    at once); every size and offset in them is checked against the file before anything is
 *    allocated for it (PONDER_ERR_FORMAT names the tensor or byte offset).
 *  - Callbacks are a function pointer plus a `void *user` passed back unchanged. A callback
 *    that returns bool (tokens, training metrics) returns false to cancel, everywhere: the call
 *    then returns PONDER_ERR_CANCELLED and no result; each function says what state it leaves.
 *  - Inside a callback (a token callback, a trainer's metrics callback, a reward or environment
 *    callback, a pipeline's event callback) these may be called: ponder_tokenize,
 *    ponder_detokenize, ponder_model_info, ponder_generate*, ponder_infer* on any model
 *    (generation on the trainer's own model is allowed between its updates, which is when
 *    rewards and environments run), ponder_score, ponder_pipeline_status and
 *    ponder_pipeline_cancel, ponder_last_error, ponder_status_string, ponder_string_new and
 *    ponder_string_free, and any call on another handle. The handle whose call is running may
 *    not be re-entered: ponder_trainer_step / run / evaluate / save / register_* on that trainer
 *    and ponder_pipeline_run / run_stage / register_* on that pipeline return PONDER_ERR_MISUSE
 *    and change nothing (the same answer a second thread gets while a call runs). Freeing the
 *    running handle from its own callback cancels the run (pipelines) or fails the next call.
 *
 * Threading: a ponder_model is immutable once loaded (except through a trainer, below). ponder_tokenize, ponder_detokenize,
 * ponder_model_info, ponder_generate* and ponder_infer* may be called on the same model from several threads
 * at once (each call owns its working memory). ponder_model_free must not race with calls on
 * the same handle from other threads: a call already running keeps the model alive until it
 * returns, but a call that starts after the free gets PONDER_ERR_MISUSE. The thread count
 * ("threads" in the load options) is process-wide. A ponder_trainer is used
 * by one thread at a time: a call made while another call on it runs returns PONDER_ERR_MISUSE.
 */
#ifndef PONDER_H
#define PONDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PONDER_VERSION_MAJOR 0
#define PONDER_VERSION_MINOR 1
#define PONDER_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as returned by ponder_version_number(). */
#define PONDER_VERSION_NUMBER (PONDER_VERSION_MAJOR * 10000 + PONDER_VERSION_MINOR * 100 + PONDER_VERSION_PATCH)

typedef enum ponder_status {
    PONDER_OK = 0,
    PONDER_ERR_INVALID_ARGUMENT = 1, /* a value is out of range, of the wrong type, or unknown */
    PONDER_ERR_PARSE = 2,            /* malformed JSON or invalid UTF-8 (message has the byte offset) */
    PONDER_ERR_IO = 3,               /* a file could not be opened, read or written */
    PONDER_ERR_FORMAT = 4,           /* a model or tokenizer file is corrupt or inconsistent */
    PONDER_ERR_UNSUPPORTED = 5,      /* a valid file uses something Ponder does not implement */
    PONDER_ERR_OUT_OF_MEMORY = 6,
    PONDER_ERR_CANCELLED = 7,        /* a callback returned false */
    PONDER_ERR_BUFFER_TOO_SMALL = 8, /* the caller's buffer is too small; the size needed is reported */
    PONDER_ERR_MISUSE = 9,           /* NULL or stale handle, NULL output pointer */
    PONDER_ERR_INTERNAL = 10         /* a bug in Ponder: please report the message */
} ponder_status;

typedef struct ponder_model ponder_model;

/* "MAJOR.MINOR.PATCH" of the library actually loaded (static string). */
const char *ponder_version(void);
/* PONDER_VERSION_NUMBER of the library actually loaded; compare with the header's. */
int ponder_version_number(void);

/* A static, human-readable name for a status ("invalid argument"); never NULL. */
const char *ponder_status_string(ponder_status status);

/* The message of the last failed call on this thread ("" if none). Owned by the library and
 * valid until the next failing call on the same thread. Thread-safe. */
const char *ponder_last_error(void);

/* Frees a string returned by the library. NULL is allowed. */
void ponder_string_free(char *s);

/* ---- Models ---------------------------------------------------------------------------- */

/* Loads a model. options_json: {"path": "model.gguf" | "hf_model_dir/", "threads": 2,
 *                               "adapter": "peft_adapter_dir/", "weights": "native"}
 *  - path: a GGUF file (F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q3_K, Q4_K, Q5_K, Q6_K
 *    tensors) or a Hugging Face directory (config.json, model.safetensors, tokenizer.json).
 *  - weights (optional): "native" (default) keeps a GGUF's F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0,
 *    Q4_1, Q4_K, Q5_K and Q6_K matrices in their blocks, read in place from the mapped file
 *    (memory: about the file's tensor bytes) and multiplied with 8-bit activations as llama.cpp
 *    does; "f32" expands every tensor to fp32 (4-8 times the memory, fp32 products). Vectors,
 *    F32 and Q3_K tensors, rows not a multiple of 32 and Hugging Face directories are fp32 either
 *    way. The file must not be truncated or rewritten while the model is loaded (it is mapped).
 *    A block whose scale is NaN or infinite is PONDER_ERR_FORMAT, naming the tensor and block.
 *  - threads (optional, 1..256): threads for Ponder's loops and matmuls, process-wide.
 *  - adapter (optional): a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
 *    applied on top of the model, unmerged.
 * On success *out_model receives a handle to free with ponder_model_free.
 * Returns PONDER_ERR_PARSE / INVALID_ARGUMENT for bad options, IO for unreadable files,
 * FORMAT for corrupt ones (the message names the tensor or byte offset), UNSUPPORTED for
 * architectures or tensor types Ponder lacks, MISUSE if out_model is NULL. */
ponder_status ponder_model_load(const char *options_json, ponder_model **out_model);

/* Frees a model. NULL is allowed; freeing twice is detected and ignored. */
void ponder_model_free(ponder_model *model);

/* The model's shape and tokenizer facts as JSON: {"vocab_size", "hidden_size",
 * "num_layers", "num_heads", "num_kv_heads", "head_dim", "context_length", "bos_token_id",
 * "eos_token_id", "chat_template", "weights": "native" | "f32", "weight_bytes" (the bytes the
 * weights occupy: blocks plus fp32 tensors), "tensor_types": {name: "Q4_1" | "F32" | ...}
 * (Hugging Face names, as held in memory), ...}. *out_json must be freed with ponder_string_free. */
ponder_status ponder_model_info(const ponder_model *model, char **out_json);

/* Writes the model. options_json: {"path": OUT, "format": "safetensors" | "gguf",
 * "dtype": "f32" | "f16" | "bf16" | "q8_0" | "q5_0" | "q4_0" | "q4_1" | "q4_k" | "q6_k"}. safetensors:
 * OUT is a directory that transformers loads (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json); gguf: OUT is a file llama.cpp runs. The format defaults from OUT's
 * suffix. The block types (GGUF only) write the bytes llama.cpp's quantize tool writes without
 * an importance matrix, with its rules: the output matrix (LM head, or the embedding tied to it)
 * as Q6_K unless dtype is q8_0; rows not a multiple of 256 fall back from Q4_K to Q5_0 and from
 * Q6_K to Q8_0, rows not a multiple of 32 to F16; vectors stay F32. Unmerged LoRA adapters are merged
 * into the written weights. A model whose weights are in blocks is expanded first (its fp32
 * values, then written in dtype). Files are written atomically. */
ponder_status ponder_model_save(const ponder_model *model, const char *options_json);

/* ---- Tokens ---------------------------------------------------------------------------- */

/* Tokenizes text_len bytes of UTF-8 `text` (NUL bytes included, as llama.h's tokenizer does)
 * into `ids` (capacity entries). *n_ids receives the
 * number of ids; if it exceeds capacity the call returns PONDER_ERR_BUFFER_TOO_SMALL, writes
 * nothing to ids and still sets *n_ids, so a caller can size its buffer with a first call
 * (ids may be NULL when capacity is 0). parse_special: special-token text such as
 * "<|im_end|>" becomes its id. Invalid UTF-8 is PONDER_ERR_PARSE with the byte offset. */
ponder_status ponder_tokenize(const ponder_model *model, const char *text, size_t text_len, bool parse_special,
                              int32_t *ids, size_t capacity, size_t *n_ids);

/* How many bytes of `text` the model's vocabulary cannot spell: ponder_tokenize leaves them
 * out (SmolLM2's vocabulary has no token for some control characters, such as 0x04), as Hugging
 * Face tokenizers does, so its ids stand for a text that differs from the input when this is
 * not 0. Generation results say the same in "prompt_dropped_bytes" and "notes". *out_dropped
 * receives the count; errors as ponder_tokenize's (MISUSE for a NULL out_dropped). */
ponder_status ponder_tokenize_dropped(const ponder_model *model, const char *text, size_t text_len, bool parse_special,
                                      size_t *out_dropped);

/* The text of n_ids ids (special tokens rendered as their text). An id outside the
 * vocabulary is PONDER_ERR_INVALID_ARGUMENT naming its index. Byte sequences that are not
 * valid UTF-8 become U+FFFD. *out_text (NUL-terminated) must be freed with
 * ponder_string_free; *out_len (may be NULL) receives its length in bytes, which counts
 * NUL bytes the text itself contains. */
ponder_status ponder_detokenize(const ponder_model *model, const int32_t *ids, size_t n_ids, char **out_text,
                                size_t *out_len);

/* ---- Generation ------------------------------------------------------------------------ */

/* Request JSON (keys mirror the CLI flags):
 *   "prompt": string, or "messages": [{"role", "content"}, ...] (rendered with the model's
 *             chat template); "chat": true wraps "prompt" as one user message;
 *   "max_tokens" (default 256), "min_tokens" (0: no end-of-sequence token before this many;
 *   stop strings still apply), "temperature" (default 1; 0 = greedy), "top_p" (1),
 *   "top_k" (0 = off), "min_p" (0), "repetition_penalty" (1), "seed" (default: from the
 *   clock; sequence i uses seed + i), "stop": string or [strings], "n" (default 1: number of
 *   completions of the prompt, decoded together sharing the prompt's KV cache),
 *   "parse_special" (default true: special-token text such as "<|im_end|>" in the prompt or in
 *   message content becomes its token, as Hugging Face's apply_chat_template does; false keeps
 *   it text, for untrusted content). A message's "role" is one of "system", "user",
 *   "assistant", "tool"; its "content" a string. The sampling keys (temperature, top_p, top_k, min_p,
 *   repetition_penalty, seed) may instead be grouped as "sampling": {...}; a key given both
 *   ways is an error.
 * Result JSON:
 *   {"completions": [{"text", "token_ids", "logprobs", "finish_reason"}], "prompt_tokens",
 *    "timings": {"prefill_seconds", "decode_seconds", "prefill_tokens_per_second",
 *                "decode_tokens_per_second"}}
 *   finish_reason is "stop" (a stop string; it is cut from the text), "eos" (an end token;
 *   its id is in token_ids but not in text) or "length" (max_tokens reached). logprobs are
 *   those of the generated ids under the model's unprocessed distribution (temperature 1).
 *   A temperature so small that logits / temperature overflow samples greedily (its limit).
 *   Logits that are NaN or infinite (a corrupt model) are PONDER_ERR_FORMAT, and no result.
 * *out_result_json must be freed with ponder_string_free. */
ponder_status ponder_generate(const ponder_model *model, const char *request_json, char **out_result_json);

/* Called once per generated token. `text` is the newly final text of that sequence (may be
 * "", never splits a UTF-8 character or a possible stop string; valid only during the call).
 * Return false to cancel: the call then returns PONDER_ERR_CANCELLED and no result. */
typedef bool (*ponder_token_callback)(int32_t sequence, int32_t token, const char *text, void *user);

/* As ponder_generate, calling `callback` (may be NULL) for every token. */
ponder_status ponder_generate_stream(const ponder_model *model, const char *request_json,
                                     ponder_token_callback callback, void *user, char **out_result_json);

/* ---- Callbacks shared by several sections ------------------------------------------------ */

/* A reward supplied by the caller (custom rewards, agent environments, scorers): the score of
 * `completion` for `prompt` against `reference` (either may be NULL), or NaN for "no score", which
 * leaves it out of the weighted total and out of its group. The strings are UTF-8, owned by
 * Ponder and valid only during the call; `user` is passed back unchanged. Called on the thread
 * that called into Ponder. Every place that plugs in a reward or scorer takes this type. */
typedef double (*ponder_reward_fn)(const char *prompt, const char *completion, const char *reference, void *user);

/* ---- Inference strategies: voting, reranking, budget forcing ------------------------------ */

/* Answers a prompt with a strategy. request_json: the generation keys of ponder_generate
 * ("prompt" | "messages", "chat", "max_tokens", "temperature", ..., "seed", "stop", "n") plus
 *   "strategy": "single" (default; one sample, n must be 1) | "vote" | "best_of_n" | "reflect",
 *   "n": samples (vote and best_of_n default to 8, reflect to 1), all decoded as one group
 *        after one prefill of the prompt (as ponder_generate's n),
 *   "scorer_weights": {"format": 1, "reflection": 0.5, "agreement": 2, "mean_logprob": 1},
 *   and for "reflect" only (any other strategy rejects them):
 *   "cues": ["Wait,"] (reflection i appends cues[i % count], after a space unless the text
 *           ends in whitespace), "max_reflections": 1, "min_thinking_tokens": 0,
 *   "max_thinking_tokens": null (no limit but max_tokens), "think_end": "</think>",
 *   "force_answer": "</think><answer>".
 * Strategies:
 *  - single: the sample's final answer, extracted as ponder_score's accuracy reward does.
 *  - vote: self-consistency. Answers are extracted and compared as the accuracy reward does
 *    (math-verify's equivalence); the most frequent wins, a tie goes to the answer whose samples
 *    have the higher mean logprob. Samples without an answer do not vote.
 *  - best_of_n: every sample is scored without a reference: "format" (strict, 0..1),
 *    "reflection" (guarded, without its correctness gate: 0..1), "agreement" (the share of the
 *    other samples with an equivalent answer; 0 without an answer, null when n = 1) and
 *    "mean_logprob" (over sampled tokens, <= 0); the highest weighted total wins (ties: mean
 *    logprob, then the earlier sample). Custom scorers (ponder_infer_ex) add to these or replace
 *    a built-in of the same name; a built-in weighted 0 is still reported.
 *  - reflect: s1's budget forcing. Thinking ends where the model writes think_end or an end
 *    token (end of turn, for models without a delimiter). While fewer than max_reflections cues
 *    were inserted, or thinking is shorter than min_thinking_tokens, the end is rolled back —
 *    the KV cache is truncated to before it and continued, nothing is recomputed — and the
 *    next cue is forced there. Otherwise (or when a cue would reach max_tokens or
 *    max_thinking_tokens) thinking that ended at think_end gets force_answer in its place, and
 *    an end of turn stands. Thinking that reaches max_thinking_tokens is ended by force_answer.
 *    No cue is ever inserted after the answer was forced or outside those budgets. With n > 1
 *    the n forced samples vote. Stop strings end a sample as in ponder_generate.
 * Scores are computed for every strategy; every number is null where there is no score.
 * Result JSON (*out_result_json, free with ponder_string_free):
 *   {"strategy", "answer": "53" | null, "selected": index of the sample whose answer won,
 *    "candidates": [{"text", "answer", "scores": {name: x | null}, "total", "mean_logprob",
 *                    "completion_tokens", "finish_reason", "token_ids",
 *                    reflect: "reflections", "forced_answer": {"at_token", "forced_tokens",
 *                    "reason": "reflections_spent" | "no_room" | "max_thinking_tokens",
 *                    "rolled_back"} | null, "rolled_back_tokens"}],
 *    vote (and reflect with n > 1): "votes": {answer: count},
 *    reflect: "reflections": the selected sample's [{"at_token", "cue", "forced_tokens",
 *              "reason": "max_reflections" | "min_thinking_tokens", "ended_by": "think_end" |
 *              "end_of_turn", "rolled_back", "answer_before", "answer_after", "changed"}],
 *    "prompt_tokens", "completion_tokens" (kept), "tokens_spent" (kept + rolled back),
 *    "timings": {"prefill_seconds", "decode_seconds", "scoring_seconds", "total_seconds",
 *                "decode_tokens_per_second"}}
 *   answer_before is the answer the thinking had reached where it ended; answer_after the one at
 *   the next end, or the final answer. Forced tokens (cues, the forced answer) are not the
 *   model's choice and are left out of mean_logprob. token_ids are the ids a sample kept,
 *   forced ones included.
 * Errors: PONDER_ERR_INVALID_ARGUMENT names the JSON path for an unknown strategy or key, n out
 * of [1, 1024] (or not 1 for "single"), min_thinking_tokens > max_thinking_tokens, an empty
 * cue list or cue, a reflect option with another strategy; otherwise as ponder_generate. After
 * any failure *out_result_json is untouched. Thread-safe on a shared model, as ponder_generate. */
ponder_status ponder_infer(const ponder_model *model, const char *request_json, char **out_result_json);

/* A caller-supplied scorer: fn(prompt, completion, NULL, user) scores a sample (prompt is the
 * request's "prompt", or its last message's content); NaN means no score. `weight` multiplies it
 * in the total. A name equal to a built-in scorer's replaces that scorer. */
typedef struct ponder_scorer {
    const char *name;
    ponder_reward_fn fn;
    double weight;
    void *user;
} ponder_scorer;

/* As ponder_infer, with n_scorers custom scorers (scorers may be NULL when n_scorers is 0).
 * They are called on the calling thread, once per sample, after decoding; nothing is kept after
 * the call returns. PONDER_ERR_MISUSE for a NULL scorers array with n_scorers > 0, a NULL name or
 * fn; INVALID_ARGUMENT for an empty or repeated name, a non-finite weight, n_scorers > 256. */
ponder_status ponder_infer_ex(const ponder_model *model, const char *request_json, const ponder_scorer *scorers,
                              size_t n_scorers, char **out_result_json);

/* As ponder_infer_ex, calling `callback` (may be NULL) for every token of every sample, as
 * ponder_generate_stream does. With reflect every token is reported once, in order, sampled or
 * forced, including those later rolled back; text is held back until it can no longer be rolled
 * back, so a sequence's pieces concatenate to its final text. Return false to cancel:
 * PONDER_ERR_CANCELLED and no result. */
ponder_status ponder_infer_stream(const ponder_model *model, const char *request_json, const ponder_scorer *scorers,
                                  size_t n_scorers, ponder_token_callback callback, void *user, char **out_result_json);

/* ---- Training (SFT and GRPO; one handle type for every trainer kind) ---------------------- */

typedef struct ponder_trainer ponder_trainer;

/* Creates a training run of the kind config_json names: "kind": "sft" (the default) or "grpo";
 * any other kind is PONDER_ERR_INVALID_ARGUMENT naming "kind". Every kind
 * takes "model", "lora", "output", "threads" and, in "training", the optimizer and step keys
 * (learning_rate through logging_steps, max_nonfinite_steps); "data", batch_size and
 * gradient_accumulation_steps are SFT's. An SFT config_json:
 * {"kind": "sft",
 *  "model": {"path": "model.gguf" | "hf_dir"} | {"scratch": {"hidden_size", "intermediate_size",
 *            "num_layers", "num_heads", "num_kv_heads", "head_dim", "context_length", "rope_theta",
 *            "tie_word_embeddings", "vocab_size", "seed", "init_std"}}   (scratch: byte-level tokenizer),
 *  "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", ...]}    (absent: full fine-tuning),
 *  "data": {"train": "file.jsonl" | {"generate": "arithmetic", "count", "seed", "split": "train" | "test" | "all",
 *                                    "ops": ["+", "-", "*"]}, "eval": ...,
 *           "eval_fraction": 0, "max_length": 256, "packing": false, "system": null | "paper" | text},
 *  "training": {"batch_size": 4, "gradient_accumulation_steps": 1, "num_train_epochs": 1,
 *               "max_steps": 0, "learning_rate": 1e-4, "lr_scheduler_type": "linear" | "cosine" |
 *               "constant", "warmup_steps": 0, "weight_decay": 0, "max_grad_norm": 1,
 *               "adam_beta1", "adam_beta2", "adam_epsilon", "seed": 0,
 *               "gradient_checkpointing": false, "eval_steps": 0, "logging_steps": 1,
 *               "max_nonfinite_steps": 5},
 *  "output": {"dir": "runs/x", "save_steps": 0, "save_total_limit": 2, "resume": true},
 *  "threads": 2}
 * JSONL lines are {"prompt", "completion"}, {"messages": [...]} or GSM8K's {"question",
 * "answer"} (→ <think>…</think><answer>…</answer>); the loss is on assistant tokens only.
 * With output.dir and resume (default), the newest checkpoint there is resumed exactly.
 *
 * A GRPO config_json (the shared keys as above; option names and meanings as TRL's GRPOConfig,
 * defaults the paper's, not TRL's — TRL defaults to loss "dapo" and beta 0):
 * {"kind": "grpo", "model": ..., "lora": ..., "output": ..., "threads": 2,
 *  "data": {"train": "prompts.jsonl" | {"generate": "arithmetic", "count", "seed", "split"},
 *           "eval": (the same; greedy held-out evaluation), "system": null | "paper" | "text",
 *           "max_prompt_length": 512},
 *  "reward": {"rewards": ["accuracy", "format", "reflection"], "reward_weights": [1, 1, 1],
 *             "custom": [], and the reward options of ponder_score ("reflection_mode", ...)},
 *  "training": {... the shared keys ..., "prompts_per_step": 2, "num_generations": 7,
 *               "gradient_accumulation_steps": 1 (micro-batches per step), "max_completion_length": 256,
 *               "temperature": 1, "top_p": 1, "top_k": 0, "min_p": 0, "repetition_penalty": 1,
 *               "beta": 0.04, "epsilon": 0.2, "epsilon_high": (epsilon), "loss_type": "grpo" |
 *               "bnpo" | "dapo" | "dr_grpo" | "cispo", "importance_sampling_level": "token" |
 *               "sequence", "use_bias_correction_kl": false, "scale_rewards": "group" | "batch" |
 *               "none", "multi_objective_aggregation": "sum_then_normalize" | "normalize_then_sum",
 *               "num_iterations": 1, "mask_truncated_completions": false,
 *               "skip_zero_std_groups": false, "log_completions_steps": 0, "eval_limit": 0},
 *  "environment": null | {"name": "calculator" | "checker" | a registered name, "max_turns": 4,
 *                         "reward_weight": 1, "role": "user", "options": {...}}}
 * JSONL prompt lines: {"prompt", "reference"} (or "solution"), {"messages", "reference"}, a bare
 * {"prompt"} or {"messages"} (no reference: accuracy has no score, custom rewards get NULL), or
 * any SFT shape (the last assistant turn's final answer is the reference). A step samples
 * prompts_per_step × num_generations completions in one batch, scores them, and applies GRPO's
 * loss. Every log-probability in the loss (policy, old policy, reference) is the training
 * forward's on logits / temperature, as TRL computes them; top_k, top_p, min_p and
 * repetition_penalty filter what is sampled, but ratios are to the unfiltered policy. With LoRA
 * the reference is the base model (adapters off). Step metrics add TRL's names — reward,
 * reward_std, rewards/<name>/mean|std, frac_reward_zero_std, completions/mean_length,
 * completions/clipped_ratio, kl, entropy, clip_ratio/low_mean (and the rest) — and accuracy, format_rate,
 * reflection, reflection/<dimension>, rollout_seconds, reference_seconds, update_seconds;
 * with eval data, eval_accuracy, eval_format_rate, eval_reflection, eval_mean_length.
 * With an "environment" every completion is an episode (multi-turn; docs/CONFIG.md has the
 * rules): rewards score the model's final turn, the environment's step rewards add up to the
 * reward "environment", observation tokens are left out of the loss, and the metrics add
 * env/turns_mean, env/observation_tokens_mean, env/errors and env/ended_<reason>; evaluation is
 * greedy episodes (eval_turns_mean, eval_environment_errors, eval_environment_reward). The
 * data generator's "traces": "tool" | "retry" writes SFT examples with the environments' turns.
 *
 * Rejection-sampling SFT ("kind": "rejection_sft"): the SFT keys without data.train, plus
 * {"rejection": {"prompts": (as data.train of GRPO), "system", "num_samples": 8,
 *   "max_completion_length": 256, "temperature": 1, "top_p": 1, "seed": 0, "min_reward": 2,
 *   "require": ["accuracy", "format"], "max_per_prompt": 0, "reward": {...}, "output": path}}.
 * At create, the model samples num_samples completions per prompt; those that ended on their
 * own, have a weighted reward total >= min_reward and score 1 on every `require`d reward are
 * kept once each and written as JSONL {"messages": [...]} to `output` (default
 * output.dir/rejection_samples.jsonl; reused, not resampled, when it exists); the run is then
 * SFT on that file. PONDER_ERR_INVALID_ARGUMENT when nothing passes. */
ponder_status ponder_trainer_create(const char *config_json, ponder_trainer **out_trainer);
void ponder_trainer_free(ponder_trainer *trainer);

/* One optimizer step. *out_metrics_json (may be NULL): {"step", "epoch", "loss", "grad_norm",
 * "learning_rate", "num_tokens", "tokens_per_second", ["nonfinite_skipped"], ["eval_loss"]}.
 * A step whose loss or gradient is NaN or infinite is skipped: weights and optimizer state
 * are untouched, the step still counts and its examples are consumed, no checkpoint is written
 * at it, and the call returns PONDER_OK with "nonfinite_skipped": the number of such steps in a
 * row, this one included ("loss" and "grad_norm" are null where not finite: JSON has no NaN).
 * The training.max_nonfinite_steps-th one in a row (default 5; 1 stops at the first) is not
 * skipped but fails with PONDER_ERR_INVALID_ARGUMENT, and the run stops there: its newest
 * checkpoint is from a step whose update was finite.
 * After a failure: an error computing the step (that one, PONDER_ERR_OUT_OF_MEMORY, ...) leaves
 * the trainer as before the call (weights, optimizer state, step, data position), so calling
 * again meets the same batch; recreate the trainer (e.g. with a lower learning_rate) to resume
 * from the newest checkpoint. An error after the update (PONDER_ERR_IO writing metrics.jsonl or
 * a checkpoint, or the eval_steps evaluation) leaves the update applied and the step counted.
 * PONDER_ERR_MISUSE once all steps are done. */
ponder_status ponder_trainer_step(ponder_trainer *trainer, char **out_metrics_json);

/* Called after every step with the step's metrics JSON; return false to cancel. */
typedef bool (*ponder_metrics_callback)(const char *metrics_json, void *user);

/* Trains to the last step (callback may be NULL), then saves a checkpoint if output.dir is
 * set. *out_summary_json (may be NULL): {"global_step", "total_steps", "last", "checkpoint"}.
 * When the callback returns false: the steps done stay done, a checkpoint of them is saved
 * (with output.dir), and the call returns PONDER_ERR_CANCELLED and no summary; calling it again
 * continues from there. A failing step ends the run with that step's status (see
 * ponder_trainer_step) and no checkpoint of its own. */
ponder_status ponder_trainer_run(ponder_trainer *trainer, ponder_metrics_callback callback, void *user,
                                 char **out_summary_json);

/* Evaluates the current weights on the eval data: {"step", "eval_loss"} for SFT (the mean loss
 * per completion token), {"step", "eval_accuracy", "eval_format_rate", ...} for GRPO (greedy
 * answers). PONDER_ERR_INVALID_ARGUMENT without eval data. */
ponder_status ponder_trainer_evaluate(ponder_trainer *trainer, char **out_json);

/* Writes checkpoint-<step> under dir (atomically); *out_path (may be NULL) receives its path. */
ponder_status ponder_trainer_save(ponder_trainer *trainer, const char *dir, char **out_path);

/* A model handle on the trainer's model (with its adapters), for generation or
 * ponder_model_save. Free it with ponder_model_free; do not use it while the trainer runs. */
ponder_status ponder_trainer_model(ponder_trainer *trainer, ponder_model **out_model);

/* Registers the function of a custom reward of a "grpo" trainer: `name` must be declared in the
 * config's "reward": {"custom": ["name", ...], "rewards": [..., "name"], "reward_weights": [...]}.
 * fn(prompt, completion, reference, user) is called once per completion of every step, on the
 * thread running the step; reference is NULL when the prompt has none; a NaN or infinite
 * return means "no score" (the completion's total then leaves that reward out, as TRL does
 * with None). `user` must stay valid while the trainer may step. Registering a name again
 * replaces its function. A step with a declared reward still unregistered fails with
 * PONDER_ERR_MISUSE (state unchanged). Returns MISUSE for a NULL or stale handle, a NULL fn, or
 * a trainer that is not "grpo"; INVALID_ARGUMENT for an undeclared name. */
ponder_status ponder_trainer_register_reward(ponder_trainer *trainer, const char *name, ponder_reward_fn fn, void *user);
/* The earlier name of ponder_trainer_register_reward (the same function, kept as an alias). */
ponder_status ponder_trainer_set_reward(ponder_trainer *trainer, const char *name, ponder_reward_fn fn, void *user);

/* ---- Agent environments: multi-turn GRPO ---------------------------------------------------- */

/* An environment the caller supplies (the config's "environment": {"name": ...} names it; see
 * docs/CONFIG.md for the episode rules). One instance per completion: create, reset once, step
 * with each action of the model, free. Every callback is called on the thread running the step,
 * during ponder_trainer_step / ponder_pipeline_run, never two at once. `user` is passed back
 * unchanged and must stay valid while the trainer or pipeline may step.
 *  - create (may be NULL: the instance is NULL): options_json is the config's
 *    environment.options ("null" when absent); set *out_env to the instance's state.
 *  - reset: the episode's first user turn for task_json ({"prompt", "reference" | null,
 *    "messages"}, the data line) and seed (the same for the group's episodes, which must answer
 *    alike): set *out_observation to UTF-8 text.
 *  - step: the answer to `action` (the text of the model's turn, or of the turn up to
 *    action_end): set *out_step_json to {"observation": text | null, "reward": x | null,
 *    "done": bool, "info": any}; only "done" is required.
 *  - free (may be NULL): releases an instance create made (also after a failed reset or step;
 *    not after a failed create).
 *  - action_end (may be NULL): text that ends an action inside a turn ("</tool>"); NULL: an
 *    action is a whole turn. Copied at registration.
 * Strings a callback returns in its out parameter become Ponder's: allocate them with malloc or
 * ponder_string_new; Ponder frees them. A callback returns PONDER_OK, or another status (its out
 * string, if set, is taken as the reason): that episode, and only it, then ends with the reason
 * in completions.jsonl ("environment_error"), scores nothing (advantage 0) and is counted in the
 * step's "env/errors"; the run goes on. So does a NULL or malformed answer, invalid UTF-8 or an
 * observation that does not fit the token budget (the episode ends, "budget"). */
typedef struct ponder_environment {
    ponder_status (*create)(const char *options_json, void *user, void **out_env);
    ponder_status (*reset)(void *env, uint64_t seed, const char *task_json, void *user, char **out_observation);
    ponder_status (*step)(void *env, const char *action, void *user, char **out_step_json);
    void (*free)(void *env, void *user);
    const char *action_end;
    void *user;
} ponder_environment;

/* A malloc'd copy of s (NULL for NULL) that Ponder will free: for strings callbacks return. */
char *ponder_string_new(const char *s);

/* Registers the environment a "grpo" trainer's config names in environment.name (not a built-in
 * one: "calculator", "checker"). Registering again replaces it. A step whose environment is
 * neither built in nor registered fails with PONDER_ERR_MISUSE (state unchanged). MISUSE for a
 * NULL or stale handle, a NULL env, reset or step, or a trainer that is not "grpo";
 * INVALID_ARGUMENT for a name that is not the config's or is built in. */
ponder_status ponder_trainer_register_environment(ponder_trainer *trainer, const char *name, const ponder_environment *env);
/* The earlier name of ponder_trainer_register_environment (kept as an alias). */
ponder_status ponder_trainer_set_environment(ponder_trainer *trainer, const char *name, const ponder_environment *env);

/* ---- Rewards (pure functions of the text: no model) --------------------------------------- */


/* Scores completions with Ponder's rewards. request_json (every key but "items" optional):
 * {"rewards": ["accuracy", "format", "reflection"],  names, in order; also "length", "repetition"
 *  "reward_weights": [1, 1, 1],                       one per reward (default 1 each, the paper's)
 *  "format_mode": "strict" | "paper",                 default "strict"
 *  "reflection_mode": "guarded" | "paper",            default "guarded"
 *  "reflection_requires_correct": true, "reflection_correction_bonus": 0.2,
 *  "reflection_ngram_size": 4, "reflection_repetition_weight": 2,
 *  "max_completion_length": 1024, "soft_punish_cache": 256,
 *  "repetition_ngram_size": 3, "repetition_max_penalty": -1,
 *  "items": [{"completion": "...", "reference": "...", "prompt": "...", "completion_tokens": 120}, ...]}
 * The rewards:
 *  - accuracy: 1 or 0. The final answer is the content of <answer>...</answer>, else the last
 *    \boxed{...}, else what follows GSM8K's "####", else the last number; the reference's is what
 *    follows "####", else its last \boxed{...}, else all of it. Compared as math-verify does:
 *    as strings, then as numbers (rounded to 6 decimals when a decimal point was written; "50%"
 *    equals 50 and 0.5), then structurally. No score without a reference or when the reference
 *    holds no number or LaTeX ("unparseable_reference"), never a free 1.
 *  - format: "strict": <think>...</think> then <answer>...</answer>, each tag exactly once, only
 *    whitespace around and between the blocks; a quarter per tag in its place. "paper": the
 *    paper's re.match(r"^<think>.*?</think>\s*<answer>.*?</answer>$", DOTALL | MULTILINE), 0 or 1.
 *  - reflection: "paper": the paper's published reward (four keyword patterns on the whole
 *    lower-cased completion, decayed counts, 1 - 1/(1 + (0.8 ln(1 + raw))^1.2), 2 decimals).
 *    "guarded": the same patterns, only inside <think>, and a sentence counts only when it checks
 *    something: an equation in it (or in the next sentence) holds, is not an identity, uses only
 *    the problem's quantities (the prompt's numbers and what the final answer was derived from)
 *    and, per dimension, is not the derivation restated (verification), corrects an earlier wrong
 *    result (backtracking), computes a quantity the answer uses (subgoals) or involves the answer
 *    (backward chaining); once per set of quantities (docs/CONFIG.md gives the rules). Not in
 *    sentences with more than two keywords; 0 when a reflective sentence is repeated, the format
 *    is not strict-valid or (by default) the answer is wrong; scaled by max(0, 1 - weight x
 *    repeated share); plus the bonus when a counted backtrack corrected the final answer. Its
 *    reason lists what counted and why the rest did not ("verification=1 (84 / 7 = 12) ...
 *    ignored=2 (identity 1, unrelated 1)").
 *  - length: DAPO's soft overlong punishment: 0 up to max - cache, a linear ramp to -1 at max,
 *    -1 beyond; in tokens when the item has completion_tokens, else in characters.
 *  - repetition: (1 - distinct/total word n-grams) x repetition_max_penalty.
 * *out_result_json (free with ponder_string_free): {"results": [{"rewards": {name: x | null},
 * "total": t | null, "reasons": {name: "correct" | "wrong" | "no_answer" | "ok" | "tags_3_of_4" |
 * "backtracking=1 verification=0 ..." | ...}}, ...]}, one per item, in order. null is "no score";
 * total is the weighted sum over the rewards that have one, null only when none has.
 * Returns PONDER_ERR_PARSE for malformed JSON or invalid UTF-8, PONDER_ERR_INVALID_ARGUMENT for an
 * unknown key or reward name, a wrong type or a weight count that differs from the rewards' (the
 * message names the JSON path), PONDER_ERR_MISUSE for a NULL argument; *out_result_json is then
 * untouched. Any completion text (unclosed or nested tags, megabytes) scores, never fails.
 * Thread-safe. */
ponder_status ponder_score(const char *request_json, char **out_result_json);

/* ---- Pipelines: the paper's four stages from one JSON config ------------------------------ */

typedef struct ponder_pipeline ponder_pipeline;

/* The documented defaults of a pipeline config (as llama.cpp's *_default_params), as indented
 * JSON: every key with its default value and the paper's stages (sft, grpo, eval), each with
 * every option written out; "model", "output.dir" and "data" are null (a config must give
 * them). docs/CONFIG.md documents every key. Free with ponder_string_free; NULL only when out
 * of memory. Thread-safe. */
char *ponder_default_config_json(void);

/* Every problem of a pipeline config, without running anything: *out_errors_json (free with
 * ponder_string_free) is {"errors": [{"path": "stages[1].beta", "message": "..."}, ...]} — empty
 * when the config is valid; malformed JSON is one error at "<root>" with its byte offset. Unknown
 * keys, wrong types, out-of-range values and missing model or data files are all reported, each
 * with its JSON path. Returns PONDER_OK whenever it could judge the config (errors or not), MISUSE
 * for a NULL out_errors_json. Thread-safe. */
ponder_status ponder_pipeline_validate(const char *config_json, char **out_errors_json);

/* Validates config_json completely (as ponder_pipeline_validate; every problem in one
 * PONDER_ERR_INVALID_ARGUMENT message, "path: message; path: message"), then creates output.dir
 * and writes config.resolved.json (the config with every default) and state.json there. Nothing
 * is trained until ponder_pipeline_run. A directory that already holds a run (state.json or
 * config.resolved.json) is PONDER_ERR_INVALID_ARGUMENT naming ponder_pipeline_resume / `ponder
 * resume`. The config (docs/CONFIG.md):
 * {"model": {"path": ...} | {"scratch": {...}},
 *  "data": {"train": "file.jsonl" | {"generate": "arithmetic", "count", "seed", "split", "ops"},
 *           "eval": (the same), "system": null | "paper" | "text"},
 *  "reward": {"rewards": ["accuracy", "format", "reflection"], "reward_weights": [1, 1, 1],
 *             "custom": [], and the options of ponder_score},
 *  "output": {"dir": "runs/x", "save_steps": 0, "save_total_limit": 2}, "seed": 0, "threads": 2,
 *  "stages": [{"type": "pretrain" | "sft" | "grpo" | "rejection_sft" | "eval", "name": ...,
 *              "mode": "full" | "lora" | "none", "lora": {...}, "data": ...,
 *              and the stage's options, flat: an sft stage takes SFT's "training" and "data" keys
 *              (learning_rate, batch_size, max_length, ...), a grpo stage GRPO's (beta,
 *              num_generations, ..., and its own "reward"), rejection_sft SFT's plus "rejection",
 *              eval the evaluation's (limit, seed, max_new_tokens, num_samples, temperature,
 *              pass_k)}, ...]}
 * Each stage starts from the model of the last training stage before it; an eval stage
 * evaluates every model trained since the previous eval stage (the first also the base model
 * when "model" is a path) and adds one row per model to RUN/eval.json:
 * {"rows": [{"stage", "model", "accuracy", "format_rate", "reflection", "mean_length", "n", ...}]}.
 * *out_pipeline: free with ponder_pipeline_free. */
ponder_status ponder_pipeline_create(const char *config_json, ponder_pipeline **out_pipeline);

/* The run in run_dir (its config.resolved.json and state.json), to continue with
 * ponder_pipeline_run: done stages are not run again; the first stage not done continues from
 * its newest checkpoint (at most save_steps steps are redone), and RUN/metrics.jsonl is cut back
 * to that checkpoint first, so no step appears twice or goes missing. With the same threads the
 * run ends with the weights and metrics of an uninterrupted one. PONDER_ERR_IO when run_dir
 * holds no run, FORMAT when its state.json does not match its config. */
ponder_status ponder_pipeline_resume(const char *run_dir, ponder_pipeline **out_pipeline);

/* Runs every stage not done yet, in order, then writes RUN/model (safetensors), RUN/model.gguf
 * and RUN/report.html. Blocks; events go to the event callback on this thread. Before anything
 * runs, every custom reward the remaining stages name must be registered (else
 * PONDER_ERR_MISUSE, nothing changed). A second run while one is in progress (from another
 * thread) is MISUSE. Cancelled (ponder_pipeline_cancel, the event callback returning false,
 * ponder_pipeline_free from another thread): the current stage stops at its next step boundary,
 * saves a checkpoint and the call returns PONDER_ERR_CANCELLED; run again (or resume) to go on.
 * Any other failure leaves the stages done so far done and the failing stage at its newest
 * checkpoint. */
ponder_status ponder_pipeline_run(ponder_pipeline *pipeline);

/* Runs stage `index` (0-based) alone, as ponder_pipeline_run does it. The stages before it must
 * be done (else PONDER_ERR_MISUSE naming the first that is not); a done stage is MISUSE;
 * an index outside the stages is INVALID_ARGUMENT. Running the last stage writes the final model
 * and report. */
ponder_status ponder_pipeline_run_stage(ponder_pipeline *pipeline, int32_t index);

/* Where the pipeline is, as JSON (free with ponder_string_free): {"state": "idle" | "running" |
 * "cancelled" | "failed" | "finished", "stage", "stage_index", "step", "total_steps",
 * "eta_seconds" (of the current stage), "metrics" (the last step's), "error" (after a failure),
 * "run_dir", "stages": [{"name", "type", "status": "pending" | "running" | "done"}]}. Safe to call
 * from any thread while the pipeline runs. */
ponder_status ponder_pipeline_status(const ponder_pipeline *pipeline, char **out_json);

/* Called with each event of a run as JSON, on the thread that called ponder_pipeline_run(_stage),
 * during that call; event_json is valid only during the call. Return false to cancel (as
 * ponder_pipeline_cancel). Events: {"event": "stage_start" | "stage_end", "stage", "stage_index",
 * ...}, {"event": "progress", "stage", "stage_index", "step", "total_steps", "eta_seconds",
 * "loss", "reward"?} (every training step, and every batch of an evaluation), {"event": "metric",
 * "stage", "stage_index", "metrics": {the step's metrics}}, {"event": "eval", "stage", "row"},
 * {"event": "log", "message", "level"?}, {"event": "finished", "run_dir", "rows"}.
 * fn NULL removes the callback. `user` must stay valid while the pipeline may run. */
typedef bool (*ponder_event_callback)(const char *event_json, void *user);
ponder_status ponder_pipeline_set_event_callback(ponder_pipeline *pipeline, ponder_event_callback fn, void *user);

/* The function of a custom reward declared in the config's "reward": {"custom": [...]} (or a
 * stage's): the same ponder_reward_fn as ponder_trainer_register_reward, called on the running thread
 * for every completion a grpo (or rejection_sft) stage scores. Registering a name again replaces
 * it. INVALID_ARGUMENT for an undeclared name; MISUSE for a NULL fn or name, or while the
 * pipeline runs. */
ponder_status ponder_pipeline_register_reward(ponder_pipeline *pipeline, const char *name, ponder_reward_fn fn, void *user);

/* The environment a grpo stage names in its "environment": {"name"} (as
 * ponder_trainer_register_environment). A run with a stage to do whose environment is neither built
 * in nor registered fails with PONDER_ERR_MISUSE before it starts. INVALID_ARGUMENT for a name no
 * stage names; MISUSE for a NULL env, reset, step or name, or while the pipeline runs. */
ponder_status ponder_pipeline_register_environment(ponder_pipeline *pipeline, const char *name, const ponder_environment *env);

/* Asks a running pipeline to stop at its next step boundary (a training step, or a batch of an
 * evaluation) with a checkpoint; ponder_pipeline_run then returns PONDER_ERR_CANCELLED. Safe from
 * any thread and from a signal-handling thread; returns at once. Called while nothing runs, the
 * next run stops at its first step boundary. */
ponder_status ponder_pipeline_cancel(ponder_pipeline *pipeline);

/* Frees a pipeline (NULL and twice are no-ops). A run in progress on another thread is
 * cancelled and finishes its step before the memory goes. */
void ponder_pipeline_free(ponder_pipeline *pipeline);

#ifdef __cplusplus
}
#endif

#endif /* PONDER_H */
