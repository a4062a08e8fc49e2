"""The help of the benchmark programs: every option's default said where it is defined, once."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and examples' lines; every option's help ends with its default, where it has one."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "%(default)" in help_text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)".lstrip()
