"""docs/runbook.md: a section for every alert kind and every Prometheus rule, each saying what to do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from funding.alerts import KINDS, runbook_url

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())["spec"]["groups"]
PARTS = ("**What it means.**", "**What to check.**", "**What to do.**", "**How it resolves.**")


def kebab(name: str) -> str:
    """SettlekeeperNoLeader → settlekeeper-no-leader."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def section(anchor: str) -> str:
    """The text from ``<a id="anchor">`` to the next anchor."""
    marker = f'<a id="{anchor}"></a>'
    assert RUNBOOK.count(marker) == 1, f"no single section {anchor!r} in docs/runbook.md"
    text = RUNBOOK.split(marker, 1)[1]
    return text.split('<a id="', 1)[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_alert_kind_has_a_section_at_its_runbook_url(kind: str) -> None:
    """The anchor funding.alerts.runbook_url links to exists, is headed by the kind, and covers the four parts."""
    anchor = runbook_url("docs/runbook.md", kind).split("#", 1)[1]
    text = section(anchor)
    assert text.lstrip().startswith(f"### {kind}\n")
    for part in PARTS:
        assert part in text, f"{kind}: missing {part}"


@pytest.mark.parametrize("rule", [rule for group in RULES for rule in group["rules"]], ids=lambda rule: rule["alert"])
def test_every_prometheus_rule_has_a_section_its_runbook_url_points_to(rule: dict[str, object]) -> None:
    """runbook_url is docs/runbook.md#<alert in kebab case>, and that section covers the four parts."""
    name = str(rule["alert"])
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["runbook_url"] == f"docs/runbook.md#{kebab(name)}"
    text = section(kebab(name))
    assert text.lstrip().startswith(f"### {name}\n")
    for part in PARTS:
        assert part in text, f"{name}: missing {part}"


def test_every_link_inside_the_runbook_lands_on_an_anchor() -> None:
    """Cross-references (`](#...)`) name anchors the runbook defines."""
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', RUNBOOK))
    links = set(re.findall(r"\]\(#([^)]+)\)", RUNBOOK))
    assert links
    assert links - anchors == set()


def test_the_faq_remedies_are_spelled_out() -> None:
    """Journal RF → SI, wire, settle by hand, cover a debit, approval of pending journals and the kill switch."""
    for anchor, needle in (
        ("remedy-journal-rf-si", 'POST "$B/v1/journals"'),
        ("remedy-wire-si", "AWAITING_ADDITIONAL_FUNDS"),
        ("remedy-settle-by-hand", "/v1/instant_funding/settlements"),
        ("remedy-cover-debit", "RF → customer"),
        ("remedy-approve-journal", "pending"),
        ("remedy-kill-switch", "SET sk:kill"),
    ):
        assert needle in section(anchor), anchor
