"""The one exception every gate raises: a refusal with a stable code and a sentence for people.

The code goes into the audit entry and the problem body (`refusal`), the message to the terminal.
"""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(Exception):
    """A gate said no. Nothing was changed by the act that was refused."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
