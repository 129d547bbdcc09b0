"""Help texts that name values by their metavars (CIDR, FILE), never by Python types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperArgument, TyperGroup, TyperOption

if TYPE_CHECKING:
    # Typer's own Click (vendored since 0.26); its public Context subclasses this one.
    from typer._click import Command, Context


def _value_name(param: TyperArgument | TyperOption) -> str:
    """The metavar a value is shown by: the one given, else the parameter's name in capitals."""
    return param.metavar or (param.name or "value").upper()


class PlainArgument(TyperArgument):
    """An argument shown by its metavar and, for a choice, its choices; never a type name."""

    def display_type_rich(self, ctx: Context) -> str | None:
        """The choices of a choice argument; nothing for any other (its metavar says it)."""
        if not self.type_descriptor.is_choice:
            return None
        return super().display_type_rich(ctx)

    def get_usage_pieces(self, ctx: Context) -> list[str]:
        """CIDR... for a required list, [NAME] for an optional value, as Click writes them."""
        name = _value_name(self)
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return [name if self.required else f"[{name}]"]


class PlainOption(TyperOption):
    """An option whose value is shown by its metavar or its choices; never a type name."""

    def display_type_rich(self, ctx: Context) -> str | None:
        """The metavar given, the choices of a choice, else the option's name in capitals."""
        if self.metavar is None and self.type_descriptor.is_choice:
            return super().display_type_rich(ctx)
        return _value_name(self)


def _first_paragraph(text: str) -> str:
    """A help text's first paragraph on one line: the whole sentence a command list shows."""
    return " ".join(text.strip().split("\n\n")[0].split())


def plain_help(command: Command) -> None:
    """Show no `<list[str]>`-style types and no command summaries cut off with '...'."""
    if command.help and command.short_help is None:
        # A short help given is listed whole (wrapped); the default one is cut at ~45 characters.
        command.short_help = _first_paragraph(command.help)
    for param in command.params:
        # Same fields, one overridden method each: the class can change in place.
        if type(param) is TyperArgument:
            param.metavar = _value_name(param)
            param.__class__ = PlainArgument
        elif type(param) is TyperOption:
            param.__class__ = PlainOption
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            plain_help(sub)
