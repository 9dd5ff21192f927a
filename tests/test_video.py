"""The built-in `video` type for real: Graphviz and ffmpeg run by a worker, checked with
ffprobe; invalid DOT, cancellation mid-encode and a worker without ffmpeg."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from skiplock.builtin import video
from skiplock.handlers import InvalidInput, registry
from worker_harness import (
    await_for,
    enqueue,
    events,
    job,
    process_exists,
    running_worker,
    start_worker_process,
    status_is,
    wait_for,
)

Conn = psycopg.Connection[Any]

# Rendering needs ffmpeg and ffprobe on this machine (.ci/run installs them); a developer
# without them sees these tests skipped with the reason, not failed.
needs_ffmpeg = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)",
)

FRAMES = [
    {"source": "digraph { submit -> render }", "seconds": 0.5},
    {"source": "digraph { rankdir=LR; render -> encode -> store }", "seconds": 0.3},
    {"source": "digraph { a -> b; a -> c; b -> d; c -> d }", "seconds": 0.7},
]


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's view of the first video stream and the container (frames counted by decoding)."""
    entries = "stream=codec_name,width,height,pix_fmt,nb_read_frames:format=duration,format_name"
    options = ["-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json"]
    out = subprocess.run(
        ["ffprobe", *options, "-show_entries", entries, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, Any] = json.loads(out)
    return {**found["streams"][0], **found["format"]}


def scene_changes(path: Path) -> list[float]:
    """Times (s) of the frames that differ a lot from the one before: where a new slide starts."""
    changed = f"movie={path},select=gt(scene\\,0.05)"
    options = ["-v", "error", "-show_entries", "frame=pts_time", "-of", "csv=p=0"]
    out = subprocess.run(
        ["ffprobe", *options, "-f", "lavfi", "-i", changed],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [round(float(line), 3) for line in out.split()]


def stored_asset(conn: Conn, job_id: uuid.UUID, storage: Path) -> tuple[Path, str, str]:
    row = conn.execute(
        "SELECT object_key, content_type, original_filename FROM skiplock.assets WHERE id = %s",
        (job(conn, job_id)["result_asset_id"],),
    ).fetchone()
    assert row is not None
    return storage / row[0], row[1], row[2]


@needs_ffmpeg
async def test_video_is_an_h264_mp4_whose_slides_last_their_seconds(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "video", {"frames": FRAMES, "fps": 10, "width": 320})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "done", "failed"), timeout=60)
    assert job(conn, job_id)["error_message"] is None
    path, content_type, filename = stored_asset(conn, job_id, tmp_path / "storage")
    assert (content_type, filename) == ("video/mp4", "video.mp4")
    found = probe(path)
    print("ffprobe:", found)  # the figures, with -s
    assert found["codec_name"] == "h264" and found["pix_fmt"] == "yuv420p"
    assert (found["width"], found["height"]) == (320, 180)
    assert int(found["nb_read_frames"]) == 15  # (0.5 + 0.3 + 0.7) s x 10 fps
    assert abs(float(found["duration"]) - 1.5) <= 0.1  # within one frame
    # Each slide starts on the frame its seconds say: 0.5 s, then 0.5 + 0.3 s.
    assert scene_changes(path) == [0.5, 0.8]
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading
    assert job(conn, job_id)["progress"] == {"fraction": 1.0, "message": "encoded"}
    assert [t for t, _ in events(conn, job_id)][-1] == "content_job.done"


@needs_ffmpeg
async def test_a_frame_shorter_than_half_a_video_frame_is_left_out_not_stretched(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    frames = [FRAMES[0], {**FRAMES[1], "seconds": 0.01}, FRAMES[2]]  # 0.1 of a frame at 10 fps
    job_id = enqueue(conn, company_id, "video", {"frames": frames, "fps": 10, "width": 320})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "done", "failed"), timeout=60)
    path, _, _ = stored_asset(conn, job_id, tmp_path / "storage")
    assert int(probe(path)["nb_read_frames"]) == 12  # round(1.21 s x 10 fps)
    assert scene_changes(path) == [0.5]  # straight from the first slide to the third


@needs_ffmpeg
async def test_invalid_dot_in_frame_2_fails_at_once_naming_the_frame(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    frames = [FRAMES[0], {"source": "digraph { a -> }", "seconds": 1}, FRAMES[2]]
    job_id = enqueue(conn, company_id, "video", {"frames": frames})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "failed"), timeout=30)
    failed = job(conn, job_id)
    assert failed["attempts"] == 1
    assert failed["error_message"].startswith(
        "Graphviz could not render frame 2 of 3 (input frames/1/source): Error: <stdin>: "
    )
    assert "syntax error in line 1" in failed["error_message"]


def test_worker_without_ffmpeg_warns_at_start_and_fails_video_jobs_clearly(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    only_dot = tmp_path / "bin"
    only_dot.mkdir()
    (only_dot / "dot").symlink_to(shutil.which("dot") or "dot")
    clip = enqueue(conn, company_id, "video", {"frames": FRAMES})
    diagram = enqueue(conn, company_id, "diagram", {"source": "digraph { a }"})
    worker = start_worker_process(database_url, tmp_path, env={"PATH": str(only_dot)})
    try:
        wait_for(lambda: status_is(conn, clip, "failed")() and status_is(conn, diagram, "done")())
    finally:
        worker.signal()
        assert worker.wait() == 0
    warning = f"skiplock: warning: {video.MISSING_FFMPEG}; video jobs will fail"
    assert warning in worker.log().splitlines()
    assert video.MISSING_FFMPEG.startswith("`ffmpeg` is not installed on this worker (install")
    assert job(conn, clip)["error_message"] == video.MISSING_FFMPEG
    assert job(conn, clip)["attempts"] == 1


@pytest.mark.slow
@needs_ffmpeg
def test_cancel_mid_encode_kills_ffmpeg_within_a_second(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    # Five minutes of 4K at 60 fps: minutes of encoding on any machine this runs on.
    frames = [{"source": f"digraph {{ slide{i} -> next }}", "seconds": 60} for i in range(5)]
    job_id = enqueue(conn, company_id, "video", {"frames": frames, "fps": 60, "width": 3840})
    worker = start_worker_process(database_url, tmp_path)
    try:
        encoders = wait_for(lambda: _children(worker.pid, "ffmpeg", b"libx264"), timeout=60)
        wait_for(lambda: _frames_encoded(job(conn, job_id)) > 0, timeout=30)  # mid-encode
        conn.execute(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (job_id,)
        )
        canceled = time.monotonic()
        wait_for(lambda: not any(process_exists(pid) for pid in encoders), timeout=5)
        assert time.monotonic() - canceled < 2.0  # SPEC: within one second (2x slack)
        wait_for(lambda: "job stopped" in worker.log(), timeout=5)
        assert not _children(worker.pid, "ffmpeg") and not _children(worker.pid, "dot")
    finally:
        worker.signal()
        assert worker.wait() == 0
    assert job(conn, job_id)["status"] == "canceled"
    assert conn.execute("SELECT count(*) FROM skiplock.assets").fetchone() == (0,)


def _frames_encoded(row: dict[str, Any]) -> int:
    message = (row["progress"] or {}).get("message", "")
    return int(message.split()[1]) if message.startswith("encoded ") else 0


def test_frame_counts_round_boundaries_so_errors_never_add_up() -> None:
    assert video.frame_counts([0.5, 0.3, 0.7], 10) == [5, 3, 7]
    assert video.frame_counts([1 / 3] * 3, 30) == [10, 10, 10]
    assert video.frame_counts([0.25, 0.25], 10) == [2, 3]  # 2.5 rounds to even, 5 is exact
    counts = video.frame_counts([0.04] * 600, 30)  # 1.2 video frames each
    assert sum(counts) == 720 and set(counts) == {1, 2}


def test_canvas_is_16_by_9_with_even_sides() -> None:
    assert [video.canvas_height(w) for w in (320, 1280, 1920, 3840)] == [180, 720, 1080, 2160]
    assert all(video.canvas_height(w) % 2 == 0 for w in range(16, 3841, 2))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"width": 321}, "multiple of 2"),
        ({"width": 8}, "less than the minimum"),
        ({"fps": 0}, "less than the minimum"),
        ({"fps": 61}, "greater than the maximum"),
        ({"frames": []}, "should be non-empty"),
        ({"frames": [{"source": "digraph {}", "seconds": 0}]}, "less than or equal to"),
        ({"frames": [{"source": "digraph {}", "seconds": 61}]}, "greater than the maximum"),
        ({"frames": [{"source": "digraph {}"}]}, "'seconds' is a required property"),
        ({"frames": [{"source": "digraph {}", "seconds": 60}] * 6}, "over 300 s"),
        ({"frames": [{"source": "digraph {}", "seconds": 0.01}]}, "under one frame at 30 fps"),
        ({"format": "gif"}, "Additional properties are not allowed"),
    ],
)
def test_video_input_is_checked_before_anything_runs(
    change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        registry.get("video").check_input({"frames": FRAMES, **change})


def test_valid_video_input_passes_with_defaults_and_so_does_the_example() -> None:
    registry.get("video").check_input({"frames": FRAMES})
    registry.get("video").check_input(video.SCHEMA["examples"][0])
    assert registry.get("video").timeout == video.TIMEOUT_SECONDS


def _children(parent: int, name: str, with_arg: bytes | None = None) -> list[int]:
    """Live child processes of `parent` running `name` (with `with_arg` among their
    arguments, if given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            # /proc/PID/stat: "pid (comm) state ppid ...", and comm may hold spaces.
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) != parent or state == "Z" or Path(argv[0].decode()).name != name:
            continue
        if with_arg is None or with_arg in argv:
            found.append(int(entry.name))
    return found
