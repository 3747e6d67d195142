"""The floor map of the package: which packages sit on which floor, read by the layout test.

Floors, top-down: orchestration (the CLI, iterate, sweep, report) may import anything below it; a
stage (compose, crawlers, mining, training) imports only the core, never another stage; the core
imports nothing above it.
"""

from __future__ import annotations

PACKAGE = "pipe_embed"

CORE, STAGE, TOP = 0, 1, 2

#: floor -> the packages on it (the package root `pipe_embed.pipeline` belongs to the core)
FLOORS: dict[int, tuple[str, ...]] = {
    CORE: ("pipe_embed.pipeline.core",),
    STAGE: ("pipe_embed.pipeline.compose", "pipe_embed.crawlers", "pipe_embed.mining", "pipe_embed.training"),
    TOP: ("pipe_embed.pipeline.orchestrate", "pipe_embed.pipeline.cli"),
}

FLOOR_NAMES = {CORE: "core", STAGE: "stage", TOP: "orchestration"}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def floor_of(name: str) -> tuple[int, str]:
    """(floor, group) of a module: the group is the package it belongs to on its floor.

    Raises ValueError for a module of the package that no floor lists, so a new folder must be
    placed on the map before it can be imported anywhere.
    """
    if name in (PACKAGE, "pipe_embed.pipeline"):
        return CORE, "pipe_embed.pipeline.core"
    for floor, packages in FLOORS.items():
        for package in packages:
            if _within(name, package):
                return floor, package
    raise ValueError(f"{name}: not on the floor map (pipe_embed.pipeline.core.floors.FLOORS)")


__all__ = ["FLOORS", "FLOOR_NAMES", "CORE", "STAGE", "TOP", "PACKAGE", "floor_of"]
