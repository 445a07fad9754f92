"""Errors that mean "the user asked for something that cannot work".

Launch entry points turn a `UserError` into one line on stderr and exit code 2
(see `common.cli.main_guard`); library callers get an ordinary exception that
subclasses `ValueError`.
"""


class UserError(ValueError):
  """Bad input: the message names the problem and what to do about it."""


class AgreedUserError(UserError):
  """A UserError that every process of a multi-process run raises at the same point (a check of
  what they all see), so they can leave together, through JAX's orderly shutdown."""


def unknown_name(kind: str, name: str, known) -> UserError:
  """The error for a registry lookup that misses: names the choices."""
  return UserError(f'unknown {kind} {name!r}; choose one of: {", ".join(sorted(known))}')


def first_line(e: BaseException) -> str:
  """The first line of an exception's message (its type name if empty), for one-line errors."""
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__
