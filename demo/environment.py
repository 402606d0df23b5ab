"""The environment of a settlekeeper subprocess, built from a :class:`Settings` object (the demo's children).

This is the one place besides :mod:`config.settings` that reads the process environment: a child keeps
this process's ordinary variables (``PATH``, locale, ``HOME``) but never its ``SETTLEKEEPER_*`` ones;
every setting it gets is written from the settings object, so what the parent decided is what the child
reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal

from pydantic import SecretStr

from config.settings import ENV_PREFIX, Settings


def setting_value(value: object) -> str:
    """One setting as its environment variable spells it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def child_environment(settings: Settings, overrides: Mapping[str, object] | None = None) -> dict[str, str]:
    """This process's non-settlekeeper variables, every set field of ``settings``, then ``overrides``.

    ``overrides`` are field names (``broker_url``), written as ``SETTLEKEEPER_BROKER_URL``; a value of
    None removes the variable, so the child falls back to the default.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    values: dict[str, object] = {name: getattr(settings, name) for name in type(settings).model_fields}
    values.update(overrides or {})
    for name, value in values.items():
        if value is not None:
            env[f"{ENV_PREFIX}{name.upper()}"] = setting_value(value)
    return env
