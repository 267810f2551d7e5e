"""YAML -> validated config objects. Wrong keys, types and values stop the run before any work.

A config file may ``include`` other files (paths relative to it); included values come first
and the including file overrides them key by key. ``--set a.b=value`` overrides one key after
that (the value is parsed as YAML). Every error names the file and the dotted key.
"""

import copy
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from experiments.core.records import load_yaml


class ConfigError(Exception):
    """A user error in a config file or override: reported in one line, exit code 2."""


def read_yaml(path):
    """The mapping in ``path`` with its ``include`` files merged beneath it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}: "
                          f"{str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    includes = data.pop("include", [])
    merged = {}
    for name in [includes] if isinstance(includes, str) else includes:
        merged = deep_merge(merged, read_yaml(path.parent / name))
    return deep_merge(merged, data)


def deep_merge(base, override):
    """A new dict: ``override`` on top of ``base``, merging nested mappings key by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text):
    """'train.epochs=3' -> (['train', 'epochs'], 3)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=1")
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: value is not valid YAML") from None
    return key.strip().split("."), parsed


def set_key(data, keys, value):
    """Set data[k1][k2]... = value in place, creating mappings on the way."""
    for k in keys[:-1]:
        data = data.setdefault(k, {})
        if not isinstance(data, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {k!r} is not a mapping")
    data[keys[-1]] = value


def from_dict(cls, data, where, partial=False):
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively.

    ``where`` prefixes error messages ('configs/x.yaml: train'). With ``partial`` missing
    required fields are allowed (used to check shared defaults on their own). The dataclass
    may define ``check()``, raising ValueError('key: what is wrong'), for impossible values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key (valid keys: "
                          f"{', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], _join(where, name), partial)
        elif _required(f) and not partial:
            raise ConfigError(f"{_join(where, name)}: missing required key")
    if partial:
        return values
    obj = cls(**values)
    try:
        if hasattr(obj, "check"):
            obj.check()
    except ValueError as e:
        raise ConfigError(f"{_join(where, str(e))}") from None
    return obj


def _required(f):
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(tp, value, where, partial):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where, partial)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, partial)
    if origin is list:
        _expect(isinstance(value, list), "a list", value, where)
        return [_convert(args[0], v, f"{where}[{i}]", partial) for i, v in enumerate(value)]
    if origin is tuple:
        _expect(isinstance(value, (list, tuple)) and len(value) == len(args),
                f"a list of {len(args)} values", value, where)
        return tuple(_convert(a, v, f"{where}[{i}]", partial)
                     for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        _expect(isinstance(value, dict), "a mapping", value, where)
        return {str(k): _convert(args[1], v, _join(where, k), partial) for k, v in value.items()}
    return _convert_scalar(tp, value, where)


def _convert_scalar(tp, value, where):
    if tp is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool),
                "a number", value, where)
        return float(value)
    if tp is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), "an integer", value, where)
    elif tp is bool:
        _expect(isinstance(value, bool), "true or false", value, where)
    elif tp is str:
        _expect(isinstance(value, str), "a string", value, where)
    elif tp is typing.Any:
        pass
    else:
        raise TypeError(f"{where}: unsupported config type {tp}")
    return value


def _expect(ok, what, value, where):
    if not ok:
        raise ConfigError(f"{where}: expected {what}, got {_show(value)}")


def _show(value):
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing (null)"


def _join(where, key):
    return f"{where}.{key}" if where and not where.endswith(": ") else f"{where}{key}"


def to_dict(obj):
    """Plain, YAML-safe dict of a (nested) dataclass: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
