"""Original-layout checkpoints: sharded saving, strict loading, errors for checkpoints that do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from wam.models.wan import (
    WanCheckpointError,
    WanDiT,
    get_wan_config,
    load_wan_state_dict,
    matching_presets,
    read_wan_config,
    save_wan_checkpoint,
)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return module


@pytest.fixture
def saved(tmp_path):
    """A tiny random model written in the original layout as 3+ shards with an index json."""
    model = randomize_(WanDiT.from_config("wan2.1-tiny")).eval()
    written = save_wan_checkpoint(model, tmp_path / "ckpt", shard_size=200_000)
    return model, tmp_path / "ckpt", written


def _sample(model: WanDiT) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    x, ctx = torch.randn(1, 16, 2, 4, 4, generator=gen), torch.randn(1, 3, 32, generator=gen)
    with torch.no_grad():
        return model(x, torch.tensor([321.0]), ctx).sample


def test_sharded_checkpoint_uses_the_original_layout(saved):
    model, folder, _ = saved
    index = json.loads((folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and shards[0] == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in model.parameters())
    keys = set(index["weight_map"])
    expected = {
        "patch_embedding.weight",
        "text_embedding.0.weight",
        "text_embedding.2.bias",
        "time_embedding.0.weight",
        "time_embedding.2.weight",
        "time_projection.1.weight",
        "blocks.1.modulation",
        "blocks.0.norm3.weight",
        "blocks.0.self_attn.q.weight",
        "blocks.0.self_attn.o.bias",
        "blocks.0.self_attn.norm_q.weight",
        "blocks.0.cross_attn.norm_k.weight",
        "blocks.0.cross_attn.v.weight",
        "blocks.0.ffn.0.weight",
        "blocks.0.ffn.2.bias",
        "head.head.weight",
        "head.modulation",
    }
    assert expected <= keys and not any("norm1" in k or "norm2" in k for k in keys)  # weightless LayerNorms
    assert json.loads((folder / "config.json").read_text())["_class_name"] == "WanModel"
    assert not list(folder.glob("*.tmp"))


def test_strict_load_of_a_sharded_checkpoint_reproduces_the_model(saved):
    model, folder, _ = saved
    fresh = WanDiT.from_config("wan2.1-tiny")
    result = fresh.load_pretrained(folder)
    assert result.missing == [] and result.unexpected == []
    torch.testing.assert_close(_sample(fresh), _sample(model), atol=0, rtol=0)


def test_from_pretrained_reads_config_and_materialises_meta_weights(saved):
    model, folder, _ = saved
    assert read_wan_config(folder) == get_wan_config("wan2.1-tiny")
    loaded = WanDiT.from_pretrained(folder)
    assert not any(p.is_meta for p in loaded.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # the tensors are assigned zero-copy from the safetensors buffers, whose alignment may pick another
    # CPU kernel path: equal weights, outputs equal to float32 rounding
    torch.testing.assert_close(_sample(loaded), _sample(model), atol=1e-6, rtol=1e-5)


def test_single_file_save_replaces_old_shards(saved):
    model, folder, _ = saved
    save_wan_checkpoint(model, folder)  # one file now; the stale shards and index must go
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors"]
    state = load_wan_state_dict(folder / "diffusion_pytorch_model.safetensors")
    assert state.keys() == model.state_dict().keys()


def _write_modified(folder, tmp_path, edit) -> str:
    state = load_wan_state_dict(folder)
    edit(state)
    path = tmp_path / "modified.safetensors"
    save_file(state, str(path))
    return str(path)


def test_missing_key_is_reported(saved, tmp_path):
    _, folder, _ = saved
    path = _write_modified(folder, tmp_path, lambda s: s.pop("blocks.1.ffn.2.weight"))
    with pytest.raises(WanCheckpointError, match=r"1 missing key \(blocks\.1\.ffn\.2\.weight\)") as err:
        WanDiT.from_config("wan2.1-tiny").load_pretrained(path)
    assert "matches preset 'wan2.1-tiny'" in str(err.value)
    result = WanDiT.from_config("wan2.1-tiny").load_pretrained(path, strict=False)
    assert result.missing == ["blocks.1.ffn.2.weight"] and result.unexpected == []


def test_unexpected_key_is_reported(saved, tmp_path):
    _, folder, _ = saved
    path = _write_modified(
        folder, tmp_path, lambda s: s.update({"blocks.0.cross_attn.k_img.weight": torch.ones(2)})
    )
    with pytest.raises(
        WanCheckpointError, match=r"1 unexpected key \(blocks\.0\.cross_attn\.k_img\.weight\)"
    ):
        WanDiT.from_config("wan2.1-tiny").load_pretrained(path)
    assert WanDiT.from_config("wan2.1-tiny").load_pretrained(path, strict=False).unexpected == [
        "blocks.0.cross_attn.k_img.weight"
    ]


def test_wrong_shape_is_reported_and_names_the_matching_preset(saved, tmp_path):
    _, folder, _ = saved
    with pytest.raises(WanCheckpointError, match="shape mismatch") as err:
        WanDiT.from_config("wan2.2-tiny").load_pretrained(folder, strict=False)  # 48 latent channels
    message = str(err.value)
    assert "patch_embedding.weight: checkpoint (64, 16, 1, 2, 2) vs model (64, 48, 1, 2, 2)" in message
    assert "matches preset 'wan2.1-tiny'" in message
    path = _write_modified(folder, tmp_path, lambda s: s.update({"head.modulation": torch.zeros(1, 3, 64)}))
    with pytest.raises(WanCheckpointError, match=r"head\.modulation: checkpoint \(1, 3, 64\)"):
        WanDiT.from_config("wan2.1-tiny").load_pretrained(path)


def test_checkpoint_of_no_preset_describes_its_architecture(tmp_path):
    cfg = get_wan_config("wan-tiny").replace(num_layers=3)
    model = WanDiT.from_config(cfg)
    assert matching_presets(model.state_dict()) == []
    save_wan_checkpoint(model, tmp_path)
    with pytest.raises(WanCheckpointError, match="'num_layers': 3"):
        WanDiT.from_config("wan-tiny").load_pretrained(tmp_path)


def test_load_errors_for_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Wan checkpoint"):
        load_wan_state_dict(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"No \.safetensors weights"):
        load_wan_state_dict(tmp_path)


def test_meta_model_loads_in_its_own_dtype(saved):
    _, folder, _ = saved
    meta = WanDiT.from_config("wan2.1-tiny", device="meta", dtype=torch.bfloat16)
    meta.load_pretrained(folder)
    assert {p.dtype for p in meta.parameters()} == {torch.bfloat16}
    raw = load_file(str(next(folder.glob("*00001-of-*.safetensors"))))
    name, tensor = next(iter(raw.items()))
    torch.testing.assert_close(meta.state_dict()[name], tensor.to(torch.bfloat16))
