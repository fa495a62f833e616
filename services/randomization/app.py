"""Composition root of the randomization service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

SPEC = ServiceSpec(
    name="randomization",
    migrations=Path(__file__).parent / "migrations",
)


def create_app() -> FastAPI:
    return build_app(SPEC)
