"""What `wework-admin` shows: one output and one progress display for every subcommand.

Human mode: results on stdout (tables, lines scripts already read), messages and progress on stderr.
`--json`: nothing on stdout but one JSON document at the end, whatever the outcome; messages and
progress still on stderr. Rich bars animate only on a terminal; on anything else (CI logs, pipes,
files) every line is plain text without control characters.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def terminal_console(stream: TextIO, **options: Any) -> Console:
    """A console that styles and animates only a terminal: FORCE_COLOR and the like do not put escape
    codes into a pipe or a log file."""
    return Console(file=stream, force_terminal=stream.isatty(), **options)


class ProgressDisplay:
    """The progress of a long command on stderr.

    `step(line)`: one line per step (with the time since the start); on a terminal a spinner also shows
    the latest step. `start/advance/done(label)`: counted work (rows per database), a bar per label
    on a terminal and one summary line per label elsewhere. Callable from worker threads. The bars
    start with the first call and end with `stop()` (before the results are printed).
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bars: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._status: Any = None
        self._stopped = False
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def _live(self) -> Progress | None:
        with self._lock:
            if self._bars is None and not self._stopped and self._console.is_terminal:
                # stdout stays the command's own: results and JSON never go into the live display.
                self._bars = Progress(SpinnerColumn(), TextColumn("{task.description:<24}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                      console=self._console, redirect_stdout=False, redirect_stderr=False)
                self._bars.start()
            return self._bars

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._bars is not None:
                self._bars.stop()
                self._bars = None

    def step(self, line: str) -> None:
        self._console.print(f"[{time.monotonic() - self._started:7.2f}s] {line}", markup=False, highlight=False,
                            soft_wrap=True)
        if self._live() is not None:
            with self._lock:
                if self._bars is None:
                    return
                if self._status is None:
                    self._status = self._bars.add_task(line[:60], total=None, count="")
                else:
                    self._bars.update(self._status, description=line[:60])

    def start(self, label: str, total: int | None, unit: str) -> None:
        if self._live() is not None:
            with self._lock:
                if self._bars is not None:
                    self._tasks[label] = self._bars.add_task(label, total=total, unit=unit, count=f"0 {unit}")

    def advance(self, label: str, amount: int) -> None:
        with self._lock:
            if self._bars is None or label not in self._tasks:
                return
            task_id = self._tasks[label]
            self._bars.advance(task_id, amount)
            task = next(t for t in self._bars.tasks if t.id == task_id)
            self._bars.update(task_id, count=f"{task.completed:>12,.0f} {task.fields['unit']}")

    def done(self, label: str, summary: str) -> None:
        with self._lock:
            if self._bars is not None and label in self._tasks:
                task_id = self._tasks[label]
                completed = max(next(t.completed for t in self._bars.tasks if t.id == task_id), 1)
                # Row totals are the server's estimates: end the bar at what was really done.
                self._bars.update(task_id, total=completed, completed=completed,
                                  description=f"{label} [green]done[/green]")
        self._console.print(f"[cyan]{escape(label):<16}[/cyan] {escape(summary)}", highlight=False, soft_wrap=True)


class Output:
    """The output of one subcommand run. Handlers call `line`/`table` for what humans read on stdout,
    `say`/`warn`/`error` for stderr, `result(...)` for the JSON document, `progress` for long work."""

    def __init__(self, command: str, as_json: bool, stderr: Console) -> None:
        self.command = command
        self.as_json = as_json
        self.console = stderr
        self.progress = ProgressDisplay(stderr)
        self._data: dict[str, Any] = {}

    def say(self, message: str, style: str | None = None) -> None:
        """Human text on stderr (`message` is rich markup when no style is given)."""
        self.console.print(f"[{style}]{escape(message)}[/{style}]" if style else message, highlight=False,
                           soft_wrap=True)

    def warn(self, message: str) -> None:
        self.say(message, "yellow")

    def error(self, message: str) -> None:
        """Why the command failed: on stderr, and as `error` in the JSON document."""
        self.say(message, "red")
        self._data.setdefault("error", message)

    def line(self, text: str) -> None:
        """A result line on stdout (scripts read some of these); not in JSON mode."""
        self.progress.stop()
        if not self.as_json:
            print(text, flush=True)

    def table(self, renderable: Any, width: int | None = None) -> None:
        self.progress.stop()
        if not self.as_json:
            terminal_console(sys.stdout, **({"width": width} if width else {})).print(renderable)

    def result(self, **fields: Any) -> None:
        """Keys of the JSON document (docs/operations-admin-cli.md lists them per subcommand)."""
        self._data.update(fields)

    def finish(self, exit_code: int) -> int:
        self.progress.stop()
        if self.as_json:
            document = {**self._data, "command": self.command, "ok": exit_code == 0, "exit_code": exit_code}
            sys.stdout.write(json.dumps(document, indent=1, default=str) + "\n")
            sys.stdout.flush()
        return exit_code
