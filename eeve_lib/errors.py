"""Errors that name the problem and the fix.

Every error raised on bad input derives from :class:`EeveError`, so the runner and the
command line can print its message without a traceback. Every chapter raises them on bad input.
"""


class EeveError(Exception):
    """A problem the user can fix; the message says what and how."""


class ProfileError(EeveError):
    """An unknown profile, an unknown key or a bad value in a profile file."""


class CorpusError(EeveError):
    """A corpus that is missing, unreadable, empty, undecodable or fails its checksum."""


class OfflineError(EeveError):
    """Something must come from the Hugging Face hub, and the hub cannot be reached."""


class TokenizerError(EeveError):
    """A tokenizer of an unsupported kind, or one that does not match its model."""


class VocabularyError(EeveError):
    """The vocabulary-expansion loop found nothing to add, or removed everything."""


class TrainingError(EeveError):
    """A bad stage schedule, or a checkpoint that belongs to another configuration."""
