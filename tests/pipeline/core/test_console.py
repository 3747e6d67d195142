"""Status and error lines print user text as written: no rich markup or emoji code rewrites it."""

from __future__ import annotations

import io

import pytest

from pipe_embed.pipeline.core import console as out


@pytest.fixture()
def printed(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the shared console prints, as plain text."""
    buffer = io.StringIO()
    monkeypatch.setattr(out.console, "_file", buffer)  # undone to None: the console follows sys.stderr again
    out.set_verbosity(1)
    yield buffer
    out.set_verbosity(0)


USER_TEXT = "x:x:y :smile: [/x].csv [bold]term[/bold] \\[1] [red]"


@pytest.mark.parametrize("show", [out.info, out.warn, out.error, out.debug])
def test_user_text_is_printed_as_written(printed: io.StringIO, show):
    show(f"file {USER_TEXT} end")
    text = printed.getvalue()
    assert f"file {USER_TEXT} end" in text


def test_emoji_codes_stay_text(printed: io.StringIO):
    out.error("x:x:y and :thumbs_up:")
    assert printed.getvalue().strip() == "error: x:x:y and :thumbs_up:"


def test_pipe_own_leading_style_still_applies(printed: io.StringIO):
    out.info("[green]wrote[/green] compose@abc → data/[x]/[bold]compose[/bold]")
    assert printed.getvalue().strip() == "wrote compose@abc → data/[x]/[bold]compose[/bold]"


def test_a_progress_bar_shows_a_file_name_as_written(monkeypatch: pytest.MonkeyPatch):
    column = out._make_progress().columns[0]
    assert column.markup is False
