"""The builtin model `tiny-diffusion`: a deterministic builder of a tiny random-weight
text-to-image pipeline for smoke runs (tokenizer, text encoder, UNet, VAE, scheduler, CLI).

The output directory is a regular diffusers pipeline directory (``model_index.json`` naming
``StableDiffusionPipeline``, one folder per component, weights as safetensors) that
``DiffusionPipeline.from_pretrained(dir, local_files_only=True)`` loads without any network
access, exactly as it loads a real Stable Diffusion checkpoint.

Everything is generated from code: the CLIP tokenizer's ``vocab.json`` and ``merges.txt`` are
written from fixed word lists (byte-level symbols plus merges that spell each word), and the
weights are drawn after ``torch.manual_seed(0)``. Building twice yields byte-identical files.
Its images are noise; it makes a 64×64 one in a few tens of milliseconds on a CPU.

Usage::

    python -m engine.builtin_models.tiny_diffusion /tmp/tiny-diffusion
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.builtin_models.tiny_llama import build_atomically

__all__ = ["BUILD_VERSION", "MARKER_FILE", "SAMPLE_SIZE", "build_tiny_diffusion", "is_complete_build"]

# Bump whenever anything below changes the produced bytes.
BUILD_VERSION = "tiny-diffusion-v1"
MARKER_FILE = ".tiny_diffusion_build.json"
SEED = 0
# Latent side; the VAE (three blocks) scales latents by 4, so images are 64×64 by default.
SAMPLE_SIZE = 16
VAE_SCALE = 4
MAX_TOKENS = 77
HIDDEN = 32
DEFAULT_STEPS = 4

# Words that get merges (so common words are one token, as in a real CLIP vocabulary).
WORDS = (
    "a an the of and with in on at photo picture painting drawing of cat dog bird horse tree house "
    "city street car boat sky sea sun moon night day red green blue yellow white black small big "
    "old new happy sad mountain river forest flower garden portrait landscape astronaut riding "
    "castle robot dragon cup coffee book lamp window door light dark"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible byte → printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def tokenizer_files() -> tuple[dict[str, int], list[str]]:
    """The vocabulary and merges of the tiny CLIP tokenizer: every byte symbol, alone and as a
    word end (``</w>``), then one merge per step that spells each word of `WORDS`, then the
    start and end tokens (CLIP's layout)."""
    symbols = list(_bytes_to_unicode().values())
    vocab: list[str] = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    seen = set(vocab)
    for word in dict.fromkeys(WORDS):  # ordered, no repeats
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = f"{parts[0]} {parts[1]}"
            merged = parts[0] + parts[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in seen:
                seen.add(merged)
                vocab.append(merged)
            parts = [merged, *parts[2:]]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def _write_tokenizer(out: Path) -> int:
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_files()
    out.mkdir(parents=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, sort_keys=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(
        str(out / "vocab.json"),
        str(out / "merges.txt"),
        model_max_length=MAX_TOKENS,
        pad_token="<|endoftext|>",
    )
    tok.save_pretrained(str(out))
    return len(vocab)


def _build_into(out: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_size = _write_tokenizer(out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SAMPLE_SIZE * VAE_SCALE,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    # The default step count the engine uses when a request names none (read by the runner).
    (out / "bud_defaults.json").write_text(json.dumps({"num_inference_steps": DEFAULT_STEPS}) + "\n")
    (out / MARKER_FILE).write_text(json.dumps({"version": BUILD_VERSION}) + "\n")


def is_complete_build(model_dir: Path) -> bool:
    """Whether `model_dir` holds a finished build of this version."""
    marker = Path(model_dir) / MARKER_FILE
    try:
        return json.loads(marker.read_text()).get("version") == BUILD_VERSION
    except (OSError, ValueError):
        return False


def build_tiny_diffusion(target_dir: Path) -> Path:
    """Builds the pipeline into `target_dir` unless a complete build of this version is there;
    returns the directory. Built in a temporary sibling and renamed into place under an inter-
    process lock (`tiny_llama.build_atomically`), so concurrent callers never see a half-written
    pipeline."""
    return build_atomically(Path(target_dir), is_complete_build, _build_into)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m engine.builtin_models.tiny_diffusion DIR", file=sys.stderr)
        return 2
    print(build_tiny_diffusion(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
