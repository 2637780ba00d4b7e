"""Typed, validated configuration.

The file is YAML. Before validation, ``${VAR}`` (and ``${VAR:-default}``) in string
values is expanded from the environment, and every ``<secret>_file`` key is replaced by
the file's content, so secrets never have to be written into the file. Validation is
strict: unknown keys are rejected, and every problem is reported with its dotted path
(``postgres.0.poll_timeout``) so a user can find it without reading our code. Error
messages never echo input values: a mistyped key might be a password.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"


class ConfigError(Exception):
    """Every problem found in a configuration, each as (dotted path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))

    def lines(self) -> list[str]:
        """One human-readable line per problem."""
        return [f"{path}: {msg}" if path else msg for path, msg in self.problems]


MAX_DURATION = 366 * 86400.0  # a year: longer is a typo, and floats stop being exact


def parse_duration(value: object) -> float:
    """Parse Prometheus-style durations (``15s``, ``1m30s``, ``500ms``) or plain seconds.

    Only ValueError escapes (pydantic turns it into a problem with the field's path):
    a number too large for a float, such as a YAML integer of 310 digits, would
    otherwise raise OverflowError, which nothing reports with a path.
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 15s or 500ms")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            text = value.strip()
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{value!r} is not a duration; use a form like 15s, 1m30s or 500ms"
                )
        else:
            raise ValueError("must be a duration such as 15s or 500ms")
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError("must be a positive duration")
    if seconds > MAX_DURATION:
        raise ValueError("is too long: at most 366d")
    return seconds


def at_most(limit: float, why: str) -> AfterValidator:
    """Validator for ``Annotated[Duration, at_most(...)]``: refuses more than ``limit``
    seconds, saying ``why`` (a server's own maximum, so the mistake shows in
    check-config rather than at every poll)."""

    def check(seconds: float) -> float:
        if seconds > limit:
            about = f", about {limit / 86400:.1f}d" if limit >= 86400 else ""
            raise ValueError(f"is too long: at most {limit:.3f}s{about} ({why})")
        return seconds

    return AfterValidator(check)


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = re.compile(TARGET_NAME)
_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\s]*):\d{1,5}$")


def looks_like_address(value: str) -> bool:
    """True for host:port, an IP address, a URL or user@host: what a name must not be."""
    if "@" in value or "/" in value or _HOST_PORT.match(value):
        return True
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def check_target_name(value: str) -> str:
    """A target's name is its ``target`` label and what /probe takes: never an address
    (the label would change when the server moves, and would publish where it is)."""
    if looks_like_address(value):
        raise ValueError(
            "must be a name, not an address (host:port, IP address, URL or user@host): it "
            "is the `target` label; the address goes in dsn, url or endpoint_url"
        )
    if not _NAME.match(value):
        raise ValueError(
            "must be 1 to 63 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return value


TargetName = Annotated[str, AfterValidator(check_target_name)]


class TargetConfig(Strict):
    """Fields every target of every adapter has.

    Secret fields are ``SecretStr``; for each of them a sibling ``<field>_file`` key is
    accepted and replaced by the file's content (trailing newline removed), which is
    how Kubernetes and Docker secrets are mounted.
    """

    name: TargetName = Field(description="label value `target`; never an address")
    poll_interval: Duration | None = None
    poll_timeout: Duration | None = None
    collectors: dict[str, bool] = Field(
        default_factory=dict, description="switch this target's collectors on or off by name"
    )

    secret_fields: ClassVar[tuple[str, ...]] = ()
    # The adapter's collector names (from its catalog), for validating `collectors`.
    known_collectors: ClassVar[tuple[str, ...]] = ()

    @field_validator("collectors")
    @classmethod
    def _check_collectors(cls, value: dict[str, bool]) -> dict[str, bool]:
        from .collector import unknown_names

        problems = unknown_names(value, cls.known_collectors)
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for field in cls.secret_fields:
            if data.get(field) == "":  # `${VAR:-}` with VAR unset: no secret, not ""
                del data[field]
            key = f"{field}_file"
            if key not in data:
                continue
            path = data.pop(key)
            if field in data and data[field] is not None:
                raise ValueError(f"{key}: set either {field} or {key}, not both")
            if not isinstance(path, str) or not path:
                raise ValueError(f"{key}: must be a file path")
            try:
                data[field] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
        return data

    def secrets(self) -> list[str]:
        """Every secret value of this target, for redaction of logs and errors."""
        out = []
        for field in self.secret_fields:
            value = getattr(self, field, None)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out + self.extra_secrets()

    def extra_secrets(self) -> list[str]:
        """Secrets hidden in other fields (a password inside a DSN, say)."""
        return []


class LogConfig(Strict):
    level: str = Field("info", pattern=r"^(debug|info|warn|warning|error)$")
    format: str = Field("logfmt", pattern=r"^(logfmt|json)$")


class GlobalConfig(Strict):
    """Settings that apply to every target unless the target overrides them."""

    poll_interval: Duration = 15.0
    poll_timeout: Duration = 5.0
    stale_after_intervals: float = Field(3.0, gt=1)
    log: LogConfig = LogConfig()
    # Collector switches for every target of an adapter: {postgres: {vacuum: false}}.
    # A target's own `collectors` wins; --[no-]collector.<name> flags are merged in here.
    collectors: dict[str, dict[str, bool]] = Field(default_factory=dict)

    def collectors_for(self, adapter: str) -> dict[str, bool]:
        return self.collectors.get(adapter, {})

    def interval_for(self, target: TargetConfig) -> float:
        return target.poll_interval or self.poll_interval

    def timeout_for(self, target: TargetConfig) -> float:
        return target.poll_timeout or self.poll_timeout


def no_targets() -> str:
    """The problem of a file without targets, naming every adapter shipped."""
    from .adapters import names

    return f"no targets configured: add a section for one of: {', '.join(names())}"


def cross_problems(
    globals_: GlobalConfig, placed: Iterable[tuple[str, int, TargetConfig]]
) -> list[tuple[str, str]]:
    """Problems between targets, or between a target and the globals: a name given
    twice in a section, a timeout not shorter than the interval."""
    problems: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for section, i, target in placed:
        if (section, target.name) in seen:
            problems.append((f"{section}.{i}.name", f"duplicate target name {target.name!r}"))
        seen.add((section, target.name))
        timeout, interval = globals_.timeout_for(target), globals_.interval_for(target)
        if timeout >= interval:
            problems.append(
                (
                    f"{section}.{i}.poll_timeout",
                    f"must be shorter than poll_interval ({timeout:g}s >= {interval:g}s)",
                )
            )
    return problems


class RootConfig(GlobalConfig):
    """The whole file. Adapter sections are added by :func:`root_model`."""

    @model_validator(mode="after")
    def _check_targets(self) -> RootConfig:
        placed = [
            (section, i, target)
            for section in self.sections()
            for i, target in enumerate(getattr(self, section))
        ]
        problems = [f"{path}: {message}" for path, message in cross_problems(self, placed)]
        if not placed:
            problems.append(no_targets())
        problems += _check_collector_switches(self.collectors)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def sections(self) -> list[str]:
        return [name for name in type(self).model_fields if name not in GlobalConfig.model_fields]

    def targets(self) -> list[tuple[str, TargetConfig]]:
        """(adapter name, target config) for every configured target."""
        return [(s, t) for s in self.sections() for t in getattr(self, s)]

    def secrets(self) -> list[str]:
        return [secret for _, t in self.targets() for secret in t.secrets()]


def _check_collector_switches(switches: Mapping[str, Mapping[str, bool]]) -> list[str]:
    """Problems with the top-level ``collectors`` key (checked from the driver-free catalogs)."""
    from . import adapters
    from .collector import unknown_names

    problems = []
    for adapter, names in switches.items():
        if adapter not in adapters.names():
            adapters_known = ", ".join(adapters.names())
            problems.append(
                f"collectors.{adapter}: no adapter {adapter!r} (adapters: {adapters_known})"
            )
            continue
        names_known = tuple(c.name for c in adapters.collectors(adapter))
        problems += [f"collectors.{adapter}: {p}" for p in unknown_names(names, names_known)]
    return problems


_ROOTS: dict[frozenset[str] | None, type[RootConfig]] = {}


def root_model(sections: Iterable[str] | None = None) -> type[RootConfig]:
    """The root model with one optional list section per adapter.

    ``sections`` limits the model to those adapters (the ones a config names), so that
    only their modules are imported; None means every adapter shipped.
    """
    key = None if sections is None else frozenset(sections)
    if key not in _ROOTS:
        from . import adapters

        chosen = adapters.discover() if key is None else adapters.specs(key)
        fields: dict[str, Any] = {
            spec.name: (list[spec.config], Field(default_factory=list))  # type: ignore[name-defined]
            for spec in chosen
        }
        _ROOTS[key] = create_model("Config", __base__=RootConfig, **fields)
    return _ROOTS[key]


def expand_env(
    node: Any, env: Mapping[str, str], path: str = ""
) -> tuple[Any, list[tuple[str, str]]]:
    """Expand ``${VAR}`` in every string of a parsed YAML tree.

    Expansion happens after parsing, so a variable's value can never inject YAML
    structure. Missing variables without a default are reported with their path.
    """
    problems: list[tuple[str, str]] = []
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(sub, node), problems
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            out[key], sub_problems = expand_env(value, env, f"{path}.{key}" if path else str(key))
            problems += sub_problems
        return out, problems
    if isinstance(node, list):
        items = []
        for i, value in enumerate(node):
            item, sub_problems = expand_env(value, env, f"{path}.{i}" if path else str(i))
            items.append(item)
            problems += sub_problems
        return items, problems
    return node, problems


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field's values are, through list[...], dict[...], X | None, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel] | None, loc: Iterable[str]) -> type[BaseModel] | None:
    """The model that holds the keys at ``loc`` (list indexes and dict keys skipped)."""
    current = model
    for part in loc:
        if current is None:
            return None
        field = current.model_fields.get(part)
        if field is not None:
            current = _inner_model(field.annotation)
    return current


def known_keys(model: type[BaseModel] | None) -> list[str]:
    """The keys a mapping for ``model`` may have (``<secret>_file`` ones included)."""
    if model is None:
        return []
    keys = list(model.model_fields)
    keys += [f"{name}_file" for name in getattr(model, "secret_fields", ())]
    return keys


def unknown_key(key: str, candidates: Iterable[str]) -> str:
    """'unknown key', with the nearest known key when one is close (a typo)."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.75)
    return f"unknown key; did you mean {close[0]}?" if close else "unknown key"


def _choices(pattern: str) -> str | None:
    match = re.fullmatch(r"\^\(([\w|-]+)\)\$", pattern)
    return ", ".join(match.group(1).split("|")) if match else None


def _expected(text: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as "a, b, c"."""
    return ", ".join(part.strip().strip("'\"") for part in re.split(r",| or ", text) if part)


_PLAIN = {
    "missing": "is required",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "finite_number": "must be a finite number",
    "none_required": "must be empty",
}


def friendly(err: Mapping[str, Any]) -> str:
    """A pydantic error in the project's words ("must be a list", not "Input should be
    a valid list"); never the input value."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "string_pattern_mismatch":
        choices = _choices(str(ctx.get("pattern", "")))
        return f"must be one of {choices}" if choices else "has an invalid format"
    if kind in ("literal_error", "enum"):
        return f"must be one of {_expected(str(ctx.get('expected', '')))}"
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
        "string_too_short": "must be at least {min_length} {min_length_characters} long",
        "string_too_long": "must be at most {max_length} {max_length_characters} long",
        "too_short": "must have at least {min_length} {min_length_items}",
        "too_long": "must have at most {max_length} {max_length_items}",
    }
    if kind in bounds:
        shown = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
        for key in ("min_length", "max_length"):  # "at least 1 item", "at least 2 items"
            one = ctx.get(key) == 1
            shown[f"{key}_items"] = "item" if one else "items"
            shown[f"{key}_characters"] = "character" if one else "characters"
        try:
            return bounds[kind].format(**shown)
        except (KeyError, IndexError):
            pass
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be a valid", "must be a").replace("Input should be", "must be")


_SUB_PATH = re.compile(r"^([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*): (.+)$", re.S)


def _problems_from(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[tuple[str, str]]:
    """Every error of ``exc`` as (dotted path, message in our words).

    ``model`` (the one validated) lets unknown keys name the nearest known key, and
    ``prefix`` is the path of what was validated. A model validator's lines that start
    with ``key: `` are put on that key's path.
    """
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        path = ".".join([prefix, *loc] if prefix else loc)
        if err["type"] == "extra_forbidden":
            problems.append((path, unknown_key(loc[-1], known_keys(_model_at(model, loc[:-1])))))
            continue
        parent = _model_at(model, loc[:-1]) if loc else None
        on_a_field = bool(loc) and parent is not None and loc[-1] in parent.model_fields
        model_level = model is not None and not on_a_field
        for line in friendly(err).split("\n"):
            match = _SUB_PATH.match(line)
            if match and (model_level or (not path and "." in match.group(1))):
                sub = match.group(1)
                problems.append((f"{path}.{sub}" if path else sub, match.group(2)))
            else:
                problems.append((path, line))
    return problems


MAX_DEPTH = 64
MAX_NODES = 200_000


def _check_shape(data: Any) -> None:
    """Refuse trees too deep or too large to be a config (YAML aliases can multiply them)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise ConfigError([("", f"the config is nested more than {MAX_DEPTH} levels deep")])
        if nodes > MAX_NODES:
            raise ConfigError([("", f"the config has more than {MAX_NODES} values")])
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def validate(data: Any, env: Mapping[str, str] | None = None) -> RootConfig:
    """Validate an already parsed config tree; raise :class:`ConfigError` listing all problems."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the config must be a mapping of keys to values")])
    _check_shape(data)
    expanded, problems = expand_env(data, os.environ if env is None else env)
    try:
        from .adapters import names

        model = root_model(k for k in expanded if k in names())
        config = model.model_validate(expanded)
    except ValidationError as exc:
        # One pass of the whole model stops early in places (a target's own checks wait
        # for its fields, the cross-target checks for every target): validate the parts
        # one by one so that a single run reports every problem.
        found = every_problem(expanded, model) or _problems_from(exc, model)
        problems += [p for p in found if p not in problems]
        raise ConfigError(problems) from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        # A validator that failed in a way pydantic does not wrap: still a refused
        # config with a message (never a traceback, never a half-applied reload).
        problems.append(("", f"the configuration could not be validated ({type(exc).__name__})"))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _validate_target(
    model: type[TargetConfig], item: dict[Any, Any], path: str
) -> tuple[TargetConfig | None, list[tuple[str, str]]]:
    try:
        return model.model_validate(item), []
    except ValidationError as exc:
        problems = _problems_from(exc, model, path)
    # A secret file that cannot be read stops the target's validation before its other
    # fields are looked at: look at them without the secret files.
    files = [f"{name}_file" for name in model.secret_fields if f"{name}_file" in item]
    if files and any(path_ == f"{path}.{key}" for key in files for path_, _ in problems):
        rest = {k: v for k, v in item.items() if k not in files}
        try:
            model.model_validate(rest)
        except ValidationError as exc:
            secrets = {f"{path}.{key.removesuffix('_file')}" for key in files}
            for problem in _problems_from(exc, model, path):
                if problem not in problems and problem[0] not in secrets:
                    problems.append(problem)
    return None, problems


def every_problem(data: Mapping[Any, Any], model: type[RootConfig]) -> list[tuple[str, str]]:
    """Validate the globals, each target and the cross-target rules separately."""
    from .adapters import names

    problems: list[tuple[str, str]] = []
    top = [*GlobalConfig.model_fields, *names()]
    sections = [name for name in model.model_fields if name not in GlobalConfig.model_fields]
    for key in data:
        if key not in model.model_fields:
            problems.append((str(key), unknown_key(str(key), top)))
    try:
        globals_ = GlobalConfig.model_validate(
            {k: v for k, v in data.items() if k in GlobalConfig.model_fields}
        )
    except ValidationError as exc:
        problems += _problems_from(exc, GlobalConfig)
        globals_ = GlobalConfig()
    placed: list[tuple[str, int, TargetConfig]] = []
    total = 0
    for section in sections:
        items = data.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append((section, "must be a list of targets"))
            total += 1
            continue
        target_model = _inner_model(model.model_fields[section].annotation)
        assert target_model is not None and issubclass(target_model, TargetConfig)
        for i, item in enumerate(items):
            total += 1
            if not isinstance(item, dict):
                problems.append((f"{section}.{i}", "must be a mapping of keys to values"))
                continue
            target, found = _validate_target(target_model, item, f"{section}.{i}")
            problems += found
            if target is None:
                # Its schedule and name may still be fine: check them against the others.
                common = {k: item[k] for k in TargetConfig.model_fields if k in item}
                try:
                    target = TargetConfig.model_validate(common)
                except ValidationError:
                    continue
            placed.append((section, i, target))
    problems += cross_problems(globals_, placed)
    for line in _check_collector_switches(globals_.collectors):
        path, _, message = line.partition(": ")
        problems.append((path, message))
    if total == 0:
        problems.append(("", no_targets()))
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping.

    PyYAML keeps the last value silently, so a second ``poll_timeout:`` further down
    would quietly win. Keys merged in with ``<<:`` may still be overridden, as YAML
    intends. The key itself is not echoed (it might be a mistyped secret); its line is.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key; construct_mapping reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key (first given at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def parse_yaml(text: str, path: str | os.PathLike[str]) -> Any:
    """YAML to data, or a ConfigError naming the line and column of the problem.

    The file's name is not in the message: every caller puts it in front (check-config's
    ``FILE: problem``, the log line's ``file=``), once. Duplicate keys are refused (see
    :class:`_UniqueKeyLoader`).
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([("", f"{problem}{where}")]) from None
    except RecursionError:
        raise ConfigError([("", "the YAML is nested too deeply")]) from None


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> RootConfig:
    """Read, expand and validate a YAML config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"not UTF-8 text (byte {exc.start})")]) from None
    data = parse_yaml(text, path)
    return validate(data, env)


def from_environment(env: Mapping[str, str] | None = None) -> RootConfig:
    """Build a config from the variables the platform's services already use.

    Each adapter reads its own variables (PG_HOST, REDIS_HOST, MINIO_ENDPOINT, ...);
    ``SPARKI_POLL_INTERVAL`` and ``SPARKI_POLL_TIMEOUT`` set the schedule.
    """
    from .adapters import discover, env_variables

    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if "SPARKI_POLL_INTERVAL" in env:
        data["poll_interval"] = env["SPARKI_POLL_INTERVAL"]
    if "SPARKI_POLL_TIMEOUT" in env:
        data["poll_timeout"] = env["SPARKI_POLL_TIMEOUT"]
    for spec in discover():
        targets = spec.from_env(env)
        if targets:
            data[spec.name] = targets
    if not any(spec.name in data for spec in discover()):
        raise ConfigError(
            [
                (
                    "",
                    "no config file given and no target in the environment: pass --config FILE "
                    f"or set one of {', '.join(v for vs in env_variables().values() for v in vs)}",
                )
            ]
        )
    return validate(data, {})
