"""The one registry idiom of this project: a decorator that registers by name, ``available_*()``
that lists the names, and an error that says which names are known.

Losses (``ptnl.losses``), noise types (``ptnl.noise``), trainers (``ptnl.trainers``) and local
CLIP weights (``ptnl.clip``) each own one ``Registry``. This module imports nothing of ``ptnl``.
"""
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Type


class Registry(Mapping):
    """Name -> registered object (a function or a class), in registration order, with per-entry
    metadata (``options``, ``check``, ...). Reads like a dict of the objects.

    Args:
        kind: what is registered, in words ("loss", "noise type").
        key: the config key or argument that names an entry, for error messages.
        error: the exception class raised for an unknown name.
        sort_names: list names sorted (else in registration order) in errors and ``names()``.
        hint: appended to the unknown-name error (where a name of one's own comes from).
    """

    def __init__(self, kind: str, key: str, *, error: Type[Exception] = ValueError, sort_names: bool = False,
                 hint: str = ""):
        self.kind, self.key, self.error, self.sort_names, self.hint = kind, key, error, sort_names, hint
        self._objects: Dict[str, Any] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}

    def register(self, name: Optional[str] = None, **meta: Any) -> Callable:
        """Decorator: register the decorated object as ``name`` (default: its ``__name__``)."""
        def wrap(obj):
            self.add(name or obj.__name__, obj, **meta)
            return obj
        return wrap

    def add(self, name: str, obj: Any, **meta: Any) -> None:
        """Register ``obj`` as ``name``; registering a name again replaces its entry."""
        self._objects[name] = obj
        self._meta[name] = meta

    def names(self) -> List[str]:
        return sorted(self._objects) if self.sort_names else list(self._objects)

    def unknown(self, name: Any) -> Exception:
        """The error for an unknown ``name``: it lists the known names."""
        return self.error("Unknown {} {!r} ({}): expected one of {}{}".format(
            self.kind, name, self.key, ", ".join(self.names()), "; " + self.hint if self.hint else ""))

    def get(self, name: str, default: Any = None) -> Any:  # Mapping.get, kept quiet
        return self._objects.get(name, default)

    def lookup(self, name: str) -> Any:
        """The object registered as ``name``; the registry's error (listing names) if none is."""
        if name not in self._objects:
            raise self.unknown(name)
        return self._objects[name]

    def meta(self, name: str) -> Dict[str, Any]:
        self.lookup(name)
        return self._meta[name]

    def __getitem__(self, name: str) -> Any:
        return self._objects[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return "Registry({!r}: {})".format(self.kind, ", ".join(self.names()))
