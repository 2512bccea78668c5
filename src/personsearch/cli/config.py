"""``personsearch config list`` names the shipped presets with their one-line description;
``personsearch config show CONFIG [--set KEY=VALUE ...]`` prints a config fully resolved (its
``base:`` chain merged, overrides applied, every default filled in) as YAML, so nothing a
preset inherits is hidden. CONFIG is a file path or a preset name (``ssl_synthetic``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="list the shipped presets with their description")
    show = actions.add_parser("show", help="print a config fully resolved, as YAML")
    show.add_argument("config", help="YAML config file or preset name (see `personsearch config list`)")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a setting, e.g. --set solver.lr=0.002 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from personsearch.config import dump_config, load_config, preset_description, preset_paths

    if args.config_command == "list":
        presets = preset_paths()
        width = max(len(name) for name in presets)
        for name, path in presets.items():
            print(f"{name:<{width}}  {preset_description(path)}")
        return 0
    print(dump_config(load_config(args.config, args.overrides)), end="")
    return 0
