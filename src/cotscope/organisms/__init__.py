"""Model organisms: tiny models whose faithfulness is known by construction.

``organism/<name>`` loads a shipped checkpoint through the transformers backend;
``cotscope organisms train`` retrains one from scratch; ``cotscope organisms validate``
checks every metric against the organisms' ground truth.
"""

from .zoo import ORGANISMS, VALIDATED, GroundTruth, OrganismSpec, TrainConfig, get_spec

__all__ = ["ORGANISMS", "VALIDATED", "GroundTruth", "OrganismSpec", "TrainConfig", "get_spec"]
