"""Bad inputs to `wam train`, `wam eval`, `wam train-codec`, `wam serve` and `wam quickstart`.

Every case runs the command as a user would (in process, `wam.cli.main`) on a tiny dataset and
expects one `error:` line (exit 2), and, where the old code deleted or wrote over something, that
nothing the user owns was touched. Cases that must now succeed (a failed start restarts, resume
with other --steps warns, the closing hint is runnable, `collect --help` names the preset sizes)
have their own test functions and are listed in CASES too. Every case failed on the code before
`wam.outputs` and the run-folder and image-size checks: it deleted the folder, wrote into the
dataset, gave a traceback, a hint that does not work, or nothing at all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from bad_cli_cases import CASES

from one_line import assert_one_line_error, run_wam

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_fixtures import write_tiny_dataset

SMALL = ["--set", "policy.image_size=32", "--set", "policy.dim=32", "--set", "policy.num_layers=1"]
SMALL += ["--set", "train.batch_size=8", "--set", "train.num_workers=0", "--set", "train.log_every=1"]
SMALL += ["--set", "train.plot=false"]


BY_ID = {case.id: case for case in CASES}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("cli") / "data")


@pytest.fixture(scope="module")
def dataset48(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("cli48") / "data48", episodes=2, frames=12, size=48)


def _notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    return folder


def _train(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--preset",
        "baseline-tiny",
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--steps",
        "2",
        *SMALL,
        *extra,
    ]


def _fingerprint(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run, trained through the CLI (shared: the cases only read it)."""
    from wam.cli import main

    out = tmp_path_factory.mktemp("cli_run") / "run"
    argv, sys.argv = sys.argv, ["wam", *_train(dataset, out)]
    try:
        main()
    except SystemExit as stop:
        assert not stop.code, f"training the shared run failed with exit code {stop.code}"
    finally:
        sys.argv = argv
    return out


def _check(args: list[str], case_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    return assert_one_line_error(run_wam(args, capsys), BY_ID[case_id].expect)


# ---------------------------------------------------------------- wam train: what --out may be
def test_train_overwrite_user_folder(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = _notes(tmp_path / "notes")
    _check(_train(dataset, notes, "--overwrite"), "train-overwrite-user-folder", capsys)
    assert (notes / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize(
    "case_id, out",
    [
        ("train-overwrite-dataset", "."),
        ("train-overwrite-dataset-parent", ".."),
        ("train-out-inside-dataset", "run"),
    ],
)
def test_train_never_touches_the_dataset(
    case_id: str, out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tiny_dataset(tmp_path / "parent" / "data", episodes=2, frames=10)
    before = _fingerprint(data)
    extra = [] if case_id == "train-out-inside-dataset" else ["--overwrite"]
    _check(_train(data, (data / out).resolve() if out != "run" else data / out, *extra), case_id, capsys)
    assert _fingerprint(data) == before and not (data / "run").exists()


def test_train_overwrite_cwd(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _notes(tmp_path / "work")
    monkeypatch.chdir(work)
    _check(_train(dataset, Path("."), "--overwrite"), "train-overwrite-cwd", capsys)
    assert (work / "notes.txt").is_file()


def test_train_overwrite_parent_of_cwd(
    run: Path, dataset: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _fingerprint(run)
    monkeypatch.chdir(run / "checkpoints")  # emptying RUN would pull the floor from under the shell
    _check(_train(dataset, run, "--overwrite"), "train-overwrite-parent-of-cwd", capsys)
    assert _fingerprint(run) == before


def test_train_run_being_trained(run: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wam.training.run_dir import training_lock

    before = _fingerprint(run)
    with training_lock(run):  # another training holds RUN (an OS file lock: any other open file)
        for flag in ("--resume", "--overwrite"):
            _check(_train(dataset, run, flag), "train-run-being-trained", capsys)
    assert _fingerprint(run) == before


def test_train_overwrite_run_with_user_file(
    run: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _notes(copy)
    _check(_train(dataset, copy, "--overwrite"), "train-overwrite-run-with-user-file", capsys)
    assert (copy / "notes.txt").is_file() and (copy / "checkpoints").is_dir()


def test_train_overwrite_replaces_a_run(
    run: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The good path: --overwrite on a wam run folder replaces it (not a bad input; kept beside them)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = run_wam(_train(dataset, copy, "--overwrite"), capsys)
    assert result.code == 0, result.err
    assert json.loads((copy / ".wam").read_text())["kind"] == "run"


def test_train_overwrite_codec_folder(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codec = tmp_path / "codec"
    codec.mkdir()
    (codec / "config.json").write_text('{"type": "compact", "format": 1, "config": {}}')
    (codec / "codec.safetensors").write_bytes(b"weights")
    before = _fingerprint(codec)
    _check(_train(dataset, codec, "--overwrite"), "train-overwrite-codec-folder", capsys)
    assert _fingerprint(codec) == before


def test_train_into_foreign_folder(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = _notes(tmp_path / "notes")
    _check(_train(dataset, notes), "train-into-foreign-folder", capsys)


def test_train_out_is_file(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    _check(_train(dataset, file), "train-out-is-file", capsys)
    assert file.read_text() == "x"


def test_train_data_is_file(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check(_train(dataset / "meta" / "info.json", tmp_path / "run"), "train-data-is-file", capsys)


# ---------------------------------------------------------------- wam train: failed starts, resume
def _failed_start(dataset: Path, out: Path) -> None:
    """What a start that failed before its first checkpoint leaves behind."""
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}\n")
    (out / "run.json").write_text(json.dumps({"data": str(dataset)}) + "\n")
    (out / "log.jsonl").write_text("")


def test_train_failed_start_restarts(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _failed_start(dataset, out)
    result = run_wam(_train(dataset, out), capsys)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and BY_ID["train-failed-start-restarts"].expect in warnings[0]
    assert (out / "checkpoints" / "step_000002").is_dir()


def test_train_resume_failed_start(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    _failed_start(dataset, out)
    _check(["train", "--out", str(out), "--resume"], "train-resume-failed-start", capsys)


def test_train_image_size_preset(dataset48: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lw"
    args = ["train", "--preset", "lightwam-tiny", "--data", str(dataset48), "--out", str(out), "--steps", "2"]
    line = _check(args, "train-image-size-preset", capsys)
    assert "48x48" in line and "--image-size 32 or 64" in line
    assert not out.exists() and not (dataset48.parent / "data48-latents").exists()


def test_train_resume_broken_run_json(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "run.json").write_text('{"data": ')
    _check(["train", "--out", str(copy), "--resume", "--steps", "3"], "train-resume-broken-run-json", capsys)


def test_train_resume_other_steps(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = run_wam(["train", "--out", str(copy), "--resume", "--steps", "4"], capsys)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.err
    assert BY_ID["train-resume-other-steps"].expect in warnings[0] and "train.steps 2 -> 4" in warnings[0]


def test_train_closing_hint(
    run: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_wam(_train(dataset, tmp_path / "run2"), capsys)
    hint = next(line for line in result.out.splitlines() if line.startswith("evaluate: "))
    assert BY_ID["train-closing-hint"].expect in hint and "--out" in hint
    args = hint.removeprefix("evaluate: wam ").split()
    assert args[0] == "eval" and args[args.index("--policy") + 1] == str(tmp_path / "run2")


# ---------------------------------------------------------------- wam eval --out
def _eval(out: Path, *extra: str) -> list[str]:
    return ["eval", "--policy", "zero", "--tasks", "reach-v3", "--out", str(out), "--episodes", "1", *extra]


def test_eval_out_existing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    _check(_eval(out), "eval-out-existing", capsys)
    assert json.loads((out / "results.json").read_text()) == {"earlier": True}


def test_eval_out_is_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "results.txt"
    file.write_text("mine")
    _check(_eval(file, "--max-steps", "5", "--videos", "0", "--workers", "0"), "eval-out-is-file", capsys)
    assert file.read_text() == "mine"


def test_eval_overwrite_foreign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = _notes(tmp_path / "notes")
    _check(_eval(notes, "--overwrite"), "eval-overwrite-foreign", capsys)
    assert (notes / "notes.txt").is_file()


def test_eval_overwrite_run_folder(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _fingerprint(run)
    _check(_eval(run, "--overwrite"), "eval-overwrite-run-folder", capsys)
    assert _fingerprint(run) == before


def test_eval_overwrite_replaces_its_own_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The good path beside the refusals: --overwrite replaces what `wam eval` wrote (journal included)."""
    out = tmp_path / "ev"
    quick = ("--max-steps", "2", "--videos", "0", "--workers", "0")
    assert run_wam(_eval(out, *quick), capsys).code == 0
    assert {"results.json", "episodes.jsonl", "eval_run.json"} <= {p.name for p in out.iterdir()}
    assert run_wam(_eval(out, *quick, "--overwrite"), capsys).code == 0
    assert json.loads((out / "results.json").read_text())["n_episodes"] == 1


# ---------------------------------------------------------------- wam train-codec --out
def _codec(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-codec",
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--steps",
        "1",
        "--image-size",
        "32",
        *extra,
    ]


def test_codec_out_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_dataset(tmp_path / "data", episodes=2, frames=10)
    before = _fingerprint(data)
    _check(_codec(data, data, "--overwrite"), "codec-out-dataset", capsys)
    assert _fingerprint(data) == before


def test_codec_overwrite_foreign(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = _notes(tmp_path / "notes")
    _check(_codec(dataset, notes, "--overwrite"), "codec-overwrite-foreign", capsys)
    assert os.listdir(notes) == ["notes.txt"]


def test_codec_into_foreign_folder(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = _notes(tmp_path / "notes")
    _check(_codec(dataset, notes), "codec-into-foreign-folder", capsys)
    assert os.listdir(notes) == ["notes.txt"]


# ---------------------------------------------------------------- hints and early checks elsewhere
def test_serve_preset_codec_hint(capsys: pytest.CaptureFixture[str]) -> None:
    _check(["serve", "lightwam-tiny", "--device", "cpu"], "serve-preset-codec-hint", capsys)


def test_quickstart_image_size() -> None:
    from wam.quickstart import QuickstartConfig

    with pytest.raises(ValueError, match=BY_ID["quickstart-image-size"].expect) as err:
        QuickstartConfig(out="never-created", image_size=48)
    assert "\n" not in str(err.value) and not Path("never-created").exists()


def test_collect_help_sizes() -> None:
    from wam.commands.collect import IMAGE_SIZE_HELP
    from wam.configs.images import preset_sizes

    assert BY_ID["collect-help-sizes"].expect in IMAGE_SIZE_HELP
    for name, size in preset_sizes().items():
        stem = name.split("-")[0]
        claim = f"of {size[1:]}" if size.startswith("x") else size
        assert claim in IMAGE_SIZE_HELP, (name, size)
        assert stem in IMAGE_SIZE_HELP or not size.startswith("x"), name


def test_collect_bad_video_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    args = ["collect", "metaworld", "--tasks", "reach-v3", "--episodes", "1", "--out", str(out)]
    _check([*args, "--codec", "av1:pix_fmt=yuv444p"], "collect-video-setting", capsys)
    assert not out.exists()  # refused before anything is simulated or written


def test_collect_resume_other_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_dataset(tmp_path / "data", episodes=1, frames=6)  # h264
    before = _fingerprint(data)
    args = ["collect", "metaworld", "--tasks", "reach-v3", "--episodes", "2", "--out", str(data), "--resume"]
    _check([*args, "--codec", "av1"], "collect-resume-other-video", capsys)
    assert _fingerprint(data) == before


def test_every_case_has_a_test() -> None:
    tests = Path(__file__).read_text().split("BY_ID = {", 1)[1]  # the code after CASES
    for case in CASES:
        assert f'"{case.id}"' in tests, case.id
    assert len(CASES) >= 12


# ---------------------------------------------------------------- the hostile tester's round
@pytest.mark.parametrize("case_id, value", [("set-float-nan", "nan"), ("set-float-inf", "inf")])
def test_set_float_not_finite(
    case_id: str, value: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _check(_train(dataset, tmp_path / "run", "--set", f"train.lr={value}"), case_id, capsys)
    assert f"train.lr='{value}'" in line


@pytest.mark.parametrize("case_id", ["train-out-under-file", "codec-out-under-file"])
def test_out_under_a_file(
    case_id: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    build = _train if case_id.startswith("train") else _codec
    _check(build(dataset, file / "sub"), case_id, capsys)
    assert file.read_text() == "x"


def test_train_out_permission_denied(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse the way the kernel does for a user
        mkdir = Path.mkdir

        def denied(self: Path, *args: object, **kwargs: object) -> None:
            if locked in self.absolute().parents:
                raise PermissionError(13, "Permission denied", str(self))
            mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", denied)
    else:
        locked.chmod(0o500)
    try:
        line = _check(_train(dataset, locked / "run"), "train-out-permission-denied", capsys)
    finally:
        locked.chmod(0o700)
    assert str(locked / "run") in line


@pytest.mark.parametrize(
    "case_id, device", [("serve-device-unknown", "tpu"), ("serve-device-no-cuda", "cuda")]
)
def test_serve_device(
    case_id: str, device: str, run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _check(["serve", str(run), "--device", device, "--port", "0"], case_id, capsys)


def test_cache_latents_batch_size_zero(dataset: Path, tmp_path: Path) -> None:
    from wam.data.latent_cache import LatentCache

    with pytest.raises(ValueError, match=BY_ID["cache-latents-batch-size-zero"].expect):
        LatentCache.build(dataset, None, cache_dir=tmp_path / "cache", batch_size=0)  # type: ignore[arg-type]
    assert not (tmp_path / "cache").exists()


def test_eval_refused_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    args = ["eval", "--policy", "zero", "--tasks", "reach-v3", "--out", str(out), "--episodes", "0"]
    _check(args, "eval-refused-leaves-no-folder", capsys)
    assert not out.exists()


def test_quickstart_out_dataset(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _fingerprint(dataset)
    _check(["quickstart", "--out", str(dataset), "--image-size", "32"], "quickstart-out-dataset", capsys)
    assert _fingerprint(dataset) == before


def test_bench_json_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "baseline-tiny", "--dry", "--no-roofline", "--in-process", "--json", str(tmp_path)]
    _check(args, "bench-json-folder", capsys)


def test_info_num_tasks_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("-5", "0", "51"):
        _check(["info", "baseline-tiny", "--num-tasks", value], "info-num-tasks-out-of-range", capsys)


def test_codec_image_size_negative(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _codec(dataset, tmp_path / "codec")
    args[args.index("--image-size") + 1] = "-32"
    _check(args, "codec-image-size-negative", capsys)


def test_eval_mujoco_gl_unknown(tmp_path: Path) -> None:
    """In a fresh process: mujoco reads MUJOCO_GL once, at its first import."""
    import subprocess

    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "MUJOCO_GL": "bogus", "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    env.pop("WAM_DEBUG", None)
    args = ["--policy", "zero", "--tasks", "reach-v3", "--out", str(tmp_path / "ev"), "--episodes", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "wam", "eval", *args, "--workers", "0", "--max-steps", "2", "--videos", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and BY_ID["eval-mujoco-gl-unknown"].expect in errors[0], done.stderr
    assert not (tmp_path / "ev").exists()


def test_train_interrupted(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import wam.training.loop

    copy = tmp_path / "run"
    shutil.copytree(run, copy)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(wam.training.loop, "train", interrupted)
    result = run_wam(["train", "--out", str(copy), "--resume", "--steps", "4"], capsys)
    assert result.code == 130, result.err
    stopped = [line for line in result.err.splitlines() if line.startswith("Stopped:")]
    assert len(stopped) == 1 and BY_ID["train-interrupted"].expect in stopped[0], result.err
    assert "step_000002" in stopped[0] and (copy / "checkpoints" / "step_000002").is_dir()
