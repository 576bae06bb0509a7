"""Tiny randomly initialised Hugging Face `transformers` models, one per supported architecture (and
variant), for checking edgellama's forward pass against transformers itself.

    VARIANTS["gemma2"]            -> Variant(gguf_arch, hf_class, config kwargs, tokenizer kind, ...)
    build_hf(variant, dir)        -> writes config.json + model.safetensors + tokenizer files
    hf_logits(dir, tokens)        -> float64 logits of transformers' forward (the model in float64)
    convert_llamacpp(jobs)        -> runs llama.cpp's convert_hf_to_gguf.py (one subprocess for all)

Models are hidden 64, 2-6 layers, 4 query heads / 2 KV heads of 16, a 300-token byte-level BPE vocabulary
trained here (or the Llama 2 SentencePiece model for the families whose converter insists on one).
Weights are drawn with a larger std than transformers' default and every norm weight is perturbed, so
that a missing (1 + w), a swapped norm or an unscaled embedding shows up in the logits. Window/pattern
settings are small (sliding window 8) so that 40 positions cross the window.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
LLAMA_CPP_DIR = Path(
    os.environ.get("EDGELLAMA_LLAMACPP_DIR", "/work/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp")
)
SPM_MODEL = HERE.parent.parent / "shared" / "models" / "llama2-tokenizer" / "tokenizer.model"

HIDDEN, N_HEAD, N_HEAD_KV, HEAD_DIM, N_FF = 64, 4, 2, 16, 128
WINDOW = 8
LONGROPE_ORIG_CTX = 16  # phi3-longrope's original_max_position_embeddings


@dataclass
class Variant:
    name: str
    gguf_arch: str
    hf_class: str  # transformers model class
    config_class: str
    config: Dict = field(default_factory=dict)
    tokenizer: str = "bpe"  # "bpe" (tiny byte-level BPE) or "spm" (Llama 2 tokenizer.model)
    n_layer: int = 2
    tokenizer_class: str = ""  # override tokenizer_config.json's tokenizer_class (phi3 wants GPT2Tokenizer)


_COMMON = dict(
    hidden_size=HIDDEN,
    intermediate_size=N_FF,
    num_attention_heads=N_HEAD,
    num_key_value_heads=N_HEAD_KV,
    head_dim=HEAD_DIM,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    initializer_range=0.15,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=None,
)

VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("llama", "llama", "LlamaForCausalLM", "LlamaConfig"),
        # Llama 3.1/3.2: llama3 rope scaling, written by the converter as the rope_freqs.weight tensor.
        Variant(
            "llama3",
            "llama",
            "LlamaForCausalLM",
            "LlamaConfig",
            dict(
                rope_parameters=dict(
                    rope_type="llama3",
                    rope_theta=500000.0,
                    factor=8.0,
                    low_freq_factor=1.0,
                    high_freq_factor=4.0,
                    original_max_position_embeddings=32,
                ),
                tie_word_embeddings=True,
            ),
        ),
        Variant("mistral", "llama", "MistralForCausalLM", "MistralConfig", dict(sliding_window=None)),
        Variant("qwen2", "qwen2", "Qwen2ForCausalLM", "Qwen2Config"),
        Variant("qwen3", "qwen3", "Qwen3ForCausalLM", "Qwen3Config"),
        Variant(
            "gemma",
            "gemma",
            "GemmaForCausalLM",
            "GemmaConfig",
            dict(hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True),
            tokenizer="spm",
        ),
        Variant(
            "gemma2",
            "gemma2",
            "Gemma2ForCausalLM",
            "Gemma2Config",
            dict(
                hidden_activation="gelu_pytorch_tanh",
                sliding_window=WINDOW,
                query_pre_attn_scalar=HEAD_DIM,
                attn_logit_softcapping=3.0,  # small caps so that capping changes the result
                final_logit_softcapping=4.0,
                tie_word_embeddings=True,
            ),
            tokenizer="spm",
        ),
        Variant(
            "gemma3",
            "gemma3",
            "Gemma3ForCausalLM",
            "Gemma3TextConfig",
            dict(
                hidden_activation="gelu_pytorch_tanh",
                sliding_window=WINDOW,
                query_pre_attn_scalar=HEAD_DIM,
                tie_word_embeddings=True,
                rope_parameters=dict(
                    full_attention=dict(rope_type="default", rope_theta=1000000.0),
                    sliding_attention=dict(rope_type="default", rope_theta=10000.0),
                ),
            ),
            n_layer=6,  # five sliding-window layers and one global (llama.cpp's default pattern 6)
        ),
        Variant(
            "phi3",
            "phi3",
            "Phi3ForCausalLM",
            "Phi3Config",
            dict(sliding_window=None, original_max_position_embeddings=256),
            tokenizer_class="GPT2Tokenizer",
        ),
        # Phi-3 128k / Phi-3.5: LongRoPE. The pretraining context is 16 so that 40 positions use the long
        # factor set (n_ctx 64 > 16 for edgellama and llama.cpp, sequence length 40 > 16 for transformers);
        # max_position_embeddings 256 makes the attention factor sqrt(1 + ln 16 / ln 16) = sqrt(2).
        Variant(
            "phi3-longrope",
            "phi3",
            "Phi3ForCausalLM",
            "Phi3Config",
            dict(
                sliding_window=None,
                original_max_position_embeddings=LONGROPE_ORIG_CTX,
                rope_parameters=dict(
                    rope_type="longrope",
                    rope_theta=10000.0,
                    original_max_position_embeddings=LONGROPE_ORIG_CTX,
                    short_factor=[1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0],
                    long_factor=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0],
                ),
            ),
            tokenizer_class="GPT2Tokenizer",
        ),
        Variant(
            "granite",
            "granite",
            "GraniteForCausalLM",
            "GraniteConfig",
            dict(embedding_multiplier=3.0, residual_multiplier=0.5, attention_multiplier=0.1, logits_scaling=2.0),
        ),
        Variant("olmo2", "olmo2", "Olmo2ForCausalLM", "Olmo2Config"),
        Variant("smollm3", "smollm3", "SmolLM3ForCausalLM", "SmolLM3Config", n_layer=4),  # layer 3 is NoPE
    ]
}


def _bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        # <unk>, <s>, </s>: llama.cpp's vocabulary loader looks these up by text for files named phi3
        special_tokens=["<|endoftext|>", "<unk>", "<s>", "</s>"],
    )
    tok.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def vocab_size(v: Variant) -> int:
    return 32000 if v.tokenizer == "spm" else len(_bpe_tokenizer())


def build_hf(v: Variant, out: Path, seed: int = 0) -> Path:
    """Random model + tokenizer of variant v saved to out (a Hugging Face checkpoint directory)."""
    import torch
    import transformers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if v.tokenizer == "spm":
        if not SPM_MODEL.is_file():
            raise FileNotFoundError(f"{SPM_MODEL} (Llama 2 tokenizer.model) is needed for {v.name}")
        shutil.copy(SPM_MODEL, out / "tokenizer.model")
        n_vocab = 32000
    else:
        tok = _bpe_tokenizer()
        tok.save_pretrained(out)
        n_vocab = len(tok)
        if v.tokenizer_class:
            p = out / "tokenizer_config.json"
            cfg = json.loads(p.read_text())
            cfg["tokenizer_class"] = v.tokenizer_class
            p.write_text(json.dumps(cfg))
    kwargs = dict(_COMMON)
    kwargs.update(v.config)
    cfg = getattr(transformers, v.config_class)(vocab_size=n_vocab, num_hidden_layers=v.n_layer, **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, v.hf_class)(cfg).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # norms (and biases): perturb so that a wrong norm convention shows
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out)
    return out


def hf_logits(hf_dir: Path, tokens: Sequence[int]) -> np.ndarray:
    """transformers' logits for tokens (one sequence from position 0), computed in float64."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float64).eval()
    with torch.no_grad():
        out = model(torch.tensor([list(tokens)], dtype=torch.long))
    return out.logits[0].double().numpy()


def llamacpp_available() -> bool:
    return (LLAMA_CPP_DIR / "convert_hf_to_gguf.py").is_file() and (LLAMA_CPP_DIR / "gguf-py").is_dir()


def convert_llamacpp(jobs: Sequence[Tuple[Path, Path, str]], env=None) -> None:
    """llama.cpp's convert_hf_to_gguf.py on each (hf_dir, out.gguf, outtype), one subprocess for all."""
    cmd = [sys.executable, str(HERE / "llamacpp_convert.py"), str(LLAMA_CPP_DIR)]
    cmd += [f"{h}={o}:{t}" for h, o, t in jobs]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"llama.cpp converter failed ({r.returncode}):\n{r.stderr[-4000:]}")


def sample_tokens(v: Variant, n: int = 40, seed: int = 1) -> List[int]:
    """n random token ids of the variant's vocabulary (avoiding ids 0..3, specials in both vocabularies)."""
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(4, min(vocab_size(v), 300), size=n)]


# ---- comparisons (shared by tests/test_architectures.py and scripts/model_coverage.py) ----

def edgellama_logits(path, tokens, precision="exact", kv="f32", n_batch=64) -> np.ndarray:
    from edgellama import _core

    model = _core.Model(str(path))
    ctx = _core.Context(model, 64, 1, n_batch, kv, kv, precision)
    return ctx.decode(np.asarray(tokens, np.int32), True)


def rel_err(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def mean_kl(p_logits, q_logits) -> float:
    """mean over positions of KL(softmax(p) || softmax(q))."""
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


LLAMA_PERPLEXITY = Path(os.environ.get("EDGELLAMA_LLAMACPP_BIN", "/work/llamacpp/build-native/bin")) / "llama-perplexity"


def llamacpp_ppl(path, text_file, n_ctx=32) -> float:
    """llama.cpp's perplexity tool on a GGUF file (llama.cpp loading and running it)."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(LLAMA_PERPLEXITY.parent))
    cmd = [str(LLAMA_PERPLEXITY), "-m", str(path), "-f", str(text_file), "-c", str(n_ctx), "-b", str(n_ctx), "-t", "1",
           "--no-warmup"]
    # llama.cpp's asynchronous logger sometimes loses its last lines at exit (rc 0, no final estimate):
    # run again in that case.
    for _attempt in range(6):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        for line in r.stdout.splitlines() + r.stderr.splitlines():
            if "Final estimate: PPL =" in line:
                return float(line.split("PPL =")[1].split()[0])
        if r.returncode != 0:
            break
    raise RuntimeError(f"llama-perplexity failed on {path} (rc {r.returncode}):\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
