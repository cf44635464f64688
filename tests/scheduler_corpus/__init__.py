"""Notebooks that `gpulab run` must run exactly as bare `papermill` does (built here, written with `write`).

Each case is a notebook, the files beside it, and parameter/kernel/cwd options written once
and spelled for each tool (`papermill_args`, `gpulab_args`): Papermill's `-p NAME VALUE` is
gpulab's `-p NAME=VALUE`; everything else is the same word.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

PYTHON = {"name": "python3", "display_name": "Python 3", "language": "python"}
R_KERNEL = {"name": "ir", "display_name": "R", "language": "R"}


@dataclass(frozen=True)
class Case:
    name: str
    cells: tuple  # ("code" | "markdown" | "raw" | "parameters", source)
    options: tuple = ()  # ("p", name, value) ("r", name, value) ("y", text) ("b", text) ("f", file) ("k", kernel) ("cwd", dir)
    kernelspec: dict | None = field(default_factory=lambda: dict(PYTHON))
    files: tuple = ()  # (relative path, text) beside the notebook

    def notebook(self) -> dict:
        nb = nbformat.v4.new_notebook()
        for kind, source in self.cells:
            if kind == "markdown":
                nb.cells.append(nbformat.v4.new_markdown_cell(source))
            elif kind == "raw":
                nb.cells.append(nbformat.v4.new_raw_cell(source))
            else:
                cell = nbformat.v4.new_code_cell(source)
                if kind == "parameters":
                    cell.metadata["tags"] = ["parameters"]
                nb.cells.append(cell)
        if self.kernelspec is not None:
            nb.metadata["kernelspec"] = self.kernelspec
        return json.loads(nbformat.writes(nb))

    def write(self, folder: Path) -> Path:
        """The notebook and its files in `folder`; returns the notebook's path."""
        folder.mkdir(parents=True, exist_ok=True)
        for relative, text in self.files:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
        path = folder / f"{self.name}.ipynb"
        path.write_text(json.dumps(self.notebook()))
        return path

    def papermill_args(self, folder: Path) -> list[str]:
        return [arg for option in self.options for arg in _spell(option, folder, pairs=False)]

    def gpulab_args(self, folder: Path) -> list[str]:
        return [arg for option in self.options for arg in _spell(option, folder, pairs=True)]


def _spell(option: tuple, folder: Path, pairs: bool) -> list[str]:
    kind, *rest = option
    if kind in ("p", "r"):
        name, value = rest
        return [f"-{kind}", f"{name}={value}"] if pairs else [f"-{kind}", name, value]
    if kind == "cwd":
        return ["--cwd", str(folder / rest[0])]  # absolute: Papermill's is from its cwd, gpulab's from home
    return [f"-{kind}", rest[0]]


B64 = base64.b64encode(b"batch: 32\nsizes: [1, 2, 3]\n").decode()

CORPUS = [
    Case("success_with_parameters", (("parameters", "lr = 0.1\nepochs = 1"), ("code", "print('lr', lr, 'epochs', epochs)")),
         (("p", "lr", "0.01"), ("p", "epochs", "3"))),
    Case("error_in_first_cell", (("code", "1 / 0"), ("code", "print('never')"))),
    Case("error_in_a_middle_cell", (("code", "x = 1"), ("markdown", "# notes"), ("code", "print(x)"),
                                    ("code", "raise ValueError('bad input')"), ("code", "print('never')"))),
    Case("error_after_injected_parameters", (("code", "import math"), ("parameters", "alpha = 0"),
                                             ("code", "print(alpha)"), ("code", "math.sqrt(alpha)")),
         (("p", "alpha", "-1"),)),
    Case("sys_exit_0", (("code", "print('before')"), ("code", "import sys; sys.exit(0)"), ("code", "print('after')"))),
    Case("sys_exit_1", (("code", "print('before')"), ("code", "import sys; sys.exit(1)"), ("code", "print('after')"))),
    Case("keyboard_interrupt", (("code", "x = 1"), ("code", "raise KeyboardInterrupt"))),
    Case("magics", (("code", "%time total = sum(range(1000))"), ("code", "%%capture captured\nprint('hidden')"),
                    ("code", "!echo from-a-shell"), ("code", "print(total, captured.stdout.strip())"))),
    Case("no_parameters_cell", (("code", "print('x is', x)"),), (("p", "x", "5"),)),
    Case("papermill_typed_values", (("parameters", "a = b = c = d = e = f = g = h = i = j = None"),
                                    ("code", "print(repr([a, b, c, d, e, f, g, h, i, j]))")),
         (("p", "a", "None"), ("p", "b", "null"), ("p", "c", "true"), ("p", "d", "[1, 2]"), ("p", "e", "0x1F"),
          ("p", "f", "#tag"), ("p", "g", "Run: baseline"), ("p", "h", "2024-01-01"), ("p", "i", "1e3"),
          ("r", "j", "42"))),
    Case("complex_yaml_parameters", (("parameters", "config = {}\nwhen = ''\nbatch = 0\nsizes = []"),
                                     ("code", "print(config['layers'][1], when, batch, sizes, extra)")),
         (("y", "config: {layers: [64, 32], opt: {name: adam, lr: 1.0e-3}}\nwhen: 2024-01-01"),
          ("b", B64), ("f", "params.yaml"), ("p", "batch", "64")),
         files=(("params.yaml", "extra: {nested: [true, null, 'x']}\nbatch: 8\n"),)),
    Case("non_python_kernel_not_installed", (("code", "print('hello from R')"),), kernelspec=dict(R_KERNEL)),
    Case("kernel_chosen_with_k", (("code", "import sys; print(sys.version_info[0])"),), (("k", "python3"),),
         kernelspec=dict(R_KERNEL)),
    Case("no_kernelspec", (("code", "print(1)"),), kernelspec=None),
    Case("reads_a_file_beside_it", (("code", "print(open('data.csv').read().splitlines()[1])"),),
         files=(("data.csv", "a,b\n1,2\n"),)),
    Case("cwd_option", (("code", "import os; print(open('inside.txt').read(), os.path.basename(os.getcwd()))"),),
         (("cwd", "workdir"),), files=(("workdir/inside.txt", "from workdir"),)),
    Case("name_error_and_display", (("code", "from IPython.display import display; display({'a': 1})"),
                                    ("raw", "raw text"), ("code", "import sys; print('err', file=sys.stderr)"),
                                    ("code", "undefined_name + 1"))),
    Case("empty_notebook", ()),
]
