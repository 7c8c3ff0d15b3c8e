"""LaTeX tables (booktabs) for papers: text cells escaped, accuracy cells as ``$mean \\pm std$`` with
the best mean of each accuracy column in bold. Pure string functions; ``tables`` fills them."""
from typing import List, Optional, Sequence

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "†": r"\dag{}", "‡": r"\ddag{}"}


def escape(text) -> str:
    """Text as LaTeX typesets it literally."""
    return "".join(SPECIAL.get(c, c) for c in str(text)).replace("±", r"$\pm$").replace("—", "---")


class Stat:
    """An accuracy cell: mean, std (None: one seed, or not defined) and an optional suffix note."""

    def __init__(self, mean: float, std: Optional[float] = None, note: str = ""):
        self.mean, self.std, self.note = mean, std, note

    def latex(self, bold: bool) -> str:
        body = "{:.2f}".format(self.mean) if self.std is None else "{:.2f} \\pm {:.2f}".format(self.mean, self.std)
        body = "\\mathbf{{{}}}".format(body) if bold else body
        return "${}$".format(body) + (" " + escape(self.note) if self.note else "")


def tabular(headers: Sequence[str], body: List[List[object]]) -> str:
    """A booktabs ``tabular``: text cells escaped, ``Stat`` cells as mean ± std, the largest mean
    of each column of ``Stat`` cells in bold (every cell that ties with it)."""
    ncols = len(headers)
    best = {}
    for j in range(ncols):
        means = [row[j].mean for row in body if isinstance(row[j], Stat) and row[j].mean == row[j].mean]
        if means:
            best[j] = max(means)
    align = "".join("r" if j in best else "l" for j in range(ncols))
    lines = ["% needs \\usepackage{booktabs}", "\\begin{tabular}{" + align + "}", "\\toprule",
             " & ".join(escape(h) for h in headers) + " \\\\", "\\midrule"]
    for row in body:
        cells = [c.latex(bold=round(c.mean, 2) == round(best[j], 2)) if isinstance(c, Stat) else escape(c)
                 for j, c in enumerate(row)]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)
