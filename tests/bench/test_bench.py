"""`wam bench`: the JSON report through the CLI, the plan, dry runs of paper presets, memory probes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from wam.bench.entry import EntrySpec, run_entry
from wam.bench.measure import MemoryProbe, percentiles
from wam.bench.runner import BenchConfig, plan
from wam.bench.schema import SCHEMA_VERSION, validate_report


def _app() -> typer.Typer:
    from wam.commands import bench

    app = typer.Typer()
    bench.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `bench` a named subcommand
    return app


def test_cli_writes_a_report_that_follows_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "baseline-tiny", "--calls", "3", "--warmup", "1", "--device", "cpu", "--json", str(out)]
    args += ["--set", "policy.image_size=32", "--train", "--train-steps", "1", "--train-batch-size", "2"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["settings"]["isolation"] == "subprocess"
    assert report["machine"]["device"] == "cpu" and report["machine"]["threads"] >= 1
    (entry,) = report["results"]
    assert entry["error"] is None and entry["name"] == "baseline-tiny/default"
    assert entry["latency"]["calls"] == 3 and 0 < entry["latency"]["p50_ms"] <= entry["latency"]["p99_ms"]
    assert entry["flops"] > 0 and entry["floor"]["floor_s"] > 0 and entry["floor_ratio"] > 0
    assert 0 < entry["weight_bytes_used"] <= entry["policy"]["weight_bytes"]
    assert entry["policy"]["image_size"] == 32 and entry["assumed"]["action_dim"] == 4
    assert entry["memory"]["kind"] == "rss_hwm" and entry["memory"]["inference_peak_bytes"] > 0
    assert entry["train"]["batch_size"] == 2 and entry["train"]["samples_per_s"] > 0
    assert entry["relative_p50"] == pytest.approx(1.0)
    assert "baseline-tiny/default" in result.output


def test_an_entry_past_its_timeout_is_killed_and_reported() -> None:
    from wam.bench.runner import run_bench

    cfg = BenchConfig(
        ("baseline-tiny",), device="cpu", calls=1, warmup=0, roofline=False, entry_timeout_s=0.01
    )
    (entry,) = run_bench(cfg)["results"]  # starting Python and importing torch take far longer
    assert entry["latency"] is None and "ran past 0.01 s and was killed: raise --timeout" in entry["error"]
    with pytest.raises(ValueError, match="--timeout must be > 0"):
        BenchConfig(("baseline-tiny",), entry_timeout_s=0)


def test_table_prints_names_with_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from wam.commands.bench import print_report

    report = json.loads((Path(__file__).parents[2] / "benchmarks/results/bench_tiny_cpu.json").read_text())
    report["results"][0]["error"] = "ValueError: bad [thing]"
    print_report(report)
    out = capsys.readouterr().out
    assert "fastwam-tiny[idm]/fast" in out and "bad [thing]" in out


def test_validator_names_the_broken_field() -> None:
    report = {"schema_version": SCHEMA_VERSION, "created": "now", "roofline": None, "settings": {}}
    with pytest.raises(ValueError, match="lacks 'machine'"):
        validate_report({**report, "results": []})
    machine = {"device": "cpu", "device_name": "x", "torch": "2", "python": "3", "platform": "p"}
    machine |= {"cpu_count": 2, "threads": 1}
    with pytest.raises(ValueError, match="results\\[0\\] lacks"):
        validate_report({**report, "machine": machine, "results": [{"name": "a"}]})


def test_plan_expands_variants_and_paths_and_checks_names() -> None:
    cfg = BenchConfig(
        targets=("fastwam-tiny", "baseline-tiny"),
        variants=("fastwam", "idm"),
        inference=("plain", "fast"),
        device="cpu",
    )
    names = [spec.name for spec in plan(cfg)]
    assert names == [
        "fastwam-tiny[fastwam]/plain",
        "fastwam-tiny[fastwam]/fast",
        "fastwam-tiny[idm]/plain",
        "fastwam-tiny[idm]/fast",
        "baseline-tiny/plain",
        "baseline-tiny/fast",
    ]
    with pytest.raises(ValueError, match="did you mean"):
        plan(BenchConfig(targets=("fastwam-tinny",), device="cpu"))
    with pytest.raises(ValueError, match="variant"):
        plan(BenchConfig(targets=("fastwam-tiny",), variants=("dreamer",), device="cpu"))
    with pytest.raises(ValueError, match="inference option"):
        plan(BenchConfig(targets=("baseline-tiny",), options=("fastest=1",), device="cpu"))
    with pytest.raises(ValueError, match="--inference"):
        BenchConfig(targets=("baseline-tiny",), inference=("quick",))


def test_paper_preset_dry_run_counts_without_weights() -> None:
    """The 5B preset on fake weights: FLOPs and bytes without allocating them (1 Euler step to be quick)."""
    probe = MemoryProbe(__import__("torch").device("cpu"))
    before = probe.current()
    spec = EntrySpec(
        "fastwam-wan2.2-5b",
        overrides=("policy.action_flow.num_inference_steps=1",),
        run=False,
        input="latents",
        roofline={"matmul_flops_per_s": 1e11, "bf16_matmul_flops_per_s": None, "bandwidth_bytes_per_s": 1e10},
    )
    result = run_entry(spec)
    assert result["error"] is None, result["error"]
    assert result["latency"] is None and result["memory"] is None
    assert 5.5e9 < result["policy"]["params"] < 7e9
    # float32: the video DiT and the action expert are read; the unused video head is not
    assert 20e9 < result["weight_bytes_used"] < result["policy"]["weight_bytes"]
    assert 5e11 < result["flops"] < 3e12  # prefill of 98 video tokens + one expert step
    floor = max(result["flops"] / 1e11, result["weight_bytes_used"] / 1e10)
    assert result["floor"]["floor_s"] == pytest.approx(floor)
    assert probe.current() - before < 2e9  # far below the 24 GB the weights would take


def test_percentiles_and_memory_probe() -> None:
    stats = percentiles([0.001 * i for i in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p99_ms"] == pytest.approx(99.01)
    probe = MemoryProbe(__import__("torch").device("cpu"))
    probe.reset()
    start = probe.current()
    block = np.ones(128 << 20, dtype=np.uint8)  # 128 MiB, touched
    # the resident set grows by about the block (the kernel may drop a few MiB of other pages at the
    # same time, so only half is required) and the high-water mark covers it (the mark itself may
    # stay put when an earlier test peaked higher and the kernel refused to reset it)
    assert probe.current() - start >= 64 << 20
    assert probe.peak() >= probe.current()
    del block
