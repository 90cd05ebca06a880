"""``cacpipe labels``: the annotation tools of label_tools (also installed as ``cacpipe-labels``)."""

from label_tools.cli import cli as command  # noqa: F401  (auto-discovered by cacpipe.cli)

NAME = "labels"  # the group is called "cli" in label_tools
