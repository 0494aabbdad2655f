"""The output region of the Job screen: a bounded ring of lines, drawn line by line.

Only the visible lines are rendered (Textual's line API), and the view catches up with
the buffer on a timer, not per chunk: a job printing a million lines costs the interface
a redraw a frame, whatever the rate. Scrolled to the top of what the buffer holds, the
view asks (`WantsEarlier`) for a page of earlier output.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from hodei_api.v1 import logs_pb2
from hodeictl.tui.store import OutputBuffer, Position

# A line wider than this is cut when drawn (the saved file keeps it whole).
MAX_WIDTH = 4000
REFRESH_SECONDS = 1 / 20


class OutputView(ScrollView, can_focus=True):
    """A job's output: stdout plain, stderr in its own colour, follow or pause."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "output--stderr", "output--note", "output--match",
    }
    # Follow/pause and End are priority bindings: the app runs them as the key arrives
    # (they hold only while the view has focus). A plain binding runs once the key has
    # bubbled through the view and the screen, each a message queue of its own, and
    # while output streams in or the screen mounts (the footer recomposing) those
    # queues wait behind other work. The keys that scroll back stay plain: they start
    # fetching earlier pages, which wants them in order with the view's own messages.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "toggle_follow", "Follow/pause", priority=True),
        Binding("g,home", "jump_start", "Start", show=False),
        Binding("G,end", "jump_end", "End", show=False, priority=True),
        Binding("up", "scroll_up", show=False),
        Binding("down", "scroll_down", show=False),
        Binding("pageup", "page_up", show=False),
        Binding("pagedown", "page_down", show=False),
    ]

    following: reactive[bool] = reactive(True)
    search_term: reactive[str] = reactive("")

    class WantsEarlier(Message):
        """The view is at the top of the buffer, and the output goes back further.

        `start` is where the first line held then began: a request that waited in a
        queue while a page came in front is stale (its start is no longer the first).
        """

        def __init__(self, start: Position | None) -> None:
            super().__init__()
            self.start = start

    def __init__(self, buffer: OutputBuffer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.buffer = buffer
        self._seen_total = -1
        self._seen_dropped = 0
        self._seen_prepended = 0
        self._width = 1
        # A page of earlier lines was asked for: not again until the reader scrolls up
        # once more, or the screen says the request was not taken (`ask_again`).
        self._asked = False

    def on_mount(self) -> None:
        self.set_interval(REFRESH_SECONDS, self.catch_up)

    def reset(self) -> None:
        """Forget what was drawn (the buffer was cleared)."""
        self._seen_total = -1
        self._seen_dropped = self._seen_prepended = 0
        self._width = 1
        self._asked = False
        self.virtual_size = Size(1, 0)
        self.scroll_home(animate=False, immediate=True)

    def catch_up(self) -> None:
        """Bring the view up to the buffer (called on a timer; cheap when nothing changed)."""
        if self.buffer.total != self._seen_total:
            self._seen_total = self.buffer.total
            dropped = self.buffer.dropped - self._seen_dropped
            self._seen_dropped = self.buffer.dropped
            for line in list(self.buffer.lines)[-200:]:
                self._width = max(self._width, min(len(line.text), MAX_WIDTH))
            self.virtual_size = Size(self._width, len(self.buffer.lines))
            if dropped and not self.following:
                # Keep the lines in view where they are while the ring drops its oldest.
                self.scroll_to(y=max(self.scroll_y - dropped, 0), animate=False,
                               immediate=True)
            self.refresh()
        if self.buffer.prepended != self._seen_prepended:
            # Earlier lines came in front: keep the lines in view where they are.
            added = self.buffer.prepended - self._seen_prepended
            self._seen_prepended = self.buffer.prepended
            for line in list(self.buffer.lines)[:added]:
                self._width = max(self._width, min(len(line.text), MAX_WIDTH))
            self.virtual_size = Size(self._width, len(self.buffer.lines))
            kept = self.scroll_y + added
            self.scroll_to(y=kept, animate=False, immediate=True)
            # Again once the layout has taken the new size: a layout pass measured before
            # it can otherwise leave the view clamped at the top.
            self.call_after_refresh(self._keep, kept)
            self.refresh()
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif not self.following and self.scroll_y <= 0 and self.buffer.earlier \
                and self.buffer.lines and not self._asked:
            self._asked = True
            self.post_message(self.WantsEarlier(self.buffer.first_start()))

    def _keep(self, y: float) -> None:
        if not self.following and self.scroll_y < y:
            self.scroll_to(y=y, animate=False, immediate=True)

    def ask_again(self) -> None:
        """The last request for earlier lines was not taken (stale, or too soon after a
        failed page): the view asks again while it stays at the top."""
        self._asked = False

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        lines = self.buffer.lines
        if index >= len(lines):
            return Strip.blank(width, self.rich_style)
        line = lines[index]
        text = line.text.expandtabs(8)[:MAX_WIDTH]
        base = self.rich_style
        if line.stream == logs_pb2.LOG_STREAM_STDERR:
            style = base + self.get_component_rich_style("output--stderr")
        elif line.stream == logs_pb2.LOG_STREAM_UNSPECIFIED:
            style = base + self.get_component_rich_style("output--note")
        else:
            style = base
        segments = self._highlight(text, style)
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, base)

    def _highlight(self, text: str, style: Style) -> list[Segment]:
        term = self.search_term
        if not term or term.lower() not in text.lower():
            return [Segment(text, style)]
        match = style + self.get_component_rich_style("output--match")
        segments: list[Segment] = []
        lower, needle, start = text.lower(), term.lower(), 0
        while (found := lower.find(needle, start)) >= 0:
            segments += [Segment(text[start:found], style),
                         Segment(text[found:found + len(term)], match)]
            start = found + len(term)
        segments.append(Segment(text[start:], style))
        return segments

    def watch_following(self, following: bool) -> None:
        if following:
            self.catch_up()

    def watch_search_term(self) -> None:
        self.refresh()

    def action_toggle_follow(self) -> None:
        self.following = not self.following

    def action_jump_start(self) -> None:
        self.following = False
        self._asked = False
        self.scroll_home(animate=False, immediate=True)

    def action_jump_end(self) -> None:
        self.following = True

    def action_scroll_up(self) -> None:
        self.following = False
        self._asked = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.following = False
        self._asked = False
        super().action_page_up()

    def on_mouse_scroll_up(self) -> None:
        self.following = False
        self._asked = False

    def find(self, term: str, backwards: bool = False) -> bool:
        """Scroll to the next line (from the top of the view) holding `term`."""
        self.search_term = term
        if not term:
            return False
        lines = list(self.buffer.lines)
        needle = term.lower()
        start = int(self.scroll_y)
        order = (range(start - 1, -1, -1) if backwards
                 else range(start + 1, len(lines)))
        for index in order:
            if needle in lines[index].text.lower():
                self.following = False
                self.scroll_to(y=index, animate=False, immediate=True)
                return True
        return False
