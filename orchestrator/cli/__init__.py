"""The command line: one Typer app per command module; handlers parse and print."""
