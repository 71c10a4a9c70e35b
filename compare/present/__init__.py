"""Presentation: turns the library's facts into what people and tools read.

One module per output: ``terminal`` (rich tables for ``crosscheck run``), ``json_report``,
``markdown``, ``junit``, ``plots`` (PNG files), ``trajectories`` (the ``.npz`` of whole
trajectories), ``baseline`` and ``mutants`` (their commands' tables), with the shared phrases
in ``text`` and the table layout rules in ``tables``.

Rules: presentation imports only the library (``compare`` core, ``implementations``), never
the CLI; it arranges and words facts that ``compare.check`` and the other library modules
computed, and computes nothing that decides a verdict (the verdict is ``CheckResult.verdict``).
"""
