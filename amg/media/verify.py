"""`amg verify FILE`: does a video carry AMG's marks, and what do they say? The watermark in its pixels (pooled
over its frames), the signed C2PA manifest, and AMG's metadata tags: each read independently, since any of them
may have been stripped on the way (a re-encode drops the manifest and tags; a crop, a scale or a re-encode
leaves the watermark)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import av
from tqdm import tqdm

from amg.core.constants import FPS
from amg.core.errors import MediaError
from amg.media.provenance import read_manifest, read_tags
from amg.media.video import iter_frames, probe_video
from amg.media.watermark import Detection, Detector, Payload

# Frames the watermark is read from: every STEP-th (the pattern's strength changes slowly) of at most MAX_S
# seconds, so a long file is judged in about half a minute.
STEP = 2
MAX_S = 60.0
# The ids are read from a whole video, from its start (the watermark's signs count from it), of about 10 s or
# more; never reported where they do not stand out.
IDS_UNREAD = "ids unread: they are read from a whole video of about 10 s or more, from its start"


@dataclass
class Verification:
    path: str
    watermark: Detection
    manifest: dict | None  # the active C2PA manifest and its validation state
    tags: dict | None  # AMG's record from the container's metadata

    @property
    def found(self) -> bool:
        return self.watermark.found or self.manifest is not None or self.tags is not None

    def as_dict(self) -> dict:
        mark = asdict(self.watermark)
        return {"path": self.path, "found": self.found, "watermark": mark, "manifest": self.manifest, "tags": self.tags}

    def lines(self) -> list[str]:
        w = self.watermark
        if w.found:
            mark = f"found (score {w.score:.1f} over {w.frames} frames; {self._ids()})"
        else:
            mark = f"not found (score {w.score:.1f} over {w.frames} frames)"
        lines = [f"AMG watermark: {mark}"]
        if self.manifest is None:
            lines.append("C2PA manifest: none")
        else:
            generator = (self.manifest["manifest"].get("claim_generator_info") or [{}])[0].get("name", "?")
            lines.append(f"C2PA manifest: made by {generator}, {self.manifest['validation_state']}")
        lines.append("Metadata: " + ("AMG record " + str(self.tags) if self.tags else "no AMG record"))
        lines.append("Verdict: made by AMG" if self.found else "Verdict: no AMG mark found")
        return lines

    def _ids(self) -> str:
        """The ids the watermark carries (16-bit hashes of the names), and whether they are the metadata's."""
        read = self.watermark.payload
        if read is None:
            return IDS_UNREAD
        text = f"avatar id {read.avatar:04x}, render id {read.render:04x}"
        if not self.tags:
            return text
        same = Payload.of(str(self.tags.get("avatar")), str(self.tags.get("render_id"))) == read
        return text + (", those of the metadata's avatar and render" if same else ", not the metadata's")


def verify_video(path: Path) -> Verification:
    """Every mark AMG puts in a video, read from `path` (MediaError for what is not a readable video)."""
    path = Path(path)
    info = probe_video(path)
    detector = Detector()
    limit = int(MAX_S * FPS)
    frames = islice(iter_frames(path, FPS), 0, limit, STEP)  # at a constant rate, whatever the file's
    total = -(-min(info.n_frames(FPS), limit) // STEP)
    for i, frame in enumerate(tqdm(frames, total=total, desc="Reading the watermark", unit="frame")):
        detector.add(frame, i * STEP / FPS)
    return Verification(str(path), detector.result(), read_manifest(path), read_tags(_metadata(path)))


def _metadata(path: Path) -> dict[str, str]:
    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name} is not a readable video ({exc}).") from None
