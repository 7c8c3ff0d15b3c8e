"""What the trainer classes declare in their bodies (``GROUPABLE = True``, ``USES_LOSS = False``,
``COLOUR = "#0072B2"``, ...), read from their source without importing them: the grid scripts, the
results tables and the figures run without torch. The sources are every module under ``ptnl/trainers``
and the ``.py`` files of ``PTNL_PLUGINS`` (a module name: its file). A declaration is read only as a
plain literal (``True``, a string, a tuple); anything else reads as ``UNREADABLE``."""
import ast
import functools
import importlib.util
import os
import os.path as osp
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

TRAINERS_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "trainers")  # ptnl/trainers
UNREADABLE = object()  # a declaration that is not a plain literal
_UNDECLARED = object()


class ClassSource(NamedTuple):
    bases: Tuple[str, ...]  # the names of its base classes
    own: Dict[str, object]  # the attributes its body assigns: literal values (or UNREADABLE)
    registered: bool  # decorated with @register_trainer


def plugin_files(spec: Optional[str] = None) -> List[str]:
    """The source files of the plugins named in ``spec`` (default PTNL_PLUGINS): paths, or modules' origins."""
    spec = os.environ.get("PTNL_PLUGINS", "") if spec is None else spec
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if item.endswith(".py") or os.sep in item:
            out.append(osp.abspath(osp.expanduser(item)))
        elif item:
            try:
                found = importlib.util.find_spec(item)
            except (ImportError, ValueError):
                found = None
            if found is not None and found.origin and found.origin.endswith(".py"):
                out.append(found.origin)
    return out


def _name(node) -> Optional[str]:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNREADABLE


@functools.lru_cache(maxsize=None)
def _classes_of(path: str, mtime: float) -> Dict[str, ClassSource]:
    """{class name: ClassSource} of the classes in the file ``path`` (as of ``mtime``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        own = {}
        for stmt in node.body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        own[target.id] = _literal(stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                own[stmt.target.id] = _literal(stmt.value)
        registered = any(_name(d.func if isinstance(d, ast.Call) else d) == "register_trainer"
                         for d in node.decorator_list)
        out[node.name] = ClassSource(tuple(b for b in map(_name, node.bases) if b), own, registered)
    return out


def trainer_sources(files: Optional[Iterable[str]] = None) -> Dict[str, ClassSource]:
    """{class name: ClassSource} of every class in ``ptnl/trainers`` and in ``files`` (default: the
    PTNL_PLUGINS files; a later file's class replaces an earlier one of the same name)."""
    files = plugin_files() if files is None else files
    paths = [osp.join(d, f) for d, _, names in sorted(os.walk(TRAINERS_DIR))
             for f in sorted(names) if f.endswith(".py")]
    classes: Dict[str, ClassSource] = {}
    for path in paths + [f for f in files if osp.isfile(f)]:
        classes.update(_classes_of(path, osp.getmtime(path)))
    return classes


def declared(attr: str, default=None, *, inherited: bool = True, files: Optional[Iterable[str]] = None,
             sources: Optional[Dict[str, ClassSource]] = None) -> Dict[str, object]:
    """{registered trainer: its ``attr``} read from the classes' source: the class's own declaration, else
    (``inherited``) the nearest base's that declares it (bases in order, depth first, as the MRO of
    single-inheritance trainers), else ``default``.

    Args:
        attr: the class attribute, e.g. "GROUPABLE".
        default: the value of a trainer that declares nothing.
        inherited: False: only the class's own declaration counts (a colour of its own).
        files: the plugin files (default PTNL_PLUGINS's); ``sources``: ``trainer_sources()`` already read.
    """
    classes = trainer_sources(files) if sources is None else sources

    def value(name, seen):
        src = classes[name]
        if attr in src.own:
            return src.own[attr]
        if inherited:
            for base in src.bases:
                if base in classes and base not in seen:
                    found = value(base, seen + (name,))
                    if found is not _UNDECLARED:
                        return found
        return _UNDECLARED
    out = {name: value(name, ()) for name, src in classes.items() if src.registered}
    return {name: default if v is _UNDECLARED else v for name, v in out.items()}
