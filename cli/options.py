"""Command-line options made from the settings' fields: `--profile`, `--settings`, `--set`, and named flags whose
type, default and help come from the field they set."""

from __future__ import annotations

import functools
import logging
import os
import typing
import warnings
from collections.abc import Callable

import click

from mura.config import PROFILES
from mura.settings import SettingsError, format_value, load_settings, setting_fields

FIELDS = {f.key: f for f in setting_fields()}
_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _dest(key: str) -> str:
    return "setting__" + key.replace(".", "__")


def _flag(key: str, name: str) -> Callable:
    """One named flag for one setting (`--auc-floor` for `gate.auc_floor`)."""
    field = FIELDS[key]
    default = "from the profile" if field.section == "train" else format_value(field.default) or '""'
    help_text = f"{field.help[0].upper()}{field.help[1:]}. [{key}; default: {default}]"
    if field.type is bool:
        return click.option(f"{name}/--no-{name[2:]}", _dest(key), default=None, help=help_text)
    if typing.get_origin(field.type) is tuple:
        return click.option(name, _dest(key), multiple=True, help=f"{help_text} Repeatable.")
    kind = typing.get_args(field.type)[0] if field.type not in _CLICK_TYPES else field.type
    return click.option(name, _dest(key), type=_CLICK_TYPES[kind], default=None, help=help_text)


def parse_assignments(assignments: tuple[str, ...], param_hint: str) -> dict[str, str]:
    """`SECTION.FIELD=VALUE` texts as {key: text}; their values are parsed by the settings, by each field's type."""
    parsed = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator:
            raise click.BadParameter(f"expected SECTION.FIELD=VALUE, got {assignment!r}", param_hint=param_hint)
        parsed[key.strip()] = value
    return parsed


def with_settings(*flags: tuple[str, str], profile: bool = True) -> Callable:
    """Adds `--settings`, `--set` (and `--profile`) and a flag per (setting, flag name) pair; the command gets the
    resolved `settings`. Flags win over `--set`, which wins over `MURA_*` variables, then settings files."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(**kwargs: object) -> object:
            overrides: dict[str, object] = dict(parse_assignments(kwargs.pop("assignments"), "--set"))
            for key, _ in flags:
                value = kwargs.pop(_dest(key))
                if value is not None and value != ():
                    overrides[key] = value
            try:
                settings = load_settings(
                    kwargs.pop("profile", None), kwargs.pop("settings_files"), os.environ, overrides
                )
            except SettingsError as error:
                raise click.UsageError(str(error)) from None
            return command(settings=settings, **kwargs)

        for key, name in reversed(flags):
            wrapper = _flag(key, name)(wrapper)
        wrapper = click.option(
            "--set",
            "assignments",
            multiple=True,
            metavar="SECTION.FIELD=VALUE",
            help="Any setting (`mura settings` lists them), repeatable: --set train.finetune_epochs=2.",
        )(wrapper)
        wrapper = click.option(
            "--settings",
            "settings_files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False),
            help="A TOML or YAML file of settings ([train] then finetune_epochs = 2), repeatable; also MURA_SETTINGS.",
        )(wrapper)
        if profile:
            wrapper = click.option(
                "--profile",
                type=click.Choice(sorted(PROFILES)),
                default=None,
                help="Training defaults: smoke (minutes, learns nothing), demo (2 CPU cores), full (MURA on GPUs). "
                "[default: MURA_PROFILE, else demo]",
            )(wrapper)
        return wrapper

    return decorate


def quiet_tensorflow(verbose: bool) -> None:
    """TFX, Beam and TensorFlow log at INFO by default, which drowns the command's own report."""
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="tensorflow_model_analysis")  # 0/0 slices
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger().setLevel(logging.CRITICAL)  # failures reach the user as the command's error
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.FATAL)
