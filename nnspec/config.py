"""Project configuration: `[tool.nnspec]` in the nearest `pyproject.toml`, or a `nnspec.toml`.

Found from the common directory of the paths checked (the working directory for standard input), walking up:
in each directory `nnspec.toml` wins over `pyproject.toml`, and a `pyproject.toml` without a `[tool.nnspec]`
table is passed over, as ruff does. Command-line flags win over the file. Globs (`exclude`,
`per-file-ignores`) are gitignore patterns relative to the directory of the configuration file: `name.yaml`
matches at any depth, `dir/name.yaml` and `/name.yaml` from that directory, `dir/` a directory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

CONFIG_KEYS = ("select", "ignore", "exclude", "extend-exclude", "per-file-ignores", "max-params")


class ConfigError(Exception):
    pass


@dataclass
class Config:
    path: Optional[str] = None  # the file it came from
    root: str = field(default_factory=os.getcwd)  # the directory globs are relative to
    select: Optional[list] = None
    ignore: Optional[list] = None
    exclude: Optional[list] = None
    extend_exclude: list = field(default_factory=list)
    per_file_ignores: dict = field(default_factory=dict)
    max_params: Optional[int] = None


def _toml_load(path: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _mentions_nnspec(path: str) -> bool:
    """A cheap test before parsing: a pyproject.toml that never says `nnspec` has no [tool.nnspec]."""
    try:
        with open(path, "rb") as fh:
            return b"nnspec" in fh.read()
    except OSError:
        return True  # let the parse report it


def find_config(start: str) -> Optional[tuple[str, dict]]:
    """(path, the nnspec table) of the nearest configuration at or above `start`, or None."""
    directory = os.path.abspath(start)
    while True:
        own = os.path.join(directory, "nnspec.toml")
        if os.path.isfile(own):
            data = _toml_load(own)
            return own, data.get("tool", {}).get("nnspec", data)
        project = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(project) and _mentions_nnspec(project):
            table = _toml_load(project).get("tool", {}).get("nnspec")
            if table is not None:
                return project, table
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _strings(path: str, key: str, value) -> list:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: `{key}` must be a list of strings, got {value!r}")
    return value


def parse_config(path: str, table) -> Config:
    from nnspec.names import did_you_mean

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.nnspec] must be a table")
    for key in table:
        if key not in CONFIG_KEYS:
            hint = did_you_mean(key, CONFIG_KEYS)
            raise ConfigError(f"{path}: unknown key `{key}` in the nnspec configuration"
                              + (f"; {hint}" if hint else f"; allowed: {', '.join(CONFIG_KEYS)}"))
    config = Config(path=path, root=os.path.dirname(os.path.abspath(path)))
    if "select" in table:
        config.select = _strings(path, "select", table["select"])
    if "ignore" in table:
        config.ignore = _strings(path, "ignore", table["ignore"])
    if "exclude" in table:
        config.exclude = _strings(path, "exclude", table["exclude"])
    if "extend-exclude" in table:
        config.extend_exclude = _strings(path, "extend-exclude", table["extend-exclude"])
    if "per-file-ignores" in table:
        value = table["per-file-ignores"]
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: `per-file-ignores` must be a table of glob = [codes], got {value!r}")
        config.per_file_ignores = {glob: _strings(path, f"per-file-ignores.{glob}", codes)
                                   for glob, codes in value.items()}
    if "max-params" in table:
        value = table["max-params"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{path}: `max-params` must be a positive integer, got {value!r}")
        config.max_params = value
    return config


def load_config(paths: list[str], explicit: Optional[str] = None) -> Config:
    """The configuration for checking `paths`: `explicit` (from --config) or the nearest one found."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"{explicit}: no such configuration file")
        data = _toml_load(explicit)
        table = data.get("tool", {}).get("nnspec", {}) if os.path.basename(explicit) == "pyproject.toml" \
            else data.get("tool", {}).get("nnspec", data)
        return parse_config(explicit, table)
    real = [os.path.abspath(p) for p in paths if p != "-"]
    try:
        start = os.path.commonpath(real) if real else os.getcwd()
    except ValueError:  # different drives
        start = os.getcwd()
    if not os.path.isdir(start):
        start = os.path.dirname(start)
    found = find_config(start)
    return parse_config(*found) if found else Config()


class Globs:
    """Gitignore-style patterns matched relative to a base directory."""

    def __init__(self, patterns: list[str], base: str):
        self.base = os.path.abspath(base)
        self.patterns = list(patterns)
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:  # pathspec is imported only when something is matched
            import pathspec

            self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        return self._spec

    def matches(self, path: str, is_dir: bool = False) -> bool:
        if not self.patterns:
            return False
        absolute = os.path.abspath(path)
        rel = os.path.relpath(absolute, self.base) if _inside(absolute, self.base) else None
        candidates = [rel] if rel is not None else [path.lstrip("./") or path, os.path.basename(absolute)]
        for candidate in candidates:
            candidate = candidate.replace(os.sep, "/")
            if candidate in (".", ""):
                continue
            if self.spec.match_file(candidate + ("/" if is_dir else "")):
                return True
        return False


def _inside(path: str, base: str) -> bool:
    try:
        return os.path.commonpath([path, base]) == base
    except ValueError:
        return False
