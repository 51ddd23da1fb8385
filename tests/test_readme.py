"""The README is the front page: one sentence of what albert is, then its two commands; it stays short, shows the
main jobs, every command in its table exists (with the flags the table shows), and every link in it and in docs/
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


def _table_commands() -> list[str]:
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `albert ")]
    assert len(rows) >= 15
    commands = []
    for row in rows:
        for quoted in re.findall(r"`([^`]+)`", row.split("|")[1]):  # `albert embed` / `classify` / ...
            commands.append(quoted if quoted.startswith("albert ") else f"albert {quoted}")
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


def test_every_command_in_the_table_exists_with_its_flags() -> None:
    from albert.cli import build_parser

    checked = 0
    for command in _table_commands():
        words = command.split()[1:]
        parser = _subcommands(build_parser(words[0]))[words[0]]  # (a training command's settings are its flags)
        sub = _subcommands(parser)
        if sub and len(words) > 1 and words[1] in sub:
            parser = sub[words[1]]
        flags = {s for a in parser._actions for s in a.option_strings}
        for flag in re.findall(r"(--[a-z][a-z-]*)", command.replace("--key value", "")):  # (settings, generic)
            assert flag in flags, (command, flag)
        checked += 1
    assert checked >= 20


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
