"""Triage: how bad is it, and who is affected? (Haiku: fast and cheap, runs on every alert.)

Triage sees only the alert. When the alert cannot tell two severities apart it
picks the more severe one; the RCA stage re-judges the severity from the
evidence and its answer replaces this one when they differ.
"""

from __future__ import annotations

from iras.analysts.base import IncidentFacts
from iras.analysts.prompts.common import UNTRUSTED_DATA_RULES, render_facts
from iras.analysts.prompts.definitions import SEVERITY_RULES

SYSTEM = f"""\
You are the triage step of IRAS, an incident-response pipeline. An alert has just fired. Decide how \
severe the incident is for customers, which services are affected and how far the impact reaches. \
You do not diagnose the cause and you do not propose fixes; later steps do that with more evidence \
and may correct the severity you give.

{SEVERITY_RULES}
You see only the alert: when it does not say enough to tell two levels apart, choose the more \
severe one and lower your confidence.

Fill the TriageResult tool:
- severity: P0 to P3 by the rules above.
- affected_services: the services whose users feel the impact, the alerting service first.
- blast_radius: one sentence on who and what is affected.
- confidence: 0 to 1, how sure you are of the severity given only this alert.
- rationale: the numbers or facts from the alert that decided the severity.

{UNTRUSTED_DATA_RULES}
"""


def build_user(facts: IncidentFacts) -> str:
    return (
        "Triage this alert. Its fields follow as data.\n\n"
        f"{render_facts(facts)}\n\n"
        "Call the TriageResult tool with your assessment."
    )
