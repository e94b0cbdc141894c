"""Print the result tables of a folder of ``evaluate --json`` files, or write them into documents.

From the repository root::

    python scripts/update_tables.py canetlib/teaching/results/imagenet-backbone

prints the per-fold table with the mean over the folds present and one row per result file;
``--write-into README.md book/intro.md`` replaces the text between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->`` of those files with the same table (a test
checks they agree), and a ``<!-- variants:begin -->`` block, where there is one, with every
result file's row.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from canetlib.teaching.report import (
    benchmark_table,
    read_block,
    read_results,
    replace_block,
    variants_table,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    targets: list[Path] = []
    if "--write-into" in args:
        i = args.index("--write-into")
        targets = [Path(a) for a in args[i + 1:]]
        args = args[:i]
        if not targets:
            print("error: --write-into needs at least one file", file=sys.stderr)
            return 2
    if len(args) != 1:
        print("usage: python scripts/update_tables.py RESULTS_FOLDER [--write-into FILE ...]",
              file=sys.stderr)
        return 2
    folder = Path(args[0])
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    rows = read_results(folder)
    if not rows:
        print(f"error: no evaluation result (evaluate --json) under {folder}", file=sys.stderr)
        return 1
    table = benchmark_table(rows)
    for target in targets:
        try:
            text = replace_block(target.read_text(), table, str(target))
            if read_block(text, "variants") is not None:  # optional second block
                text = replace_block(text, variants_table(rows), str(target), "variants")
            target.write_text(text)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"table written into {target}")
    if not targets:
        print(table)
        print()
        print(variants_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
