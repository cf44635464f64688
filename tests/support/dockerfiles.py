"""A small Dockerfile reader for the image policy tests: instructions, ARG defaults, the image
config an instruction list produces (ENV evaluated in order, LABEL, USER, ENTRYPOINT, CMD), and
the config of a whole parent chain. Single-stage Dockerfiles only, which is what images/ has.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int


@dataclass
class ImageConfig:
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comment lines inside them skipped."""
    instructions, buffer, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return instructions


def read(path: Path) -> list[Instruction]:
    return parse(path.read_text())


def pairs(args: str) -> dict[str, str]:
    """`KEY=value KEY2="two words"` (ENV, LABEL, ARG) as a dict; quotes removed, $VARS kept."""
    out = {}
    for word in shlex.split(args, posix=True):
        key, sep, value = word.partition("=")
        out[key] = value if sep else ""
    return out


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the ones FROM can use)."""
    out = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            out.update(pairs(instruction.args))
    return out


def from_image(instructions: list[Instruction]) -> str:
    """The FROM reference with global ARG defaults substituted."""
    (first,) = [i for i in instructions if i.keyword == "FROM"]
    return substitute(first.args.split()[0], global_args(instructions))


def substitute(value: str, variables: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON) form: {args}"
    return value


def apply(instructions: list[Instruction], config: ImageConfig, build_args: dict | None = None) -> ImageConfig:
    """The config after `instructions`, starting from the parent's `config`."""
    args = dict(global_args(instructions))
    args.update(build_args or {})
    stage_args: dict[str, str] = {}
    past_from = False
    for instruction in instructions:
        keyword = instruction.keyword
        if keyword == "FROM":
            past_from = True
        elif keyword == "ARG" and past_from:
            for name, default in pairs(instruction.args).items():
                stage_args[name] = args.get(name, default)
        elif keyword == "ENV":
            scope = {**stage_args, **config.env}
            # every value of one ENV instruction sees the variables from before it
            values = {k: substitute(v, scope) for k, v in pairs(instruction.args).items()}
            config.env.update(values)
        elif keyword == "LABEL":
            scope = {**stage_args, **config.env}
            config.labels.update({k: substitute(v, scope) for k, v in pairs(instruction.args).items()})
        elif keyword == "USER":
            config.user = substitute(instruction.args, {**stage_args, **config.env})
        elif keyword == "ENTRYPOINT":
            config.entrypoint, config.cmd = exec_form(instruction.args), None
        elif keyword == "CMD":
            config.cmd = exec_form(instruction.args)
    return config


def chain_config(dockerfiles: list[Path], build_args: dict | None = None) -> ImageConfig:
    """The config of the last image of a parent chain, root Dockerfile first."""
    config = ImageConfig()
    for path in dockerfiles:
        config = apply(read(path), config, build_args)
    return config
