"""The run report (issue 7 item 6): one self-contained HTML page with inline plots, the key table as
Markdown, and a headless-Chromium screenshot when Chromium is installed.

* ``write_report(run_dir, out_path=None) -> Path`` -- ``<run_dir>/report.html`` by default;
* ``key_table_markdown(run_dir) -> str`` -- the per-generation headline table for the README;
* ``screenshot(html_path, png_path) -> bool`` -- False when no Chromium is installed.

Inputs are the run directory's ``gen-<n>/summary.json`` files and optional ``experiments/*.json``
(see :mod:`characterflywheel.report.data`). matplotlib is imported only when a plot is drawn.
"""

from characterflywheel.report.data import ReportInputError
from characterflywheel.report.html import key_table_markdown, render_html, screenshot, write_report

__all__ = ["ReportInputError", "key_table_markdown", "render_html", "screenshot", "write_report"]
