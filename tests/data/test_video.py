"""Video I/O: encode/decode round trips, exact timestamps through concatenation, tolerance, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wam.data import video


def solid_frames(colors: list[int], size: int = 32) -> np.ndarray:
    """One solid grey-ish frame per entry (uint8 (T, size, size, 3))."""
    frames = np.empty((len(colors), size, size, 3), np.uint8)
    for i, c in enumerate(colors):
        frames[i] = (c, 255 - c, (3 * c) % 256)
    return frames


def patterned_frames(length: int, size: int = 32) -> np.ndarray:
    frames = np.empty((length, size, size, 3), np.uint8)
    ramp = np.linspace(0, 240, size).astype(np.uint8)
    for t in range(length):
        frames[t, :, :, 0] = ramp[None, :]
        frames[t, :, :, 1] = ramp[:, None]
        frames[t, :, :, 2] = 10 + 15 * t
    return frames


@pytest.mark.parametrize("codec", ["av1", "h264"])
def test_encode_decode_round_trip(tmp_path: Path, codec: str) -> None:
    frames = patterned_frames(12)
    path = tmp_path / "clip.mp4"
    video.encode_video(path, frames, fps=20, encoding=video.encoding_for(codec))
    decoded, stamps = video.decode_all(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    np.testing.assert_allclose(stamps, np.arange(12) / 20, atol=1e-9)
    assert np.abs(decoded.astype(int) - frames).mean() < 6
    info = video.video_stream_info(path)
    assert info["video.codec"] == codec and info["video.fps"] == 20 and info["video.pix_fmt"] == "yuv420p"
    assert video.video_num_frames(path) == 12


def test_encoding_defaults_follow_lerobot() -> None:
    av1 = video.encoding_for("av1")
    assert av1.options() == {"g": "2", "crf": "30", "preset": "12", "svtav1-params": "fast-decode=0"}
    assert video.encoding_for("libx264").options() == {"g": "2", "crf": "30"}
    with pytest.raises(ValueError, match="codec"):
        video.encoding_for("vp9")


def dot_frames(length: int = 8, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Grey-brown frames with a 2x2 red marker that moves (a Meta-World goal at 64 px), and its mask."""
    frames = np.full((length, size, size, 3), (120, 90, 70), np.uint8)
    mask = np.zeros(frames.shape[:3], bool)
    for t in range(length):
        y, x = 10 + 5 * t, 50 - 4 * t
        mask[t, y : y + 2, x : x + 2] = True
    frames[mask] = (220, 20, 20)
    return frames, mask


def test_an_encoding_spec_keeps_small_markers_that_the_defaults_smear(tmp_path: Path) -> None:
    spec = "h264:crf=10,pix_fmt=yuv444p"
    encoding = video.encoding_for(spec)
    assert encoding.options() == {"g": "2", "crf": "10"} and encoding.pix_fmt == "yuv444p"
    assert video.encoding_spec(encoding) == spec and video.encoding_spec(video.encoding_for("av1")) == "av1"
    frames, mask = dot_frames()
    errors = {}
    for name in ("av1", "h264", spec):
        path = tmp_path / f"{name.replace(':', '_')}.mp4"
        video.encode_video(path, frames, fps=20, encoding=video.encoding_for(name))
        decoded, _ = video.decode_all(path)
        errors[name] = np.abs(decoded.astype(int) - frames)[mask].mean()  # on the marker's pixels
        assert video.video_stream_info(path)["video.pix_fmt"] == video.encoding_for(name).pix_fmt
    assert errors[spec] < 10 < min(errors["av1"], errors["h264"]), errors  # 4:2:0 halves colour


@pytest.mark.parametrize(
    "spec, message",
    [
        ("vp9", "Unknown video codec 'vp9'"),
        ("av1:pix_fmt=yuv444p", "Bad video setting 'pix_fmt=yuv444p'"),  # SVT-AV1 encodes 4:2:0 only
        ("h264:crf=ten", "Bad video setting 'crf=ten'"),
        ("h264:bitrate=1M", "Bad video setting 'bitrate=1M'"),
        ("h264:crf=60", "Bad video setting 'crf=60'"),  # x264 would encode at 51 and record 60
        ("av1:crf=64", "Bad video setting 'crf=64'"),
        ("h264:crf=10,crf=20", "Bad video setting 'crf=20'"),
        ("h264:g=0", "Bad video setting 'g=0'"),
        ("h264:crf=\u00b2", "Bad video setting"),
    ],
)
def test_a_bad_encoding_spec_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        video.encoding_for(spec)
    assert "\n" not in str(caught.value)


def test_encoding_specs_are_forgiving_about_case_and_spaces() -> None:
    spec = "H264: crf=10 , pix_fmt=yuv444p"
    assert video.encoding_spec(video.encoding_for(spec)) == "h264:crf=10,pix_fmt=yuv444p"
    assert video.encoding_spec(video.encoding_for("libx264:g=4")) == "h264:g=4"
    assert video.encoding_for("av1:") == video.encoding_for("av1")


def test_a_datasets_encoding_is_read_back_from_its_info() -> None:
    stored = {"video.codec": "h264", "video.pix_fmt": "yuv444p", "video.crf": 10, "video.g": 2}
    assert video.encoding_spec(video.encoding_of_feature(stored)) == "h264:crf=10,pix_fmt=yuv444p"
    assert video.encoding_of_feature({"video.codec": "av1", "video.crf": None}) == video.encoding_for("av1")
    assert video.encoding_of_feature({"video.codec": "h264", "video.crf": 23.0}).crf == 23
    with pytest.raises(ValueError, match="videos are av1:pix_fmt=yuv420p10le, which wam cannot encode"):
        video.encoding_of_feature({"video.codec": "av1", "video.pix_fmt": "yuv420p10le"})
    two = {"features": {"a": {"dtype": "video", "info": stored}, "b": {"dtype": "video", "info": {}}}}
    with pytest.raises(ValueError, match=r"D cannot be extended: its cameras were encoded differently"):
        video.dataset_encoding(Path("D"), two)


def test_concat_keeps_exact_timestamps(tmp_path: Path) -> None:
    lengths = (5, 7, 3)
    colors = list(range(20, 20 + 12 * sum(lengths), 12))
    parts, start = [], 0
    for i, n in enumerate(lengths):
        parts.append(tmp_path / f"ep{i}.mp4")
        video.encode_video(parts[-1], solid_frames(colors[start : start + n]), 10, video.encoding_for("av1"))
        start += n
    out = tmp_path / "all.mp4"
    starts = video.concat_videos(parts, out)
    assert starts == pytest.approx([0.0, 0.5, 1.2], abs=1e-12)
    decoded, stamps = video.decode_all(out)
    np.testing.assert_allclose(stamps, np.arange(sum(lengths)) / 10, atol=1e-9)
    np.testing.assert_allclose(decoded[:, :, :, 0].mean(axis=(1, 2)), colors, atol=3)
    # appending to an existing concatenation continues its timeline
    more = tmp_path / "more.mp4"
    starts = video.concat_videos([out, parts[2]], more)
    assert starts == pytest.approx([0.0, 1.5], abs=1e-12)
    assert video.video_num_frames(more) == sum(lengths) + lengths[2]


def test_concat_refuses_mismatched_streams(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    video.encode_video(a, patterned_frames(3, 32), 10, video.encoding_for("h264"))
    video.encode_video(b, patterned_frames(3, 64), 10, video.encoding_for("h264"))
    with pytest.raises(ValueError, match="differs"):
        video.concat_videos([a, b], tmp_path / "ab.mp4")


def test_decode_frames_at_timestamps_with_tolerance(tmp_path: Path) -> None:
    colors = list(range(10, 250, 20))
    path = tmp_path / "clip.mp4"
    video.encode_video(path, solid_frames(colors), 10, video.encoding_for("av1"))
    got = video.decode_frames(path, [0.7, 0.1, 0.3 + 5e-5])
    np.testing.assert_allclose(got[:, 0, 0, 0], [colors[7], colors[1], colors[3]], atol=3)
    with pytest.raises(video.FrameTimestampError, match="within"):
        video.decode_frames(path, [0.15])
    # far-apart queries are reached by separate seeks and still give the exact frames
    long_colors = [(7 * i) % 250 for i in range(40)]
    long_path = tmp_path / "long.mp4"
    video.encode_video(long_path, solid_frames(long_colors), 10, video.encoding_for("h264"))
    everything, _ = video.decode_all(long_path)
    picks = [25, 1, 38, 2, 25, 13]
    np.testing.assert_array_equal(video.decode_frames(long_path, [p / 10 for p in picks]), everything[picks])
    with pytest.raises(video.FrameTimestampError):
        video.decode_frames(path, [2.5])  # past the end


def test_write_mp4_pads_odd_sizes_and_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rollout.mp4"
    video.write_mp4(path, patterned_frames(5, 33)[:, :, :31], fps=30)
    decoded, _ = video.decode_all(path)
    assert decoded.shape == (5, 34, 32, 3)
    before = path.read_bytes()

    def crash(tmp: Path, *args: object, **kwargs: object) -> None:
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "encode_video", crash)
    with pytest.raises(KeyboardInterrupt):
        video.write_mp4(path, patterned_frames(5), fps=30)
    assert path.read_bytes() == before  # the old file survives a crash mid-write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollout.mp4"]  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        video.write_mp4(path, np.zeros((3, 8, 8, 3), np.float32), fps=30)
