"""A progress bar for the command line: one line redrawn in a terminal, one line per event
otherwise (logs, CI)."""

import sys

from readings.models import ReadingTask, TaskStatus


class ProgressBar:
    def __init__(self, total: int, stream=None, width: int = 24):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.interactive = self.stream.isatty()

    def __call__(self, task: ReadingTask, status: str) -> None:
        if status in (TaskStatus.DONE, TaskStatus.FAILED):
            self.done += 1
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} tasks  {task}: {status}"
        if self.interactive:
            self.stream.write("\r" + line.ljust(100))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
