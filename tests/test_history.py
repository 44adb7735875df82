"""One current story: a superseded study's arms' results appear on the history appendix only.

The superseded studies are :data:`cbp.experiments.current.HISTORY`; their arms' seed means (mIoU and
mAcc, as the pages print them, two decimals) are computed from their records. Every page source outside
the appendix (the book's markdown and executable pages, the chapters, the README) must not contain one.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cbp.experiments import current

ROOT = Path(__file__).resolve().parents[1]
APPENDIX_CAPTION = "Appendix: history of the study"


def appendix_pages() -> set[Path]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    part = next(p for p in toc["parts"] if p["caption"] == APPENDIX_CAPTION)
    out = set()
    for entry in part["chapters"]:
        out |= {p.resolve() for p in (ROOT / "book").glob(entry["file"] + ".*") if p.suffix in (".md", ".py")}
    return out


def current_pages() -> list[Path]:
    pages = [*ROOT.joinpath("book").glob("*.md"), *ROOT.joinpath("book").glob("*.py")]
    pages += [*ROOT.joinpath("notebooks").glob("[0-9][0-9]_*.py"), ROOT / "README.md"]
    skip = appendix_pages()
    return sorted(p for p in pages if p.resolve() not in skip)


def test_the_appendix_holds_the_history_pages() -> None:
    names = {p.name for p in appendix_pages()}
    assert {"history.py", "08_analysis.py"} <= names


def test_superseded_arm_means_appear_only_in_the_history_appendix() -> None:
    means = current.superseded_arm_means(ROOT)
    assert len(means) > 50  # the first and second studies' records are in results/
    found = {}
    for page in current_pages():
        text = page.read_text(encoding="utf-8")
        hits = sorted(n for n in means if re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", text))
        if hits:
            found[str(page.relative_to(ROOT))] = hits
    assert not found, f"superseded studies' arm means outside the history appendix: {found}"


def test_the_pointer_names_folders_that_hold_the_superseded_records() -> None:
    for study in current.HISTORY:
        for profile, folder in study.folders(ROOT).items():
            assert any(folder.glob("*.json")), (study.name, profile, folder)


def test_the_glossary_defines_the_studies_and_the_read_out_terms() -> None:
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    terms = set(re.findall(r"^([^\s`].*)$", text.split("```{glossary}")[1], flags=re.MULTILINE))
    needed = {"Holm's correction", "paired interval", "amendment", "first study", "second study",
              "current study", "table R", "cnn_tiny"}  # fmt: skip
    assert needed <= terms, needed - terms
