"""User-facing errors: the CLI prints their message and exits non-zero, never a traceback."""


class AmgError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class MediaError(AmgError):
    """A media file is missing, unreadable, corrupt, or has no usable stream."""


class TrackingError(AmgError):
    """The avatar video cannot be tracked (no face, too few frames with a face, ...)."""


class DamagedFileError(AmgError):
    """A file AMG wrote earlier can no longer be read (truncated, overwritten, from another program)."""

    def __init__(self, path, reason: str, remedy: str):
        super().__init__(f"{path} is damaged ({reason}): {remedy}.")
        self.path, self.reason = path, reason
