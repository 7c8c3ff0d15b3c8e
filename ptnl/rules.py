"""Value rules of config keys: ``(test, what it takes)`` pairs, one idiom for the keys ``ptnl.config``
lists and the loss options ``ptnl.losses`` declares next to each loss. Imports nothing."""
from typing import Callable, Tuple

Rule = Tuple[Callable[[object], bool], str]
ANY = None  # any value of the key's type (yacs checks the type when the value is merged)


def rule(test: Callable[[object], bool], takes: str) -> Rule:
    """A rule: ``test(value)`` is True for a good value; ``takes`` says what a good value is, in words."""
    return (test, takes)


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def one_of(*choices) -> Rule:
    return rule(lambda v: v in choices, "one of {}".format(tuple(choices)))  # "one of ('a', 'b')"


def int_at_least(low) -> Rule:
    return rule(lambda v: is_int(v) and v >= low, "an integer >= {}".format(low))


def above(low) -> Rule:
    return rule(lambda v: is_number(v) and v > low, "a number > {}".format(low))


def at_least(low) -> Rule:
    return rule(lambda v: is_number(v) and v >= low, "a number >= {}".format(low))


def broken(key: str, rule_: Rule, value) -> str:
    """The one-line message for ``value`` of ``key`` breaking ``rule_`` ('' when it does not)."""
    if rule_ is ANY or rule_[0](value):
        return ""
    return "{} must be {}, got {!r}".format(key, rule_[1], value)
