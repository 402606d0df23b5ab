"""The store's Lua scripts, kept as files in ``store/lua/`` (each makes one step atomic; no rule lives there)."""

from __future__ import annotations

from importlib.resources import files


def lua(name: str) -> str:
    """The text of ``store/lua/<name>.lua`` (shipped inside the package)."""
    return files("store").joinpath("lua", f"{name}.lua").read_text()
