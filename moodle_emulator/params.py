"""Request parameter parsing (PHP bracket arrays) and Moodle's parameter validation.

* ``parse_php_query`` reproduces how PHP fills ``$_GET``/``$_POST`` from a form-encoded
  string: ``a[b][0]=x`` nests, ``a[]=x`` appends, later duplicates win. PHP arrays are
  ordered maps, modelled as ``dict`` (insertion order kept, keys are strings).
* ``merge_get_post`` is ``array_merge($_GET, $_POST)``: POST wins per *top-level* key.
* ``validate`` is ``external_api::validate_parameters``: description keys in order,
  missing required keys, defaults, unexpected keys, scalar cleaning (``PARAM_INT`` must be
  canonical, ``PARAM_BOOL`` only ``0``/``1``). Errors carry the same debuginfo texts as
  Moodle (visible in debug mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from .errors import INVALID_PARAMETER_MESSAGE, invalid_parameter

REQUIRED, DEFAULT, OPTIONAL = "required", "default", "optional"


# ------------------------------------------------------------------ parsing

def _split_name(name: str) -> tuple[str, list[str]] | None:
    """``a[b][]`` -> ("a", ["b", ""]); None when the name has no bracket part."""
    i = name.find("[")
    if i <= 0:
        return None
    base, rest = name[:i], name[i:]
    parts: list[str] = []
    while rest.startswith("["):
        j = rest.find("]")
        if j < 0:
            break
        parts.append(rest[1:j])
        rest = rest[j + 1:]
    if not parts:
        return None
    return base, parts


def _next_index(d: dict) -> str:
    ints = [int(k) for k in d if isinstance(k, str) and re.fullmatch(r"-?\d+", k)]
    return str(max(ints) + 1 if ints else 0)


def _php_top_name(name: str) -> str:
    # PHP strips leading spaces and turns ' ' and '.' in the top-level name into '_'.
    name = name.lstrip(" ")
    return name.replace(" ", "_").replace(".", "_")


def add_php_param(target: dict, name: str, value: str) -> None:
    split = _split_name(name)
    if split is None:
        target[_php_top_name(name)] = value
        return
    base, parts = split
    base = _php_top_name(base)
    cur = target
    key = base
    for part in parts:
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[key] = nxt
        cur = nxt
        key = part if part != "" else _next_index(cur)
    cur[key] = value


def parse_php_query(qs: str | bytes) -> dict:
    if isinstance(qs, bytes):
        qs = qs.decode("utf-8", errors="replace")
    out: dict = {}
    if not qs:
        return out
    for pair in qs.split("&"):
        if not pair:
            continue
        if "=" in pair:
            k, v = pair.split("=", 1)
        else:
            k, v = pair, ""
        k = unquote_plus(k)
        if not k:
            continue
        add_php_param(out, k, unquote_plus(v))
    return out


def merge_get_post(get: dict, post: dict) -> dict:
    merged = dict(get)
    merged.update(post)
    return merged


# ------------------------------------------------------------------ descriptions

@dataclass
class Value:
    type: str  # int, bool, raw, text, alpha, alphanumext, plugin, sequence
    required: str = REQUIRED
    default: object = None


@dataclass
class Single:
    keys: dict
    required: str = REQUIRED
    default: object = None


@dataclass
class Multiple:
    content: object
    required: str = REQUIRED
    default: object = field(default_factory=list)


_TAG = re.compile(r"<[^<>]*>")


def clean_param(value: str, ptype: str):
    """Moodle's clean_param for the types the emulated functions use."""
    if ptype == "int":
        m = re.match(r"\s*([+-]?\d+)", value)
        return int(m.group(1)) if m else 0
    if ptype == "bool":
        v = value.strip().lower()
        if v in ("on", "yes", "true"):
            return 1
        if v in ("off", "no", "false", ""):
            return 0
        return 1 if php_intval(value) else 0
    if ptype == "alpha":
        return re.sub(r"[^a-zA-Z]", "", value)
    if ptype == "alphanumext":
        return re.sub(r"[^a-zA-Z0-9_-]", "", value)
    if ptype == "plugin":
        return value if re.fullmatch(r"[a-z][a-z0-9_]*", value) and "__" not in value else ""
    if ptype == "sequence":
        return value if re.fullmatch(r"[0-9,]*", value) else ""
    if ptype in ("text", "notags"):
        return _TAG.sub("", value)
    return value  # raw


def php_intval(value) -> int:
    """PHP ``(int)`` cast of a string: leading integer part, 0 when none."""
    if isinstance(value, int):
        return value
    m = re.match(r"\s*([+-]?\d+)", str(value))
    return int(m.group(1)) if m else 0


def _php_print_r(value) -> str:
    if isinstance(value, dict):
        inner = "".join(f"    [{k}] => {_php_print_r(v)}\n" for k, v in value.items())
        return f"Array\n(\n{inner})\n"
    return str(value)


def _wrap(key: str, inner: str) -> str:
    # external_api: throw new invalid_parameter_exception($key." => ".$e->getMessage().': '.$e->debuginfo)
    return f"{key} => {INVALID_PARAMETER_MESSAGE} ({inner}): {inner}"


class _ParamError(Exception):
    def __init__(self, debuginfo: str):
        super().__init__(debuginfo)
        self.debuginfo = debuginfo


def _validate(desc, value):
    if isinstance(desc, Value):
        if isinstance(value, dict):
            raise _ParamError("Scalar type expected, array or object received.")
        if desc.type == "bool":
            if value in ("0", "1"):
                return value == "1"
        elif desc.type == "int":
            if str(clean_param(value, "int")) == value:
                return int(value)
        elif str(clean_param(value, desc.type)) == value:
            return value
        raise _ParamError(
            f'Invalid external api parameter: the value is "{value}", the server was expecting "{desc.type}" type'
        )
    if isinstance(desc, Single):
        if not isinstance(value, dict):
            raise _ParamError(f"Only arrays accepted. The bad value is: '{_php_print_r(value)}'")
        rest = dict(value)
        result = {}
        for key, sub in desc.keys.items():
            if key not in rest:
                if sub.required == REQUIRED:
                    raise _ParamError(f"Missing required key in single structure: {key}")
                if sub.required == DEFAULT:
                    result[key] = sub.default() if callable(sub.default) else sub.default
                continue
            try:
                result[key] = _validate(sub, rest.pop(key))
            except _ParamError as e:
                raise _ParamError(_wrap(key, e.debuginfo)) from None
        if rest:
            raise _ParamError(f"Unexpected keys ({', '.join(rest)}) detected in parameter array.")
        return result
    if isinstance(desc, Multiple):
        if not isinstance(value, dict):
            raise _ParamError(f"Only arrays accepted. The bad value is: '{_php_print_r(value)}'")
        return [_validate(desc.content, v) for v in value.values()]
    raise TypeError(desc)


def validate(desc: Single, params: dict) -> dict:
    """Validate the function arguments; raises WebServiceException(invalidparameter)."""
    try:
        return _validate(desc, params)
    except _ParamError as e:
        raise invalid_parameter(e.debuginfo) from None
