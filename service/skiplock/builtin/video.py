"""The built-in `video` type: a slideshow of Graphviz diagrams encoded as an H.264 MP4.

    {"frames": [{"source": "digraph { a -> b }", "seconds": 1.5}, …], "fps": 30, "width": 1280}

Three steps, each a child process in the job's workdir (killed with its process group on
timeout, cancellation and shutdown):

1. `dot` renders each frame's DOT to a PNG sized to fit the canvas.
2. One `ffmpeg` fits every PNG onto the canvas: scaled to fit, keeping its aspect ratio,
   centred on white. The canvas is `width` wide and 16:9 of it high, rounded to an even
   number (H.264 in yuv420p needs even sizes): 1280 -> 720, 320 -> 180.
3. One `ffmpeg` encodes the canvases (concat demuxer, per-file durations, `fps` filter) to
   H.264 (libx264, yuv420p, `+faststart`, so a browser can play it while it downloads).

Steps 2 and 3 are apart because PNGs of different sizes make ffmpeg rebuild its filter
graph mid-stream, which drops the frames the `fps` filter holds (tried in one pass, the
test video came out with 8 of its 15 frames); once every canvas has one size, nothing is
rebuilt and each frame lasts exactly its share of video frames.

Invalid DOT fails the job at once naming the frame; a worker without `dot` or `ffmpeg`
still starts, and video jobs then fail with a line saying what to install.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
from pathlib import Path
from typing import Any

from skiplock.builtin import diagram
from skiplock.handlers import Output, PermanentError, register
from skiplock.worker.context import JobContext

MAX_FRAMES = 600
MAX_FRAME_SECONDS = 60
# The worst case, 5 minutes of 4K at 60 fps (18,000 frames), encodes in about 3 minutes on
# a 2-core machine (measured: 600 frames in 5.7 s): well inside the timeout.
MAX_TOTAL_SECONDS = 300
MAX_SOURCE_CHARS = 100_000  # per frame; 600 frames of diagram's 1M limit would be 600 MB
TIMEOUT_SECONDS = 600
DPI = 96  # Graphviz's inches -> pixels; any value works, `size` fixes the pixels
RENDER_SHARE = 0.5  # progress fraction reached once every frame is rendered and fitted
PROGRESS_POLL_SECONDS = 0.5  # ffmpeg writes its -progress file every 0.5 s

_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y")
# Slides barely move, so the fastest preset loses nothing: measured on 4K at 60 fps against
# veryfast, it encodes 2x faster in a third of the memory (336 vs 933 MiB), with a sharper
# first frame (PSNR 62.5 vs 52.3 dB) in files 1.6x larger (still ~36 kB a second).
# x264 starts 1.5 threads per core by default, each with its own frame buffers: encoding 4K
# wrote 459 MiB with 3 threads, 1.6 GiB with 16 and 4.4 GiB with 48, so on a large host the
# default would outgrow SKIPLOCK_CHILD_MEMORY_MB. 4 threads: 544 MiB, as fast on 2 cores.
_X264 = ("-preset", "ultrafast", "-tune", "stillimage", "-threads", "4")
# BT.709, the matrix players assume for HD, tagged so none has to guess.
_BT709 = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "frames": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_FRAMES,
            "items": {
                "type": "object",
                "properties": {
                    "source": diagram.dot_source_schema(MAX_SOURCE_CHARS),
                    "seconds": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": MAX_FRAME_SECONDS,
                        "description": "how long the frame is shown",
                    },
                },
                "required": ["source", "seconds"],
                "additionalProperties": False,
            },
        },
        "fps": {"type": "integer", "minimum": 1, "maximum": 60, "default": 30},
        "width": {
            "type": "integer",
            "minimum": 16,
            "maximum": 3840,
            "multipleOf": 2,
            "default": 1280,
            "description": "pixels; the height is 16:9 of it, rounded to an even number",
        },
    },
    "required": ["frames"],
    "additionalProperties": False,
    # The dashboard's submit form starts from the first example.
    "examples": [
        {
            "frames": [
                {"source": "digraph { submit }", "seconds": 1},
                {"source": "digraph { submit -> render }", "seconds": 1},
                {"source": "digraph { submit -> render -> done }", "seconds": 2},
            ],
            "fps": 30,
            "width": 1280,
        }
    ],
}

MISSING_FFMPEG = (
    "`ffmpeg` is not installed on this worker "
    "(install the ffmpeg package, e.g. apt-get install ffmpeg)"
)
MISSING_DOT_AND_FFMPEG = (
    "Graphviz `dot` and `ffmpeg` are not installed on this worker "
    "(install the graphviz and ffmpeg packages, e.g. apt-get install graphviz ffmpeg)"
)


def missing_programs() -> str | None:
    """What to install for video jobs to run here, or None when nothing is missing."""
    has_dot, has_ffmpeg = diagram.dot_available(), shutil.which("ffmpeg") is not None
    if has_dot and has_ffmpeg:
        return None
    if has_ffmpeg:
        return diagram.MISSING_DOT
    return MISSING_FFMPEG if has_dot else MISSING_DOT_AND_FFMPEG


def canvas_height(width: int) -> int:
    """16:9 of the width, rounded to an even number of pixels (yuv420p needs even sizes)."""
    return 2 * max(1, round(width * 9 / 32))


def frame_counts(seconds: list[float], fps: int) -> list[int]:
    """Video frames per input frame. Each boundary is rounded from the running total, so
    errors never add up: every frame starts and ends within half a video frame of its exact
    time, and the video lasts the sum of `seconds` to within half a frame."""
    bounds = [round(t * fps) for t in itertools.accumulate(seconds, initial=0.0)]
    return [end - start for start, end in itertools.pairwise(bounds)]


def check_video(params: dict[str, Any]) -> None:
    """What the schema cannot say: the video's total length."""
    seconds = [frame["seconds"] for frame in params["frames"]]
    fps = params.get("fps", 30)
    total = sum(seconds)
    if total > MAX_TOTAL_SECONDS:
        raise ValueError(f"input frames: the video lasts {total:g} s, over {MAX_TOTAL_SECONDS} s")
    if sum(frame_counts(seconds, fps)) == 0:
        raise ValueError(f"input frames: the video lasts {total:g} s, under one frame at {fps} fps")


@register("video", timeout=TIMEOUT_SECONDS, schema=SCHEMA, validate=check_video)
async def render_video(ctx: JobContext, params: dict[str, Any]) -> Output:
    missing = missing_programs()
    if missing is not None:
        raise PermanentError(missing)
    frames, fps, width = params["frames"], params.get("fps", 30), params.get("width", 1280)
    size = (width, canvas_height(width))
    pngs = [await _render_frame(ctx, index, frames, size) for index in range(len(frames))]
    canvases = await _fit_onto_canvas(ctx, pngs, size)
    target = await _encode(ctx, canvases, frame_counts([f["seconds"] for f in frames], fps), fps)
    return Output(filename=target.name, content_type="video/mp4", path=target)


async def _render_frame(
    ctx: JobContext, index: int, frames: list[dict[str, Any]], size: tuple[int, int]
) -> Path:
    target = ctx.workdir / f"frame-{index:04d}.png"
    # `size` ending in ! scales the drawing up or down until it touches the canvas's edges,
    # so a tiny graph is not upscaled blurry and a huge one never makes a huge PNG. White,
    # because yuv420p has no alpha and transparent pixels would turn black. The DOT's own
    # attributes win over these defaults.
    defaults = {"dpi": f"{DPI}", "size": f"{size[0] / DPI:.4f},{size[1] / DPI:.4f}!"}
    what = f"frame {index + 1} of {len(frames)} (input frames/{index}/source)"
    source = frames[index]["source"]
    # The DOT's own dpi or size would win over these: the pixel budget applies to each frame.
    diagram.check_bitmap(ctx, source, defaults, what)
    flags = [f"-G{name}={value}" for name, value in defaults.items()]
    await diagram.run_dot(
        ctx, source, "-Tpng", *flags, "-Gbgcolor=white", "-o", str(target), what=what
    )
    # 90% of the rendering share: fitting onto the canvas takes the rest.
    done = (index + 1) / len(frames)
    await ctx.progress(RENDER_SHARE * 0.9 * done, f"rendered frame {index + 1} of {len(frames)}")
    return target


async def _fit_onto_canvas(ctx: JobContext, pngs: list[Path], size: tuple[int, int]) -> list[Path]:
    """Every PNG scaled to fit the canvas and centred on white, in one ffmpeg run."""
    width, height = size
    fit = (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=white,setsar=1"
    )
    await ctx.run(
        *_FFMPEG,
        *("-f", "image2", "-framerate", "1", "-i", "frame-%04d.png"),
        *("-vf", fit, "-fps_mode", "passthrough", "canvas-%04d.png"),
    )
    # The image2 muxer numbers its outputs from 1.
    canvases = [png.with_name(f"canvas-{index:04d}.png") for index, png in enumerate(pngs, 1)]
    await ctx.progress(RENDER_SHARE, "encoding")
    return canvases


async def _encode(ctx: JobContext, canvases: list[Path], counts: list[int], fps: int) -> Path:
    """H.264 MP4 of the canvases, each shown for its count of video frames."""
    playlist = ctx.workdir / "frames.ffconcat"
    playlist.write_text(_concat_playlist(canvases, counts, fps))
    target = ctx.workdir / "video.mp4"
    progress_file = ctx.workdir / "encode-progress.txt"
    watcher = asyncio.create_task(_report_encoding(ctx, progress_file, sum(counts)))
    try:
        await ctx.run(
            *_FFMPEG,
            *("-f", "concat", "-i", playlist.name, "-vf", _to_yuv(fps)),
            *("-frames:v", str(sum(counts)), "-c:v", "libx264", *_X264, "-pix_fmt", "yuv420p"),
            *_BT709,
            *("-movflags", "+faststart"),
            *("-progress", progress_file.name, target.name),
        )
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])  # not `await watcher`: that would swallow our own cancel
    await ctx.progress(1.0, "encoded")
    return target


def _to_yuv(fps: int) -> str:
    """Convert to yuv420p before `fps` repeats the frames: once per slide, not per frame."""
    return f"scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,fps={fps}"


def _concat_playlist(canvases: list[Path], counts: list[int], fps: int) -> str:
    """An ffconcat playlist: each canvas for count/fps seconds. The last one is listed again
    (the concat demuxer ignores the last file's duration); -frames:v cuts the video there."""
    shown = [(canvas, count) for canvas, count in zip(canvases, counts, strict=True) if count]
    lines = ["ffconcat version 1.0"]
    for canvas, count in shown:
        lines += [f"file {canvas.name}", f"duration {count / fps:.6f}"]
    lines.append(f"file {shown[-1][0].name}")
    return "\n".join(lines) + "\n"


async def _report_encoding(ctx: JobContext, progress_file: Path, total_frames: int) -> None:
    """Turn ffmpeg's `frame=N` progress lines into job progress until cancelled."""
    while True:
        await asyncio.sleep(PROGRESS_POLL_SECONDS)
        done = _frames_encoded(progress_file)
        if done:
            fraction = RENDER_SHARE + (1 - RENDER_SHARE) * min(done / total_frames, 1.0)
            await ctx.progress(fraction, f"encoded {done} of {total_frames} video frames")


def _frames_encoded(progress_file: Path) -> int:
    try:
        with progress_file.open("rb") as file:
            file.seek(max(0, progress_file.stat().st_size - 512))  # the latest block only
            tail = file.read().decode("ascii", "replace")
    except FileNotFoundError:
        return 0
    found = re.findall(r"^frame=(\d+)$", tail, re.M)
    return int(found[-1]) if found else 0
