"""`wam data info` and `wam data finalize` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from lerobot_fixtures import CAMERA, LENGTHS, TASKS, write_episodes, writer_features
from typer.testing import CliRunner

from wam.commands.data import register
from wam.data import LeRobotDataset, LeRobotDatasetWriter


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps `data` a sub-command group
    register(app)
    return app


def test_info_json_for_v30_and_v21(lerobot_v3_root: Path, lerobot_v21_root: Path) -> None:
    runner = CliRunner()
    for root, version in ((lerobot_v3_root, "v3.0"), (lerobot_v21_root, "v2.1")):
        result = runner.invoke(make_app(), ["data", "info", str(root), "--json"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.output)
        assert (
            info["codebase_version"] == version and info["episodes"] == 2 and info["frames"] == sum(LENGTHS)
        )
        assert info["fps"] == 10 and info["tasks"] == list(TASKS) and info["cameras"] == [CAMERA]
        assert info["features"]["action"] == {"dtype": "float32", "shape": [2]}
        assert info["features"][CAMERA] == {"dtype": "video", "shape": [32, 32, 3]}
        assert info["size_bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_info_table(lerobot_v3_root: Path) -> None:
    result = CliRunner().invoke(make_app(), ["data", "info", str(lerobot_v3_root)])
    assert result.exit_code == 0, result.output
    for text in ("v3.0", "episodes", "observation.state", "open the drawer", CAMERA):
        assert text in result.output


def test_info_of_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(make_app(), ["data", "info", str(tmp_path / "nope")])
    assert result.exit_code != 0 and isinstance(result.exception, FileNotFoundError)
    assert "meta/info.json" in str(result.exception)


def test_finalize_command_consolidates_staged_episodes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter.create(root, fps=20, features=writer_features())
    write_episodes(writer, [0, 1])  # "interrupted": never finalized
    result = CliRunner().invoke(make_app(), ["data", "info", str(root), "--json"])
    assert json.loads(result.output)["unfinalized_episodes"] == 2
    result = CliRunner().invoke(make_app(), ["data", "finalize", str(root)])
    assert result.exit_code == 0, result.output
    assert "2 episodes" in result.output
    assert LeRobotDataset(root).num_episodes == 2
