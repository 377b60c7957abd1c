"""Values a user would really say for a parameter: the text's own first, else concrete ones that fit its meaning.

The offline task writer and the offline environment need values for names, addresses and labels the
text does not always give. A filler ("My forwarding address", "Item B", a room called "Living Room
PC") teaches a model trained on the dialogue that facts are placeholders. So a value comes, in order:

1. from the text: what the step that uses it names ("a folder named Archive"), an example the page
   gives ("metadata, like Album and Title"), an address, URL or file name it shows;
2. from a small table of concepts (an e-mail for an address to forward to, a printer model for a
   printer, a room name for a room), preferring a candidate the text mentions;
3. else a short name built from the entity's own noun ("Shared template").

Values from the text carry a `text` ValueSource with their span; the others are `invented`.
"""

from __future__ import annotations

import re
from typing import Any

from tools_runtime.environment import ValueSource

# (words of the parameter, entity or step that name the concept, candidate values). Order matters:
# the first concept whose words match wins ("forwarding address" is an e-mail, "server address" a URL).
CONCEPTS: list[tuple[frozenset[str], list[str]]] = [
    (frozenset("email e-mail mail forwarding forward recipient recipients attendee attendees invitee invitees "
               "cc bcc".split()),
     ["jordan.lee@example.com", "maria.silva@example.org", "sam.okafor@example.net"]),
    (frozenset("server url link website site host uri feed repository repo".split()),
     ["sftp://files.example.org", "https://intranet.example.com", "smb://nas.local/share"]),
    (frozenset("password passphrase passcode pin secret".split()), ["Blue-Kettle-42", "Maple-Tide-17", "Quiet-Orbit-88"]),
    (frozenset("short alias nickname shared".split()), ["office-laser", "hall-printer", "front-desk"]),
    (frozenset("username user account login owner member".split()), ["alex", "sam", "kim"]),
    (frozenset("printer printers".split()), ["Office LaserJet", "Brother HL-L2350", "Hall Inkjet"]),
    (frozenset("room rooms".split()), ["Harbour View", "Atlas Room", "Room 4.12"]),
    (frozenset("folder folders directory directories".split()), ["Archive", "Projects", "Photos"]),
    (frozenset("file files document documents attachment".split()), ["report.odt", "notes.txt", "budget-2025.ods"]),
    (frozenset("computer pc hostname laptop machine".split()), ["Living Room PC", "Study Laptop", "Kitchen Desktop"]),
    (frozenset("device devices bluetooth headset headphones mouse keyboard speaker".split()),
     ["Keyboard K380", "Pixel Buds", "Mouse M720"]),
    (frozenset("disk disks drive drives volume volumes partition partitions filesystem containing".split()),
     ["Samsung SSD 980", "USB Drive", "SD Card"]),
    (frozenset("city cities clock clocks location timezone".split()), ["Lisbon", "Osaka", "Quito"]),
    (frozenset("template templates".split()), ["Letterhead", "Meeting Notes", "Invoice"]),
    (frozenset("app apps application applications favorite favorites favourite program programs".split()),
     ["Firefox", "Files", "Calculator"]),
    (frozenset("sound sounds alert ringtone tone".split()), ["Drip", "Sonar", "Glass"]),
    (frozenset("region country format formats".split()), ["United Kingdom", "Portugal", "Japan"]),
    (frozenset("language languages".split()), ["Portuguese", "German", "Japanese"]),
    (frozenset("network networks wifi wi-fi ssid hotspot".split()), ["HomeNet-5G", "Office-WiFi", "Cafe Guest"]),
    (frozenset("period duration retention".split()), ["30 days", "7 days", "1 year"]),
    (frozenset("phone mobile telephone".split()), ["+44 20 7946 0958", "+1 415 555 0134", "+351 21 555 0199"]),
    (frozenset("date day birthday deadline".split()), ["2026-03-14", "2026-04-02", "2026-05-20"]),
    (frozenset("time hour".split()), ["10:30", "14:00", "09:15"]),
    (frozenset("title subject heading".split()), ["Quarterly report", "Trip photos", "Budget review"]),
    (frozenset("label labels tag tags category categories group".split()), ["Work", "Family", "Receipts"]),
    (frozenset("contact contacts person people".split()), ["Maria Silva", "Sam Okafor", "Jordan Lee"]),
    (frozenset("event events meeting meetings appointment calendar".split()),
     ["Team sync", "Dentist appointment", "Project kickoff"]),
    (frozenset("playlist album albums song songs track".split()), ["Road Trip", "Morning Run", "Quiet Evening"]),
    (frozenset("item items metadata field fields column".split()), ["Album", "Title", "Artist"]),
    (frozenset("message messages note notes reply signature comment".split()),
     ["Running ten minutes late, start without me.", "Back on Monday.", "Thanks for your help!"]),
    (frozenset("color colour".split()), ["Blue", "Green", "Orange"]),
    (frozenset("building".split()), ["North Building", "Main Campus", "Annex B"]),
    (frozenset("search query keyword keywords".split()), ["invoice", "holiday photos", "budget"]),
]
FALLBACK_ADJECTIVES = ["Shared", "Main", "Backup"]

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)\]>,\"']+")
_FILE = re.compile(r"\b[\w-]+\.(?:txt|odt|ods|odp|pdf|docx?|xlsx?|pptx?|png|jpe?g|mp3|ogg|zip|tar|gz|csv|md)\b",
                   re.IGNORECASE)
_CAP = r"[A-Z0-9][\w.&'-]*"
# "a folder named Archive", "a group called Book Club", quoted labels: “Holiday”, "Holiday".
_NAMED = re.compile(rf"\b(?:named|called|titled|labelled|labeled)\s+[\"“']?({_CAP}(?:\s+{_CAP}){{0,3}})")
_EXAMPLE = re.compile(rf"\b(?:like|such as|for example|e\.g\.,?)\s+[\"“']?({_CAP}(?:\s+{_CAP}){{0,2}})")


def words(*parts: str) -> list[str]:
    """Lower-case words of names and sentences (`forwarding_address` → forwarding, address)."""
    return [w for p in parts for w in re.findall(r"[a-z0-9-]+", p.replace("_", " ").lower())]


def concept(param: str, entity: str = "", step: str = "") -> list[str] | None:
    """The candidates of the first concept the parameter's words name, else the entity's, else the step's."""
    for source in (words(param), words(entity), words(step)):
        for keys, candidates in CONCEPTS:
            if keys & set(source):
                return candidates
    return None


def _text_offers(param: str, cands: list[str] | None, step: str, text: str) -> list[str]:
    """Values the text itself offers for this parameter, the step's own words first."""
    low = set(words(param))
    if cands is not None and "@" in cands[0]:
        return _EMAIL.findall(step) + _EMAIL.findall(text)
    if cands is not None and "://" in cands[0] or low & {"address", "url", "server", "link"}:
        urls = [u.rstrip(".") for u in _URL.findall(step) + _URL.findall(text)]
        return [u for u in urls if "example" not in u] or urls
    if cands is not None and cands[0] == "report.odt":
        return _FILE.findall(step) + _FILE.findall(text)
    out = [m.group(1) for m in _NAMED.finditer(step)] + [m.group(1) for m in _EXAMPLE.finditer(step)]
    if low & {"name", "title", "label"} or cands is not None:
        out += [m.group(1) for m in _NAMED.finditer(text)]
    return [v.rstrip(".,;:") for v in out if v.rstrip(".,;:")]


def plausible_values(param: str, entity: str = "", step: str = "", text: str = "", k: int = 3) -> list[str]:
    """Up to `k` distinct concrete values for a free-text parameter, the text's offers first. Never a filler."""
    cands = concept(param, entity, step)
    out: list[str] = []
    for v in _text_offers(param, cands, step, text):
        if v not in out:
            out.append(v)
    if cands is not None:
        mentioned = [c for c in cands if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text, re.IGNORECASE)]
        out += [c for c in mentioned + cands if c not in out]
    else:
        noun = " ".join(words(entity or param.removesuffix("_name"))) or "item"
        out += [f"{a} {noun}" for a in FALLBACK_ADJECTIVES if f"{a} {noun}" not in out]
    return out[:k]


def plausible_value(param: str, entity: str = "", step: str = "", text: str = "",
                    pick: int = 0) -> tuple[Any, ValueSource]:
    """One value for a free-text parameter and its provenance: `text` when the document says it."""
    from gem_agents.stages.offline_env import source_for

    values = plausible_values(param, entity, step, text)
    value = values[pick % len(values)]
    return value, source_for(text, value)
