"""The bad inputs of the data area, one line each: id, what is wrong, a fragment of the answer.

Tested in `test_bad_data_inputs.py`; listed in docs/bad-inputs.md (`scripts/bad_inputs_doc.py`).
"""

from __future__ import annotations

from lerobot_fixtures import CAMERA

from one_line import BadInput

DATA3 = "data/chunk-000/file-000.parquet"
VIDEO3 = f"videos/{CAMERA}/chunk-000/file-000.mp4"
EPISODES3 = "meta/episodes/chunk-000/file-000.parquet"
DATA21 = "data/chunk-000/episode_000001.parquet"
VIDEO21 = f"videos/chunk-000/{CAMERA}/episode_000001.mp4"

CASES: list[BadInput] = [
    # ---- `wam data info` (exit 2, one error line naming the file)
    BadInput(
        "info-truncated-data-parquet",
        "data info on a v3.0 dataset whose data parquet is cut in half",
        f"{DATA3} is not a readable parquet file",
    ),
    BadInput(
        "info-garbled-parquet-footer",
        "data info on a v2.1 dataset whose episode parquet footer is zeroed",
        "episode_000001.parquet is not a readable parquet file",
    ),
    BadInput("info-deleted-video", "data info on a v3.0 dataset whose mp4 was deleted", f"{VIDEO3}: missing"),
    BadInput(
        "info-truncated-video",
        "data info on a v3.0 dataset whose mp4 is cut in half",
        f"{VIDEO3} is not a readable video",
    ),
    BadInput(
        "info-empty-video", "data info on a v2.1 dataset with a 0-byte episode mp4", f"{VIDEO21}: is empty"
    ),
    BadInput(
        "info-v21-deleted-video",
        "data info on a v2.1 dataset with an episode mp4 deleted",
        f"{VIDEO21}: missing",
    ),
    BadInput(
        "info-v21-short-video",
        "data info on a v2.1 dataset whose episode 1 mp4 holds episode 0's frames",
        "episode_000001.mp4: holds 6 frames but episodes 1 have 9",
    ),
    BadInput(
        "info-data-rows-short",
        "data info on a v3.0 dataset whose data parquet lost its last rows",
        f"{DATA3}: holds 10 rows but episodes 0..1 have 15",
    ),
    BadInput(
        "info-missing-features-key",
        "data info with info.json lacking `features`",
        "meta/info.json lacks the key(s) features",
    ),
    BadInput(
        "info-info-not-object",
        "data info with info.json holding a JSON list",
        "meta/info.json must hold a JSON object",
    ),
    BadInput(
        "info-feature-without-shape",
        "data info with a feature of info.json that has no shape",
        "features ['action'] lack a dtype or a positive shape",
    ),
    BadInput(
        "info-unsupported-version",
        "data info on a dataset whose info.json says v1.6",
        "meta/info.json says codebase_version 'v1.6'",
    ),
    BadInput(
        "info-fps-not-a-number", 'data info with fps "ten" in info.json', "meta/info.json has fps 'ten'"
    ),
    BadInput(
        "info-total-frames-wrong",
        "data info with total_frames 99 in info.json for 15 frames",
        "total_frames is 99 but meta/ holds 15",
    ),
    BadInput(
        "info-video-size-mismatch",
        "data info where info.json says the camera is 64x64, the mp4 is 32x32",
        "frames are 32x32 but meta/info.json says",
    ),
    BadInput(
        "info-bad-jsonl-line",
        "data info on a v2.1 dataset with a garbled meta/episodes.jsonl line",
        "meta/episodes.jsonl line 2 is not valid JSON",
    ),
    BadInput(
        "info-jsonl-missing-length",
        "data info on a v2.1 dataset whose episodes.jsonl line lacks length",
        "meta/episodes.jsonl needs an episode_index and a length",
    ),
    BadInput(
        "info-tasks-jsonl-cut",
        "data info on a v2.1 dataset whose tasks.jsonl is cut mid-line",
        "meta/tasks.jsonl line 2 is not valid JSON",
    ),
    BadInput(
        "info-stats-not-a-mapping",
        "data info with meta/stats.json holding [1, 2]",
        "meta/stats.json must map each feature",
    ),
    BadInput(
        "info-truncated-episodes-parquet",
        "data info with meta/episodes parquet cut in half",
        f"{EPISODES3} is not a readable parquet file",
    ),
    BadInput(
        "info-truncated-tasks-parquet",
        "data info with meta/tasks.parquet cut in half",
        "meta/tasks.parquet is not a readable parquet file",
    ),
    BadInput(
        "info-episodes-missing-column",
        "data info with meta/episodes lacking the video from_timestamp",
        f"no videos/{CAMERA}/from_timestamp for episode 0",
    ),
    # ---- `wam data verify` (exit 1, one problem line per problem naming the file)
    BadInput(
        "verify-garbled-video",
        "data verify on a v3.0 mp4 with 300 bytes zeroed (opens, decodes wrong)",
        f"{VIDEO3}: decodes to",
    ),
    BadInput(
        "verify-timestamps-off",
        "data verify where the data timestamps are shifted by 50 ms",
        f"{DATA3}: episode 0: timestamp",
    ),
    BadInput(
        "verify-index-gap",
        "data verify where episode 1's global index skips one",
        f"{DATA3}: episode 1: index is not 6..14",
    ),
    BadInput(
        "verify-frame-index-order",
        "data verify on a v2.1 episode whose frame_index is reversed",
        "episode_000001.parquet: episode 1: frame_index is not 0..8",
    ),
    BadInput(
        "verify-from-timestamp-wrong",
        "data verify where meta/episodes puts episode 1 0.1 s late in the mp4",
        f"{VIDEO3}: episode 1: no frame within",
    ),
    BadInput(
        "verify-feature-shape-mismatch",
        "data verify where info.json says observation.state has 4 values",
        "column observation.state has 3 values per frame",
    ),
    # ---- reading a dataset for training / codec training (library)
    BadInput(
        "train-truncated-video",
        "training reads a v3.0 dataset whose mp4 lost its tail",
        f"{VIDEO3} is not a readable video",
    ),
    BadInput(
        "codec-truncated-video",
        "codec training decodes an episode of an mp4 that lost its tail",
        f"{VIDEO3} is not a readable video",
    ),
    BadInput(
        "train-truncated-parquet",
        "training reads a v3.0 dataset whose data parquet is cut",
        f"{DATA3} is not a readable parquet file",
    ),
    BadInput(
        "train-missing-column",
        "training reads a data parquet that lacks the action column",
        f"{DATA3} lacks column(s)",
    ),
    BadInput(
        "train-shape-mismatch",
        "training reads data whose state has 3 values where info.json says 4",
        "has 3 values per frame but meta/info.json says shape (4,)",
    ),
    BadInput(
        "train-only-staged",
        "training reads a dataset whose collection was interrupted before finalize",
        "run `wam data finalize",
    ),
    BadInput(
        "finalize-not-a-dataset",
        "wam data finalize on a folder without meta/info.json",
        "or start a new one (LeRobotDatasetWriter.create, `wam collect`)",
    ),
    # ---- deleting / replacing (writer, collect, latent cache)
    BadInput(
        "overwrite-user-notes",
        "collect --overwrite a wam dataset holding the user's notes/ folder",
        "holds notes, which is not part of the dataset",
    ),
    BadInput(
        "overwrite-foreign-lerobot",
        "overwrite a LeRobot dataset that wam did not write",
        "wam did not write (no .wam_dataset marker)",
    ),
    BadInput(
        "overwrite-current-folder",
        "overwrite the dataset folder one is standing in (`--out .`)",
        "or a folder above one of them, so overwrite=True will not delete it",
    ),
    BadInput(
        "collect-non-dataset",
        "collect into an existing folder of notes (no flag): it used to advise --resume/--overwrite",
        "choose another --out",
    ),
    BadInput(
        "collect-resume-non-dataset",
        "collect --resume into a folder of notes",
        "is not a dataset (no meta/info.json); --resume and --overwrite only work on a dataset wam wrote",
    ),
    BadInput(
        "collect-overwrite-non-dataset", "collect --overwrite into a folder of notes", "choose another --out"
    ),
    BadInput(
        "collect-overwrite-user-notes",
        "wam collect --overwrite a wam dataset with the user's notes/ in it",
        "holds notes, which is not part of the dataset, so --overwrite will not delete it",
    ),
    BadInput(
        "latent-cache-foreign-folder",
        "cache latents into the user's own `<dataset>-latents` folder",
        "is not a wam latent cache (it holds notes.txt",
    ),
    BadInput(
        "latent-cache-truncated-shard",
        "train from a latent cache whose episode shard is cut",
        "episode_000000.npy is not a readable latent shard",
    ),
    BadInput(
        "info-nonfinite-stats",
        "data info on a v3.0 dataset whose meta/stats.json holds a NaN action std",
        "meta/stats.json: the statistics std of action are not finite",
    ),
    BadInput(
        "verify-nan-in-column",
        "data verify on a v3.0 dataset whose data parquet holds a NaN action",
        "data/chunk-000/file-000.parquet: column action holds NaN in 1 of",
    ),
    BadInput(
        "writer-nan-action",
        "record an episode whose actions hold NaN (a collector bug): refused, not saved",
        "action holds NaN in 1 of 28 values (first at frame 2)",
    ),
    BadInput(
        "writer-float64-overflow",
        "record a float64 state of 1e300 (inf once stored as float32)",
        "observation.state holds inf in 1 of",
    ),
    BadInput(
        "train-nonfinite-stats",
        "train on a dataset whose stats.json holds inf: it used to say `lower train.lr`",
        "are not finite",
    ),
    BadInput(
        "train-zero-episodes",
        "train on a finalized dataset that holds no episode",
        "record episodes into it first",
    ),
]
