"""The CONSORT diagram rasterised by real headless Chromium: a PNG of the SVG's pixel size,
written next to the SVG by `tailor reports png`; a file that is no SVG is refused."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.reports.cli import app
from services.reports.raster import PNG_SIGNATURE, RasterError, find_chromium, svg_size, svg_to_png
from services.reports.render import consort_svg

from .test_reports_render import _flow


@pytest.fixture
def chromium() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no Chromium (scripts/ensure-browser.sh)")
        pytest.skip("no Chromium")
    return found


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    return struct.unpack(">II", head[16:24])  # type: ignore[return-value]


def test_cli_writes_the_png_next_to_the_svg(tmp_path: Path, chromium: str) -> None:
    svg = tmp_path / "consort-flow.svg"
    svg.write_text(consort_svg(_flow(), title="PerPAIN pilot"), encoding="utf-8")
    result = CliRunner().invoke(app, ["png", str(svg)])
    assert result.exit_code == 0, result.output
    png = tmp_path / "consort-flow.png"
    assert _png_size(png) == svg_size(svg.read_text(encoding="utf-8"))


def test_not_an_svg_is_refused_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "flow.svg"
    bad.write_text("<svg xmlns='http://www.w3.org/2000/svg'>no size</svg>", encoding="utf-8")
    with pytest.raises(RasterError, match="width and height"):
        svg_to_png(bad)
    assert not (tmp_path / "flow.png").exists()
