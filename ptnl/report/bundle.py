"""``python -m ptnl.report DIRS --report OUT_DIR``: every table and every figure the runs allow in
one folder, with an ``index.md`` that embeds them (and says which figures were not drawn, and what
to run for them). Every file is written atomically."""
import os
import os.path as osp
import time
from typing import Dict, List

from ptnl.io import atomic_write
from ptnl.report.figures import available, figure_kinds, write_figure
from ptnl.report.tables import format_header, format_notes, format_pivot, format_table


def _write_text(path, text):
    atomic_write(path, lambda f: f.write(text if text.endswith("\n") else text + "\n"))


def write_report(out_dir: str, records: List[Dict], rows: List[Dict], *, incomplete=(), ddof: int = 0,
                 sources=(), figure_formats=("png", "pdf")) -> Dict:
    """Write the tables (``table`` and ``pivot`` as .md, .tex and .csv), each figure the runs allow
    (as ``<kind>.png`` and ``<kind>.pdf``) and ``index.md`` into ``out_dir``.

    Args:
        out_dir: the report folder (made when missing; files of an earlier report are replaced).
        records: the finished runs (``load_run``).
        rows: the same runs grouped (``aggregate``).
        incomplete: unfinished runs, listed in the notes.
        ddof: the std the rows were computed with (for the notes).
        sources: the folders the runs came from (named in index.md).
        figure_formats: the files of each figure; the first is embedded in index.md.

    Returns {"figures": {kind: description}, "skipped": {kind: message}, "files": [names]}.
    """
    os.makedirs(out_dir, exist_ok=True)
    files = []
    notes = format_notes(rows, incomplete, ddof)
    header = format_header(rows, "markdown") if rows else ""
    if rows:
        for name, fn in (("pivot", format_pivot), ("table", format_table)):
            for fmt, ext in (("markdown", "md"), ("latex", "tex"), ("csv", "csv")):
                above = format_header(rows, fmt) if fmt != "csv" else ""  # csv: a column per setting instead
                _write_text(osp.join(out_dir, "{}.{}".format(name, ext)),
                            (above + "\n\n" if above else "") + fn(rows, fmt))
                files.append("{}.{}".format(name, ext))
    drawn, skipped = {}, {}
    for kind, missing in available(records, rows).items():
        if missing:
            skipped[kind] = missing
            continue
        for fmt in figure_formats:
            name = "{}.{}".format(kind, fmt)
            drawn[kind] = write_figure(kind, records, rows, osp.join(out_dir, name))
            files.append(name)
    md = ["# PTNL report", "",
          "{} finished run(s) in {} group(s){}; written {}.".format(
              len(records), len(rows), " from " + ", ".join("`{}`".format(s) for s in sources) if sources else "",
              time.strftime("%Y-%m-%d %H:%M")), ""] + ([header, ""] if header else [])
    if rows:
        above = [header, ""] if header else []
        md += ["## Test accuracy by noise rate", ""] + above + [format_pivot(rows, "markdown"), "",
               "LaTeX: [pivot.tex](pivot.tex) · CSV: [pivot.csv](pivot.csv)", "",
               "## Every group", ""] + above + [format_table(rows, "markdown"), "",
               "LaTeX: [table.tex](table.tex) · CSV: [table.csv](table.csv)", ""]
    md += ["## Notes", ""] + ["- " + n if not n.startswith("    ") else "    - " + n.strip() for n in notes] + [""]
    if drawn:
        md += ["## Figures", ""]
        for kind in figure_kinds():
            if kind in drawn:
                md += ["### {}".format(kind), "", drawn[kind] + ".", "",
                       "![{}]({}.{})".format(kind, kind, figure_formats[0]), ""]
                md += [" · ".join("[{0}.{1}]({0}.{1})".format(kind, f) for f in figure_formats), ""]
    if skipped:
        md += ["## Figures not drawn", ""] + ["- {}".format(skipped[k]) for k in figure_kinds() if k in skipped] + [""]
    _write_text(osp.join(out_dir, "index.md"), "\n".join(md))
    files.append("index.md")
    return {"figures": drawn, "skipped": skipped, "files": files}
