"""Settings from every source, derived from the fields of `mura.config` so that no source lists them by hand.

Later sources win: the dataclasses' defaults, then the profile (the train section's defaults), then settings files
(TOML or YAML, `[section]` tables of `field = value`), then `MURA_<SECTION>_<FIELD>` environment variables, then
`section.field=value` overrides (the CLI's `--set` and its named flags).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import shlex
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mura.config import PROFILES, Settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ENV_PREFIX = "MURA_"
SETTINGS_FILE_VARIABLE = "MURA_SETTINGS"  # a settings file (or several, separated by os.pathsep)
PROFILE_VARIABLE = "MURA_PROFILE"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting that does not exist or a value its field cannot take; the message names the field."""


@dataclass(frozen=True)
class SettingField:
    section: str
    name: str
    type: Any
    default: Any
    help: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def variable(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.name}".upper()

    def kind(self) -> str:
        """What the field takes, in words, for help texts and errors."""
        return _kind(self.type)


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "profile"}


def setting_fields(values: Settings | None = None) -> list[SettingField]:
    """Every setting, in the order the dataclasses declare them; `default` is its value in `values`, or as declared."""
    found = []
    for section, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = getattr(getattr(values, section), f.name) if values else f.default
            found.append(SettingField(section, f.name, hints[f.name], value, f.metadata["help"]))
    return found


def format_value(value: Any) -> str:
    """A setting's value as a user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return shlex.join(value) if all(isinstance(v, str) for v in value) else json.dumps(value)
    return str(value)


def _kind(annotation: Any) -> str:
    if _optional(annotation):
        return f"{_kind(_optional(annotation))} or none"
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "a JSON list of lists" if typing.get_origin(item) is tuple else "a list (shell-quoted words)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}[annotation]


def _optional(annotation: Any) -> Any:
    """X for `X | None`, else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(annotation) if a is not type(None)]
        return others[0] if len(others) == 1 else None
    return None


def parse_text(text: str, annotation: Any) -> Any:
    """A value from text (environment variables, `--set`), by the field's type."""
    inner = _optional(annotation)
    if inner is not None:
        return None if text.strip().lower() in ("", "none", "null") else parse_text(text, inner)
    if annotation is bool:
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(f"expected true or false, got {text!r}")
        return word in _TRUE
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return coerce(json.loads(text) if typing.get_origin(item) is tuple else shlex.split(text), annotation)
    return annotation(text.strip()) if annotation in (int, float) else text


def coerce(value: Any, annotation: Any) -> Any:
    """A value from a settings file (already typed by TOML or YAML), checked against the field's type."""
    inner = _optional(annotation)
    if inner is not None:
        return None if value is None else coerce(value, inner)
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        items = typing.get_args(annotation)
        if items[-1] is Ellipsis:  # tuple[X, ...]
            return tuple(coerce(v, items[0]) for v in value)
        if len(value) != len(items):
            raise ValueError(f"expected {len(items)} items, got {value!r}")
        return tuple(coerce(v, item) for v, item in zip(value, items, strict=True))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ValueError(f"expected {_kind(annotation)}, got {value!r}")
    return value


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`{"section.field": value}` (and `"profile"`) from a TOML or YAML file of `[section]` tables."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        content = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read settings file {path}: {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise SettingsError(f"{path}: expected tables of settings ([section] then field = value)")
    flat: dict[str, Any] = {}
    for section, values in content.items():
        if section == "profile":
            flat["profile"] = values
        elif isinstance(values, dict):
            flat.update({f"{section}.{name}": value for name, value in values.items()})
        else:
            raise SettingsError(f"{path}: '{section}' must be a table of fields ([{section}] then field = value)")
    return flat


def _unknown(key: str, known: Iterable[str], what: str = "setting") -> SettingsError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else "; `mura settings` lists them all"
    return SettingsError(f"unknown {what} {key!r}{hint}")


def _from_environment(environ: Mapping[str, str], fields: dict[str, SettingField]) -> dict[str, str]:
    by_variable = {f.variable: key for key, f in fields.items()}
    values = {}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in (SETTINGS_FILE_VARIABLE, PROFILE_VARIABLE):
            continue
        if variable not in by_variable:
            raise _unknown(variable, [*by_variable, SETTINGS_FILE_VARIABLE, PROFILE_VARIABLE], "environment variable")
        values[by_variable[variable]] = text
    return values


def load_settings(
    profile: str | None = None,
    files: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] = {},
) -> Settings:
    """The settings every command and runner uses; text values are parsed by their field's type.

    The profile (from `overrides`, `profile`, `MURA_PROFILE` or a file, highest first) gives the train section's
    defaults; every field can still be overridden.
    """
    fields = {f.key: f for f in setting_fields()}
    values: dict[str, Any] = {}
    for path in [*filter(None, environ.get(SETTINGS_FILE_VARIABLE, "").split(os.pathsep)), *files]:
        values.update(read_settings_file(path))
    from_file = values.pop("profile", None)
    values.update(_from_environment(environ, fields))
    values.update(overrides)
    chosen = values.pop("profile", None) or profile or environ.get(PROFILE_VARIABLE) or from_file or "demo"
    if chosen not in PROFILES:
        raise SettingsError(f"unknown profile {chosen!r}: one of {', '.join(sorted(PROFILES))}")
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(key, fields)
        field = fields[key]
        try:
            parsed = parse_text(value, field.type) if isinstance(value, str) else coerce(value, field.type)
        except ValueError as error:
            raise SettingsError(f"{key} takes {field.kind()}: {error}") from None
        sections.setdefault(field.section, {})[field.name] = parsed
    base = dataclasses.replace(Settings(), profile=chosen, train=PROFILES[chosen])
    built = {}
    for section, changes in sections.items():
        try:
            built[section] = dataclasses.replace(getattr(base, section), **changes)
        except ValueError as error:
            raise SettingsError(f"{section}: {error}") from None
    return dataclasses.replace(base, **built)
