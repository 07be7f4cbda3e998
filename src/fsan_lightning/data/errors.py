"""Exceptions raised by the data layer."""
from __future__ import annotations


class DataFormatError(ValueError):
    """A data file cannot be used as it is.

    The message always names the file and, where it applies, the record (video id, line number or
    list index) and the key that is wrong, so the user can fix the file without reading our code.
    """

    def __init__(self, file, problem: str, record=None, key: str | None = None):
        self.file = str(file)
        self.record = record
        self.key = key
        self.problem = problem
        where = self.file
        if record is not None:
            where += f", record {record}"
        if key is not None:
            where += f", key {key!r}"
        super().__init__(f"{where}: {problem}")
