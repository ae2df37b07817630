"""Device profiles: one TOML file per device under ``devices/``, validated on load.

A profile says how to reach the device, which Python runs the agent there, its CPU
clusters, which energy meter and thermal zones to read, and its cooldown policy. Every
section is a frozen dataclass; unknown keys are refused with the nearest valid key, wrong
types and out-of-range numbers with the file, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomllib

from harness.errors import ConfigError
from harness.limits import PROFILE_RANGES, check_env, check_name, check_number, check_text

DEVICES_DIR = Path(__file__).resolve().parent.parent / "devices"

TRANSPORTS = ("local", "ssh", "adb")
ROOT_MODES = ("none", "su", "adb-root")
ENERGY_METERS = (
    "none",
    "auto",
    "odpm",
    "fuel-gauge",
    "rapl",
    "nvml",
    "jetson-ina3221",
    "vcgencmd",
    "hwmon",
    "cpu-model",
)


@dataclass(frozen=True)
class ConnectionSection:
    """How to reach the device."""

    transport: str = "local"
    host: str = ""  # ssh: an alias from ~/.ssh/config or a hostname
    port: int = 0  # ssh: 0 means the config's or 22
    user: str = ""
    identity_file: str = ""
    known_hosts: str = ""  # default ~/.ssh/known_hosts
    trust_new_host_key: bool = False
    connect_timeout_s: float = 10.0
    keepalive_s: float = 15.0
    serial: str = ""  # adb: empty means $ANDROID_SERIAL or the only device attached
    adb_server: str = ""  # adb: host:port of the adb server, empty means 127.0.0.1:5037


@dataclass(frozen=True)
class AgentSection:
    """Which Python runs the agent on the device, where, and with which privileges."""

    python: tuple[str, ...] = ("python3",)
    workdir: str = "~/.cache/odt-harness"
    env: Mapping[str, str] = field(default_factory=dict)
    record_env: tuple[str, ...] = ()  # env names whose values may be written to manifests/reports
    root: str = "none"  # none | su | adb-root: how meters and pinning get privileges
    case_timeout_s: float = 900.0
    retries: int = 2  # transient faults: attempts after the first


@dataclass(frozen=True)
class CpuSection:
    """CPU clusters (name -> core ids), which one to pin to, and the default thread count."""

    clusters: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    pin: str = ""  # a cluster name, or empty for no pinning
    threads: int = 0  # 0: the suite's choice


@dataclass(frozen=True)
class EnergySection:
    """Which energy meter the agent reads, and how."""

    meter: str = "auto"
    idle_window_s: float = 1.0
    sample_interval_s: float = 0.05  # for meters that give power, not energy
    root: str = ""  # sysfs root override (tests point this at a fixture tree)
    rails: Mapping[str, str] = field(default_factory=dict)  # group -> regular expression
    cpu_idle_w: float = 0.0  # estimated cpu-model parameters
    cpu_max_w: float = 0.0
    cpu_model_source: str = ""  # where the idle/max watts come from
    cpu_model: str = ""  # "default": the documented default model when the watts are unset
    allow_charging: bool = False
    refresh_s: float = 0.0  # the meter's refresh period, where it differs from its default
    min_window_s: float = 0.0  # raise the meter's minimum energy window (never lowers it)
    max_extend_s: float = 60.0  # longest the measured steps are extended to reach that window


@dataclass(frozen=True)
class ThermalSection:
    """Thermal zones to read, cooldown before a case, thresholds for warnings."""

    zones: tuple[str, ...] = ()  # zone types or paths; empty: every readable zone
    cooldown_c: float = 0.0  # 0 disables cooldown
    cooldown_timeout_s: float = 120.0
    hot_c: float = 85.0
    root: str = ""  # sysfs root override


@dataclass(frozen=True)
class Profile:
    """A validated device profile."""

    name: str
    description: str = ""
    model: str = ""  # device model, compared by the gate across baselines
    connection: ConnectionSection = field(default_factory=ConnectionSection)
    agent: AgentSection = field(default_factory=AgentSection)
    cpu: CpuSection = field(default_factory=CpuSection)
    energy: EnergySection = field(default_factory=EnergySection)
    thermal: ThermalSection = field(default_factory=ThermalSection)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path", None)
        return data


_CHOICES = {
    ("connection", "transport"): TRANSPORTS,
    ("agent", "root"): ROOT_MODES,
    ("energy", "meter"): ENERGY_METERS,
    ("energy", "cpu_model"): ("", "default"),
}
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check a TOML value against a field type, converting lists to tuples."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{value!r} is too large", source=source, key=where) from None
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            return (value,)
        if isinstance(value, list):
            return tuple(_convert(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value))
    elif origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        _, val_tp = typing.get_args(tp)
        if isinstance(value, dict):
            return {str(k): _convert(v, val_tp, f"{where}.{k}", source) for k, v in value.items()}
    else:  # pragma: no cover - every field type above is handled
        raise AssertionError(f"unhandled field type {tp}")
    raise ConfigError(
        f"expected {_describe(tp)}, got {value!r} ({type(value).__name__})", source=source, key=where
    )


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is not None:
        return "a table"
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}.get(
        _type_name(tp), _type_name(tp)
    )


def _build(cls: type, data: Mapping[str, Any], section: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "path"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{section}.{key}" if section else key
        if key not in fields:
            near = difflib.get_close_matches(key, sorted(fields), n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown key {key!r}; {hint}", source=source, key=where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"expected a [{key}] table, got {value!r}", source=source, key=where)
            values[key] = _build(tp, value, key, source)
            continue
        converted = _convert(value, tp, where, source)
        choices = _CHOICES.get((section, key))
        if choices and converted not in choices:
            near = difflib.get_close_matches(str(converted), choices, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError(
                f"{converted!r} is not one of {', '.join(choices)}; {hint}".rstrip("; "),
                source=source,
                key=where,
            )
        rng = PROFILE_RANGES.get(where)
        if rng is not None and isinstance(converted, (int, float)):
            check_number(converted, rng, source=source, key=where)
        elif rng is not None and isinstance(converted, Mapping):  # cpu.clusters: name -> core ids
            for name, ids in converted.items():
                for i, core in enumerate(ids):
                    check_number(core, rng, source=source, key=f"{where}.{name}[{i}]")
        values[key] = converted
    return cls(**values)


#: Top-level fields whose text is free (a person's description) or checked apart (the name, a
#: path the loader set).
_FREE_TOP_LEVEL = ("name", "description", "path")


def _texts(profile: Profile) -> list[tuple[str, str]]:
    """Every text field, top level (``model``) and of every section, as (``section.key[i]``,
    value); ``agent.env`` apart (its values are checked by :func:`check_env`)."""
    out: list[tuple[str, str]] = []
    for section in dataclasses.fields(profile):
        part = getattr(profile, section.name)
        if isinstance(part, str) and section.name not in _FREE_TOP_LEVEL:
            out.append((section.name, part))
        if not dataclasses.is_dataclass(part):
            continue
        for member in dataclasses.fields(part):
            value = getattr(part, member.name)
            key = f"{section.name}.{member.name}"
            if isinstance(value, str):
                out.append((key, value))
            elif isinstance(value, (tuple, list)):
                out += [(f"{key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, str)]
    return out


def _check_texts(profile: Profile, source: str) -> None:
    """Names that become paths, and text that reaches a shell line or a file of lines."""
    check_name(profile.name, source=source, key="name")
    conn, agent = profile.connection, profile.agent
    for key, value in _texts(profile):
        check_text(value, source=source, key=key)
    if conn.host.startswith("-"):
        raise ConfigError(f"host {conn.host!r} starts with '-' and would be read as an option",
                          source=source, key="connection.host")
    check_env(dict(agent.env), source=source, key="agent.env")
    unknown = [n for n in agent.record_env if n not in agent.env]
    if unknown:
        raise ConfigError(f"names {unknown} that [agent].env does not set", source=source, key="agent.record_env")


def _cross_check(profile: Profile, source: str) -> None:
    _check_texts(profile, source)
    conn = profile.connection
    if conn.transport == "ssh" and not conn.host:
        raise ConfigError(
            "an ssh device needs a host (an alias from ~/.ssh/config or a hostname)",
            source=source,
            key="connection.host",
        )
    if profile.cpu.pin and profile.cpu.pin not in profile.cpu.clusters:
        known = ", ".join(profile.cpu.clusters) or "none defined"
        raise ConfigError(
            f"pin names cluster {profile.cpu.pin!r}, which [cpu.clusters] does not define "
            f"(clusters: {known})",
            source=source,
            key="cpu.pin",
        )
    if not profile.agent.python:
        raise ConfigError("python must name the interpreter, e.g. [\"python3\"]", source=source, key="agent.python")
    if (profile.energy.meter == "cpu-model" and profile.energy.cpu_max_w <= profile.energy.cpu_idle_w
            and profile.energy.cpu_model != "default"):
        raise ConfigError(
            "the cpu-model meter needs cpu_max_w > cpu_idle_w (watts at full load and at idle), "
            "or cpu_model = \"default\" for the documented default model",
            source=source,
            key="energy.cpu_max_w",
        )


def parse_profile(text: str, *, source: str, default_name: str = "") -> Profile:
    """Parse and validate profile TOML text; ``source`` names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", source=source) from None
    data.setdefault("name", default_name)
    if not data["name"]:
        raise ConfigError("the profile needs a name", source=source, key="name")
    if not isinstance(data["name"], str):
        raise ConfigError(f"expected a string, got {data['name']!r}", source=source, key="name")
    profile = _build(Profile, data, "", source)
    profile = dataclasses.replace(profile, path=source)
    _cross_check(profile, source)
    return profile


def known_devices(devices_dir: Path = DEVICES_DIR) -> list[str]:
    return sorted(p.stem for p in devices_dir.glob("*.toml"))


def resolve_device(name_or_path: str, devices_dir: Path = DEVICES_DIR) -> Path:
    """``NAME`` means ``devices/NAME.toml``; anything with a slash or .toml is a path."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"no profile file at {str(path)!r}", key="--device")
        return path
    path = devices_dir / f"{name_or_path}.toml"
    if not path.is_file():
        known = known_devices(devices_dir)
        near = difflib.get_close_matches(name_or_path, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(
            f"unknown device {name_or_path!r}; {hint}known profiles: {', '.join(known)} "
            f"(or give the path of a .toml profile)",
            key="--device",
        )
    return path


def load_profile(name_or_path: str, devices_dir: Path = DEVICES_DIR) -> Profile:
    """Load and validate a profile by device name or path."""
    path = resolve_device(name_or_path, devices_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read profile ({exc.strerror})", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("profile is not UTF-8 text", source=str(path)) from None
    return parse_profile(text, source=str(path), default_name=path.stem)
