"""The README is the front page: one sentence of what albert is, then its two commands; it stays short, shows the
main jobs, every command it and docs/ show exists (with the flags shown), and every link in it and in docs/
resolves."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _documented_commands() -> list[tuple[str, str]]:
    """Every `albert ...` a page shows, in backticks or at the start of a code line: (page, command)."""
    commands = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        quoted = re.findall(r"`(albert [^`]+)`", text) + re.findall(r"^(?:\.venv/bin/)?(albert [^#\n]+)", text, re.M)
        commands += [(page.name, command) for command in quoted]
    return commands


def test_the_readme_says_what_albert_is_then_gives_its_two_commands_and_stays_short() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert blocks[0].strip().startswith("bash scripts/setup.sh && .venv/bin/albert fill-mask")
    assert blocks[1].strip() == "bash scripts/test.sh"
    before = text[:text.index("```bash")].split("\n", 1)[1].strip()  # what stands between the title and them
    assert not re.search(r"[.!?]\s+[A-Z]", before) and before.endswith(".") and "\n\n" not in before  # one sentence
    assert text.index(blocks[1]) < 600
    assert len(text.splitlines()) <= 200


def test_the_readme_shows_how_to_fill_a_mask_embed_fine_tune_and_serve() -> None:
    text = README.read_text(encoding="utf-8")
    for shown in ("albert fill-mask", "albert embed", 'pipeline("feature-extraction")', "albert finetune",
                  "albert serve", "| `classification` |", "| `qa` / `qa-v2` |", "| `token-classification` |"):
        assert shown in text, shown


def test_every_command_the_readme_and_docs_show_exists_with_its_flags() -> None:
    from albert.cli import build_parser

    names = set(_subcommands(build_parser(None)))
    parsers: dict[str, argparse.ArgumentParser] = {}
    checked = 0
    for page, command in _documented_commands():
        words = command.replace("albert ", "", 1).split()
        if not words or words[0] not in names:
            continue  # prose ("albert is ...") or a command's table row naming several: `embed` / `classify`
        if words[0] not in parsers:  # (a training command's settings are its flags)
            parsers[words[0]] = _subcommands(build_parser(words[0]))[words[0]]
        parser = parsers[words[0]]
        sub = _subcommands(parser)
        if sub and len(words) > 1 and words[1] in sub:
            parser = sub[words[1]]
        flags = {s for a in parser._actions for s in a.option_strings}
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_.-]*[a-z0-9])", command.replace("--key value", "")):
            assert {flag, flag.replace("-", "_"), flag.replace("_", "-")} & flags, (page, command, flag)
            checked += 1
    assert checked >= 200


def test_every_link_resolves() -> None:
    checked = 0
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # another site: not checked offline
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name}: {target}"
            if anchor and resolved.suffix == ".md":
                headings = [re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                            for h in re.findall(r"^#+ (.+)$", resolved.read_text(encoding="utf-8"), re.M)]
                assert anchor in headings, f"{page.name}: {target}"
            checked += 1
    assert checked >= 20
