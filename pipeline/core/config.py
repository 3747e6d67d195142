"""Typed stage configs: dataclass defaults < config file (TOML/YAML/JSON) < CLI flags.

Every stage declares a dataclass whose fields carry a default and a one-line doc (`option`). A
config file may hold one table per stage (`[compose]`, `[mine]` …) or the stage's keys at top level.
A stage with plug-ins (mining methods, losses) names their registry in `SECTIONS`; each entry's
settings are a nested table (`[mine.faiss]`, `[train.gist]`) held in the config's `params` field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from pipe_embed.pipeline.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")  # a config dataclass
T = TypeVar("T")
PARAMS = "params"  # the field of a sectioned config that holds each entry's settings


def option(default: Any, doc: str, *, versioned: bool = True, flag: str | None = None,
           short: str | None = None, cli: bool = True) -> Any:
    """A config field: its default, a one-line doc (the CLI help), and whether it is versioned.

    `versioned=False` is the one way to keep an operational field (batch size for encoding, device,
    an export path) out of the artifact's version: changing it never re-runs a stage. `flag` overrides
    the generated flag name (default `--field-name`), `short` adds a one-letter alias, and `cli=False`
    keeps the field to config files only.
    """
    metadata = {"doc": doc, "versioned": versioned, "flag": flag, "short": short, "cli": cli}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def is_versioned(f: dataclasses.Field[Any]) -> bool:
    """Whether a config field takes part in the artifact version (see `option(versioned=...)`)."""
    return bool(f.metadata.get("versioned", True))


def versioned_dict(config: Any) -> dict[str, Any]:
    """The resolved config minus its `versioned=False` fields (its sections' too): what goes into a version."""
    values = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        if not is_versioned(f):
            values.pop(f.name, None)
    if isinstance(values.get(PARAMS), dict):
        values[PARAMS] = {name: versioned_dict(section) if dataclasses.is_dataclass(section) else values[PARAMS][name]
                          for name, section in getattr(config, PARAMS).items()}
    return values


def section_types(cls: type) -> dict[str, type]:
    """A sectioned config's entries that have settings: name -> settings dataclass ({} for plain configs)."""
    registry = getattr(cls, "SECTIONS", None)
    return registry.sections() if registry is not None else {}


def _section(config: Any, name: str, cls: type[Any]) -> Any:
    """One entry's settings as its dataclass: as held, built from a plain table (a config made in code),
    or the defaults when none were given."""
    value = getattr(config, PARAMS).get(name)
    if isinstance(value, cls):
        return value
    return build_config(cls, dict(value or {}), "", name)


def params_of(config: Any, cls: type[T]) -> T:
    """The settings of one entry of a sectioned config, typed: `params_of(mine_config, FaissParams)`."""
    for name, kind in section_types(type(config)).items():
        if kind is cls:
            return _section(config, name, cls)
    return cls()


def keep_sections(config: C, names: list[str] | tuple[str, ...]) -> C:
    """The config with exactly these entries' settings, each built (defaults where none were given):
    what a resolved config records and versions."""
    types_ = section_types(type(config))
    params: dict[str, Any] = {n: _section(config, n, types_[n]) for n in dict.fromkeys(names) if n in types_}
    return dataclasses.replace(config, **{PARAMS: params})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML, YAML or JSON config file into a dict."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file", hint="--config takes a .toml, .yaml or .json file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1})", hint="re-save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format '{suffix}'", hint="use .toml, .yaml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # parse errors of three libraries
        raise ConfigError(f"{path}: cannot parse config: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a table/mapping at top level")
    return data


def _coerce(value: Any, tp: Any, name: str, where: str) -> Any:
    """Convert a file or flag value to the field's type, or name the field at fault."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, name, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}field '{name}': {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (list, tuple):
        (item_tp, *_rest) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}field '{name}': expected a list, got {value!r}")
        return [_coerce(v, item_tp, name, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}field '{name}': expected a table, got {value!r}")
        return dict(value)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{where}field '{name}': {value!r} is not a finite number",
                                  hint="give a finite value (nan and inf are never valid settings)")
            return number
        if tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if tp is Path:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}field '{name}': {value!r} is not a valid {getattr(tp, '__name__', tp)}") from None
    return value


_STAGE_CONFIGS: dict[str, type] = {}
# Tables of the seed trainers' config.json layout, which `pipe train` reads: not stage tables, not typos.
SEED_TABLES = frozenset({"hf", "device", "optim", "data", "output"})


def register_config(section: str, cls: type) -> None:
    """Make a stage's config known by its table name, so that a key put under the wrong table can
    say where it belongs. The CLI registers every stage it offers."""
    _STAGE_CONFIGS[section] = cls


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_field(cls: type, key: str, where: str, section: str | None) -> ConfigError:
    """`unknown field 'x'`, and where it belongs: another stage's table, or a near spelling."""
    fields = _field_names(cls)
    owners = [name for name, other in _STAGE_CONFIGS.items()
              if name != section and other is not cls and key in _field_names(other)]
    owners += [f"{section or 'stage'}.{name}" for name, params in section_types(cls).items()
               if key in _field_names(params)]
    if owners:
        tables = " or ".join(f"[{name}]" for name in owners)
        return ConfigError(f"{where}unknown field '{key}': it is a setting of {tables}",
                           hint=f"move it under {tables}")
    close = difflib.get_close_matches(key, fields, n=1)
    known = f"known fields: {', '.join(sorted(fields))}"
    return ConfigError(f"{where}unknown field '{key}'",
                       hint=f"did you mean '{close[0]}'? {known}" if close else known)


def _section_where(where: str, section: str | None, name: str) -> str:
    """`pipe.toml: [mine] ` -> `pipe.toml: [mine.faiss] `: where a section's errors point."""
    table = f"[{section or 'stage'}.{name}] "
    if section and where.endswith(f"[{section}] "):
        return where[: -len(f"[{section}] ")] + table
    return f"{where}{table}" if where else ""


def _build_sections(cls: type, values: dict[str, Any], where: str, section: str | None) -> dict[str, Any]:
    """Take the entries' tables (`[mine.faiss]`, or a `params` mapping) out of `values` and build each
    entry's settings; entries not given get their defaults."""
    types_ = section_types(cls)
    given: dict[str, Any] = {}
    raw_params = values.pop(PARAMS, None) or {}
    if not isinstance(raw_params, dict):
        raise ConfigError(f"{where}field '{PARAMS}': expected a table of sections, got {raw_params!r}")
    given.update(raw_params)
    fields = set(_field_names(cls))
    for name in [k for k, v in values.items() if k in types_ or (isinstance(v, dict) and k not in fields)]:
        given[name] = values.pop(name)
    params: dict[str, Any] = {}
    for name, value in given.items():
        if name not in types_:
            close = difflib.get_close_matches(str(name), list(types_), n=1)
            known = f"known sections: {', '.join(types_)}"
            raise ConfigError(f"{where}unknown section '{name}'",
                              hint=f"did you mean '{close[0]}'? {known}" if close else known)
        if isinstance(value, types_[name]):
            params[name] = value
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}'{name}' must be a table of settings, got {value!r}",
                              hint=f"write [{section or 'stage'}.{name}] and its keys below it")
        params[name] = build_config(types_[name], dict(value), _section_where(where, section, name),
                                    f"{section}.{name}" if section else name)
    for name, tp in types_.items():
        params.setdefault(name, tp())
    return params


def build_config(cls: type[C], values: dict[str, Any], where: str = "", section: str | None = None) -> C:
    """Instantiate a config dataclass from a mapping, checking names and types."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = dict(values)
    if getattr(cls, "SECTIONS", None) is not None:
        values[PARAMS] = _build_sections(cls, values, where, section)
        hints = {**hints, PARAMS: Any}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise _unknown_field(cls, str(unknown[0]), where, section)
    kwargs = {k: _coerce(v, hints[k], k, where) for k, v in values.items()}
    config = cls(**kwargs)
    validate = getattr(config, "validate", None)
    if callable(validate):
        if where:
            try:
                validate()
            except ConfigError as exc:
                raise ConfigError(f"{where}{exc.message}", hint=exc.hint) from None
        else:
            validate()
    return config


def _check_tables(data: dict[str, Any], file: str | Path, own: set[str]) -> None:
    """A top-level table no stage knows is a typo (`[compsoe]`), not something to ignore silently."""
    if not _STAGE_CONFIGS:
        return  # called outside the CLI: the stages are not all known, so nothing can be called unknown
    known = set(_STAGE_CONFIGS) | SEED_TABLES | own
    for key, value in data.items():
        if isinstance(value, dict) and key not in known:
            close = difflib.get_close_matches(str(key), sorted(_STAGE_CONFIGS), n=1)
            tables = ", ".join(f"[{name}]" for name in sorted(_STAGE_CONFIGS))
            raise ConfigError(f"{file}: unknown table [{key}]",
                              hint=f"did you mean [{close[0]}]? tables: {tables}" if close else f"tables: {tables}")


def load_config(cls: type[C], section: str, file: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> C:
    """Resolve a stage config: dataclass defaults, then the file's section, then CLI overrides.

    Errors in the file name it and the table: `pipe.toml: [compose] unknown field 'dev_fractoin'`.
    """
    values: dict[str, Any] = {}
    if file is not None:
        data = read_config_file(file)
        names = {f.name for f in dataclasses.fields(cls)}
        _check_tables(data, file, names | set(section_types(cls)) | {section})
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"{file}: '{section}' must be a table of settings, got {data[section]!r}",
                              hint=f"write [{section}] and its keys below it")
        if isinstance(data.get(section), dict):
            values.update(data[section])
            where = f"{file}: [{section}] "
        else:
            # A flat file: take the keys this stage knows; other stages' tables are ignored.
            sections = section_types(cls)
            values.update({k: v for k, v in data.items() if not isinstance(v, dict) or k in names or k in sections})
            where = f"{file}: "
        cfg_from_file = build_config(cls, values, where, section)
        values = {f.name: getattr(cfg_from_file, f.name) for f in dataclasses.fields(cls)}
    sections = section_types(cls)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in sections and isinstance(value, dict):
            # flags of one entry: merged into that entry's settings from the file (or its defaults)
            params = values.setdefault(PARAMS, {})
            current = params.get(key)
            base = (dataclasses.asdict(current) if dataclasses.is_dataclass(current) and not isinstance(current, type)
                    else dict(current or {}))
            params[key] = {**base, **value}
        else:
            values[key] = value
    return build_config(cls, values, "", section)


def field_default(f: dataclasses.Field[Any]) -> Any:
    """A field's default value (a fresh one from its factory); a TypeError for a field without one."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name!r} has no default")


def config_docs(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, doc) for every field: for help texts and the README."""
    rows = []
    for f in dataclasses.fields(cls):
        rows.append((f.name, field_default(f), f.metadata.get("doc", "")))
    return rows


def as_dict(config: Any) -> dict[str, Any]:
    """The resolved config as a plain dict (for manifests and fingerprints)."""
    return dataclasses.asdict(config)


__all__ = ["option", "load_config", "build_config", "read_config_file", "config_docs", "as_dict",
           "register_config", "section_types", "params_of", "keep_sections", "PARAMS",
           "versioned_dict", "is_versioned"]
