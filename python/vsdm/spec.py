"""Job specs on the client: a dict, a YAML file or YAML text to a JobSpec message, overrides
applied like `vsdmctl --set`, and sweep grids expanded like `vsdmctl --sweep`.

The dict is converted by walking the JobSpec descriptor, so a key the proto does not have is
refused here, naming its dotted path, before anything is sent. Scalars are coerced to the
field's type because PyYAML (YAML 1.1) reads `1e-3` as a string and `2020-01-01` as a date,
while the server's YAML reader (and the spec docs) mean a number and a string. The ranges are
left to the server, whose INVALID_ARGUMENT names the field the same way.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import itertools
import math
import os
import pathlib
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from vsdm.errors import SpecError
from vsdm.v1 import job_pb2

SpecLike = Union[Mapping[str, Any], str, os.PathLike, "job_pb2.JobSpec"]
Overrides = Union[Mapping[str, Any], Sequence[str], None]
Grid = Union[Mapping[str, Sequence[Any]], Sequence[str]]

# What SubmitSweep takes at most (the server's default limit, and vsdmctl's).
MAX_SWEEP_MEMBERS = 256

_FLOAT_TYPES = (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT)
_INT_TYPES = (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT32,
              FieldDescriptor.CPPTYPE_UINT64)
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def load_spec_dict(spec: SpecLike) -> Dict[str, Any]:
    """The spec as a fresh nested dict.

    `spec` is a mapping (deep-copied), a JobSpec message, a path (str or PathLike) to a YAML file,
    or YAML text: a str that contains a newline or is not an existing file is YAML text.
    Raises SpecError naming the file (or "spec") when it cannot be read or is not a mapping.
    """
    if isinstance(spec, Message):
        return json_format.MessageToDict(spec, preserving_proto_field_name=True)
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec and os.path.isfile(spec)):
        path = os.fspath(spec)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise SpecError(path, f"cannot read it: {e.strerror or e}") from e
        return _parse_yaml(text, path)
    if isinstance(spec, str):
        return _parse_yaml(spec, "spec", maybe_path=spec)
    raise SpecError("spec", f"want a dict, a YAML file path or YAML text, got {type(spec).__name__}")


def _parse_yaml(text: str, where: str, maybe_path: Optional[str] = None) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(where, f"not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        hint = ""
        if maybe_path is not None and "\n" not in maybe_path:
            hint = f" (and there is no file {maybe_path!r})"
        raise SpecError(where, f"want a mapping of spec fields, got {type(data).__name__} {_short(data)}{hint}")
    return data


def parse_overrides(overrides: Overrides) -> List[Tuple[str, Any]]:
    """(dotted key, value) pairs of `overrides`, in order.

    A mapping gives its items as they are; a list of "key=value" strings (what `--set` takes) has
    each value parsed as YAML, like vsdmctl does. Raises SpecError("overrides", ...) on a
    malformed one (no '=', an empty key or key segment).
    """
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    elif isinstance(overrides, str):
        raise SpecError("overrides", f"want a dict or a list of key=value strings, got the str {overrides!r}")
    else:
        pairs = [_split_override(o) for o in overrides]
    for key, _ in pairs:
        _check_key(key, "overrides")
    return pairs


def _split_override(text: Any) -> Tuple[str, Any]:
    if not isinstance(text, str) or "=" not in text or text.startswith("="):
        raise SpecError("overrides", f"want key=value, got {text!r}")
    key, _, value = text.partition("=")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise SpecError(key, f"not a valid YAML value in override {text!r}: {e}") from e


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise SpecError(where, f"want a dotted field name like train.lr, got {key!r}")


def apply_overrides(spec: Dict[str, Any], overrides: Overrides) -> Dict[str, Any]:
    """Sets each override into `spec` (modified in place and returned), a later one winning.

    The mappings on the way are created; a value on the way that is not a mapping is replaced by
    one, as `--set` does. A value of None removes the key (the field takes its default). What
    the result means is left to `to_job_spec`, so an unknown key is refused with its path.
    """
    for key, value in parse_overrides(overrides):
        parts = key.split(".")
        cur = spec
        for p in parts[:-1]:
            if not isinstance(cur.get(p), dict):
                cur[p] = {}
            cur = cur[p]
        if value is None:
            cur.pop(parts[-1], None)
        else:
            cur[parts[-1]] = copy.deepcopy(value)
    return spec


def dict_to_message(data: Mapping[str, Any], message: Message, path: str = "") -> Message:
    """Fills `message` from `data` by its descriptor and returns it.

    Raises SpecError naming the dotted path of an unknown key ("train.lrr: no such field (fields of
    train: ...)") or of a value that is not of, or coercible to, the field's type.
    """
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str) or key not in fields:
            raise SpecError(where, _no_such_field(key, message, path))
        if value is None:
            continue  # `key:` with nothing after it: unset, the default applies
        fd = fields[key]
        if fd.label == FieldDescriptor.LABEL_REPEATED:
            items = value if isinstance(value, (list, tuple)) else [value]
            target = getattr(message, key)
            for i, item in enumerate(items):
                if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                    dict_to_message(_mapping(item, f"{where}[{i}]"), target.add(), f"{where}[{i}]")
                else:
                    coerced = coerce_scalar(fd, item, f"{where}[{i}]")
                    try:
                        target.append(coerced)
                    except ValueError as e:
                        raise SpecError(f"{where}[{i}]", str(e)) from e
        elif fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            sub = getattr(message, key)
            sub.SetInParent()  # `train: {}` is still a train section
            dict_to_message(_mapping(value, where), sub, where)
        else:
            coerced = coerce_scalar(fd, value, where)
            try:
                setattr(message, key, coerced)
            except ValueError as e:  # e.g. an int64 out of range
                raise SpecError(where, str(e)) from e
    return message


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(where, f"want a mapping of fields, got {type(value).__name__} {_short(value)}")
    return value


def _no_such_field(key: Any, message: Message, path: str) -> str:
    names = [f.name for f in message.DESCRIPTOR.fields]
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"no such field ({hint}fields of {path or 'the spec'}: {', '.join(names)})"


def coerce_scalar(fd: FieldDescriptor, value: Any, where: str) -> Any:
    """`value` as the Python type of scalar field `fd`; SpecError naming `where` if it cannot be."""
    if isinstance(value, (dict, list, tuple)):
        raise SpecError(where, f"want a single {_type_word(fd)}, got {type(value).__name__} {_short(value)}")
    if fd.cpp_type in _FLOAT_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise SpecError(where, f"want a number, got {_short(value)}")
    if fd.cpp_type in _INT_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = value
        if isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                try:
                    number = float(value.strip())  # "1e3"
                except ValueError:
                    pass
        if isinstance(number, float) and not isinstance(number, bool) and math.isfinite(number) and number.is_integer():
            return int(number)
        raise SpecError(where, f"want an integer, got {_short(value)}")
    if fd.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise SpecError(where, f"want true or false, got {_short(value)}")
    if fd.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return _as_yaml_text(value, where)
    raise SpecError(where, f"fields of this type ({fd.type}) are not supported")


def _as_yaml_text(value: Any, where: str) -> str:
    # What the server's YAML reader would hold for the scalar as written: PyYAML has already
    # turned `true`, `1` and `2020-01-01` into bool, int and date.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_value(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise SpecError(where, f"want a string, got {type(value).__name__} {_short(value)}")


def _type_word(fd: FieldDescriptor) -> str:
    if fd.cpp_type in _FLOAT_TYPES:
        return "number"
    if fd.cpp_type in _INT_TYPES:
        return "integer"
    if fd.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return "true/false"
    return "string"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_job_spec(spec: SpecLike, overrides: Overrides = None) -> "job_pb2.JobSpec":
    """The JobSpec of `spec` (see load_spec_dict) with `overrides` applied; SpecError if it has none."""
    data = apply_overrides(load_spec_dict(spec), overrides)
    return dict_to_message(data, job_pb2.JobSpec())


def format_value(value: Any) -> str:
    """The short text of an override value that reads back as the same value.

    Ints as ints, floats by repr (the shortest text that round-trips: 0.001, 0.0003, 1e-05),
    booleans as true/false, lists in YAML flow form ("[1.0, 8.0]"), strings as they are.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def expand_grid(grid: Grid) -> List[List[Tuple[str, Any, str]]]:
    """The members of a sweep grid: the cartesian product in the order given, first key slowest.

    `grid` is {"train.lr": [1e-3, 3e-4], ...} (a scalar is one value) or a list of
    "key=v1,v2" strings like `vsdmctl --sweep` (each value parsed as YAML). Each member is a list
    of (key, value, "key=text") in key order. Raises SpecError("grid", ...) for an empty or
    malformed axis, or more than MAX_SWEEP_MEMBERS members.
    """
    axes = _grid_axes(grid)
    if not axes:
        raise SpecError("grid", "want at least one field to sweep")
    size = 1
    for key, values in axes:
        size *= len(values)
        if size > MAX_SWEEP_MEMBERS:
            raise SpecError("grid", f"more than {MAX_SWEEP_MEMBERS} members")
    return [list(combo) for combo in itertools.product(*[values for _, values in axes])]


def _grid_axes(grid: Grid) -> List[Tuple[str, List[Tuple[str, Any, str]]]]:
    axes: List[Tuple[str, List[Tuple[str, Any, str]]]] = []
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            _check_key(key, "grid")
            vals = list(values) if isinstance(values, (list, tuple)) else [values]
            if not vals:
                raise SpecError("grid", f"{key}: no values")
            axes.append((key, [(key, v, f"{key}={format_value(v)}") for v in vals]))
        return axes
    if isinstance(grid, str):
        raise SpecError("grid", f"want a dict or a list of key=v1,v2 strings, got the str {grid!r}")
    for axis in grid:
        if not isinstance(axis, str) or "=" not in axis or axis.startswith("=") or axis.endswith("="):
            raise SpecError("grid", f"want field=value1,value2,..., got {axis!r}")
        key, _, rest = axis.partition("=")
        _check_key(key, "grid")
        texts = rest.split(",")
        if any(not t for t in texts):
            raise SpecError("grid", f"{axis}: an empty value")
        axes.append((key, [(key, _split_override(f"{key}={t}")[1], f"{key}={t}") for t in texts]))
    return axes


def sweep_members(spec: SpecLike, grid: Grid, overrides: Overrides = None) -> List[Tuple["job_pb2.JobSpec", List[str]]]:
    """(JobSpec, override strings) of each member: the base spec, `overrides`, then the member's values.

    A member that cannot be converted raises SpecError with the path "members[i].<field>", the
    way the server names a refused member.
    """
    base = apply_overrides(load_spec_dict(spec), overrides)
    out = []
    for i, member in enumerate(expand_grid(grid)):
        data = apply_overrides(copy.deepcopy(base), {key: value for key, value, _ in member})
        try:
            message = dict_to_message(data, job_pb2.JobSpec())
        except SpecError as e:
            where = " ".join(t for _, _, t in member)
            raise SpecError(f"members[{i}].{e.field}", f"{e.reason} (member {where})") from e
        out.append((message, [text for _, _, text in member]))
    return out


def iter_field_paths(descriptor: Any = None, prefix: str = "") -> Iterable[str]:
    """Every scalar field path of JobSpec ("problem.dataset", ..., "train.lr"), in descriptor order."""
    descriptor = descriptor or job_pb2.JobSpec.DESCRIPTOR
    for fd in descriptor.fields:
        path = f"{prefix}{fd.name}"
        if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            yield from iter_field_paths(fd.message_type, path + ".")
        else:
            yield path
