"""Standard Operating Procedures: the file format, libraries of SOP files, and retrieval (docs/sops.md).

    >>> from edgepilot.sop import load_library, retrieve
    >>> match = retrieve("Turn off Wi-Fi", load_library())
    >>> match.sop.name, match.params
    ('settings-wifi-toggle', {'state': 'off'})

Nothing here imports the agent, the task suite or numpy.
"""

from edgepilot.errors import SopError
from edgepilot.sop.format import SENSITIVE_KINDS, Sop, SopParam, SopProblem, SopStep, load_sop, parse_sop, render_steps
from edgepilot.sop.library import Entry, Folder, SopLibrary, default_folders, install_sop, load_library
from edgepilot.sop.progress import SopProgress
from edgepilot.sop.retrieve import THRESHOLD, Match, Retriever, fill_params, rank, retrieve

__all__ = [
    "SENSITIVE_KINDS", "THRESHOLD", "Entry", "Folder", "Match", "Retriever", "Sop", "SopError", "SopLibrary",
    "SopParam", "SopProblem", "SopProgress", "SopStep", "default_folders", "fill_params", "install_sop", "load_library",
    "load_sop", "parse_sop", "rank", "render_steps", "retrieve",
]
