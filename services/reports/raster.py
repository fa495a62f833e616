"""The CONSORT diagram as PNG, for a report that cannot embed SVG.

Rasterised by headless Chromium (the one the browser tests already use), run as a command:
no Python rasteriser becomes a dependency. The PNG has the SVG's own pixel size.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# The root element's opening tag; read with a pattern, not an XML parser (no entity expansion).
_ROOT = re.compile(r"<svg\b[^>]*>", re.S)
_SIZE = {name: re.compile(rf"""\s{name}\s*=\s*["']([0-9]+(?:\.[0-9]+)?)(?:px)?["']""")
         for name in ("width", "height")}


class RasterError(RuntimeError):
    """The PNG could not be made; the message says why."""


def find_chromium() -> str | None:
    """`TAILOR_CHROMIUM`, else /usr/bin/chromium, else `chromium` on the PATH."""
    named = os.environ.get("TAILOR_CHROMIUM", DEFAULT_CHROMIUM)
    return named if Path(named).exists() else shutil.which("chromium")


def svg_size(svg: str) -> tuple[int, int]:
    """The root element's width and height in pixels (our diagrams state both)."""
    root = _ROOT.search(svg)
    found = [_SIZE[name].search(root.group(0)) if root else None for name in ("width", "height")]
    if not (found[0] and found[1]):
        raise RasterError("not an SVG with a pixel width and height")
    return int(float(found[0].group(1))), int(float(found[1].group(1)))


def svg_to_png(svg_path: Path, png_path: Path | None = None, *,
               chromium: str | None = None, timeout: float = 120) -> Path:
    """Write the PNG (by default next to the SVG, same name) and return its path."""
    svg_path = svg_path.resolve()
    target = (png_path or svg_path.with_suffix(".png")).resolve()
    width, height = svg_size(svg_path.read_text(encoding="utf-8"))
    binary = chromium or find_chromium()
    if binary is None:
        raise RasterError("no Chromium found (set TAILOR_CHROMIUM or install chromium)")
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tailor-png-") as profile:
        try:
            done = subprocess.run(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}", f"--screenshot={target}",
                 svg_path.as_uri()],
                capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RasterError(f"Chromium did not run: {exc}") from None
    if not target.exists() or target.read_bytes()[:8] != PNG_SIGNATURE:
        raise RasterError(f"Chromium wrote no PNG (exit {done.returncode}): "
                          f"{done.stderr.strip()[-300:]}")
    return target
