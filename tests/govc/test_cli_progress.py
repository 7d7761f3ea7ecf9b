"""Progress bars: counts and a rate on a terminal, nothing otherwise or with -q."""

from __future__ import annotations

import io
import sys

import pytest

from govc.cli import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_counts_and_rate_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar("indexing objects") as update:
        for done in (1024, 2048, 3000):
            update(done, 3000)
    shown = terminal.getvalue()
    assert "indexing objects" in shown and "3000/3000" in shown and "/s" in shown


@pytest.mark.parametrize("tty, quiet", [(False, False), (True, True)])
def test_progress_bar_is_silent_off_a_terminal_or_when_quiet(
    monkeypatch: pytest.MonkeyPatch, tty: bool, quiet: bool
) -> None:
    stream = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress_bar("writing objects", quiet) as update:
        update(5, 10)
        update(10, 10)
    assert stream.getvalue() == ""
