"""pattogis: a GIS planner for territorial regeneration in the Città metropolitana di Bologna.

The data flows one way: ``data`` (build the layer set) → ``layers`` (open by name) →
``territory`` → ``urbanized`` and ``ledger`` → ``criteria`` → ``scoring`` → ``fund`` →
``maps`` / ``store`` → ``api`` and ``cli``.
"""

__version__ = "0.1.0"
