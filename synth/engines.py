"""Engine discovery and configuration for the Verilog/lint/FPGA tooling.

Every engine package ``hdl.<engine>`` exports ``MODULE_NAME`` (the stable
Verilog top name), ``build(config) -> wiring.Component``, ``CONFIGS`` (at
least ``"default"`` and ``"small"``) and ``config_params(config) -> dict``.
Engines come from a fixed list; a package that does not exist yet is "not
present" (skipped by ``--engine all``, an error when asked for by name). A
package that exists but fails to import, or misses part of the contract, is
always an error: a broken engine must not be skipped silently.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from dataclasses import dataclass
from types import ModuleType

ENGINES = ("sptc", "pim", "cim", "moe")
CONTRACT = ("MODULE_NAME", "build", "CONFIGS", "config_params")


class UsageError(Exception):
    """A bad command-line request (unknown engine/config/parameter, bad value): exit status 2."""


class EngineMissing(UsageError):
    """The engine's package ``hdl.<engine>`` does not exist (yet)."""


def load_engine(name: str) -> ModuleType:
    """Import ``hdl.<name>`` and check it exports the engine contract."""
    if name not in ENGINES:
        raise UsageError(f"engine: unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    modname = f"hdl.{name}"
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name in (modname, "hdl"):
            raise EngineMissing(f"engine {name!r} is not present: no package {modname} "
                                f"(it has not been written yet)") from None
        raise
    missing = [attr for attr in CONTRACT if not hasattr(mod, attr)]
    if missing:
        raise UsageError(f"engine {name!r}: {modname} does not export {', '.join(missing)} "
                         f"(needed: {', '.join(CONTRACT)})")
    for cfg in ("default", "small"):
        if cfg not in mod.CONFIGS:
            raise UsageError(f"engine {name!r}: {modname}.CONFIGS has no {cfg!r} entry")
    return mod


def present_engines() -> tuple[list[str], list[str]]:
    """(present, missing) engines of the fixed list."""
    present, missing = [], []
    for name in ENGINES:
        try:
            load_engine(name)
        except EngineMissing:
            missing.append(name)
        else:
            present.append(name)
    return present, missing


def select_engines(request: str) -> tuple[list[str], list[str]]:
    """Engines for ``--engine`` (a name, a comma list, or ``all``): (selected, not present)."""
    if request == "all":
        return present_engines()
    names = [n.strip() for n in request.split(",") if n.strip()]
    if not names:
        raise UsageError("engine: empty --engine")
    for name in names:
        load_engine(name)  # raises EngineMissing / UsageError
    return names, []


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: keep it as a string (e.g. mode=dense)


def _replace_path(obj, path: list[str], value, full: str):
    if not dataclasses.is_dataclass(obj):
        raise UsageError(f"--param {full}: {type(obj).__name__} is not a config dataclass")
    names = [f.name for f in dataclasses.fields(obj)]
    head = path[0]
    if head not in names:
        raise UsageError(f"--param {full}: unknown field {head!r} of {type(obj).__name__}; "
                         f"fields: {', '.join(names)}")
    if len(path) > 1:
        value = _replace_path(getattr(obj, head), path[1:], value, full)
    return dataclasses.replace(obj, **{head: value})


def apply_params(config, params: list[str] | None):
    """Override fields of a frozen config dataclass from ``k=v`` strings.

    Values are Python literals (``rows=4``, ``samoyeds_nm=((1,2),(2,4))``);
    a bare word stays a string. ``a.b=v`` reaches into a nested dataclass.
    The config's own validation (``FormatError``) reports a bad value.
    """
    for item in params or []:
        if "=" not in item:
            raise UsageError(f"--param {item!r}: expected k=v")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"--param {item!r}: empty field name")
        try:
            config = _replace_path(config, key.split("."), _parse_value(text.strip()), item)
        except ValueError as exc:  # FormatError from the config's __post_init__
            raise UsageError(f"--param {item}: {exc}") from None
        except TypeError as exc:
            raise UsageError(f"--param {item}: {exc}") from None
    return config


@dataclass(frozen=True)
class Design:
    """One engine configuration: what gets emitted, linted and synthesized."""

    engine: str
    config_name: str
    params: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        tag = self.config_name
        for p in self.params:  # e.g. sptc-default_rows=4 (safe as a directory name)
            tag += "_" + re.sub(r"[^A-Za-z0-9=.,-]+", "", p.replace(" ", ""))
        return f"{self.engine}-{tag}"

    def module(self) -> ModuleType:
        return load_engine(self.engine)

    def config(self):
        mod = self.module()
        if self.config_name not in mod.CONFIGS:
            raise UsageError(f"config: engine {self.engine!r} has no config {self.config_name!r}; "
                             f"available: {', '.join(mod.CONFIGS)}")
        return apply_params(mod.CONFIGS[self.config_name], list(self.params))

    def top(self) -> str:
        return self.module().MODULE_NAME

    def header_params(self) -> dict:
        return dict(self.module().config_params(self.config()))
