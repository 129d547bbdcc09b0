"""The docs name everything users type or read: rule ids, roles, commands, settings, exports.

As datasette does: the names come from the code (the rule registry, the role vocabulary,
the command tree, the config models, the export columns), so a new one fails here until
README.md and the contract (docs/contract.md) describe it. What the contract promises
and the code lacks is marked "not yet built" there, and the marks are held to the code too.
"""

from __future__ import annotations

import re

import typer
from typer.core import TyperGroup

from rolecall.inventory.derivation.role_rules import ROLES
from rolecall.inventory.exports import COLUMNS
from rolecall.inventory.rules import all_rules
from rolecall.inventory.vocabulary import METRICS, STATUSES
from rolecall.orchestrator.cli.app import app
from rolecall.orchestrator.config import Config
from rolecall.reports.clusters.fields import FIELD_NAMES
from tests.data_paths import CONTRACT, README
from tests.doc_text import NOT_YET_BUILT, bullets, code_lines, has_word, listed_words, section

Tree = dict[str, "Tree"]
CommandPath = tuple[str, ...]
COMMAND_WORD = re.compile(r"[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*")
"""A command word, or alternatives of one ("add|list|remove")."""


def _readme() -> str:
    """README.md's text."""
    return README.read_text(encoding="utf-8")


def _contract() -> str:
    """docs/contract.md's text."""
    return CONTRACT.read_text(encoding="utf-8")


def _subtree(command: object) -> Tree:
    """A command's visible subcommands as nested dicts ({} for one without subcommands)."""
    if not isinstance(command, TyperGroup):
        return {}
    return {name: _subtree(sub) for name, sub in command.commands.items() if not sub.hidden}


def _commands() -> Tree:
    """The `rolecall` command tree, walked from the Typer app."""
    return _subtree(typer.main.get_command(app))


def _paths(tree: Tree, prefix: CommandPath = ()) -> list[CommandPath]:
    """Every command and subcommand of a tree, groups included, as word tuples."""
    paths = []
    for name, sub in tree.items():
        paths.append((*prefix, name))
        paths.extend(_paths(sub, (*prefix, name)))
    return paths


def _named(line: str, tree: Tree) -> tuple[list[CommandPath], str | None]:
    """The commands a usage line names ("schedule add scan|ingest ..."), and an unknown one.

    Words are read while the command so far has subcommands; `a|b` names each of
    a and b; the first option, placeholder or argument ends the command.
    """
    words = line.split()
    if words[:1] == ["rolecall"]:
        words = words[1:]
    named: list[CommandPath] = []
    current: list[tuple[CommandPath, Tree]] = [((), tree)]
    for word in words:
        groups = [(path, sub) for path, sub in current if sub]
        if not groups or not COMMAND_WORD.fullmatch(word):
            break
        current = []
        for path, sub in groups:
            for part in word.split("|"):
                if part not in sub:
                    return named, " ".join((*path, part))
                current.append(((*path, part), sub[part]))
        named.extend(path for path, _ in current)
    return named, None


def _readme_usage() -> list[str]:
    """The `rolecall ...` lines of README.md's code blocks."""
    return [line for line in code_lines(_readme()) if line.startswith("rolecall ")]


def _contract_usage() -> list[str]:
    """The code lines of the contract's command-line section."""
    return code_lines(section(_contract(), "Command line"))


def _rule_ids() -> list[str]:
    """Every finding rule id in the rule registry."""
    return sorted(rule.name for rule in all_rules())


def _marks_held_to_code(listed: dict[str, str], built: set[str], what: str) -> list[str]:
    """What a contract list says wrongly: missing but not marked, or built but still marked."""
    wrong = []
    for name, text in listed.items():
        # The mark sits on the name ("- name (not yet built): ..."), not in its description.
        marked = NOT_YET_BUILT in text.split(":", 1)[0]
        if name not in built and not marked:
            wrong.append(f"{what} {name!r} is not in the code: mark it {NOT_YET_BUILT!r}")
        if name in built and marked:
            wrong.append(f"{what} {name!r} is built: drop its {NOT_YET_BUILT!r} mark")
    return wrong


def test_every_command_is_in_the_readme_usage() -> None:
    shown = {path for line in _readme_usage() for path in _named(line, _commands())[0]}
    missing = [" ".join(path) for path in _paths(_commands()) if path not in shown]
    assert missing == [], f"README.md has no `rolecall ...` usage line for: {missing}"


def test_the_readme_shows_only_commands_that_exist() -> None:
    unknown = [(line, _named(line, _commands())[1]) for line in _readme_usage()]
    wrong = [f"{command!r} in {line!r}" for line, command in unknown if command]
    assert wrong == [], f"README.md shows commands rolecall does not have: {wrong}"


def test_every_command_is_in_the_contract() -> None:
    shown = {path for line in _contract_usage() for path in _named(line, _commands())[0]}
    missing = [" ".join(path) for path in _paths(_commands()) if path not in shown]
    assert missing == [], f"docs/contract.md's command line section lacks: {missing}"


def test_the_contracts_commands_exist_or_are_marked_not_yet_built() -> None:
    wrong = []
    for line in _contract_usage():
        named, unknown = _named(line, _commands())
        if unknown and NOT_YET_BUILT not in line:
            wrong.append(f"{unknown!r} is not a command: mark {line!r} {NOT_YET_BUILT!r}")
        if named and not unknown and NOT_YET_BUILT in line:
            wrong.append(f"{line!r} is built: drop its {NOT_YET_BUILT!r} mark")
    assert wrong == [], f"docs/contract.md's command line section: {wrong}"


def test_every_global_option_is_documented() -> None:
    options = [
        option
        for param in typer.main.get_command(app).params
        for option in param.opts
        if option.startswith("--") and option != "--help"
    ]
    usage = {
        "README.md": " ".join(_readme_usage()),
        "docs/contract.md": " ".join(_contract_usage()),
    }
    missing = [
        f"{option} in {where}"
        for option in options
        for where, text in usage.items()
        if not has_word(text, option)
    ]
    assert missing == [], f"global options missing from the usage lines: {missing}"


def test_every_rule_id_is_in_the_readme_and_the_contract() -> None:
    findings = section(_contract(), "Findings")
    missing = [f"{rule} in README.md" for rule in _rule_ids() if not has_word(_readme(), rule)]
    missing += [
        f"{rule} in docs/contract.md" for rule in _rule_ids() if rule not in bullets(findings)
    ]
    assert missing == [], f"finding rule ids the docs do not name: {missing}"


def test_the_contracts_rule_ids_exist_or_are_marked_not_yet_built() -> None:
    listed = bullets(section(_contract(), "Findings"))
    wrong = _marks_held_to_code(listed, set(_rule_ids()), "rule id")
    assert wrong == [], f"docs/contract.md's findings section: {wrong}"


def _contract_roles() -> dict[str, str]:
    """The contract's role vocabulary (its first sentence) as role -> note."""
    roles = section(_contract(), "Roles")
    return listed_words(re.split(r"\.\s", roles, maxsplit=1)[0])


def test_every_role_is_in_the_contract() -> None:
    missing = [role for role in ROLES if role not in _contract_roles()]
    assert missing == [], f"roles missing from docs/contract.md's role vocabulary: {missing}"


def test_the_contracts_roles_exist_or_are_marked_not_yet_built() -> None:
    wrong = _marks_held_to_code(_contract_roles(), set(ROLES), "role")
    assert wrong == [], f"docs/contract.md's role vocabulary: {wrong}"


def test_every_config_section_is_in_the_readme() -> None:
    readme = _readme()
    missing = [
        name
        for name in Config.model_fields
        if f"[{name}]" not in readme and f"[[{name}]]" not in readme
    ]
    assert missing == [], f"config sections README.md never names ([name]): {missing}"


def test_every_export_and_its_columns_are_in_the_contract() -> None:
    exports = bullets(section(_contract(), "Exports"))
    missing = [f"export {name}" for name in COLUMNS if name not in exports]
    missing += [
        f"column {column} of export {name}"
        for name, columns in COLUMNS.items()
        if name in exports
        for column in columns
        if not has_word(exports[name], column)
    ]
    assert missing == [], f"docs/contract.md's exports section lacks: {missing}"


def test_the_contracts_exports_exist_or_are_marked_not_yet_built() -> None:
    listed = bullets(section(_contract(), "Exports"))
    wrong = _marks_held_to_code(listed, set(COLUMNS), "export")
    assert wrong == [], f"docs/contract.md's exports section: {wrong}"


def test_every_export_is_in_the_readme_usage() -> None:
    shown = " ".join(line for line in _readme_usage() if line.startswith("rolecall export "))
    missing = [name for name in COLUMNS if not has_word(shown, name)]
    assert missing == [], f"README.md's `rolecall export` line lacks: {missing}"


def test_the_words_commands_accept_are_documented() -> None:
    readme, usage = _readme(), " ".join(_contract_usage())
    words = [*STATUSES, *METRICS]
    missing = [
        f"{word} in README.md" for word in (*words, *FIELD_NAMES) if not has_word(readme, word)
    ]
    missing += [f"{word} in docs/contract.md" for word in words if not has_word(usage, word)]
    assert missing == [], f"finding statuses, history metrics or cluster fields missing: {missing}"
