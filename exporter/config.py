"""Typed, validated configuration.

The file is YAML. Before validation, ``${VAR}`` (and ``${VAR:-default}``) in string
values is expanded from the environment, and every ``<secret>_file`` key is replaced by
the file's content, so secrets never have to be written into the file. Validation is
strict: unknown keys are rejected, and every problem is reported with its dotted path
(``postgres.0.poll_timeout``) so a user can find it without reading our code. Error
messages never echo input values: a mistyped key might be a password.
"""

from __future__ import annotations

import math
import os
import re
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


class TargetConfig(Strict):
    """Fields every target of every adapter has.

    Secret fields are ``SecretStr``; for each of them a sibling ``<field>_file`` key is
    accepted and replaced by the file's content (trailing newline removed), which is
    how Kubernetes and Docker secrets are mounted.
    """

    name: str = Field(pattern=TARGET_NAME, description="label value `target`; never an address")
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
                raise ValueError(f"set either {field} or {key}, not both")
            if not isinstance(path, str) or not path:
                raise ValueError(f"{key} must be a file path")
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


class RootConfig(GlobalConfig):
    """The whole file. Adapter sections are added by :func:`root_model`."""

    @model_validator(mode="after")
    def _check_targets(self) -> RootConfig:
        problems: list[str] = []
        total = 0
        for section in self.sections():
            seen: set[str] = set()
            for i, target in enumerate(getattr(self, section)):
                total += 1
                if target.name in seen:
                    problems.append(f"{section}.{i}.name: duplicate target name {target.name!r}")
                seen.add(target.name)
                if self.timeout_for(target) >= self.interval_for(target):
                    problems.append(
                        f"{section}.{i}.poll_timeout: must be shorter than poll_interval "
                        f"({self.timeout_for(target):g}s >= {self.interval_for(target):g}s)"
                    )
        if total == 0:
            from .adapters import names

            sections = ", ".join(names())
            problems.append(f"no targets configured: add a section for one of: {sections}")
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


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        path = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        for line in msg.split("\n"):
            # Validators of a whole model prefix their own dotted paths.
            if re.match(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+: ", line) and not path:
                sub_path, _, sub_msg = line.partition(": ")
                problems.append((sub_path, sub_msg))
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

        config = root_model(k for k in expanded if k in names()).model_validate(expanded)
    except ValidationError as exc:
        problems += _problems_from(exc)
        raise ConfigError(problems) from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        # A validator that failed in a way pydantic does not wrap: still a refused
        # config with a message (never a traceback, never a half-applied reload).
        problems.append(("", f"the configuration could not be validated ({type(exc).__name__})"))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


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
    """YAML to data, or a ConfigError naming the file, line and column of the problem.

    Duplicate keys are refused (see :class:`_UniqueKeyLoader`).
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([("", f"{path}: {problem}{where}")]) from None
    except RecursionError:
        raise ConfigError([("", f"{path}: the YAML is nested too deeply")]) from None


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> RootConfig:
    """Read, expand and validate a YAML config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read config file {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("", f"config file {path} is not UTF-8 text (byte {exc.start})")]
        ) from None
    data = parse_yaml(text, path)
    return validate(data, env)


def from_environment(env: Mapping[str, str] | None = None) -> RootConfig:
    """Build a config from the variables the platform's services already use.

    Each adapter reads its own variables (PG_HOST, REDIS_HOST, MINIO_ENDPOINT, ...);
    ``SPARKI_POLL_INTERVAL`` and ``SPARKI_POLL_TIMEOUT`` set the schedule.
    """
    from .adapters import discover

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
                    "or set PG_HOST, REDIS_HOST, REDIS_CLUSTER_NODES, MINIO_ENDPOINT, S3_BUCKET "
                    "or MEMCACHED_SERVERS",
                )
            ]
        )
    return validate(data, {})
