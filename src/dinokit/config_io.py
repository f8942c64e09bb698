"""Config dataclasses from defaults, a YAML file and flags; unknown keys are errors."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ._files import atomic_path

C = TypeVar("C")


def check_keys(cls: type, data: dict[str, Any], *, source: str) -> None:
    """Raise ``ValueError`` naming unknown keys and the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; valid keys: {sorted(known)}")


def _coerce(value: Any, annotation: Any) -> Any:
    """Turn YAML lists into tuples where the field is a tuple."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
    """Build a config dataclass from a dict, checking keys."""
    check_keys(cls, data, source=source)
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key]) for key, value in data.items()}
    return cls(**values)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file (empty file -> empty dict)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    return data


def to_yaml_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (tuples as lists) for YAML."""
    data: dict[str, Any] = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def write_yaml(
    path: str | Path, data: dict[str, Any], *, comments: dict[str, str] | None = None
) -> None:
    """Write a mapping as YAML atomically.

    Args:
        path: Destination file.
        data: The mapping (plain values).
        comments: Top-level key -> a note written as a YAML comment at the end of its line
            (e.g. where a resolved value came from); reading the file back ignores them.
    """
    text = yaml.safe_dump(data, sort_keys=False)
    if comments:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            key = line.split(":", 1)[0]
            if not line.startswith((" ", "-")) and key in comments:
                note = " ".join(comments[key].split())
                lines[i] = f"{line}  # {note}"
        text = "\n".join(lines) + "\n"
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        handle.write(text)


def flag(
    help: str,
    *,
    name: str | None = None,
    choices: Sequence[str] | None = None,
    required: bool = False,
    nargs: str | None = None,
) -> dict[str, Any]:
    """The ``metadata`` of a config dataclass field that is a command-line argument.

    Args:
        help: What the option does, as the command line shows it.
        name: The flag (default ``--field-name``, and ``--no-field-name`` for a boolean that
            is on by default); a name without dashes makes a positional argument.
        choices: The values allowed (checked by :func:`check_choices` and by the parser).
        required: The flag is required on the command line though Python has a default.
        nargs: argparse's ``nargs`` (positional lists: ``"+"``).
    """
    choice_list = None if choices is None else tuple(choices)
    return {
        "help": help,
        "flag": name,
        "choices": choice_list,
        "required": required,
        "nargs": nargs,
    }


def check_choices(config: Any) -> None:
    """Raise ``ValueError`` for a field whose value is not one of its :func:`flag` choices."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(
                f"unknown {f.name} {value!r}; choose one of {', '.join(map(str, choices))}"
            )


def _flag_type(annotation: Any) -> type:
    kinds = typing.get_args(annotation) or (annotation,)
    return next((kind for kind in (int, float) if kind in kinds), str)


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One command-line argument per :func:`flag` field of a config dataclass.

    Values default to the field defaults, so :func:`flag_values` gives every field.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        given = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = None if f.default is dataclasses.MISSING else f.default
        name = meta["flag"] or f"--{'no-' if default is True else ''}{f.name.replace('_', '-')}"
        if not name.startswith("-"):
            parser.add_argument(f.name, metavar=name, nargs=meta["nargs"], help=meta["help"])
        elif hints[f.name] is bool:
            action = "store_false" if default else "store_true"
            parser.add_argument(name, dest=f.name, action=action, help=meta["help"])
        else:
            parser.add_argument(
                name,
                dest=f.name,
                type=_flag_type(hints[f.name]),
                choices=meta["choices"],
                default=default,
                required=meta["required"] or not given,
                help=meta["help"],
            )


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The parsed values of the fields :func:`add_flags` made arguments for."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if "help" in f.metadata}
