"""The package's layers, lowest first: a module imports only from its own layer or the layers
below it, and there is no import cycle, lazy imports included (`tests/test_layers.py` checks
both; `docs/architecture.md` shows this list)."""

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("_errors", "_registry", "_options", "_layers", "trace", "records", "stats", "config")),
    ("providers", ("engine", "backends")),
    ("tasks", ("tasks",)),
    ("systems", ("systems",)),
    ("interventions", ("interventions",)),
    ("metrics", ("metrics",)),
    ("experiments", ("experiments",)),
    ("store", ("store",)),
    ("summary", ("verdicts", "summary")),
    ("report", ("report",)),
    ("run", ("audit",)),
    ("compare", ("compare", "drift", "stego", "rewards", "monitors", "groundtruth")),
    ("training", ("training",)),
    ("organisms", ("organisms",)),
    ("entry points", ("serve", "cli", "interop", "__init__")),
)
