"""Reading a config: YAML -> overrides -> interpolation -> Lightning Pose keys lifted ->
pydantic shape check (pass 1). Pass 2, against the installed plugins, is ``mvcore.build``.

Errors are ``ConfigError`` with one line per problem: the key path, the bad value and what is
allowed (with the nearest key for a typo). A single problem is a single line.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mvcore.config import lightning_pose
from mvcore.config.schema import MvConfig
from mvcore.errors import ConfigError

_INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line from a YAML error (PyYAML's own message spans several lines):
    ``line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping top level is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_bytes()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    except (OSError, RecursionError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}"
        )
    if _contains_itself(raw):
        raise ConfigError(f"{path}: a YAML anchor contains an alias to itself (such as "
                          "'&a [*a]'); a config must be a tree: write the value out")
    return raw


def _contains_itself(value: Any) -> bool:
    """Whether a loaded YAML value holds itself (``&a [*a]`` loads as a list that contains
    itself; every later step would recurse forever). Iterative depth-first search; a value
    shared through aliases is walked once."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            done.add(id(node))
            continue
        if not isinstance(node, (dict, list)) or id(node) in done:
            continue
        if id(node) in on_path:
            return True
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in
                     (node.values() if isinstance(node, dict) else node))
    return False


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML: 200, 1e-3, [1,2], null)."""
    result = copy.deepcopy(raw)
    for override in overrides or []:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {override!r}: expected key.path=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {override!r}: the value is not valid YAML: "
                              f"{_yaml_problem(exc)}; quote it") from None
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _lookup(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"interpolation ${{{dotted}}}: key {dotted!r} does not exist")
        node = node[part]
    return node


#: sections mvcore does not use: kept as written, their references never resolved (Hydra
#: fills ``${hydra.job.num}`` and the like at run time, in Lightning Pose)
_UNRESOLVED_SECTIONS = ("hydra",)


def _interpolate(raw: dict[str, Any]) -> dict[str, Any]:
    """Resolve OmegaConf-style ``${section.key}`` references (Lightning Pose configs use them),
    except inside the sections mvcore does not use."""

    def resolve(value: Any, depth: int = 0) -> Any:
        if depth > 10:
            raise ConfigError("config interpolation is circular")
        if isinstance(value, dict):
            return {k: resolve(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, depth) for v in value]
        if isinstance(value, str) and "${" in value:
            if value.startswith("${now:"):
                return value  # hydra run-dir templates; unused by mvcore
            whole = _INTERPOLATION.fullmatch(value)
            if whole:
                return resolve(_lookup(raw, whole.group(1)), depth + 1)
            return _INTERPOLATION.sub(
                lambda m: str(resolve(_lookup(raw, m.group(1)), depth + 1)), value
            )
        return value

    return {key: value if key in _UNRESOLVED_SECTIONS else resolve(value)
            for key, value in raw.items()}


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model found by walking ``loc`` (None when it leaves the models)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


#: pydantic's range errors, said as the rule: ``must be >= 1``
_RANGE_RULES = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
                "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def _rule(item: dict[str, Any]) -> str:
    """The message of one pydantic error, ranges and non-finite numbers said as the rule."""
    kind = item["type"]
    if kind in _RANGE_RULES:
        sign, key = _RANGE_RULES[kind]
        bound = item.get("ctx", {}).get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "must be > 0", not "> 0.0"
        return f"must be {sign} {bound}"
    if kind == "finite_number":
        return "must be a finite number"
    return str(item["msg"]).removeprefix("Value error, ")


def _key_text(part: Any) -> str:
    """One part of a key path as written in a message: a plain name as it is, a list index
    as a number, anything else (empty, blank, a line break) quoted and escaped."""
    if isinstance(part, int) or (isinstance(part, str) and part.strip() and part.isprintable()):
        return str(part)
    return repr(part)


def _error_path(item: dict[str, Any], prefix: str = "",
                origin: dict[str, str] | None = None) -> tuple[tuple[Any, ...], str]:
    """``(loc, key path as written)`` of one pydantic error (union branches left out)."""
    loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
    if origin and loc and str(loc[0]) in origin:
        return loc, ".".join([origin[str(loc[0])], *(_key_text(p) for p in loc[1:])])
    return loc, ".".join([*([prefix] if prefix else []), *(_key_text(p) for p in loc)])


def validation_problems(
    error: ValidationError | list[dict[str, Any]],
    model: type[BaseModel],
    prefix: str = "",
    origin: dict[str, str] | None = None,
) -> list[str]:
    """One readable line per pydantic error: key path, value and what is allowed.

    ``error``: the ValidationError or some of its ``errors()``; ``prefix``: the key path of
    ``model``'s section; ``origin``: ``{field: key path}`` for fields the user set elsewhere (a
    Lightning Pose key copied into a component's params)."""
    lines = []
    for item in (error.errors() if isinstance(error, ValidationError) else error):
        loc, path = _error_path(item, prefix, origin)
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1]) or []
            if model is MvConfig and len(loc) == 2:  # Lightning Pose keys of that section
                allowed += lightning_pose.section_keys(str(loc[0]))
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            msg = f"{path}: unknown key"
            if hint:
                msg += f"; did you mean {'.'.join([*path.split('.')[:-1], hint[0]])!r}?"
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})"
        else:
            shown = _short_repr(value) if not isinstance(value, dict) else "{...}"
            text = _rule(item)
            msg = f"{path}: {text}" + ("" if shown in text or shown == "{...}"
                                       else f" (got {shown})")
        lines.append(msg)
    return lines


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message stays one readable line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    prefix: str = "",
    source: str | None = None,
    origin: dict[str, str] | None = None,
) -> str:
    """The message of a ConfigError for ``error``: ``invalid config SOURCE: key: problem`` on
    one line, or a head line and one indented line per problem when there are several."""
    lines = validation_problems(error, model, prefix, origin)
    head = f"invalid config{f' {source}' if source else ''}:"
    if len(lines) == 1:
        return f"{head} {lines[0]}"
    return "\n".join([head, *("  " + line for line in lines)])


#: values Lightning Pose's templates hold where the user must write one: OmegaConf's
#: mandatory ``???`` and the template's ``/replace/with/your/path`` (or ``/path/to/...``)
_PLACEHOLDER = re.compile(r"\?\?\?|/replace/with/.*|/path/to(/.*)?")


def template_placeholders(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(key path, value)`` of every value a template leaves to fill in, in file order:
    placeholder strings (``_PLACEHOLDER``) as written, before references are resolved, so a
    key that only refers to one (``${data.video_dir}``) is not listed; the sections mvcore
    does not use are skipped."""
    found: list[tuple[str, Any]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(child, f"{path}.{index}")
        elif isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()):
            found.append((path, value))

    for section, value in raw.items():
        if section not in _UNRESOLVED_SECTIONS and section not in lightning_pose.IGNORED_KEYS:
            walk(value, str(section))
    return found


def _single_view_problem(raw: dict[str, Any]) -> str | None:
    """Lightning Pose's single-view configs (one label CSV, no ``data.view_names``; mirrored
    rigs label every view in that one file): mvcore trains multi-view models only."""
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("view_names"):
        return None
    csv_file = data.get("csv_file")
    if not (isinstance(csv_file, str) or (isinstance(csv_file, list) and len(csv_file) == 1)):
        return None
    return ("a single-view Lightning Pose config (data.csv_file names one label file and "
            "there is no data.view_names); mvcore trains multi-view models: give one label CSV "
            "per camera in data.csv_file and their names in data.view_names (a mirror rig: "
            "split each view into its own CSV), or train this one with Lightning Pose")


def _fill_in_line(placeholders: list[tuple[str, Any]]) -> str:
    """One line naming the values a template leaves open, grouped by what they hold now."""
    groups: dict[str, list[str]] = {}
    for path, value in placeholders:
        groups.setdefault("null" if value is None else repr(value), []).append(path)
    listed = "; ".join(f"{', '.join(paths)} ({shown})" for shown, paths in groups.items())
    return f"fill in the values left open (as in a template): {listed}"


def parse_config(raw: dict[str, Any], source: str | None = None) -> MvConfig:
    """Pass 1: validate the shape of the config (Lightning Pose's component keys are lifted
    into ``config.lightning_pose`` first; their values are checked by the components).

    A Lightning Pose single-view config is one line saying so; a template's placeholders
    (``template_placeholders`` and nulls where a value is needed, such as the image size of
    ``config_default_multiview.yaml``) are one line naming every value to fill in."""
    where = f"invalid config {source}: " if source else ""
    single_view = _single_view_problem(raw)
    if single_view:
        raise ConfigError(where + single_view)
    placeholders = template_placeholders(raw)
    try:
        raw, lifted = lightning_pose.lift(_interpolate(raw))
    except ConfigError as exc:
        if source:
            raise ConfigError(f"invalid config {source}: {exc}") from None
        raise
    try:
        config = MvConfig.model_validate(raw)
    except ValidationError as exc:
        if not placeholders and not any(i.get("input", 0) is None for i in exc.errors()):
            raise ConfigError(format_validation_error(exc, MvConfig, source=source)) from None
        items = [i for i in exc.errors() if i["type"] != "extra_forbidden"
                 and i.get("input", 0) is None]
        placeholders += [(_error_path(i)[1], None) for i in items]
        others = validation_problems([i for i in exc.errors() if i not in items], MvConfig)
        raise ConfigError(_problem_text([_fill_in_line(placeholders), *others], source)) \
            from None
    if placeholders:
        raise ConfigError(_problem_text([_fill_in_line(placeholders)], source))
    config.lightning_pose = lifted
    return config


def _problem_text(lines: list[str], source: str | None) -> str:
    """``invalid config SOURCE: problem`` on one line, or a head line and indented lines."""
    head = f"invalid config{f' {source}' if source else ''}:"
    if len(lines) == 1:
        return f"{head} {lines[0]}"
    return "\n".join([head, *("  " + line for line in lines)])


def dump_config(config: MvConfig) -> dict[str, Any]:
    """The config as a plain dict in Lightning Pose's shape (lifted keys back in place), for
    saving and showing; ``parse_config`` reads it back."""
    data = config.model_dump(mode="json", exclude={"config_dir"})
    return lightning_pose.restore(data, config.lightning_pose)


def load_config(path: str | Path, overrides: list[str] | None = None) -> MvConfig:
    """Read and shape-check a config file; ``overrides`` are ``key.path=value`` strings."""
    path = Path(path)
    raw = apply_overrides(load_yaml(path), overrides)
    config = parse_config(raw, source=str(path))
    config.config_dir = str(path.resolve().parent)
    return config
