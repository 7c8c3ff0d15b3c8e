"""Old import paths, kept for one release as thin re-exports that warn."""
import warnings


def moved(old: str, new: str) -> None:
    """Warn that module ``old`` moved to ``new`` (not when ``old`` runs as ``python -m``: a CLI's
    output stays as it was)."""
    if old != "__main__":
        warnings.warn("{} is deprecated and will be removed in the next release; use {}".format(old, new),
                      DeprecationWarning, stacklevel=3)
