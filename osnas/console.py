"""The consoles osnas prints through, with Rich markup switched off.

Paths, names, config values and exception messages come from the user and may hold
``[...]`` (``data/[abc]``, ``[/x]``): with markup off they print as written, in plain
strings and in tables alike. Styling is opt-in: :func:`labelled` styles a fixed label
and prints the message after it as plain text.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

out = Console(markup=False)
err = Console(stderr=True, markup=False)


def labelled(label: str, style: str, message: str, console: Console = err) -> None:
    """``label`` in ``style``, then ``message`` verbatim (never read as markup)."""
    console.print(Text.assemble((label, style), " ", message), highlight=False, soft_wrap=True)


def warn(message: str, console: Console = err) -> None:
    labelled("warning:", "yellow", message, console)


def note(message: str, console: Console = err) -> None:
    labelled("note:", "yellow", message, console)
