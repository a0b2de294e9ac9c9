"""The configs' options: one flag per field of `VAEConfig` and `TrainConfig`, and back.

Each flag's name, choices, help text, default (the preset's) and check are its field's
(`tfvae.config`), so the command line cannot drift from the library; `config_values` turns
the parsed flags into config fields again. No TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Tuple

from tfvae.config import (
    DEFAULT_PRESET,
    PRESETS,
    TrainConfig,
    VAEConfig,
    check_field,
    cli_fields,
    preset,
    preset_for,
)
from tfvae.data.choice import dataset_kind

__all__ = ["add_config_options", "config_values", "config_field_flag", "flag"]

_CONFIGS = (VAEConfig, TrainConfig)
# The decoder's default depends on the data; the other fields the data sets have no flag.
_DATA_DEFAULTS = {"decoder": "bernoulli if the data is binary, else gaussian"}


def flag(field: str) -> str:
    """The option of config field `field`: `--hidden-units` for `hidden_units`."""
    return "--" + field.replace("_", "-")


def _config_flags() -> dict:
    """{field name: [(config class, field), ...]}: one flag per name (`seed` sets both)."""
    flags = {}
    for cls in _CONFIGS:
        for field in cli_fields(cls):
            flags.setdefault(field.name, []).append((cls, field))
    return flags


def _value_parser(owners: list, element: bool = False):
    """argparse `type` for one config flag: converts the text, then runs the field's check."""
    field = owners[0][1]
    convert = int if "int" in field.type else float if "float" in field.type else str

    def parse(text: str):
        if text.lower() == "none" and field.type.startswith("Optional"):
            return None
        try:
            value = convert(text)
        except ValueError:
            value = text  # the check says what was expected
        for cls, _ in owners:
            problem = check_field(cls, field.name, (value,) if element else value)
            if problem:
                raise argparse.ArgumentTypeError(f"{problem} ({cls.__name__}.{field.name})")
        return value

    parse.__name__ = field.name
    return parse


def _whole_tuple_check(owners: list):
    """argparse action for a tuple flag: after each element's own check, the whole tuple's
    (how many sizes, e.g. at most `MAX_LAYERS` hidden layers)."""

    class CheckedTuple(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            for cls, field in owners:
                problem = check_field(cls, field.name, tuple(values))
                if problem:
                    raise argparse.ArgumentError(self, f"{problem} ({cls.__name__}.{field.name})")
            setattr(namespace, self.dest, values)

    return CheckedTuple


def add_config_options(p: argparse.ArgumentParser) -> None:
    """`--preset` and one flag per user-set field of the configs."""
    g = p.add_argument_group("configuration")
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="named defaults for the options below ("
        + "; ".join(f"{name}: {each.description}" for name, each in PRESETS.items())
        + f") (default: the dataset's: mnist for MNIST, else {DEFAULT_PRESET})",
    )
    groups = {cls: p.add_argument_group(f"{cls.__name__} (tfvae.config)") for cls in _CONFIGS}
    for name, owners in _config_flags().items():
        cls, field = owners[0]
        if len(owners) == 1:
            help = field.metadata["help"]
        else:
            help = "; ".join(f"{c.__name__}.{name}: {f.metadata['help']}" for c, f in owners)
        help = help.replace("%", "%%") + _default_text(cls, field)
        kwargs = {"default": argparse.SUPPRESS, "help": help}
        if field.type in ("bool", "Optional[bool]"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.metadata["choices"]:
            kwargs["choices"] = field.metadata["choices"]
        elif field.type.startswith("Tuple"):
            kwargs.update(
                nargs="+",
                metavar="N",
                type=_value_parser(owners, element=True),
                action=_whole_tuple_check(owners),
            )
        else:
            metavar = "N" if field.type in ("int", "Optional[int]") else "X"
            kwargs.update(type=_value_parser(owners), metavar=metavar)
        groups[cls].add_argument(flag(name), **kwargs)


def _default_text(cls, field: dataclasses.Field) -> str:
    """The help's "(default: ...)": the presets' values where they set one, else the dataclass's."""

    def show(value):
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    if field.name in _DATA_DEFAULTS:
        return f" (default: {_DATA_DEFAULTS[field.name]})"
    by_preset = [
        f"{name} {show(values[field.name])}"
        for name, each in PRESETS.items()
        for values in [each.model if cls is VAEConfig else each.train]
        if field.name in values
    ]
    if by_preset:
        return (
            f" (default: the preset's: {', '.join(by_preset)}; "
            f"the library's: {show(field.default)})"
        )
    return f" (default: {show(field.default)})"


def config_values(
    args, recorded: Optional[dict] = None, dataset: Optional[str] = None
) -> Tuple[dict, dict]:
    """The VAEConfig and TrainConfig fields `args` sets: its preset's (or, for --resume,
    those the run `recorded` in its run.json), then the flags given.

    The preset follows `dataset` (default: `args.dataset`). Fields left out take the
    dataclass defaults; `decoder` (unless given) and the fields the data determines are the
    caller's to add.
    """
    if recorded is None:
        chosen = preset(args.preset or preset_for(dataset_kind(dataset or args.dataset)))
        model, train = dict(chosen.model), dict(chosen.train)
    else:
        fields = [{f.name for f in cli_fields(cls)} for cls in (VAEConfig, TrainConfig)]
        model, train = (
            {k: v for k, v in recorded[section].items() if k in names}
            for section, names in zip(("model_config", "train_config"), fields)
        )
    options = vars(args)
    model.update({f.name: options[f.name] for f in cli_fields(VAEConfig) if f.name in options})
    train.update({f.name: options[f.name] for f in cli_fields(TrainConfig) if f.name in options})
    return model, train


def config_field_flag(message: str) -> Optional[str]:
    """The flag of the config field a "VAEConfig.x: ..." error names, if it has one."""
    for cls in _CONFIGS:
        prefix = f"{cls.__name__}."
        name = message[len(prefix) :].partition(":")[0] if message.startswith(prefix) else ""
        if name in {f.name for f in cli_fields(cls)}:
            return flag(name)
    return None
