"""Parameters as Papermill reads them, compared with Papermill itself (its CLI, `--prepare-only`: no kernel)."""

from __future__ import annotations

import base64
import json
import math

import nbformat
import papermill
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from papermill.cli import _resolve_type
from papermill.cli import papermill as papermill_cli

from gpulab.extensions.scheduler.cli import one_line
from gpulab.extensions.scheduler.execution import input_cell_index
from gpulab.extensions.scheduler.parameters import ParameterError, from_strings, infer, merge
from gpulab.extensions.scheduler.run_options import RunOptions, attach, detach, working_directory
from gpulab.extensions.scheduler.schemas import CreateRun, RunNow


def same(a, b) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.from_regex(r"\s*[+-]?[0-9_.eE]{1,8}\s*", fullmatch=True),
                 st.sampled_from(["True", "False", "None", "true", "null", "0x1F", "1_000", "inf", "nan", "1e3"])))
def test_p_infers_types_exactly_as_papermill(text):
    assert same(infer(text), _resolve_type(text))


def notebook_file(tmp_path) -> str:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("a = 0")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(a)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "in.ipynb"
    path.write_text(nbformat.writes(nb))
    return str(path)


def injected(path) -> str:
    cells = json.loads(open(path).read())["cells"]
    return next("".join(c["source"]) for c in cells if "injected-parameters" in c["metadata"].get("tags", []))


# (papermill's arguments, gpulab's) for the same parameters
CASES = [
    (["-p", "v", "None"], dict(inferred=["v=None"])),
    (["-p", "v", "null"], dict(inferred=["v=null"])),
    (["-p", "v", "true"], dict(inferred=["v=true"])),
    (["-p", "v", "True"], dict(inferred=["v=True"])),
    (["-p", "v", "[1, 2]"], dict(inferred=["v=[1, 2]"])),
    (["-p", "v", "0x1F"], dict(inferred=["v=0x1F"])),
    (["-p", "v", "#tag"], dict(inferred=["v=#tag"])),
    (["-p", "v", "Run: baseline"], dict(inferred=["v=Run: baseline"])),
    (["-p", "d", "2024-01-01"], dict(inferred=["d=2024-01-01"])),
    (["-p", "v", "1_000"], dict(inferred=["v=1_000"])),
    (["-p", "v", " 7 "], dict(inferred=["v= 7 "])),
    (["-p", "v", "1e3"], dict(inferred=["v=1e3"])),
    (["-p", "v", 'say "hi"\\n'], dict(inferred=['v=say "hi"\\n'])),
    (["-p", "v", "a=b"], dict(inferred=["v=a=b"])),
    (["-r", "v", "3"], dict(raw=["v=3"])),
    (["-y", "d: 2024-01-01\nlayers: [64, 32]\nopt: {lr: 0.1, name: adam}\nflag: yes\nn: ~"],
     dict(yaml_texts=["d: 2024-01-01\nlayers: [64, 32]\nopt: {lr: 0.1, name: adam}\nflag: yes\nn: ~"])),
    # what Papermill injects as text, or with string keys
    (["-y", "raw: !!binary aGk=\npairs: !!omap [a: 1, b: [2]]\nm: {1: a, true: [x], 2.5: {3: c}}"],
     dict(yaml_texts=["raw: !!binary aGk=\npairs: !!omap [a: 1, b: [2]]\nm: {1: a, true: [x], 2.5: {3: c}}"])),
    (["-b", base64.b64encode(b"x: 1\ny: [a, b]").decode()], dict(base64_yaml=[base64.b64encode(b"x: 1\ny: [a, b]").decode()])),
    # precedence: -b < -f < -y < -p < -r, whatever the order on the command line
    (["-r", "v", "raw", "-p", "v", "1", "-y", "v: 2", "-b", base64.b64encode(b"v: 3").decode()],
     dict(raw=["v=raw"], inferred=["v=1"], yaml_texts=["v: 2"], base64_yaml=[base64.b64encode(b"v: 3").decode()])),
    (["-p", "v", "1", "-y", "v: 2\nw: 3"], dict(inferred=["v=1"], yaml_texts=["v: 2\nw: 3"])),
]


@pytest.mark.parametrize("papermill_args, options", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_the_injected_cell_is_papermills(tmp_path, papermill_args, options):
    source = notebook_file(tmp_path)
    result = CliRunner().invoke(papermill_cli, [source, str(tmp_path / "pm.ipynb"), "--prepare-only",
                                                *papermill_args])
    assert result.exit_code == 0, result.output
    # through JSON, as the parameters travel to the scheduler and the runner
    sent = json.loads(json.dumps(merge(**options)))
    papermill.execute_notebook(source, str(tmp_path / "gpulab.ipynb"), parameters=sent, prepare_only=True)
    assert injected(tmp_path / "gpulab.ipynb") == injected(tmp_path / "pm.ipynb")


def test_yaml_files_are_read_as_papermill_reads_them(tmp_path):
    source = notebook_file(tmp_path)
    (tmp_path / "p.yaml").write_text("d: 2024-01-01\nv: [1, {a: b}]\n")
    CliRunner().invoke(papermill_cli, [source, str(tmp_path / "pm.ipynb"), "--prepare-only", "-f",
                                       str(tmp_path / "p.yaml")])
    sent = merge(yaml_files=[("p.yaml", (tmp_path / "p.yaml").read_text())])
    papermill.execute_notebook(source, str(tmp_path / "gpulab.ipynb"), parameters=sent, prepare_only=True)
    assert injected(tmp_path / "gpulab.ipynb") == injected(tmp_path / "pm.ipynb")


@pytest.mark.parametrize("options, message", [
    (dict(inferred=["novalue"]), "-p 'novalue': expected NAME=VALUE"),
    (dict(inferred=["not-a-name=1"]), "parameter name 'not-a-name' is not a Python identifier"),
    (dict(yaml_texts=["[1, 2]"]), "expected a YAML mapping"),
    (dict(yaml_texts=["a: [1"]), "not YAML"),
    (dict(base64_yaml=["***"]), "not base64"),
    (dict(inferred=["x=nan"]), "JSON has no NaN"),
])
def test_what_cannot_be_carried_faithfully_is_refused_with_the_reason(options, message):
    with pytest.raises(ParameterError, match=message):
        merge(**options)


def test_the_api_refuses_the_same_and_the_lab_form_infers_like_p():
    with pytest.raises(ValueError, match="not a Python identifier"):
        RunNow(parameters={"a b": 1})
    with pytest.raises(ValueError, match="JSON has no NaN"):
        RunNow(parameters={"x": float("inf")})
    assert from_strings({"a": "0.5", "b": "None", "d": "2024-01-01", "e": "[1]", "n": 3}) == \
        {"a": 0.5, "b": None, "d": "2024-01-01", "e": "[1]", "n": 3}


def test_run_options_ride_in_the_notebook_and_come_out_unchanged():
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"kernelspec": {"name": "ir"}}}
    request = CreateRun(name="x", notebook=nb, kernel_name="python3", cwd="data", input_path="a/b.ipynb")
    plain, options = detach(request.notebook)
    assert plain == nb and options == RunOptions("python3", "data", "a/b.ipynb")
    assert detach(attach(nb, RunOptions()))[0] == nb
    assert working_directory(options, "/home/u") == ("/home/u/data", True)
    assert working_directory(RunOptions(input_path="a/b.ipynb"), "/home/u") == ("/home/u/a", False)
    assert working_directory(RunOptions(input_path="/srv/p/b.ipynb"), "/home/u") == ("/srv/p", False)
    assert working_directory(RunOptions(), "/home/u") == ("/home/u", False)


def cell(source: str, *tags: str) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)}, "outputs": []}


def test_a_failing_cell_is_numbered_as_in_the_input_notebook():
    params, work, fail = cell("a = 1", "parameters"), cell("x = 1"), cell("1/0")
    injected_cell = cell("a = 2", "injected-parameters")
    # Papermill's cell after the parameters cell shifts what it executes by one
    assert input_cell_index([params, work, fail], [params, injected_cell, work, fail], 3) == 2
    assert input_cell_index([params, work, fail], [params, injected_cell, work, fail], 1) is None
    # no parameters cell: Papermill's goes first; no parameters: nothing added
    assert input_cell_index([work, fail], [injected_cell, work, fail], 2) == 1
    assert input_cell_index([work, fail], [work, fail], 1) == 1
    # an output of Papermill used as input: its markers go, its old injected cell is replaced in place
    marker = {"cell_type": "markdown", "source": "!", "metadata": {"tags": ["papermill-error-cell-tag"]}}
    old = cell("a = 9", "injected-parameters")
    assert input_cell_index([marker, params, old, marker, fail], [params, injected_cell, fail], 2) == 4


def test_html_error_pages_become_one_line():
    page = "<html><head><title>404: Not Found</title></head><body><h1>404</h1>\n<p>gone</p></body></html>"
    assert one_line(page) == "404: Not Found"
    assert one_line("<p>a &amp;\n b</p>") == "a & b"
    assert one_line("plain\nmessage") == "plain message"
