"""Text encoders: the embedding layout, MiniLM (real weights), a tiny umT5, the learned table, the cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from wam.models.text.base import TextEmbedding, TextEncoder
from wam.models.text.cache import CachedTextEncoder, TextEmbeddingCache
from wam.models.text.factory import TextEncoderConfig, build_text_encoder
from wam.models.text.learned import LearnedTaskEncoder
from wam.models.text.umt5 import WAN_T5_CHECKPOINT, UMT5Encoder

WORDS = ["pick", "up", "the", "red", "block", "place", "it", "on", "green", "plate", "open", "drawer"]
WORDS += ["close", "door", "push", "button", "reach", "goal"]
TEXTS = ["pick up the red block", "open the drawer", "push the button and close the door"]
UMT5_TEXTS = ["pick up the red block", "open the drawer", "push the button close the door"]  # all in WORDS


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def minilm():
    from wam.models.text.minilm import MiniLMEncoder

    return MiniLMEncoder(device="cpu").load()


def _save_tiny_tokenizer(folder: Path) -> None:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -float(i + 1)) for i, w in enumerate(WORDS)]
    vocab += [(c, -50.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(folder)


def _tiny_umt5(seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=len(WORDS) + 29,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dense_act_fn="gelu_new",
        is_encoder_decoder=False,
    )
    return UMT5EncoderModel(config).eval()


@pytest.fixture(scope="module")
def umt5_root(tmp_path_factory) -> Path:
    """A diffusers-style Wan folder: text_encoder/ (tiny random UMT5EncoderModel) and tokenizer/."""
    root = tmp_path_factory.mktemp("wan_diffusers")
    _tiny_umt5().save_pretrained(root / "text_encoder")
    _save_tiny_tokenizer(root / "tokenizer")
    return root


class CountingEncoder(TextEncoder):
    """A deterministic frozen encoder that counts the instructions it encodes: token i of a text of n
    words is (n, i, len(word_i), ...)."""

    name = "counting"

    def __init__(self, version: int = 0, pad_to: int | None = None) -> None:
        self.dim, self.max_length, self.pad_to, self.version = 4, 16, pad_to, version
        self.calls: list[list[str]] = []

    @property
    def fingerprint(self) -> str:
        return f"counting-v{self.version}"

    def _encode(self, texts: list[str]) -> TextEmbedding:
        self.calls.append(list(texts))
        seqs = [
            torch.tensor(
                [[len(t.split()), i, len(w), self.version] for i, w in enumerate(t.split() or ["."])]
            ).float()
            for t in texts
        ]
        return TextEmbedding.from_sequences(seqs, [s.mean(0) for s in seqs])


# ----------------------------------------------------------------------------- TextEmbedding
def test_embedding_padding_layout() -> None:
    emb = TextEmbedding.from_sequences([torch.ones(2, 3), torch.full((4, 3), 2.0)])
    assert emb.tokens.shape == (2, 4, 3) and emb.mask.tolist() == [[True, True, False, False], [True] * 4]
    assert float(emb.tokens[0, 2:].abs().sum()) == 0.0
    padded = emb.padded(6)
    assert padded.tokens.shape == (2, 6, 3) and not bool(padded.mask[:, 4:].any())
    assert [s.shape[0] for s in padded.sequences()] == [2, 4]
    with pytest.raises(ValueError, match="pad"):
        emb.padded(3)
    with pytest.raises(ValueError, match="pad_to"):
        TextEmbedding.from_sequences([torch.ones(5, 3)], pad_to=4)
    with pytest.raises(ValueError, match="mask"):
        TextEmbedding(torch.zeros(2, 4, 3), torch.ones(2, 4))  # not bool


def test_encode_validates_the_batch() -> None:
    enc = CountingEncoder()
    with pytest.raises(ValueError, match="list"):
        enc.encode("pick up the block")
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(ValueError, match="strings"):
        enc.encode(["ok", 3])


# ----------------------------------------------------------------------------- MiniLM
def test_minilm_shapes_mask_and_padding(minilm) -> None:
    emb = minilm.encode(TEXTS)
    assert emb.tokens.shape[0] == 3 and emb.tokens.shape[2] == 384 == minilm.dim
    lengths = emb.mask.sum(dim=1)
    # [CLS] + words + [SEP]; the longest instruction fills the batch
    assert lengths.tolist() == [7, 5, 9] and emb.tokens.shape[1] == 9
    assert float(emb.tokens[~emb.mask].abs().sum()) == 0.0
    assert bool((emb.tokens[emb.mask].abs().sum(-1) > 0).all())
    torch.testing.assert_close(emb.pooled.norm(dim=-1), torch.ones(3))


def test_minilm_is_deterministic_and_independent_of_the_batch(minilm) -> None:
    a = minilm.encode(TEXTS)
    b = minilm.encode(TEXTS)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    alone = minilm.encode(["open the drawer"])
    torch.testing.assert_close(alone.sequences()[0], a.sequences()[1], atol=1e-5, rtol=1e-5)


def test_minilm_similar_instructions_are_closer(minilm) -> None:
    pooled = minilm.encode(
        ["pick up the red block", "grasp the red cube and lift it", "open the top drawer of the cabinet"]
    ).pooled
    sim = pooled @ pooled.T  # unit vectors: cosine similarity
    assert float(sim[0, 1]) > float(sim[0, 2]) + 0.1


def test_minilm_pooled_matches_sentence_transformers(minilm) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm.path), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(TEXTS).pooled, reference, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- umT5
def test_umt5_diffusers_layout_matches_the_model(umt5_root: Path) -> None:
    from transformers import AutoTokenizer, UMT5EncoderModel

    enc = UMT5Encoder(umt5_root, device="cpu")
    assert not enc.loaded and enc.dim == 32 and enc.max_length == 512
    fingerprint = enc.fingerprint  # computed from the files, without loading the weights
    assert fingerprint.startswith("umt5-") and not enc.loaded
    emb = enc.encode(UMT5_TEXTS)
    assert enc.loaded and emb.tokens.dtype == torch.float32
    lengths = emb.mask.sum(dim=1).tolist()
    assert lengths == [6, 4, 7] and emb.tokens.shape == (3, 7, 32)  # words + </s>
    assert float(emb.tokens[~emb.mask].abs().sum()) == 0.0
    # reference: the transformers model run directly on the tokenizer's output
    tok = AutoTokenizer.from_pretrained(umt5_root / "tokenizer")
    model = UMT5EncoderModel.from_pretrained(umt5_root / "text_encoder").eval()
    batch = tok(UMT5_TEXTS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
    torch.testing.assert_close(emb.tokens[emb.mask], ref[batch.attention_mask.bool()])
    pooled = (ref * batch.attention_mask[..., None]).sum(1) / batch.attention_mask.sum(1, keepdim=True)
    torch.testing.assert_close(emb.pooled, pooled)


def test_umt5_pad_to_and_truncation(umt5_root: Path) -> None:
    enc = UMT5Encoder(umt5_root, device="cpu", max_length=12, pad_to=16)
    emb = enc.encode(["open the drawer"])
    assert emb.tokens.shape == (1, 16, 32) and int(emb.mask.sum()) == 4
    assert float(emb.tokens[0, 4:].abs().sum()) == 0.0  # Wan-style zero padding
    with pytest.warns(UserWarning, match="truncated"):
        long = UMT5Encoder(umt5_root, device="cpu", max_length=5).encode([" ".join(WORDS)])
    assert long.tokens.shape[1] == 5
    assert UMT5Encoder(umt5_root, max_length=32, pad_to=16).max_length == 16  # pad_to caps max_length


def _to_wan_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF UMT5EncoderModel keys -> Wan's models_t5_umt5-xxl-enc-bf16.pth layout (written out by hand)."""
    out = {
        "token_embedding.weight": state["shared.weight"],
        "norm.weight": state["encoder.final_layer_norm.weight"],
    }
    for i in range(2):
        hf = f"encoder.block.{i}.layer."
        wan = f"blocks.{i}."
        out[wan + "norm1.weight"] = state[hf + "0.layer_norm.weight"]
        for p in "qkvo":
            out[wan + f"attn.{p}.weight"] = state[hf + f"0.SelfAttention.{p}.weight"]
        out[wan + "pos_embedding.embedding.weight"] = state[
            hf + "0.SelfAttention.relative_attention_bias.weight"
        ]
        out[wan + "norm2.weight"] = state[hf + "1.layer_norm.weight"]
        out[wan + "ffn.gate.0.weight"] = state[hf + "1.DenseReluDense.wi_0.weight"]
        out[wan + "ffn.fc1.weight"] = state[hf + "1.DenseReluDense.wi_1.weight"]
        out[wan + "ffn.fc2.weight"] = state[hf + "1.DenseReluDense.wo.weight"]
    return out


def test_umt5_wan_original_pth_and_hf_folder_give_the_same_embeddings(
    umt5_root: Path, tmp_path: Path
) -> None:
    from transformers import UMT5EncoderModel

    model = UMT5EncoderModel.from_pretrained(umt5_root / "text_encoder")
    wan_root = tmp_path / "Wan2.1-T2V-1.3B"
    wan_root.mkdir()
    torch.save(_to_wan_keys(model.state_dict()), wan_root / WAN_T5_CHECKPOINT)
    shutil.copytree(umt5_root / "tokenizer", wan_root / "google" / "umt5-xxl")
    from_wan = UMT5Encoder(wan_root, device="cpu")
    assert from_wan.layout.kind == "wan" and from_wan.dim == 32
    hf_folder = UMT5Encoder(umt5_root / "text_encoder", tokenizer_path=umt5_root / "tokenizer", device="cpu")
    torch.testing.assert_close(from_wan.encode(UMT5_TEXTS).tokens, hf_folder.encode(UMT5_TEXTS).tokens)
    # the .pth file itself also works
    assert UMT5Encoder(wan_root / WAN_T5_CHECKPOINT, device="cpu").layout.kind == "wan"


def test_umt5_bad_paths_say_what_to_do(umt5_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UMT5Encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="diffusers Wan folder"):
        UMT5Encoder(tmp_path / "empty")
    foreign = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, foreign)
    shutil.copytree(umt5_root / "tokenizer", tmp_path / "google" / "umt5-xxl")
    with pytest.raises(ValueError, match="convert it"):
        UMT5Encoder(foreign)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        UMT5Encoder(umt5_root / "text_encoder")  # no tokenizer beside the weights


# ----------------------------------------------------------------------------- learned
def test_learned_shapes_lookup_and_unseen_fallback() -> None:
    enc = LearnedTaskEncoder(["Pick up the red block", "open the drawer"], dim=8, tokens=2).eval()
    emb = enc.encode(["pick up  the RED block", "open the drawer"])
    assert emb.tokens.shape == (2, 2, 8) and bool(emb.mask.all()) and emb.pooled.shape == (2, 8)
    torch.testing.assert_close(emb.tokens[0], enc.encode(["Pick up the red block"]).tokens[0])
    with pytest.warns(UserWarning, match="not seen in training"):
        unseen = enc.encode(["close the door"])
    assert unseen.tokens.shape == (1, 2, 8) and torch.isfinite(unseen.tokens).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per instruction: no second warning
        enc.encode(["close the door"])


def test_learned_encoder_trains_and_unseen_paraphrases_land_near_their_task() -> None:
    torch.manual_seed(0)
    tasks = ["pick up the red block", "open the drawer", "push the green button"]
    targets = torch.randn(3, 16)
    enc = LearnedTaskEncoder(tasks, dim=16, unknown_dropout=0.5).train()
    fingerprint = enc.fingerprint
    opt = torch.optim.Adam(enc.parameters(), lr=0.1)
    for _ in range(100):
        loss = ((enc.encode(tasks).pooled - targets) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert enc.fingerprint != fingerprint  # weights changed
    enc.eval()
    torch.testing.assert_close(enc.encode(tasks).pooled, targets, atol=0.15, rtol=0)
    with pytest.warns(UserWarning):
        unseen = enc.encode(["open drawer", "push green button"]).pooled
    distance = torch.cdist(unseen, targets)  # (2, 3)
    assert distance.argmin(dim=1).tolist() == [1, 2]


def test_learned_encoder_validates() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        LearnedTaskEncoder([], dim=4)
    with pytest.raises(ValueError, match="unknown_dropout"):
        LearnedTaskEncoder(["a"], dim=4, unknown_dropout=1.0)


# ----------------------------------------------------------------------------- cache
def test_cache_hit_does_not_call_the_encoder(tmp_path: Path) -> None:
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, tmp_path)
    first = cached.encode(["a b", "c", "a b"])
    assert inner.calls == [["a b", "c"]]  # duplicates encoded once
    direct = CountingEncoder().encode(["a b", "c", "a b"])
    assert torch.equal(first.tokens, direct.tokens) and torch.equal(first.mask, direct.mask)
    assert torch.equal(first.pooled, direct.pooled)
    # a fresh wrapper (empty memory) reads the disk: the encoder is not called again
    inner2 = CountingEncoder()
    second = CachedTextEncoder(inner2, tmp_path).encode(["c", "a b"])
    assert inner2.calls == [] and torch.equal(second.tokens, direct.tokens[[1, 0]])
    assert TextEmbeddingCache(tmp_path).count(inner.fingerprint) == 2
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary file


def test_cache_is_keyed_by_encoder_fingerprint(tmp_path: Path) -> None:
    CachedTextEncoder(CountingEncoder(version=0), tmp_path).encode(["a b"])
    other = CountingEncoder(version=1)
    emb = CachedTextEncoder(other, tmp_path).encode(["a b"])
    assert other.calls == [["a b"]] and float(emb.tokens[0, 0, 3]) == 1.0


def test_cache_pads_like_the_encoder_and_recovers_from_bad_files(tmp_path: Path) -> None:
    inner = CountingEncoder(pad_to=6)
    cached = CachedTextEncoder(inner, tmp_path, memory_entries=0)
    assert cached.encode(["a b"]).tokens.shape == (1, 6, 4)
    path = cached.cache.path_for(inner.fingerprint, "a b")
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = cached.encode(["a b"])
    assert len(inner.calls) == 2 and again.tokens.shape == (1, 6, 4)
    assert TextEmbeddingCache(tmp_path).get(inner.fingerprint, "a b") is not None  # rewritten


def test_cache_memory_is_bounded(tmp_path: Path) -> None:
    cached = CachedTextEncoder(CountingEncoder(), tmp_path, memory_entries=2)
    cached.encode(["a", "b", "c"])
    assert list(cached._memory) == ["b", "c"]
    assert cached.warm(["a", "d", "e"]) == 2 and cached.misses == 5 and cached.hits == 1


def test_cache_refuses_trainable_encoders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trainable"):
        CachedTextEncoder(LearnedTaskEncoder(["a"], dim=4), tmp_path)


def test_cached_umt5_never_loads_weights_when_everything_is_cached(umt5_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    direct = UMT5Encoder(umt5_root, device="cpu", pad_to=16).encode(UMT5_TEXTS)
    warm = CachedTextEncoder(UMT5Encoder(umt5_root, device="cpu", pad_to=16), cache)
    torch.testing.assert_close(warm.encode(UMT5_TEXTS).tokens, direct.tokens)
    cold_inner = UMT5Encoder(umt5_root, device="cpu", pad_to=16)
    cold = CachedTextEncoder(cold_inner, cache).encode(UMT5_TEXTS)
    assert not cold_inner.loaded
    assert torch.equal(cold.mask, direct.mask)
    torch.testing.assert_close(cold.tokens, direct.tokens)
    torch.testing.assert_close(cold.pooled, direct.pooled)


def test_fingerprint_follows_weights_not_location(umt5_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(umt5_root, copy)
    base = UMT5Encoder(umt5_root).fingerprint
    assert UMT5Encoder(copy).fingerprint == base  # a copied model reuses its cache
    assert UMT5Encoder(umt5_root, max_length=64).fingerprint != base
    assert UMT5Encoder(umt5_root, dtype=torch.bfloat16).fingerprint != base
    _tiny_umt5(seed=1).save_pretrained(copy / "text_encoder")  # same config, other weights
    assert UMT5Encoder(copy).fingerprint != base


def test_fingerprint_samples_large_files(tmp_path: Path, monkeypatch) -> None:
    from wam.models.text import fingerprint as fp

    monkeypatch.setattr(fp, "WHOLE_FILE_LIMIT", 1024)
    monkeypatch.setattr(fp, "WINDOW_SIZE", 256)
    data = bytearray(torch.randint(0, 256, (64 * 1024,), dtype=torch.uint8).numpy().tobytes())
    (tmp_path / "w.bin").write_bytes(bytes(data))
    before = fp.fingerprint_files("x", [tmp_path], {})
    data[0] ^= 1  # the first window is always read
    (tmp_path / "w.bin").write_bytes(bytes(data))
    assert fp.fingerprint_files("x", [tmp_path], {}) != before


# ----------------------------------------------------------------------------- factory
def test_factory_kinds_typos_and_arguments(umt5_root: Path, tmp_path: Path) -> None:
    enc = build_text_encoder("learned", tasks=["a"], dim=4)
    assert isinstance(enc, LearnedTaskEncoder)
    with pytest.raises(ValueError, match="did you mean 'minilm'"):
        build_text_encoder("minlm")
    with pytest.raises(ValueError, match="takes no width"):
        build_text_encoder("learned", tasks=["a"], width=4)
    cached = build_text_encoder("umt5", path=str(umt5_root), device="cpu", cache_dir=tmp_path)
    assert isinstance(cached, CachedTextEncoder) and cached.dim == 32


def test_text_encoder_config(umt5_root: Path, tmp_path: Path) -> None:
    for bad in (
        {"kind": "umt"},
        {"kind": "umt5"},
        {"kind": "learned", "cache_dir": "x"},
        {"pad_to": 0},
        {"dtype": "fp8"},
    ):
        with pytest.raises(ValueError):
            TextEncoderConfig(**bad)
    learned = TextEncoderConfig(kind="learned", dim=8, tokens=3).build(tasks=["a", "b"])
    assert learned.encode(["a"]).tokens.shape == (1, 3, 8)
    cfg = TextEncoderConfig(
        kind="umt5", path=str(umt5_root), pad_to=20, device="cpu", cache_dir=str(tmp_path)
    )
    assert cfg.build().encode(["open the drawer"]).tokens.shape == (1, 20, 32)


def test_package_import_is_light() -> None:
    code = (
        "import sys; from wam.models.text import TextEncoderConfig; TextEncoderConfig();"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
