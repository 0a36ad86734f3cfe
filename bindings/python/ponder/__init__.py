"""ctypes bindings for Ponder's C API (include/ponder.h).

The library is found through, in order: the PONDER_LIBRARY environment variable, a
libponder.so shipped inside this package, the system search path (ldconfig), and the
usual install prefixes. Every failing call raises PonderError carrying the library's
status and message (ponder_last_error).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

try:
    from typing import TypedDict
except ImportError:  # Python < 3.8
    TypedDict = dict  # type: ignore

__all__ = [
    "PonderError", "InvalidArgument", "ParseError", "IOFailure", "FormatError", "Unsupported", "OutOfMemory",
    "Cancelled", "BufferTooSmall", "Misuse", "InternalError", "LibraryNotFound",
    "Model", "Trainer", "Pipeline", "Piece", "Stream", "library", "version", "score", "default_config",
    "validate_config", "STATUS_NAMES",
    "Completion", "GenerateResult", "InferCandidate", "InferResult", "ScoreResult", "ENVIRONMENT", "SCORER",
]

# ponder_status values, as in ponder.h (tests check them against the header)
STATUS_NAMES = {
    0: "OK", 1: "INVALID_ARGUMENT", 2: "PARSE", 3: "IO", 4: "FORMAT", 5: "UNSUPPORTED",
    6: "OUT_OF_MEMORY", 7: "CANCELLED", 8: "BUFFER_TOO_SMALL", 9: "MISUSE", 10: "INTERNAL",
}


class PonderError(Exception):
    """A failed Ponder call: .status (int), .status_name, and the library's message. Raised as
    the subclass of its status (InvalidArgument, ParseError, ...), so callers can catch one family."""

    status = 0

    def __new__(cls, status: int = 0, message: str = "", *args: Any) -> "PonderError":
        # PonderError(status, message) gives the subclass of that status.
        if cls is PonderError and status in _ERRORS:
            cls = _ERRORS[status]
        return super().__new__(cls)

    def __init__(self, status: int, message: str):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        self.message = message
        super().__init__(f"{self.status_name}: {message}")


class InvalidArgument(PonderError, ValueError):
    """PONDER_ERR_INVALID_ARGUMENT: a value out of range, of the wrong type, or unknown."""


class ParseError(PonderError, ValueError):
    """PONDER_ERR_PARSE: malformed JSON or invalid UTF-8 (the message has the byte offset)."""


class IOFailure(PonderError, OSError):
    """PONDER_ERR_IO: a file could not be opened, read or written."""


class FormatError(PonderError, ValueError):
    """PONDER_ERR_FORMAT: a model or tokenizer file is corrupt or inconsistent."""


class Unsupported(PonderError):
    """PONDER_ERR_UNSUPPORTED: a valid input uses something Ponder does not implement."""


class OutOfMemory(PonderError):
    """PONDER_ERR_OUT_OF_MEMORY."""


class Cancelled(PonderError):
    """PONDER_ERR_CANCELLED: a callback returned False (or the run was cancelled)."""


class BufferTooSmall(PonderError):
    """PONDER_ERR_BUFFER_TOO_SMALL (the binding sizes its buffers itself; seen only from raw calls)."""


class Misuse(PonderError):
    """PONDER_ERR_MISUSE: a closed handle, a call in the wrong state, a missing callback."""


class InternalError(PonderError):
    """PONDER_ERR_INTERNAL: a bug in Ponder; please report the message."""


class LibraryNotFound(PonderError, OSError):
    """libponder.so could not be loaded; the message names every place tried."""

    def __init__(self, message: str):
        PonderError.__init__(self, 0, message)
        self.status_name = "LIBRARY_NOT_FOUND"
        self.args = (f"LIBRARY_NOT_FOUND: {message}",)


_ERRORS = {1: InvalidArgument, 2: ParseError, 3: IOFailure, 4: FormatError, 5: Unsupported, 6: OutOfMemory,
           7: Cancelled, 8: BufferTooSmall, 9: Misuse, 10: InternalError}


class Completion(TypedDict):
    """One generated sequence."""
    text: str
    token_ids: List[int]
    logprobs: List[float]
    finish_reason: str


class GenerateResult(TypedDict, total=False):
    """Model.generate's result (ponder_generate's JSON)."""
    completions: List[Completion]
    prompt_tokens: int
    timings: Dict[str, float]
    notes: List[str]


class InferCandidate(TypedDict, total=False):
    """One sample of an inference request, with its answer and scores."""
    text: str
    answer: Optional[str]
    scores: Dict[str, Optional[float]]
    total: Optional[float]
    mean_logprob: Optional[float]
    completion_tokens: int
    finish_reason: str
    token_ids: List[int]


class InferResult(TypedDict, total=False):
    """Model.infer's result (ponder_infer's JSON)."""
    strategy: str
    answer: Optional[str]
    selected: int
    candidates: List[InferCandidate]
    votes: Any
    reflections: Any
    prompt_tokens: int
    completion_tokens: int
    tokens_spent: int
    timings: Dict[str, float]
    notes: List[str]


class ScoreResult(TypedDict):
    """score()'s result for one item."""
    rewards: Dict[str, Optional[float]]
    total: Optional[float]
    reasons: Dict[str, str]


class Piece(NamedTuple):
    """A streamed piece of text: the sequence it belongs to, the token that completed it."""
    sequence: int
    token: int
    text: str


def _candidates() -> List[str]:
    env = os.environ.get("PONDER_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.join(here, "libponder.so")]
    found = ctypes.util.find_library("ponder")
    if found:
        out.append(found)
    for prefix in ("/usr/local/lib", "/usr/lib", os.path.expanduser("~/.local/lib")):
        out.append(os.path.join(prefix, "libponder.so"))
    return out


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:  # try the next place
            errors.append(f"{path}: {e}")
    raise LibraryNotFound("libponder.so could not be loaded; set PONDER_LIBRARY to its path. Tried:\n  " + "\n  ".join(errors))


_lib: Optional[ctypes.CDLL] = None

TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_int32, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p)
METRICS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p)
REWARD_FN = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


ENV_CREATE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
ENV_RESET = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_void_p))
ENV_STEP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
ENV_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class ENVIRONMENT(ctypes.Structure):
    """ponder_environment: {create, reset, step, free, action_end, user}."""
    _fields_ = [("create", ENV_CREATE), ("reset", ENV_RESET), ("step", ENV_STEP), ("free", ENV_FREE),
                ("action_end", ctypes.c_char_p), ("user", ctypes.c_void_p)]


class SCORER(ctypes.Structure):
    """ponder_scorer: {name, fn, weight, user}."""
    _fields_ = [("name", ctypes.c_char_p), ("fn", REWARD_FN), ("weight", ctypes.c_double), ("user", ctypes.c_void_p)]


def library() -> ctypes.CDLL:
    """The loaded libponder, with argument and result types declared."""
    global _lib
    if _lib is not None:
        return _lib
    lib = _load()
    c_char_pp = ctypes.POINTER(ctypes.c_char_p)
    lib.ponder_version.restype = ctypes.c_char_p
    lib.ponder_version_number.restype = ctypes.c_int
    lib.ponder_status_string.argtypes = [ctypes.c_int]
    lib.ponder_status_string.restype = ctypes.c_char_p
    lib.ponder_last_error.restype = ctypes.c_char_p
    lib.ponder_string_free.argtypes = [ctypes.c_void_p]
    lib.ponder_string_free.restype = None
    lib.ponder_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ponder_model_free.argtypes = [ctypes.c_void_p]
    lib.ponder_model_free.restype = None
    lib.ponder_model_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ponder_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool,
                                    ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
    lib.ponder_tokenize_dropped.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool,
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ponder_tokenize_dropped.restype = ctypes.c_int
    lib.ponder_detokenize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    lib.ponder_generate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ponder_generate_stream.argtypes = [ctypes.c_void_p, ctypes.c_char_p, TOKEN_CALLBACK, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_void_p)]
    vpp = ctypes.POINTER(ctypes.c_void_p)
    lib.ponder_model_save.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ponder_trainer_create.argtypes = [ctypes.c_char_p, vpp]
    lib.ponder_trainer_free.argtypes = [ctypes.c_void_p]
    lib.ponder_trainer_free.restype = None
    lib.ponder_trainer_step.argtypes = [ctypes.c_void_p, vpp]
    lib.ponder_trainer_run.argtypes = [ctypes.c_void_p, METRICS_CALLBACK, ctypes.c_void_p, vpp]
    lib.ponder_trainer_evaluate.argtypes = [ctypes.c_void_p, vpp]
    lib.ponder_trainer_save.argtypes = [ctypes.c_void_p, ctypes.c_char_p, vpp]
    lib.ponder_trainer_model.argtypes = [ctypes.c_void_p, vpp]
    lib.ponder_score.argtypes = [ctypes.c_char_p, vpp]
    lib.ponder_score.restype = ctypes.c_int
    for f in ("ponder_trainer_register_reward", "ponder_trainer_set_reward"):
        getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_char_p, REWARD_FN, ctypes.c_void_p]
        getattr(lib, f).restype = ctypes.c_int
    lib.ponder_string_new.argtypes = [ctypes.c_char_p]
    lib.ponder_string_new.restype = ctypes.c_void_p
    for f in ("ponder_trainer_register_environment", "ponder_trainer_set_environment"):
        getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ENVIRONMENT)]
        getattr(lib, f).restype = ctypes.c_int
    lib.ponder_infer.argtypes = [ctypes.c_void_p, ctypes.c_char_p, vpp]
    lib.ponder_infer_ex.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(SCORER), ctypes.c_size_t, vpp]
    lib.ponder_infer_stream.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(SCORER), ctypes.c_size_t,
                                        TOKEN_CALLBACK, ctypes.c_void_p, vpp]
    for f in ("ponder_model_load", "ponder_model_info", "ponder_tokenize", "ponder_detokenize",
              "ponder_generate", "ponder_generate_stream", "ponder_model_save", "ponder_trainer_create",
              "ponder_trainer_step", "ponder_trainer_run", "ponder_trainer_evaluate", "ponder_trainer_save",
              "ponder_trainer_model", "ponder_infer", "ponder_infer_ex", "ponder_infer_stream"):
        getattr(lib, f).restype = ctypes.c_int
    del c_char_pp
    _lib = lib
    return lib


def version() -> str:
    """The library's version string, e.g. "0.1.0"."""
    return library().ponder_version().decode()


def score(items: Sequence[Any], rewards: Optional[Sequence[str]] = None,
          reward_weights: Optional[Sequence[float]] = None, **options: Any) -> List[Dict[str, Any]]:
    """Scores completions with Ponder's rewards (ponder_score; no model needed). items: dicts
    {"completion", "reference"?, "prompt"?, "completion_tokens"?} or completion strings; options
    as in ponder.h (reflection_mode, format_mode, ...). One {"rewards", "total", "reasons"} per item."""
    request: Dict[str, Any] = dict(options)
    if rewards is not None:
        request["rewards"] = list(rewards)
    if reward_weights is not None:
        request["reward_weights"] = list(reward_weights)
    request["items"] = [{"completion": i} if isinstance(i, str) else i for i in items]
    out = ctypes.c_void_p()
    _check(library().ponder_score(json.dumps(request).encode(), ctypes.byref(out)))
    return json.loads(_take_string(out))["results"]


def _reward_callback(fn: Callable[..., Optional[float]], errors: List[BaseException], reference: bool = True) -> Any:
    """A Python reward or scorer as a ponder_reward_fn: fn(prompt, completion[, reference]) with
    None for a missing prompt or reference; a None return is "no score" (NaN), and so is an
    exception, kept in `errors` to be re-raised after the call (never across C)."""
    def trampoline(p: Optional[bytes], c: bytes, r: Optional[bytes], _user: Any) -> float:
        try:
            args = [p.decode("utf-8", "replace") if p is not None else None, c.decode("utf-8", "replace")]
            if reference:
                args.append(r.decode("utf-8", "replace") if r is not None else None)
            v = fn(*args)
            return float("nan") if v is None else float(v)
        except BaseException as e:
            errors.append(e)
            return float("nan")
    return REWARD_FN(trampoline)


class _Environment:
    """A Python environment class as a ponder_environment. factory(options) (factory() when the
    config gives no options) makes one instance per episode, with reset(seed, task) -> str (the
    first user turn; task is {"prompt", "reference", "messages"}) and step(action) -> a dict
    {"observation", "reward", "done", "info"} or a Gym-like tuple (observation, reward, done[,
    info]). factory.action_end (optional) is text that ends an action inside a turn. An exception
    in the environment ends that episode with its text as the reason (the run goes on); one that
    is not an Exception (KeyboardInterrupt) is also kept in `errors`, re-raised after the call."""

    def __init__(self, factory: Callable[..., Any], errors: List[BaseException]):
        self.factory = factory
        self.errors = errors
        self.instances: Dict[int, Any] = {}
        self.next_id = 1
        lib = library()

        def give(out: Any, text: str) -> None:
            out[0] = lib.ponder_string_new(text.encode("utf-8", "surrogatepass"))

        def guarded(out: Any, body: Callable[[], str]) -> int:
            try:
                text = body()
                if out:
                    give(out, text)
                return 0
            except BaseException as e:  # never across C
                if not isinstance(e, Exception):
                    self.errors.append(e)
                if out:
                    give(out, f"{type(e).__name__}: {e}")
                return 1  # PONDER_ERR_INVALID_ARGUMENT: this episode fails

        def create(options: bytes, _user: Any, out_env: Any) -> int:
            def body() -> str:
                opts = json.loads(options)
                env = self.factory() if opts is None else self.factory(opts)
                key = self.next_id
                self.next_id += 1
                self.instances[key] = env
                out_env[0] = key
                return ""
            return guarded(None, body)

        def reset(env: int, seed: int, task: bytes, _user: Any, out: Any) -> int:
            def body() -> str:
                text = self.instances[env].reset(seed, json.loads(task))
                if not isinstance(text, str):
                    raise TypeError(f"reset must return a str, got {type(text).__name__}")
                return text
            return guarded(out, body)

        def step(env: int, action: bytes, _user: Any, out: Any) -> int:
            def body() -> str:
                r = self.instances[env].step(action.decode("utf-8", "replace"))
                if isinstance(r, tuple):
                    keys = ("observation", "reward", "done", "info")
                    if not 3 <= len(r) <= 4:
                        raise TypeError(f"step returned a tuple of {len(r)}: expected (observation, reward, done[, info])")
                    r = dict(zip(keys, r))
                return json.dumps(r)
            return guarded(out, body)

        def free(env: int, _user: Any) -> None:
            self.instances.pop(env, None)

        # Kept alive as long as the trainer or pipeline may call them.
        self.callbacks = (ENV_CREATE(create), ENV_RESET(reset), ENV_STEP(step), ENV_FREE(free))
        end = getattr(factory, "action_end", None)
        self.struct = ENVIRONMENT(*self.callbacks, end.encode() if end else None, None)


def _check(status: int) -> None:
    if status != 0:
        raise PonderError(status, library().ponder_last_error().decode("utf-8", "replace"))


def _take_string(p: ctypes.c_void_p, length: Optional[int] = None) -> str:
    """Copies a library-owned string and frees it with ponder_string_free."""
    lib = library()
    try:
        raw = ctypes.string_at(p.value) if length is None else ctypes.string_at(p.value, length)
        return raw.decode("utf-8")
    finally:
        lib.ponder_string_free(p)


def _encode(s: Any, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, got {type(s).__name__}")
    return s.encode("utf-8", "surrogatepass")


class _Handle:
    """An owned library handle, freed by `_free` on close() or garbage collection."""

    _free = ""

    def __init__(self, handle: ctypes.c_void_p):
        self._handle = handle

    def close(self) -> None:
        """Frees the library handle now (later calls raise Misuse); also done on garbage collection."""
        if self._handle is not None and self._handle.value:
            getattr(library(), self._free)(self._handle)
        self._handle = None

    def __enter__(self):
        """The handle itself; closed when the with-block ends."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Closes the handle."""
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def _h(self) -> ctypes.c_void_p:
        # A closed handle passes NULL, which the library reports as MISUSE.
        return self._handle if self._handle is not None else ctypes.c_void_p()


class Model(_Handle):
    """A loaded model (GGUF file or Hugging Face directory). Thread-safe for generation."""

    _free = "ponder_model_free"

    @classmethod
    def load(cls, path: str, threads: Optional[int] = None, **options: Any) -> "Model":
        """Loads a GGUF file or a Hugging Face directory; options as ponder_model_load's JSON
        (adapter, threads, ...)."""
        opts: Dict[str, Any] = {"path": path, **options}
        if threads is not None:
            opts["threads"] = threads
        handle = ctypes.c_void_p()
        _check(library().ponder_model_load(json.dumps(opts).encode(), ctypes.byref(handle)))
        return cls(handle)

    def save(self, path: str, format: Optional[str] = None, dtype: str = "f32") -> None:
        """Writes a Hugging Face directory (format="safetensors") or a GGUF file ("gguf")."""
        opts: Dict[str, Any] = {"path": path, "dtype": dtype}
        if format:
            opts["format"] = format
        _check(library().ponder_model_save(self._h, json.dumps(opts).encode()))

    def info(self) -> Dict[str, Any]:
        """Shape and tokenizer facts (ponder_model_info): vocab_size, context_length, chat_template, ..."""
        out = ctypes.c_void_p()
        _check(library().ponder_model_info(self._h, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def dropped_bytes(self, text: str, parse_special: bool = True) -> int:
        """How many bytes of `text` this vocabulary cannot spell: tokenize() leaves them out (as
        Hugging Face tokenizers does), so when this is not 0 its ids stand for another text."""
        data = _encode(text, "text")
        n = ctypes.c_size_t()
        _check(library().ponder_tokenize_dropped(self._h, data, len(data), parse_special, ctypes.byref(n)))
        return n.value

    def tokenize(self, text: str, parse_special: bool = True) -> List[int]:
        """Token ids of `text`; parse_special turns special-token text ("<|im_end|>") into its token.
        Bytes the vocabulary cannot spell are left out (dropped_bytes() counts them)."""
        lib = library()
        data = _encode(text, "text")
        n = ctypes.c_size_t()
        status = lib.ponder_tokenize(self._h, data, len(data), parse_special, None, 0, ctypes.byref(n))
        if status not in (0, 8):
            _check(status)
        buf = (ctypes.c_int32 * max(1, n.value))()
        _check(lib.ponder_tokenize(self._h, data, len(data), parse_special, buf, n.value, ctypes.byref(n)))
        return list(buf[: n.value])

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids. An id that is not an int in the C ABI's int32 range raises
        InvalidArgument naming it (never a silent wrap); ids outside the vocabulary do too."""
        ids = list(ids)
        for i, t in enumerate(ids):
            if isinstance(t, bool) or not isinstance(t, int):
                raise InvalidArgument(1, f"ids[{i}]: expected an int, got {type(t).__name__}")
            if not -2**31 <= t < 2**31:
                raise InvalidArgument(1, f"ids[{i}]: token id {t} is outside the int32 range of the C API")
        arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        out = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _check(library().ponder_detokenize(self._h, arr, len(ids), ctypes.byref(out), ctypes.byref(n)))
        return _take_string(out, n.value)

    def generate(self, prompt: Optional[str] = None, *,
                 on_token: Optional[Callable[[int, int, str], Optional[bool]]] = None,
                 **request: Any) -> Dict[str, Any]:
        """Runs ponder_generate with the request keys of ponder.h (max_tokens, temperature,
        top_p, top_k, min_p, repetition_penalty, seed, stop, n, messages, chat, ...).
        on_token(sequence, token, text) is called per token; returning False cancels."""
        if prompt is not None:
            request["prompt"] = prompt
        req = json.dumps(request).encode()
        out = ctypes.c_void_p()
        lib = library()
        if on_token is None:
            _check(lib.ponder_generate(self._h, req, ctypes.byref(out)))
        else:
            failure: List[BaseException] = []

            def trampoline(seq: int, tok: int, text: bytes, _user: Any) -> bool:
                try:
                    return on_token(seq, tok, text.decode("utf-8", "replace")) is not False
                except BaseException as e:  # surface it after the call, never across C
                    failure.append(e)
                    return False

            cb = TOKEN_CALLBACK(trampoline)
            status = lib.ponder_generate_stream(self._h, req, cb, None, ctypes.byref(out))
            if failure:
                raise failure[0]
            _check(status)
        return json.loads(_take_string(out))

    def stream(self, prompt: Optional[str] = None, **request: Any) -> "Stream":
        """generate() as an iterator of Piece(sequence, token, text), in order, as the text
        becomes final; the result (GenerateResult) is .result once the iterator is exhausted.
        Leaving the loop early (break, close()) cancels the generation.

            for piece in model.stream("What is 7*6?", chat=True, max_tokens=64):
                print(piece.text, end="", flush=True)
        """
        if prompt is not None:
            request["prompt"] = prompt
        return Stream(self, request)

    def infer(self, prompt: Optional[str] = None, *, strategy: str = "single",
              scorers: Optional[Dict[str, Any]] = None,
              on_token: Optional[Callable[[int, int, str], Optional[bool]]] = None,
              **request: Any) -> Dict[str, Any]:
        """Runs ponder_infer: strategy "single", "vote", "best_of_n" or "reflect" with the
        request keys of ponder.h (n, seed, temperature, max_tokens, scorer_weights, cues,
        max_reflections, min_thinking_tokens, max_thinking_tokens, ...). Returns {"answer",
        "candidates": [{"text", "answer", "scores", ...}], "votes"?, "reflections"?, ...}.
        scorers: {name: fn} or {name: (fn, weight)} (weight 1 by default), fn(prompt, completion)
        -> float or None (no score); a name of a built-in scorer replaces it. An exception in a
        scorer is re-raised after the call. on_token as in generate()."""
        if prompt is not None:
            request["prompt"] = prompt
        request["strategy"] = strategy
        req = json.dumps(request).encode()
        failure: List[BaseException] = []
        keep: List[Any] = []  # the ctypes callbacks must outlive the call
        items = list((scorers or {}).items())
        array = (SCORER * max(1, len(items)))()
        for k, (name, spec) in enumerate(items):
            fn, weight = spec if isinstance(spec, tuple) else (spec, 1.0)
            cb = _reward_callback(fn, failure, reference=False)
            keep.append(cb)
            array[k] = SCORER(_encode(name, "scorer name"), cb, float(weight), None)

        def on_tok(seq: int, tok: int, text: bytes, _user: Any) -> bool:
            try:
                return on_token is None or on_token(seq, tok, text.decode("utf-8", "replace")) is not False
            except BaseException as e:
                failure.append(e)
                return False

        token_cb = TOKEN_CALLBACK(on_tok) if on_token is not None else TOKEN_CALLBACK()
        out = ctypes.c_void_p()
        status = library().ponder_infer_stream(self._h, req, array, len(items), token_cb, None, ctypes.byref(out))
        if failure:
            if status == 0:
                library().ponder_string_free(out)
            raise failure[0]
        _check(status)
        return json.loads(_take_string(out))


class Stream:
    """Model.stream's iterator: generation runs on a worker thread, pieces cross a queue."""

    _END = object()

    def __init__(self, model: Model, request: Dict[str, Any]):
        import queue
        import threading
        self.result: Optional[GenerateResult] = None
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=256)
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None

        def on_token(seq: int, tok: int, text: str) -> bool:
            if self._stop.is_set():
                return False
            self._queue.put(Piece(seq, tok, text))
            return not self._stop.is_set()

        def work() -> None:
            try:
                self.result = model.generate(on_token=on_token, **request)
            except BaseException as e:  # handed to the consumer
                self._error = e
            finally:
                self._queue.put(Stream._END)

        self._thread = threading.Thread(target=work, name="ponder-stream", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Piece]:
        """The pieces, in order."""
        return self

    def __next__(self) -> Piece:
        """The next piece; StopIteration at the end, or the generation's error."""
        item = self._queue.get()
        if item is Stream._END:
            self._thread.join()
            if self._error is not None and not (self._stop.is_set() and isinstance(self._error, Cancelled)):
                e, self._error = self._error, None
                raise e
            raise StopIteration
        return item

    def close(self) -> None:
        """Cancels the generation (if still running) and waits for it to stop."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except Exception:
                pass
        self._thread.join()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Trainer(_Handle):
    """A training run of config["kind"] ("sft", the default, or "grpo": keys as in ponder.h:
    model, lora, data, training, output, threads; GRPO adds reward). Not thread-safe."""

    _free = "ponder_trainer_free"

    def __init__(self, config: Dict[str, Any]):
        super().__init__(ctypes.c_void_p())
        _check(library().ponder_trainer_create(json.dumps(config).encode(), ctypes.byref(self._handle)))
        self._rewards: Dict[str, Any] = {}
        self._reward_errors: List[BaseException] = []

    def register_reward(self, name: str, fn: Callable[[str, str, Optional[str]], Optional[float]]) -> None:
        """Registers a custom reward of a "grpo" trainer, declared in config["reward"]["custom"]:
        fn(prompt, completion, reference) -> score, or None for no score. An exception inside
        fn counts as no score for that completion and is re-raised after the step."""
        cb = _reward_callback(fn, self._reward_errors)
        _check(library().ponder_trainer_register_reward(self._h, _encode(name, "name"), cb, None))
        # Kept alive as long as the trainer may call it; replaced only once the library took
        # the new one (a refused registration leaves the old one in use).
        self._rewards[name] = cb

    def register_environment(self, name: str, factory: Callable[..., Any]) -> None:
        """Registers the environment config["environment"]["name"] names (one not built in):
        a class (or callable) with reset(seed, task) and step(action), as _Environment says."""
        env = _Environment(factory, self._reward_errors)
        _check(library().ponder_trainer_register_environment(self._h, _encode(name, "name"), ctypes.byref(env.struct)))
        self._rewards["environment:" + name] = env  # alive as long as the trainer may call it

    def set_reward(self, name: str, fn: Callable[[str, str, Optional[str]], Optional[float]]) -> None:
        """The earlier name of register_reward (kept as an alias)."""
        self.register_reward(name, fn)

    def set_environment(self, name: str, factory: Callable[..., Any]) -> None:
        """The earlier name of register_environment (kept as an alias)."""
        self.register_environment(name, factory)

    def _raise_reward_errors(self) -> None:
        if self._reward_errors:
            e = self._reward_errors[0]
            self._reward_errors = []
            raise e

    def step(self) -> Dict[str, Any]:
        """One optimizer step; its metrics ({"step", "loss", "learning_rate", ...})."""
        out = ctypes.c_void_p()
        status = library().ponder_trainer_step(self._h, ctypes.byref(out))
        self._raise_reward_errors()
        _check(status)
        return json.loads(_take_string(out))

    def run(self, on_step: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None) -> Dict[str, Any]:
        """Trains to the last step. on_step returning False cancels: the steps done are saved
        (with output.dir) and PonderError CANCELLED is raised; run() again continues."""
        failure: List[BaseException] = []

        def trampoline(metrics: bytes, _user: Any) -> bool:
            try:
                return on_step is None or on_step(json.loads(metrics)) is not False
            except BaseException as e:
                failure.append(e)
                return False

        cb = METRICS_CALLBACK(trampoline)
        out = ctypes.c_void_p()
        status = library().ponder_trainer_run(self._h, cb, None, ctypes.byref(out))
        if failure:
            raise failure[0]
        self._raise_reward_errors()
        _check(status)
        return json.loads(_take_string(out))

    def evaluate(self) -> Dict[str, Any]:
        """eval_* metrics of the current weights on the config's eval data."""
        out = ctypes.c_void_p()
        _check(library().ponder_trainer_evaluate(self._h, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def save(self, directory: str) -> str:
        """Saves a checkpoint under `directory`; returns its path."""
        out = ctypes.c_void_p()
        _check(library().ponder_trainer_save(self._h, directory.encode(), ctypes.byref(out)))
        return _take_string(out)

    def model(self) -> Model:
        """The model being trained, as a Model handle (generate from it between steps)."""
        handle = ctypes.c_void_p()
        _check(library().ponder_trainer_model(self._h, ctypes.byref(handle)))
        return Model(handle)


# ---- Pipelines (ponder.h, "Pipelines") ------------------------------------------------------

EVENT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p)


def _pipeline_library() -> ctypes.CDLL:
    lib = library()
    if getattr(lib, "_pipeline_declared", False):
        return lib
    vpp = ctypes.POINTER(ctypes.c_void_p)
    lib.ponder_default_config_json.restype = ctypes.c_void_p
    lib.ponder_default_config_json.argtypes = []
    lib.ponder_pipeline_validate.argtypes = [ctypes.c_char_p, vpp]
    lib.ponder_pipeline_create.argtypes = [ctypes.c_char_p, vpp]
    lib.ponder_pipeline_resume.argtypes = [ctypes.c_char_p, vpp]
    lib.ponder_pipeline_run.argtypes = [ctypes.c_void_p]
    lib.ponder_pipeline_run_stage.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.ponder_pipeline_status.argtypes = [ctypes.c_void_p, vpp]
    lib.ponder_pipeline_set_event_callback.argtypes = [ctypes.c_void_p, EVENT_CALLBACK, ctypes.c_void_p]
    lib.ponder_pipeline_register_reward.argtypes = [ctypes.c_void_p, ctypes.c_char_p, REWARD_FN, ctypes.c_void_p]
    lib.ponder_pipeline_register_environment.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ENVIRONMENT)]
    lib.ponder_pipeline_register_environment.restype = ctypes.c_int
    lib.ponder_pipeline_cancel.argtypes = [ctypes.c_void_p]
    lib.ponder_pipeline_free.argtypes = [ctypes.c_void_p]
    lib.ponder_pipeline_free.restype = None
    for f in ("ponder_pipeline_validate", "ponder_pipeline_create", "ponder_pipeline_resume", "ponder_pipeline_run",
              "ponder_pipeline_run_stage", "ponder_pipeline_status", "ponder_pipeline_set_event_callback",
              "ponder_pipeline_register_reward", "ponder_pipeline_cancel"):
        getattr(lib, f).restype = ctypes.c_int
    lib._pipeline_declared = True
    return lib


def default_config() -> Dict[str, Any]:
    """The documented defaults of a pipeline config (ponder_default_config_json)."""
    p = _pipeline_library().ponder_default_config_json()
    if not p:
        raise MemoryError("ponder_default_config_json")
    return json.loads(_take_string(ctypes.c_void_p(p)))


def validate_config(config: Any) -> List[Dict[str, str]]:
    """Every problem of a pipeline config (dict or JSON text): [{"path", "message"}], empty if valid."""
    text = config if isinstance(config, str) else json.dumps(config)
    out = ctypes.c_void_p()
    _check(_pipeline_library().ponder_pipeline_validate(text.encode(), ctypes.byref(out)))
    return json.loads(_take_string(out))["errors"]


class Pipeline(_Handle):
    """The four-stage pipeline of a JSON config (docs/CONFIG.md), or a run directory to resume.

        p = ponder.Pipeline(config, on_event=print)      # validates, creates output.dir
        p = ponder.Pipeline.resume("runs/quickstart")    # continues a stopped or killed run
        p.register_reward("brevity", lambda prompt, completion, reference: ...)
        p.run()                                           # Ctrl-C cancels cleanly (checkpoint saved)

    run() and run_stage() do the work on a worker thread and wait for it in the calling thread,
    so KeyboardInterrupt reaches Python: it cancels the run (the stage stops at its next step
    with a checkpoint), waits for it, and is re-raised. Events and rewards are called on the
    worker thread. An exception inside on_event or a reward is re-raised after the run (a failing
    on_event cancels; a failing reward counts as no score)."""

    _free = "ponder_pipeline_free"

    def __init__(self, config: Optional[Dict[str, Any]] = None, *, on_event: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None,
                 _handle: Optional[ctypes.c_void_p] = None):
        super().__init__(ctypes.c_void_p())
        lib = _pipeline_library()
        if _handle is not None:
            self._handle = _handle
        else:
            _check(lib.ponder_pipeline_create(json.dumps(config).encode(), ctypes.byref(self._handle)))
        self._rewards: Dict[str, Any] = {}
        self._errors: List[BaseException] = []
        self._event_cb = None
        self.set_event_callback(on_event)

    @classmethod
    def resume(cls, run_dir: str, *, on_event: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None) -> "Pipeline":
        """The pipeline of a run directory, to continue from its last checkpoint."""
        handle = ctypes.c_void_p()
        _check(_pipeline_library().ponder_pipeline_resume(_encode(run_dir, "run_dir"), ctypes.byref(handle)))
        return cls(on_event=on_event, _handle=handle)

    def set_event_callback(self, on_event: Optional[Callable[[Dict[str, Any]], Optional[bool]]]) -> None:
        """on_event(event_dict) for every event; returning False cancels the run."""
        if on_event is None:
            self._event_cb = EVENT_CALLBACK()
        else:
            def trampoline(event: bytes, _user: Any) -> bool:
                try:
                    return on_event(json.loads(event)) is not False
                except BaseException as e:  # surfaced after the run, never across C
                    self._errors.append(e)
                    return False
            self._event_cb = EVENT_CALLBACK(trampoline)
        _check(_pipeline_library().ponder_pipeline_set_event_callback(self._h, self._event_cb, None))

    def register_reward(self, name: str, fn: Callable[[str, str, Optional[str]], Optional[float]]) -> None:
        """A custom reward declared in the config's reward.custom: fn(prompt, completion,
        reference) -> score, or None for no score."""
        cb = _reward_callback(fn, self._errors)
        _check(_pipeline_library().ponder_pipeline_register_reward(self._h, _encode(name, "name"), cb, None))
        self._rewards[name] = cb  # alive as long as the pipeline may call it

    def register_environment(self, name: str, factory: Callable[..., Any]) -> None:
        """The environment a grpo stage's "environment": {"name"} names (one not built in): a
        class (or callable) with reset(seed, task) and step(action), as Trainer.set_environment."""
        env = _Environment(factory, self._errors)
        _check(_pipeline_library().ponder_pipeline_register_environment(self._h, _encode(name, "name"), ctypes.byref(env.struct)))
        self._rewards["environment:" + name] = env  # alive as long as the pipeline may call it

    def _blocking(self, call: Callable[[], int]) -> None:
        import threading
        result: List[Any] = []
        done = threading.Event()

        def work() -> None:
            try:
                status = call()
                # ponder_last_error is per thread: read it on the thread that failed.
                result.append((status, library().ponder_last_error().decode("utf-8", "replace") if status else ""))
            finally:
                done.set()

        # Waiting on an Event, not Thread.join: a KeyboardInterrupt inside join() marks a thread
        # that is still running as stopped on CPython 3.11 (bpo-45274's handling), after which
        # join() returns at once and the interpreter could exit under the running pipeline.
        threading.Thread(target=work, name="ponder-pipeline", daemon=True).start()
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            self.cancel()
            while not done.wait(0.1):
                pass
            raise
        if self._errors:
            e, self._errors = self._errors[0], []
            raise e
        status, message = result[0]
        if status != 0:
            raise PonderError(status, message)

    def run(self) -> None:
        """Runs every stage not done yet (blocking; Ctrl-C cancels with a checkpoint)."""
        h = self._h
        self._blocking(lambda: _pipeline_library().ponder_pipeline_run(h))

    def run_stage(self, index: int) -> None:
        """Runs stage `index` alone (blocking; Ctrl-C cancels with a checkpoint)."""
        h = self._h
        self._blocking(lambda: _pipeline_library().ponder_pipeline_run_stage(h, index))

    def cancel(self) -> None:
        """Stops a running pipeline at its next step boundary (safe from any thread)."""
        _check(_pipeline_library().ponder_pipeline_cancel(self._h))

    def status(self) -> Dict[str, Any]:
        """{"state", "stage", "step", "total_steps", "eta_seconds", "stages", ...} (safe from any thread)."""
        out = ctypes.c_void_p()
        _check(_pipeline_library().ponder_pipeline_status(self._h, ctypes.byref(out)))
        return json.loads(_take_string(out))
