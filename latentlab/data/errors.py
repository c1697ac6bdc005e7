"""The one error every dataset loader raises when its files are not on disk."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not on disk and could not be downloaded; the message says what to put where."""
