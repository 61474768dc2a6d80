"""cotscope and the tools around it: Inspect tasks (forward) and Inspect logs (backward)."""
