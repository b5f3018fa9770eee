"""The builtin model `tiny-llama`: a deterministic builder of a tiny random-weight Llama for smoke
runs (corpus, BPE tokenizer training, weights, CLI).

The output directory is a regular Hugging Face model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json`` with a chat
template, ``special_tokens_map.json``, ``generation_config.json``) that loads in
both ``transformers`` and vLLM without any network access.

Everything is generated from code: the tokenizer is a byte-level BPE trained on
a synthetic corpus built from fixed word lists, and the weights are drawn from a
``torch.Generator`` seeded with 0.  Building twice yields byte-identical files.

Usage::

    python -m engine.builtin_models.tiny_llama /tmp/tiny-llama
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay lazy so `import engine.builtin_models.tiny_llama` is cheap
    import torch
    from tokenizers import Tokenizer

__all__ = ["BUILD_VERSION", "MARKER_FILE", "build_tiny_model", "is_complete_build"]

# Bump whenever anything below changes the produced bytes (corpus, tokenizer
# settings, config, init scheme).  Stale builds are detected through it.
BUILD_VERSION = "tiny-llama-v1"

# Written last, so its presence means "every other file is complete".
MARKER_FILE = ".tiny_model_build.json"

VOCAB_SIZE = 2048
HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 256
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = HIDDEN_SIZE // NUM_HEADS  # 32: smallest head size the vLLM CPU attention backend supports
MAX_POSITIONS = 2048
INIT_STD = 0.02
SEED = 0

# Special tokens get the lowest ids (Llama convention: unk=0, bos=1, eos=2).
# They are "special" => dropped by skip_special_tokens when detokenizing.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
# Markup that tool/reasoning parsers look for in the *decoded* text.  These are
# added as non-special tokens so they survive skip_special_tokens=True; vLLM's
# llama3_json parser additionally insists that <|python_tag|> is in the vocab.
MARKUP_TOKENS = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<|python_tag|>",
    "<think>",
    "</think>",
]

BOS, EOS, UNK, PAD = "<s>", "<|im_end|>", "<unk>", "<pad>"

# ChatML-style template.  Tools (OpenAI format or bare function dicts) are
# rendered as JSON in a leading system block; assistant tool calls are rendered
# Hermes-style so that vLLM's "hermes" tool parser matches the format.
# ``arguments`` may arrive as a JSON string (OpenAI wire format) or as a dict
# (vLLM/transformers pre-parse it), hence the ``is string`` test.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if tools %}"
    "{{- '<|im_start|>system\\nYou can call these tools. To call one, reply with "
    '<tool_call>{"name": <name>, "arguments": <args>}</tool_call>.\\n<tools>\\n\' }}'
    "{%- for tool in tools %}"
    "{{- (tool.function if tool.function is defined else tool) | tojson }}{{- '\\n' }}"
    "{%- endfor %}"
    "{{- '</tools><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}"
    "{{- message.content }}"
    "{%- elif message.content is iterable and message.content is not mapping %}"
    "{%- for part in message.content %}"
    "{%- if part.type == 'text' %}{{- part.text }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{%- if message.tool_calls is defined and message.tool_calls %}"
    "{%- for call in message.tool_calls %}"
    "{%- set fn = call.function if call.function is defined else call %}"
    '{{- \'<tool_call>{"name": "\' + fn.name + \'", "arguments": \' }}'
    "{%- if fn.arguments is string %}{{- fn.arguments }}{%- else %}{{- fn.arguments | tojson }}{%- endif %}"
    "{{- '}</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------

_SUBJECTS = """the cat|the dog|a model|the server|my friend|the engine|a robot|the user|our team|the
scheduler|a student|the teacher|the cluster|a worker|the router|the cache|a token|the kernel|the
driver|a pilot|the farmer|the doctor|a painter|the writer|the baker|a sailor|the queen|the king|a
child|the river|the mountain|a city|the library|the garden|a bird|the ocean|the forest|a
computer|the network|the database|a request|the response|the gateway|the planner|a
musician|the engineer|a scientist|the captain|Alice|Bob|Carol|Dave|Eve|Frank|Grace|Heidi|Ivan|Judy|Mallory|Oscar|Peggy|Trent|Victor|Walter""".replace(
    "\n", " "
).split("|")

_VERBS = """runs|jumps|writes|reads|builds|computes|serves|answers|sends|receives|stores|loads|trains|predicts|
sings|paints|bakes|sails|climbs|flows|grows|opens|closes|starts|stops|waits|listens|speaks|thinks|
learns|teaches|plans|routes|caches|schedules|measures|counts|sorts|merges|splits|encodes|decodes|
streams|returns|calls|checks|finds|keeps|moves|watches|carries|follows|explains|describes|remembers|
forgets|creates|deletes|updates|reports|tracks|balances|scales|restarts|monitors|generates""".replace(
    "\n", ""
).split("|")

_ADJECTIVES = """quick|lazy|bright|dark|small|large|tiny|huge|happy|sad|calm|busy|quiet|loud|fast|slow|
warm|cold|red|blue|green|yellow|purple|orange|golden|silver|ancient|modern|simple|complex|robust|
fragile|careful|curious|brave|gentle|clever|honest|strange|familiar|distant|nearby|empty|full|fresh|
stale|hidden|visible|early|late|random|stable|parallel|serial|remote|local|secure|open|heavy|light""".replace(
    "\n", ""
).split("|")

_OBJECTS = """apple|book|letter|song|picture|bridge|house|river|message|number|vector|matrix|tensor|prompt|
answer|question|story|poem|recipe|map|key|door|window|table|chair|lamp|clock|garden|flower|tree|
stone|cloud|storm|signal|packet|file|folder|queue|stack|graph|batch|layer|weight|gradient|token|
sentence|paragraph|language|function|variable|result|error|warning|report|ticket|invoice|order|
forecast|temperature|city|weather|journey|ticket|contract|schedule|budget|dataset|benchmark""".replace(
    "\n", ""
).split("|")

_ADVERBS = """quickly|slowly|carefully|quietly|loudly|happily|rarely|often|always|never|soon|today|
tomorrow|yesterday|again|together|alone|early|later|gently|boldly|eagerly|calmly|safely""".replace(
    "\n", ""
).split("|")

_PLACES = """in the morning|at night|near the river|on the hill|inside the house|across the city|under the
bridge|over the clouds|in the data center|on the main thread|behind the firewall|in Paris|in
Berlin|in Tokyo|in London|in Bangalore|in New York|in Lagos|in Sydney|in Toronto|on Monday|on
Friday|in January|in July|during the storm|after lunch|before dinner""".replace("\n", " ").split("|")

_CONNECTORS = ["and", "but", "because", "while", "so", "although", "when", "until", "then"]

_TOOL_NAMES = ["get_weather", "search_web", "send_email", "add_numbers", "lookup_user", "book_flight"]
_ARG_KEYS = ["city", "query", "to", "subject", "a", "b", "user_id", "date", "unit", "limit"]


class _Lcg:
    """Tiny 64-bit linear congruential generator.

    Used instead of ``random.Random`` because the corpus must be identical on
    every machine and every Python version; ``random.choice`` / ``randrange``
    internals have changed between CPython releases.
    """

    def __init__(self, seed: int) -> None:
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self) -> int:
        # Knuth MMIX constants; use the high 32 bits (low bits of an LCG are weak).
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return self.state >> 32

    def pick(self, items: list[str]) -> str:
        return items[self.next() % len(items)]


def _corpus() -> Iterator[str]:
    """Yield the deterministic training corpus, one line at a time."""
    rng = _Lcg(SEED)
    for i in range(6000):
        clause = (
            f"{rng.pick(_SUBJECTS)} {rng.pick(_VERBS)} the {rng.pick(_ADJECTIVES)} "
            f"{rng.pick(_OBJECTS)} {rng.pick(_ADVERBS)} {rng.pick(_PLACES)}"
        )
        kind = i % 4
        if kind == 0:
            line = clause[0].upper() + clause[1:] + "."
        elif kind == 1:
            line = (
                f"{clause[0].upper() + clause[1:]}, {rng.pick(_CONNECTORS)} "
                f"{rng.pick(_SUBJECTS)} {rng.pick(_VERBS)} {rng.next() % 1000} "
                f"{rng.pick(_OBJECTS)}s."
            )
        elif kind == 2:
            line = f"Why does {clause}? Because it is {rng.pick(_ADJECTIVES)}!"
        else:
            # JSON-ish lines so braces/quotes/colons get merges too (tool calls,
            # structured output).
            args = {rng.pick(_ARG_KEYS): rng.pick(_OBJECTS), rng.pick(_ARG_KEYS): rng.next() % 100}
            line = (
                "<tool_call>"
                + json.dumps({"name": rng.pick(_TOOL_NAMES), "arguments": args})
                + "</tool_call>"
            )
        yield line
    for n in range(0, 2000, 7):
        yield f"{n} + {n + 1} = {2 * n + 1}; {n} * 3 = {3 * n}; [{n}, {n / 4}, {-n}]"


# --------------------------------------------------------------------------
# Builders for the individual files
# --------------------------------------------------------------------------


def _build_tokenizer() -> Tokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    # Byte-level: every byte is in the base alphabet, so <unk> is never needed
    # in practice (it exists only because callers expect the token).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        # The markup tokens are appended after training; reserve their slots so
        # the final vocab is exactly VOCAB_SIZE.
        vocab_size=VOCAB_SIZE - len(MARKUP_TOKENS),
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(
            f"tokenizer vocab is {tok.get_vocab_size()}, expected {VOCAB_SIZE}; corpus too small?"
        )
    bos_id = tok.token_to_id(BOS)
    # Llama-style: the tokenizer itself prepends <s> for plain-text prompts.  The
    # chat template emits bos_token explicitly; HF and vLLM tokenize rendered
    # chat text with add_special_tokens=False, so there is no double BOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def _token_configs(tok: Tokenizer) -> dict[str, dict]:
    """Return the JSON side files for the tokenizer, keyed by file name."""
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS + MARKUP_TOKENS}
    added_tokens_decoder = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in SPECIAL_TOKENS,
        }
        for t in SPECIAL_TOKENS + MARKUP_TOKENS
    }
    extra_special = [t for t in SPECIAL_TOKENS if t not in (BOS, EOS, UNK, PAD)]
    tokenizer_config = {
        # Generic fast tokenizer: loads tokenizer.json verbatim.  (Naming a
        # model-specific class such as LlamaTokenizer would make transformers 5
        # rebuild the pipeline with Llama's SentencePiece-style pre-tokenizer.)
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        "additional_special_tokens": extra_special,
        "added_tokens_decoder": added_tokens_decoder,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_POSITIONS,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }
    special_tokens_map = {
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        "additional_special_tokens": extra_special,
    }
    model_config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "num_key_value_heads": NUM_KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-6,
        # Both spellings: transformers >= 5 reads rope_parameters, 4.x reads rope_theta.
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": INIT_STD,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        # float32 weights (2.2 MB).  vLLM's dtype="auto" still downcasts float32
        # checkpoints of generative models to bfloat16 (fp16 for pooling); that
        # runs, but logs per-weight cast warnings and, on AVX2-only CPUs, oneDNN
        # bf16 matmul falls back to torch.  Pass dtype="float32" to vLLM to get
        # the same greedy tokens as transformers.
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    generation_config = {
        "bos_token_id": ids[BOS],
        # vLLM turns these into stop token ids: end of chat turn and plain EOS.
        "eos_token_id": [ids[EOS], ids["</s>"]],
        "pad_token_id": ids[PAD],
        "do_sample": False,
    }
    return {
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": special_tokens_map,
        "config.json": model_config,
        "generation_config.json": generation_config,
    }


def _build_weights() -> dict[str, torch.Tensor]:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(SEED)
    # Uniform init with std INIT_STD.  torch.rand is used rather than
    # torch.randn because CPU normal_() has ISA-specific vectorised paths
    # (AVX2/AVX512 Box-Muller via SLEEF) whose last-ulp results can differ
    # between machines; rand() plus one mul and one sub is exact IEEE math.
    bound = INIT_STD * 3.0**0.5

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float32).mul_(2 * bound).sub_(bound)

    kv_dim = NUM_KV_HEADS * HEAD_DIM
    q_dim = NUM_HEADS * HEAD_DIM
    tensors: dict[str, torch.Tensor] = {"model.embed_tokens.weight": rand(VOCAB_SIZE, HIDDEN_SIZE)}
    for i in range(NUM_LAYERS):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.q_proj.weight"] = rand(q_dim, HIDDEN_SIZE)
        tensors[p + "self_attn.k_proj.weight"] = rand(kv_dim, HIDDEN_SIZE)
        tensors[p + "self_attn.v_proj.weight"] = rand(kv_dim, HIDDEN_SIZE)
        tensors[p + "self_attn.o_proj.weight"] = rand(HIDDEN_SIZE, q_dim)
        tensors[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE_SIZE, HIDDEN_SIZE)
        tensors[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE_SIZE, HIDDEN_SIZE)
        tensors[p + "mlp.down_proj.weight"] = rand(HIDDEN_SIZE, INTERMEDIATE_SIZE)
        tensors[p + "input_layernorm.weight"] = torch.ones(HIDDEN_SIZE)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN_SIZE)
    tensors["model.norm.weight"] = torch.ones(HIDDEN_SIZE)
    # No lm_head.weight: tie_word_embeddings=True reuses embed_tokens.
    return tensors


def _write_json(path: Path, obj: dict) -> None:
    # sort_keys + fixed separators + trailing newline => stable bytes.
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _build_into(out: Path) -> None:
    """Write every model file into the (empty) directory ``out``, marker last."""
    from safetensors.torch import save_file

    tok = _build_tokenizer()
    tok.save(str(out / "tokenizer.json"), pretty=True)
    for name, obj in _token_configs(tok).items():
        _write_json(out / name, obj)
    save_file(_build_weights(), str(out / "model.safetensors"), metadata={"format": "pt"})

    # mkdtemp() makes a 0700 dir and safetensors writes 0600 files; give the
    # result normal umask-derived permissions so other users/containers can read it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out, 0o777 & ~umask)
    for p in out.iterdir():
        os.chmod(p, 0o666 & ~umask)

    files = sorted(p.name for p in out.iterdir() if p.is_file())
    marker = {"version": BUILD_VERSION, "files": {n: _sha256(out / n) for n in files}}
    _write_json(out / MARKER_FILE, marker)
    # fsync so a crash right after the rename cannot expose empty files.
    for name in files + [MARKER_FILE]:
        with (out / name).open("rb") as f:
            os.fsync(f.fileno())


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def is_complete_build(model_dir: Path) -> bool:
    """Return True if ``model_dir`` holds a complete build of the current BUILD_VERSION.

    Checks the marker's version and re-hashes every listed file (a few MB,
    milliseconds), so a tampered or truncated file is treated as incomplete.
    """
    marker = Path(model_dir) / MARKER_FILE
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        if data.get("version") != BUILD_VERSION:
            return False
        return all(_sha256(Path(model_dir) / n) == h for n, h in data["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """Exclusive inter-process lock for building ``target`` (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # non-POSIX: rely on the atomic rename alone
        yield
        return
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_tiny_model(target_dir: Path) -> Path:
    """Build (or reuse) the tiny random-weight Llama model at ``target_dir``.

    Idempotent: if ``target_dir`` already holds a complete build of the current
    ``BUILD_VERSION`` it is returned untouched.  Otherwise the model is built in
    a temporary sibling directory and renamed into place, so concurrent callers
    and interrupted builds never expose a half-written directory.  Builds are
    serialised with an ``flock`` on ``.<name>.lock`` next to the target.

    A stale build (marker from another BUILD_VERSION, or failing hashes) or an
    empty directory is replaced; a non-empty directory without a marker is left
    alone and raises ``FileExistsError`` rather than deleting unknown data.

    Args:
        target_dir: Directory to hold the model.  Its parent is created if needed.

    Returns:
        The absolute path of the model directory.
    """
    target = Path(target_dir).expanduser().resolve()
    return build_atomically(target, is_complete_build, _build_into, _refuse_foreign)


def _refuse_foreign(target: Path) -> None:
    """Refuses to replace anything but a tiny-model build or an empty directory."""
    is_ours = (target / MARKER_FILE).exists()
    if target.is_dir() and not is_ours and any(target.iterdir()):
        raise FileExistsError(f"{target} exists, is not empty and is not a tiny-model build")
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")


def build_atomically(
    target: Path,
    is_complete: Callable[[Path], bool],
    build_into: Callable[[Path], None],
    check_target: Callable[[Path], None] | None = None,
) -> Path:
    """Builds a builtin model into `target` unless `is_complete(target)`, and returns `target`.

    Under the inter-process lock (`_build_lock`), re-checked there: another process may have
    finished while this one waited. `build_into` writes into a temporary sibling directory,
    renamed into place, so concurrent callers and interrupted builds never expose a half-written
    model; leftovers of interrupted builds are removed first. `check_target` may refuse an
    existing target (raising) before anything of it is replaced."""
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target):
        # Another process may have finished while we waited for the lock.
        if is_complete(target):
            return target
        # Leftovers of interrupted builds.  Every builder holds the lock, so
        # nothing else can be writing into them now.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists() and check_target is not None:
            check_target(target)

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build_into(tmp)
            if target.exists():
                # rename() cannot replace a non-empty dir: move the stale one
                # aside first, then swap the new one in.
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-old-", dir=target.parent))
                os.rename(target, trash / "old")
                os.rename(tmp, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m engine.builtin_models.tiny_llama",
        description="Build the deterministic tiny Llama smoke-test model.",
    )
    parser.add_argument("target_dir", type=Path, help="directory to create (reused if already complete)")
    args = parser.parse_args(argv)
    path = build_tiny_model(args.target_dir)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
