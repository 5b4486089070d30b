"""How one restore setting is declared: a dataclass field whose metadata says everything about it.

`setting(default, help, ...)` returns a `dataclasses.field`; the `Settings` table (table.py) declares
each field with it once. The command-line options, the range and choice checks, the engines' setting
lists, the shipped defaults file and the reproduce command are all read from this metadata, so a new
setting is one declaration plus the code that uses it.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field
from typing import Any

from studio.errors import ConfigError

SPEC_KEY = "studio.setting"
"""The key of a field's metadata that holds its SettingSpec."""


@dataclass(frozen=True)
class SettingSpec:
    """What a setting means to users: its help, its allowed values, where it shows and who reads it."""

    help: str
    choices: tuple[str, ...] | None = None
    """The allowed values, when they are a fixed list."""
    low: float | None = None
    """The smallest allowed value (None: no lower bound)."""
    high: float | None = None
    """The largest allowed value (None: no upper bound)."""
    off: float | None = None
    """A value allowed outside [low, high] because it turns the feature off (--tile 0)."""
    expect: str | None = None
    """The words after "expected" in the range error; default "LOW to HIGH" or "LOW or more"."""
    short: tuple[str, ...] = ()
    """Short flags (-s)."""
    flag: str | None = None
    """The long flag when it is not the field name (ensemble: --model)."""
    shown_default: str | None = None
    """How the help states the default when the value alone says too little ("from --strength")."""
    panel: str | None = None
    """The panel of `studio restore --help` (None: the main Options panel)."""
    group: str | None = None
    """Which engines read it: "sampling" (every diffusion engine), "adapter", "stablesr", "supir", "onestep";
    None: all."""
    generated: bool = True
    """False: the restore command declares this option itself (--model, --blend, --var parse text)."""
    reproduce: bool = True
    """False: the reproduce command leaves it out (a preset is rendered into the values it set)."""
    names_file: bool = False
    """True: the value may name a file or folder on the machine that runs the job (weights, a model folder);
    `studio serve` then accepts only registry names from its clients, never paths."""
    secret: bool = False
    """True: a credential; reports, provenance and `--dry-run` show that it is set, never its value."""


def setting(default: Any = None, help: str = "", *, factory: Any = None, **spec: Any) -> Any:
    """A Settings field declared once: its default (or `factory`) and its SettingSpec keywords."""
    metadata = {SPEC_KEY: SettingSpec(help, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata, repr=not spec.get("secret", False))


def spec_of(item: Field) -> SettingSpec:
    return item.metadata[SPEC_KEY]


def declared_type(item: Field) -> str:
    """The field's value type without `| None`: "float", "list[str]", "dict[str, str]"..."""
    return str(item.type).split("|")[0].strip()


def long_flag(item: Field) -> str:
    return spec_of(item).flag or "--" + item.name.replace("_", "-")


def help_text(item: Field) -> str:
    """The option's help with its default appended ("Default: 25."), as `studio restore --help` shows it."""
    spec = spec_of(item)
    shown = spec.shown_default
    if shown is None and isinstance(item.default, bool):
        shown = "on" if item.default else "off"
    elif shown is None and isinstance(item.default, float):
        shown = f"{item.default:g}"
    elif shown is None and isinstance(item.default, (int, str)) and item.default != "":
        shown = str(item.default)
    return f"{spec.help} Default: {shown}." if shown is not None else spec.help


def check_value(item: Field, value: Any) -> None:
    """The field's choices and range: a ConfigError naming the option, the value and what is allowed."""
    spec = spec_of(item)
    if value is None:
        return
    flag = long_flag(item)
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{flag} {value!r}: expected one of {', '.join(spec.choices)}")
    if (spec.low is None and spec.high is None) or (spec.off is not None and value == spec.off):
        return
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ConfigError(f"{flag} {value}: expected {spec.expect or _range_words(spec)}")


def _range_words(spec: SettingSpec) -> str:
    if spec.high is None:
        return f"{spec.low:g} or more"
    return f"{spec.low:g} to {spec.high:g}"


def command_args(item: Field, value: Any) -> list[str]:
    """`value` written as command-line arguments that set it again (--no-caption, --model a --model b)."""
    flag = long_flag(item)
    if isinstance(value, bool):
        return [flag if value else f"--no-{flag[2:]}"]
    if isinstance(value, list) and declared_type(item) == "list[str]":
        return [part for member in value for part in (flag, member)]
    if isinstance(value, list):
        return [flag, ",".join(f"{number:g}" for number in value)]
    return [flag, str(value)]
