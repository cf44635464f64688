"""The runner's partial notebook: when it is sent while a run goes on (a replaceable clock)."""

from __future__ import annotations

import json

import nbformat

from gpulab.extensions.scheduler.execution import PARTIAL_EVERY_SECONDS, PartialNotebook


def test_the_partial_notebook_goes_at_a_cell_start_after_work_was_done_then_at_most_every_interval():
    sent, now = [], [100.0]
    partial = PartialNotebook(sent.append, clock=lambda: now[0])
    partial.cell_started()  # before the kernel: nothing to send
    partial.started(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]))
    partial.cell_started()  # nothing has run yet
    assert sent == []
    partial.cell_done()
    partial.cell_started()  # the first cell ended: its output is worth keeping now
    assert len(sent) == 1 and json.loads(sent[0])["cells"][0]["source"] == ["1"]
    partial.cell_done()
    now[0] += PARTIAL_EVERY_SECONDS - 1
    partial.cell_started()
    assert len(sent) == 1
    now[0] += 1
    partial.cell_started()
    assert len(sent) == 2
    partial.cell_started()  # no cell ended since
    assert len(sent) == 2


def test_a_failed_send_does_not_fail_the_run(capsys):
    def refuse(data: bytes) -> None:
        raise ConnectionRefusedError("scheduler away")

    partial = PartialNotebook(refuse)
    partial.started(nbformat.v4.new_notebook())
    partial.send()
    assert "could not send the partial notebook: scheduler away" in capsys.readouterr().err
