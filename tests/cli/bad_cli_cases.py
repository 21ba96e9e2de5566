"""The bad inputs of the CLI area, one line each: id, what is wrong, a fragment of the answer.

Tested in `test_bad_cli_inputs.py`; listed in docs/bad-inputs.md (`scripts/bad_inputs_doc.py`).
"""

from __future__ import annotations

from one_line import BadInput

CASES: list[BadInput] = [
    BadInput(
        "train-overwrite-user-folder",
        "`wam train --out NOTES --overwrite` on a folder of notes",
        "--overwrite refused",
    ),
    BadInput(
        "train-overwrite-dataset", "`wam train --data D --out D --overwrite`", "it is the dataset folder"
    ),
    BadInput(
        "train-overwrite-dataset-parent",
        "`--out` a parent of the dataset, --overwrite",
        "contains the dataset",
    ),
    BadInput(
        "train-out-inside-dataset", "`--out D/run`: the run inside the dataset folder", "inside the dataset"
    ),
    BadInput("train-overwrite-cwd", "`wam train --out . --overwrite`", "current or home directory"),
    BadInput(
        "train-overwrite-parent-of-cwd",
        "`wam train --out RUN --overwrite` while standing inside RUN/checkpoints",
        "or a folder above one of them",
    ),
    BadInput(
        "train-run-being-trained",
        "`wam train --out RUN --resume` (or --overwrite) while another process trains RUN",
        "Another process is training into",
    ),
    BadInput(
        "train-overwrite-run-with-user-file",
        "--overwrite on a run folder where the user also keeps a file",
        "did not write (notes.txt)",
    ),
    BadInput(
        "train-overwrite-codec-folder",
        "`wam train --out CODEC --overwrite` on a `wam train-codec` folder",
        "is a wam train-codec folder",
    ),
    BadInput(
        "train-into-foreign-folder",
        "`--out` an existing folder that is not a run",
        "is not a `wam train` run",
    ),
    BadInput("train-out-is-file", "`--out` names an existing file", "is a file, not a folder"),
    BadInput(
        "train-data-is-file", "`--data D/meta/info.json` (a file)", "is a file: pass the dataset folder"
    ),
    BadInput(
        "train-failed-start-restarts",
        "`wam train` again after a start that failed before the first checkpoint",
        "holds no checkpoint",
    ),
    BadInput("train-resume-failed-start", "`--resume` a run whose first start failed", "drop --resume"),
    BadInput(
        "train-image-size-preset",
        "`wam train --preset lightwam-tiny` on 48 px data: fails before codec or latent work",
        "multiples of 32",
    ),
    BadInput(
        "train-resume-broken-run-json",
        "`--resume` with the run's run.json damaged",
        "run.json is not valid JSON",
    ),
    BadInput(
        "train-resume-other-steps",
        "`--resume --steps N` with another total: a warning says how the LR moves",
        "the warmup + cosine schedule is recomputed over",
    ),
    BadInput("train-closing-hint", "the `wam eval` hint after training runs as printed", "--tasks reach-v3"),
    BadInput("eval-out-existing", "`wam eval --out` a folder holding earlier results", "already holds files"),
    BadInput("eval-out-is-file", "`wam eval --out` names an existing file", "is a file, not a folder"),
    BadInput("eval-overwrite-foreign", "`wam eval --out NOTES --overwrite`", "--overwrite refused"),
    BadInput(
        "eval-overwrite-run-folder",
        "`wam eval --out RUN --overwrite` (a training run)",
        "is a wam train folder",
    ),
    BadInput("codec-out-dataset", "`wam train-codec --data D --out D`", "it is the dataset folder"),
    BadInput("codec-overwrite-foreign", "`wam train-codec --out NOTES --overwrite`", "--overwrite refused"),
    BadInput(
        "codec-into-foreign-folder", "`wam train-codec --out NOTES` (no codec there)", "is not a codec folder"
    ),
    BadInput(
        "serve-preset-codec-hint",
        "`wam serve lightwam-tiny` names the command that makes a codec",
        "wam train-codec --data",
    ),
    BadInput(
        "quickstart-image-size",
        "`wam quickstart --image-size 48` (the lightwam-tiny default)",
        "multiples of 32",
    ),
    BadInput(
        "collect-help-sizes",
        "`wam collect metaworld --help` names the sizes the presets accept",
        "multiples of 16",
    ),
    BadInput(
        "collect-video-setting",
        "`wam collect metaworld --codec av1:pix_fmt=yuv444p` (SVT-AV1 encodes 4:2:0 only)",
        "Bad video setting 'pix_fmt=yuv444p'",
    ),
    BadInput(
        "collect-resume-other-video",
        "`wam collect metaworld --resume --codec av1` on an h264 dataset (it appended av1 episodes)",
        "was recorded with video encoding h264, not av1",
    ),
    BadInput(
        "set-float-nan",
        "`--set train.lr=nan` (torch said `Invalid learning rate: nan`)",
        "is not a finite number",
    ),
    BadInput(
        "set-float-inf",
        "`--set train.lr=inf` (it trained until `loss is nan: lower train.lr`)",
        "is not a finite number",
    ),
    BadInput("train-out-under-file", "`wam train --out FILE/run` (a traceback)", "which is a file"),
    BadInput(
        "codec-out-under-file",
        "`wam train-codec --out FILE/codec` (it trained, then failed to save)",
        "which is a file",
    ),
    BadInput(
        "train-out-permission-denied",
        "`wam train --out` inside a folder the user may not write (a PermissionError traceback)",
        "Permission denied",
    ),
    BadInput(
        "serve-device-unknown", "`wam serve RUN --device tpu` (a torch traceback)", "is not a torch device"
    ),
    BadInput(
        "serve-device-no-cuda",
        "`wam serve RUN --device cuda` on a machine without CUDA (an AssertionError traceback)",
        "torch sees no CUDA device",
    ),
    BadInput(
        "cache-latents-batch-size-zero",
        "`wam cache-latents --batch-size 0` (`range() arg 3 must not be zero`)",
        "--batch-size 0 must be at least 1",
    ),
    BadInput(
        "eval-refused-leaves-no-folder",
        "`wam eval --episodes 0 --out NEW`: refused, and NEW is not left behind holding a marker",
        "episodes per task must be at least 1",
    ),
    BadInput(
        "quickstart-out-dataset",
        "`wam quickstart --out DATASET` (it wrote quickstart.json into the dataset)",
        "is not a `wam quickstart` folder",
    ),
    BadInput(
        "bench-json-folder",
        "`wam bench --json FOLDER` (a traceback after the whole measurement)",
        "is a folder: name a file",
    ),
    BadInput(
        "info-num-tasks-out-of-range",
        "`wam info baseline-tiny --num-tasks -5` (printed num_tasks=-5)",
        "out of range",
    ),
    BadInput(
        "codec-image-size-negative",
        "`wam train-codec --image-size -32` (said -32 must be a multiple of 8)",
        "must be a positive multiple of the stride",
    ),
    BadInput(
        "eval-mujoco-gl-unknown",
        "`MUJOCO_GL=bogus wam eval --workers 0` (mujoco's RuntimeError traceback)",
        "MuJoCo refused MUJOCO_GL='bogus'",
    ),
    BadInput(
        "train-interrupted",
        "Ctrl-C during `wam train`: it stopped silently; now one line says what is kept and how to resume",
        "--resume",
    ),
]
