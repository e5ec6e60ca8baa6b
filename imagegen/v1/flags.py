"""Settings as a table of flags: one declaration per setting gives its flag, environment variable, type,
default, choices, bounds and help, and `FlagParser` builds the parser, the fallbacks and the checks.

Pure argparse, so the services and the gateway both build their settings with it. A flag wins over
its variable, a variable over the default; variables are read when parsing, never at import. Checks
that join several settings (a certificate needs its key) stay with the caller, after `read`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class Flag:
    flag: str  # "--max-steps"
    env: str | None = None  # "IMAGEGEN_MAX_STEPS", read when the flag is not given; None: a flag only
    type: Callable[[str], Any] = str  # the flag's or the variable's text -> the value
    default: Any = None  # the value when neither is given (a value, not text: never parsed)
    help: str = ""
    choices: Sequence | None = None
    min: float | None = None  # bounds, checked whichever way the value came
    max: float | None = None
    bounds: str = ""  # the error's wording of the bounds, when "at least MIN" or "MIN..MAX" says too little
    dest: str = ""  # the setting's attribute after parsing; "" = the flag's name (--max-steps: max_steps)
    # "store_false" / "store_true": a switch without a value (--no-save, --compile); its variable still uses type
    action: str = "store"

    @property
    def name(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    def bounds_error(self, value) -> str | None:
        """What is wrong with `value`'s bounds, naming the flag; None when within them (or unset)."""
        if value is None:
            return None
        if (self.min is None or value >= self.min) and (self.max is None or value <= self.max):
            return None
        if self.bounds:
            wording = self.bounds
        elif self.max is None:
            wording = f"at least {self.min}"
        elif self.min is None:
            wording = f"at most {self.max}"
        else:
            wording = f"{self.min}..{self.max}"
        return f"{self.flag} must be {wording}"


def boolean(text: str) -> bool:
    """A true-or-false setting's text: 1/true/yes/on or 0/false/no/off, in any case."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose arguments are Flags; `read` gives every setting its value.

    `hide_prefix` is left out of the [VARIABLE] note each help text ends with (the services' epilog
    says their variables are IMAGEGEN_ + the note).
    """

    def __init__(self, *, hide_prefix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.hide_prefix = hide_prefix
        self.flags: list[Flag] = []

    def add_flags(self, flags: Sequence[Flag], title: str | None = None) -> None:
        """Declare `flags`, under their own heading in --help when `title` is given."""
        group = self.add_argument_group(title) if title else self
        for flag in flags:
            # SUPPRESS: a flag not given leaves no attribute, so `read` knows to look further.
            options = dict(dest=flag.name, action=flag.action, help=self._help(flag),
                           default=argparse.SUPPRESS)
            if flag.action == "store":
                options.update(type=flag.type, choices=flag.choices)
                if flag.choices is None:  # usage names the flag's value after the flag, not its dest
                    options.update(metavar=flag.flag.lstrip("-").replace("-", "_").upper())
            group.add_argument(flag.flag, **options)
            self.flags.append(flag)

    def _help(self, flag: Flag) -> str:
        if not flag.env:
            return flag.help
        switch = {"store_false": "=0", "store_true": "=1"}.get(flag.action, "")
        note = flag.env.removeprefix(self.hide_prefix) + switch
        return f"{flag.help} [{note}]" if flag.help else f"[{note}]"

    def read(self, argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
        """Parse `argv`; a flag not given takes its variable from `environ`, else its default. Every
        value is checked against its choices and bounds; a wrong one exits with usage, naming it."""
        args = self.parse_args(argv)
        for flag in self.flags:
            if not hasattr(args, flag.name):
                text = environ.get(flag.env) if flag.env else None
                setattr(args, flag.name, flag.default if text is None else self._from_env(flag, text))
            problem = flag.bounds_error(getattr(args, flag.name))
            if problem:
                self.error(problem)
        return args

    def _from_env(self, flag: Flag, text: str):
        # Worded as argparse words a flag's bad value, but naming the variable it came from.
        try:
            value = flag.type(text)
        except argparse.ArgumentTypeError as exc:
            self.error(f"{flag.env}: {exc}")
        except (TypeError, ValueError):
            kind = getattr(flag.type, "__name__", repr(flag.type))
            self.error(f"{flag.env}: invalid {kind} value: {text!r}")
        if flag.choices is not None and value not in flag.choices:
            choices = ", ".join(map(repr, flag.choices))
            self.error(f"{flag.env}: invalid choice: {text!r} (choose from {choices})")
        return value
