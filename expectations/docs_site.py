"""The Data Docs site of the gates: every validation kept, pages that open without the internet.

GX builds a site from stores: the index lists what a validation-results and an expectation
store hold and deletes the pages they do not know. The site here has two stores of its own, files
under its `.gx/` directory: a gate's validation runs in memory as it would without docs, then
`KeepInDataDocs` copies the result and its suite into the site's stores and renders the pages and
the index, all under the site's lock. So every process that validates into a directory adds to
one site, and processes writing to it at once neither hide nor delete each other's pages.

GX's pages load jQuery, Bootstrap, Bootstrap-Table, Vega and Font Awesome from public CDNs (none
ship with it) and draw the index tables in the browser with them. The views here render the same
documents without those tags, the index tables written out in HTML, the icons as text, a little
CSS of their own inline, and every link into the site's `static/` copied from the installed GX
(its logo, fonts, favicon) made relative to the page's real depth.
"""

from __future__ import annotations

import copy
import fcntl
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from great_expectations.checkpoint.actions import UpdateDataDocsAction
from great_expectations.render.renderer import ValidationResultsPageRenderer
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import ChoiceLoader, DictLoader, pass_context

STORES_DIR = ".gx"  # the site's validation results and suites as JSON, and its lock; not pages
LOCK_FILE = "build.lock"
SUITES_STORE = "data_docs_suites"  # the site's own stores, by their names in the context
RESULTS_STORE = "data_docs_validation_results"

_EXTERNAL_TAG = re.compile(
    r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']https?://[^>]*>",
    re.IGNORECASE)
_EXTERNAL_URL_IN_CSS = re.compile(r"url\(\s*[\"']?https?://[^)]*\)", re.IGNORECASE)
_STATIC_LINK = re.compile(r"((?:href|src)=[\"']|url\([\"']?)(?:\./|(?:\.\./)+)static/")

# Bootstrap's look for the classes GX's pages use, Font Awesome's icons as characters, and the
# index's two tabs shown one after the other (their links still jump to each).
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  font-size: 0.95rem; line-height: 1.45; color: #212529; background: #fff; }
a { color: #0062cc; text-decoration: none; } a:hover { text-decoration: underline; }
.container-fluid { padding: 0 1rem; box-sizing: border-box; width: 100%; }
.row { display: flex; flex-wrap: wrap; }
.row > * { box-sizing: border-box; max-width: 100%; }
.col-12 { flex: 0 0 100%; }
@media (min-width: 768px) {
  .col-md-2 { flex: 0 0 16.66%; max-width: 16.66%; padding-right: 1rem; }
  .col-md-10 { flex: 0 0 83.33%; max-width: 83.33%; }
  .d-md-block { display: block !important; } .d-md-inline-flex { display: inline-flex !important; }
}
.d-none { display: none; } .d-flex { display: flex; } .text-center { text-align: center; }
.navbar { display: flex; align-items: center; gap: 1rem; padding: 0.5rem 1rem;
  height: auto !important; border-bottom: 1px solid #dee2e6; background: inherit; }
.navbar-brand a img { visibility: visible !important; height: 40px !important; }
.navbar-brand a { background: none !important; }
.breadcrumb { list-style: none; display: flex; flex-wrap: wrap; margin: 0; padding: 0.25rem 0.75rem;
  border-radius: 0.25rem; background: #f1f3f5; }
.breadcrumb-item + .breadcrumb-item::before { content: "/"; padding: 0 0.5rem; color: #6c757d; }
.table { width: 100%; border-collapse: collapse; margin: 0.5rem 0; }
.table th, .table td { border-top: 1px solid #dee2e6; padding: 0.3rem 0.5rem; text-align: left;
  vertical-align: top; }
.table thead th { border-bottom: 2px solid #dee2e6; }
.alert, .card { border: 1px solid #dee2e6; border-radius: 0.25rem; margin-bottom: 1rem; }
.alert { padding: 0.6rem 1rem; background: #f1f3f5; }
.card-header { padding: 0.5rem; border-bottom: 1px solid #dee2e6; background: #f8f9fa; }
.card-body { padding: 0.75rem; }
.badge { display: inline-block; padding: 0.1em 0.4em; margin: 0.1em; border-radius: 0.25rem;
  font-size: 80%; background: #6c757d; color: #fff; }
.btn { display: inline-block; padding: 0.25rem 0.6rem; border: 1px solid #0062cc;
  border-radius: 0.25rem; background: #fff; color: #0062cc; cursor: pointer; }
.btn.active { background: #0062cc; color: #fff; }
.btn input { display: none; }
.nav { list-style: none; padding-left: 0; margin: 0 0 0.5rem; display: flex; flex-wrap: wrap;
  gap: 0.75rem; }
.nav-pills { flex-direction: column; gap: 0.2rem; }
.tab-pane { margin-bottom: 1.5rem; }
.text-success { color: #1e7e34; } .text-danger { color: #c82333; }
.fas { font-style: normal; font-weight: bold; }
.fa-check-circle::before { content: "\\2714"; }
.fa-times::before { content: "\\2716"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.fa-question-circle::before { content: "?"; }
.fa-comment::before { content: "\\1F5E8"; }
@media (prefers-color-scheme: dark) {
  body { color: #f1f1f1; background: #212529; }
  a { color: #8ab4f8; }
  .alert, .breadcrumb, .card-header { background: #2b3035; }
  .btn { background: #212529; }
}
"""

# GX's templates that load from the internet or need its scripts, replaced by name.
_TEMPLATES = {
    "js_script_imports.j2": "<style>" + _CSS + "</style>",
    "top_navbar.j2": """
<nav class="navbar">
  <div class="navbar-brand"><a href="{{ site_root }}index.html"><img
    src="{{ site_root }}static/images/logo-long.png" alt="Great Expectations"></a></div>
  <ol class="breadcrumb">
    <li class="breadcrumb-item"><a href="{{ site_root }}index.html">Data Docs</a></li>
    {% if page_title %}<li class="breadcrumb-item">{{ page_title | e }}</li>{% endif %}
  </ol>
</nav>""",
    "cloud-footer.j2": "",
    "bootstrap_table.j2": "{% include 'content_block_header.j2' %}"
                          "{{ content_block | static_table }}",
    "page_action_card.j2": """
<script>
  function personaShowSucceeded(show) {
    const display = (el) => { if (el) el.style.display = show ? "" : "none"; };
    document.querySelectorAll(".hide-succeeded-validation-target-child")
      .forEach((el) => display(el.parentElement));
    document.querySelectorAll(".hide-succeeded-validation-target").forEach(display);
    document.querySelectorAll(".hide-succeeded-validations-column-section-target-child")
      .forEach((el) => {
        const section = el.parentElement && el.parentElement.parentElement;
        display(section);
        if (section && section.id) {
          document.querySelectorAll('a[href$="' + section.id + '"]').forEach(display);
        }
      });
  }
  function personaFilter(label, show) {
    label.parentElement.querySelectorAll("label").forEach((l) => l.classList.remove("active"));
    label.classList.add("active");
    personaShowSucceeded(show);
  }
</script>
<div class="card">
  <div class="card-header"><strong>Show</strong></div>
  <div class="card-body">
    <label class="btn active" onclick="personaFilter(this, true)">All</label>
    <label class="btn" onclick="personaFilter(this, false)">Failed only</label>
  </div>
</div>""",
}


def site_config(docs_dir: Path) -> dict:
    """The Data Docs site at `docs_dir`, built with the classes below (GX's plug-in config)."""
    module = __name__
    view = {"module_name": module, "class_name": "OfflinePageView"}
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": module, "class_name": "OfflineIndexPageView"},
        },
        "site_section_builders": {
            "expectations": {"source_store_name": SUITES_STORE, "view": view},
            "validations": {
                "source_store_name": RESULTS_STORE,
                "view": view,
                "renderer": {"module_name": module, "class_name": "AssetNamingValidationRenderer"},
                # GX's default keeps out run names with "profiling" in them; ours are all kept
                "run_name_filter": {"matches_regex": "."},
            },
            "profiling": "None",
        },
    }


def stores_config(docs_dir: Path) -> dict[str, dict]:
    """The site's suites and validation results, in files beside its pages."""
    def store(class_name: str, folder: str) -> dict:
        return {"class_name": class_name, "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir / STORES_DIR / folder)}}
    return {SUITES_STORE: store("ExpectationsStore", "expectations"),
            RESULTS_STORE: store("ValidationResultsStore", "validations")}


@contextmanager
def locked(docs_dir: Path) -> Iterator[None]:
    """Hold the site's lock: one build at a time, so none deletes or hides another's page."""
    (docs_dir / STORES_DIR).mkdir(parents=True, exist_ok=True)
    with open(docs_dir / STORES_DIR / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class KeepInDataDocs(UpdateDataDocsAction):
    """GX's Data Docs update for the site at `docs_dir` (a GX custom action): under the site's
    lock, the run's results and their suites are kept in the site's stores, then its pages and
    index are rebuilt from them."""

    type: Literal["keep_in_data_docs"] = "keep_in_data_docs"
    docs_dir: str

    def run(self, checkpoint_result, action_context=None) -> dict:
        context = self._resolve_context().context
        results, suites = context.stores[RESULTS_STORE], context.stores[SUITES_STORE]
        with locked(Path(self.docs_dir)):
            for key, result in checkpoint_result.run_results.items():
                results.set(key, result)
                suite = context.suites.get(result.suite_name)
                suites.set(suites.get_key(name=suite.name, id=suite.id), suite)
            return super().run(checkpoint_result, action_context)


class AssetNamingValidationRenderer(ValidationResultsPageRenderer):
    """GX's validation page, naming the data asset: for a dataframe asset GX looks for the name
    in the batch spec, where only the (unrendered) batch definition has it."""

    def render(self, validation_results, suite_parameters=None):
        spec = dict(validation_results.meta.get("batch_spec") or {})
        if validation_results.asset_name and not spec.get("data_asset_name"):
            spec["data_asset_name"] = validation_results.asset_name
            validation_results = copy.copy(validation_results)
            validation_results.meta = {**validation_results.meta, "batch_spec": spec}
        return super().render(validation_results, suite_parameters)


class _Offline:
    """What both views change: the templates above first, and the finished page cleaned of any
    remaining CDN tag, with its links into `static/` relative to where the page really is (GX
    counts one folder per suite, not per dotted part of its name)."""

    env: Any

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.env.loader = ChoiceLoader([DictLoader(_TEMPLATES), self.env.loader])
        self.env.filters["static_table"] = self._static_table

    def render(self, document, template=None, **kwargs):
        root = _site_root(document)
        page = super().render(document, template, site_root=root, **kwargs)  # type: ignore[misc]
        page = _EXTERNAL_TAG.sub("", page)
        page = _EXTERNAL_URL_IN_CSS.sub("none", page)
        return _STATIC_LINK.sub(lambda m: f"{m.group(1)}{root}static/", page)

    @pass_context
    def _static_table(self, jinja_context, content_block: dict) -> str:
        """A table GX would have Bootstrap-Table draw from JSON, as HTML: each row's link on
        its first plain cell, GX's rendered cells as they are, the rest escaped."""
        columns = content_block["table_columns"]
        head = "".join(f"<th>{html.escape(str(c.get('title', '')))}</th>" for c in columns)
        body = []
        for row in content_block["table_data"]:
            link, cells = row.get("_table_row_link_path"), []
            for column in columns:
                value = row.get(column["field"])
                if isinstance(value, (dict, list)):
                    cell = self.render_content_block(jinja_context, value)  # type: ignore[attr-defined]
                    if column["field"] == "validation_success":  # the icon, and in words
                        cell += html.escape(f" {row.get('_validation_success_text', '')}")
                else:
                    cell = html.escape("" if value is None else str(value))
                    if link:
                        cell, link = f'<a href="{html.escape(link)}">{cell}</a>', None
                cells.append(f"<td>{cell}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        return (f'<table class="table"><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table>")


class OfflinePageView(_Offline, DefaultJinjaPageView):
    """GX's page view for validation results and suites, rendered for offline reading."""


class OfflineIndexPageView(_Offline, DefaultJinjaIndexPageView):
    """GX's index view, its tables written out in HTML."""


def _site_root(document) -> str:
    """The relative path from a page to the site's root: validation pages live at
    validations/<suite parts>/<run name>/<run time>/, suite pages at expectations/<suite parts>."""
    def field(name: str) -> Any:
        return document.get(name) if isinstance(document, dict) else getattr(document, name, None)
    kind = field("renderer_type") or ""
    parts = len(str(field("expectation_suite_name") or "").split("."))
    if "ValidationResults" in kind:
        return "../" * (parts + 3)
    if "ExpectationSuite" in kind:
        return "../" * parts
    return ""
